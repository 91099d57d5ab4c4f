package energy

import (
	"testing"
	"time"
)

func TestCounterSurvivesResets(t *testing.T) {
	var c Counter
	raws := []float64{100, 150, 150, 20, 70, 5}
	want := []float64{100, 150, 150, 170, 220, 225}
	wantReset := []bool{false, false, false, true, false, true}
	for i, raw := range raws {
		got, reset := c.Update(raw)
		if got != want[i] || reset != wantReset[i] {
			t.Errorf("reading %d (%v): got %v reset %v, want %v reset %v", i, raw, got, reset, want[i], wantReset[i])
		}
	}
}

func TestIntegratorLeavesGapsOut(t *testing.T) {
	e := Integrator{MaxGap: 5 * time.Second}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		dt    time.Duration
		watts float64
		want  float64
	}{
		{0, 100, 0},
		{2 * time.Second, 200, 300},  // (100+200)/2 × 2
		{2 * time.Second, 200, 700},  // + 200 × 2
		{0, 900, 700},                // same instant: nothing
		{-time.Second, 900, 700},     // older: nothing
		{20 * time.Second, 300, 700}, // gap: left out
		{time.Second, 100, 900},      // (300+100)/2 × 1
	}
	now := t0
	for i, s := range steps {
		now = now.Add(s.dt)
		if got := e.Add(s.watts, now); got != s.want {
			t.Errorf("step %d: %v J, want %v", i, got, s.want)
		}
		if s.dt < 0 {
			now = now.Add(-s.dt) // the clock did not really go back for the next steps
		}
	}
	if e.Gaps != 1 {
		t.Errorf("gaps = %d, want 1", e.Gaps)
	}
}
