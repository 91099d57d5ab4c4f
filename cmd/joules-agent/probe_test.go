package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/internal/testenv"
	"github.com/joules-energy/joules/redfish/redfishsim"
)

// TestConfigProbe probes a configuration whose endpoints are right and
// wrong in the ways operators get them wrong, and reads what the agent says
// of each.
func TestConfigProbe(t *testing.T) {
	shared := testenv.SharedTestdata(t)
	const token, password = "probe-token-5150", "bmc-secret-2718"
	ingest := aggregator.NewIngest([]string{token}, aggregator.Limits{}, discardSink{}, slog.New(slog.DiscardHandler))
	writeAPI := http.NewServeMux()
	writeAPI.Handle("/api/v2/write", ingest) // as the aggregator serves it
	good := httptest.NewServer(writeAPI)
	defer good.Close()
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html><body>Welcome</body></html>")
	}))
	defer page.Close()

	sim, err := redfishsim.New("rack1", filepath.Join(shared, "redfish", "dmtf-public-rackmount1"), redfishsim.Options{Username: "monitor", Password: password})
	if err != nil {
		t.Fatal(err)
	}
	cert, caPEM, err := redfishsim.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	bmc := httptest.NewUnstartedServer(sim)
	bmc.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	bmc.StartTLS()
	defer bmc.Close()
	ca := writeFile(t, "ca.pem", string(caPEM))
	pass := writeFile(t, "pass", password+"\n")
	wrongPass := writeFile(t, "wrong", "not-the-password\n")
	tokenFile := writeFile(t, "token", token+"\n")
	dir := t.TempDir()

	cfg := fmt.Sprintf(`sources:
  nvml: {enabled: false}
  redfish:
    - {name: good, endpoint: %[1]q, username: monitor, password_file: %[2]s, ca_file: %[3]s}
    - {name: basic, endpoint: %[1]q, username: monitor, password_file: %[2]s, ca_file: %[3]s, basic_auth: true}
    - {name: badpass, endpoint: %[1]q, username: monitor, password_file: %[4]s, ca_file: %[3]s}
    - {name: untrusted, endpoint: %[1]q, username: monitor, password_file: %[2]s}
    - {name: web, endpoint: %[5]q, username: monitor, password_file: %[2]s}
exporters:
  stream: {url: %[6]q, token_file: %[7]s, spool_dir: %[8]s/a}
  influx: {url: %[5]q, token_file: %[7]s, spool_dir: %[8]s/b}
`, bmc.URL, pass, ca, wrongPass, page.URL, good.URL+"/api/v2/write", tokenFile, dir)
	out, err := exec.Command(agentBin, "--config.check", "--config.probe", "--config.file="+writeFile(t, "a.yml", cfg)).CombinedOutput()
	if code := exitCode(err); code != 1 {
		t.Errorf("exit code %d, want 1 with endpoints failing", code)
	}
	for _, want := range []string{
		`(?m)^# effective configuration`,
		`(?m)^ok   exporters\.stream ` + regexp.QuoteMeta(good.URL) + `/api/v2/write: .*an empty write was answered 204 No Content$`,
		`(?m)^FAIL exporters\.influx ` + regexp.QuoteMeta(page.URL) + `/api/v2/write: 200 OK: answered \(an HTML page\) where an InfluxDB v2 write API answers 204 No Content.*set exporters\.influx\.url to`,
		`(?m)^ok   sources\.redfish good \S+: Redfish 1\.\d+\.\d+.*; logged in \(session\)$`,
		`(?m)^ok   sources\.redfish basic \S+: Redfish .*; logged in \(basic auth\)$`,
		`(?m)^FAIL sources\.redfish badpass \S+: the BMC refused the login \(401\): check username and the password`,
		`(?m)^FAIL sources\.redfish untrusted \S+: .*set ca_file to the CA that signed the BMC's certificate$`,
		`(?m)^FAIL sources\.redfish web \S+: GET /redfish/v1/ answered 200 OK with no Redfish service root: set endpoint to the BMC's base URL`,
		`(?m)^4 endpoint\(s\) failed$`,
	} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("probe output lacks %s:\n%s", want, out)
		}
	}
	for _, secret := range []string{token, password} {
		if strings.Contains(string(out), secret) {
			t.Errorf("probe output shows a secret:\n%s", out)
		}
	}

	// Only the good endpoints: exit 0.
	cfg = fmt.Sprintf("sources:\n  nvml: {enabled: false}\n  redfish:\n    - {name: good, endpoint: %q, username: monitor, password_file: %s, ca_file: %s}\nexporters:\n  stream: {url: %q, token_file: %s, spool_dir: %s/a}\n",
		bmc.URL, pass, ca, good.URL, tokenFile, dir)
	if out, err := exec.Command(agentBin, "--config.probe", "--config.file="+writeFile(t, "b.yml", cfg)).CombinedOutput(); err != nil {
		t.Errorf("good endpoints: %v\n%s", err, out)
	}
}

// TestConfigCheckNamesAWriteURLThatCannotWork needs no server: the URL's
// form alone shows it.
func TestConfigCheckNamesAWriteURLThatCannotWork(t *testing.T) {
	tokenFile := writeFile(t, "token", "t\n")
	cfg := fmt.Sprintf("sources: {nvml: {enabled: false}}\nexporters:\n  stream:\n    url: https://agg.example:9561/api/v2/write/api/v2/write\n    token_file: %s\n", tokenFile)
	out, err := exec.Command(agentBin, "--config.check", "--config.file="+writeFile(t, "a.yml", cfg)).CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), `line 4: exporters.stream: url "https://agg.example:9561/api/v2/write/api/v2/write": give the server's base URL`) {
		t.Errorf("--config.check: %v\n%s", err, out)
	}
	cfg = strings.Replace(cfg, "/api/v2/write/api/v2/write", "/api/v2/write", 1)
	if out, err := exec.Command(agentBin, "--config.check", "--config.file="+writeFile(t, "b.yml", cfg)).CombinedOutput(); err != nil {
		t.Errorf("a URL ending in /api/v2/write is refused: %v\n%s", err, out)
	}
}

type discardSink struct{}

func (discardSink) Write([]aggregator.Point) error { return nil }
