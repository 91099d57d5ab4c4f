// Package packaging holds what operators install: configurations, systemd
// units, Prometheus rules. Its tests check them with the real tools.
package packaging

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/joules-energy/joules/internal/config"
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
			"NoNewPrivileges=yes", "CapabilityBoundingSet=", "StateDirectory=joules", "User=joules", "ExecStart=/usr/bin/"} {
			if !strings.Contains(string(raw), "\n"+want) {
				t.Errorf("%s lacks %s", unit, want)
			}
		}
	}
	agent, _ := os.ReadFile("systemd/joules-agent.service")
	aggregator, _ := os.ReadFile("systemd/joules-aggregator.service")
	// The aggregator cannot run without tokens; the agent's secrets depend on
	// its configuration, so its credential lines are documented, commented
	// out: a missing credential file would stop the unit from starting.
	if !strings.Contains(string(aggregator), "\nLoadCredential=tokens:") {
		t.Error("aggregator unit does not load the writers' tokens as a credential")
	}
	if !strings.Contains(string(agent), "\n#LoadCredential=bmc.pass:") || strings.Contains(string(agent), "\nLoadCredential=") {
		t.Error("agent unit must document its credentials without requiring files a fresh install lacks")
	}
	for _, want := range []string{"DeviceAllow=/dev/nvidiactl", "AmbientCapabilities=CAP_DAC_READ_SEARCH"} {
		if !strings.Contains(string(agent), want) {
			t.Errorf("agent unit lacks %s (NVML devices, RAPL)", want)
		}
	}
	// The agent's Go memory limit is a ceiling at about its 25 MB budget
	// (DESIGN.md), above the ~13 MiB the runtime holds in steady state.
	m := regexp.MustCompile(`\nEnvironment=GOMEMLIMIT=(\d+)MiB GOGC=(\d+)\n`).FindSubmatch(agent)
	if m == nil {
		t.Fatal("agent unit lacks Environment=GOMEMLIMIT=<n>MiB GOGC=<n>")
	}
	if limit, _ := strconv.Atoi(string(m[1])); limit > 24 || limit < 16 {
		t.Errorf("agent unit's GOMEMLIMIT is %d MiB: want 16 to 24 MiB (above the runtime's own, at most the 25 MB budget)", limit)
	}
}

// TestDashboardsUseKnownMetrics checks every expression of every dashboard:
// each joules_ name is a documented metric or a recording rule of rules.yml.
func TestDashboardsUseKnownMetrics(t *testing.T) {
	doc, _ := os.ReadFile("../docs/METRICS.md")
	rules, _ := os.ReadFile("prometheus/rules.yml")
	files, _ := filepath.Glob("grafana/dashboards/*.json")
	if len(files) == 0 {
		t.Fatal("no dashboards")
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var dash struct {
			Panels []struct {
				Title   string
				Targets []struct{ Expr string }
			}
		}
		if err := json.Unmarshal(raw, &dash); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		names := 0
		for _, p := range dash.Panels {
			for _, target := range p.Targets {
				for _, name := range regexp.MustCompile(`[a-z_]*:?joules_[a-z_:]+[a-z0-9]`).FindAllString(target.Expr, -1) {
					names++
					if strings.Contains(name, ":") {
						if !strings.Contains(string(rules), "record: "+name) {
							t.Errorf("%s, panel %q: %s is no recording rule of rules.yml", f, p.Title, name)
						}
					} else if !strings.Contains(string(doc), "`"+name+"`") {
						t.Errorf("%s, panel %q: %s is not in docs/METRICS.md", f, p.Title, name)
					}
				}
			}
		}
		if names < 10 {
			t.Errorf("%s: only %d metric names found; the scan is broken", f, names)
		}
	}
}

// TestDebPackage checks the .deb that `make package` builds (.ci/run runs it
// before the tests): metadata, contents, conffiles, and an install into a
// throwaway root whose agent checks the shipped configuration.
func TestDebPackage(t *testing.T) {
	debs, _ := filepath.Glob("../dist/joules_*.deb")
	rpms, _ := filepath.Glob("../dist/joules-*.rpm")
	if len(debs) != 1 || len(rpms) != 1 {
		testenv.Missing(t, "packages", fmt.Sprintf("dist/ holds %d .deb and %d .rpm", len(debs), len(rpms)), "make package")
	}
	deb := debs[0]
	fields, err := exec.Command("dpkg-deb", "-f", deb, "Package", "Architecture", "Version", "Maintainer").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Package: joules", "Architecture: amd64", "Version: ", "Maintainer: "} {
		if !strings.Contains(string(fields), want) {
			t.Errorf("metadata lacks %q:\n%s", want, fields)
		}
	}
	contents, err := exec.Command("dpkg-deb", "--contents", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"./usr/bin/joules-agent", "./usr/bin/joules-aggregator", "./usr/bin/joules", "./lib/systemd/system/joules-agent.service",
		"./lib/systemd/system/joules-aggregator.service", "./etc/joules/agent.yml", "./etc/joules/aggregator.yml",
		"./usr/share/joules/prometheus/rules.yml", "./usr/share/joules/grafana/dashboards/joules-overview.json"} {
		if !strings.Contains(string(contents), want) {
			t.Errorf("package lacks %s", want)
		}
	}
	ctl := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-e", deb, ctl).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	conffiles, _ := os.ReadFile(filepath.Join(ctl, "conffiles"))
	if !strings.Contains(string(conffiles), "/etc/joules/agent.yml") || !strings.Contains(string(conffiles), "/etc/joules/aggregator.yml") {
		t.Errorf("configs are not conffiles: %q", conffiles)
	}
	postinst, _ := os.ReadFile(filepath.Join(ctl, "postinst"))
	if strings.Contains(string(postinst), "enable --now") && !strings.Contains(string(postinst), "then: systemctl enable") {
		t.Error("postinst starts services; nothing unconfigured may start")
	}

	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644)
	install := exec.Command("dpkg", "--root="+root, "--force-not-root", "--force-script-chrootless", "--force-depends", "-i", deb)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i into a throwaway root: %v\n%s", err, out)
	}
	check := exec.Command(filepath.Join(root, "usr/bin/joules-agent"), "--config.check", "--config.file", filepath.Join(root, "etc/joules/agent.yml"))
	if out, err := check.CombinedOutput(); err != nil || !strings.Contains(string(out), "effective configuration") {
		t.Errorf("installed agent on the shipped config: %v\n%s", err, out)
	}
	if info, err := os.Stat(rpms[0]); err != nil || info.Size() < 1<<20 {
		t.Errorf("rpm missing or too small: %v", err)
	}
}

// TestSystemdAnalyze verifies the units with systemd's own checker and
// holds their exposure score (systemd-analyze security) at "OK" or better.
func TestSystemdAnalyze(t *testing.T) {
	analyze := testenv.Tool(t, "systemd-analyze", "apt-get install -y systemd")
	dir := t.TempDir()
	var units []string
	for _, name := range []string{"joules-agent", "joules-aggregator"} {
		raw, err := os.ReadFile("systemd/" + name + ".service")
		if err != nil {
			t.Fatal(err)
		}
		// The binaries are not installed here: point ExecStart at a stand-in.
		bin := filepath.Join(dir, name)
		if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		unit := filepath.Join(dir, name+".service")
		if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(raw), "/usr/bin/"+name, bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, unit)
	}
	verify := exec.Command(analyze, append([]string{"verify"}, units...)...)
	verify.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+dir+":")
	if out, err := verify.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, unit := range units {
		out, err := exec.Command(analyze, "security", "--offline=true", unit).CombinedOutput()
		if err != nil {
			t.Fatalf("systemd-analyze security %s: %v\n%s", unit, err, out)
		}
		m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("no exposure level in:\n%s", out)
		}
		if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 3.0 {
			t.Errorf("%s: exposure %v, want at most 3.0 (OK)", filepath.Base(unit), level)
		}
	}
}

// TestExampleConfigurations loads the production examples the README shows,
// with their secret and CA files made up in a temporary directory: each
// must be a valid configuration of its daemon.
func TestExampleConfigurations(t *testing.T) {
	files, _ := filepath.Glob("examples/*.yml")
	if len(files) < 3 {
		t.Fatalf("examples: %v", files)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	paths := regexp.MustCompile(`(/run/credentials/[^\s"]+|/etc/joules/[^\s"]+)`)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(readme), "packaging/"+f) {
			t.Errorf("README.md does not show %s", f)
		}
		dir := t.TempDir()
		text := paths.ReplaceAllStringFunc(string(raw), func(p string) string {
			local := filepath.Join(dir, strings.ReplaceAll(strings.Trim(p, "/"), "/", "_"))
			os.WriteFile(local, []byte("a-secret-of-16ch\n"), 0o600) // SNMP v3 keys need 8 characters at least
			return local
		})
		path := filepath.Join(dir, filepath.Base(f))
		os.WriteFile(path, []byte(text), 0o600)
		if strings.Contains(f, "aggregator") {
			_, err = config.LoadAggregator(path)
		} else {
			_, err = config.LoadAgent(path, "node-1")
		}
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
