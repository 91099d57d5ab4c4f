package report

import (
	"context"
	"strings"
	"testing"
	"time"
)

// cannedQuerier answers each query with the rows of the first key its text
// contains: the shape of InfluxDB's answers after pivot, nil cells included.
type cannedQuerier map[string][]Row

func (c cannedQuerier) Query(_ context.Context, flux string) ([]Row, error) {
	for key, rows := range c {
		if strings.Contains(flux, key) {
			return rows, nil
		}
	}
	return nil, nil
}

func TestWindowWithoutPUEIsNotCounted(t *testing.T) {
	start := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	q := cannedQuerier{
		`distinct(column: "resolution")`: {{Values: map[string]any{"_value": "1m"}}},
		`"joules_pue" and r.resolution == "1m" and r.scope == "site"`: {
			{Time: start, Values: map[string]any{"site": "s1", "facility_joules": 90000.0, "it_joules": 60000.0, "pue": 1.5, "coverage": 1.0, "category": int64(3), "reason": ""}},
			{Time: start.Add(time.Minute), Values: map[string]any{"site": "s1", "facility_joules": 0.0, "it_joules": 60000.0, "pue": nil, "coverage": 0.0, "category": int64(3),
				"reason": "the facility_input meters of site s1 sent no data in this window"}},
		},
		`"joules_energy" and r.resolution == "1m" and r.scope == "site"`: {
			{Time: start, Values: map[string]any{"site": "s1", "joules": 60000.0, "coverage": 1.0, "lower_bound": false}},
			{Time: start.Add(time.Minute), Values: map[string]any{"site": "s1", "joules": 60000.0, "coverage": 1.0, "lower_bound": false}},
		},
	}
	r, err := Build(context.Background(), q, Options{Bucket: "b", From: start, To: start.Add(2 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if r.PUE.Value == nil || *r.PUE.Value != 1.5 || r.PUE.WindowsWithPUE != 1 {
		t.Errorf("PUE %v over %d windows; want 1.5 over the one window that had it", r.PUE.Value, r.PUE.WindowsWithPUE)
	}
	if !strings.Contains(strings.Join(r.Gaps, "\n"), "1 windows without PUE: the facility_input meters of site s1 sent no data") {
		t.Errorf("gaps do not say why a window has no PUE: %q", r.Gaps)
	}
}

func TestBuildRefusesWhatItCannotDo(t *testing.T) {
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	tou, _ := ParseTimeOfUse("0-12:0.1,12-24:0.2")
	for _, tc := range []struct {
		opt  Options
		want string
	}{
		{Options{Bucket: "b", From: start, To: start.Add(time.Hour), Resolution: "1w"}, `resolution "1w"`},
		{Options{Bucket: "b", From: start, To: start.Add(48 * time.Hour), Resolution: "1d", Price: Price{TimeOfUse: tou}}, "time-of-use prices need windows of an hour or less"},
		{Options{Bucket: "b", From: start, To: start}, "is not before"},
		{Options{From: start, To: start.Add(time.Hour)}, "no bucket"},
	} {
		if _, err := Build(context.Background(), cannedQuerier{}, tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.opt, err, tc.want)
		}
	}
}

func TestFluxStringEscapes(t *testing.T) {
	if got, want := fluxString("a\"b\\c${x}\n"), `"a\"b\\c\${x}\n"`; got != want {
		t.Errorf("fluxString = %s, want %s", got, want)
	}
}

func TestParseTimeOfUse(t *testing.T) {
	if _, err := ParseTimeOfUse("0-7:0.08,7-19:0.16,19-24:0.11"); err != nil {
		t.Error(err)
	}
	for bad, want := range map[string]string{"0-7:0.1": "hour 7 has no price", "0-12:0.1,11-24:0.2": "hour 11 is priced twice", "0-24:x": "FROM < TO", "7:0.1": "write FROM-TO:PRICE"} {
		if _, err := ParseTimeOfUse(bad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", bad, err, want)
		}
	}
}

// TestTimeTicksSaySomething: over any range the time axis's labels all
// differ, there are two to seven of them, and the date shows where it
// changes.
func TestTimeTicksSaySomething(t *testing.T) {
	from := time.Date(2026, 3, 14, 23, 50, 0, 0, time.UTC)
	for _, span := range []time.Duration{90 * time.Second, 5 * time.Minute, 30 * time.Minute, 3 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour} {
		ticks := timeTicks{}.Ticks(unix(from), unix(from.Add(span)))
		seen := map[string]bool{}
		for _, tk := range ticks {
			if seen[tk.Label] {
				t.Errorf("span %s: label %q twice in %v", span, tk.Label, ticks)
			}
			seen[tk.Label] = true
		}
		if len(ticks) < 2 || len(ticks) > 7 {
			t.Errorf("span %s: %d ticks %v", span, len(ticks), ticks)
		}
	}
	// 23:50 to 00:20: the date of the new day is on the first tick after midnight.
	ticks := timeTicks{}.Ticks(unix(from), unix(from.Add(30*time.Minute)))
	var dated []string
	for _, tk := range ticks {
		if strings.Contains(tk.Label, "\n") {
			dated = append(dated, tk.Label)
		}
	}
	if len(dated) != 2 || dated[0] != "23:50\nMar 14" || dated[1] != "00:00\nMar 15" {
		t.Errorf("dated ticks %q, want the first and the first of the new day", dated)
	}
}

func TestValueTicksAreRound(t *testing.T) {
	for _, c := range []struct {
		lo, hi float64
		want   string
	}{
		{0, 25.6, "0 5 10 15 20 25"},
		{1, 1.42, "1.0 1.1 1.2 1.3 1.4"},
		{0, 0.148, "0.000 0.025 0.050 0.075 0.100 0.125"},
		{0, 3.1, "0 1 2 3"},
	} {
		var got []string
		for _, tk := range (valueTicks{}).Ticks(c.lo, c.hi) {
			got = append(got, tk.Label)
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%v–%v: %v, want %s", c.lo, c.hi, got, c.want)
		}
	}
}

// Two sites in one report (no site filter): a window's PUE coverage is the
// mean of theirs, not the last one's.
func TestPUECoverageOfSeveralSitesIsTheirMean(t *testing.T) {
	start := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	q := cannedQuerier{
		`distinct(column: "resolution")`: {{Values: map[string]any{"_value": "1m"}}},
		`"joules_pue" and r.resolution == "1m" and r.scope == "site"`: {
			{Time: start, Values: map[string]any{"site": "s1", "facility_joules": 90000.0, "it_joules": 60000.0, "pue": 1.5, "coverage": 0.5, "category": int64(3), "reason": "partial"}},
			{Time: start, Values: map[string]any{"site": "s2", "facility_joules": 90000.0, "it_joules": 60000.0, "pue": 1.5, "coverage": 1.0, "category": int64(3), "reason": ""}},
		},
		`"joules_energy" and r.resolution == "1m" and r.scope == "site"`: {
			{Time: start, Values: map[string]any{"site": "s1", "joules": 60000.0, "coverage": 0.5, "lower_bound": false}},
			{Time: start, Values: map[string]any{"site": "s2", "joules": 60000.0, "coverage": 1.0, "lower_bound": false}},
		},
	}
	r, err := Build(context.Background(), q, Options{Bucket: "b", From: start, To: start.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if r.PUE.Coverage != 0.75 || r.Headline.Coverage != 0.75 {
		t.Errorf("PUE coverage %v, headline %v; want 0.75 for sites at 0.5 and 1", r.PUE.Coverage, r.Headline.Coverage)
	}
}
