package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadAgentDefaults(t *testing.T) {
	for name, path := range map[string]string{"no file": "", "empty file": writeConfig(t, "")} {
		t.Run(name, func(t *testing.T) {
			cfg, err := LoadAgent(path, "node7")
			if err != nil {
				t.Fatal(err)
			}
			n := cfg.Sources.Node
			if !n.Enabled || n.Interval.Duration != time.Second || n.Timeout.Duration != time.Second {
				t.Errorf("node = %+v, want enabled, 1s interval, timeout = interval", n)
			}
			var cols []string
			for _, c := range n.Collectors {
				cols = append(cols, c.Value)
			}
			if strings.Join(cols, ",") != "netdev,infiniband,hwmon,rapl" {
				t.Errorf("collectors = %v", cols)
			}
			if cfg.Labels["host"] != "node7" {
				t.Errorf("host label = %q, want the hostname", cfg.Labels["host"])
			}
			if !cfg.Exporters.Prometheus.Enabled {
				t.Error("prometheus exporter disabled by default")
			}
		})
	}
}

func TestLoadAgentFile(t *testing.T) {
	path := writeConfig(t, `labels: {site: dc1, hall: h1, rack: r12, host: gpu-007}
sources:
  node:
    interval: 250ms
    collectors: [infiniband]
    options:
      netdev.device-exclude: "^lo$"
      systemd.unit-include: [a.service, b.service]
`)
	cfg, err := LoadAgent(path, "ignored")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Labels; got["site"] != "dc1" || got["hall"] != "h1" || got["rack"] != "r12" || got["host"] != "gpu-007" {
		t.Errorf("labels = %v", got)
	}
	n := cfg.Sources.Node
	if n.Interval.Duration != 250*time.Millisecond || n.Timeout.Duration != 250*time.Millisecond {
		t.Errorf("interval %s timeout %s, want 250ms both", n.Interval.Duration, n.Timeout.Duration)
	}
	if len(n.Collectors) != 1 || n.Collectors[0].Value != "infiniband" || n.Collectors[0].Line != 5 {
		t.Errorf("collectors = %+v, want [infiniband] on line 5 replacing the defaults", n.Collectors)
	}
	if o := n.Options["netdev.device-exclude"]; len(o.Values) != 1 || o.Values[0] != "^lo$" || o.Line != 7 {
		t.Errorf("device-exclude = %+v", o)
	}
	if o := n.Options["systemd.unit-include"]; strings.Join(o.Values, ",") != "a.service,b.service" {
		t.Errorf("unit-include = %+v", o)
	}
}

func TestLoadAgentErrorsNameKeyAndLine(t *testing.T) {
	path := writeConfig(t, `labels: {site: dc1}
sources:
  node:
    intervall: 1s
    timeout: fast
exporter:
  prometheus: {enabled: true}
`)
	_, err := LoadAgent(path, "h")
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		path + ":",
		`line 4: unknown key "intervall" in sources.node`,
		`line 5: invalid duration "fast"`,
		`line 6: unknown key "exporter" in the top level`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	path := writeConfig(t, `labels: {"bad-name": x, __reserved: y}
sources:
  node:
    interval: 1s
    timeout: 2s
    collectors: [netdev, netdev]
`)
	_, err := LoadAgent(path, "h")
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		`"bad-name" is not a valid label name`,
		`"__reserved" is not a valid label name`,
		"line 5: sources.node.timeout (2s) must not exceed sources.node.interval (1s)",
		`line 6: sources.node.collectors: "netdev" is listed twice`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if _, err := LoadAgent(writeConfig(t, "sources: {node: {interval: 0s}}\n"), "h"); err == nil ||
		!strings.Contains(err.Error(), "line 1: sources.node.interval must be positive") {
		t.Errorf("zero interval: err = %v", err)
	}
}

func TestLoadAgentMissingFile(t *testing.T) {
	_, err := LoadAgent(filepath.Join(t.TempDir(), "nope.yml"), "h")
	if err == nil || !strings.Contains(err.Error(), "nope.yml") {
		t.Errorf("err = %v, want one naming the file", err)
	}
}

func TestEffectiveRoundTrips(t *testing.T) {
	cfg, err := LoadAgent(writeConfig(t, "labels: {site: dc1}\nsources: {node: {interval: 2s, options: {netdev.device-exclude: ^lo$}}}\n"), "h")
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.Effective()
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadAgent(writeConfig(t, string(out)), "other")
	if err != nil {
		t.Fatalf("effective config does not load back: %v\n%s", err, out)
	}
	if again.Sources.Node.Interval.Duration != 2*time.Second || again.Labels["host"] != "h" ||
		again.Sources.Node.Options["netdev.device-exclude"].Values[0] != "^lo$" || len(again.Sources.Node.Collectors) != 4 {
		t.Errorf("round trip lost values:\n%s", out)
	}
}

func TestRedfishEntries(t *testing.T) {
	pass := filepath.Join(t.TempDir(), "bmc.pass")
	if err := os.WriteFile(pass, []byte("hunter2-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadAgent(writeConfig(t, `sources:
  redfish:
    - name: bmc
      endpoint: https://10.0.0.5
      username: monitor
      password_file: `+pass+`
    - name: pdu-a
      endpoint: http://10.0.1.9:8000
      role: pdu_output
      interval: 30s
`), "h")
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Sources.Redfish
	if len(r) != 2 || r[0].Interval.Duration != 10*time.Second || r[0].Timeout.Duration != 5*time.Second || r[0].Role.Value != "host" || r[0].MaxConcurrentRequests != 4 {
		t.Errorf("defaults: %+v", r[0])
	}
	if r[1].Role.Value != "pdu_output" || r[1].Timeout.Duration != 5*time.Second {
		t.Errorf("pdu entry: %+v", r[1])
	}
	if pw, err := r[0].Password(); err != nil || pw != "hunter2-secret" {
		t.Errorf("password = %q, %v", pw, err)
	}
	out, _ := cfg.Effective()
	if strings.Contains(string(out), "hunter2") {
		t.Errorf("effective config shows the password:\n%s", out)
	}

	_, err = LoadAgent(writeConfig(t, `sources:
  redfish:
    - name: bmc
      endpoint: 10.0.0.5
      username: monitor
      role: facility
    - name: bmc
      endpoint: https://x
      password_file: /nonexistent/pass
      interval: 5s
      timeout: 5s
`), "h")
	if err == nil {
		t.Fatal("bad redfish entries accepted")
	}
	for _, want := range []string{
		`line 4: sources.redfish "bmc": endpoint "10.0.0.5" must be an http(s) URL`,
		`line 6: sources.redfish "bmc": role "facility" is not one of host, facility_input, ups_output, pdu_output, it_input`,
		`line 3: sources.redfish "bmc": username without password_file or password_env`,
		`line 7: sources.redfish: name "bmc" is used twice`,
		`password_file: stat /nonexistent/pass`,
		`line 11: sources.redfish "bmc": timeout (5s, one request) must be positive and below the interval (5s)`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
