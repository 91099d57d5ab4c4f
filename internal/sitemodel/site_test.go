package sitemodel

import (
	"math"
	"testing"
	"time"
)

func demoSite(t testing.TB) *Model {
	t.Helper()
	m, err := New(Site{Seed: "demo-dc", Racks: []Rack{
		{Name: "r1", Hosts: []RackHost{{"gpu-01", "dgxh200"}, {"gpu-02", "dgxh200"}}},
		{Name: "r2", Hosts: []RackHost{{"gpu-03", "dgxb200"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// titanium is the PSU efficiency the model documents, interpolated here on
// its own: 80 % at no load, 90 % at 10 %, 94 % at 20 %, 96 % at 50 %,
// 94 % at and beyond full load.
func titanium(x float64) float64 {
	pts := [][2]float64{{0, 0.80}, {0.1, 0.90}, {0.2, 0.94}, {0.5, 0.96}, {1, 0.94}}
	if x >= 1 {
		return 0.94
	}
	for i := 1; i < len(pts); i++ {
		if x <= pts[i][0] {
			a, b := pts[i-1], pts[i]
			return a[1] + (x-a[0])/(b[0]-a[0])*(b[1]-a[1])
		}
	}
	return 0.94
}

// For a simulated day, every 10 s: the power chain never gains energy on
// its way down (facility ≥ UPS input ≥ UPS output ≥ Σ PDU output ≥ Σ BMC ≥
// Σ GPU + CPU), each stage is what DefaultParams' physics makes of the one
// below, computed here again, and the day's PUE from the model's energy
// counters is the PUE those physics give.
func TestPowerChainOverADay(t *testing.T) {
	m := demoSite(t)
	p := DefaultParams()
	start := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
	const step = 10 * time.Second
	var facilitySum, upsOutSum, pduOutSum, bmcSum float64
	for at := start; at.Before(start.Add(24 * time.Hour)); at = at.Add(step) {
		c := m.At(at)
		var bmc, parts float64
		pduOut := map[string]float64{}
		for _, rack := range m.Site().Racks {
			pduOut[rack.Name] = p.RackSwitchWatts
			for _, rh := range rack.Hosts {
				hp := m.Host(rh.Name).At(at)
				sv, _ := ServerNamed(rh.Server)
				dc := hp.CPU + hp.Fans + hp.Other
				for i, w := range hp.GPU {
					if w < sv.GPUIdleWatts-0.001 || w > sv.GPUMaxWatts+0.001 {
						t.Fatalf("%v %s GPU %d: %v W outside idle..TDP", at, rh.Name, i, w)
					}
					dc += w
					parts += w
				}
				parts += hp.CPU
				in := dc / titanium(dc/(float64(sv.PSUs)*sv.PSURatedWatts))
				if math.Abs(in-c.BMC[rh.Name]) > 0.01 {
					t.Fatalf("%v %s: BMC %v W, its parts through the PSUs make %v W", at, rh.Name, c.BMC[rh.Name], in)
				}
				bmc += c.BMC[rh.Name]
				pduOut[rack.Name] += c.BMC[rh.Name]
			}
		}
		var sumPDUOut, upsOut float64
		for r, out := range pduOut {
			if math.Abs(out-c.PDUOutput[r]) > 0.01 {
				t.Fatalf("%v PDU %s: %v W out, its hosts and switches draw %v W", at, r, c.PDUOutput[r], out)
			}
			x := out / p.PDURatedWatts
			upsOut += out + p.PDUFixedWatts + p.PDULossAtRated*p.PDURatedWatts*x*x
			sumPDUOut += out
		}
		x := upsOut / p.UPSRatedWatts
		upsIn := upsOut + p.UPSRatedWatts*(p.UPSLoss[0]+p.UPSLoss[1]*x+p.UPSLoss[2]*x*x)
		tod := at.Sub(start).Seconds()
		celsius := p.OutdoorMeanCelsius + p.OutdoorSwingCelsius*math.Sin(2*math.Pi*(tod-9*3600)/86400)
		cop := math.Max(p.CoolingMinCOP, p.CoolingCOP-p.CoolingCOPPerC*(celsius-p.CoolingRefCelsius))
		facility := upsIn + (upsIn+p.FixedWatts)/cop + p.CoolingFixedWatts + p.FixedWatts
		if math.Abs(facility-c.Facility) > 0.05 || math.Abs(upsIn-c.UPSInput) > 0.05 {
			t.Fatalf("%v: facility %v W and UPS input %v W; the physics give %v W and %v W", at, c.Facility, c.UPSInput, facility, upsIn)
		}
		if !(c.Facility > c.UPSInput && c.UPSInput > c.UPSOutput && c.UPSOutput > sumPDUOut && sumPDUOut > bmc && bmc > parts) {
			t.Fatalf("%v: the chain gains power: facility %v ≥ UPS in %v ≥ UPS out %v ≥ PDU out %v ≥ BMC %v ≥ GPU+CPU %v fails",
				at, c.Facility, c.UPSInput, c.UPSOutput, sumPDUOut, bmc, parts)
		}
		facilitySum += facility
		upsOutSum += upsOut
		pduOutSum += sumPDUOut
		bmcSum += bmc
	}
	wantUPS, wantPDU := facilitySum/upsOutSum, facilitySum/pduOutSum
	gotUPS, gotPDU := m.PUE(start, start.Add(24*time.Hour))
	if math.Abs(gotUPS/wantUPS-1) > 0.002 || math.Abs(gotPDU/wantPDU-1) > 0.002 {
		t.Errorf("PUE over the day from the counters: %.4f (UPS output), %.4f (PDU output); the physics give %.4f, %.4f", gotUPS, gotPDU, wantUPS, wantPDU)
	}
	if gotPDU < 1.2 || gotPDU > 1.6 {
		t.Errorf("PUE %.3f: not a plausible modern site's", gotPDU)
	}
	e0, e1 := m.Energy(start), m.Energy(start.Add(24*time.Hour))
	var bmcJ float64
	for h := range e1.BMC {
		bmcJ += e1.BMC[h] - e0.BMC[h]
	}
	if got, want := bmcJ, bmcSum*step.Seconds(); math.Abs(got/want-1) > 0.002 {
		t.Errorf("BMC energy over the day %v J; their power sampled every 10 s integrates to %v J", got, want)
	}
}

// A counter is the exact integral of its power: summed second by second
// over an hour that crosses midnight, they agree to the millijoule, and a
// counter read every 100 ms never goes back.
func TestEnergyIsTheIntegralOfPower(t *testing.T) {
	m := demoSite(t)
	h := m.Host("gpu-02")
	start := time.Date(2026, 3, 14, 23, 30, 0, 0, time.UTC)
	var facility, gpu0, input float64
	for s := range 3600 {
		at := start.Add(time.Duration(s) * time.Second)
		facility += m.At(at).Facility
		hp := h.At(at)
		gpu0 += hp.GPU[0]
		input += hp.Input
	}
	end := start.Add(time.Hour)
	e0, e1 := m.Energy(start), m.Energy(end)
	h0, h1 := h.Energy(start), h.Energy(end)
	for _, c := range []struct {
		what      string
		got, want float64
	}{{"facility", e1.Facility - e0.Facility, facility}, {"GPU 0", h1.GPU[0] - h0.GPU[0], gpu0}, {"host input", h1.Input - h0.Input, input}} {
		if math.Abs(c.got-c.want) > 0.002 {
			t.Errorf("%s: counter rose %.3f J over the hour, power sums to %.3f J", c.what, c.got, c.want)
		}
	}
	mj0, _ := h.GPUEnergy(0, start)
	mj1, _ := h.GPUEnergy(0, end)
	if got := float64(mj1-mj0) / 1000; math.Abs(got-gpu0) > 0.002 {
		t.Errorf("GPU 0 counter in mJ rose %v J, power sums to %v J", got, gpu0)
	}
	last := m.Energy(start.Add(-time.Second)).Facility
	var lastMJ uint64
	for at := start.Add(-time.Second); at.Before(end); at = at.Add(100 * time.Millisecond) {
		f := m.Energy(at).Facility
		mj, _ := h.GPUEnergy(3, at)
		if f < last || mj < lastMJ {
			t.Fatalf("%v: a counter went back: facility %v → %v J, GPU 3 %v → %v mJ", at, last, f, lastMJ, mj)
		}
		last, lastMJ = f, mj
	}
}

// Separate processes agree: a second model of the same site, and a host
// made on its own from the seed, give the same counters at the same
// instant, however far from anything asked before; another seed differs.
func TestSameSeedSameNumbers(t *testing.T) {
	a, b := demoSite(t), demoSite(t)
	at := time.Date(2026, 5, 1, 12, 0, 7, 300_000_000, time.UTC)
	_ = a.Energy(at.Add(-400 * 24 * time.Hour)) // a far point first in one of them
	ea, eb := a.Energy(at), b.Energy(at)
	if ea.Facility != eb.Facility || ea.PDUOutput["r1"] != eb.PDUOutput["r1"] || ea.BMC["gpu-01"] != eb.BMC["gpu-01"] {
		t.Errorf("two models of one site differ: %+v vs %+v", ea, eb)
	}
	sv, _ := ServerNamed("dgxh200")
	alone := NewHost("demo-dc", "gpu-01", sv)
	if got, want := alone.Energy(at).Input, ea.BMC["gpu-01"]; got != want {
		t.Errorf("host made alone: %v J, in the site %v J", got, want)
	}
	mj1, _ := alone.GPUEnergy(5, at)
	mj2, _ := a.Host("gpu-01").GPUEnergy(5, at)
	if mj1 != mj2 {
		t.Errorf("GPU 5: %d mJ alone, %d mJ in the site", mj1, mj2)
	}
	other := NewHost("other-dc", "gpu-01", sv)
	if other.Energy(at).Input == alone.Energy(at).Input {
		t.Error("another seed gave the same energy")
	}
	if got := a.Energy(Epoch.Add(-time.Hour)).Facility; got != 0 {
		t.Errorf("before the epoch the facility counter reads %v, want 0", got)
	}
	start := time.Now()
	for d := range 50 {
		_ = a.Energy(at.Add(time.Duration(d*7919) * time.Minute))
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("50 counters at scattered times took %v", el)
	}
}

// GPUs idle in some minutes (every GPU of the host at once more often at
// night), never pass 100 %, and the day has busy hours and quiet ones.
func TestUtilization(t *testing.T) {
	sv, _ := ServerNamed("dgxh200")
	h := NewHost("demo-dc", "gpu-01", sv)
	start := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
	var idle, total int
	hourly := make([]float64, 24)
	for s := 0; s < 86400; s += 30 {
		p := h.At(start.Add(time.Duration(s) * time.Second))
		for _, u := range p.GPUUtilization {
			if u < 0 || u > 1 {
				t.Fatalf("utilization %v", u)
			}
			if u == 0 {
				idle++
			}
			total++
		}
		hourly[s/3600] += p.Utilization / 120
	}
	if share := float64(idle) / float64(total); share < 0.05 || share > 0.35 {
		t.Errorf("%.1f %% of GPU samples idle, want some but not most", 100*share)
	}
	if hourly[16] < hourly[4]+0.15 {
		t.Errorf("mean utilization at 16:00 %.2f, at 04:00 %.2f: want a busy afternoon", hourly[16], hourly[4])
	}
	var mean float64
	for _, u := range hourly {
		mean += u / 24
	}
	if got := h.MeanUtilization(); math.Abs(got-mean) > 0.01 {
		t.Errorf("MeanUtilization %v, the day's samples average %v", got, mean)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, s := range []Site{
		{},
		{Racks: []Rack{{Name: "r1", Hosts: []RackHost{{"a", "dgx-nothing"}}}}},
		{Racks: []Rack{{Name: "r1", Hosts: []RackHost{{"a", "dgxh200"}, {"a", "dgxh200"}}}}},
		{Racks: []Rack{{Name: "r1", Hosts: []RackHost{{"a", "dgxh200"}}}, {Name: "r1"}}},
	} {
		if _, err := New(s); err == nil {
			t.Errorf("New(%+v) accepted", s)
		}
	}
}

func BenchmarkEnergy(b *testing.B) {
	m := demoSite(b)
	at := time.Now()
	for i := 0; b.Loop(); i++ {
		_ = m.Energy(at.Add(time.Duration(i) * time.Second))
	}
}
