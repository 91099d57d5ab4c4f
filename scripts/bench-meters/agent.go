package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// agentConfig is the agent with the Prometheus exporter only (no node
// collectors, no GPUs, no stream) and one sources.snmp entry per device.
func agentConfig(o options, devs []device) string {
	var b strings.Builder
	b.WriteString("labels: {host: bench}\nsources:\n  node: {enabled: false}\n  nvml: {enabled: false}\n")
	if len(devs) > 0 {
		b.WriteString("  snmp:\n")
	}
	for _, d := range devs {
		fmt.Fprintf(&b, "    - {name: %s, address: %q, version: 2c, community: %s, profile: %s, role: pdu_output, interval: %s, timeout: 2s}\n",
			d.name, d.addr, d.kind.recording, d.kind.profile, o.interval)
	}
	return b.String()
}

// measureAgent runs the agent with devs for the warm-up and the measured
// period, reading its /metrics every o.poll, then a burst of scrapes.
func measureAgent(o options, dir, name string, devs []device, sims *sims) (result, error) {
	cfg := filepath.Join(dir, fmt.Sprintf("agent-%d.yml", len(devs)))
	if err := os.WriteFile(cfg, []byte(agentConfig(o, devs)), 0o600); err != nil {
		return result{}, err
	}
	addr, err := freeAddr("tcp")
	if err != nil {
		return result{}, err
	}
	args := []string{"--config.file=" + cfg, "--web.listen-address=" + addr, "--log.level=error"}
	profiling := len(devs) > 0 && (o.cpuProfile != "" || o.heapProfile != "")
	if profiling {
		args = append(args, "--debug.pprof")
	}
	cmd := exec.Command(o.agentBin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	url := "http://" + addr + "/metrics"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 10 * time.Second}
	if err := waitFor(client, url, 15*time.Second, func(expo) bool { return true }); err != nil {
		return result{}, fmt.Errorf("agent never served /metrics: %w", err)
	}
	// Every device polled once before the warm-up ends.
	if len(devs) > 0 {
		if err := waitFor(client, url, o.warmup+30*time.Second, func(e expo) bool {
			return len(e.byLabel("joules_source_up", "target", map[string]string{"source": "snmp"})) == len(devs)
		}); err != nil {
			return result{}, fmt.Errorf("not every device was polled: %w", err)
		}
	}
	time.Sleep(time.Until(started.Add(o.warmup)))

	r := result{name: name, reqByProf: map[string][]float64{}, polls: polls{byProfile: map[string][]float64{}, measured: len(devs) > 0}}
	profileOf := map[string]string{}
	for _, d := range devs {
		profileOf[d.name] = d.kind.profile
	}
	var lastReqs map[string]float64
	var errs0, errs float64
	var profileDone chan error
	if profiling && o.cpuProfile != "" {
		profileDone = make(chan error, 1)
		go func() {
			profileDone <- fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(o.duration.Seconds())), o.cpuProfile)
		}()
	}
	cpu0, sim0, start := cpuTime(pid), sims.cpu(), time.Now()
	for next := start; ; next = next.Add(o.poll) {
		time.Sleep(time.Until(next))
		e, err := scrapeExpo(client, url)
		if err != nil {
			return r, err
		}
		reqs := e.byLabel("joules_snmp_requests_total", "device", nil)
		up := e.byLabel("joules_source_up", "target", map[string]string{"source": "snmp"})
		dur := e.byLabel("joules_source_duration_seconds", "target", map[string]string{"source": "snmp"})
		errs = e.sum("joules_snmp_poll_errors_total")
		if lastReqs == nil {
			errs0 = errs
		} else {
			for d, n := range reqs {
				if n == lastReqs[d] {
					continue
				}
				// A device's requests rose: it finished one poll since the last read.
				r.polls.total++
				if up[d] == 1 {
					r.polls.ok++
				}
				r.polls.durations = append(r.polls.durations, dur[d])
				r.polls.byProfile[profileOf[d]] = append(r.polls.byProfile[profileOf[d]], dur[d])
			}
		}
		lastReqs = reqs
		if time.Since(start) >= o.duration {
			break
		}
	}
	r.window = time.Since(start)
	r.cpu = cpuTime(pid) - cpu0
	r.simCPU = sims.cpu() - sim0
	if r.mem, r.hwm, err = memory(pid); err != nil {
		return r, err
	}
	r.polls.errors = errs - errs0
	if profiling && o.heapProfile != "" {
		if err := fetch("http://"+addr+"/debug/pprof/heap", o.heapProfile); err != nil {
			return r, err
		}
	}
	if profileDone != nil {
		if err := <-profileDone; err != nil {
			return r, err
		}
	}
	r.polls.expected = len(devs) * int(r.window/o.interval)
	if e, err := scrapeExpo(client, url); err == nil {
		for d, n := range e.byLabel("joules_snmp_poll_requests", "device", nil) {
			r.reqByProf[profileOf[d]] = append(r.reqByProf[profileOf[d]], n)
		}
	}
	r.scrape, err = scrapeBurst(client, url, pid, o.burst)
	return r, err
}

// fetch writes what url answers to file (a profile).
func fetch(url, file string) error {
	resp, err := http.Get(url)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %s", resp.Status)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	return os.WriteFile(file, raw, 0o644)
}

// expo is an exposition's samples; labels are kept as text.
type expo []sample

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseExpo reads the text format's sample lines (no timestamps expected,
// label values without escaped quotes are enough here).
func parseExpo(text string) expo {
	var out expo
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		s := sample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			s.name, rest = line[:i], strings.TrimSpace(line[j+1:])
			for _, pair := range splitLabels(line[i+1 : j]) {
				if k, v, ok := strings.Cut(pair, "="); ok {
					s.labels[k] = strings.Trim(v, `"`)
				}
			}
		} else {
			var ok bool
			if s.name, rest, ok = strings.Cut(line, " "); !ok {
				continue
			}
		}
		v, _, _ := strings.Cut(rest, " ")
		s.value, _ = strconv.ParseFloat(v, 64)
		out = append(out, s)
	}
	return out
}

// splitLabels splits a="x",b="y" at the commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	quoted, from := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, s[from:i])
				from = i + 1
			}
		}
	}
	if from < len(s) {
		out = append(out, s[from:])
	}
	return out
}

// byLabel maps the value of label key to the sample's value for every
// sample of name that has the labels of match.
func (e expo) byLabel(name, key string, match map[string]string) map[string]float64 {
	out := map[string]float64{}
next:
	for _, s := range e {
		if s.name != name {
			continue
		}
		for k, v := range match {
			if s.labels[k] != v {
				continue next
			}
		}
		out[s.labels[key]] = s.value
	}
	return out
}

func (e expo) sum(name string) float64 {
	var t float64
	for _, s := range e {
		if s.name == name {
			t += s.value
		}
	}
	return t
}

func scrapeExpo(client *http.Client, url string) (expo, error) {
	body, err := get(client, url)
	if err != nil {
		return nil, err
	}
	return parseExpo(body), nil
}

func get(client *http.Client, url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(raw), err
}

// waitFor reads url until ok holds for its exposition or timeout passes.
func waitFor(client *http.Client, url string, timeout time.Duration, ok func(expo) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		e, err := scrapeExpo(client, url)
		if err == nil && ok(e) {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("not within %s", timeout)
			}
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type scrapeStats struct {
	series, bytes    int
	p50, p99, cpuPer time.Duration
}

// scrapeBurst reads url n times back to back: latency, the agent's CPU
// per scrape (its collections included), the exposition's size.
func scrapeBurst(client *http.Client, url string, pid, n int) (scrapeStats, error) {
	var s scrapeStats
	lat := make([]time.Duration, 0, n)
	cpu0 := cpuTime(pid)
	var body string
	for range n {
		start := time.Now()
		var err error
		if body, err = get(client, url); err != nil {
			return s, err
		}
		lat = append(lat, time.Since(start))
	}
	s.bytes, s.series = len(body), len(parseExpo(body))
	s.cpuPer = ((cpuTime(pid) - cpu0) / time.Duration(max(n, 1))).Round(10 * time.Microsecond)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	s.p50 = lat[len(lat)/2].Round(10 * time.Microsecond)
	s.p99 = lat[min(len(lat)-1, len(lat)*99/100)].Round(10 * time.Microsecond)
	return s, nil
}
