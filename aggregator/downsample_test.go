package aggregator

import (
	"testing"
	"time"
)

func TestDownsampleKeepsOnePointPerSeriesAndInterval(t *testing.T) {
	d := NewDownsample(10 * time.Second)
	t0 := time.Unix(1_800_000_000, 0)
	var in []Point
	for i := range 30 { // 30 s at 1 Hz for two series
		for _, gpu := range []string{"0", "1"} {
			in = append(in, Point{Measurement: "p", Tags: []Tag{{"gpu", gpu}}, Time: t0.Add(time.Duration(i) * time.Second)})
		}
	}
	out := d.Process(in)
	if len(out) != 6 {
		t.Fatalf("kept %d points, want 3 windows × 2 series", len(out))
	}
	for _, p := range out {
		if p.Time.Sub(t0)%(10*time.Second) != 0 {
			t.Errorf("kept %v, want the first point of each window", p.Time)
		}
	}
	// A replayed (older) point of a window already written is dropped too.
	if again := d.Process([]Point{{Measurement: "p", Tags: []Tag{{"gpu", "0"}}, Time: t0.Add(5 * time.Second)}}); len(again) != 0 {
		t.Error("point of an already written window kept")
	}
}
