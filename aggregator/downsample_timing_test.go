package aggregator

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkDownsampleMemoryPerSeries reports the heap the aggregator keeps
// per active series: with downsampling on it is the only per-series state.
func BenchmarkDownsampleMemoryPerSeries(b *testing.B) {
	const series = 100_000
	t0 := time.Unix(1_800_000_000, 0)
	points := make([]Point, series)
	for i := range points {
		points[i] = Point{Measurement: "joules_gpu_power_watts", Tags: []Tag{{"gpu", fmt.Sprint(i % 8)}, {"host", fmt.Sprintf("gpu-%05d", i/8)}, {"site", "dc1"}}, Time: t0}
	}
	var perSeries float64
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		d := NewDownsample(10 * time.Second)
		d.Process(append([]Point(nil), points...))
		runtime.GC()
		runtime.ReadMemStats(&after)
		perSeries = float64(after.HeapAlloc-before.HeapAlloc) / series
		runtime.KeepAlive(d)
	}
	b.ReportMetric(perSeries, "bytes/series")
}
