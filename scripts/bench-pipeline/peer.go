package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The peer comparison: the same load generator posts the same 5,000-line
// batches to joules-aggregator (accounting on, output spooled with fsync
// and written to a real InfluxDB, as shipped) and to Telegraf's
// influxdb_v2_listener with outputs.discard, one after the other in the
// same run, and compares lines per CPU-second of each server process (its
// own user+system time from /proc) and its peak RSS.

const telegrafVersion = "v1.37.2"

// peerLoad is one kind of request body.
type peerLoad struct {
	fields int
	gzip   bool
}

func (l peerLoad) String() string {
	s := fmt.Sprintf("%d field", l.fields)
	if l.fields != 1 {
		s += "s"
	}
	if l.gzip {
		return s + ", gzip"
	}
	return s + ", plain"
}

// peerResult is one server under one load.
type peerResult struct {
	lines      int64
	cpu        time.Duration
	elapsed    time.Duration
	peakRSSMiB float64
	failures   int64
}

func (r peerResult) perCPUSecond() float64 {
	if r.cpu <= 0 {
		return 0
	}
	return float64(r.lines) / r.cpu.Seconds()
}

type peerOptions struct {
	aggBin, influxd, telegraf, profileDir string
	runs, workers                         int
	warmup, duration                      time.Duration
	loads                                 []peerLoad
}

func runPeer(o peerOptions) error {
	tg, err := telegrafBinary(o.telegraf)
	if err != nil {
		return err
	}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o750); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "bench-peer")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	influxAddr, stopInflux, err := startInfluxDB(o.influxd, filepath.Join(dir, "influxdb"))
	if err != nil {
		return err
	}
	defer stopInflux()
	fmt.Printf("%d workers posting 5,000-line batches, %s warm-up, %s measured, %d runs per load; lines per CPU-second of each server process\n\n", o.workers, o.warmup, o.duration, o.runs)
	fmt.Println("| load | run | joules lines/CPU-s | Telegraf lines/CPU-s | ratio | joules peak RSS | Telegraf peak RSS | RSS ratio |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	type summary struct {
		load             peerLoad
		ratios, rssRatio []float64
	}
	var sums []summary
	for _, load := range o.loads {
		bodies := peerBodies(load, o.workers)
		s := summary{load: load}
		for run := 1; run <= o.runs; run++ {
			runDir := filepath.Join(dir, fmt.Sprintf("run-%d-%d-%v", run, load.fields, load.gzip))
			if err := os.MkdirAll(runDir, 0o750); err != nil {
				return err
			}
			profile := ""
			if o.profileDir != "" && run == 1 {
				profile = filepath.Join(o.profileDir, fmt.Sprintf("aggregator-%d-fields-gzip-%v.pprof", load.fields, load.gzip))
			}
			j, err := measureJoules(o, runDir, influxAddr, bodies, load.gzip, profile)
			if err != nil {
				return fmt.Errorf("joules, %s: %w", load, err)
			}
			t, err := measureTelegraf(o, tg, runDir, bodies, load.gzip)
			if err != nil {
				return fmt.Errorf("telegraf, %s: %w", load, err)
			}
			if j.failures > 0 || t.failures > 0 {
				return fmt.Errorf("%s: failed requests: joules %d, telegraf %d", load, j.failures, t.failures)
			}
			ratio, rss := j.perCPUSecond()/t.perCPUSecond(), j.peakRSSMiB/t.peakRSSMiB
			s.ratios, s.rssRatio = append(s.ratios, ratio), append(s.rssRatio, rss)
			fmt.Printf("| %s | %d | %.0f | %.0f | %.2f× | %.1f MiB | %.1f MiB | %.2f× |\n", load, run, j.perCPUSecond(), t.perCPUSecond(), ratio, j.peakRSSMiB, t.peakRSSMiB, rss)
		}
		sums = append(sums, s)
	}
	fmt.Println("\n| load | ratio of lines per CPU-second, median (min–max) | ratio of peak RSS, median (min–max) |\n|---|---|---|")
	for _, s := range sums {
		fmt.Printf("| %s | %s | %s |\n", s.load, spread(s.ratios), spread(s.rssRatio))
	}
	return nil
}

func spread(v []float64) string {
	v = slices.Clone(v)
	slices.Sort(v)
	return fmt.Sprintf("%.2f× (%.2f–%.2f)", v[len(v)/2], v[0], v[len(v)-1])
}

// telegrafBinary returns path, or builds Telegraf with only the listener
// and the discard output into the user's cache folder (once: several
// minutes). It is never part of the repository.
func telegrafBinary(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, "joules-bench", "telegraf-"+telegrafVersion)
	if _, err := os.Stat(filepath.Join(bin, "telegraf")); err == nil {
		return filepath.Join(bin, "telegraf"), nil
	}
	fmt.Fprintf(os.Stderr, "building Telegraf %s with influxdb_v2_listener and discard into %s (several minutes, once)\n", telegrafVersion, bin)
	cmd := exec.Command("go", "install", "-tags", "custom,inputs.influxdb_v2_listener,outputs.discard", "github.com/influxdata/telegraf/cmd/telegraf@"+telegrafVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=")
	cmd.Dir = os.TempDir()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building telegraf: %w", err)
	}
	return filepath.Join(bin, "telegraf"), nil
}

// peerBodies makes four request bodies per worker, compressed when asked,
// before any clock runs: the load generator shares the machine's cores with
// the server measured, so it must cost little per request.
func peerBodies(load peerLoad, workers int) [][]byte {
	var out [][]byte
	base := time.Now().Add(-time.Hour).UnixNano()
	for w := range workers {
		for k := range 4 {
			var b bytes.Buffer
			for l := range 5000 {
				fmt.Fprintf(&b, "nvidia_gpu,host=gpu-%03d,gpu=%d,sender=%d ", l/8, l%8, w)
				for f := range load.fields {
					if f > 0 {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, "f%d=%d.%d", f, 300+l%400, f)
				}
				fmt.Fprintf(&b, " %d\n", base+int64(k*5000+l)*int64(time.Millisecond))
			}
			body := b.Bytes()
			if load.gzip {
				var z bytes.Buffer
				zw, _ := gzip.NewWriterLevel(&z, gzip.BestSpeed)
				zw.Write(body)
				zw.Close()
				body = z.Bytes()
			}
			out = append(out, body)
		}
	}
	return out
}

func measureJoules(o peerOptions, dir, influxAddr string, bodies [][]byte, gz bool, profile string) (peerResult, error) {
	agg, addr, err := startAggregator(o.aggBin, dir, influxAddr, profile != "")
	if err != nil {
		return peerResult{}, err
	}
	defer func() { _ = agg.Process.Signal(syscall.SIGTERM); _ = agg.Wait() }()
	var grab func() error
	if profile != "" {
		grab = func() error {
			if err := fetchProfile("http://"+addr+"/debug/pprof/profile?seconds="+strconv.Itoa(int(o.duration.Seconds())), profile); err != nil {
				return err
			}
			return fetchProfile("http://"+addr+"/debug/pprof/heap", strings.TrimSuffix(profile, ".pprof")+".heap.pprof")
		}
	}
	return load(o, agg.Process.Pid, "http://"+addr+"/api/v2/write", bodies, gz, grab)
}

func measureTelegraf(o peerOptions, bin, dir string, bodies [][]byte, gz bool) (peerResult, error) {
	addr := freeAddr()
	conf := filepath.Join(dir, "telegraf.conf")
	// Defaults but for the buffer, sized so that a 20 s blast is not
	// spent logging dropped metrics, and a quiet log.
	os.WriteFile(conf, []byte(fmt.Sprintf(`[agent]
  interval = "10s"
  flush_interval = "1s"
  metric_batch_size = 5000
  metric_buffer_limit = 100000
  quiet = true
  omit_hostname = true
[[inputs.influxdb_v2_listener]]
  service_address = %q
  token = "bench"
[[outputs.discard]]
`, addr)), 0o600)
	tg := exec.Command(bin, "--config", conf)
	tg.Stderr = os.Stderr
	if err := tg.Start(); err != nil {
		return peerResult{}, err
	}
	defer func() { _ = tg.Process.Signal(syscall.SIGTERM); _ = tg.Wait() }()
	if err := waitHTTP("http://" + addr + "/health"); err != nil {
		return peerResult{}, err
	}
	return load(o, tg.Process.Pid, "http://"+addr+"/api/v2/write?bucket=joules&org=bench", bodies, gz, nil)
}

// load posts bodies from o.workers workers for the warm-up and then the
// measured duration, and reads the server's CPU time around the latter.
// grab, when set, runs during the measured part (a CPU profile).
func load(o peerOptions, pid int, url string, bodies [][]byte, gz bool, grab func() error) (peerResult, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.workers, DisableCompression: true}, Timeout: 30 * time.Second}
	var measuring atomic.Bool
	var lines, failures atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for w := range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(bodies[(w*4+i%4)%len(bodies)]))
				req.Header.Set("Authorization", "Token bench")
				if gz {
					req.Header.Set("Content-Encoding", "gzip")
				}
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						failures.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Errorf("write: %s", resp.Status))
					continue
				}
				if measuring.Load() {
					lines.Add(5000)
				}
			}
		}()
	}
	wait := time.NewTimer(o.warmup)
	<-wait.C
	cpu0, start := cpuTime(pid), time.Now()
	measuring.Store(true)
	var profErr error
	var profDone chan struct{}
	if grab != nil {
		profDone = make(chan struct{})
		go func() { defer close(profDone); profErr = grab() }()
	}
	wait.Reset(o.duration)
	<-wait.C
	measuring.Store(false)
	res := peerResult{lines: lines.Load(), cpu: cpuTime(pid) - cpu0, elapsed: time.Since(start), peakRSSMiB: peakRSSMiB(pid)}
	cancel()
	wg.Wait()
	if profDone != nil {
		<-profDone
		if profErr != nil {
			return res, profErr
		}
	}
	res.failures = failures.Load()
	if err, ok := firstErr.Load().(error); ok && res.failures > 0 {
		return res, fmt.Errorf("%d failed requests, the first: %w", res.failures, err)
	}
	return res, nil
}

func fetchProfile(u, path string) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// peakRSSMiB is the process's peak resident set (VmHWM).
func peakRSSMiB(pid int) float64 { return statusMiB(pid, "VmHWM") }
