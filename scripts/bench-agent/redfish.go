package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// runRedfish measures one agent polling n simulated BMCs every 10 s: its CPU
// and RSS, and its scrape latency before and while one BMC hangs.
func runRedfish(agentBin, joulesBin, mockup string, n int, steady time.Duration) error {
	dir, err := os.MkdirTemp("", "bench-redfish")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sim, err := startSim(joulesBin, mockup, dir, n)
	if err != nil {
		return err
	}
	defer sim.stop()
	lines, pass, ca, adminAddr := sim.endpoints, sim.pass, sim.ca, sim.adminAddr
	var cfg bytes.Buffer
	cfg.WriteString("labels: {host: bench}\nsources:\n  nvml: {enabled: false}\n  node: {collectors: [netdev]}\n  redfish:\n")
	for i := 0; i < len(lines); i += 2 {
		fmt.Fprintf(&cfg, "    - {name: %s, endpoint: %q, username: monitor, password_file: %s, ca_file: %s, interval: 10s, timeout: 5s}\n", lines[i], lines[i+1], pass, ca)
	}
	cfgFile := filepath.Join(dir, "agent.yml")
	if err := os.WriteFile(cfgFile, cfg.Bytes(), 0o600); err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	agent := exec.Command(agentBin, "--config.file="+cfgFile, "--web.listen-address="+addr, "--log.level=warn")
	agent.Stderr = os.Stderr
	if err := agent.Start(); err != nil {
		return err
	}
	defer func() { _ = agent.Process.Signal(syscall.SIGTERM); _ = agent.Wait() }()
	client := &http.Client{}
	url := "http://" + addr + "/metrics"
	if err := waitServing(client, url); err != nil {
		return err
	}
	time.Sleep(15 * time.Second) // first polls, with discovery

	cpu0, _ := cpuTime(agent.Process.Pid)
	start := time.Now()
	time.Sleep(steady)
	cpu1, _ := cpuTime(agent.Process.Pid)
	cpuPct := 100 * float64(cpu1-cpu0) / float64(time.Since(start))
	rssKiB, _ := rss(agent.Process.Pid)

	latencies := func() (time.Duration, time.Duration, error) { return scrapeBurst(client, url, 300) }
	p50, p99, err := latencies()
	if err != nil {
		return err
	}
	if err := hangBMC(adminAddr, "bmc-0000"); err != nil {
		return err
	}
	time.Sleep(12 * time.Second) // at least one poll of the hung BMC has started and timed out
	hp50, hp99, err := latencies()
	if err != nil {
		return err
	}
	fmt.Printf("One agent polling %d simulated BMCs (%s over HTTPS, sessions, every 10 s), all in one process each; %s unscraped.\n\n", n, filepath.Base(mockup), steady)
	fmt.Println("| BMCs | agent CPU | agent RSS | scrape p50 / p99, all healthy | scrape p50 / p99, one BMC hanging |")
	fmt.Println("|---|---|---|---|---|")
	fmt.Printf("| %d | %.2f %% | %.1f MiB | %s / %s | %s / %s |\n", n, cpuPct, float64(rssKiB)/1024, p50, p99, hp50, hp99)
	return nil
}

// simulator is a running `joules sim redfish`: its BMCs' names and
// endpoints (name, URL, name, URL, ...), the password and CA files the
// agent needs, and its admin address for faults.
type simulator struct {
	cmd                 *exec.Cmd
	endpoints           []string
	pass, ca, adminAddr string
}

// startSim starts n simulated BMCs serving mockup over HTTPS with sessions,
// writing its files under dir, and waits until every one is listed.
func startSim(joulesBin, mockup, dir string, n int) (*simulator, error) {
	simAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	adminAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	endpoints, ca, pass := filepath.Join(dir, "endpoints"), filepath.Join(dir, "ca.pem"), filepath.Join(dir, "pass")
	if err := os.WriteFile(pass, []byte("bench-pass\n"), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(joulesBin, "sim", "redfish", "--tls", "--tls.ca-out="+ca, "--endpoints-out="+endpoints, "--count", fmt.Sprint(n),
		"--mockup", mockup, "--listen-address", simAddr, "--admin-address", adminAddr, "--password-file", pass, "--log.level=warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start simulator: %w", err)
	}
	s := &simulator{cmd: cmd, pass: pass, ca: ca, adminAddr: adminAddr}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		raw, _ := os.ReadFile(endpoints)
		if s.endpoints = strings.Fields(string(raw)); len(s.endpoints) == 2*n {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("simulator did not start %d BMCs", n)
		}
	}
}

func (s *simulator) stop() { _ = s.cmd.Process.Signal(syscall.SIGTERM); _ = s.cmd.Wait() }

// hangBMC makes the simulated BMC name accept connections and never answer.
func hangBMC(adminAddr, name string) error {
	resp, err := http.Post("http://"+adminAddr+"/bmc/"+name+"/fault", "application/json", strings.NewReader(`{"hang": true}`))
	if err != nil {
		return fmt.Errorf("hang %s: %w", name, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("hang %s: %s", name, resp.Status)
	}
	return nil
}

// scrapeBurst scrapes n times, 20 ms apart, and returns the p50 and p99.
func scrapeBurst(client *http.Client, url string, n int) (time.Duration, time.Duration, error) {
	lat := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := scrape(client, url); err != nil {
			return 0, 0, err
		}
		lat = append(lat, time.Since(t0))
		time.Sleep(20 * time.Millisecond)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond), nil
}
