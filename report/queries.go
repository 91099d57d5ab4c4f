package report

import (
	"fmt"

	"github.com/joules-energy/joules/internal/schema"
	"slices"
	"strconv"
	"strings"
	"time"
)

// flux starts a query on the bucket and range with the topology filters
// that apply to the measurement's scope.
func (b *builder) flux(measurement, scope string, extra ...string) string {
	var f strings.Builder
	fmt.Fprintf(&f, "from(bucket: %s)\n  |> range(start: %s, stop: %s)\n  |> filter(fn: (r) => r._measurement == %s and r.resolution == %s and r.scope == %s",
		fluxString(b.opt.Bucket), b.opt.From.UTC().Format(time.RFC3339Nano), b.stop(),
		fluxString(measurement), fluxString(b.res), fluxString(scope))
	for _, t := range []struct{ k, v string }{{"site", b.opt.Site}, {"hall", b.opt.Hall}, {"rack", b.opt.Rack}, {"host", b.opt.Host}} {
		if t.v != "" && covers(scope, t.k) {
			fmt.Fprintf(&f, " and r.%s == %s", t.k, fluxString(t.v))
		}
	}
	for _, e := range extra {
		f.WriteString(" and " + e)
	}
	f.WriteString(")")
	return f.String()
}

// covers says whether points of a scope carry a topology tag.
func covers(scope, tag string) bool {
	order := []string{"site", "hall", "rack", "host", "gpu"}
	s := slices.Index(order, scope)
	if scope == "meter" {
		s = 2
	}
	return slices.Index(order, tag) <= s
}

func (b *builder) query(flux string) ([]Row, error) {
	rows, err := b.q.Query(b.ctx, flux)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	return rows, nil
}

// resolution picks the windows to read: the one asked for, or the finest
// in the range (an hour's for ranges over three days, where it has them).
func (b *builder) resolution() (string, error) {
	if b.opt.Resolution != "" {
		return b.opt.Resolution, nil
	}
	rows, err := b.query(fmt.Sprintf(`from(bucket: %s)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == %s and %s and %s)
  |> keep(columns: ["resolution"])
  |> distinct(column: "resolution")`, fluxString(b.opt.Bucket), b.opt.From.UTC().Format(time.RFC3339Nano), b.stop(),
		fluxString(schema.Energy), isKind(schema.KindIT), isField(schema.FieldJoules)))
	if err != nil {
		return "", err
	}
	var found []time.Duration
	names := map[time.Duration]string{}
	for _, r := range rows {
		name, _ := r.Values["_value"].(string)
		if d, ok := parseResolution(name); ok {
			if _, dup := names[d]; !dup {
				found = append(found, d)
				names[d] = name
			}
		}
	}
	if len(found) == 0 {
		return "", fmt.Errorf("no accounting data in bucket %q from %s to %s: is the aggregator's accounting on, and did its windows close (they are written a grace period after they end)?",
			b.opt.Bucket, b.opt.From.UTC().Format(time.RFC3339), b.opt.To.UTC().Format(time.RFC3339))
	}
	slices.Sort(found)
	// One job's windows are few, and its last hour may not be written yet:
	// a job is read at the accounting's own window, its total the same.
	if b.opt.Job == "" && b.opt.To.Sub(b.opt.From) > 72*time.Hour && slices.Contains(found, time.Hour) {
		return names[time.Hour], nil
	}
	return names[found[0]], nil
}

func parseResolution(s string) (time.Duration, bool) {
	if strings.HasSuffix(s, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		return time.Duration(n) * 24 * time.Hour, err == nil && n > 0
	}
	d, err := time.ParseDuration(s)
	return d, err == nil && d > 0
}

// fluxString quotes a string for Flux: backslashes, quotes and the
// interpolation opener ${ and control characters escaped.
func fluxString(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "${", `\${`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(v) + `"`
}

func num(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	}
	return 0
}

func str(v any) string { s, _ := v.(string); return s }

// present says whether a pivoted field has a value: a window without it
// comes back as a nil in the column, not as a missing key.
func present(v any) bool { return v != nil }

// sumBy sums a field per group of tags; keys are the tags' values joined by NUL.
func (b *builder) sumBy(measurement, scope string, tags []string, filters ...string) (map[string]float64, error) {
	return b.reduceBy("sum", measurement, scope, tags, filters...)
}

func (b *builder) meanBy(measurement, scope string, tags []string, filters ...string) (map[string]float64, error) {
	return b.reduceBy("mean", measurement, scope, tags, filters...)
}

func (b *builder) reduceBy(fn, measurement, scope string, tags []string, filters ...string) (map[string]float64, error) {
	quoted := make([]string, len(tags))
	for i, t := range tags {
		quoted[i] = fluxString(t)
	}
	rows, err := b.query(b.flux(measurement, scope, filters...) + fmt.Sprintf("\n  |> group(columns: [%s])\n  |> %s()", strings.Join(quoted, ", "), fn))
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, row := range rows {
		key := make([]string, len(tags))
		for i, t := range tags {
			key[i] = str(row.Values[t])
		}
		out[strings.Join(key, "\x00")] += num(row.Values["_value"])
	}
	return out, nil
}

// stop is the range's end for Flux: a nanosecond before To, because
// InfluxDB 1.8's Flux range includes its stop, and the window that starts
// at To is not in the report.
func (b *builder) stop() string {
	return b.opt.To.Add(-time.Nanosecond).UTC().Format(time.RFC3339Nano)
}

// isField, anyField and isKind are Flux filters on the schema's names.
func isField(f string) string { return fmt.Sprintf("r._field == %q", f) }

func anyField(fields ...string) string {
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = isField(f)
	}
	return "(" + strings.Join(parts, " or ") + ")"
}

func isKind(k string) string { return fmt.Sprintf("r.kind == %q", k) }
