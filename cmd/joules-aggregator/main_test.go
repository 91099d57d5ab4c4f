package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"

	"github.com/joules-energy/joules/internal/schema"
	"github.com/joules-energy/joules/internal/testenv"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "joules-pipeline-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	build := exec.Command("go", "build", "-o", dir+"/", ".", "../joules-agent")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const pipelineToken = "pipeline-token-5"

type pipeline struct {
	t         *testing.T
	db        *testenv.InfluxDB
	aggAddr   string
	aggCfg    string
	agg       *testenv.Process
	agentCfg  string
	agent     *testenv.Process
	agentAddr string
	sys       string
}

// newPipeline starts InfluxDB and the aggregator, and writes an agent
// configuration that streams the shared sysfs fixture's InfiniBand and RAPL
// counters to it every second.
func newPipeline(t *testing.T) *pipeline {
	t.Helper()
	p := &pipeline{t: t, db: testenv.StartInfluxDB(t), aggAddr: testenv.FreeAddr(t)}
	p.sys = filepath.Join(testenv.SharedTestdata(t), "sysfs", "node-exporter", "sys")
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte("# writers\n"+pipelineToken+"\n"), 0o600)
	p.aggCfg = filepath.Join(dir, "aggregator.yml")
	os.WriteFile(p.aggCfg, []byte(fmt.Sprintf(`tokens_file: %s
influx:
  url: %s
  bucket: %s
  spool_dir: %s
  dead_letter_file: %s
  timeout: 2s
accounting: {state_file: %s}
`, tokens, p.db.URL, p.db.Bucket, filepath.Join(dir, "agg-spool"), filepath.Join(dir, "dead.lp"), filepath.Join(dir, "accounting.state"))), 0o600)
	p.startAggregator()
	tokenFile := filepath.Join(dir, "agent-token")
	os.WriteFile(tokenFile, []byte(pipelineToken+"\n"), 0o600)
	p.agentCfg = filepath.Join(dir, "agent.yml")
	os.WriteFile(p.agentCfg, []byte(fmt.Sprintf(`labels: {site: dc1, hall: h1, rack: r1, host: n1}
sources:
  nvml: {enabled: false}
  node: {interval: 1s, collectors: [infiniband, rapl]}
exporters:
  stream:
    url: http://%s
    token_file: %s
    spool_dir: %s
    flush_interval: 1s
    timeout: 2s
`, p.aggAddr, tokenFile, filepath.Join(dir, "agent-spool"))), 0o600)
	return p
}

func (p *pipeline) startAggregator() {
	p.agg = testenv.StartProcess(p.t, filepath.Join(binDir, "joules-aggregator"), "--config.file="+p.aggCfg, "--web.listen-address="+p.aggAddr, "--log.format=json")
	p.agg.WaitHTTP("http://" + p.aggAddr + "/health")
}

func (p *pipeline) startAgent() {
	p.agentAddr = testenv.FreeAddr(p.t)
	p.agent = testenv.StartProcess(p.t, filepath.Join(binDir, "joules-agent"), "--config.file="+p.agentCfg, "--web.listen-address="+p.agentAddr,
		"--path.sysfs="+p.sys, "--log.format=json")
	p.agent.WaitHTTP("http://" + p.agentAddr + "/healthz")
}

// waitSpoolDrained waits until the agent's spool has delivered everything
// it held and returns how long that took.
func (p *pipeline) waitSpoolDrained(within time.Duration) time.Duration {
	p.t.Helper()
	start := time.Now()
	for scrapeValue(p.t, "http://"+p.agentAddr+"/metrics", `joules_spool_batches{`) > 1 {
		if time.Since(start) > within {
			p.t.Fatalf("the agent's spool did not drain in %s", within)
		}
		time.Sleep(250 * time.Millisecond)
	}
	return time.Since(start)
}

// waitAgent waits until the agent's series starting with prefix exists and
// its value satisfies ok.
func (p *pipeline) waitAgent(within time.Duration, what, prefix string, ok func(float64) bool) {
	p.t.Helper()
	testenv.WaitFor(p.t, within, what, func() bool {
		v, found := scrapeFind(p.t, "http://"+p.agentAddr+"/metrics", prefix)
		return found && ok(v)
	})
}

func positive(v float64) bool { return v > 0 }

// producedPoints reads the count the agent's stream logs when it stops.
func producedPoints(t *testing.T, logs string) int64 {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "exporter stopped" {
			continue
		}
		if v, ok := rec["produced_points"].(float64); ok {
			return int64(v)
		}
	}
	t.Fatalf("the agent did not log its produced points:\n%s", logs)
	return 0
}

// flux runs a query and returns the rows' values.
func flux(t *testing.T, db *testenv.InfluxDB, q string) []any {
	t.Helper()
	client := influxdb2.NewClient(db.URL, "")
	defer client.Close()
	res, err := client.QueryAPI("").Query(context.Background(), q)
	if err != nil {
		t.Fatalf("flux %s: %v", q, err)
	}
	var out []any
	for res.Next() {
		out = append(out, res.Record().Value())
	}
	if res.Err() != nil {
		t.Fatalf("flux: %v", res.Err())
	}
	return out
}

// derivedMeasurements are what accounting writes: not produced by agents.
var derivedMeasurements = "/^(" + strings.Join(schema.Derived, "|") + ")$/"

// totalPoints counts the raw points in InfluxDB.
func totalPoints(t *testing.T, db *testenv.InfluxDB) int64 {
	rows := flux(t, db, fmt.Sprintf(`from(bucket: %q) |> range(start: 0) |> filter(fn: (r) => r._measurement !~ %s) |> group() |> count()`, db.Bucket, derivedMeasurements))
	if len(rows) == 0 {
		return 0
	}
	n, _ := rows[0].(int64)
	return n
}

func waitTotal(t *testing.T, db *testenv.InfluxDB, want int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := totalPoints(t, db)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("InfluxDB holds %d points, want %d (every point produced)", got, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestAgentToInfluxDBExactValues sends fixture counters through the real
// aggregator into the real InfluxDB and reads them back exactly.
func TestAgentToInfluxDBExactValues(t *testing.T) {
	p := newPipeline(t)
	p.startAgent()
	words := testenv.ReadUint(t, filepath.Join(p.sys, "class/infiniband/mlx4_0/ports/1/counters/port_rcv_data"))
	energy := testenv.ReadUint(t, filepath.Join(p.sys, "class/powercap/intel-rapl:0/energy_uj"))
	checks := map[string]float64{
		`r._measurement == "node_infiniband_port_data_received_bytes_total" and r.device == "mlx4_0" and r.port == "1" and r.host == "n1" and r.site == "dc1"`: float64(4 * words),
		`r._measurement == "node_rapl_package_joules_total" and r.index == "0" and r.rack == "r1"`:                                                             float64(energy) / 1e6,
	}
	for filter, want := range checks {
		deadline := time.Now().Add(30 * time.Second)
		for {
			rows := flux(t, p.db, fmt.Sprintf(`from(bucket: %q) |> range(start: -1h) |> filter(fn: (r) => %s) |> last()`, p.db.Bucket, filter))
			if len(rows) == 1 && rows[0] == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: InfluxDB has %v, want exactly %v\naggregator:\n%s", filter, rows, want, p.agg.Logs())
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	if err := p.agent.Stop(syscall.SIGTERM); err != nil {
		t.Errorf("agent exit: %v", err)
	}
	waitTotal(t, p.db, producedPoints(t, p.agent.Logs()), 30*time.Second)
}

// TestAggregatorDownTwoMinutes stops the aggregator for two minutes
// (JOULES_OUTAGE, e.g. 10m in make soak) while the agent keeps sampling:
// every point arrives afterwards.
func TestAggregatorDownTwoMinutes(t *testing.T) {
	t.Parallel()
	outage := 2 * time.Minute
	if v := os.Getenv("JOULES_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("JOULES_OUTAGE: %v", err)
		}
		outage = d
	}
	p := newPipeline(t)
	p.startAgent()
	p.waitAgent(30*time.Second, "the agent's first delivery", "joules_stream_sent_points_total{", positive)
	if err := p.agg.Stop(syscall.SIGTERM); err != nil {
		t.Fatalf("aggregator exit: %v", err)
	}
	time.Sleep(outage) // the outage itself
	p.startAggregator()
	drained := p.waitSpoolDrained(outage)
	t.Logf("the agent's spool of %s drained in %s", outage, drained.Round(100*time.Millisecond))
	if err := p.agent.Stop(syscall.SIGTERM); err != nil {
		t.Errorf("agent exit: %v", err)
	}
	produced := producedPoints(t, p.agent.Logs())
	if produced < 100 {
		t.Fatalf("only %d points produced in over %s", produced, outage)
	}
	t.Logf("%d points produced across an aggregator outage of %s", produced, outage)
	waitTotal(t, p.db, produced, 60*time.Second)
}

// TestInfluxDBDownTwoMinutes stops InfluxDB for two minutes: the
// aggregator spools and every point arrives afterwards.
func TestInfluxDBDownTwoMinutes(t *testing.T) {
	t.Parallel()
	p := newPipeline(t)
	p.startAgent()
	testenv.WaitFor(t, 30*time.Second, "the first points in InfluxDB", func() bool { return totalPoints(t, p.db) > 0 })
	p.db.Stop()
	time.Sleep(2 * time.Minute) // the outage itself
	metrics := "http://" + p.aggAddr + "/metrics"
	backlog, written := scrapeValue(t, metrics, "joules_output_spool_points "), scrapeValue(t, metrics, "joules_output_written_points_total ")
	if backlog == 0 {
		t.Fatal("the aggregator spooled nothing while InfluxDB was down")
	}
	p.db.Start()
	testenv.WaitFor(t, 60*time.Second, "the aggregator's backlog written to InfluxDB", func() bool {
		return scrapeValue(t, metrics, "joules_output_written_points_total ") >= written+backlog
	})
	if err := p.agent.Stop(syscall.SIGTERM); err != nil {
		t.Errorf("agent exit: %v", err)
	}
	waitTotal(t, p.db, producedPoints(t, p.agent.Logs()), 60*time.Second)
}

// TestAggregatorKilledAtRandom kills the aggregator with SIGKILL three
// times at random moments while the agent streams (and accounting
// checkpoints): a 204 means the points were fsynced into its spool, so
// every point produced reaches InfluxDB, and its accounting state opens
// after each kill.
func TestAggregatorKilledAtRandom(t *testing.T) {
	t.Parallel()
	p := newPipeline(t)
	p.startAgent()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for range 3 {
		pause := time.Duration(1500+rng.IntN(2500)) * time.Millisecond
		t.Logf("killing the aggregator after %s", pause)
		time.Sleep(pause)
		if err := p.agg.Stop(syscall.SIGKILL); err == nil {
			t.Fatal("aggregator survived SIGKILL?")
		}
		p.startAggregator()
		if strings.Contains(p.agg.Logs(), "accounting state") && strings.Contains(p.agg.Logs(), "unreadable") {
			t.Errorf("the accounting checkpoint did not survive SIGKILL:\n%s", p.agg.Logs())
		}
	}
	p.waitSpoolDrained(60 * time.Second) // what the kills refused reached the last aggregator
	if err := p.agent.Stop(syscall.SIGTERM); err != nil {
		t.Errorf("agent exit: %v", err)
	}
	waitTotal(t, p.db, producedPoints(t, p.agent.Logs()), 60*time.Second)
}

// TestAgentKilledWhileSpooling kills the agent with SIGKILL three times
// while the aggregator is away and its spool grows; each restart opens the
// spool, nothing corrupt is sent, and every point that was spooled before a
// kill arrives.
func TestAgentKilledWhileSpooling(t *testing.T) {
	t.Parallel()
	p := newPipeline(t)
	if err := p.agg.Stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var spooledBeforeLastKill float64
	for i := range 3 {
		addr := testenv.FreeAddr(t)
		agent := testenv.StartProcess(t, filepath.Join(binDir, "joules-agent"), "--config.file="+p.agentCfg, "--web.listen-address="+addr,
			"--path.sysfs="+p.sys, "--log.format=json")
		agent.WaitHTTP("http://" + addr + "/healthz")
		time.Sleep(time.Duration(2500+700*i) * time.Millisecond) // kill at different points of the flush cycle
		spooledBeforeLastKill = scrapeValue(t, "http://"+addr+"/metrics", `joules_spool_points{`)
		if err := agent.Stop(syscall.SIGKILL); err == nil {
			t.Fatal("agent survived SIGKILL?")
		}
	}
	p.startAggregator()
	p.startAgent()
	deadline := time.Now().Add(60 * time.Second)
	for totalPoints(t, p.db) < int64(spooledBeforeLastKill) {
		if time.Now().After(deadline) {
			t.Fatalf("InfluxDB holds %d points; %v were spooled before the last kill", totalPoints(t, p.db), spooledBeforeLastKill)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if strings.Contains(p.agg.Logs(), "partial write") {
		t.Errorf("the aggregator refused lines: something corrupt was sent\n%s", p.agg.Logs())
	}
}

func scrapeValue(t *testing.T, url, prefix string) float64 {
	t.Helper()
	v, ok := scrapeFind(t, url, prefix)
	if !ok {
		t.Fatalf("no %s in the exposition", prefix)
	}
	return v
}

// scrapeFind returns the value of the first series starting with prefix.
func scrapeFind(t *testing.T, url, prefix string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return v, true
		}
	}
	return 0, false
}

// TestAgentWritesStraightToInfluxDB uses exporters.influx instead of the aggregator.
func TestAgentWritesStraightToInfluxDB(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	sys := filepath.Join(testenv.SharedTestdata(t), "sysfs", "node-exporter", "sys")
	cfg := filepath.Join(t.TempDir(), "agent.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`labels: {host: direct}
sources:
  nvml: {enabled: false}
  node: {collectors: [rapl]}
exporters:
  influx: {url: %q, bucket: %q, spool_dir: %s}
`, db.URL, db.Bucket, filepath.Join(t.TempDir(), "spool"))), 0o600)
	addr := testenv.FreeAddr(t)
	agent := testenv.StartProcess(t, filepath.Join(binDir, "joules-agent"), "--config.file="+cfg, "--web.listen-address="+addr, "--path.sysfs="+sys, "--log.format=json")
	agent.WaitHTTP("http://" + addr + "/healthz")
	energy := float64(testenv.ReadUint(t, filepath.Join(sys, "class/powercap/intel-rapl:0/energy_uj"))) / 1e6
	deadline := time.Now().Add(30 * time.Second)
	for {
		rows := flux(t, db, fmt.Sprintf(`from(bucket: %q) |> range(start: -1h) |> filter(fn: (r) => r._measurement == "node_rapl_package_joules_total" and r.host == "direct") |> last()`, db.Bucket))
		if len(rows) == 1 && rows[0] == energy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("InfluxDB has %v, want %v\n%s", rows, energy, agent.Logs())
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err := agent.Stop(syscall.SIGTERM); err != nil {
		t.Errorf("agent exit: %v", err)
	}
	waitTotal(t, db, producedPoints(t, agent.Logs()), 30*time.Second)
}

func TestAggregatorConfigCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yml")
	os.WriteFile(bad, []byte("tokens_file: /nonexistent\ninflux:\n  urll: x\n"), 0o600)
	out, err := exec.Command(filepath.Join(binDir, "joules-aggregator"), "--config.check", "--config.file="+bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `line 3: unknown key "urll" in influx`) {
		t.Errorf("bad config: err %v\n%s", err, out)
	}
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte("secret-token-77\n"), 0o600)
	good := filepath.Join(dir, "good.yml")
	os.WriteFile(good, []byte("tokens_file: "+tokens+"\n"), 0o600)
	out, err = exec.Command(filepath.Join(binDir, "joules-aggregator"), "--config.check", "--config.file="+good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "bucket: joules/autogen") || strings.Contains(string(out), "secret-token-77") {
		t.Errorf("good config: err %v\n%s", err, out)
	}
}

// TestSecretsNeverInLogs runs the aggregator at debug level with a writer
// token and an InfluxDB token, writes with the right and a wrong token and
// stops it: neither token, nor the wrong one, appears in its output.
func TestSecretsNeverInLogs(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	dir := t.TempDir()
	const writer, influx, wrong = "writer-secret-31", "influx-user:influx-secret-32", "guessed-secret-33"
	os.WriteFile(filepath.Join(dir, "tokens"), []byte(writer+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "influx.token"), []byte(influx+"\n"), 0o600)
	cfg := filepath.Join(dir, "aggregator.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`tokens_file: %s
influx: {url: %s, bucket: %s, token_file: %s, spool_dir: %s, dead_letter_file: %s, timeout: 2s}
accounting: {state_file: %s}
`, filepath.Join(dir, "tokens"), db.URL, db.Bucket, filepath.Join(dir, "influx.token"), filepath.Join(dir, "spool"), filepath.Join(dir, "dead.lp"), filepath.Join(dir, "acct.state"))), 0o600)
	addr := testenv.FreeAddr(t)
	agg := testenv.StartProcess(t, filepath.Join(binDir, "joules-aggregator"), "--config.file="+cfg, "--web.listen-address="+addr, "--log.level=debug")
	agg.WaitHTTP("http://" + addr + "/health")
	testenv.PostLines(t, addr, writer, []byte(fmt.Sprintf("m value=1 %d\n", time.Now().UnixNano())))
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/v2/write", strings.NewReader("m value=2"))
	req.Header.Set("Authorization", "Token "+wrong)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong token: %v %v", resp, err)
	}
	check, _ := exec.Command(filepath.Join(binDir, "joules-aggregator"), "--config.check", "--config.file="+cfg).CombinedOutput()
	if err := agg.Stop(syscall.SIGTERM); err != nil {
		t.Errorf("aggregator exit: %v", err)
	}
	for what, text := range map[string]string{"log": agg.Logs(), "--config.check": string(check)} {
		for _, secret := range []string{writer, "influx-secret-32", wrong} {
			if strings.Contains(text, secret) {
				t.Errorf("the aggregator's %s shows %q:\n%s", what, secret, text)
			}
		}
	}
	if !strings.Contains(string(check), "token_file") {
		t.Errorf("--config.check should name the token file:\n%s", check)
	}
}
