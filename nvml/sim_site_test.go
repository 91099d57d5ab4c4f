package nvml

import (
	"context"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/internal/sitemodel"
)

// byGPU returns a metric's value per gpu label.
func byGPU(samples []collector.Sample, name string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		for _, l := range s.Labels {
			if l.Name == "gpu" {
				out[l.Value] = s.Value
			}
		}
	}
	return out
}

// GPUs on a site model report the model's power and utilization of that
// instant, and their energy counters rise by the model's power summed
// second by second between two passes.
func TestSimulatedSiteFollowsTheModel(t *testing.T) {
	sv, _ := sitemodel.ServerNamed("dgxh200")
	host := sitemodel.NewHost("site-a", "gpu-07", sv)
	now := time.Date(2026, 3, 14, 15, 4, 5, 250_000_000, time.UTC)
	clock := func() time.Time { return now }
	lib, err := simulateSite(simModels["dgxh200"], host, "site-a/gpu-07", clock)
	if err != nil {
		t.Fatal(err)
	}
	src := New(lib, Options{Simulated: true, now: clock, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(src.Close)
	pass := func() []collector.Sample {
		samples, err := src.Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return samples
	}
	first := pass()
	t0 := now
	now = now.Add(37 * time.Second)
	second := pass()

	want := host.At(now)
	power, util := byGPU(second, "joules_gpu_power_watts"), byGPU(second, "joules_gpu_utilization_ratio")
	e0, e1 := byGPU(first, "joules_gpu_energy_joules_total"), byGPU(second, "joules_gpu_energy_joules_total")
	if len(power) != 8 || len(e1) != 8 {
		t.Fatalf("power of %d GPUs, energy of %d; want 8 each", len(power), len(e1))
	}
	for i := range 8 {
		g := string(rune('0' + i))
		if math.Abs(power[g]-want.GPU[i]) > 0.001 {
			t.Errorf("GPU %d: %v W, the model %v W", i, power[g], want.GPU[i])
		}
		if math.Abs(util[g]-math.Floor(100*want.GPUUtilization[i])/100) > 1e-9 {
			t.Errorf("GPU %d: utilization %v, the model %v", i, util[g], want.GPUUtilization[i])
		}
		// From 15:04:05.25 to 15:04:42.25: a quarter of the first second,
		// 36 whole seconds, a quarter of the last.
		joules := 0.75*host.At(t0).GPU[i] + 0.25*host.At(now).GPU[i]
		for s := 1; s <= 36; s++ {
			joules += host.At(t0.Add(time.Duration(s) * time.Second).Truncate(time.Second)).GPU[i]
		}
		if got := e1[g] - e0[g]; math.Abs(got-joules) > 0.01 {
			t.Errorf("GPU %d: energy counter rose %v J; the model's power sums to %v J", i, got, joules)
		}
	}
	for _, s := range second {
		if s.Name == "joules_gpu_power_watts" && !hasLabel(s, "simulated", "true") {
			t.Errorf("%s without simulated=\"true\": %v", s.Name, s.Labels)
		}
	}
}

func hasLabel(s collector.Sample, name, value string) bool {
	for _, l := range s.Labels {
		if l.Name == name && l.Value == value {
			return true
		}
	}
	return false
}

// The NVML simulator's GPUs and the site model's hosts are the same
// hardware: idle power, TDP (the power limit NVML reports) and GPU count.
func TestSimulatedModelsHaveSiteModels(t *testing.T) {
	for _, name := range SimulatedModels() {
		sv, ok := sitemodel.ServerNamed(name)
		if !ok {
			t.Errorf("%s: no site model", name)
			continue
		}
		spec := simModels[name]
		if sv.GPUIdleWatts != spec.idleWatts || sv.GPUMaxWatts != spec.tdpWatts || len(spec.newServer().Devices) != sv.GPUs {
			t.Errorf("%s: site model %+v, NVML simulator idle %v W, TDP %v W, %d GPUs", name, sv, spec.idleWatts, spec.tdpWatts, len(spec.newServer().Devices))
		}
	}
	if _, err := SimulatedSite("dgx-nothing", "s", "h"); err == nil {
		t.Error("an unknown server was accepted")
	}
	uuid := func(host string) string {
		lib, err := SimulatedSite("dgxh200", "s", host)
		if err != nil {
			t.Fatal(err)
		}
		dev, _ := lib.DeviceGetHandleByIndex(0)
		u, _ := dev.GetUUID()
		return u
	}
	if a, b := uuid("h1"), uuid("h2"); a == b {
		t.Errorf("two hosts' GPU 0 share UUID %s", a)
	}
}
