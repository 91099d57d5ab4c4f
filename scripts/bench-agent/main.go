// Command bench-agent measures joules-agent as a whole process, side by side
// with Debian's prometheus-node-exporter running the same collectors on the
// same sysfs tree: scrape latency, RSS, and CPU per second at one scrape a
// second and at one every 15 s. With -goal it measures the agent in the shape
// of DESIGN.md's budget instead. It prints Markdown tables for BENCHMARKS.md.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/joules-energy/joules/internal/procstat"
)

func main() {
	var (
		agentBin = flag.String("agent", "bin/joules-agent", "joules-agent binary")
		nodeBin  = flag.String("node-exporter", "prometheus-node-exporter", "node_exporter binary (Debian's prometheus-node-exporter)")
		sysfs    = flag.String("sysfs", "../shared/testdata/sysfs/node-exporter/sys", "sysfs tree both read")
		scrapes  = flag.Int("scrapes", 2000, "scrapes per process for the latency figures")
		steady   = flag.Duration("steady", 60*time.Second, "length of each steady-state period (unscraped, at one scrape a second, at -scrape-every; -goal's)")
		config   = flag.String("agent-config", "", "measure only the agent, with this configuration (no node_exporter comparison)")
		bmcs     = flag.Int("redfish", 0, "measure the agent polling this many simulated BMCs instead")
		joules   = flag.String("joules", "bin/joules", "joules binary (for joules sim redfish)")
		mockup   = flag.String("mockup", "../shared/testdata/redfish/dmtf-public-rackmount1", "mockup the simulated BMCs serve")
		goal     = flag.Bool("goal", false, "measure the budget's shape: -goal-config's sources plus one simulated BMC at 10 s, streaming, scraped every -scrape-every")
		goalCfg  = flag.String("goal-config", "scripts/bench-agent/configs/dgxh200.yml", "agent config for -goal; its sources block must come last")
		every    = flag.Duration("scrape-every", 15*time.Second, "scrape interval of -goal and of the slow-scrape comparison with node_exporter")
		burst    = flag.Int("burst", 300, "scrapes per latency burst of -goal")
		profile  = flag.String("cpuprofile", "", "with -goal: write the agent's CPU profile over the steady period here (uses the agent's --debug.pprof)")
		nodeIvl  = flag.Duration("node-interval", time.Second, "the agent's collection interval in the node_exporter comparison")
		heap     = flag.String("heapprofile", "", "with -goal: write the agent's heap profile at the end of the steady period here")
	)
	flag.Parse()
	var err error
	if *goal {
		err = runGoal(goalOptions{agentBin: *agentBin, joulesBin: *joules, mockup: *mockup, sysfs: *sysfs, config: *goalCfg,
			steady: *steady, scrapeEvery: *every, burst: *burst, profile: *profile, heapProfile: *heap})
	} else if *bmcs > 0 {
		err = runRedfish(*agentBin, *joules, *mockup, *bmcs, *steady)
	} else if *config != "" {
		err = runAgentOnly(*agentBin, *config, *sysfs, *scrapes, *steady)
	} else {
		err = run(*agentBin, *nodeBin, *sysfs, *scrapes, *steady, *every, *nodeIvl)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-agent:", err)
		os.Exit(1)
	}
}

type result struct {
	name             string
	p50, p99         time.Duration
	cpuPerScrape     time.Duration
	rssKiB           int64
	idleCPUPercent   float64
	steadyCPUPercent float64
	steadyRSSKiB     int64
	slowCPUPercent   float64 // at one scrape every slowEvery
	slowMem          mem
	bytes            int
}

func run(agentBin, nodeBin, sysfs string, scrapes int, steady, slowEvery, interval time.Duration) error {
	sysfs, err := filepath.Abs(sysfs)
	if err != nil {
		return err
	}
	if _, err := os.Stat(sysfs); err != nil {
		return fmt.Errorf("sysfs tree: %w", err)
	}
	nodePath, err := exec.LookPath(nodeBin)
	if err != nil {
		return fmt.Errorf("%s not found (apt-get install prometheus-node-exporter): %w", nodeBin, err)
	}
	cfg, err := os.CreateTemp("", "bench-agent-*.yml")
	if err != nil {
		return err
	}
	defer os.Remove(cfg.Name())
	fmt.Fprintf(cfg, "labels: {host: bench}\nsources: {node: {interval: %s, collectors: [netdev, infiniband, hwmon, rapl]}}\n", interval)
	cfg.Close()

	collectorsFlags := []string{"--collector.disable-defaults", "--collector.netdev", "--collector.infiniband", "--collector.hwmon", "--collector.rapl"}
	var results []result
	for _, p := range []struct {
		name string
		bin  string
		args []string
	}{
		{"prometheus-node-exporter", nodePath, append([]string{"--path.sysfs=" + sysfs, "--log.level=warn"}, collectorsFlags...)},
		{"joules-agent", agentBin, []string{"--path.sysfs=" + sysfs, "--config.file=" + cfg.Name(), "--log.level=warn"}},
	} {
		r, err := measure(p.name, p.bin, p.args, scrapes, steady, slowEvery)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		results = append(results, r)
	}

	ne, ja := results[0], results[1]
	fmt.Printf("`%s`, %s.\n\n", command(), time.Now().Format("2006-01-02"))
	fmt.Printf("Same collectors (netdev, infiniband, hwmon, rapl; the agent's every %s) on %s, %d scrapes back to back, then %s unscraped, then %s at one scrape a second.\n\n",
		interval, filepath.Base(filepath.Dir(sysfs))+"/sys", scrapes, steady, steady)
	fmt.Println("| process | scrape p50 | scrape p99 | CPU per scrape | RSS after scrapes | CPU unscraped | CPU at 1 scrape/s | RSS at 1 scrape/s | exposition bytes |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		fmt.Printf("| %s | %s | %s | %s | %.1f MiB | %.2f %% | %.2f %% | %.1f MiB | %d |\n", r.name, r.p50, r.p99, r.cpuPerScrape,
			float64(r.rssKiB)/1024, r.idleCPUPercent, r.steadyCPUPercent, float64(r.steadyRSSKiB)/1024, r.bytes)
	}
	fmt.Printf("| joules / node_exporter | %.2f× | %.2f× | %.2f× | %.2f× | | %.2f× | %.2f× | %.2f× |\n",
		ratio(ja.p50, ne.p50), ratio(ja.p99, ne.p99), ratio(ja.cpuPerScrape, ne.cpuPerScrape),
		float64(ja.rssKiB)/float64(ne.rssKiB), ja.steadyCPUPercent/ne.steadyCPUPercent,
		float64(ja.steadyRSSKiB)/float64(ne.steadyRSSKiB), float64(ja.bytes)/float64(ne.bytes))

	fmt.Printf("\nThe same two processes at one scrape every %s for %s (the agent collects every %s whether scraped or not):\n\n", slowEvery, max(steady, 4*slowEvery), interval)
	fmt.Println("| figure | joules | peer (node_exporter) | ratio | goal |")
	fmt.Println("|---|---|---|---|---|")
	cpuRatio := ja.slowCPUPercent / ne.slowCPUPercent
	fmt.Printf("| CPU (of one core) | %.2f %% | %.2f %% | %.2f× | ≤ 1.2× %s |\n", ja.slowCPUPercent, ne.slowCPUPercent, cpuRatio, yes(cpuRatio <= 1.2))
	rssRatio := float64(ja.slowMem.rss) / float64(ne.slowMem.rss)
	fmt.Printf("| RSS (VmRSS) | %.1f MiB | %.1f MiB | %.2f× | ≤ 1.2× %s |\n", mib(ja.slowMem.rss), mib(ne.slowMem.rss), rssRatio, yes(rssRatio <= 1.2))
	fmt.Printf("| RSS anonymous | %.1f MiB | %.1f MiB | %.2f× | |\n", mib(ja.slowMem.anon), mib(ne.slowMem.anon), float64(ja.slowMem.anon)/float64(ne.slowMem.anon))
	fmt.Printf("| RSS file-backed | %.1f MiB | %.1f MiB | %.2f× | |\n", mib(ja.slowMem.file), mib(ne.slowMem.file), float64(ja.slowMem.file)/float64(ne.slowMem.file))
	fmt.Printf("| CPU at 1 scrape/s | %.2f %% | %.2f %% | %.2f× | ≤ 1.2× %s |\n", ja.steadyCPUPercent, ne.steadyCPUPercent,
		ja.steadyCPUPercent/ne.steadyCPUPercent, yes(ja.steadyCPUPercent/ne.steadyCPUPercent <= 1.2))
	fmt.Printf("| RSS at 1 scrape/s | %.1f MiB | %.1f MiB | %.2f× | ≤ 1.2× %s |\n", mib(ja.steadyRSSKiB), mib(ne.steadyRSSKiB),
		float64(ja.steadyRSSKiB)/float64(ne.steadyRSSKiB), yes(float64(ja.steadyRSSKiB)/float64(ne.steadyRSSKiB) <= 1.2))
	return nil
}

func runAgentOnly(agentBin, config, sysfs string, scrapes int, steady time.Duration) error {
	sysfs, err := filepath.Abs(sysfs)
	if err != nil {
		return err
	}
	r, err := measure("joules-agent", agentBin, []string{"--path.sysfs=" + sysfs, "--config.file=" + config, "--log.level=warn"}, scrapes, steady, 0)
	if err != nil {
		return err
	}
	fmt.Printf("joules-agent with %s, %d scrapes back to back, then %s unscraped, then %s at one scrape a second.\n\n", filepath.Base(config), scrapes, steady, steady)
	fmt.Println("| scrape p50 | scrape p99 | CPU per scrape | CPU unscraped | CPU at 1 scrape/s | RSS at 1 scrape/s | exposition bytes |")
	fmt.Println("|---|---|---|---|---|---|---|")
	fmt.Printf("| %s | %s | %s | %.2f %% | %.2f %% | %.1f MiB | %d |\n", r.p50, r.p99, r.cpuPerScrape, r.idleCPUPercent, r.steadyCPUPercent, float64(r.steadyRSSKiB)/1024, r.bytes)
	return nil
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// measure runs bin: scrapes back to back, steady unscraped, steady at one
// scrape a second and, when slowEvery is set, at least four scrapes at one
// every slowEvery.
func measure(name, bin string, args []string, scrapes int, steady, slowEvery time.Duration) (result, error) {
	addr, err := freeAddr()
	if err != nil {
		return result{}, err
	}
	cmd := exec.Command(bin, append(args, "--web.listen-address="+addr)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	url := "http://" + addr + "/metrics"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	if err := waitServing(client, url); err != nil {
		return result{}, err
	}
	time.Sleep(2 * time.Second) // let the agent's first collections land
	for range 50 {              // warm up
		if _, err := scrape(client, url); err != nil {
			return result{}, err
		}
	}

	r := result{name: name}
	cpu0, err := cpuTime(cmd.Process.Pid)
	if err != nil {
		return r, err
	}
	lat := make([]time.Duration, 0, scrapes)
	for range scrapes {
		start := time.Now()
		n, err := scrape(client, url)
		if err != nil {
			return r, err
		}
		lat = append(lat, time.Since(start))
		r.bytes = n
	}
	cpu1, _ := cpuTime(cmd.Process.Pid)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r.p50 = lat[len(lat)/2].Round(time.Microsecond)
	r.p99 = lat[len(lat)*99/100].Round(time.Microsecond)
	r.cpuPerScrape = ((cpu1 - cpu0) / time.Duration(scrapes)).Round(time.Microsecond)
	r.rssKiB, _ = rss(cmd.Process.Pid)

	// Unscraped: the agent still collects every interval; node_exporter idles.
	cpu0, _ = cpuTime(cmd.Process.Pid)
	start := time.Now()
	time.Sleep(steady)
	cpu1, _ = cpuTime(cmd.Process.Pid)
	r.idleCPUPercent = 100 * float64(cpu1-cpu0) / float64(time.Since(start))

	// Steady state: one scrape a second, as a Prometheus would.
	cpu0, _ = cpuTime(cmd.Process.Pid)
	start = time.Now()
	for time.Since(start) < steady {
		if _, err := scrape(client, url); err != nil {
			return r, err
		}
		time.Sleep(time.Second)
	}
	cpu1, _ = cpuTime(cmd.Process.Pid)
	r.steadyCPUPercent = 100 * float64(cpu1-cpu0) / float64(time.Since(start))
	r.steadyRSSKiB, _ = rss(cmd.Process.Pid)
	if slowEvery <= 0 {
		return r, nil
	}

	// A Prometheus at a common 15 s interval.
	length := max(steady, 4*slowEvery)
	cpu0, _ = cpuTime(cmd.Process.Pid)
	start = time.Now()
	for next := start; next.Sub(start) < length; next = next.Add(slowEvery) {
		time.Sleep(time.Until(next))
		if _, err := scrape(client, url); err != nil {
			return r, err
		}
	}
	time.Sleep(time.Until(start.Add(length)))
	cpu1, _ = cpuTime(cmd.Process.Pid)
	r.slowCPUPercent = 100 * float64(cpu1-cpu0) / float64(time.Since(start))
	r.slowMem, err = memory(cmd.Process.Pid)
	return r, err
}

func scrape(client *http.Client, url string) (int, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scrape: %s", resp.Status)
	}
	return int(n), err
}

func waitServing(client *http.Client, url string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := scrape(client, url); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func cpuTime(pid int) (time.Duration, error) { return procstat.CPUTime(pid) }

func rss(pid int) (int64, error) { return procstat.StatusKiB(pid, "VmRSS") }

// command is how this run was asked for, as it would be typed in the repository.
func command() string {
	return strings.Join(append([]string{"go run ./scripts/bench-agent"}, os.Args[1:]...), " ")
}
