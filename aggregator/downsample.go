package aggregator

import (
	"strings"
	"sync"
	"time"
)

// Downsample keeps, of each series (measurement and tags), the first point
// of every interval and drops the rest: for large fleets whose raw points
// InfluxDB cannot store. Counters keep their meaning (the kept values are
// still the running totals); gauges are sampled. Memory is one timestamp per
// active series.
type Downsample struct {
	interval time.Duration
	mu       sync.Mutex
	last     map[string]time.Time
}

// NewDownsample returns the processor; interval must be positive.
func NewDownsample(interval time.Duration) *Downsample {
	return &Downsample{interval: interval, last: map[string]time.Time{}}
}

// Process implements Processor.
func (d *Downsample) Process(points []Point) []Point {
	d.mu.Lock()
	defer d.mu.Unlock()
	kept := points[:0]
	var key strings.Builder
	for _, p := range points {
		key.Reset()
		key.WriteString(p.Measurement)
		for _, t := range p.Tags {
			key.WriteByte(0)
			key.WriteString(t.Key)
			key.WriteByte(0)
			key.WriteString(t.Value)
		}
		k := key.String()
		window := p.Time.Truncate(d.interval)
		if last, ok := d.last[k]; ok && !window.After(last) {
			continue
		}
		d.last[k] = window
		kept = append(kept, p)
	}
	return kept
}
