package packaging

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
	"github.com/joules-energy/joules/meter/metersim"
	"github.com/joules-energy/joules/redfish/redfishsim"
)

// TestExamplesEndToEnd runs the shipped examples as they are, with only
// the values that must change here substituted (addresses, and the paths
// systemd would provide): the aggregator from examples/aggregator.yml
// writing to a real InfluxDB, and an agent from each node example streaming
// to it; the GPU node's BMC and the management node's UPS and PDU are
// Redfish simulators, its switchgear meter a Modbus server and its SNMP v3
// PDU a real snmpd, the inference server a vLLM-shaped endpoint. Each agent's
// endpoints must pass --config.probe, and its points must reach InfluxDB.
func TestExamplesEndToEnd(t *testing.T) {
	shared := testenv.SharedTestdata(t)
	bin := buildDaemons(t)
	db := testenv.StartInfluxDB(t)
	root := t.TempDir()
	state := mkdir(t, root, "state") // what StateDirectory=joules provides
	const token = "example-token-4471"

	aggAddr := testenv.FreeAddr(t)
	aggCreds := mkdir(t, root, "credentials", "joules-aggregator.service")
	write(t, filepath.Join(aggCreds, "tokens"), "# agents\n"+token+"\n")
	write(t, filepath.Join(aggCreds, "influx.token"), "unused-by-influxdb-1.8\n")
	aggCfg := substitute(t, root, "examples/aggregator.yml", map[string]string{
		"/run/credentials/joules-aggregator.service/": aggCreds + "/",
		"/var/lib/joules/":                            state + "/",
		"https://influx.dc1.example:8086":             db.URL, // InfluxDB 1.8: org ignored, bucket "joules" is the database joules
	})
	// Without the example's --web.config.file: plain HTTP on loopback.
	agg := testenv.StartProcess(t, filepath.Join(bin, "joules-aggregator"), "--config.file="+aggCfg, "--web.listen-address="+aggAddr)
	agg.WaitHTTP("http://" + aggAddr + "/health")

	agentCreds := mkdir(t, root, "credentials", "joules-agent.service")
	etc := mkdir(t, root, "etc")
	write(t, filepath.Join(agentCreds, "stream.token"), token+"\n")
	cert, caPEM, err := redfishsim.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	bmc := func(name, mockup, password string) string {
		b, err := redfishsim.New(name, filepath.Join(shared, "redfish", mockup), redfishsim.Options{Username: "joules-ro", Password: password})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(b)
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv.URL
	}
	common := map[string]string{
		"https://aggregator.dc1.example:9561":    "http://" + aggAddr,
		"/run/credentials/joules-agent.service/": agentCreds + "/",
		"/etc/joules/":                           etc + "/",
		"/var/lib/joules/":                       state + "/",
	}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range common {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}

	t.Run("gpu-node", func(t *testing.T) {
		write(t, filepath.Join(agentCreds, "bmc.pass"), "bmc-pass-8812\n")
		write(t, filepath.Join(etc, "bmc-ca.pem"), string(caPEM))
		vllm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, "# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total{model_name=\"llama\"} 4242\n"+
				"# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total{model_name=\"llama\"} 777\n")
		}))
		t.Cleanup(vllm.Close)
		textfiles := mkdir(t, state, "textfile")
		write(t, filepath.Join(textfiles, "job.prom"), "joules_work_total{unit=\"flop\",kind=\"training\"} 2.5e+15\n")
		cfg := substitute(t, root, "examples/gpu-node.yml", with(map[string]string{
			"https://10.40.14.7":    bmc("bmc", "dmtf-public-rackmount1", "bmc-pass-8812"),
			"http://127.0.0.1:8000": vllm.URL,
		}))
		probeOK(t, bin, cfg, []string{"exporters.stream", "sources.redfish bmc"}, token, "bmc-pass-8812")
		sys := filepath.Join(shared, "sysfs", "node-exporter", "sys")
		startAgent(t, bin, cfg, "--path.sysfs="+sys)

		energy := float64(testenv.ReadUint(t, filepath.Join(sys, "class/powercap/intel-rapl:0/energy_uj"))) / 1e6
		where := `site='dc1' AND hall='h2' AND rack='r14'`
		waitValue(t, db, `SELECT last(value) FROM "joules_work_total" WHERE `+where+` AND workload='vllm' AND kind='generation' AND model_name='llama'`, 4242)
		waitValue(t, db, `SELECT last(value) FROM "joules_work_total" WHERE `+where+` AND workload='job' AND unit='flop'`, 2.5e15)
		waitValue(t, db, `SELECT last(value) FROM "node_rapl_package_joules_total" WHERE `+where+` AND "index"='0'`, energy)
		waitValue(t, db, `SELECT last(value) FROM "joules_redfish_up" WHERE `+where+` AND bmc='bmc' AND role='host'`, 1)
		waitRows(t, db, `SELECT count(value) FROM "joules_redfish_host_power_watts" WHERE `+where+` AND bmc='bmc'`)
		waitValue(t, db, `SELECT last(value) FROM "joules_stream_up" WHERE `+where+` AND target='stream'`, 1)
	})

	t.Run("management-node", func(t *testing.T) {
		write(t, filepath.Join(agentCreds, "meters.pass"), "meters-pass-3390\n")
		write(t, filepath.Join(etc, "meters-ca.pem"), string(caPEM))
		write(t, filepath.Join(agentCreds, "snmp.auth"), "snmp-auth-5521\n")
		write(t, filepath.Join(agentCreds, "snmp.priv"), "snmp-priv-7734\n")
		// The APC rack PDU's recorded power and energy, over SNMP v3 from a real snmpd.
		pdu := testenv.StartSNMPD(t, testenv.SNMPv3User{Name: "joules-ro", AuthProto: "SHA", AuthKey: "snmp-auth-5521", PrivProto: "AES", PrivKey: "snmp-priv-7734"},
			map[string]int64{"1.3.6.1.4.1.318.1.1.26.4.3.1.5.1": 27, "1.3.6.1.4.1.318.1.1.26.4.3.1.9.1": 19677})
		// The switchgear meter: 180 kW, as a Schneider PM5000 lays it out.
		feed, err := metersim.NewModbusServer(testenv.FreeAddr(t), metersim.PM5000(
			func(time.Time) float64 { return 180e3 }, func(time.Time) float64 { return 3.6e12 }))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { feed.Stop() })
		meters := map[string]string{"ups-h2": "ups_output", "pdu-r14-a": "pdu_output"}
		cfg := substitute(t, root, "examples/management-node.yml", with(map[string]string{
			"10.40.0.10:502":     feed.Addr(),
			"10.40.15.2":         pdu.Addr,
			"https://10.40.0.11": bmc("ups-h2", "dmtf-public-pdu", "meters-pass-3390"),
			"https://10.40.14.2": bmc("pdu-r14-a", "dmtf-public-pdu", "meters-pass-3390"),
		}))
		probeOK(t, bin, cfg, []string{"exporters.stream", "sources.redfish ups-h2", "sources.redfish pdu-r14-a", "sources.modbus feed-h2", "sources.snmp pdu-r15-a"},
			token, "meters-pass-3390", "snmp-auth-5521", "snmp-priv-7734")
		startAgent(t, bin, cfg)
		for name, role := range meters {
			where := fmt.Sprintf(`site='dc1' AND hall='h2' AND host='mgmt-h2' AND bmc='%s' AND role='%s'`, name, role)
			waitValue(t, db, `SELECT last(value) FROM "joules_redfish_up" WHERE `+where, 1)
			waitRows(t, db, `SELECT count(value) FROM "joules_redfish_equipment_power_watts" WHERE `+where)
		}
		where := `site='dc1' AND hall='h2' AND host='mgmt-h2'`
		waitValue(t, db, `SELECT last(value) FROM "joules_modbus_equipment_power_watts" WHERE `+where+` AND device='feed-h2' AND role='facility_input'`, 180e3)
		waitValue(t, db, `SELECT last(value) FROM "joules_snmp_equipment_power_watts" WHERE `+where+` AND device='pdu-r15-a' AND role='pdu_output'`, 270)
		waitValue(t, db, `SELECT last(value) FROM "joules_snmp_equipment_energy_joules_total" WHERE `+where+` AND device='pdu-r15-a' AND method='counter'`, 19677*360000)
		waitValue(t, db, `SELECT last(value) FROM "joules_stream_up" WHERE host='mgmt-h2' AND target='stream'`, 1)
	})
}

// buildDaemons builds joules-agent and joules-aggregator into a temporary folder.
func buildDaemons(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", dir+"/", "../cmd/joules-agent", "../cmd/joules-aggregator").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// substitute writes a copy of an example with each key replaced by its
// value; every key must occur, so that the test follows the example.
func substitute(t *testing.T, dir, example string, values map[string]string) string {
	t.Helper()
	raw, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	for from, to := range values {
		if !strings.Contains(text, from) {
			t.Fatalf("%s no longer holds %q; update this test's substitutions", example, from)
		}
		text = strings.ReplaceAll(text, from, to)
	}
	path := filepath.Join(dir, filepath.Base(example))
	write(t, path, text)
	return path
}

// probeOK runs --config.check --config.probe on an agent configuration:
// it must pass, say ok for each endpoint, and show no secret.
func probeOK(t *testing.T, bin, cfg string, endpoints []string, secrets ...string) {
	t.Helper()
	out, err := exec.Command(filepath.Join(bin, "joules-agent"), "--config.check", "--config.probe", "--config.file="+cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("--config.probe: %v\n%s", err, out)
	}
	for _, e := range endpoints {
		if !strings.Contains(string(out), "ok   "+e+" ") {
			t.Errorf("--config.probe does not say %s is ok:\n%s", e, out)
		}
	}
	for _, s := range secrets {
		if strings.Contains(string(out), s) {
			t.Errorf("--config.probe shows a secret:\n%s", out)
		}
	}
}

func startAgent(t *testing.T, bin, cfg string, args ...string) {
	t.Helper()
	addr := testenv.FreeAddr(t)
	p := testenv.StartProcess(t, filepath.Join(bin, "joules-agent"), append([]string{"--config.file=" + cfg, "--web.listen-address=" + addr}, args...)...)
	p.WaitHTTP("http://" + addr + "/healthz")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent logs:\n%s", p.Logs())
		}
	})
}

// influxQL runs a query on the database joules and returns the first
// series' rows.
func influxQL(t *testing.T, db *testenv.InfluxDB, q string) [][]any {
	t.Helper()
	resp, err := http.Get(db.URL + "/query?" + url.Values{"db": {"joules"}, "q": {q}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Results []struct {
			Error  string
			Series []struct{ Values [][]any }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if len(r.Results) == 0 || r.Results[0].Error != "" {
		t.Fatalf("%s: %+v", q, r)
	}
	if len(r.Results[0].Series) == 0 {
		return nil
	}
	return r.Results[0].Series[0].Values
}

// waitFor runs q until ok holds for its rows, for at most 30 s.
func waitFor(t *testing.T, db *testenv.InfluxDB, q, want string, ok func([][]any) bool) {
	t.Helper()
	var rows [][]any
	waited := false
	t.Cleanup(func() { // WaitFor fails the test without the last answer
		if !waited {
			t.Logf("InfluxDB: %s last gave %v", q, rows)
		}
	})
	testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("InfluxDB: %s to give %s", q, want), func() bool {
		rows = influxQL(t, db, q)
		return ok(rows)
	})
	waited = true
}

func waitValue(t *testing.T, db *testenv.InfluxDB, q string, want float64) {
	t.Helper()
	waitFor(t, db, q, fmt.Sprint(want), func(rows [][]any) bool {
		return len(rows) == 1 && len(rows[0]) == 2 && rows[0][1] == want
	})
}

func waitRows(t *testing.T, db *testenv.InfluxDB, q string) {
	t.Helper()
	waitFor(t, db, q, "a count above 0", func(rows [][]any) bool {
		n, _ := rows2count(rows)
		return n > 0
	})
}

func rows2count(rows [][]any) (float64, bool) {
	if len(rows) != 1 || len(rows[0]) != 2 {
		return 0, false
	}
	n, ok := rows[0][1].(float64)
	return n, ok
}

func mkdir(t *testing.T, parts ...string) string {
	t.Helper()
	dir := filepath.Join(parts...)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	return dir
}

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}
