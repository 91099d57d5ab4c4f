package energy

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// t0 is an hour ago: the store forgets counters by the wall clock.
var t0 = time.Now().Add(-time.Hour).Truncate(time.Second)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

// A host of at most 1 kW read every 10 s: a step may count up to
// 1,000 × (10 + 30) = 40,000 J, a dip is up to 60,000 J.
var host = Bound{MaxWatts: 1000}

func TestTrackSteps(t *testing.T) {
	type reading struct {
		sec, value float64
		event      Event
		joules     float64
		from       float64 // start of the counted interval, seconds
	}
	for _, tc := range []struct {
		name     string
		readings []reading
	}{
		{"ordinary steps", []reading{
			{0, 5e6, First, 0, 0}, {10, 5.005e6, Counted, 5000, 0}, {20, 5.011e6, Counted, 6000, 10},
		}},
		{"a stale reading is held, never counted twice", []reading{
			{0, 5e6, First, 0, 0}, {10, 5.005e6, Counted, 5000, 0},
			{20, 5.001e6, Held, 0, 20},       // 4 kJ below: a stale value
			{30, 5.012e6, Counted, 7000, 10}, // measured from the held 5.005e6 over 20 s
		}},
		{"a restart from zero counts what it read since", []reading{
			{0, 5e6, First, 0, 0}, {10, 4000, Reset, 4000, 0}, {20, 9000, Counted, 5000, 10},
		}},
		{"a young counter's restart is no dip", []reading{
			// 50 kJ to 1 kJ is within a dip's 60 kJ, but 1 kJ is what a
			// restarted counter reads after 10 s, and less than half.
			{0, 40e3, First, 0, 0}, {10, 50e3, Counted, 10e3, 0}, {20, 1000, Reset, 1000, 10},
		}},
		{"a one-reading glitch up is dismissed", []reading{
			{0, 5e6, First, 0, 0},
			{10, 5e9, Suspect, 0, 10},       // 5 GJ in 10 s: no host draws that
			{20, 5.008e6, Counted, 8000, 0}, // continues from the last good reading
		}},
		{"a new base is confirmed by the next reading", []reading{
			{0, 5e6, First, 0, 0},
			{10, 2e6, Suspect, 0, 10},        // a PSU replaced in a summed counter: 3 MJ down, no restart
			{20, 2.004e6, Rebased, 4000, 10}, // 4 kJ since the new base; 0–10 s not measured
			{30, 2.009e6, Counted, 5000, 20},
		}},
		{"a stale reading after a new base is held, not a return to the old one", []reading{
			{0, 5e6, First, 0, 0}, {10, 5.005e6, Counted, 5000, 0},
			{20, 6.005e6, Suspect, 0, 20}, {30, 6.01e6, Rebased, 5000, 20},
			{40, 6.0099e6, Held, 0, 40}, // 100 J below: stale, and it must not bring the jump back
			{50, 6.015e6, Counted, 5000, 30},
		}},
		{"a jump that persists becomes the new base", []reading{
			{0, 100, First, 0, 0},
			{10, 1e12, Suspect, 0, 10},
			{20, 1e12 + 3000, Rebased, 3000, 10},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr Track
			for i, r := range tc.readings {
				s := tr.Update(r.value, at(r.sec).UnixNano(), host)
				if s.Event != r.event || s.Joules != r.joules {
					t.Fatalf("reading %d (%v at %vs): %v %v J, want %v %v J", i, r.value, r.sec, s.Event, s.Joules, r.event, r.joules)
				}
				if s.Joules > 0 && s.From != at(r.from).UnixNano() {
					t.Errorf("reading %d: counted from %v, want %vs", i, time.Unix(0, s.From).Sub(t0), r.from)
				}
			}
		})
	}
}

// A counter that creeps up a little faster than its device can draw, every
// step within one step's bound, still runs out of its lag budget: a 1 kW
// host that counts 1.5 kW is caught within a minute.
func TestTrackBudgetCatchesACreepingCounter(t *testing.T) {
	var tr Track
	v := 1e6
	tr.Update(v, at(0).UnixNano(), host)
	caught := -1
	for i := 1; i <= 10; i++ {
		v += 15000 // 1.5 kW for 10 s: under the 40 kJ a single step may count
		if s := tr.Update(v, at(float64(10*i)).UnixNano(), host); s.Event != Counted {
			caught = i
			break
		}
	}
	if caught < 0 || caught > 7 {
		t.Errorf("a counter at 1.5 × the bound was caught at step %d, want within 7 (30 kJ of budget, 5 kJ too much a step)", caught)
	}
	// A counter that lags and catches up: 20 s stale, then 30 s of energy.
	var lag Track
	lag.Update(1e6, at(0).UnixNano(), host)
	lag.Update(1e6, at(10).UnixNano(), host)
	if s := lag.Update(1e6+30000, at(30).UnixNano(), host); s.Event != Counted || s.Joules != 30000 {
		t.Errorf("a lagging counter's catch-up: %+v", s)
	}
}

func TestTrackUnboundedTakesAnyDropAsARestart(t *testing.T) {
	var tr Track
	tr.Update(1000, at(0).UnixNano(), Bound{})
	if s := tr.Update(1e15, at(1).UnixNano(), Bound{}); s.Event != Counted || s.Joules != 1e15-1000 {
		t.Fatalf("unbounded rise: %+v", s)
	}
	if s := tr.Update(7, at(2).UnixNano(), Bound{}); s.Event != Reset || s.Joules != 7 {
		t.Fatalf("unbounded drop: %+v", s)
	}
}

func TestTrackRestart(t *testing.T) {
	var tr Track
	tr.Update(5e6, at(0).UnixNano(), host)
	// A reboot of 170 s: 1 kW × (170 + 30) = 200 kJ is the most since.
	if s := tr.Restart(150e3, at(170).UnixNano(), host); s.Event != Restarted || s.Joules != 150e3 {
		t.Fatalf("restart within the bound: %+v", s)
	}
	if s := tr.Restart(250e3, at(180).UnixNano(), host); s.Event != Implausible || s.Joules != 0 {
		t.Fatalf("restart above the bound (1 kW × 40 s = 40 kJ < 250 kJ): %+v", s)
	}
	if s := tr.Update(251e3, at(190).UnixNano(), host); s.Event != Counted || s.Joules != 1000 {
		t.Fatalf("continues from the implausible restart's value: %+v", s)
	}
}

func TestCounterContinuesAndNeverGoesBack(t *testing.T) {
	var c Counter
	raws := []float64{1e6, 1.008e6, 1.008e6, 5e3, 13e3, 10e3, 19e3}
	// 1 MJ; +8 kJ; the same time again: nothing; a restart: +5 kJ; +8 kJ;
	// 3 kJ below: held; +6 kJ from the held 13 kJ.
	want := []float64{1e6, 1.008e6, 1.008e6, 1.013e6, 1.021e6, 1.021e6, 1.027e6}
	events := []Event{First, Counted, Held, Reset, Counted, Held, Counted}
	sec := []float64{0, 10, 10, 20, 30, 40, 50}
	for i, raw := range raws {
		got, ev := c.Update(raw, "", at(sec[i]), host)
		if got != want[i] || ev != events[i] {
			t.Errorf("reading %d (%v): %v %v, want %v %v", i, raw, got, ev, want[i], events[i])
		}
	}
	if len(c.Epoch) != 8 {
		t.Errorf("epoch %q, want eight hex digits", c.Epoch)
	}
}

// A driver reloaded while nobody watched, whose counter has climbed past
// its old value: only the hardware epoch shows the restart.
func TestCounterHardwareEpochShowsAHiddenRestart(t *testing.T) {
	var c Counter
	c.Update(10e3, "boot-a", at(0), host)
	total, ev := c.Update(25e3, "boot-b", at(100), host) // since the restart: 25 kJ ≤ 1 kW × 130 s
	if ev != Restarted || total != 35e3 {
		t.Fatalf("got %v %v, want Restarted and 10 kJ + 25 kJ = 35 kJ (not 10 + 15)", ev, total)
	}
}

func TestIntegratorLeavesGapsOutAndStartsAnEpoch(t *testing.T) {
	e := Integrator{MaxGap: 5 * time.Second, MaxWatts: 5000}
	steps := []struct {
		sec, watts, want float64
		newEpoch         bool
	}{
		{0, 100, 0, false},
		{2, 200, 300, false},   // (100+200)/2 × 2
		{4, 200, 700, false},   // + 200 × 2
		{4, 900, 700, false},   // same instant: nothing
		{24, 300, 700, true},   // gap: left out, a new epoch
		{25, 100, 900, false},  // (300+100)/2 × 1
		{26, 9e6, 900, false},  // above the bound: skipped
		{27, 100, 1100, false}, // from the last good reading at 25 s: 100 × 2
	}
	epoch := ""
	for i, s := range steps {
		got := e.Add(s.watts, at(s.sec))
		if got != s.want {
			t.Errorf("step %d: %v J, want %v", i, got, s.want)
		}
		if changed := epoch != "" && e.Epoch != epoch; changed != s.newEpoch {
			t.Errorf("step %d: epoch changed %v, want %v", i, changed, s.newEpoch)
		}
		epoch = e.Epoch
	}
	if e.Gaps != 1 {
		t.Errorf("gaps = %d, want 1", e.Gaps)
	}
}

func TestStoreSurvivesRestarts(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Counter("gpu/0", 1e6, "", at(0), host)
	total, epoch, _ := s.Counter("gpu/0", 1.005e6, "", at(10), host)
	s.Integrate("bmc/host", 500, at(0), time.Minute, 0)
	joules, iepoch := s.Integrate("bmc/host", 500, at(10), time.Minute, 0)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}

	// The driver was reloaded while the agent was down: the raw counter
	// reads 400 J; the total continues from 1,005,000 J.
	s2, err := OpenStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, epoch2, ev := s2.Counter("gpu/0", 400, "", at(40), host)
	if got != total+400 || epoch2 != epoch || ev != Reset {
		t.Errorf("after a restart: %v (epoch %s, %v), want %v (epoch %s, reset)", got, epoch2, ev, total+400, epoch)
	}
	j2, iepoch2 := s2.Integrate("bmc/host", 500, at(20), time.Minute, 0)
	if j2 != joules+5000 || iepoch2 != iepoch {
		t.Errorf("integrator after a restart: %v J (epoch %s), want %v (epoch %s)", j2, iepoch2, joules+5000, iepoch)
	}
}

func TestStoreSetsAnUnreadableFileAside(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, StoreFile), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(dir, nil)
	if err == nil || !strings.Contains(err.Error(), "moved to") {
		t.Fatalf("err = %v, want it to say where the file went", err)
	}
	if _, epoch, _ := s.Counter("x", 5, "", at(0), host); epoch == "" {
		t.Error("the store must still work")
	}
	aside, _ := filepath.Glob(filepath.Join(dir, StoreFile+".unreadable-*"))
	if len(aside) != 1 {
		t.Errorf("set aside: %v", aside)
	}
}

func TestStoreRunSavesOnShutdown(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx, time.Hour); close(done) }()
	s.Counter("k", 1, "", at(0), host)
	cancel()
	<-done
	raw, err := os.ReadFile(filepath.Join(dir, StoreFile))
	if err != nil || !strings.Contains(string(raw), `"k"`) {
		t.Fatalf("state after shutdown: %s, %v", raw, err)
	}
}

// One reading stamped 40 days ahead (a clock that jumped, then NTP put it
// back): the other counters are not forgotten, and this one goes on
// counting from the corrected clock instead of staying flat for 40 days.
func TestStoreSurvivesAClockThatJumped(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Counter("gpu0", 1e6, "", at(0), host)
	s.Counter("gpu1", 2e6, "", at(0), host)
	s.Counter("gpu1", 2.005e6, "", at(40*24*3600), host) // the jump
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	total0, epoch0, _ := s.Counter("gpu0", 1.005e6, "", at(10), host)
	_, epochBefore, _ := s.Counter("gpu0", 1.005e6, "", at(10), host)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	total0b, epoch0b, ev := s.Counter("gpu0", 1.01e6, "", at(20), host)
	if epoch0b != epoch0 || epochBefore != epoch0 || total0b != total0+5000 || ev != Counted {
		t.Errorf("gpu0 after a flush: %v in epoch %s (%v), want %v in epoch %s", total0b, epoch0b, ev, total0+5000, epoch0)
	}
	total1, _, ev := s.Counter("gpu1", 2.01e6, "", at(20), host)
	if total1 != 2.01e6 || ev != Counted {
		t.Errorf("gpu1 after the clock came back: %v (%v), want 2.01e6 counted", total1, ev)
	}
}

func TestCounterIgnoresWhatIsNoReading(t *testing.T) {
	var c Counter
	c.Update(1000, "", at(0), Bound{})
	for _, v := range []float64{math.NaN(), math.Inf(1), -5} {
		if total, ev := c.Update(v, "", at(10), Bound{}); total != 1000 || ev != Held {
			t.Errorf("%v: %v %v, want 1000 held", v, total, ev)
		}
	}
	if total, _ := c.Update(1500, "", at(20), Bound{}); total != 1500 {
		t.Errorf("then %v, want 1500", total)
	}
	var e Integrator
	e.MaxGap = time.Minute
	e.Add(100, at(0))
	if j := e.Add(math.NaN(), at(10)); j != 0 || math.IsNaN(e.Joules) {
		t.Errorf("a NaN power reading: %v J", j)
	}
}

func TestAWrapIsCountedOnlyWhereTheCounterWraps(t *testing.T) {
	const wrap = 65536.0 // a 16-bit counter in J
	b := Bound{MaxWatts: 100, Wrap: wrap}
	var tr Track
	tr.Update(65000, 1e9, b)
	// 536 J to the top and 100 past it, in 10 s: within 100 W.
	if s := tr.Update(100, 11e9, b); s.Event != Counted || s.Joules != 636 {
		t.Errorf("wrap step %+v, want 636 J counted", s)
	}
	// A little below the last: a stale reading, not a wrap of 65 kJ.
	if s := tr.Update(90, 21e9, b); s.Event != Held || s.Joules != 0 {
		t.Errorf("dip %+v, want held", s)
	}
	// Without Wrap the same drop from near the top is no wrap but a
	// restart from zero: the 100 J since are counted, not 636.
	var plain Track
	plain.Update(65000, 1e9, Bound{MaxWatts: 100})
	if s := plain.Update(100, 11e9, Bound{MaxWatts: 100}); s.Event != Reset || s.Joules != 100 {
		t.Errorf("a counter without a wrap: %+v, want a reset counting 100 J", s)
	}
}

// A counter in 0.1 kWh under a 16 A PDU's rating: one unit (360 kJ) is
// more than 3680 W can draw in 10 s and the lag budget, yet it is what the
// counter shows when it ticks over.
func TestACoarseCounterIsCountedAUnitAtATime(t *testing.T) {
	const unit = 360e3
	for _, c := range []struct {
		name string
		b    Bound
		want float64
	}{
		{"with its resolution", Bound{MaxWatts: 3680, Resolution: unit}, 2 * unit},
		{"without", Bound{MaxWatts: 3680}, 0},
	} {
		var tr Track
		var counted float64
		tr.Update(0, 0, c.b)
		// 2 kW: a unit every 180 s, polled every 10 s for 400 s.
		for s := int64(10); s <= 400; s += 10 {
			v := unit * float64(2000*s/int64(unit))
			counted += tr.Update(v, s*1e9, c.b).Joules
		}
		if counted != c.want {
			t.Errorf("%s: counted %v J, want %v J", c.name, counted, c.want)
		}
	}
}
