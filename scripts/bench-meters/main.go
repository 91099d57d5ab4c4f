// Command bench-meters measures joules-agent polling simulated SNMP PDUs as
// a whole process: a baseline agent without meters, the same agent polling
// -devices PDUs every -interval, and Telegraf's inputs.snmp polling the same
// devices for the same fields, one after the other for the same duration.
// The PDUs are Debian's snmpsimd serving recordings of real devices
// (../shared/testdata/snmp). CPU is user+system time from /proc/PID/stat,
// memory VmRSS, VmHWM and smaps_rollup. It prints Markdown tables for
// BENCHMARKS.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/joules-energy/joules/internal/procstat"
	"github.com/joules-energy/joules/snmp"
)

// kind is one simulated device model: the recording snmpsimd serves (its
// community is the file's name) and the profile that reads it.
type kind struct{ recording, profile string }

// recordingOf is the recording each shipped profile is read against in
// snmp/recordings_test.go.
var recordingOf = map[string]string{
	"apc-rpdu2":    "apc_ap8959eu3",
	"sentry4":      "sentry4",
	"vertiv-geist": "vertiv-pdu_mg02e4w1",
	"eaton-epdu":   "eatonpdu_2",
	"raritan-pdu2": "raritan-pdu_px2",
	"apc-ups":      "apc_smx750",
	"ups-mib":      "eaton-mgeups_93ps",
}

// mix is the rack PDUs -mix spreads the devices over, in turn.
var mix = []string{"apc-rpdu2", "sentry4", "vertiv-geist", "eaton-epdu", "raritan-pdu2"}

type device struct {
	name string
	kind kind
	addr string // 127.0.0.1:port of the snmpsimd serving it
}

type options struct {
	agentBin, telegraf, recordings   string
	cpuProfile, heapProfile          string
	devices, sims, burst             int
	interval, duration, warmup, poll time.Duration
	kinds                            []kind
}

func main() {
	cache, _ := os.UserCacheDir()
	defaultTelegraf := filepath.Join(cache, "joules-bench", "telegraf-snmp-"+telegrafVersion, "telegraf")
	var (
		o       options
		profile = flag.String("profile", "apc-rpdu2", "the profile of every device, with -mix=false")
		mixed   = flag.Bool("mix", true, "spread the devices over "+strings.Join(mix, ", ")+" (each read against its recording)")
	)
	flag.StringVar(&o.agentBin, "agent", "bin/joules-agent", "joules-agent binary")
	flag.StringVar(&o.telegraf, "telegraf", defaultTelegraf, `Telegraf binary with inputs.snmp and outputs.discard (the peer; "" leaves it out; the default path is built once when missing)`)
	flag.StringVar(&o.recordings, "recordings", "../shared/testdata/snmp", "folder of the .snmprec recordings (copied to a temporary folder for snmpsimd)")
	flag.IntVar(&o.devices, "devices", 100, "simulated PDUs")
	flag.IntVar(&o.sims, "snmpsim", 4, "snmpsimd processes the devices are spread over (each is single-threaded)")
	flag.IntVar(&o.burst, "burst", 100, "scrapes back to back for the /metrics figures, after each agent's measured period")
	flag.DurationVar(&o.interval, "interval", 10*time.Second, "poll interval of every device")
	flag.DurationVar(&o.duration, "duration", 120*time.Second, "measured period of each process")
	flag.DurationVar(&o.warmup, "warmup", 20*time.Second, "time from each process's start to its measured period")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write the agent's CPU profile over its measured period with the PDUs here (uses its --debug.pprof)")
	flag.StringVar(&o.heapProfile, "heapprofile", "", "write the agent's heap profile at the end of its measured period with the PDUs here")
	flag.DurationVar(&o.poll, "scrape-every", 0, "the agents' /metrics is read this often during the measured period (default interval/2, at most 5s)")
	flag.Parse()
	if o.poll <= 0 {
		o.poll = min(5*time.Second, o.interval/2)
	}
	if *mixed {
		for _, p := range mix {
			o.kinds = append(o.kinds, kind{recordingOf[p], p})
		}
	} else {
		rec, ok := recordingOf[*profile]
		if !ok {
			fmt.Fprintf(os.Stderr, "bench-meters: no recording for profile %q (one of %s)\n", *profile, strings.Join(sortedKeys(recordingOf), ", "))
			os.Exit(2)
		}
		o.kinds = []kind{{rec, *profile}}
	}
	if o.telegraf != "" {
		bin, err := telegrafBinary(o.telegraf, o.telegraf == defaultTelegraf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-meters:", err)
			os.Exit(1)
		}
		o.telegraf = bin
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-meters:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.poll >= o.interval {
		return fmt.Errorf("-scrape-every %s must be below -interval %s: each poll is seen by one scrape", o.poll, o.interval)
	}
	dir, err := os.MkdirTemp("", "bench-meters")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var recs []string
	for _, k := range o.kinds {
		recs = append(recs, k.recording)
	}
	fmt.Fprintf(os.Stderr, "starting %d snmpsimd serving %s\n", o.sims, strings.Join(recs, ", "))
	sims, err := startSims(dir, o.recordings, recs, o.sims)
	if err != nil {
		return err
	}
	defer sims.stop()

	devs := make([]device, o.devices)
	for i := range devs {
		devs[i] = device{name: fmt.Sprintf("pdu-%03d", i), kind: o.kinds[i%len(o.kinds)], addr: sims.addrs[i%len(sims.addrs)]}
	}

	fmt.Fprintf(os.Stderr, "baseline agent: %s warm-up, %s measured\n", o.warmup, o.duration)
	base, err := measureAgent(o, dir, "joules-agent, no meters (baseline)", nil, sims)
	if err != nil {
		return fmt.Errorf("baseline agent: %w", err)
	}
	fmt.Fprintf(os.Stderr, "agent with %d PDUs: %s warm-up, %s measured\n", o.devices, o.warmup, o.duration)
	agent, err := measureAgent(o, dir, fmt.Sprintf("joules-agent, %d PDUs", o.devices), devs, sims)
	if err != nil {
		return fmt.Errorf("agent with PDUs: %w", err)
	}
	var peer *result
	var peerRows map[string]int
	if o.telegraf != "" {
		if peerRows, err = telegrafCheck(o, dir, devs); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "Telegraf with %d PDUs: %s warm-up, %s measured\n", o.devices, o.warmup, o.duration)
		t, err := measureTelegraf(o, dir, devs, sims)
		if err != nil {
			return fmt.Errorf("telegraf: %w", err)
		}
		peer = &t
	}
	report(o, devs, base, agent, peer, peerRows, sims)
	return nil
}

// result is one process's measured period.
type result struct {
	name      string
	window    time.Duration
	cpu       time.Duration // user+system over the window
	mem       mem           // at the end of the window
	hwm       int64         // VmHWM, KiB
	simCPU    time.Duration // all snmpsimd processes over the window
	polls     polls
	scrape    scrapeStats
	reqByProf map[string][]float64 // joules_snmp_poll_requests at the end, by profile
	logLines  int                  // Telegraf: error and warning lines in the window
}

func (r result) cpuPct() float64 { return 100 * float64(r.cpu) / float64(r.window) }

// polls are the polls one process made during its window.
type polls struct {
	ok, total, expected int
	errors              float64              // poll_errors_total over the window (the agent)
	durations           []float64            // seconds, every poll seen
	byProfile           map[string][]float64 // the same, by profile
	measured            bool                 // durations come from the process
}

func report(o options, devs []device, base, agent result, peer *result, peerRows map[string]int, sims *sims) {
	var kinds []string
	for _, k := range o.kinds {
		kinds = append(kinds, fmt.Sprintf("%s (%s)", k.profile, k.recording))
	}
	fmt.Printf("`%s`, %s, %d cores (%s), load average at the end %s.\n\n", command(), time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		runtime.NumCPU(), cpuModel(), procstat.LoadAvg())
	fmt.Printf("%d simulated PDUs (%s, in turn), served by %d snmpsimd processes, each polled every %s (timeout 2s, 1 retry), %s warm-up then %s measured per process; the agents' /metrics read every %s throughout.\n\n",
		o.devices, strings.Join(kinds, ", "), len(sims.addrs), o.interval, o.warmup, o.duration, o.poll)

	fmt.Println("| process | CPU % of a core | RSS MiB (VmRSS at end / VmHWM) | RSS anonymous / file-backed MiB | polls OK / total | poll p50 / p99 | CPU per poll | ratio to the baseline (CPU, RSS) | ratio to Telegraf (CPU, RSS) |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	row := func(r result) {
		fmt.Printf("| %s | %.2f %% | %.1f / %.1f | %.1f / %.1f | %s | %s | %s | %s | %s |\n", r.name, r.cpuPct(), mib(r.mem.rss), mib(r.hwm),
			mib(r.mem.anon), mib(r.mem.file), pollsCell(r.polls), durCell(r.polls), cpuPerPoll(r.cpu, r.polls.total),
			ratios(r, base), peerRatios(r, peer))
	}
	row(base)
	row(agent)
	costCPU := agent.cpuPct() - base.cpuPct()
	costPerPoll := "n/a"
	if agent.polls.total > 0 {
		extra := time.Duration(costCPU / 100 * float64(agent.window))
		costPerPoll = fmt.Sprintf("%.2f ms", float64(extra)/float64(time.Millisecond)/float64(agent.polls.total))
	}
	fmt.Printf("| cost of polling (agent − baseline) | %.2f %% | %+.1f / %+.1f | %+.1f / %+.1f | | | %s | | %s |\n", costCPU,
		mib(agent.mem.rss-base.mem.rss), mib(agent.hwm-base.hwm), mib(agent.mem.anon-base.mem.anon), mib(agent.mem.file-base.mem.file),
		costPerPoll, costRatio(costCPU, peer))
	if peer != nil {
		row(*peer)
	}

	reads := int(agent.window/o.poll) + 1
	fmt.Printf("\nThe benchmark's own reads of the agents' /metrics (%d in the window, %s of CPU each in the burst below) are about %.2f %% of a core of the agent's figure; Telegraf is not read (outputs.discard).\n",
		reads, agent.scrape.cpuPer, pct(time.Duration(reads)*agent.scrape.cpuPer, agent.window))
	fmt.Printf("\nsnmpsimd (all %d processes) used %.1f %% of a core while the agent polled", len(sims.addrs), pct(agent.simCPU, agent.window))
	if peer != nil {
		fmt.Printf(", %.1f %% while Telegraf did", pct(peer.simCPU, peer.window))
	}
	fmt.Printf(", %.1f %% during the baseline.", pct(base.simCPU, base.window))
	if agent.polls.errors > 0 {
		fmt.Printf(" joules_snmp_poll_errors_total rose by %.0f in the agent's window.", agent.polls.errors)
	}
	if peer != nil && peer.logLines > 0 {
		fmt.Printf(" Telegraf logged %d error and warning lines in its window.", peer.logLines)
	}
	fmt.Println()

	fmt.Println("\nPer profile (joules-agent): one poll's requests (`joules_snmp_poll_requests`), the columns it walks (GETBULK, 25 repetitions) and GETs, and its poll durations:")
	fmt.Println()
	fmt.Println("| profile | recording | devices | columns walked | GETs | requests per poll | poll p50 / p99 | Telegraf rows per poll (`--test`) |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, k := range o.kinds {
		n := 0
		for _, d := range devs {
			if d.kind == k {
				n++
			}
		}
		walks, gets := profileShape(k.profile)
		reqs := agent.reqByProf[k.profile]
		ds := agent.polls.byProfile[k.profile]
		rows := "—"
		if peerRows != nil {
			rows = fmt.Sprint(peerRows[k.profile])
		}
		fmt.Printf("| %s | %s | %d | %d | %d | %s | %s / %s | %s |\n", k.profile, k.recording, n, walks, gets, spread(reqs), quantile(ds, 0.5), quantile(ds, 0.99), rows)
	}

	fmt.Printf("\n/metrics, %d scrapes back to back after each agent's measured period (gzip, as Prometheus asks):\n\n", o.burst)
	fmt.Println("| process | series | bytes (uncompressed) | scrape p50 / p99 | agent CPU per scrape |")
	fmt.Println("|---|---|---|---|---|")
	for _, r := range []result{base, agent} {
		s := r.scrape
		fmt.Printf("| %s | %d | %d | %s / %s | %s |\n", r.name, s.series, s.bytes, s.p50, s.p99, s.cpuPer)
	}
}

func pollsCell(p polls) string {
	if p.expected == 0 {
		return "—"
	}
	return fmt.Sprintf("%d / %d (expected %d)", p.ok, p.total, p.expected)
}

func durCell(p polls) string {
	if !p.measured {
		if p.expected == 0 {
			return "—"
		}
		return "n/a"
	}
	return quantile(p.durations, 0.5) + " / " + quantile(p.durations, 0.99)
}

func cpuPerPoll(cpu time.Duration, n int) string {
	if n == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f ms", float64(cpu)/float64(time.Millisecond)/float64(n))
}

func ratios(r, base result) string {
	if r.name == base.name {
		return "1×"
	}
	return fmt.Sprintf("%.2f×, %.2f×", r.cpuPct()/base.cpuPct(), float64(r.mem.rss)/float64(base.mem.rss))
}

func peerRatios(r result, peer *result) string {
	if peer == nil {
		return "—"
	}
	if r.name == peer.name {
		return "1×"
	}
	return fmt.Sprintf("%.2f×, %.2f×", r.cpuPct()/peer.cpuPct(), float64(r.mem.rss)/float64(peer.mem.rss))
}

func costRatio(costCPU float64, peer *result) string {
	if peer == nil {
		return "—"
	}
	return fmt.Sprintf("%.2f× (CPU)", costCPU/peer.cpuPct())
}

// profileShape is how many distinct columns one poll of the profile walks
// and how many scalars it GETs.
func profileShape(name string) (walks, gets int) {
	p, err := snmp.ShippedProfile(name)
	if err != nil {
		return 0, 0
	}
	cols := map[string]bool{}
	for _, r := range p.Readings {
		if !r.Walk {
			gets++
			continue
		}
		cols[r.OID] = true
		if r.DecimalsOID != "" {
			cols[r.DecimalsOID] = true
		}
	}
	return len(cols), gets
}

// quantile is the q-quantile of seconds, as a rounded duration.
func quantile(secs []float64, q float64) string {
	if len(secs) == 0 {
		return "—"
	}
	s := append([]float64(nil), secs...)
	sort.Float64s(s)
	i := min(len(s)-1, int(q*float64(len(s))))
	d := time.Duration(s[i] * float64(time.Second))
	if d >= 100*time.Millisecond {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Microsecond).String()
}

// spread is the values' range, or the one value they all have.
func spread(v []float64) string {
	if len(v) == 0 {
		return "—"
	}
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	if lo == hi {
		return fmt.Sprintf("%.0f", lo)
	}
	return fmt.Sprintf("%.0f–%.0f", lo, hi)
}

func pct(d, window time.Duration) float64 { return 100 * float64(d) / float64(window) }

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// command is how this run was asked for, as it would be typed in the repository.
func command() string {
	return strings.Join(append([]string{"go run ./scripts/bench-meters"}, os.Args[1:]...), " ")
}

func cpuModel() string {
	raw, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
