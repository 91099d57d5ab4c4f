// Package packaging holds what operators install: configurations, systemd
// units, Prometheus rules. Its tests check them with the real tools.
package packaging

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/joules-energy/joules/internal/testenv"
)

func TestPrometheusRulesAndConfig(t *testing.T) {
	promtool := testenv.Tool(t, "promtool", "apt-get install -y prometheus")
	for _, args := range [][]string{
		{"check", "rules", "prometheus/rules.yml"},
		{"test", "rules", "prometheus/rules_test.yml"},
		{"check", "config", "prometheus/scrape.yml"},
	} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// TestRulesUseDocumentedMetrics checks every joules_ metric a rule reads
// against docs/METRICS.md.
func TestRulesUseDocumentedMetrics(t *testing.T) {
	rules, err := os.ReadFile("prometheus/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../docs/METRICS.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, line := range strings.Split(string(rules), "\n") {
		if !strings.Contains(line, "expr:") {
			continue
		}
		for _, name := range regexp.MustCompile(`\bjoules_[a-z_]+[a-z]\b`).FindAllString(line, -1) {
			seen++
			if !strings.Contains(string(doc), "`"+name+"`") {
				t.Errorf("rules.yml reads %s, which docs/METRICS.md does not list", name)
			}
		}
	}
	if seen < 10 {
		t.Errorf("found %d metric names in the rules; the scan is broken", seen)
	}
}

// TestSystemdUnits checks what the units promise: notify with a watchdog
// (the binaries speak sd_notify), restart, hardening, a state directory for
// the spools, credentials for secrets.
func TestSystemdUnits(t *testing.T) {
	for _, unit := range []string{"systemd/joules-agent.service", "systemd/joules-aggregator.service"} {
		raw, err := os.ReadFile(unit)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Type=notify", "WatchdogSec=", "Restart=on-failure", "ProtectSystem=strict", "PrivateTmp=yes",
			"NoNewPrivileges=yes", "CapabilityBoundingSet=", "StateDirectory=joules", "LoadCredential=", "User=joules", "ExecStart=/usr/bin/"} {
			if !strings.Contains(string(raw), "\n"+want) {
				t.Errorf("%s lacks %s", unit, want)
			}
		}
	}
	agent, _ := os.ReadFile("systemd/joules-agent.service")
	for _, want := range []string{"DeviceAllow=/dev/nvidiactl", "AmbientCapabilities=CAP_DAC_READ_SEARCH"} {
		if !strings.Contains(string(agent), want) {
			t.Errorf("agent unit lacks %s (NVML devices, RAPL)", want)
		}
	}
}
