package nvml

import (
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestGoldenSimulatedH200Numbers checks every power and energy number of
// testdata/dgxh200.prom against the load model the simulated GPUs follow,
// computed here from the utilization: the golden freezes the format, this
// says its numbers are right. An H200 SXM draws 75 W idle in the simulation
// and 700 W at full load (its TDP and power limit), linearly in between; its
// energy counter starts at 24 + GPU index hours at half load and then adds
// the trapezoid of power over the one second between the golden's two
// passes. NVML reports milliwatts and millijoules.
func TestGoldenSimulatedH200Numbers(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "dgxh200.prom"))
	if err != nil {
		t.Fatal(err)
	}
	const idle, tdp = 75.0, 700.0
	watts := func(u float64) float64 { return idle + (tdp-idle)*u }
	t0 := newClock().Now() // TestGoldenSimulatedH200's first pass, and newSim's load model
	t1 := t0.Add(time.Second)
	lm := LoadModel{Start: t0, Seed: 42}
	sample := regexp.MustCompile(`^(joules_gpu_\w*(?:_watts|_joules_total))\{.*\bgpu="(\d+)".*\} (\S+)$`)
	checked := 0
	for _, line := range strings.Split(string(golden), "\n") {
		m := sample.FindStringSubmatch(line)
		if m == nil {
			if strings.HasPrefix(line, "joules_") && (strings.Contains(line, "_watts") || strings.Contains(line, "_joules")) {
				t.Errorf("no independent check for %s", line)
			}
			continue
		}
		i, _ := strconv.Atoi(m[2])
		got, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		u0, u1 := lm.Utilization(i, t0), lm.Utilization(i, t1)
		var want float64
		switch m[1] {
		case "joules_gpu_power_watts":
			want = watts(u1)
		case "joules_gpu_power_instant_watts":
			want = watts(math.Min(1, 1.03*u1)) // the instant reading runs 3 % ahead of the average
		case "joules_gpu_power_limit_watts", "joules_gpu_power_enforced_limit_watts", "joules_gpu_power_default_limit_watts":
			want = tdp
		case "joules_gpu_energy_joules_total":
			want = 3600*watts(0.5)*float64(24+i) + (watts(u0)+watts(u1))/2
		default:
			t.Errorf("no independent check for %s", m[1])
			continue
		}
		if math.Abs(got-want) > 1e-3 { // NVML's milli-unit resolution
			t.Errorf("GPU %d %s = %v in the golden, want %.3f from the load model", i, m[1], got, want)
		}
		checked++
	}
	if checked != 8*6 {
		t.Errorf("checked %d power and energy numbers, want 48 (8 GPUs × power, instant power, 3 limits, energy)", checked)
	}
}
