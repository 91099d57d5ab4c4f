package accounting

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/internal/schema"
	"github.com/joules-energy/joules/internal/testenv"
)

// decodeLines reads line protocol whose times are seconds after base. A
// line it cannot read is skipped; the first such error is returned.
func decodeLines(body []byte, base time.Time) ([]aggregator.Point, error) {
	dec := lineprotocol.NewDecoderWithBytes(body)
	var points []aggregator.Point
	var first error
	fail := func(err error) {
		if first == nil {
			first = err
		}
	}
lines:
	for dec.Next() {
		m, err := dec.Measurement()
		if err != nil {
			fail(err)
			continue
		}
		p := aggregator.Point{Measurement: string(m)}
		for {
			k, v, err := dec.NextTag()
			if err != nil {
				fail(err)
				continue lines
			}
			if k == nil {
				break
			}
			p.Tags = append(p.Tags, aggregator.Tag{Key: string(k), Value: string(v)})
		}
		for {
			k, v, err := dec.NextField()
			if err != nil {
				fail(err)
				continue lines
			}
			if k == nil {
				break
			}
			p.Fields = append(p.Fields, aggregator.Field{Key: string(k), Value: v})
		}
		sec, err := dec.Time(lineprotocol.Second, time.Unix(0, 0))
		if err != nil {
			fail(err)
			continue
		}
		p.Time = base.Add(time.Duration(sec.Unix()) * time.Second)
		points = append(points, p)
	}
	return points, first
}

// parseLines decodes a worked example's lines (times in seconds since the
// Unix epoch), failing the test on a bad one.
func parseLines(t *testing.T, text string) []aggregator.Point {
	t.Helper()
	points, err := decodeLines([]byte(text), time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	return points
}

// TestWorkedExamples runs every worked example of docs/ACCOUNTING.md.
func TestWorkedExamples(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "docs", "ACCOUNTING.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)\n### ([^\n]+).*?```input\n(.*?)```.*?```expect\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) < 7 {
		t.Fatalf("found %d worked examples in docs/ACCOUNTING.md, want at least 7", len(blocks))
	}
	for _, b := range blocks {
		t.Run(string(b[1]), func(t *testing.T) {
			input := parseLines(t, string(b[2]))
			a, c := newTestAccountant(t, Config{})
			end := slices.MaxFunc(input, func(x, y aggregator.Point) int { return x.Time.Compare(y.Time) }).Time
			c.t = end
			a.Process(input)
			c.t = end.Add(a.cfg.Window + a.cfg.Grace)
			out := a.Tick(c.t)
			for _, want := range parseLines(t, string(b[3])) {
				var got *aggregator.Point
				for i := range out {
					if out[i].Measurement == want.Measurement && out[i].Time.Equal(want.Time) && slices.Equal(out[i].Tags, want.Tags) {
						got = &out[i]
					}
				}
				if got == nil {
					t.Errorf("no point %s at %d", describe(&want), want.Time.Unix())
					continue
				}
				for _, wf := range want.Fields {
					gv, ok := field(got, wf.Key)
					switch {
					case !ok:
						t.Errorf("%s: no field %s", describe(got), wf.Key)
					case wf.Value.Kind() == lineprotocol.Float && gv.Kind() == lineprotocol.Float:
						if !closeEqual(gv.FloatV(), wf.Value.FloatV(), 1e-9) {
							t.Errorf("%s: %s = %v, want %v", want.Measurement, wf.Key, gv.FloatV(), wf.Value.FloatV())
						}
					case !gv.Equal(wf.Value):
						t.Errorf("%s: %s = %v, want %v", want.Measurement, wf.Key, gv.Interface(), wf.Value.Interface())
					}
				}
			}
		})
	}
}

func TestAccountingMetricsAndMeasurementsAreDocumented(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	files = slices.DeleteFunc(files, func(f string) bool { return strings.HasSuffix(f, "_test.go") })
	testenv.AssertDocumented(t, regexp.MustCompile(`"(joules_(?:pue|accounted|work_per|accounting)_[a-z_]+[a-z])"`), files, 15)
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "docs", "SCHEMA.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{schema.Energy, schema.PUE, schema.Work, schema.Activity, schema.Reconciliation} {
		if !bytes.Contains(doc, []byte("`"+m+"`")) {
			t.Errorf("derived measurement %s is not in docs/SCHEMA.md", m)
		}
	}
}
