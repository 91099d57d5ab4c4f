package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/joules-energy/joules/internal/procstat"
)

// goalOptions is the shape of DESIGN.md's agent budget.
type goalOptions struct {
	agentBin, joulesBin, mockup, sysfs, config string
	steady, scrapeEvery                        time.Duration
	burst                                      int
	profile                                    string // CPU profile of the steady period, written here when set
	heapProfile                                string // heap profile at the end of the steady period, written here when set
}

// runGoal measures the agent as the budget describes it: the config's GPUs
// and node collectors, one simulated BMC every 10 s, streaming every sample
// to an in-process InfluxDB v2 write sink, scraped every scrapeEvery. It
// prints CPU and memory over the steady period, then /metrics latency over
// a burst with the BMC healthy and with it hanging.
func runGoal(o goalOptions) error {
	sysfs, err := filepath.Abs(o.sysfs)
	if err != nil {
		return err
	}
	base, err := os.ReadFile(o.config)
	if err != nil {
		return fmt.Errorf("agent config: %w", err)
	}
	dir, err := os.MkdirTemp("", "bench-goal")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sim, err := startSim(o.joulesBin, o.mockup, dir, 1)
	if err != nil {
		return err
	}
	defer sim.stop()

	sink, err := startSink()
	if err != nil {
		return err
	}
	defer sink.server.Close()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("bench-token\n"), 0o600); err != nil {
		return err
	}

	// The BMC is appended to the base config's sources block, which must
	// come last in it; the stream is a section of its own.
	cfg := bytes.NewBuffer(base)
	fmt.Fprintf(cfg, "\n  redfish:\n    - {name: %s, endpoint: %q, username: monitor, password_file: %s, ca_file: %s, interval: 10s}\n",
		sim.endpoints[0], sim.endpoints[1], sim.pass, sim.ca)
	fmt.Fprintf(cfg, "exporters:\n  stream: {url: %q, token_file: %s, spool_dir: %s}\n", sink.url, token, filepath.Join(dir, "spool"))
	cfgFile := filepath.Join(dir, "agent.yml")
	if err := os.WriteFile(cfgFile, cfg.Bytes(), 0o600); err != nil {
		return err
	}

	addr, err := freeAddr()
	if err != nil {
		return err
	}
	args := []string{"--config.file=" + cfgFile, "--path.sysfs=" + sysfs, "--web.listen-address=" + addr, "--log.level=warn"}
	if o.profile != "" || o.heapProfile != "" {
		args = append(args, "--debug.pprof")
	}
	agent := exec.Command(o.agentBin, args...)
	agent.Stderr = os.Stderr
	if err := agent.Start(); err != nil {
		return err
	}
	defer func() { _ = agent.Process.Signal(syscall.SIGTERM); _ = agent.Wait() }()
	pid := agent.Process.Pid
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	url := "http://" + addr + "/metrics"
	if err := waitServing(client, url); err != nil {
		return err
	}
	// The first BMC poll includes discovery; the steady period starts after it.
	if err := waitFor(client, url, 30*time.Second, func(body string) bool {
		return sourceUp(body, "redfish") == "1"
	}); err != nil {
		return fmt.Errorf("BMC never read: %w", err)
	}

	var profileDone chan error
	if o.profile != "" {
		profileDone = make(chan error, 1)
		go func() {
			profileDone <- fetchProfile("http://"+addr+"/debug/pprof/profile?seconds="+strconv.Itoa(int(o.steady.Seconds())), o.profile)
		}()
	}
	lines0 := sink.lines.Load()
	cpu0, err := cpuTime(pid)
	if err != nil {
		return err
	}
	start := time.Now()
	for next := start; time.Since(start) < o.steady; next = next.Add(o.scrapeEvery) {
		time.Sleep(time.Until(next))
		if time.Since(start) >= o.steady {
			break
		}
		if _, err := scrape(client, url); err != nil {
			return err
		}
	}
	time.Sleep(time.Until(start.Add(o.steady)))
	cpu1, _ := cpuTime(pid)
	elapsed := time.Since(start)
	cpuPct := 100 * float64(cpu1-cpu0) / float64(elapsed)
	mem, err := memory(pid)
	if err != nil {
		return err
	}
	linesPerSec := float64(sink.lines.Load()-lines0) / elapsed.Seconds()
	if o.heapProfile != "" {
		if err := fetchProfile("http://"+addr+"/debug/pprof/heap", o.heapProfile); err != nil {
			return err
		}
	}
	if profileDone != nil {
		if err := <-profileDone; err != nil {
			return err
		}
	}

	// CPU per scrape alongside the latencies: on a shared machine another
	// process's load moves the p99, much less the agent's own CPU time.
	var burstCPU time.Duration
	burst := func() (time.Duration, time.Duration, error) {
		c0, _ := cpuTime(pid)
		defer func() { c1, _ := cpuTime(pid); burstCPU = (c1 - c0) / time.Duration(o.burst) }()
		return scrapeBurst(client, url, o.burst)
	}
	p50, p99, err := burst()
	if err != nil {
		return err
	}
	healthyCPU := burstCPU
	if err := hangBMC(sim.adminAddr, sim.endpoints[0]); err != nil {
		return err
	}
	// joules_source_up of the BMC turns 0 when a poll has hung to its
	// deadline; the next poll hangs as well, so the burst runs while it does.
	if err := waitFor(client, url, 40*time.Second, func(body string) bool {
		return sourceUp(body, "redfish") == "0"
	}); err != nil {
		return fmt.Errorf("the hung BMC's poll never timed out: %w", err)
	}
	hp50, hp99, err := burst()
	if err != nil {
		return err
	}
	hangingCPU := burstCPU

	fmt.Printf("`%s`, %s: joules-agent with %s plus one simulated BMC (%s over HTTPS, every 10 s), streaming to an in-process write sink (%.0f lines/s), scraped every %s for %s; then %d scrapes 20 ms apart, healthy and with the BMC hanging. Load average at the end: %s.\n\n",
		command(), time.Now().Format("2006-01-02"), filepath.Base(o.config), filepath.Base(o.mockup), linesPerSec, o.scrapeEvery, o.steady, o.burst, procstat.LoadAvg())
	fmt.Println("| figure | joules-agent | budget | met |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| CPU (of one core) | %.2f %% | 0.5 %% | %s |\n", cpuPct, yes(cpuPct <= 0.5))
	fmt.Printf("| RSS (VmRSS) | %.1f MiB (%.1f MB) | 25 MB | %s |\n", mib(mem.rss), mb(mem.rss), yes(mb(mem.rss) <= 25))
	fmt.Printf("| RSS anonymous / file-backed | %.1f / %.1f MiB | | |\n", mib(mem.anon), mib(mem.file))
	fmt.Printf("| /metrics p50 / p99, BMC healthy | %s / %s | p99 5ms | %s |\n", p50, p99, yes(p99 <= 5*time.Millisecond))
	fmt.Printf("| /metrics p50 / p99, BMC hanging | %s / %s | p99 5ms | %s |\n", hp50, hp99, yes(hp99 <= 5*time.Millisecond))
	fmt.Printf("| agent CPU during the burst per scrape (collections included), healthy / hanging | %s / %s | | |\n", healthyCPU.Round(10*time.Microsecond), hangingCPU.Round(10*time.Microsecond))
	return nil
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

func mib(kib int64) float64 { return float64(kib) / 1024 }
func mb(kib int64) float64  { return float64(kib) * 1024 / 1e6 }

// sink is an InfluxDB v2 write API that keeps nothing: it counts the lines
// it is sent and answers 204, as a healthy aggregator does.
type sink struct {
	server *http.Server
	url    string
	lines  atomic.Int64
}

func startSink() (*sink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{url: "http://" + l.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v2/write", func(w http.ResponseWriter, r *http.Request) {
		body := io.Reader(r.Body)
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			defer zr.Close()
			body = zr
		}
		var n int64
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if len(sc.Bytes()) > 0 {
				n++
			}
		}
		s.lines.Add(n)
		w.WriteHeader(http.StatusNoContent)
	})
	s.server = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.server.Serve(l) }()
	return s, nil
}

// waitFor scrapes url until ok holds for the body or timeout passes.
func waitFor(client *http.Client, url string, timeout time.Duration, ok func(string) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		body, err := get(client, url)
		if err == nil && ok(body) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func get(client *http.Client, url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return string(raw), err
}

// sourceUp is the value of joules_source_up for source in an exposition,
// or "" when it has none yet.
func sourceUp(body, source string) string {
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "joules_source_up{") && strings.Contains(line, `source="`+source+`"`) {
			return line[strings.LastIndexByte(line, ' ')+1:]
		}
	}
	return ""
}

func fetchProfile(url, out string) error {
	resp, err := http.Get(url)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %s (does the agent have --debug.pprof?)", resp.Status)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile: %w", err)
	}
	return f.Close()
}

// mem is a process's resident memory in KiB: all of it, its anonymous
// pages (heap, stacks: what the process itself allocated) and its
// file-backed pages (mostly the binary's text and data, shared and
// reclaimable).
type mem struct{ rss, anon, file int64 }

func memory(pid int) (mem, error) {
	var m mem
	var err error
	if m.rss, err = procstat.StatusKiB(pid, "VmRSS"); err != nil {
		return m, err
	}
	m.file, _ = procstat.StatusKiB(pid, "RssFile")
	m.anon, err = procstat.AnonKiB(pid)
	return m, err
}
