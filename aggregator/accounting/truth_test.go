package accounting

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/internal/schema"
)

// The cases of this file are the classes of messy input that made
// accounting publish wrong numbers at full coverage: counter
// discontinuities, source changes, gaps that looked covered, points out of
// order, and PUE from meters that do not meter what they are said to. Each
// expected value is worked out by hand in its comment.

// at is t0 plus s seconds.
func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// bmc is a host's BMC energy counter point (joules) with extra tags.
func bmc(sec, joules float64, kv ...string) aggregator.Point {
	return pt("joules_redfish_host_energy_joules_total", at(sec), joules, append([]string{"site", "s1", "hall", "h1", "rack", "r1", "host", "a",
		"bmc", "a-bmc", "role", "host", "method", "counter", "chassis", "1"}, kv...)...)
}

func bmcPower(sec, watts float64, kv ...string) aggregator.Point {
	return pt("joules_redfish_host_power_watts", at(sec), watts, append([]string{"site", "s1", "hall", "h1", "rack", "r1", "host", "a",
		"bmc", "a-bmc", "role", "host", "chassis", "1"}, kv...)...)
}

func gpuAt(sec, joules float64, kv ...string) aggregator.Point {
	return pt("joules_gpu_energy_joules_total", at(sec), joules, append([]string{"site", "s1", "hall", "h1", "rack", "r1", "host", "a",
		"gpu", "0", "uuid", "GPU-0", "method", "counter"}, kv...)...)
}

func rapl(sec, joules float64, kv ...string) aggregator.Point {
	return pt("node_rapl_package_joules_total", at(sec), joules, append([]string{"site", "s1", "host", "n1", "index", "0", "path", "/sys/class/powercap/intel-rapl:0"}, kv...)...)
}

// closeAll feeds the points in the order given and closes every window.
func closeAll(t *testing.T, cfg Config, points []aggregator.Point) ([]aggregator.Point, *Accountant) {
	t.Helper()
	a, c := newTestAccountant(t, cfg)
	last := t0
	for _, p := range points {
		if p.Time.After(last) {
			last = p.Time
		}
	}
	return run(a, c, points, last.Add(a.cfg.Window+a.cfg.Grace)), a
}

func hostIT(t *testing.T, out []aggregator.Point, start time.Time) *aggregator.Point {
	t.Helper()
	p := find(t, out, schema.Energy, start, "resolution", "1m", "scope", "host", "kind", "it")
	if p == nil {
		t.Fatalf("no host IT energy at %s", start)
	}
	return p
}

func stringField(p *aggregator.Point, key string) string {
	v, _ := field(p, key)
	return v.StringV()
}

func TestCounterDiscontinuities(t *testing.T) {
	for _, tc := range []struct {
		name     string
		points   []aggregator.Point
		joules   float64 // the host's IT energy in the first minute
		coverage float64
		reason   string // a part of the host point's reason; "" none
	}{{
		// 500 W read every 10 s; at 30 s the BMC serves a stale value 100 J
		// below the last. Held: 500 W × 60 s = 30,000 J, all covered.
		name:   "a stale reading a little below the last is held",
		points: []aggregator.Point{bmc(0, 1e6), bmc(10, 1.005e6), bmc(20, 1.01e6), bmc(30, 1.0099e6), bmc(40, 1.02e6), bmc(50, 1.025e6), bmc(60, 1.03e6)},
		joules: 30000, coverage: 1,
	}, {
		// A summed PSU counter (2 GJ of lifetime energy) loses a PSU's
		// 1 GJ when the PSU is replaced at 30 s: not a restart (1 GJ is
		// more than 20 kW × 40 s), so the reading waits; the next one
		// confirms it as a new base. Counted: 0–20 s (10 kJ) and 30–60 s
		// (15 kJ); the 20–30 s step across the change is not: 25,000 J
		// over 50 of 60 s. Before: a reset adding the whole 1 GJ.
		name: "one PSU replaced in a summed counter is a new base, not a restart",
		points: []aggregator.Point{bmc(0, 2e9), bmc(10, 2e9+5000), bmc(20, 2e9+10000), bmc(30, 1e9), bmc(40, 1e9+5000),
			bmc(50, 1e9+10000), bmc(60, 1e9+15000)},
		joules: 25000, coverage: 50.0 / 60, reason: "1 implausible step",
	}, {
		// A one-reading glitch of a BMC to 50 GJ: dismissed by the next
		// reading, which continues from the last good one: 30,000 J.
		name:   "a glitch up is dismissed",
		points: []aggregator.Point{bmc(0, 1e6), bmc(10, 1.005e6), bmc(20, 1.01e6), bmc(30, 5e10), bmc(40, 1.02e6), bmc(50, 1.025e6), bmc(60, 1.03e6)},
		joules: 30000, coverage: 1, reason: "1 implausible step",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			out, _ := closeAll(t, Config{}, tc.points)
			p := hostIT(t, out, t0)
			if got := floatField(t, p, "joules"); !closeEqual(got, tc.joules, 1e-9) {
				t.Errorf("IT energy %v J, want %v (%s)", got, tc.joules, describe(p))
			}
			if got := floatField(t, p, "coverage"); !closeEqual(got, tc.coverage, 1e-9) {
				t.Errorf("coverage %v, want %v", got, tc.coverage)
			}
			if r := stringField(p, "reason"); tc.reason == "" && r != "" || !strings.Contains(r, tc.reason) {
				t.Errorf("reason %q, want %q", r, tc.reason)
			}
		})
	}
}

// An agent restarted after a GPU driver reload lost its continuation and
// sends the raw counter: 3 MJ since the driver loaded, below the 5 MJ it
// sent before. With the epoch label the agent now writes it is a new
// base; without it (an older agent) a drop that is no restart. Either way
// the 30–40 s step is not counted: 700 W × (30 + 20) s = 35,000 J.
func TestAgentRestartAfterDriverReload(t *testing.T) {
	for _, epochs := range []bool{true, false} {
		e := func(epoch string) []string {
			if epochs {
				return []string{"epoch", epoch}
			}
			return nil
		}
		points := []aggregator.Point{
			gpuAt(0, 5e6, e("aaaa")...), gpuAt(10, 5.007e6, e("aaaa")...), gpuAt(20, 5.014e6, e("aaaa")...), gpuAt(30, 5.021e6, e("aaaa")...),
			gpuAt(40, 3e6, e("bbbb")...), gpuAt(50, 3.007e6, e("bbbb")...), gpuAt(60, 3.014e6, e("bbbb")...),
		}
		out, a := closeAll(t, Config{}, points)
		p := find(t, out, schema.Energy, t0, "resolution", "1m", "scope", "gpu")
		if got := floatField(t, p, "joules"); !closeEqual(got, 35000, 1e-9) {
			t.Errorf("epochs %v: GPU energy %v J, want 35,000 (not the 3 MJ since the driver loaded)", epochs, got)
		}
		if epochs && a.Stats().Epochs != 1 {
			t.Errorf("epochs counted %d, want 1", a.Stats().Epochs)
		}
	}
}

// A RAPL zone (range 262,143.32885 J) of a host that reboots for three
// minutes: its last reading before is 200,000 J, its first after 4,000 J
// (40 s since boot at 100 W). As a wrap that would be 66,143 J, 367 W over
// 180 s, which a CPU can draw; the boot id the agent puts on the counter
// (its epoch) says it restarted: 4,000 J.
func TestRAPLRestartDuringAReboot(t *testing.T) {
	zone := pt("joules_rapl_max_energy_range_joules", at(0), 262143.32885, "site", "s1", "host", "n1", "index", "0", "path", "/sys/class/powercap/intel-rapl:0", "zone", "package")
	for _, tc := range []struct {
		name   string
		after  aggregator.Point
		joules float64 // counted in the window of the restart
	}{
		{"restarted from zero", rapl(200, 4000, "epoch", "bbbb"), 4000},
		// Restarted and already past its old value: 210,000 J since the
		// boot, not the 10,000 J of a difference (1 kW × 210 s bound).
		{"restarted and climbed past its old value", rapl(200, 210000, "epoch", "bbbb"), 210000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _ := closeAll(t, Config{}, []aggregator.Point{zone, rapl(0, 199000, "epoch", "aaaa"), rapl(20, 200000, "epoch", "aaaa"), tc.after})
			var total float64
			for _, p := range out {
				if p.Measurement == schema.Energy && hasTags(p, "resolution", "1m", "scope", "host", "kind", "cpu") {
					total += floatField(t, &p, "joules")
				}
			}
			if want := 1000 + tc.joules; !closeEqual(total, want, 1e-9) {
				t.Errorf("CPU energy %v J, want %v", total, want)
			}
		})
	}
	// The same epoch: a wrap, (262,143.32885 − 262,000) + 500 in 10 s.
	out, a := closeAll(t, Config{}, []aggregator.Point{zone, rapl(0, 262000, "epoch", "aaaa"), rapl(10, 500, "epoch", "aaaa")})
	p := find(t, out, schema.Energy, t0, "resolution", "1m", "scope", "host", "kind", "cpu")
	if got := floatField(t, p, "joules"); !closeEqual(got, 643.32885, 1e-9) || a.Stats().Wraps != 1 {
		t.Errorf("wrap: %v J (%d wraps), want 643.32885", got, a.Stats().Wraps)
	}
}

func hasTags(p aggregator.Point, kv ...string) bool {
	for _, w := range tags(kv...) {
		found := false
		for _, t := range p.Tags {
			if t == w {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// A GPU whose counter jumps by 50 MJ in a minute (a driver bug, a
// corrupted reading that stays): no GPU draws 833 kW. With its enforced
// limit of 700 W the bound of a 10 s step is 1.5 × 700 × (10 + 30) =
// 42 kJ: the step is not counted, the counter goes on from its new base.
// 700 W × 50 s = 35,000 J, and the step is counted as a jump.
func TestImplausibleGPUJumpIsNotCounted(t *testing.T) {
	limit := pt("joules_gpu_power_enforced_limit_watts", at(0), 700, "site", "s1", "hall", "h1", "rack", "r1", "host", "a", "gpu", "0", "uuid", "GPU-0")
	points := []aggregator.Point{limit, gpuAt(0, 1e6), gpuAt(10, 1.007e6), gpuAt(20, 1.014e6), gpuAt(30, 51.014e6),
		gpuAt(40, 51.021e6), gpuAt(50, 51.028e6), gpuAt(60, 51.035e6)}
	out, a := closeAll(t, Config{}, points)
	p := find(t, out, schema.Energy, t0, "resolution", "1m", "scope", "gpu")
	if got := floatField(t, p, "joules"); !closeEqual(got, 35000, 1e-9) {
		t.Errorf("GPU energy %v J, want 35,000", got)
	}
	if n := a.Stats().Implausible[implausibleJump]; n != 1 {
		t.Errorf("implausible jumps %d, want 1", n)
	}
	if r := stringField(hostIT(t, out, t0), "reason"); !strings.Contains(r, "1 implausible step") {
		t.Errorf("host reason %q, want the implausible step named", r)
	}
}

// A host whose BMC counter stops at 30 s while its power goes on: the
// counter's 600 W for the first half, the power's 900 W for the second:
// 600 × 30 + 900 × 30 = 45,000 J. Before: the counter's 18,000 J.
func TestSourcesCombineByTime(t *testing.T) {
	var points []aggregator.Point
	for s := 0.0; s <= 60; s += 10 {
		points = append(points, bmcPower(s, 900))
		if s <= 30 {
			points = append(points, bmc(s, 1e6+600*s))
		}
	}
	out, _ := closeAll(t, Config{}, points)
	p := hostIT(t, out, t0)
	if got := floatField(t, p, "joules"); !closeEqual(got, 45000, 1e-9) {
		t.Errorf("IT energy %v J, want 45,000 (%s)", got, describe(p))
	}
	if got := stringField(p, "source"); got != "bmc_counter+bmc_power_integrated" {
		t.Errorf("source %q, want both", got)
	}
	if got := floatField(t, p, "coverage"); got != 1 {
		t.Errorf("coverage %v, want 1", got)
	}
}

// A BMC whose reading alternates between two schema paths (the agent's
// source label): one series, full coverage, 500 W × 60 s.
func TestAlternatingSchemaPathsAreOneSeries(t *testing.T) {
	var points []aggregator.Point
	for i, s := 0, 0.0; s <= 60; i, s = i+1, s+10 {
		src := []string{"environment_metrics", "power_subsystem"}[i%2]
		points = append(points, bmc(s, 1e6+500*s, "source", src))
	}
	out, a := closeAll(t, Config{}, points)
	p := hostIT(t, out, t0)
	if got, cov := floatField(t, p, "joules"), floatField(t, p, "coverage"); !closeEqual(got, 30000, 1e-9) || cov != 1 {
		t.Errorf("IT energy %v J at coverage %v, want 30,000 at 1", got, cov)
	}
	if a.Series() != 1 {
		t.Errorf("%d series, want 1", a.Series())
	}
}

// A power-only BMC unreadable from 20 to 50 s: the agent's integrated
// counter stays flat across the gap and starts a new epoch. The flat step
// is no measured zero: 500 W × (20 + 10) s = 15,000 J at coverage 0.5, and
// the PUE says partial. Before: 15,000 J at coverage 1, a PUE twice too high.
func TestAGapInAnIntegratedCounterIsAGap(t *testing.T) {
	integ := func(sec, j float64, epoch string) aggregator.Point {
		return bmc(sec, j, "method", "integrated", "epoch", epoch)
	}
	points := []aggregator.Point{integ(0, 0, "e1"), integ(10, 5000, "e1"), integ(20, 10000, "e1"), integ(50, 10000, "e2"), integ(60, 15000, "e2")}
	var s site
	s.meter("facility", "facility_input", "", 1000, t0, t0.Add(time.Minute))
	out, _ := closeAll(t, Config{}, append(points, s.points...))
	p := hostIT(t, out, t0)
	if got, cov := floatField(t, p, "joules"), floatField(t, p, "coverage"); !closeEqual(got, 15000, 1e-9) || !closeEqual(cov, 0.5, 1e-9) {
		t.Errorf("IT energy %v J at coverage %v, want 15,000 at 0.5", got, cov)
	}
	pue := find(t, out, schema.PUE, t0, "resolution", "1m", "scope", "site")
	if r := stringField(pue, "reason"); !strings.Contains(r, "partial data") {
		t.Errorf("PUE reason %q, want partial data", r)
	}
}

// Power readings every 10 s at 100 W × (1 + s/10) (100, 200, … W): the 30 s
// reading comes after the 40 s one, and the 50 s reading of the first
// minute after the 70 s one of the next. Placed in order, the trapezoids
// are exact: first minute Σ (w₀+w₁)/2 × 10 over 0–60 s = 100 × 10 × (1.5 +
// 2.5 + … + 6.5) = 24,000 J; second minute 60–80 s = 100 × 10 × (7.5 +
// 8.5) = 16,000 J.
func TestOutOfOrderPointsLandInTheirWindows(t *testing.T) {
	order := []float64{0, 10, 20, 40, 30, 60, 70, 50, 80}
	var points []aggregator.Point
	for _, s := range order {
		points = append(points, bmcPower(s, 100*(1+s/10)))
	}
	points = append(points, bmcPower(40, 500)) // a duplicate, replayed
	out, a := closeAll(t, Config{}, points)
	for _, w := range []struct {
		start  time.Time
		joules float64
	}{{t0, 24000}, {t0.Add(time.Minute), 16000}} {
		p := hostIT(t, out, w.start)
		if got := floatField(t, p, "joules"); !closeEqual(got, w.joules, 1e-9) {
			t.Errorf("window %s: %v J, want %v", w.start.Format("15:04"), got, w.joules)
		}
	}
	if st := a.Stats(); st.Reordered != 2 || st.Duplicates != 1 {
		t.Errorf("reordered %d duplicates %d, want 2 and 1", st.Reordered, st.Duplicates)
	}
	// The first point after the second: prepended to a young series.
	out, _ = closeAll(t, Config{}, []aggregator.Point{bmcPower(10, 200), bmcPower(0, 100), bmcPower(20, 300), bmcPower(30, 400),
		bmcPower(40, 500), bmcPower(50, 600), bmcPower(60, 700)})
	if got := floatField(t, hostIT(t, out, t0), "joules"); !closeEqual(got, 24000, 1e-9) {
		t.Errorf("first point out of order: %v J, want 24,000", got)
	}
}

// meter is an energy counter of a meter at constant power over the minute.
func meter(bmcName, role string, watts float64, kv ...string) []aggregator.Point {
	var s site
	s.counter("joules_redfish_equipment_energy_joules_total", watts, t0, t0.Add(time.Minute), 10*time.Second,
		append([]string{"site", "s1", "host", "mgmt", "bmc", bmcName, "role", role, "equipment", "1", "equipment_type", "rack_pdu", "method", "counter"}, kv...)...)
	return s.points
}

func hosts(specs ...[4]string) []aggregator.Point {
	var s site
	for _, h := range specs {
		var w float64
		for _, c := range h[3] {
			w = w*10 + float64(c-'0')
		}
		s.host(h[0], h[1], h[2], w, t0, t0.Add(time.Minute))
	}
	return s.points
}

func sitePUE(t *testing.T, out []aggregator.Point) *aggregator.Point {
	t.Helper()
	p := find(t, out, schema.PUE, t0, "resolution", "1m", "scope", "site", "site", "s1")
	if p == nil {
		t.Fatal("no site PUE")
	}
	return p
}

func TestPUEGuards(t *testing.T) {
	two := hosts([4]string{"a", "h1", "r1", "1000"}, [4]string{"b", "h1", "r2", "1000"}) // 2,000 W in racks r1 and r2
	for _, tc := range []struct {
		name     string
		cfg      Config
		points   []aggregator.Point
		pue      float64 // 0: none
		category int64
		estimate bool
		reason   string
	}{{
		// Facility 1,500 W against hosts 2,000 W: impossible.
		name:   "facility below IT is never a PUE",
		points: append(meter("feed", "facility_input", 1500), two...),
		reason: "implausible: facility below IT",
	}, {
		// Rack r1 has feeds A and B; its PDU meters feed A only (520 W of
		// the host's 1,000 W). Said so in the configuration: not used; the
		// PUE comes from the hosts: 2,500 / 1,000.
		name: "a PDU on one feed of an A+B rack",
		cfg:  Config{PowerFeeds: []string{"A", "B"}, Meters: []Meter{{BMC: "pdu-r1a", Feeds: Feeds{Hall: "h1", Racks: []string{"r1"}, Feed: "A"}}}},
		points: append(append(meter("pdu-r1a", "pdu_output", 520, "hall", "h1", "rack", "r1"), meter("feed", "facility_input", 2500)...),
			hosts([4]string{"a", "h1", "r1", "1000"})...),
		pue: 2.5, category: 3, reason: "pdu_output meters do not meter 1 of its hosts on every feed",
	}, {
		// The same PDU with nothing configured: it reads 48 % less than
		// the host it is labelled to feed: not used.
		name:   "a PDU that reads much less than the hosts it is said to feed",
		points: append(append(meter("pdu-r1a", "pdu_output", 520, "hall", "h1", "rack", "r1"), meter("feed", "facility_input", 2500)...), hosts([4]string{"a", "h1", "r1", "1000"})...),
		pue:    2.5, category: 3, reason: "pdu_output meters read 48 % less than the hosts they feed",
	}, {
		// A PDU labelled with hall h1 feeds rack r1 only (1,000 W of the
		// hall's 2,000 W); configured as such: it does not feed r2.
		name:   "a hall-labelled PDU that feeds one rack",
		cfg:    Config{Meters: []Meter{{BMC: "pdu-h1", Feeds: Feeds{Racks: []string{"r1"}}}}},
		points: append(append(meter("pdu-h1", "pdu_output", 1050, "hall", "h1"), meter("feed", "facility_input", 3000)...), two...),
		pue:    1.5, category: 3, reason: "do not meter 1 of its hosts",
	}, {
		// Nothing configured: 1,050 W against the hall's 2,000 W.
		name:   "a hall-labelled PDU that feeds one rack, unconfigured",
		points: append(append(meter("pdu-h1", "pdu_output", 1050, "hall", "h1"), meter("feed", "facility_input", 3000)...), two...),
		pue:    1.5, category: 3, reason: "read 48 % less",
	}, {
		// A host measured by its GPU only: an estimate, no category.
		// 1,200 W facility over 800 W of GPU.
		name: "components only",
		points: append(meter("feed", "facility_input", 1200), func() []aggregator.Point {
			var s []aggregator.Point
			for sec := 0.0; sec <= 60; sec += 10 {
				s = append(s, gpuAt(sec, 1e6+800*sec))
			}
			return s
		}()...),
		pue: 1.5, category: 0, estimate: true, reason: "an estimate with no ISO/IEC 30134-2 category",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			out, _ := closeAll(t, tc.cfg, tc.points)
			p := sitePUE(t, out)
			v, has := field(p, "pue")
			switch {
			case tc.pue == 0 && has:
				t.Errorf("a PUE of %v was written: %s", v.FloatV(), describe(p))
			case tc.pue != 0 && (!has || !closeEqual(v.FloatV(), tc.pue, 1e-9)):
				t.Errorf("PUE %v (written %v), want %v: %s", v.FloatV(), has, tc.pue, describe(p))
			}
			if c, _ := field(p, "category"); tc.pue != 0 && c.IntV() != tc.category {
				t.Errorf("category %d, want %d", c.IntV(), tc.category)
			}
			if e, _ := field(p, "estimate"); e.BoolV() != tc.estimate {
				t.Errorf("estimate %v, want %v", e.BoolV(), tc.estimate)
			}
			if i, _ := field(p, "interim"); !i.BoolV() {
				t.Error("a PUE over a minute must say it is interim")
			}
			if r := stringField(p, "reason"); !strings.Contains(r, tc.reason) {
				t.Errorf("reason %q, want %q", r, tc.reason)
			}
			if tc.pue == 0 {
				rolling := find(t, out, schema.PUE, t0, "resolution", schema.Rolling1h, "scope", "site")
				if _, has := field(rolling, "pue"); has {
					t.Errorf("the rolling PUE took the implausible window in: %s", describe(rolling))
				}
			}
		})
	}
}

// One-second windows have slots of 166,666,666 ns and 4 ns over: the last
// slot takes them, so 500 W for a second is 500 J, not 499.999998.
func TestSlotsCoverTheWholeWindow(t *testing.T) {
	var points []aggregator.Point
	for s := 0.0; s <= 5; s += 0.5 {
		points = append(points, bmc(s, 1e6+500*s))
	}
	out, _ := closeAll(t, Config{Window: time.Second, Grace: time.Second}, points)
	for i := range 5 {
		p := find(t, out, schema.Energy, at(float64(i)), "resolution", "1s", "scope", "host", "kind", "it")
		if got := floatField(t, p, "joules"); got != 500 {
			t.Errorf("second %d: %v J, want exactly 500", i, got)
		}
	}
}

// A chassis whose PSUs can deliver 2,000 W: a 10 s step may count at most
// 1.1 × 2,000 × (10 + 30) s = 88 kJ (its own power and a lagging counter's
// 30 s), so 200 kJ is a jump (the default host bound, 20 kW, would have
// let it through). A meter rated 1,000 W by the configuration: at most
// 40 kJ a 10 s step.
func TestBoundsFromCapacityAndConfiguration(t *testing.T) {
	capacity := pt("joules_redfish_host_power_capacity_watts", at(0), 2000, "site", "s1", "hall", "h1", "rack", "r1", "host", "a",
		"bmc", "a-bmc", "role", "host", "chassis", "1")
	points := []aggregator.Point{capacity, bmc(0, 1e6), bmc(10, 1.005e6), bmc(20, 1.205e6), bmc(30, 1.21e6)}
	points = append(points, meter("pdu-a", "pdu_output", 500, "hall", "h1", "rack", "r1")...)
	// the PDU's counter jumps by 50 kJ between 30 and 40 s
	for i := range points {
		if points[i].Measurement == "joules_redfish_equipment_energy_joules_total" && !points[i].Time.Before(at(40)) {
			v, _ := field(&points[i], "value")
			points[i] = pt(points[i].Measurement, points[i].Time, v.FloatV()+50000, "site", "s1", "host", "mgmt", "bmc", "pdu-a", "role", "pdu_output",
				"equipment", "1", "equipment_type", "rack_pdu", "method", "counter", "hall", "h1", "rack", "r1")
		}
	}
	out, a := closeAll(t, Config{Meters: []Meter{{BMC: "pdu-a", MaxWatts: 1000}}}, points)
	if n := a.Stats().Implausible[implausibleJump]; n != 2 {
		t.Errorf("jumps %d, want 2: the host's 200 kJ and the PDU's 55 kJ", n)
	}
	// Host: 0–10 s and 20–30 s counted (5 kJ each); the jump's step is not.
	if got := floatField(t, hostIT(t, out, t0), "joules"); !closeEqual(got, 10000, 1e-9) {
		t.Errorf("host energy %v J, want 10,000", got)
	}
}

// A host with two chassis, each with a BMC counter and power at 500 W;
// chassis 2 falls silent after a minute. The second minute is chassis 1's
// 30,000 J at coverage 0.5 (one silent chassis shows), not chassis 1's
// counter and its power again.
func TestASilentChassisIsNotFilledByTheOthers(t *testing.T) {
	var points []aggregator.Point
	for s := 0.0; s <= 120; s += 10 {
		for _, ch := range []string{"1", "2"} {
			if ch == "2" && s > 60 {
				continue
			}
			tg := []string{"site", "s1", "hall", "h1", "rack", "r1", "host", "a", "bmc", "a-bmc", "role", "host", "chassis", ch}
			points = append(points, pt("joules_redfish_host_energy_joules_total", at(s), 1e6+500*s, append(tg, "method", "counter")...),
				pt("joules_redfish_host_power_watts", at(s), 500, tg...))
		}
	}
	out, _ := closeAll(t, Config{}, points)
	p := hostIT(t, out, t0.Add(time.Minute))
	if got, cov := floatField(t, p, "joules"), floatField(t, p, "coverage"); !closeEqual(got, 30000, 1e-9) || !closeEqual(cov, 0.5, 1e-9) {
		t.Errorf("second minute: %v J at coverage %v, want 30,000 at 0.5 (%s)", got, cov, describe(p))
	}
}

// A host without a BMC whose GPU goes silent after a minute while its RAPL
// zone goes on at 200 W: the second minute's IT energy is the CPU's 12 kJ,
// a lower bound, not nothing.
func TestCPUsCountWhenTheGPUsAreSilent(t *testing.T) {
	var points []aggregator.Point
	for s := 0.0; s <= 120; s += 10 {
		if s <= 60 {
			points = append(points, gpuAt(s, 1e6+700*s))
		}
		points = append(points, pt("node_rapl_package_joules_total", at(s), 1000+200*s, "site", "s1", "hall", "h1", "rack", "r1", "host", "a",
			"index", "0", "path", "/sys/class/powercap/intel-rapl:0"))
	}
	out, _ := closeAll(t, Config{}, points)
	p := hostIT(t, out, t0.Add(time.Minute))
	if got := floatField(t, p, "joules"); !closeEqual(got, 12000, 1e-9) || stringField(p, "source") != "components_lower_bound" {
		t.Errorf("second minute: %s, want the CPU's 12,000 J as components", describe(p))
	}
	if lb, _ := field(p, "lower_bound"); !lb.BoolV() {
		t.Error("a host measured by its CPU alone is a lower bound")
	}
}

// A GPU busy until 75 s, idle after: a late point inside its busy step is
// placed with the step's own idleness, so no window gets negative or
// borrowed idle energy. 700 W throughout: window 0 has 50–60 s, 7,000 J,
// none idle; window 60 has 60–90 s, 21,000 J, of which 70–90 s (after the
// idle reading at 75 s, from the next step on) is idle: 14,000 J.
func TestOutOfOrderGPUPointsKeepTheirIdleness(t *testing.T) {
	act := func(sec, v float64) aggregator.Point {
		return pt("joules_gpu_sm_activity_ratio", at(sec), v, "site", "s1", "hall", "h1", "rack", "r1", "host", "a", "gpu", "0", "uuid", "GPU-0")
	}
	points := []aggregator.Point{act(0, 0.9), gpuAt(50, 1e6), gpuAt(70, 1.014e6), act(75, 0.01), gpuAt(80, 1.021e6), gpuAt(55, 1.0035e6), gpuAt(90, 1.028e6)}
	out, _ := closeAll(t, Config{}, points)
	for _, w := range []struct {
		start        time.Time
		joules, idle float64
	}{{t0, 7000, 0}, {t0.Add(time.Minute), 21000, 14000}} {
		p := find(t, out, schema.Energy, w.start, "resolution", "1m", "scope", "gpu")
		if got, idle := floatField(t, p, "joules"), floatField(t, p, "idle_joules"); !closeEqual(got, w.joules, 1e-9) || !closeEqual(idle, w.idle, 1e-9) && !(w.idle == 0 && math.Abs(idle) < 1e-9) {
			t.Errorf("window %s: %v J, %v idle; want %v and %v", w.start.Format("15:04"), got, idle, w.joules, w.idle)
		}
	}
}

// A BMC counter at 500 W whose 30 s reading is stamped 20 hours ahead (a
// clock that jumped and came back): the reading is held, the readings after
// it go on as if it had not come, and the first two minutes count 30,000 J
// each at full coverage. Before, every later reading looked out of order
// for 20 hours.
func TestAReadingStampedAheadDoesNotStallItsSeries(t *testing.T) {
	var points []aggregator.Point
	for s := 0.0; s <= 120; s += 10 {
		when := s
		if s == 30 {
			when = s + 72000
		}
		points = append(points, bmc(when, 1e6+500*s))
	}
	a, c := newTestAccountant(t, Config{})
	out := run(a, c, points, at(120).Add(a.cfg.Window+a.cfg.Grace))
	for _, start := range []time.Time{t0, t0.Add(time.Minute)} {
		p := hostIT(t, out, start)
		if got, cov := floatField(t, p, "joules"), floatField(t, p, "coverage"); !closeEqual(got, 30000, 1e-9) || cov != 1 {
			t.Errorf("window %s: %v J at coverage %v, want 30,000 at 1", start.Format("15:04"), got, cov)
		}
	}
	if st := a.Stats(); st.Unplaced != 0 {
		t.Errorf("%d readings unplaced", st.Unplaced)
	}
}

// A series that resumes after a 9-minute silence: its first reading is held
// until the next, then the step across the silence counts its energy (the
// counter measured it) without covering its time.
func TestASeriesResumingAfterAGapCountsTheGap(t *testing.T) {
	points := []aggregator.Point{bmc(0, 1e6), bmc(60, 1.03e6), bmc(600, 1.3e6), bmc(610, 1.305e6)}
	a, c := newTestAccountant(t, Config{})
	out := run(a, c, points, at(610).Add(a.cfg.Window+a.cfg.Grace))
	var total float64
	for _, p := range out {
		if p.Measurement == schema.Energy && hasTags(p, "resolution", "1m", "scope", "host", "kind", "it") {
			total += floatField(t, &p, "joules")
		}
	}
	if !closeEqual(total, 305000, 1e-9) || a.Stats().Gaps != 1 {
		t.Errorf("%v J (%d gaps), want 305,000 with one gap", total, a.Stats().Gaps)
	}
}
