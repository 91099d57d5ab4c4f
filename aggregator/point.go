// Package aggregator is the site aggregator: an ingest server speaking the
// InfluxDB v2 write API, processors between ingest and output (where energy
// accounting plugs in), and a durable output to InfluxDB.
package aggregator

import (
	"fmt"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// Point is one parsed line.
type Point struct {
	Measurement string
	Tags        []Tag // sorted by key, as line protocol requires
	Fields      []Field
	Time        time.Time
}

// Tag is one tag of a point.
type Tag struct{ Key, Value string }

// Field is one field of a point.
type Field struct {
	Key   string
	Value lineprotocol.Value
}

// Processor sees every accepted point between ingest and output and may add
// derived points (energy per window, PUE, performance per watt). Points it
// returns replace the input: a pass-through processor returns its input.
// Process is called from many ingest requests at once. The points, their
// tags, fields and strings lie in the request's buffers, which are reused
// once it is answered: a processor copies what it keeps.
type Processor interface {
	Process(points []Point) []Point
}

// Selective is a Processor that reads field values of some measurements
// only, says which, and returns its input unchanged. Points of the other
// measurements may reach it with their values left unparsed (zero).
type Selective interface {
	Processor
	ReadsValues(measurement string) bool
}

// encode appends points to enc at nanosecond precision and returns how many
// it wrote, and the first error of those it could not (a processor's point
// with unsorted tags, a value out of range).
func encode(enc *lineprotocol.Encoder, points []Point) (int, error) {
	n := 0
	var first error
	for i := range points {
		p := &points[i]
		enc.StartLine(p.Measurement)
		for _, t := range p.Tags {
			enc.AddTag(t.Key, t.Value)
		}
		for _, f := range p.Fields {
			enc.AddField(f.Key, f.Value)
		}
		enc.EndLine(p.Time)
		if err := enc.Err(); err != nil {
			if first == nil {
				first = fmt.Errorf("point %q: %w", p.Measurement, err)
			}
			enc.ClearErr()
			continue
		}
		n++
	}
	return n, first
}
