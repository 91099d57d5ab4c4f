package accounting

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/internal/schema"
)

// t0 is a window start: every test's site starts on a minute.
var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestAccountant(t *testing.T, cfg Config) (*Accountant, *clock) {
	t.Helper()
	a, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: t0}
	a.now = c.now
	return a, c
}

// pt builds a raw point as an agent sends it: tags as key, value pairs.
func pt(measurement string, at time.Time, value float64, kv ...string) aggregator.Point {
	v, _ := lineprotocol.FloatValue(value)
	return aggregator.Point{Measurement: measurement, Tags: tags(kv...), Fields: []aggregator.Field{{Key: "value", Value: v}}, Time: at}
}

// site builds the raw points of a synthetic site: from..to every step, each
// meter or host at constant power (W), as energy counters.
type site struct {
	points []aggregator.Point
}

func (s *site) counter(measurement string, watts float64, from, to time.Time, step time.Duration, kv ...string) {
	for at := from; !at.After(to); at = at.Add(step) {
		s.points = append(s.points, pt(measurement, at, 1000+watts*at.Sub(from).Seconds(), kv...))
	}
}

func (s *site) host(name, hall, rack string, watts float64, from, to time.Time) {
	s.counter("joules_redfish_host_energy_joules_total", watts, from, to, 10*time.Second,
		"site", "s1", "hall", hall, "rack", rack, "host", name, "bmc", name+"-bmc", "role", "host", "method", "counter", "chassis", "1")
}

func (s *site) meter(name, role, hall string, watts float64, from, to time.Time) {
	s.counter("joules_redfish_equipment_energy_joules_total", watts, from, to, 10*time.Second,
		"site", "s1", "hall", hall, "host", "mgmt", "bmc", name, "role", role, "equipment", "1", "equipment_type", "rack_pdu", "method", "counter")
}

// find returns the derived point of a measurement whose tags include all given.
func find(t *testing.T, points []aggregator.Point, measurement string, at time.Time, kv ...string) *aggregator.Point {
	t.Helper()
	want := tags(kv...)
	var found *aggregator.Point
	for i := range points {
		p := &points[i]
		if p.Measurement != measurement || !p.Time.Equal(at) {
			continue
		}
		ok := true
		for _, w := range want {
			if !slices.Contains(p.Tags, w) {
				ok = false
				break
			}
		}
		// exact on the tags given; the rest of the point's tags must not
		// name a narrower scope than asked for
		if ok {
			if found != nil && len(p.Tags) >= len(found.Tags) {
				continue
			}
			found = p
		}
	}
	return found
}

func field(p *aggregator.Point, key string) (lineprotocol.Value, bool) {
	if p == nil {
		return lineprotocol.Value{}, false
	}
	for _, f := range p.Fields {
		if f.Key == key {
			return f.Value, true
		}
	}
	return lineprotocol.Value{}, false
}

func floatField(t *testing.T, p *aggregator.Point, key string) float64 {
	t.Helper()
	v, ok := field(p, key)
	if !ok {
		t.Fatalf("%s has no field %q: %s", describe(p), key, describe(p))
	}
	return v.FloatV()
}

func describe(p *aggregator.Point) string {
	if p == nil {
		return "<no point>"
	}
	var b strings.Builder
	b.WriteString(p.Measurement)
	for _, t := range p.Tags {
		fmt.Fprintf(&b, ",%s=%s", t.Key, t.Value)
	}
	for _, f := range p.Fields {
		fmt.Fprintf(&b, " %s=%v", f.Key, f.Value.Interface())
	}
	return b.String()
}

func closeEqual(got, want, rel float64) bool {
	return math.Abs(got-want) <= rel*math.Abs(want)
}

// run feeds the points and closes every window up to until.
func run(a *Accountant, c *clock, points []aggregator.Point, until time.Time) []aggregator.Point {
	a.Process(points)
	c.t = until
	return a.Tick(until)
}

func TestPUEExactWithCategoryFromRoles(t *testing.T) {
	const facilityPerIT = 1.2345678
	for _, tc := range []struct {
		name     string
		meters   func(s *site, from, to time.Time)
		it       float64 // W
		category int64
	}{
		{"hosts", func(*site, time.Time, time.Time) {}, 500 + 700, 3},
		{"pdu", func(s *site, from, to time.Time) { s.meter("pdu-a", "pdu_output", "h1", 1300, from, to) }, 1300, 2},
		{"ups over pdu", func(s *site, from, to time.Time) {
			s.meter("pdu-a", "pdu_output", "h1", 1300, from, to)
			s.meter("ups-1", "ups_output", "", 1450, from, to)
		}, 1450, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, c := newTestAccountant(t, Config{})
			var s site
			end := t0.Add(2 * time.Minute)
			s.host("gpu-01", "h1", "r1", 500, t0, end)
			s.host("gpu-02", "h1", "r2", 700, t0, end)
			tc.meters(&s, t0, end)
			s.meter("facility", "facility_input", "", tc.it*facilityPerIT, t0, end)
			out := run(a, c, s.points, end.Add(31*time.Second))

			p := find(t, out, schema.PUE, t0, "resolution", "1m", "scope", "site", "site", "s1")
			if got, want := floatField(t, p, "pue"), facilityPerIT; !closeEqual(got, want, 1e-9) {
				t.Errorf("PUE = %.12f, want %.12f (%s)", got, want, describe(p))
			}
			if got, want := floatField(t, p, "it_joules"), tc.it*60; !closeEqual(got, want, 1e-12) {
				t.Errorf("IT energy = %v J, want %v", got, want)
			}
			if v, _ := field(p, "category"); v.IntV() != tc.category {
				t.Errorf("category = %d, want %d", v.IntV(), tc.category)
			}
			if got := floatField(t, p, "coverage"); got != 1 {
				t.Errorf("coverage = %v, want 1", got)
			}
			if v, ok := field(p, "reason"); !ok || v.StringV() != "" {
				t.Errorf("a complete window's reason is %q (written: %v), want written and empty", v.StringV(), ok)
			}
			// the hour is not over: its window is not written yet
			if p := find(t, out, schema.PUE, t0.Truncate(time.Hour), "resolution", "1h"); p != nil {
				t.Errorf("hour window written before its end: %s", describe(p))
			}
		})
	}
}

func TestCoverageBelowOneWhenAHostIsSilent(t *testing.T) {
	a, c := newTestAccountant(t, Config{})
	var s site
	end := t0.Add(2 * time.Minute)
	s.host("gpu-01", "h1", "r1", 500, t0, end)
	s.host("gpu-02", "h1", "r1", 700, t0, t0.Add(30*time.Second)) // silent from 30 s on
	s.meter("facility", "facility_input", "", 1500, t0, end)
	out := run(a, c, s.points, end.Add(31*time.Second))

	first := find(t, out, schema.PUE, t0, "resolution", "1m", "scope", "site")
	if got, want := floatField(t, first, "coverage"), 0.75; !closeEqual(got, want, 1e-12) {
		t.Errorf("first window coverage = %v, want %v (one host for half of it)", got, want)
	}
	second := find(t, out, schema.PUE, t0.Add(time.Minute), "resolution", "1m", "scope", "site")
	if got, want := floatField(t, second, "coverage"), 0.5; !closeEqual(got, want, 1e-12) {
		t.Errorf("second window coverage = %v, want %v (one host of two silent)", got, want)
	}
	if v, _ := field(second, "reason"); !strings.Contains(v.StringV(), "partial") {
		t.Errorf("reason = %q, want it to say the data is partial", v.StringV())
	}
	host := find(t, out, schema.Energy, t0.Add(time.Minute), "scope", "host", "host", "gpu-02", "kind", "it")
	if got := floatField(t, host, "coverage"); got != 0 {
		t.Errorf("silent host coverage = %v, want 0", got)
	}
	if v, _ := field(host, "source"); v.StringV() != "none" {
		t.Errorf("silent host source = %q, want none", v.StringV())
	}
}

func TestNoPUEWithoutFacilityMeter(t *testing.T) {
	a, c := newTestAccountant(t, Config{})
	var s site
	end := t0.Add(time.Minute)
	s.host("gpu-01", "h1", "r1", 500, t0, end)
	out := run(a, c, s.points, end.Add(31*time.Second))
	for _, scope := range []string{"site", "hall"} {
		p := find(t, out, schema.PUE, t0, "resolution", "1m", "scope", scope)
		if p == nil {
			t.Fatalf("no %s PUE point at all: the reason must be written", scope)
		}
		if _, ok := field(p, "pue"); ok {
			t.Errorf("%s PUE written without a facility meter: %s", scope, describe(p))
		}
		if v, _ := field(p, "reason"); !strings.Contains(v.StringV(), "no facility_input meter") {
			t.Errorf("%s reason = %q", scope, v.StringV())
		}
	}
	if _, ok := a.latest.pue[pueKey{scopeKey{Scope: "site", Site: "s1"}, "1m"}]; !ok {
		t.Error("the missing PUE is not on /metrics' record")
	}
}

func TestHallPPUEUsesTheHallsMeters(t *testing.T) {
	a, c := newTestAccountant(t, Config{})
	var s site
	end := t0.Add(time.Minute)
	s.host("a1", "h1", "r1", 1000, t0, end)
	s.host("b1", "h2", "r9", 2000, t0, end)
	s.meter("feed-h1", "facility_input", "h1", 1100, t0, end) // pPUE 1.1
	s.meter("feed-h2", "facility_input", "h2", 2600, t0, end) // pPUE 1.3
	out := run(a, c, s.points, end.Add(31*time.Second))
	for hall, want := range map[string]float64{"h1": 1.1, "h2": 1.3} {
		p := find(t, out, schema.PUE, t0, "resolution", "1m", "scope", "hall", "hall", hall)
		if got := floatField(t, p, "pue"); !closeEqual(got, want, 1e-9) {
			t.Errorf("pPUE of %s = %v, want %v", hall, got, want)
		}
	}
	// no site-wide meter: the site sums its halls' meters
	p := find(t, out, schema.PUE, t0, "resolution", "1m", "scope", "site")
	if got, want := floatField(t, p, "pue"), 3700.0/3000; !closeEqual(got, want, 1e-9) {
		t.Errorf("site PUE = %v, want %v", got, want)
	}
}

func TestRollingPUEIsEnergyWeighted(t *testing.T) {
	a, c := newTestAccountant(t, Config{})
	var s site
	// minute 0: IT 1000 W, facility 1500 W; minute 1: IT 3000 W, facility 3300 W
	s.host("gpu-01", "h1", "r1", 1000, t0, t0.Add(time.Minute))
	s.meter("facility", "facility_input", "", 1500, t0, t0.Add(time.Minute))
	m1 := t0.Add(time.Minute)
	for at := m1.Add(10 * time.Second); !at.After(m1.Add(time.Minute)); at = at.Add(10 * time.Second) {
		s.points = append(s.points,
			pt("joules_redfish_host_energy_joules_total", at, 1000+1000*60+3000*at.Sub(m1).Seconds(), "site", "s1", "hall", "h1", "rack", "r1", "host", "gpu-01", "bmc", "gpu-01-bmc", "role", "host", "method", "counter", "chassis", "1"),
			pt("joules_redfish_equipment_energy_joules_total", at, 1000+1500*60+3300*at.Sub(m1).Seconds(), "site", "s1", "host", "mgmt", "bmc", "facility", "role", "facility_input", "equipment", "1", "equipment_type", "rack_pdu", "method", "counter"))
	}
	out := run(a, c, s.points, t0.Add(2*time.Minute+31*time.Second))
	p := find(t, out, schema.PUE, m1, "resolution", "rolling_1h", "scope", "site")
	want := (1500.0 + 3300) / (1000 + 3000) // not the mean of 1.5 and 1.1
	if got := floatField(t, p, "pue"); !closeEqual(got, want, 1e-9) {
		t.Errorf("rolling PUE = %v, want %v", got, want)
	}
	if got, want := floatField(t, p, "coverage"), 2.0/60; !closeEqual(got, want, 1e-9) {
		t.Errorf("rolling coverage = %v, want %v (2 of 60 windows)", got, want)
	}
}

func gpuEnergy(host, gpu string, at time.Time, joules float64) aggregator.Point {
	return pt("joules_gpu_energy_joules_total", at, joules, "site", "s1", "hall", "h1", "rack", "r1", "host", host, "gpu", gpu, "uuid", "GPU-"+gpu, "method", "counter")
}

func energyOf(t *testing.T, out []aggregator.Point, at time.Time, kv ...string) float64 {
	t.Helper()
	return floatField(t, find(t, out, schema.Energy, at, kv...), "joules")
}

func TestCounterResetAndWrap(t *testing.T) {
	a, c := newTestAccountant(t, Config{})
	rapl := []string{"site", "s1", "hall", "h1", "rack", "r1", "host", "n1", "index", "0", "path", "/sys/class/powercap/intel-rapl:0"}
	const wrap = 262143.328850
	points := []aggregator.Point{
		pt("joules_rapl_max_energy_range_joules", t0, wrap, append(rapl, "zone", "package")...),
		pt("node_rapl_package_joules_total", t0, wrap-100, rapl...),
		pt("node_rapl_package_joules_total", t0.Add(20*time.Second), wrap-10, rapl...), // +90
		pt("node_rapl_package_joules_total", t0.Add(40*time.Second), 50, rapl...),      // wrapped: +60
		gpuEnergy("n1", "0", t0, 5000),
		gpuEnergy("n1", "0", t0.Add(20*time.Second), 9000), // +4000
		gpuEnergy("n1", "0", t0.Add(40*time.Second), 300),  // driver reload: counted from zero, +300
		gpuEnergy("n1", "0", t0.Add(60*time.Second), 1300), // +1000 (10 s of it in the next window)
	}
	out := run(a, c, points, t0.Add(91*time.Second))
	if got, want := energyOf(t, out, t0, "scope", "host", "host", "n1", "kind", "cpu"), 150.0; !closeEqual(got, want, 1e-9) {
		t.Errorf("CPU energy across a wrap = %v J, want %v", got, want)
	}
	if got, want := energyOf(t, out, t0, "scope", "gpu", "gpu", "GPU-0"), 4300.0+1000; !closeEqual(got, want, 1e-9) {
		t.Errorf("GPU energy across a reset = %v J, want %v", got, want)
	}
	st := a.Stats()
	if st.Wraps != 1 || st.Resets != 1 {
		t.Errorf("wraps %d resets %d, want 1 and 1", st.Wraps, st.Resets)
	}
	// no BMC: the host's IT energy is its components, marked a lower bound
	host := find(t, out, schema.Energy, t0, "scope", "host", "host", "n1", "kind", "it")
	if v, _ := field(host, "source"); v.StringV() != sourceComponents {
		t.Errorf("source = %q, want %q", v.StringV(), sourceComponents)
	}
	if v, _ := field(host, "lower_bound"); !v.BoolV() {
		t.Error("components not marked as a lower bound")
	}
}

func TestPowerIntegrationLeavesGapsOut(t *testing.T) {
	a, c := newTestAccountant(t, Config{MaxGap: 30 * time.Second})
	tg := []string{"site", "s1", "hall", "h1", "rack", "r1", "host", "n1", "bmc", "b", "role", "host", "chassis", "1", "source", "power_subsystem"}
	points := []aggregator.Point{
		pt("joules_redfish_host_power_watts", t0, 100, tg...),
		pt("joules_redfish_host_power_watts", t0.Add(10*time.Second), 300, tg...), // 2000 J
		pt("joules_redfish_host_power_watts", t0.Add(50*time.Second), 300, tg...), // 40 s gap: nothing
		pt("joules_redfish_host_power_watts", t0.Add(60*time.Second), 500, tg...), // 4000 J
	}
	out := run(a, c, points, t0.Add(91*time.Second))
	host := find(t, out, schema.Energy, t0, "scope", "host", "host", "n1", "kind", "it")
	if got := floatField(t, host, "joules"); !closeEqual(got, 6000, 1e-12) {
		t.Errorf("integrated energy = %v J, want 6000 (the 40 s gap left out)", got)
	}
	if got := floatField(t, host, "coverage"); !closeEqual(got, 20.0/60, 1e-12) {
		t.Errorf("coverage = %v, want 20/60", got)
	}
	if v, _ := field(host, "source"); v.StringV() != "bmc_power_integrated" {
		t.Errorf("source = %q", v.StringV())
	}
	if a.Stats().Gaps != 1 {
		t.Errorf("gaps = %d, want 1", a.Stats().Gaps)
	}
}

func TestSourceOrderPrefersTheBMCCounter(t *testing.T) {
	a, c := newTestAccountant(t, Config{})
	host := []string{"site", "s1", "hall", "h1", "rack", "r1", "host", "n1"}
	bmc := append(slices.Clone(host), "bmc", "b", "role", "host", "chassis", "1")
	var points []aggregator.Point
	for i := range 7 {
		at := t0.Add(time.Duration(i) * 10 * time.Second)
		points = append(points,
			pt("joules_redfish_host_energy_joules_total", at, 800*float64(i)*10, append(slices.Clone(bmc), "method", "counter")...),
			pt("joules_redfish_host_power_watts", at, 9999, append(slices.Clone(bmc), "source", "environment_metrics")...),
			gpuEnergy("n1", "0", at, 500*float64(i)*10))
	}
	out := run(a, c, points, t0.Add(91*time.Second))
	p := find(t, out, schema.Energy, t0, "scope", "host", "host", "n1", "kind", "it")
	if got := floatField(t, p, "joules"); got != 48000 {
		t.Errorf("IT = %v, want the BMC counter's 48000 J", got)
	}
	if v, _ := field(p, "source"); v.StringV() != "bmc_counter" {
		t.Errorf("source = %q, want bmc_counter", v.StringV())
	}
	r := find(t, out, schema.Reconciliation, t0, "scope", "host", "kind", "bmc_vs_components")
	if got := floatField(t, r, "remainder_joules"); got != 48000-30000 {
		t.Errorf("remainder = %v J, want 18000", got)
	}
}

// oneHost is a host at 600 W on a BMC counter, sampled every 10 s.
func oneHost(from, to time.Time) []aggregator.Point {
	var s site
	s.host("n1", "h1", "r1", 600, from, to)
	return s.points
}

func TestLateDataWithinAndBeyondGrace(t *testing.T) {
	a, c := newTestAccountant(t, Config{Grace: 30 * time.Second, MaxLateness: 10 * time.Minute})
	all := oneHost(t0, t0.Add(3*time.Minute))
	early, late := all[:4], all[4:] // up to 30 s, then the rest arrives late
	a.Process(early)
	c.t = t0.Add(time.Minute + 20*time.Second) // window 0 ended, within grace
	a.Process(late[:6])                        // up to 1m30s
	out := a.Tick(c.t)
	if p := find(t, out, schema.Energy, t0, "scope", "host"); p != nil {
		t.Fatalf("window written within its grace: %s", describe(p))
	}
	c.t = t0.Add(time.Minute + 31*time.Second)
	out = a.Tick(c.t)
	if got := energyOf(t, out, t0, "scope", "host", "kind", "it"); got != 36000 {
		t.Errorf("window 0 = %v J, want 36000: late data within grace belongs to it", got)
	}
	// window 1 closes incomplete; the rest comes 3 minutes late
	c.t = t0.Add(2*time.Minute + 31*time.Second)
	out = a.Tick(c.t)
	partial := energyOf(t, out, t0.Add(time.Minute), "scope", "host", "kind", "it")
	c.t = t0.Add(5 * time.Minute)
	a.Process(late[6:])
	out = a.Tick(c.t)
	if got := energyOf(t, out, t0.Add(time.Minute), "scope", "host", "kind", "it"); got != 36000 || partial != 18000 {
		t.Errorf("window 1 written with %v J, then revised to %v J; want 18000 then 36000", partial, got)
	}
	if a.Stats().Revisions != 1 {
		t.Errorf("revisions = %d, want 1", a.Stats().Revisions)
	}
	// beyond max_lateness (by the clock and by the rest of the site, whose
	// newest points are 29 minutes on) the window is gone: counted as
	// dropped, not lost silently
	c.t = t0.Add(30 * time.Minute)
	var current site
	current.host("n2", "h1", "r1", 600, t0.Add(29*time.Minute), t0.Add(29*time.Minute+10*time.Second))
	a.Process(current.points)
	a.Tick(c.t)
	a.Process([]aggregator.Point{pt("joules_redfish_host_energy_joules_total", t0.Add(3*time.Minute+10*time.Second), 1000+600*190,
		"site", "s1", "hall", "h1", "rack", "r1", "host", "n1", "bmc", "n1-bmc", "role", "host", "method", "counter", "chassis", "1")})
	if st := a.Stats(); st.LatePoints != 1 || st.DroppedJoules != 6000 {
		t.Errorf("late points %d dropped %v J, want 1 and 6000", st.LatePoints, st.DroppedJoules)
	}
}

func TestDuplicateDeliveryCountsOnce(t *testing.T) {
	once, c1 := newTestAccountant(t, Config{})
	twice, c2 := newTestAccountant(t, Config{})
	points := oneHost(t0, t0.Add(2*time.Minute))
	end := t0.Add(2*time.Minute + 31*time.Second)
	want := run(once, c1, slices.Clone(points), end)
	twice.Process(slices.Clone(points[:8]))
	twice.Process(slices.Clone(points[:8])) // a retried request
	twice.Process(slices.Clone(points))     // a replayed spool
	got := run(twice, c2, nil, end)
	for _, at := range []time.Time{t0, t0.Add(time.Minute)} {
		if g, w := energyOf(t, got, at, "scope", "site", "kind", "it"), energyOf(t, want, at, "scope", "site", "kind", "it"); g != w {
			t.Errorf("window %s: %v J with duplicates, %v J without", at.Format(time.TimeOnly), g, w)
		}
	}
	if twice.Stats().Duplicates != 8+8 {
		t.Errorf("duplicates = %d, want 16", twice.Stats().Duplicates)
	}
}

func TestCheckpointRestartNeitherLosesNorDoubles(t *testing.T) {
	points := oneHost(t0, t0.Add(3*time.Minute))
	end := t0.Add(3*time.Minute + 31*time.Second)
	ref, rc := newTestAccountant(t, Config{})
	want := run(ref, rc, slices.Clone(points), end)

	state := filepath.Join(t.TempDir(), "accounting.state")
	first, c1 := newTestAccountant(t, Config{})
	written := run(first, c1, slices.Clone(points[:9]), t0.Add(91*time.Second)) // window 0 written
	if err := first.Save(state); err != nil {
		t.Fatal(err)
	}
	first.Process(slices.Clone(points[9:12])) // accepted after the checkpoint, then a crash

	second, c2 := newTestAccountant(t, Config{})
	if err := second.Load(state); err != nil {
		t.Fatal(err)
	}
	c2.t = c1.t
	second.Process(slices.Clone(points[5:])) // the agents replay from before the checkpoint
	got := append(written, run(second, c2, nil, end)...)
	for _, at := range []time.Time{t0, t0.Add(time.Minute), t0.Add(2 * time.Minute)} {
		if g, w := energyOf(t, got, at, "scope", "site", "kind", "it"), energyOf(t, want, at, "scope", "site", "kind", "it"); !closeEqual(g, w, 1e-12) {
			t.Errorf("window %s: %v J across a restart, %v J without", at.Format(time.TimeOnly), g, w)
		}
	}
}

func TestUnreadableCheckpointIsSetAside(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "accounting.state")
	if err := os.WriteFile(state, []byte("not a checkpoint"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, _ := newTestAccountant(t, Config{})
	err := a.Load(state)
	if err == nil || !strings.Contains(err.Error(), "moved to") {
		t.Fatalf("err = %v, want it to say where the unreadable state went", err)
	}
	if matches, _ := filepath.Glob(state + ".unreadable-*"); len(matches) != 1 {
		t.Errorf("unreadable state not kept aside: %v", matches)
	}
	if err := a.Load(state); err != nil {
		t.Errorf("a fresh start after setting it aside: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Window: 7 * time.Minute}, "must divide an hour"},
		{Config{Grace: time.Hour, MaxLateness: time.Minute}, "at least accounting.grace"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestTokensPerJouleFromASimulatedVLLM(t *testing.T) {
	var generation, prompt float64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total{model_name=\"m\"} %g\n", generation)
		fmt.Fprintf(w, "# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total{model_name=\"m\"} %g\n", prompt)
	}))
	defer srv.Close()
	src := collector.NewWorkSource([]collector.WorkTarget{{Name: "vllm", URL: srv.URL, Metrics: collector.WorkPresets["vllm"]}}, "", time.Second, nil, slog.New(slog.DiscardHandler))
	topology := []string{"site", "s1", "hall", "h1", "rack", "r1", "host", "n1"}

	a, c := newTestAccountant(t, Config{})
	var s site
	s.meter("facility", "facility_input", "", 1200, t0, t0.Add(time.Minute))
	a.Process(s.points)
	for i, tokens := range [][2]float64{{1000, 500}, {4000, 2000}, {7000, 3500}} {
		at := t0.Add(time.Duration(i) * 30 * time.Second)
		generation, prompt = tokens[0], tokens[1]
		samples, err := src.Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var points []aggregator.Point
		for _, smp := range samples {
			if smp.Name != "joules_work_total" {
				continue
			}
			kv := slices.Clone(topology)
			for _, l := range smp.Labels {
				kv = append(kv, l.Name, l.Value)
			}
			points = append(points, pt(smp.Name, at, smp.Value, kv...))
		}
		if len(points) != 2 {
			t.Fatalf("the vLLM preset gave %d work series, want 2", len(points))
		}
		points = append(points, gpuEnergy("n1", "0", at, 400*at.Sub(t0).Seconds()), gpuEnergy("n1", "1", at, 600*at.Sub(t0).Seconds()))
		a.Process(points)
	}
	c.t = t0.Add(91 * time.Second)
	out := a.Tick(c.t)

	// by hand: (7000-1000) + (3500-500) tokens over (400+600) W × 60 s
	const perJoule = 9000.0 / 60000
	for _, scope := range []string{"host", "site", "hall"} {
		p := find(t, out, schema.Work, t0, "resolution", "1m", "scope", scope, "unit", "token")
		if got := floatField(t, p, "per_joule"); !closeEqual(got, perJoule, 1e-12) {
			t.Errorf("%s tokens per joule = %v, want %v", scope, got, perJoule)
		}
	}
	site := find(t, out, schema.Work, t0, "scope", "site", "unit", "token")
	if got, want := floatField(t, site, "per_facility_joule"), perJoule/1.2; !closeEqual(got, want, 1e-9) {
		t.Errorf("tokens per facility joule = %v, want %v (PUE 1.2)", got, want)
	}
	if r := a.latest.work[workRateKey{scopeKey{Scope: "site", Site: "s1"}, "token"}]; !closeEqual(r.perJoule, perJoule, 1e-12) {
		t.Errorf("/metrics tokens per joule = %v, want %v", r.perJoule, perJoule)
	}
}

func TestPDUsOfOneHallAreNotTheSitesITEnergy(t *testing.T) {
	a, c := newTestAccountant(t, Config{})
	var s site
	end := t0.Add(time.Minute)
	s.host("a", "h1", "r1", 500, t0, end)
	s.host("b", "h2", "r7", 700, t0, end)
	s.counter("joules_redfish_equipment_energy_joules_total", 520, t0, end, 10*time.Second,
		"site", "s1", "hall", "h1", "rack", "r1", "host", "mgmt", "bmc", "pdu", "role", "pdu_output", "equipment", "1", "equipment_type", "rack_pdu", "method", "counter")
	s.meter("facility", "facility_input", "", 1500, t0, end)
	out := run(a, c, s.points, end.Add(31*time.Second))
	site := find(t, out, schema.PUE, t0, "resolution", "1m", "scope", "site")
	if v, _ := field(site, "category"); v.IntV() != 3 {
		t.Errorf("site category = %d, want 3: hall h2 has no PDU meter (%s)", v.IntV(), describe(site))
	}
	if got := floatField(t, site, "pue"); !closeEqual(got, 1500.0/1200, 1e-9) {
		t.Errorf("site PUE = %v, want 1500/1200 from the hosts", got)
	}
	if v, _ := field(site, "reason"); !strings.Contains(v.StringV(), "pdu_output meters do not meter 1 of its hosts") {
		t.Errorf("reason = %q, want it to say why the PDUs were not used", v.StringV())
	}
	recon := find(t, out, schema.Reconciliation, t0, "scope", "rack", "rack", "r1", "kind", "pdu_vs_bmcs")
	if got := floatField(t, recon, "remainder_joules"); !closeEqual(got, 20*60, 1e-9) {
		t.Errorf("PDU r1 against host a: remainder %v J, want 1200", got)
	}
}

// TestCheckpointKeepsEveryKind writes the same windows with and without a
// restart in between, for every kind of input: every derived point of the
// windows after the restart must be the same.
func TestCheckpointKeepsEveryKind(t *testing.T) {
	topo := []string{"site", "s1", "hall", "h1", "rack", "r1", "host", "n1"}
	sample := func(i int) []aggregator.Point {
		at := t0.Add(time.Duration(i) * 10 * time.Second)
		v := float64(i)
		return []aggregator.Point{
			pt("joules_redfish_host_energy_joules_total", at, 900*10*v, append(slices.Clone(topo), "bmc", "b", "chassis", "1", "method", "counter", "role", "host")...),
			gpuEnergy("n1", "0", at, 400*10*v),
			pt("joules_gpu_sm_activity_ratio", at, 0.5, "site", "s1", "hall", "h1", "rack", "r1", "host", "n1", "gpu", "0", "uuid", "GPU-0"),
			pt("node_rapl_package_joules_total", at, 100*10*v, append(slices.Clone(topo), "index", "0", "path", "/sys/class/powercap/intel-rapl:0")...),
			pt("joules_work_total", at, 30*10*v, append(slices.Clone(topo), "gpu", "GPU-0", "kind", "generation", "unit", "token", "workload", "vllm")...),
			pt("joules_redfish_equipment_energy_joules_total", at, 1100*10*v, "site", "s1", "hall", "h1", "rack", "r1", "host", "mgmt", "bmc", "pdu", "role", "pdu_output", "equipment", "1", "equipment_type", "rack_pdu", "method", "counter"),
			pt("joules_redfish_equipment_energy_joules_total", at, 1300*10*v, "site", "s1", "host", "mgmt", "bmc", "feed", "role", "facility_input", "equipment", "1", "equipment_type", "electrical_bus", "method", "counter"),
		}
	}
	var before, after []aggregator.Point
	for i := range 7 {
		before = append(before, sample(i)...)
	}
	for i := 6; i < 19; i++ {
		after = append(after, sample(i)...)
	}
	end := t0.Add(3*time.Minute + 31*time.Second)
	ref, rc := newTestAccountant(t, Config{})
	ref.Process(slices.Clone(before))
	want := run(ref, rc, slices.Clone(after), end)

	state := filepath.Join(t.TempDir(), "accounting.state")
	first, c1 := newTestAccountant(t, Config{})
	run(first, c1, slices.Clone(before), t0.Add(91*time.Second))
	if err := first.Save(state); err != nil {
		t.Fatal(err)
	}
	second, c2 := newTestAccountant(t, Config{})
	if err := second.Load(state); err != nil {
		t.Fatal(err)
	}
	c2.t = c1.t
	got := run(second, c2, slices.Clone(after), end)
	index := func(points []aggregator.Point, from time.Time) map[string]bool {
		m := map[string]bool{}
		for i := range points {
			if !points[i].Time.Before(from) && !strings.Contains(describe(&points[i]), "rolling") {
				m[describe(&points[i])+" @"+points[i].Time.Format(time.TimeOnly)] = true
			}
		}
		return m
	}
	w, g := index(want, t0.Add(2*time.Minute)), index(got, t0.Add(2*time.Minute))
	if len(w) < 20 {
		t.Fatalf("only %d derived points to compare", len(w))
	}
	for p := range w {
		if !g[p] {
			t.Errorf("after the restart, missing or different: %s", p)
		}
	}
	for p := range g {
		if !w[p] {
			t.Errorf("after the restart, unexpected: %s", p)
		}
	}
	// the hour and day windows were open at the checkpoint: they too
	later := t0.Add(25 * time.Hour)
	rc.t, c2.t = later, later
	w, g = index(ref.Tick(later), t0.Truncate(24*time.Hour)), index(second.Tick(later), t0.Truncate(24*time.Hour))
	hourOrDay := 0
	for p := range w {
		if strings.Contains(p, "resolution=1h") || strings.Contains(p, "resolution=1d") {
			hourOrDay++
			if !g[p] {
				t.Errorf("after the restart, the hour or day window differs: %s", p)
			}
		}
	}
	if hourOrDay < 20 {
		t.Errorf("only %d hour and day points compared", hourOrDay)
	}
}

// lastWritten keeps, per window, the energy of the last point written for
// it (a revision overwrites in InfluxDB) and sums them.
func lastWritten(points []aggregator.Point, kv ...string) float64 {
	byWindow := map[time.Time]float64{}
	want := tags(kv...)
	for i := range points {
		p := &points[i]
		if p.Measurement != schema.Energy || !slices.ContainsFunc(p.Tags, func(t aggregator.Tag) bool { return t == aggregator.Tag{Key: "resolution", Value: "1m"} }) {
			continue
		}
		match := true
		for _, w := range want {
			match = match && slices.Contains(p.Tags, w)
		}
		if v, ok := field(p, "joules"); match && ok {
			byWindow[p.Time] = v.FloatV()
		}
	}
	total := 0.0
	for _, v := range byWindow {
		total += v
	}
	return total
}

func TestWallClockSteppedForwardLosesNothing(t *testing.T) {
	a, c := newTestAccountant(t, Config{})
	points := oneHost(t0, t0.Add(3*time.Minute))
	var out []aggregator.Point
	a.Process(points[:7])                   // the first minute
	c.t = t0.Add(2*time.Hour + time.Minute) // the aggregator's clock jumps two hours ahead
	out = append(out, a.Tick(c.t)...)
	for i := 7; i < len(points); i += 3 {
		a.Process(points[i:min(i+3, len(points))]) // the agents' clocks are right: their points look two hours late
		c.t = c.t.Add(30 * time.Second)
		out = append(out, a.Tick(c.t)...)
	}
	c.t = t0.Add(3*time.Minute + 31*time.Second) // and back
	out = append(out, a.Tick(c.t)...)
	if got := lastWritten(out, "scope", "host", "kind", "it"); got != 600*180 {
		t.Errorf("energy written = %v J, want %v: nothing lost to a clock step", got, 600*180)
	}
	if st := a.Stats(); st.DroppedJoules != 0 || st.LatePoints != 0 {
		t.Errorf("dropped %v J in %d late points after a clock step", st.DroppedJoules, st.LatePoints)
	}
}

func TestWallClockSteppedBackDelaysWindows(t *testing.T) {
	a, c := newTestAccountant(t, Config{})
	c.t = t0.Add(-time.Hour) // an hour behind the agents
	a.Process(oneHost(t0, t0.Add(2*time.Minute)))
	if out := a.Tick(c.t); len(out) != 0 {
		t.Errorf("windows written before the clock reached them: %d points", len(out))
	}
	c.t = t0.Add(2*time.Minute + 31*time.Second)
	out := a.Tick(c.t)
	if got := lastWritten(out, "scope", "host", "kind", "it"); got != 600*120 {
		t.Errorf("energy written = %v J, want %v", got, 600*120)
	}
}

func bmcPoint(host string, at time.Time, joules float64, chassis string) aggregator.Point {
	return pt("joules_redfish_host_energy_joules_total", at, joules, "site", "s1", "hall", "h1", "rack", "r1", "host", host, "bmc", host+"-bmc", "role", "host", "method", "counter", "chassis", chassis)
}

func TestLongOutageKeepsHourAndDayWindows(t *testing.T) {
	a, c := newTestAccountant(t, Config{})
	end := t0.Add(3 * time.Hour)
	c.t = end.Add(time.Minute)
	// n2 is current; n1's agent was cut off for three hours and its next
	// point spans them (its counter measured them)
	a.Process([]aggregator.Point{bmcPoint("n2", end.Add(-10*time.Second), 0, "1"), bmcPoint("n2", end, 6000, "1"), bmcPoint("n1", t0, 0, "1")})
	a.Process([]aggregator.Point{bmcPoint("n1", end, 600*3*3600, "1")})
	out := a.Tick(t0.Add(24*time.Hour + time.Minute))
	hour := func(h int) float64 {
		return floatField(t, find(t, out, schema.Energy, t0.Add(time.Duration(h)*time.Hour), "resolution", "1h", "scope", "host", "host", "n1", "kind", "it"), "joules")
	}
	if got := hour(1); got != 600*3600 {
		t.Errorf("hour 1 = %v J, want %v", got, 600*3600)
	}
	if got := hour(2); got != 600*3600 {
		t.Errorf("hour 2 = %v J, want %v", got, 600*3600)
	}
	day := find(t, out, schema.Energy, t0.Truncate(24*time.Hour), "resolution", "1d", "scope", "host", "host", "n1", "kind", "it")
	if got := floatField(t, day, "joules"); got != 600*3*3600 {
		t.Errorf("day = %v J, want all %v: a day window outlives max_lateness", got, 600*3*3600)
	}
	// minute windows that ended more than max_lateness before the newest
	// point (t0+3h) are let go: the first 119 minutes
	if got, want := a.Stats().DroppedJoules, 600.0*119*60; got != want {
		t.Errorf("dropped %v J, want the minute windows already let go (%v)", got, want)
	}
}

func TestClockSteppedBackNeverRewritesALetGoWindow(t *testing.T) {
	a, c := newTestAccountant(t, Config{})
	a.Process(oneHost(t0, t0.Add(time.Minute)))
	c.t = t0.Add(3 * time.Hour)
	a.Process([]aggregator.Point{bmcPoint("n2", c.t.Add(-10*time.Second), 0, "1"), bmcPoint("n2", c.t, 6000, "1")})
	first := a.Tick(c.t) // window t0 written and let go
	if p := find(t, first, schema.Energy, t0, "resolution", "1m", "scope", "host", "host", "n1", "kind", "it"); p == nil {
		t.Fatal("window t0 not written")
	}
	c.t = t0.Add(20 * time.Minute) // the clock steps back
	a.Process([]aggregator.Point{bmcPoint("n1", t0.Add(10*time.Second), 0, "2"), bmcPoint("n1", t0.Add(20*time.Second), 5000, "2")})
	if p := find(t, a.Tick(c.t), schema.Energy, t0, "resolution", "1m", "scope", "host", "host", "n1"); p != nil {
		t.Errorf("a finished window written again after the clock stepped back: %s", describe(p))
	}
	if a.Stats().DroppedJoules != 5000 {
		t.Errorf("dropped %v J, want the late 5000 J counted", a.Stats().DroppedJoules)
	}
}

func TestReplayedActivityCountsOnce(t *testing.T) {
	a, c := newTestAccountant(t, Config{})
	act := func(at time.Time, v float64) aggregator.Point {
		return pt("joules_gpu_sm_activity_ratio", at, v, "site", "s1", "hall", "h1", "rack", "r1", "host", "n1", "gpu", "0", "uuid", "GPU-0")
	}
	readings := []aggregator.Point{act(t0, 0.9), gpuEnergy("n1", "0", t0, 0), act(t0.Add(30*time.Second), 0.1), gpuEnergy("n1", "0", t0.Add(30*time.Second), 12000), gpuEnergy("n1", "0", t0.Add(time.Minute), 24000)}
	a.Process(slices.Clone(readings))
	a.Process(slices.Clone(readings[:1])) // the first reading again
	out := run(a, c, nil, t0.Add(91*time.Second))
	p := find(t, out, schema.Activity, t0, "resolution", "1m", "gpu", "GPU-0")
	if got := floatField(t, p, "activity"); !closeEqual(got, 0.5, 1e-12) {
		t.Errorf("mean activity = %v, want 0.5 (a replayed reading counted once)", got)
	}
}

func TestCoverageCountsEverySeriesOfAnEntity(t *testing.T) {
	a, c := newTestAccountant(t, Config{})
	var points []aggregator.Point
	for i := 0; i <= 6; i++ {
		at := t0.Add(time.Duration(i) * 10 * time.Second)
		points = append(points, bmcPoint("n1", at, float64(300*10*i), "1"))
		if i <= 3 {
			points = append(points, bmcPoint("n1", at, float64(300*10*i), "2")) // chassis 2 silent after 30 s
		}
		for g := range 4 {
			if g < 3 || i <= 3 { // GPU 3 silent after 30 s
				points = append(points, gpuEnergy("n2", fmt.Sprint(g), at, float64(200*10*i)))
			}
		}
	}
	out := run(a, c, points, t0.Add(91*time.Second))
	bmc := find(t, out, schema.Energy, t0, "resolution", "1m", "scope", "host", "host", "n1", "kind", "it")
	if got := floatField(t, bmc, "coverage"); !closeEqual(got, 0.75, 1e-12) {
		t.Errorf("two chassis, one silent half the window: coverage %v, want 0.75", got)
	}
	gpus := find(t, out, schema.Energy, t0, "resolution", "1m", "scope", "host", "host", "n2", "kind", "it")
	if got := floatField(t, gpus, "coverage"); !closeEqual(got, 3.5/4, 1e-12) {
		t.Errorf("four GPUs, one silent half the window: coverage %v, want 0.875", got)
	}
}

func TestRAPLRebootIsNoWrap(t *testing.T) {
	a, c := newTestAccountant(t, Config{})
	rapl := []string{"site", "s1", "hall", "h1", "rack", "r1", "host", "n1", "index", "0", "path", "/sys/class/powercap/intel-rapl:0"}
	points := []aggregator.Point{
		pt("joules_rapl_max_energy_range_joules", t0, 262143.328850, append(slices.Clone(rapl), "zone", "package")...),
		pt("node_rapl_package_joules_total", t0, 1000, rapl...),
		pt("node_rapl_package_joules_total", t0.Add(10*time.Second), 3000, rapl...), // +2000
		pt("node_rapl_package_joules_total", t0.Add(20*time.Second), 50, rapl...),   // rebooted: +50, not 259,193 J
	}
	out := run(a, c, points, t0.Add(91*time.Second))
	if got := energyOf(t, out, t0, "scope", "host", "host", "n1", "kind", "cpu"); got != 2050 {
		t.Errorf("CPU energy = %v J, want 2050: a reboot is no wrap", got)
	}
	if st := a.Stats(); st.Resets != 1 || st.Wraps != 0 {
		t.Errorf("resets %d wraps %d, want 1 and 0", st.Resets, st.Wraps)
	}
}
