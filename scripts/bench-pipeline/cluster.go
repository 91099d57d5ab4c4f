package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// tierRun is one configuration of the cluster benchmark.
type tierRun struct {
	name        string
	pids        []int
	names       []string // of pids: nats, ingest, worker, aggregator
	writeURLs   []string
	metricsURLs []string // of the members that write to InfluxDB
	stop        func()
	workers     int
}

// runCluster loads one process and then the tier (three NATS servers, two
// ingest replicas, workers) with the same simulated fleet, each agent
// sending its batch every second, and reports lines per CPU-second of all
// the tier's processes (NATS included), the lag from sample to InfluxDB,
// and what changes from one worker to three.
func runCluster(aggBin, influxd, natsBin string, hosts, series int, duration time.Duration) error {
	fmt.Printf("| configuration | load | lines accepted/s | CPU (all its processes) | lines per CPU-second | lag p50 / p99 | failed requests |\n|---|---|---|---|---|---|---|\n")
	for _, workers := range []int{0, 1, 3} {
		dir, err := os.MkdirTemp("", "bench-cluster")
		if err != nil {
			return err
		}
		influxAddr, stopInflux, err := startInfluxDB(influxd, filepath.Join(dir, "influx"))
		if err != nil {
			return err
		}
		r, err := startTier(aggBin, natsBin, dir, influxAddr, workers)
		if err != nil {
			stopInflux()
			return err
		}
		err = loadTier(r, hosts, series, duration)
		r.stop()
		stopInflux()
		os.RemoveAll(dir)
		if err != nil {
			return err
		}
	}
	return nil
}

func startTier(aggBin, natsBin, dir, influxAddr string, workers int) (*tierRun, error) {
	os.WriteFile(filepath.Join(dir, "tokens"), []byte("bench\n"), 0o600)
	var procs []*exec.Cmd
	r := &tierRun{workers: workers}
	r.stop = func() {
		for i := len(procs) - 1; i >= 0; i-- {
			_ = procs[i].Process.Signal(syscall.SIGTERM)
			_ = procs[i].Wait()
		}
	}
	logs, err := os.Create(filepath.Join(dir, "tier.log"))
	if err != nil {
		return nil, err
	}
	start := func(role, bin string, args ...string) error {
		c := exec.Command(bin, args...)
		c.Stdout, c.Stderr = logs, logs // nats-server logs every connection
		if err := c.Start(); err != nil {
			return err
		}
		procs = append(procs, c)
		r.pids, r.names = append(r.pids, c.Process.Pid), append(r.names, role)
		return nil
	}
	if workers == 0 {
		r.name = "one process"
		agg, addr, err := startAggregator(aggBin, dir, influxAddr, false)
		if err != nil {
			return nil, err
		}
		procs, r.pids, r.names = append(procs, agg), append(r.pids, agg.Process.Pid), append(r.names, "aggregator")
		r.writeURLs = []string{"http://" + addr + "/api/v2/write?precision=ms"}
		r.metricsURLs = []string{"http://" + addr + "/metrics"}
		return r, nil
	}
	r.name = fmt.Sprintf("tier: 3 NATS, 2 ingest, %d worker(s)", workers)
	var clients, routes []string
	for range 3 {
		clients = append(clients, freeAddr())
		routes = append(routes, freeAddr())
	}
	for i := range 3 {
		conf := filepath.Join(dir, fmt.Sprintf("nats-%d.conf", i))
		var rs []string
		for j, rt := range routes {
			if j != i {
				rs = append(rs, "nats-route://"+rt)
			}
		}
		os.WriteFile(conf, []byte(fmt.Sprintf("server_name: n%d\nlisten: %s\nmax_payload: 8MB\njetstream { store_dir: %q }\ncluster { name: bench, listen: %s, routes: [%s] }\n",
			i, clients[i], filepath.Join(dir, fmt.Sprintf("nats-%d", i)), routes[i], strings.Join(rs, ", "))), 0o600)
		if err := start("nats", natsBin, "-c", conf); err != nil {
			r.stop()
			return nil, fmt.Errorf("nats-server: %w", err)
		}
	}
	urls := "[nats://" + strings.Join(clients, ", nats://") + "]"
	member := func(role, name, roles string) (string, error) {
		addr := freeAddr()
		cfg := filepath.Join(dir, name+".yml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("tokens_file: %s\nlimits: {requests_per_second: 0}\ninflux: {url: http://%s, bucket: joules/autogen, spool_dir: %s, dead_letter_file: %s}\ncluster: {urls: %s, name: %s, roles: [%s], replicas: 3}\n",
			filepath.Join(dir, "tokens"), influxAddr, filepath.Join(dir, name+"-spool"), filepath.Join(dir, name+"-dead.lp"), urls, name, roles)), 0o600)
		if err := start(role, aggBin, "--config.file="+cfg, "--web.listen-address="+addr, "--log.level=warn"); err != nil {
			return "", err
		}
		// A member is up once JetStream has elected its leaders and the
		// streams are set up: longer than one process takes.
		if err := waitHTTPFor("http://"+addr+"/health", 90*time.Second); err != nil {
			raw, _ := os.ReadFile(filepath.Join(dir, "tier.log"))
			if len(raw) > 4000 {
				raw = raw[len(raw)-4000:]
			}
			return "", fmt.Errorf("%s: %w; the tier's log ends:\n%s", name, err, raw)
		}
		return addr, nil
	}
	for i := range 2 {
		addr, err := member("ingest", fmt.Sprintf("ingest-%d", i), "ingest")
		if err != nil {
			r.stop()
			return nil, err
		}
		r.writeURLs = append(r.writeURLs, "http://"+addr+"/api/v2/write?precision=ms")
	}
	for i := range workers {
		addr, err := member("worker", fmt.Sprintf("worker-%d", i), "worker, rollup")
		if err != nil {
			r.stop()
			return nil, err
		}
		r.metricsURLs = append(r.metricsURLs, "http://"+addr+"/metrics")
	}
	return r, nil
}

// loadTier runs the fleet against a configuration and prints its row.
func loadTier(r *tierRun, hosts, series int, duration time.Duration) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 30 * time.Second}
	var lines, failures atomic.Int64
	// Load first (15 s for the tier: its workers share the partitions out
	// and open their first windows), then the measured part.
	warm := 2 * time.Second
	if r.workers > 0 {
		warm = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration+warm)
	defer cancel()
	var cpu0 time.Duration
	cpuOf := make([]time.Duration, len(r.pids))
	var start time.Time
	measuring := make(chan struct{})
	go func() {
		time.Sleep(warm)
		for i, pid := range r.pids {
			cpuOf[i] = cpuTime(pid)
			cpu0 += cpuOf[i]
		}
		start = time.Now()
		lines.Store(0)
		failures.Store(0)
		close(measuring)
	}()
	var wg sync.WaitGroup
	for h := range hosts {
		wg.Go(func() {
			time.Sleep(time.Duration(h) * time.Second / time.Duration(hosts))
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			url := r.writeURLs[h%len(r.writeURLs)]
			for {
				now := time.Now()
				body, n := agentLines(h, series, now, true)
				if err := post(client, url, body, false); err != nil {
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
		})
	}
	wg.Wait()
	<-measuring
	elapsed := time.Since(start)
	var cpu time.Duration
	byRole := map[string]time.Duration{}
	for i, pid := range r.pids {
		c := cpuTime(pid)
		cpu += c
		byRole[r.names[i]] += c - cpuOf[i]
	}
	cpu -= cpu0
	var parts []string
	for _, role := range []string{"aggregator", "nats", "ingest", "worker"} {
		if c, ok := byRole[role]; ok {
			parts = append(parts, fmt.Sprintf("%s %.0f %%", role, 100*c.Seconds()/elapsed.Seconds()))
		}
	}
	time.Sleep(5 * time.Second) // the last requests reach InfluxDB before the lag is read
	p50, p99 := 0.0, 0.0
	for _, u := range r.metricsURLs {
		m := scrape(u)
		p50 = max(p50, m[`joules_output_latency_seconds{quantile="0.5"}`])
		p99 = max(p99, m[`joules_output_latency_seconds{quantile="0.99"}`])
	}
	fmt.Printf("| %s | %d hosts × %d series + a GPU energy counter, 1 Hz | %.0f | %.0f %% (%s) | %.0f | %.3fs / %.3fs | %d |\n", r.name, hosts, series,
		float64(lines.Load())/elapsed.Seconds(), 100*cpu.Seconds()/elapsed.Seconds(), strings.Join(parts, ", "), float64(lines.Load())/cpu.Seconds(), p50, p99, failures.Load())
	return nil
}

// agentLines is one simulated agent's batch: series GPU power gauges and,
// with energy, a GPU energy counter that accounting counts.
func agentLines(h, series int, now time.Time, energy bool) ([]byte, int) {
	var b bytes.Buffer
	for s := range series {
		fmt.Fprintf(&b, "joules_gpu_power_watts,host=gpu-%04d,gpu=%d,site=dc1 value=%d.5 %d\n", h, s, 300+s, now.UnixMilli())
	}
	n := series
	if energy {
		n++
		fmt.Fprintf(&b, "joules_gpu_energy_joules_total,hall=h%d,host=gpu-%04d,gpu=0,method=counter,site=dc1 value=%d %d\n", h%4, h, now.UnixMilli()*300/1000, now.UnixMilli())
	}
	return b.Bytes(), n
}
