package nvml

import (
	"context"
	"testing"
	"time"
)

// BenchmarkCollect8GPUs is one full pass over a simulated 8-GPU server:
// every family, GPM included. The mocks answer at once, so this is the
// agent's own cost per pass, not the driver's.
func BenchmarkCollect8GPUs(b *testing.B) {
	clock := newClock()
	srv := simulate(simModels["dgxh200"], LoadModel{Start: clock.Now(), Seed: 42, Now: clock.Now})
	src := New(srv, Options{Simulated: true, Processes: true, now: clock.Now})
	defer src.Close()
	var n int
	b.ReportAllocs()
	for b.Loop() {
		clock.Advance(time.Second)
		samples, err := src.Collect(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		n = len(samples)
	}
	b.ReportMetric(float64(n), "samples/op")
}
