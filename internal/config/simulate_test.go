package config

import (
	"strings"
	"testing"
)

// simulate_site follows a simulated site's model; it needs the simulated
// server that says what the GPUs are.
func TestSimulateSite(t *testing.T) {
	cfg, err := LoadAgent(writeConfig(t, "sources: {nvml: {simulate: dgxh200, simulate_site: demo-dc}}\n"), "h")
	if err != nil {
		t.Fatal(err)
	}
	if g := cfg.Sources.NVML; g.Simulate.Value != "dgxh200" || g.SimulateSite.Value != "demo-dc" {
		t.Errorf("nvml %+v", g)
	}
	_, err = LoadAgent(writeConfig(t, "sources:\n  nvml: {simulate_site: demo-dc}\n"), "h")
	if err == nil || !strings.Contains(err.Error(), "line 2: sources.nvml.simulate_site needs sources.nvml.simulate") {
		t.Errorf("simulate_site alone: err = %v", err)
	}
}
