package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
)

var agentBin, joulesBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "joules-agent-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = filepath.Join(dir, "joules-agent")
	joulesBin = filepath.Join(dir, "joules")
	build := exec.Command("go", "build", "-o", dir+"/", ".", "../joules")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build joules-agent and joules:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type agent struct {
	url  string
	cmd  *exec.Cmd
	logs *testenv.LogBuffer
	done chan error
}

// startAgent runs the built agent on a free loopback port and waits until it
// serves. It is stopped with SIGTERM when the test ends.
func startAgent(t *testing.T, args ...string) *agent {
	t.Helper()
	addr := testenv.FreeAddr(t)
	a := &agent{url: "http://" + addr, logs: &testenv.LogBuffer{}, done: make(chan error, 1)}
	a.cmd = exec.Command(agentBin, append([]string{"--web.listen-address=" + addr}, args...)...)
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- a.cmd.Wait() }()
	t.Cleanup(func() { a.stop(t) })
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(a.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a
			}
		}
		select {
		case err := <-a.done:
			a.done <- err
			t.Fatalf("agent exited before serving: %v\n%s", err, a.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not serve /healthz in time:\n%s", a.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (a *agent) stop(t *testing.T) error {
	if a.cmd.ProcessState != nil {
		return nil
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-a.done:
		a.done <- err
		return err
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		t.Errorf("agent did not stop within 10s of SIGTERM:\n%s", a.logs)
		return <-a.done
	}
}

// scrapeWhen scrapes until the exposition satisfies ok.
func (a *agent) scrapeWhen(t *testing.T, ok func(string) bool) string {
	t.Helper()
	var body string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(a.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		if ok(body) {
			return body
		}
	}
	t.Fatalf("exposition never became ready:\n%s\nlogs:\n%s", body, a.logs)
	return ""
}

func hasLine(prefix string) func(string) bool {
	return func(body string) bool { return strings.Contains(body, "\n"+prefix) }
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func fixtureSys(t *testing.T) string {
	return filepath.Join(testenv.SharedTestdata(t), "sysfs", "node-exporter", "sys")
}

// TestGoldenExpositionOnFixture compares the agent's host metrics on the
// shared sysfs fixture with a golden file, and lints the whole exposition
// with promtool.
func TestGoldenExpositionOnFixture(t *testing.T) {
	sys := fixtureSys(t)
	cfg := writeFile(t, "agent.yml", `labels: {site: dc1, hall: h1, rack: r12, host: golden}
sources:
  node:
    interval: 200ms
    collectors: [infiniband, hwmon, rapl]
`)
	// A boot id of our own: the RAPL counters carry it as their epoch.
	proc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proc, "sys", "kernel", "random"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "sys", "kernel", "random", "boot_id"), []byte("0badc0de-1111-2222-3333-444455556666\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, "--config.file="+cfg, "--path.sysfs="+sys, "--path.procfs="+proc)
	body := a.scrapeWhen(t, hasLine("node_rapl_package_joules_total"))

	var kept []string
	skip := regexp.MustCompile(`^(# (HELP|TYPE) )?node_scrape_collector_duration_seconds`)
	for _, line := range strings.Split(body, "\n") {
		name := strings.TrimPrefix(strings.TrimPrefix(line, "# HELP "), "# TYPE ")
		if (strings.HasPrefix(name, "node_") || strings.HasPrefix(name, "joules_rapl_")) && !skip.MatchString(line) {
			kept = append(kept, strings.ReplaceAll(line, sys, "SYSFS"))
		}
	}
	got := strings.Join(kept, "\n") + "\n"
	golden := filepath.Join("testdata", "fixture.prom")
	if os.Getenv("JOULES_UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (make golden writes it)", err)
	}
	if got != string(want) {
		t.Errorf("exposition differs from %s (make golden updates it after an intended change):\n%s", golden, diffLines(string(want), got))
	}
	assertEnergyFromSysfs(t, string(want), sys)

	promtool := testenv.Tool(t, "promtool", "apt-get install -y prometheus")
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = strings.NewReader(body)
	out, err := check.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

var (
	energySample = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*_(?:joules|joules_total|watts))\{([^}]*)\} (\S+)$`)
	sysfsPath    = regexp.MustCompile(`path="SYSFS/([^"]+)"`)
)

// assertEnergyFromSysfs checks every energy and power number of the golden
// exposition against the fixture's own microjoule files: the golden
// freezes the format, these say the numbers are right.
func assertEnergyFromSysfs(t *testing.T, golden, sys string) {
	t.Helper()
	checked := 0
	for _, line := range strings.Split(golden, "\n") {
		m := energySample.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var file string
		switch name := m[1]; {
		case strings.HasPrefix(name, "node_rapl_") && strings.HasSuffix(name, "_joules_total"):
			file = "energy_uj"
		case name == "joules_rapl_max_energy_range_joules":
			file = "max_energy_range_uj"
		default:
			t.Errorf("%s in the golden has no independent check here", name)
			continue
		}
		zone := sysfsPath.FindStringSubmatch(m[2])
		if zone == nil {
			t.Errorf("no path label on %s", line)
			continue
		}
		want := float64(testenv.ReadUint(t, filepath.Join(sys, zone[1], file))) / 1e6
		got, err := strconv.ParseFloat(m[3], 64)
		if err != nil || math.Abs(got-want) > 0.5e-6 {
			t.Errorf("%s = %s in the golden, want %s/%s ÷ 10⁶ = %v J", m[1], m[3], zone[1], file, want)
		}
		checked++
	}
	if checked != 4 { // package and core: energy and its range
		t.Errorf("checked %d energy numbers in the golden, want the 4 of the fixture's two RAPL zones", checked)
	}
}

func diffLines(want, got string) string {
	w, g := map[string]bool{}, map[string]bool{}
	for _, l := range strings.Split(want, "\n") {
		w[l] = true
	}
	for _, l := range strings.Split(got, "\n") {
		g[l] = true
	}
	var out []string
	for l := range w {
		if !g[l] {
			out = append(out, "- "+l)
		}
	}
	for l := range g {
		if !w[l] {
			out = append(out, "+ "+l)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func TestInfiniBandBytesAreFourTimesWords(t *testing.T) {
	sys := fixtureSys(t)
	a := startAgent(t, "--path.sysfs="+sys)
	body := a.scrapeWhen(t, hasLine("node_infiniband_port_data_received_bytes_total"))
	counters := filepath.Join(sys, "class/infiniband/mlx4_0/ports/1/counters")
	for file, metric := range map[string]string{
		"port_rcv_data":  "node_infiniband_port_data_received_bytes_total",
		"port_xmit_data": "node_infiniband_port_data_transmitted_bytes_total",
	} {
		words := testenv.ReadUint(t, filepath.Join(counters, file))
		got := metricValue(t, body, metric, `device="mlx4_0"`, `port="1"`)
		if got != float64(4*words) {
			t.Errorf("%s = %v, want 4 × %d = %d", metric, got, words, 4*words)
		}
	}
}

func TestNoConfigServesThisMachinesNICCounters(t *testing.T) {
	rxBefore := testenv.ReadUint(t, "/sys/class/net/lo/statistics/rx_bytes")
	a := startAgent(t)
	body := a.scrapeWhen(t, hasLine(`node_network_receive_bytes_total{device="lo"`))
	got := metricValue(t, body, "node_network_receive_bytes_total", `device="lo"`)
	if got < float64(rxBefore) {
		t.Errorf("lo receive bytes = %v, below the %d read from /sys before", got, rxBefore)
	}
	host, _ := os.Hostname()
	if !strings.Contains(body, fmt.Sprintf(`host=%q`, host)) {
		t.Errorf("samples lack the default host label %q", host)
	}
	if metricValue(t, body, "joules_source_up", `source="node"`) != 1 {
		t.Error("node source not up")
	}
	if !strings.Contains(a.logs.String(), "node_exporter collectors enabled") {
		t.Errorf("start-up log lacks the enabled collectors:\n%s", a.logs)
	}
}

func TestOptionsFromYAMLReachNodeExporter(t *testing.T) {
	sys := fixtureSys(t)
	temp1 := regexp.MustCompile(`node_hwmon_temp_celsius\{chip="hwmon4",[^}]*sensor="temp1"`)
	base := startAgent(t, "--path.sysfs="+sys, "--config.file="+writeFile(t, "a.yml", "sources: {node: {collectors: [hwmon]}}\n"))
	before := base.scrapeWhen(t, hasLine("node_hwmon_temp_celsius"))
	if !temp1.MatchString(before) {
		t.Fatalf("fixture lacks the hwmon4 temp1 sensor this test excludes:\n%s", before)
	}
	a := startAgent(t, "--path.sysfs="+sys, "--config.file="+writeFile(t, "b.yml", `sources:
  node:
    collectors: [hwmon]
    options: {hwmon.sensor-exclude: "^hwmon4;temp1$"}
`))
	after := a.scrapeWhen(t, hasLine("node_hwmon_temp_celsius"))
	if temp1.MatchString(after) {
		t.Error("hwmon.sensor-exclude from the YAML did not reach node_exporter")
	}
	if !strings.Contains(after, `sensor="temp2"`) {
		t.Error("excluding one sensor removed the others")
	}
	if strings.Contains(after, "node_network_receive_bytes_total") {
		t.Error("netdev runs although the config chose only hwmon")
	}
}

func TestConfigCheck(t *testing.T) {
	bad := writeFile(t, "bad.yml", "labels: {site: dc1}\nsources:\n  node:\n    colectors: [netdev]\n")
	out, err := exec.Command(agentBin, "--config.check", "--config.file="+bad).CombinedOutput()
	if code := exitCode(err); code == 0 {
		t.Errorf("bad config: exit code 0, want non-zero\n%s", out)
	}
	if !strings.Contains(string(out), `line 4: unknown key "colectors" in sources.node`) {
		t.Errorf("output does not name the key and its line:\n%s", out)
	}

	badCollector := writeFile(t, "bad2.yml", "sources:\n  node:\n    collectors: [netdev, nvidia]\n")
	out, err = exec.Command(agentBin, "--config.check", "--config.file="+badCollector).CombinedOutput()
	if exitCode(err) == 0 || !strings.Contains(string(out), `line 3: sources.node.collectors: unknown node_exporter collector "nvidia"`) {
		t.Errorf("unknown collector: err %v\n%s", err, out)
	}

	good := writeFile(t, "good.yml", "labels: {site: dc1}\nsources: {node: {interval: 2s}}\n")
	out, err = exec.Command(agentBin, "--config.check", "--config.file="+good).CombinedOutput()
	if err != nil {
		t.Fatalf("good config: %v\n%s", err, out)
	}
	for _, want := range []string{"site: dc1", "interval: 2s", "timeout: 2s", "- rapl", "enabled: true"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("effective config lacks %q:\n%s", want, out)
		}
	}
}

func TestSIGTERMStopsCleanlyWithJSONLogs(t *testing.T) {
	a := startAgent(t, "--log.format=json")
	a.scrapeWhen(t, hasLine("joules_source_up"))
	if err := a.stop(t); err != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", err)
	}
	sc := bufio.NewScanner(strings.NewReader(a.logs.String()))
	var msgs []string
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		msgs = append(msgs, fmt.Sprint(rec["msg"]))
	}
	if len(msgs) == 0 || msgs[len(msgs)-1] != "stopped" {
		t.Errorf("last log message = %v, want stopped", msgs)
	}
}

// TestRealPrometheusScrapesAgent runs Debian's Prometheus against the agent
// and reads values back through Prometheus's HTTP API.
func TestRealPrometheusScrapesAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus")
	}
	prometheus := testenv.Tool(t, "prometheus", "apt-get install -y prometheus")
	sys := fixtureSys(t)
	a := startAgent(t, "--path.sysfs="+sys, "--config.file="+writeFile(t, "a.yml", "labels: {site: dc1, host: n1}\nsources: {node: {interval: 500ms}}\n"))

	promAddr := testenv.FreeAddr(t)
	dir := t.TempDir()
	promCfg := writeFile(t, "prometheus.yml", fmt.Sprintf(`global: {scrape_interval: 1s, scrape_timeout: 1s}
scrape_configs:
  - job_name: joules
    static_configs: [{targets: [%q]}]
`, strings.TrimPrefix(a.url, "http://")))
	prom := exec.Command(prometheus, "--config.file="+promCfg, "--storage.tsdb.path="+dir,
		"--web.listen-address="+promAddr, "--log.level=warn")
	var promLogs testenv.LogBuffer
	prom.Stdout, prom.Stderr = &promLogs, &promLogs
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = prom.Process.Signal(syscall.SIGTERM)
		_ = prom.Wait()
	})

	query := func(q string) (float64, bool) {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || len(r.Data.Result) != 1 {
			return 0, false
		}
		s, _ := r.Data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		return v, err == nil
	}
	words := testenv.ReadUint(t, filepath.Join(sys, "class/infiniband/mlx4_0/ports/1/counters/port_rcv_data"))
	checks := map[string]float64{
		`up{job="joules"}`: 1,
		`node_infiniband_port_data_received_bytes_total{device="mlx4_0",port="1",host="n1",site="dc1"}`: float64(4 * words),
		`joules_source_up{source="node"}`:           1,
		`node_rapl_package_joules_total{index="0"}`: float64(testenv.ReadUint(t, filepath.Join(sys, "class/powercap/intel-rapl:0/energy_uj"))) / 1e6,
	}
	for q, want := range checks {
		deadline := time.Now().Add(60 * time.Second)
		for {
			got, ok := query(q)
			if ok && got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Prometheus query %s = %v (found %v), want %v\nprometheus logs:\n%s", q, got, ok, want, promLogs.String())
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$`)

// metricValue finds the one sample of name whose labels contain every matcher.
func metricValue(t *testing.T, body, name string, matchers ...string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		m := sampleLine.FindStringSubmatch(line)
		if m == nil || m[1] != name {
			continue
		}
		ok := true
		for _, want := range matchers {
			if !strings.Contains(m[2], want) {
				ok = false
			}
		}
		if ok {
			v, err := strconv.ParseFloat(m[3], 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no %s%v in exposition", name, matchers)
	return 0
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// TestEveryJoulesMetricIsDocumented keeps docs/METRICS.md in step with the
// exposition.
func TestEveryJoulesMetricIsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "docs", "METRICS.md"))
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, "--path.sysfs="+fixtureSys(t))
	body := a.scrapeWhen(t, hasLine("joules_rapl_max_energy_range_joules"))
	for _, line := range strings.Split(body, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[1] != "TYPE" || !strings.HasPrefix(fields[2], "joules_") {
			continue
		}
		if !strings.Contains(string(doc), "`"+fields[2]+"`") {
			t.Errorf("%s is exposed but not in docs/METRICS.md", fields[2])
		}
	}
}

// TestNoGPUHostSaysNVMLAbsentOnce runs the agent with its defaults on a host
// without the NVIDIA driver: it must say so once and serve everything else.
func TestNoGPUHostSaysNVMLAbsentOnce(t *testing.T) {
	if _, err := os.Stat("/dev/nvidiactl"); err == nil {
		t.Skip("this host has an NVIDIA driver")
	}
	a := startAgent(t, "--config.file="+writeFile(t, "a.yml", "sources: {nvml: {interval: 100ms}}\n"))
	a.scrapeWhen(t, hasLine(`joules_source_absent{`))
	// Ten more NVML attempts, each of which records its own duration.
	var body string
	changes, last := 0, -1.0
	testenv.WaitFor(t, 15*time.Second, "ten more NVML attempts", func() bool {
		body = a.scrapeWhen(t, hasLine(`joules_source_duration_seconds{`))
		if d := metricValue(t, body, "joules_source_duration_seconds", `source="nvml"`); d != last {
			changes, last = changes+1, d
		}
		return changes > 10
	})
	if metricValue(t, body, "joules_source_absent", `source="nvml"`) != 1 {
		t.Error("nvml source not reported absent")
	}
	if metricValue(t, body, "joules_source_up", `source="node"`) != 1 {
		t.Error("node source not up next to an absent NVML")
	}
	if !strings.Contains(body, "node_network_receive_bytes_total") {
		t.Error("NIC counters missing")
	}
	logs := a.logs.String()
	if n := strings.Count(logs, `msg="hardware absent`); n != 1 || !strings.Contains(logs, "libnvidia-ml.so.1") {
		t.Errorf("absence logged %d times (want once, naming libnvidia-ml.so.1):\n%s", n, logs)
	}
	if strings.Contains(logs, "level=ERROR") {
		t.Errorf("absent NVML logged as an error:\n%s", logs)
	}
}

// TestSimulatedDGXH200 runs the agent with eight simulated H200s.
func TestSimulatedDGXH200(t *testing.T) {
	a := startAgent(t, "--config.file="+writeFile(t, "a.yml", "labels: {host: sim-1}\nsources: {nvml: {simulate: dgxh200, interval: 200ms}}\n"))
	first := a.scrapeWhen(t, hasLine("joules_gpu_sm_activity_ratio{"))
	firstPass := metricValue(t, first, "joules_source_last_success_timestamp_seconds", `source="nvml"`)
	var second string
	testenv.WaitFor(t, 15*time.Second, "seven more NVML passes", func() bool {
		second = a.scrapeWhen(t, hasLine("joules_gpu_sm_activity_ratio{"))
		return metricValue(t, second, "joules_source_last_success_timestamp_seconds", `source="nvml"`) >= firstPass+1.4
	})
	moved := 0
	for gpu := range 8 {
		sel := fmt.Sprintf(`gpu="%d"`, gpu)
		if metricValue(t, second, "joules_gpu_up", sel) != 1 {
			t.Errorf("GPU %d not up", gpu)
		}
		e1 := metricValue(t, first, "joules_gpu_energy_joules_total", sel, `method="counter"`, `simulated="true"`)
		e2 := metricValue(t, second, "joules_gpu_energy_joules_total", sel, `method="counter"`)
		if e2 <= e1 {
			t.Errorf("GPU %d energy did not rise: %v then %v", gpu, e1, e2)
		}
		if metricValue(t, first, "joules_gpu_power_watts", sel) != metricValue(t, second, "joules_gpu_power_watts", sel) {
			moved++
		}
	}
	if moved < 4 {
		t.Errorf("power moved on only %d of 8 GPUs over seven passes", moved)
	}
	if !strings.Contains(a.logs.String(), "SIMULATED") {
		t.Errorf("logs do not say the GPUs are simulated:\n%s", a.logs)
	}
	promtool := testenv.Tool(t, "promtool", "apt-get install -y prometheus")
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = strings.NewReader(second)
	if out, err := check.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestRedfishThroughSimulator runs `joules sim redfish` over HTTPS with two
// shared mockups and the agent polling both with verified TLS and a password
// from a file.
func TestRedfishThroughSimulator(t *testing.T) {
	shared := testenv.SharedTestdata(t)
	dir := t.TempDir()
	ca, endpoints := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "endpoints")
	pass := writeFile(t, "pass", "demo-secret-9\n")
	// The simulator takes consecutive ports from the first: one of them may
	// be taken meanwhile by another test's connection, and the simulator
	// then says so and stops; it is started again on other ports.
	var lines []string
	for attempt := 0; len(lines) < 2; attempt++ {
		first := testenv.FreeAddr(t)
		os.Remove(endpoints)
		sim := exec.Command(joulesBin, "sim", "redfish", "--tls", "--tls.ca-out="+ca, "--endpoints-out="+endpoints,
			"--listen-address="+first, "--password-file="+pass,
			"--bmc=rack1="+filepath.Join(shared, "redfish", "dmtf-public-rackmount1"),
			"--bmc=giga="+filepath.Join(shared, "redfish", "gigabyte-h262-z63"))
		var simLogs testenv.LogBuffer
		sim.Stdout, sim.Stderr = &simLogs, &simLogs
		if err := sim.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = sim.Wait(); close(exited) }()
		t.Cleanup(func() { _ = sim.Process.Signal(syscall.SIGTERM); <-exited })
		gone := false
		testenv.WaitFor(t, 10*time.Second, "the simulator's endpoints, or its exit", func() bool {
			raw, _ := os.ReadFile(endpoints)
			lines = strings.Fields(string(raw))
			select {
			case <-exited:
				gone = true
			default:
			}
			return len(lines) >= 2 || gone
		})
		if len(lines) < 2 {
			if attempt < 2 && strings.Contains(simLogs.String(), "address already in use") {
				lines = nil
				continue
			}
			t.Fatalf("simulator wrote no endpoints:\n%s", simLogs.String())
		}
	}
	cfg := "labels: {site: dc1, host: n1}\nsources:\n  nvml: {enabled: false}\n  redfish:\n"
	for i := 0; i+1 < len(lines); i += 2 {
		cfg += fmt.Sprintf("    - {name: %s, endpoint: %q, username: monitor, password_file: %s, ca_file: %s, interval: 2s, timeout: 1s}\n", lines[i], lines[i+1], pass, ca)
	}
	a := startAgent(t, "--config.file="+writeFile(t, "a.yml", cfg))
	body := a.scrapeWhen(t, func(b string) bool {
		return strings.Contains(b, `joules_redfish_host_power_watts{bmc="rack1"`) && strings.Contains(b, `joules_redfish_host_power_watts{bmc="giga"`)
	})
	if v := metricValue(t, body, "joules_redfish_host_power_watts", `bmc="giga"`, `source="power_control"`); v <= 0 {
		t.Errorf("gigabyte host power %v", v)
	}
	if strings.Contains(a.logs.String(), "demo-secret-9") {
		t.Error("the BMC password appears in the agent's log")
	}
	out, _ := exec.Command(agentBin, "--config.check", "--config.file="+writeFile(t, "b.yml", cfg)).CombinedOutput()
	if strings.Contains(string(out), "demo-secret-9") || !strings.Contains(string(out), "password_file") {
		t.Errorf("--config.check must name the password file and never show the password:\n%s", out)
	}
	promtool := testenv.Tool(t, "promtool", "apt-get install -y prometheus")
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = strings.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestWorkCountersFromAnInferenceServer scrapes a vLLM-shaped endpoint and
// a textfile directory.
func TestWorkCountersFromAnInferenceServer(t *testing.T) {
	vllm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total{model_name=\"llama\"} 12345\n# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total{model_name=\"llama\"} 678\n")
	}))
	defer vllm.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "job.prom"), []byte("joules_work_total{unit=\"flop\",kind=\"training\"} 1e15\n"), 0o644)
	a := startAgent(t, "--config.file="+writeFile(t, "a.yml", fmt.Sprintf(`sources:
  nvml: {enabled: false}
  work:
    scrape: [{url: %q, preset: vllm, name: chat}]
    textfile_dir: %s
`, vllm.URL+"/metrics", dir)))
	body := a.scrapeWhen(t, hasLine("joules_work_total{"))
	if v := metricValue(t, body, "joules_work_total", `kind="generation"`, `workload="chat"`, `unit="token"`, `model_name="llama"`); v != 12345 {
		t.Errorf("generation tokens %v", v)
	}
	if v := metricValue(t, body, "joules_work_total", `unit="flop"`, `workload="job"`); v != 1e15 {
		t.Errorf("textfile FLOP %v", v)
	}
	if v := metricValue(t, body, "joules_work_target_up", `workload="chat"`); v != 1 {
		t.Error("target not up")
	}
}

// TestSystemdNotify runs the agent as systemd would with Type=notify and
// WatchdogSec: it says READY=1 once it serves, pings the watchdog, and says
// STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	addr := testenv.FreeAddr(t)
	cmd := exec.Command(agentBin, "--web.listen-address="+addr, "--config.file="+writeFile(t, "a.yml", "sources: {nvml: {enabled: false}}\n"))
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	got := map[string]int{}
	buf := make([]byte, 256)
	deadline := time.Now().Add(10 * time.Second)
	for got["WATCHDOG=1"] < 2 && time.Now().Before(deadline) {
		conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			continue
		}
		got[strings.TrimSpace(string(buf[:n]))]++
	}
	if got["READY=1"] != 1 || got["WATCHDOG=1"] < 2 {
		t.Fatalf("notifications %v, want READY=1 once and watchdog pings", got)
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("READY=1 was sent but the agent does not serve: %v", err)
	}
	resp.Body.Close()
	cmd.Process.Signal(syscall.SIGTERM)
	for time.Now().Before(deadline.Add(10 * time.Second)) {
		conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		if err == nil && strings.TrimSpace(string(buf[:n])) == "STOPPING=1" {
			cmd.Wait()
			return
		}
	}
	t.Error("no STOPPING=1 after SIGTERM")
}

// TestDebugPprofIsOffByDefault: profiles are served only with --debug.pprof.
func TestDebugPprofIsOffByDefault(t *testing.T) {
	status := func(a *agent, path string) int {
		resp, err := http.Get(a.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	cfg := writeFile(t, "a.yml", "sources: {node: {enabled: false}, nvml: {enabled: false}}\n")
	off := startAgent(t, "--config.file="+cfg)
	// Without the flag the landing page answers every unknown path with 404.
	if got := status(off, "/debug/pprof/"); got != http.StatusNotFound {
		t.Errorf("without --debug.pprof: /debug/pprof/ answered %d, want 404", got)
	}
	on := startAgent(t, "--config.file="+cfg, "--debug.pprof")
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
		if got := status(on, path); got != http.StatusOK {
			t.Errorf("with --debug.pprof: %s answered %d, want 200", path, got)
		}
	}
	if got := status(on, "/metrics"); got != http.StatusOK {
		t.Errorf("with --debug.pprof: /metrics answered %d, want 200", got)
	}
}

// TestMakefileBuildNamesLeftOutCollectors builds the agent as `make build`
// does, with the Makefile's NODE_COLLECTORS: a config enabling one of them
// passes --config.check, one enabling a collector left out of the build is
// refused with the collector's name and how to build it in.
func TestMakefileBuildNamesLeftOutCollectors(t *testing.T) {
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^NODE_COLLECTORS \?= (.+)$`).FindSubmatch(makefile)
	if m == nil {
		t.Fatal("Makefile has no NODE_COLLECTORS ?= line")
	}
	kept := strings.Fields(string(m[1]))
	tags, err := exec.Command("go", append([]string{"run", "../../scripts/collector-tags"}, kept...)...).Output()
	if err != nil {
		t.Fatalf("collector-tags: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "joules-agent")
	if out, err := exec.Command("go", "build", "-tags", strings.TrimSpace(string(tags)), "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags: %v\n%s", err, out)
	}

	good := writeFile(t, "kept.yml", "sources:\n  node:\n    collectors: ["+strings.Join(kept, ", ")+"]\n")
	if out, err := exec.Command(bin, "--config.check", "--config.file="+good).CombinedOutput(); err != nil {
		t.Errorf("config with every built-in collector %v: %v\n%s", kept, err, out)
	}
	left := writeFile(t, "left.yml", "sources:\n  node:\n    collectors: [netdev, systemd]\n")
	out, err := exec.Command(bin, "--config.check", "--config.file="+left).CombinedOutput()
	want := `line 3: sources.node.collectors: node_exporter collector "systemd" is left out of this build of joules-agent (build tag nosystemd); ` +
		"build with `make build ALL_COLLECTORS=1` for every collector"
	if exitCode(err) == 0 || !strings.Contains(string(out), want) {
		t.Errorf("collector left out of the build: exit %d, output lacks %q:\n%s", exitCode(err), want, out)
	}
	// The same on the command line, where kingpin alone would say "unknown long flag".
	for _, flag := range []string{"--collector.systemd", "--no-collector.systemd", "--collector.systemd.unit-include=a.service"} {
		out, err := exec.Command(bin, "--config.check", "--config.file="+good, flag).CombinedOutput()
		want := "flag " + flag + `: node_exporter collector "systemd" is left out of this build of joules-agent (build tag nosystemd)`
		if exitCode(err) != 2 || !strings.Contains(string(out), want) {
			t.Errorf("%s: exit %d, output lacks %q:\n%s", flag, exitCode(err), want, out)
		}
	}
}
