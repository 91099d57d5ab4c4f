// Command bench-pipeline measures joules-aggregator as a whole process in
// front of a real InfluxDB 1.8: in "fleet" mode, N simulated agents each
// send one batch a second and the aggregator's sample-to-InfluxDB latency
// is read; in "blast" mode, 5,000-line batches are sent as fast as the
// aggregator takes them and its CPU per line is measured. It prints Markdown
// for BENCHMARKS.md. "soak" is the fleet for a long time (make soak: 30
// minutes, 1,000 hosts, GPU energy counters so accounting works too),
// sampling the aggregator's RSS, goroutines and file descriptors; it fails
// unless they stay flat and every point accepted is in InfluxDB.
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/joules-energy/joules/internal/procstat"
)

func main() {
	var (
		mode     = flag.String("mode", "fleet", "fleet, blast, soak, peer (against Telegraf) or cluster (one process against the tier on NATS)")
		natsBin  = flag.String("nats-server", "nats-server", "cluster: nats-server binary")
		sample   = flag.Duration("sample", time.Minute, "soak: how often to sample the aggregator")
		aggBin   = flag.String("aggregator", "bin/joules-aggregator", "joules-aggregator binary")
		influxd  = flag.String("influxd", "influxd", "influxd 1.8 binary")
		hosts    = flag.Int("hosts", 1000, "fleet: simulated agents")
		series   = flag.Int("series", 10, "fleet: series per agent")
		duration = flag.Duration("duration", 60*time.Second, "how long to load")
		fields   = flag.Int("fields", 10, "blast: fields per line")
		gz       = flag.Bool("gzip", true, "compress requests")
		senders  = flag.Int("senders", 2, "blast: concurrent senders")
		telegraf = flag.String("telegraf", "", "peer: telegraf binary (default: built once into the user's cache folder)")
		runs     = flag.Int("runs", 3, "peer: runs per load")
		workers  = flag.Int("workers", 4, "peer: concurrent writers")
		warmup   = flag.Duration("warmup", 2*time.Second, "peer: load before measuring")
		loads    = flag.String("loads", "10,10gz,1", "peer: loads, each fields per line with gz for gzip")
		profile  = flag.String("profile", "", "peer: write the aggregator's CPU profile of each load's first run into this folder")
	)
	flag.Parse()
	if *mode == "cluster" {
		if err := runCluster(*aggBin, *influxd, *natsBin, *hosts, *series, *duration); err != nil {
			fmt.Fprintln(os.Stderr, "bench-pipeline:", err)
			os.Exit(1)
		}
		return
	}
	if *mode == "peer" {
		d := *duration
		if !isFlagSet("duration") {
			d = 20 * time.Second
		}
		ls, err := parseLoads(*loads)
		if err == nil {
			err = runPeer(peerOptions{aggBin: *aggBin, influxd: *influxd, telegraf: *telegraf, profileDir: *profile, runs: *runs, workers: *workers, warmup: *warmup, duration: d, loads: ls})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-pipeline:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*mode, *aggBin, *influxd, *hosts, *series, *duration, *fields, *gz, *senders, *sample); err != nil {
		fmt.Fprintln(os.Stderr, "bench-pipeline:", err)
		os.Exit(1)
	}
}

func isFlagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// parseLoads reads "10,10gz,1".
func parseLoads(s string) ([]peerLoad, error) {
	var out []peerLoad
	for _, part := range strings.Split(s, ",") {
		l := peerLoad{}
		part, l.gzip = strings.CutSuffix(strings.TrimSpace(part), "gz")
		n, err := strconv.Atoi(part)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-loads %q: each load is a number of fields, with gz for gzip (10,10gz,1)", s)
		}
		l.fields = n
		out = append(out, l)
	}
	return out, nil
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitHTTP(u string) error { return waitHTTPFor(u, 30*time.Second) }

func waitHTTPFor(u string, within time.Duration) error {
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
		}
	}
	return fmt.Errorf("%s did not answer", u)
}

// startInfluxDB starts influxd 1.8 with its files under dir and the
// database joules created; stop ends it.
func startInfluxDB(influxd, dir string) (addr string, stop func(), err error) {
	addr = freeAddr()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", nil, err
	}
	conf := filepath.Join(dir, "influxdb.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("reporting-disabled = true\nbind-address = %q\n[meta]\n  dir = %q\n[data]\n  dir = %q\n  wal-dir = %q\n  query-log-enabled = false\n[http]\n  bind-address = %q\n  flux-enabled = true\n  log-enabled = false\n[logging]\n  level = \"warn\"\n[monitor]\n  store-enabled = false\n",
		freeAddr(), filepath.Join(dir, "meta"), filepath.Join(dir, "data"), filepath.Join(dir, "wal"), addr)), 0o600)
	db := exec.Command(influxd, "-config", conf)
	if err := db.Start(); err != nil {
		return "", nil, fmt.Errorf("influxd: %w", err)
	}
	stop = func() { _ = db.Process.Signal(syscall.SIGTERM); _ = db.Wait() }
	if err := waitHTTP("http://" + addr + "/ping"); err != nil {
		stop()
		return "", nil, err
	}
	if resp, err := http.PostForm("http://"+addr+"/query", url.Values{"q": {"CREATE DATABASE joules"}}); err == nil {
		resp.Body.Close()
	}
	return addr, stop, nil
}

// startAggregator starts joules-aggregator as shipped (accounting on, the
// output spooled and fsynced) writing to InfluxDB at influxAddr, with its
// files under dir.
func startAggregator(aggBin, dir, influxAddr string, pprof bool) (*exec.Cmd, string, error) {
	aggAddr := freeAddr()
	os.WriteFile(filepath.Join(dir, "tokens"), []byte("bench\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "agg.yml"), []byte(fmt.Sprintf("tokens_file: %s\nlimits: {requests_per_second: 0} # every simulated agent writes from this one address\ninflux:\n  url: http://%s\n  bucket: joules/autogen\n  spool_dir: %s\n  dead_letter_file: %s\naccounting: {state_file: %s}\n",
		filepath.Join(dir, "tokens"), influxAddr, filepath.Join(dir, "spool"), filepath.Join(dir, "dead.lp"), filepath.Join(dir, "accounting.state"))), 0o600)
	args := []string{"--config.file=" + filepath.Join(dir, "agg.yml"), "--web.listen-address=" + aggAddr, "--log.level=warn"}
	if pprof {
		args = append(args, "--debug.pprof")
	}
	agg := exec.Command(aggBin, args...)
	agg.Stderr = os.Stderr
	if err := agg.Start(); err != nil {
		return nil, "", err
	}
	if err := waitHTTP("http://" + aggAddr + "/health"); err != nil {
		_ = agg.Process.Kill()
		_ = agg.Wait()
		return nil, "", err
	}
	return agg, aggAddr, nil
}

func run(mode, aggBin, influxd string, hosts, series int, duration time.Duration, fields int, gz bool, senders int, sample time.Duration) error {
	dir, err := os.MkdirTemp("", "bench-pipeline")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	influxAddr, stopInflux, err := startInfluxDB(influxd, dir)
	if err != nil {
		return err
	}
	defer stopInflux()
	agg, aggAddr, err := startAggregator(aggBin, dir, influxAddr, false)
	if err != nil {
		return err
	}
	defer func() { _ = agg.Process.Signal(syscall.SIGTERM); _ = agg.Wait() }()
	write := "http://" + aggAddr + "/api/v2/write?precision=ms"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 30 * time.Second}
	send := func(body []byte) error { return post(client, write, body, gz) }
	cpu0 := cpuTime(agg.Process.Pid)
	start := time.Now()
	var lines atomic.Int64
	var failures atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var wg sync.WaitGroup
	var samples []soakSample
	if mode == "soak" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			samples = sampleAggregator(ctx, agg.Process.Pid, "http://"+aggAddr+"/metrics", sample, start)
		}()
	}
	switch mode {
	case "fleet", "soak":
		// Each agent samples every second and sends the batch at once, like
		// an agent with flush_interval 1s; agents are spread over the second.
		for h := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(h) * time.Second / time.Duration(hosts))
				tick := time.NewTicker(time.Second)
				defer tick.Stop()
				for {
					body, n := agentLines(h, series, time.Now(), mode == "soak")
					if err := send(body); err != nil {
						failures.Add(1)
					} else {
						lines.Add(int64(n))
					}
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
				}
			}()
		}
	case "blast":
		for s := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					var b bytes.Buffer
					base := time.Now().Add(-time.Hour).UnixMilli()
					for l := range 5000 {
						fmt.Fprintf(&b, "nvidia_gpu,host=gpu-%03d,gpu=%d,sender=%d ", l/8, l%8, s)
						for f := range fields {
							if f > 0 {
								b.WriteByte(',')
							}
							fmt.Fprintf(&b, "f%d=%d.%d", f, 300+l%400, f)
						}
						fmt.Fprintf(&b, " %d\n", base+int64(i*5000+l))
					}
					if err := send(b.Bytes()); err != nil {
						failures.Add(1)
						continue
					}
					lines.Add(5000)
				}
			}()
		}
	default:
		return fmt.Errorf("mode %q: fleet, blast or soak", mode)
	}
	wg.Wait()
	if mode == "soak" {
		return soakVerdict(samples, lines.Load(), failures.Load(), influxAddr, "http://"+aggAddr+"/metrics")
	}
	elapsed := time.Since(start)
	cpu := cpuTime(agg.Process.Pid) - cpu0
	rss := rssMiB(agg.Process.Pid)
	time.Sleep(5 * time.Second) // let the last requests reach InfluxDB
	metrics := scrape("http://" + aggAddr + "/metrics")
	if os.Getenv("BENCH_DEBUG") != "" {
		for k, v := range metrics {
			if strings.HasPrefix(k, "joules_") {
				fmt.Fprintln(os.Stderr, k, v)
			}
		}
	}
	if len(metrics) == 0 {
		return fmt.Errorf("could not read the aggregator's metrics")
	}
	fmt.Printf("| mode | load | lines accepted/s | aggregator CPU | lines per aggregator CPU-second | aggregator RSS | latency p50 / p99 | written to InfluxDB | failed requests |\n|---|---|---|---|---|---|---|---|---|\n")
	load := fmt.Sprintf("%d agents × %d series at 1 Hz", hosts, series)
	if mode == "blast" {
		load = fmt.Sprintf("%d senders × 5,000-line batches, %d fields, gzip %v", senders, fields, gz)
	}
	latency := "n/a (old timestamps)"
	if mode == "fleet" {
		latency = fmt.Sprintf("%.3fs / %.3fs", metrics[`joules_output_latency_seconds{quantile="0.5"}`], metrics[`joules_output_latency_seconds{quantile="0.99"}`])
	}
	fmt.Printf("| %s | %s | %.0f | %.1f %% | %.0f | %.1f MiB | %s | %.0f | %d |\n", mode, load, float64(lines.Load())/elapsed.Seconds(),
		100*cpu.Seconds()/elapsed.Seconds(), float64(lines.Load())/cpu.Seconds(), rss, latency,
		metrics["joules_output_written_points_total"], failures.Load())
	return nil
}

// post writes body (gzipped when gz) with the bench token and wants 204.
func post(client *http.Client, url string, body []byte, gz bool) error {
	if gz {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
		zw.Write(body)
		zw.Close()
		body = b.Bytes()
	}
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Token bench")
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("write: %s", resp.Status)
	}
	return nil
}

func scrape(u string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get(u)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.LastIndexByte(line, ' '); i > 0 && !strings.HasPrefix(line, "#") {
			v, _ := strconv.ParseFloat(line[i+1:], 64)
			out[line[:i]] = v
		}
	}
	return out
}

func cpuTime(pid int) time.Duration {
	d, _ := procstat.CPUTime(pid)
	return d
}

func rssMiB(pid int) float64 { return statusMiB(pid, "VmRSS") }

// statusMiB reads a size from /proc/PID/status, in MiB.
func statusMiB(pid int, field string) float64 {
	kib, _ := procstat.StatusKiB(pid, field)
	return float64(kib) / 1024
}

// soakSample is the aggregator's state at one moment of a soak.
type soakSample struct {
	at                       time.Duration
	rssMiB                   float64
	goroutines, fds, spooled float64
	series                   float64
}

// sampleAggregator samples until ctx ends, printing each sample.
func sampleAggregator(ctx context.Context, pid int, metricsURL string, every time.Duration, start time.Time) []soakSample {
	var out []soakSample
	fmt.Printf("| elapsed | RSS | goroutines | open files | output spool points | accounting series |\n|---|---|---|---|---|---|\n")
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return out
		case <-tick.C:
		}
		m := scrape(metricsURL)
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		s := soakSample{at: time.Since(start).Round(time.Second), rssMiB: rssMiB(pid), goroutines: m["go_goroutines"], fds: float64(len(fds)),
			spooled: m["joules_output_spool_points"], series: m["joules_accounting_series"]}
		fmt.Printf("| %s | %.1f MiB | %.0f | %.0f | %.0f | %.0f |\n", s.at, s.rssMiB, s.goroutines, s.fds, s.spooled, s.series)
		out = append(out, s)
	}
}

// soakVerdict fails the soak unless the aggregator stayed flat (after the
// first quarter, its warm-up) and every accepted point is in InfluxDB.
func soakVerdict(samples []soakSample, accepted, failed int64, influxAddr, metricsURL string) error {
	if len(samples) < 8 {
		return fmt.Errorf("soak: only %d samples; run longer or sample more often", len(samples))
	}
	q := len(samples) / 4
	peak := func(part []soakSample, f func(soakSample) float64) float64 {
		v := 0.0
		for _, s := range part {
			v = max(v, f(s))
		}
		return v
	}
	rss := func(s soakSample) float64 { return s.rssMiB }
	gor := func(s soakSample) float64 { return s.goroutines }
	fds := func(s soakSample) float64 { return s.fds }
	early, late := samples[q:2*q], samples[3*q:]
	var problems []string
	if a, b := peak(early, rss), peak(late, rss); b > a*1.2+5 {
		problems = append(problems, fmt.Sprintf("RSS grew from %.1f to %.1f MiB", a, b))
	}
	// Connections from the simulated fleet come and go with load (a
	// goroutine and a file each), so these may wander by a quarter; a leak
	// grows without bound.
	if a, b := peak(early, gor), peak(late, gor); b > a*1.25+20 {
		problems = append(problems, fmt.Sprintf("goroutines grew from %.0f to %.0f", a, b))
	}
	if a, b := peak(early, fds), peak(late, fds); b > a*1.25+20 {
		problems = append(problems, fmt.Sprintf("open files grew from %.0f to %.0f", a, b))
	}
	// Every accepted point reaches InfluxDB once the output spool drains.
	var stored int64
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
		if scrape(metricsURL)["joules_output_spool_points"] > 0 {
			continue
		}
		if stored = fluxCount(influxAddr, `r._measurement == "joules_gpu_power_watts" or r._measurement == "joules_gpu_energy_joules_total"`); stored >= accepted {
			break
		}
	}
	if stored != accepted {
		problems = append(problems, fmt.Sprintf("InfluxDB holds %d raw points, %d were accepted", stored, accepted))
	}
	fmt.Printf("\nsoak: %d points accepted, %d in InfluxDB, %d requests failed\n", accepted, stored, failed)
	if len(problems) > 0 {
		return fmt.Errorf("soak failed: %s", strings.Join(problems, "; "))
	}
	fmt.Println("soak: RSS, goroutines and open files flat; no point lost")
	return nil
}

// fluxCount counts the points that pass a Flux filter.
func fluxCount(influxAddr, filter string) int64 {
	q := `from(bucket: "joules/autogen") |> range(start: 0) |> filter(fn: (r) => ` + filter + `) |> group() |> count()`
	req, _ := http.NewRequest(http.MethodPost, "http://"+influxAddr+"/api/v2/query", strings.NewReader(q))
	req.Header.Set("Content-Type", "application/vnd.flux")
	req.Header.Set("Accept", "application/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	rows := strings.Split(strings.ReplaceAll(string(body), "\r", ""), "\n")
	var header []string
	for _, row := range rows {
		if row == "" || strings.HasPrefix(row, "#") {
			continue
		}
		cols := strings.Split(row, ",")
		if header == nil {
			header = cols
			continue
		}
		for i, h := range header {
			if h == "_value" && i < len(cols) {
				n, _ := strconv.ParseInt(cols[i], 10, 64)
				return n
			}
		}
	}
	return 0
}
