package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
)

// gpuEnergy is GPU 0's energy total and its epoch label in an exposition.
func gpuEnergy(t *testing.T, body string) (float64, string) {
	t.Helper()
	m := regexp.MustCompile(`joules_gpu_energy_joules_total\{epoch="([0-9a-f]{8})",gpu="0",[^}]*\} (\S+)`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no GPU 0 energy with an epoch:\n%s", body)
	}
	return metricValue(t, body, "joules_gpu_energy_joules_total", `gpu="0"`), m[1]
}

// TestCountersContinueAcrossRestarts stops and starts an agent with
// simulated GPUs: with a state_dir the second run goes on from the first
// one's totals in the same epoch; without one, each run is an epoch of its
// own, which tells the aggregator not to take the step across as measured.
func TestCountersContinueAcrossRestarts(t *testing.T) {
	state := filepath.Join(t.TempDir(), "counters")
	for _, tc := range []struct {
		name      string
		stateDir  string
		sameEpoch bool
	}{{"with state_dir", state, true}, {"in memory", "", false}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := "labels: {host: restart-1}\nsources: {node: {enabled: false}, nvml: {simulate: dgxh200, interval: 200ms}}\n"
			if tc.stateDir != "" {
				cfg += fmt.Sprintf("state_dir: %s\n", tc.stateDir)
			}
			file := writeFile(t, "a.yml", cfg)
			run := func() (float64, string) {
				a := startAgent(t, "--config.file="+file)
				var total float64
				var epoch string
				testenv.WaitFor(t, 15*time.Second, "two NVML passes", func() bool {
					body := a.scrapeWhen(t, hasLine("joules_gpu_energy_joules_total{"))
					e, ep := gpuEnergy(t, body)
					if epoch == "" {
						total, epoch = e, ep
						return false
					}
					return e > total
				})
				body := a.scrapeWhen(t, hasLine("joules_gpu_energy_joules_total{"))
				total, epoch = gpuEnergy(t, body)
				if err := a.stop(t); err != nil {
					t.Fatalf("agent exit: %v\n%s", err, a.logs)
				}
				return total, epoch
			}
			first, epoch1 := run()
			a := startAgent(t, "--config.file="+file)
			second, epoch2 := gpuEnergy(t, a.scrapeWhen(t, hasLine("joules_gpu_energy_joules_total{")))
			if tc.sameEpoch && (epoch2 != epoch1 || second < first) {
				t.Errorf("after the restart: %v J in epoch %s, want at least %v J in epoch %s", second, epoch2, first, epoch1)
			}
			if !tc.sameEpoch && epoch2 == epoch1 {
				t.Errorf("without state the epoch %s stayed: the aggregator would take the restart for a measured step", epoch1)
			}
		})
	}
}
