package exporters

import (
	"math"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/joules-energy/joules/collector"
)

// AppendLines appends samples to enc as InfluxDB line protocol, the schema
// of docs/SCHEMA.md: the measurement is the metric name, the labels are tags,
// the one field is "value", the timestamp is the time of reading. NaN and
// infinite values have no line-protocol form and are skipped; it returns how
// many lines were written.
func AppendLines(enc *lineprotocol.Encoder, samples []collector.Sample) int {
	n := 0
	for i := range samples {
		s := &samples[i]
		v, ok := lineprotocol.FloatValue(s.Value)
		if !ok || math.IsNaN(s.Value) {
			continue
		}
		enc.StartLine(s.Name)
		for _, l := range s.Labels {
			if l.Value != "" {
				enc.AddTag(l.Name, l.Value)
			}
		}
		enc.AddField("value", v)
		enc.EndLine(s.Time)
		if err := enc.Err(); err != nil {
			// A name the encoder cannot write: drop the line, keep the rest.
			enc.ClearErr()
			continue
		}
		n++
	}
	return n
}
