package aggregator

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// FuzzQuickParse holds the quick pass to the full one: a body the quick
// pass takes as it is must be one the full parse takes whole, line for
// line, every line with its own timestamp, and the points it keeps must be
// the full parse's points of those measurements, values and all.
func FuzzQuickParse(f *testing.F) {
	for _, seed := range []string{
		"k value=1 1\nm f=2i,g=\"s\" 2\n",
		"k,host=a\\ b,gpu=0 value=1.5,s=\"x\\\"y\",i=3i,u=4u,b=true 1800000000000000000\n\n# comment\nm x=1e400 3\n",
		"m,a=1,a=2 value=1 4",
		"m value=1 99999999999999999999999",
		"m value=-.5 5\nm value=1. 6\nm value=1.2.3 7",
		"kilo value=9223372036854775808i 8",
		"m value=1",
	} {
		f.Add([]byte(seed))
	}
	reads := func(m string) bool { return strings.HasPrefix(m, "k") }
	f.Fuzz(func(t *testing.T, body []byte) {
		q, ok := quickParse(slices.Clone(body), lineprotocol.Nanosecond, reads, &arena{names: map[string]string{}})
		if !ok {
			return
		}
		var bad []lineError
		missing := time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)
		full := fullParse(slices.Clone(body), lineprotocol.Nanosecond, 1+strings.Count(string(body), "\n"), missing, &bad, &arena{names: map[string]string{}})
		if len(bad) > 0 {
			t.Fatalf("quick pass took %q as it is; the full parse refuses %v", body, bad)
		}
		if q.lines != len(full) {
			t.Fatalf("quick pass counted %d lines of %q, the full parse %d", q.lines, body, len(full))
		}
		var kept []Point
		for _, p := range full {
			if p.Time.Equal(missing) {
				t.Fatalf("quick pass took %q as it is, but a line has no timestamp", body)
			}
			if q.oldest.After(p.Time) {
				t.Fatalf("oldest %v is after a point at %v", q.oldest, p.Time)
			}
			for i := 1; i < len(p.Tags); i++ {
				if p.Tags[i].Key == p.Tags[i-1].Key {
					t.Fatalf("quick pass took %q as it is, with tag key %q twice (InfluxDB 1.8 refuses it)", body, p.Tags[i].Key)
				}
			}
			if reads(p.Measurement) {
				kept = append(kept, p)
			}
		}
		if len(kept) != len(q.points) {
			t.Fatalf("quick pass kept %d points of %q, want %d", len(q.points), body, len(kept))
		}
		for i := range kept {
			a, b := kept[i], q.points[i]
			if a.Measurement != b.Measurement || !a.Time.Equal(b.Time) || !slices.Equal(a.Tags, b.Tags) || len(a.Fields) != len(b.Fields) {
				t.Fatalf("point %d: quick %+v, full %+v", i, b, a)
			}
			for j := range a.Fields {
				if a.Fields[j].Key != b.Fields[j].Key || a.Fields[j].Value.String() != b.Fields[j].Value.String() {
					t.Fatalf("point %d field %d: quick %v, full %v", i, j, b.Fields[j], a.Fields[j])
				}
			}
		}
	})
}
