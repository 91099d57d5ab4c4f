// Package report builds energy reports from the derived measurements the
// aggregator's accounting writes to InfluxDB (docs/SCHEMA.md): energy by
// hall, rack, host and GPU, PUE, idle GPU energy, work per joule,
// reconciliation, carbon and cost, with the data gaps said out loud. It
// renders them as one self-contained HTML page with SVG charts, Markdown,
// CSV and JSON.
package report

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// JoulesPerKWh converts energy.
const JoulesPerKWh = 3.6e6

// Options choose what a report covers.
type Options struct {
	Bucket                 string
	From, To               time.Time
	Site, Hall, Rack, Host string // filters; empty: all
	// Resolution of the accounting windows to read (1m, 1h, 1d, or the
	// aggregator's window); empty: the finest the range has.
	Resolution string
	TopN       int // rows of the host and GPU tables (10)
	Carbon     Carbon
	Price      Price
	Now        func() time.Time
}

// Carbon is the grid's carbon intensity: a constant, or a series in
// InfluxDB (field value, gCO2e/kWh) read as a step function.
type Carbon struct {
	GramsPerKWh float64
	Measurement string
}

// Price is the energy price: per kWh, or time of use.
type Price struct {
	PerKWh    float64
	TimeOfUse []Tariff
	Currency  string
	Location  *time.Location // for the hours of TimeOfUse; UTC if nil
}

// Tariff is a price from one hour of the day (inclusive) to another
// (exclusive), in Price.Location.
type Tariff struct {
	FromHour, ToHour int
	PerKWh           float64
}

// ParseTimeOfUse reads tariffs like "0-7:0.08,7-19:0.16,19-24:0.11"; they
// must cover the day once.
func ParseTimeOfUse(s string) ([]Tariff, error) {
	var out []Tariff
	covered := make([]bool, 24)
	for _, part := range strings.Split(s, ",") {
		hours, price, ok := strings.Cut(strings.TrimSpace(part), ":")
		from, to, ok2 := strings.Cut(hours, "-")
		if !ok || !ok2 {
			return nil, fmt.Errorf("time-of-use tariff %q: write FROM-TO:PRICE, e.g. 7-19:0.16", part)
		}
		t := Tariff{}
		var err1, err2, err3 error
		t.FromHour, err1 = strconv.Atoi(from)
		t.ToHour, err2 = strconv.Atoi(to)
		t.PerKWh, err3 = strconv.ParseFloat(price, 64)
		if err := errors.Join(err1, err2, err3); err != nil || t.FromHour < 0 || t.ToHour > 24 || t.FromHour >= t.ToHour || t.PerKWh < 0 {
			return nil, fmt.Errorf("time-of-use tariff %q: hours 0-24 with FROM < TO and a price ≥ 0", part)
		}
		for h := t.FromHour; h < t.ToHour; h++ {
			if covered[h] {
				return nil, fmt.Errorf("time-of-use tariffs %q: hour %d is priced twice", s, h)
			}
			covered[h] = true
		}
		out = append(out, t)
	}
	if i := slices.Index(covered, false); i >= 0 {
		return nil, fmt.Errorf("time-of-use tariffs %q: hour %d has no price", s, i)
	}
	return out, nil
}

func (p Price) at(t time.Time) (float64, bool) {
	if len(p.TimeOfUse) == 0 {
		return p.PerKWh, p.PerKWh > 0
	}
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	h := t.In(loc).Hour()
	for _, tr := range p.TimeOfUse {
		if h >= tr.FromHour && h < tr.ToHour {
			return tr.PerKWh, true
		}
	}
	return 0, false
}

// Report is what a report says. JSON keys and CSV columns are stable.
type Report struct {
	Title      string    `json:"title"`
	Generated  time.Time `json:"generated"`
	From       time.Time `json:"from"`
	To         time.Time `json:"to"`
	Resolution string    `json:"resolution"`
	Scope      string    `json:"scope"` // site, hall, rack or host: what the filters select
	Filters    Filters   `json:"filters"`

	Energy         Energy           `json:"energy"`
	PUE            PUE              `json:"pue"`
	Halls          []HallRow        `json:"halls"`
	Racks          []EnergyRow      `json:"racks"`
	Hosts          []EnergyRow      `json:"hosts"`
	HostCount      int              `json:"host_count"`
	GPUs           []GPURow         `json:"gpus"`
	GPUCount       int              `json:"gpu_count"`
	Idle           Idle             `json:"gpu_idle"`
	Work           []WorkRow        `json:"work"`
	Reconciliation []Reconciliation `json:"reconciliation"`
	Carbon         *Amount          `json:"carbon,omitempty"`
	Cost           *Amount          `json:"cost,omitempty"`
	Gaps           []string         `json:"gaps"`
	Series         Series           `json:"series"`
}

// Filters are the topology filters the report was asked for.
type Filters struct {
	Site string `json:"site,omitempty"`
	Hall string `json:"hall,omitempty"`
	Rack string `json:"rack,omitempty"`
	Host string `json:"host,omitempty"`
}

// Energy totals over the range, in kWh.
type Energy struct {
	ITkWh       float64 `json:"it_kwh"`       // measured at the hosts (their best source)
	FacilitykWh float64 `json:"facility_kwh"` // facility_input meters; 0 without
	ITCoverage  float64 `json:"it_coverage"`  // share of expected host-time with data
	LowerBound  bool    `json:"lower_bound"`  // some hosts only as GPUs + CPU
	GPUkWh      float64 `json:"gpu_kwh"`
}

// PUE over the range: facility energy over IT energy of the windows that
// had a PUE, never a mean of ratios.
type PUE struct {
	Value          *float64 `json:"value"`
	Category       int      `json:"category"`
	Coverage       float64  `json:"coverage"`
	Windows        int      `json:"windows"`
	WindowsWithPUE int      `json:"windows_with_pue"`
	ITkWh          float64  `json:"it_kwh"` // at the PUE's boundary (UPS, PDU or IT input)
	FacilitykWh    float64  `json:"facility_kwh"`
	Reason         string   `json:"reason,omitempty"` // why there is none
}

// HallRow is a hall's energy and pPUE.
type HallRow struct {
	Site        string   `json:"site"`
	Hall        string   `json:"hall"`
	ITkWh       float64  `json:"it_kwh"`
	FacilitykWh float64  `json:"facility_kwh"`
	PPUE        *float64 `json:"ppue"`
	Coverage    float64  `json:"coverage"`
}

// EnergyRow is a rack's or host's IT energy.
type EnergyRow struct {
	Site     string  `json:"site"`
	Hall     string  `json:"hall,omitempty"`
	Rack     string  `json:"rack,omitempty"`
	Host     string  `json:"host,omitempty"`
	KWh      float64 `json:"kwh"`
	Share    float64 `json:"share"`
	Coverage float64 `json:"coverage"`
}

// GPURow is a GPU's energy and the part of it drawn while idle.
type GPURow struct {
	Host    string  `json:"host"`
	GPU     string  `json:"gpu"`
	KWh     float64 `json:"kwh"`
	IdleKWh float64 `json:"idle_kwh"`
}

// Idle is GPU energy drawn while the GPUs were idle.
type Idle struct {
	GPUkWh  float64 `json:"gpu_kwh"`
	IdlekWh float64 `json:"idle_kwh"`
	Share   float64 `json:"share"`
}

// WorkRow is useful work per joule of one unit.
type WorkRow struct {
	Unit                string   `json:"unit"`
	Work                float64  `json:"work"`
	ITkWh               float64  `json:"it_kwh"`
	PerJoule            float64  `json:"per_joule"`
	PerFacilityKWh      *float64 `json:"per_facility_kwh"`
	PerFacilityJouleErr string   `json:"per_facility_note,omitempty"`
}

// Reconciliation is what the parts do not explain, summed over the range.
type Reconciliation struct {
	Kind         string  `json:"kind"`
	Where        string  `json:"where"`
	ReferenceKWh float64 `json:"reference_kwh"`
	PartsKWh     float64 `json:"parts_kwh"`
	RemainderKWh float64 `json:"remainder_kwh"`
	Ratio        float64 `json:"remainder_ratio"`
}

// Amount is carbon (kg CO2e) or cost, and what it was computed from.
type Amount struct {
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	Basis string  `json:"basis"`
}

// Series are the charts' data, one point per chart step.
type Series struct {
	Step         string      `json:"step"`
	Power        []PowerPt   `json:"power"`
	PUE          []ValuePt   `json:"pue"`
	WorkPerJoule []ValuePt   `json:"work_per_joule"`
	WorkUnit     string      `json:"work_unit"`
	HostEnergy   []EnergyRow `json:"-"`
}

// PowerPt is mean IT and facility power over a chart step.
type PowerPt struct {
	Time          time.Time `json:"time"`
	ITWatts       float64   `json:"it_watts"`
	FacilityWatts *float64  `json:"facility_watts"`
}

// ValuePt is one value of a series.
type ValuePt struct {
	Time  time.Time `json:"time"`
	Value float64   `json:"value"`
}

// Build queries InfluxDB and computes the report. An empty range (no
// accounting data) is an error that says what was looked for.
func Build(ctx context.Context, q Querier, opt Options) (*Report, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.TopN <= 0 {
		opt.TopN = 10
	}
	if !opt.From.Before(opt.To) {
		return nil, fmt.Errorf("range: --from %s is not before --to %s", opt.From.Format(time.RFC3339), opt.To.Format(time.RFC3339))
	}
	if opt.Bucket == "" {
		return nil, errors.New("no bucket: give --influx.bucket (InfluxDB 1.8: db/rp)")
	}
	b := &builder{q: q, opt: opt, ctx: ctx}
	r := &Report{Generated: opt.Now().UTC(), From: opt.From.UTC(), To: opt.To.UTC(),
		Filters: Filters{Site: opt.Site, Hall: opt.Hall, Rack: opt.Rack, Host: opt.Host}}
	r.Scope = b.scope()
	r.Title = b.title()
	res, err := b.resolution()
	if err != nil {
		return nil, err
	}
	size, ok := parseResolution(res)
	if !ok || size > 24*time.Hour {
		return nil, fmt.Errorf("resolution %q: give the accounting's window (1m, 5m…), 1h or 1d", res)
	}
	if len(opt.Price.TimeOfUse) > 0 && size > time.Hour {
		return nil, fmt.Errorf("time-of-use prices need windows of an hour or less, not %s: add --resolution 1h", res)
	}
	r.Resolution = res
	b.res = res
	for _, step := range []func(*Report) error{b.energyAndPUE, b.halls, b.entities, b.gpus, b.work, b.reconciliation, b.carbonAndCost} {
		if err := step(r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

type builder struct {
	q   Querier
	opt Options
	ctx context.Context
	res string
	// the windows of the report's scope, by start
	windows []window
}

// window is one accounting window of the report's scope.
type window struct {
	start      time.Time
	sites      map[string]*siteEnergy // what carbon and cost are computed from
	it         float64                // hosts' IT energy
	itCoverage float64
	lowerBound bool
	pue        *pueWindow
}

// siteEnergy is one site's energy in a window.
type siteEnergy struct{ it, facility float64 }

func (w *window) site(name string) *siteEnergy {
	if w.sites == nil {
		w.sites = map[string]*siteEnergy{}
	}
	e := w.sites[name]
	if e == nil {
		e = &siteEnergy{}
		w.sites[name] = e
	}
	return e
}

type pueWindow struct {
	facility, it, coverage float64
	category               int
	ok                     bool
	reason                 string
}

func (b *builder) scope() string {
	switch {
	case b.opt.Host != "":
		return "host"
	case b.opt.Rack != "":
		return "rack"
	case b.opt.Hall != "":
		return "hall"
	}
	return "site"
}

func (b *builder) title() string {
	parts := []string{"Energy report"}
	for _, f := range []struct{ k, v string }{{"site", b.opt.Site}, {"hall", b.opt.Hall}, {"rack", b.opt.Rack}, {"host", b.opt.Host}} {
		if f.v != "" {
			parts = append(parts, f.k+" "+f.v)
		}
	}
	return strings.Join(parts, " — ")
}

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
  |> filter(fn: (r) => r._measurement == "joules_energy" and r.kind == "it" and r._field == "joules")
  |> keep(columns: ["resolution"])
  |> distinct(column: "resolution")`, fluxString(b.opt.Bucket), b.opt.From.UTC().Format(time.RFC3339Nano), b.stop()))
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
	if b.opt.To.Sub(b.opt.From) > 72*time.Hour && slices.Contains(found, time.Hour) {
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

// energyAndPUE reads the windows of the report's scope: IT energy at the
// hosts, and for a site or hall the PUE windows.
func (b *builder) energyAndPUE(r *Report) error {
	scope := r.Scope
	rows, err := b.query(b.flux("joules_energy", scope, `r.kind == "it"`, `(r._field == "joules" or r._field == "coverage" or r._field == "lower_bound")`) +
		"\n  |> pivot(rowKey: [\"_time\"], columnKey: [\"_field\"], valueColumn: \"_value\")")
	if err != nil {
		return err
	}
	byStart := map[time.Time]*window{}
	counts := map[time.Time]int{}
	for _, row := range rows {
		w := byStart[row.Time]
		if w == nil {
			w = &window{start: row.Time}
			byStart[row.Time] = w
		}
		w.it += num(row.Values["joules"])
		w.site(str(row.Values["site"])).it += num(row.Values["joules"])
		w.itCoverage += num(row.Values["coverage"])
		counts[row.Time]++
		if lb, _ := row.Values["lower_bound"].(bool); lb {
			w.lowerBound = true
		}
	}
	for t, w := range byStart {
		w.itCoverage /= float64(counts[t]) // several sites (no site filter), or several racks in no hall…
	}
	if scope == "site" || scope == "hall" {
		prows, err := b.query(b.flux("joules_pue", scope) + "\n  |> pivot(rowKey: [\"_time\"], columnKey: [\"_field\"], valueColumn: \"_value\")")
		if err != nil {
			return err
		}
		for _, row := range prows {
			w := byStart[row.Time]
			if w == nil {
				w = &window{start: row.Time}
				byStart[row.Time] = w
			}
			p := w.pue
			if p == nil {
				p = &pueWindow{ok: true}
				w.pue = p
			}
			p.facility += num(row.Values["facility_joules"])
			p.it += num(row.Values["it_joules"])
			w.site(str(row.Values["site"])).facility += num(row.Values["facility_joules"])
			p.coverage = num(row.Values["coverage"])
			p.category = max(p.category, int(num(row.Values["category"])))
			if !present(row.Values["pue"]) {
				p.ok = false
				p.reason = str(row.Values["reason"])
			} else if reason := str(row.Values["reason"]); reason != "" && p.reason == "" {
				p.reason = reason
			}
		}
	}
	for _, w := range byStart {
		b.windows = append(b.windows, *w)
	}
	sort.Slice(b.windows, func(i, j int) bool { return b.windows[i].start.Before(b.windows[j].start) })

	size, _ := parseResolution(b.res)
	expected := int(b.opt.To.Sub(b.opt.From) / size)
	var it, coverage float64
	var lowerBound bool
	pue := &r.PUE
	pue.Windows = expected
	reasons := map[string]int{}
	partial := 0
	for _, w := range b.windows {
		it += w.it
		coverage += w.itCoverage
		lowerBound = lowerBound || w.lowerBound
		if w.pue == nil {
			continue
		}
		r.Energy.FacilitykWh += w.pue.facility / JoulesPerKWh
		if w.pue.ok {
			pue.WindowsWithPUE++
			pue.ITkWh += w.pue.it / JoulesPerKWh
			pue.FacilitykWh += w.pue.facility / JoulesPerKWh
			pue.Coverage += w.pue.coverage
			pue.Category = max(pue.Category, w.pue.category)
			if w.pue.coverage < 1 {
				partial++
			}
		} else {
			reasons[w.pue.reason]++
		}
	}
	r.Energy.ITkWh = it / JoulesPerKWh
	r.Energy.LowerBound = lowerBound
	if expected > 0 {
		r.Energy.ITCoverage = coverage / float64(expected)
		pue.Coverage /= float64(expected)
	}
	switch {
	case scope != "site" && scope != "hall":
		pue.Reason = "PUE is defined for a site or a hall; this report is for a " + scope
	case pue.WindowsWithPUE == 0 && len(reasons) > 0:
		pue.Reason = mostCommon(reasons)
	case pue.WindowsWithPUE == 0:
		pue.Reason = "no PUE windows in the range"
	case pue.ITkWh > 0:
		v := pue.FacilitykWh / pue.ITkWh
		pue.Value = &v
	}
	if len(b.windows) == 0 {
		return fmt.Errorf("no accounting windows at resolution %s for this %s from %s to %s: check the filters (site, hall, rack, host) and the range",
			b.res, scope, b.opt.From.UTC().Format(time.RFC3339), b.opt.To.UTC().Format(time.RFC3339))
	}
	if missing := expected - len(b.windows); missing > 0 {
		r.Gaps = append(r.Gaps, fmt.Sprintf("%d of %d %s windows have no data at all", missing, expected, b.res))
	}
	if r.Energy.ITCoverage < 0.999 {
		r.Gaps = append(r.Gaps, fmt.Sprintf("IT energy covers %.1f %% of the expected host-time: silent hosts make it low", 100*r.Energy.ITCoverage))
	}
	if lowerBound {
		r.Gaps = append(r.Gaps, "some hosts have no BMC energy: their IT energy is GPUs + CPU, a lower bound")
	}
	for _, reason := range slices.Sorted(maps.Keys(reasons)) {
		r.Gaps = append(r.Gaps, fmt.Sprintf("%d windows without PUE: %s", reasons[reason], reason))
	}
	if partial > 0 {
		r.Gaps = append(r.Gaps, fmt.Sprintf("%d windows have a PUE from partial data (coverage below 1)", partial))
	}
	b.series(r)
	return nil
}

func mostCommon(counts map[string]int) string {
	best, n := "", -1
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		if counts[k] > n {
			best, n = k, counts[k]
		}
	}
	return best
}

// series bins the windows into about 200 chart steps.
func (b *builder) series(r *Report) {
	size, _ := parseResolution(b.res)
	span := b.opt.To.Sub(b.opt.From)
	step := size
	for span/step > 200 {
		step *= 2
	}
	if step > size {
		// round the step to a whole number of windows that reads well
		for _, nice := range []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour, 24 * time.Hour} {
			if nice >= step && nice%size == 0 {
				step = nice
				break
			}
		}
	}
	r.Series.Step = step.String()
	type bin struct {
		it, facility, pueIT, pueF float64
		hasFacility               bool
		seconds                   float64
	}
	bins := map[time.Time]*bin{}
	for _, w := range b.windows {
		t := w.start.Truncate(step)
		bn := bins[t]
		if bn == nil {
			bn = &bin{}
			bins[t] = bn
		}
		bn.it += w.it
		bn.seconds += size.Seconds()
		if w.pue != nil {
			bn.facility += w.pue.facility
			bn.hasFacility = bn.hasFacility || w.pue.facility > 0
			if w.pue.ok {
				bn.pueIT += w.pue.it
				bn.pueF += w.pue.facility
			}
		}
	}
	times := make([]time.Time, 0, len(bins))
	for t := range bins {
		times = append(times, t)
	}
	slices.SortFunc(times, func(x, y time.Time) int { return x.Compare(y) })
	for _, t := range times {
		bn := bins[t]
		pt := PowerPt{Time: t, ITWatts: bn.it / bn.seconds}
		if bn.hasFacility {
			f := bn.facility / bn.seconds
			pt.FacilityWatts = &f
		}
		r.Series.Power = append(r.Series.Power, pt)
		if bn.pueIT > 0 {
			r.Series.PUE = append(r.Series.PUE, ValuePt{Time: t, Value: bn.pueF / bn.pueIT})
		}
	}
}

// halls reads each hall's IT energy and its pPUE.
func (b *builder) halls(r *Report) error {
	if r.Scope != "site" && r.Scope != "hall" {
		return nil
	}
	energy, err := b.sumBy("joules_energy", "hall", []string{"site", "hall"}, `r.kind == "it"`, `r._field == "joules"`)
	if err != nil {
		return err
	}
	coverage, err := b.meanBy("joules_energy", "hall", []string{"site", "hall"}, `r.kind == "it"`, `r._field == "coverage"`)
	if err != nil {
		return err
	}
	pue, err := b.query(b.flux("joules_pue", "hall", `(r._field == "facility_joules" or r._field == "it_joules" or r._field == "pue")`) +
		"\n  |> pivot(rowKey: [\"_time\"], columnKey: [\"_field\"], valueColumn: \"_value\")")
	if err != nil {
		return err
	}
	type acc struct{ f, it, fAll float64 }
	pp := map[string]*acc{}
	for _, row := range pue {
		k := str(row.Values["site"]) + "\x00" + str(row.Values["hall"])
		a := pp[k]
		if a == nil {
			a = &acc{}
			pp[k] = a
		}
		a.fAll += num(row.Values["facility_joules"])
		if present(row.Values["pue"]) {
			a.f += num(row.Values["facility_joules"])
			a.it += num(row.Values["it_joules"])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(energy)) {
		site, hall, _ := strings.Cut(k, "\x00")
		row := HallRow{Site: site, Hall: hall, ITkWh: energy[k] / JoulesPerKWh, Coverage: coverage[k]}
		if a := pp[k]; a != nil {
			row.FacilitykWh = a.fAll / JoulesPerKWh
			if a.it > 0 {
				v := a.f / a.it
				row.PPUE = &v
			}
		}
		r.Halls = append(r.Halls, row)
	}
	return nil
}

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

// entities reads IT energy per rack and per host.
func (b *builder) entities(r *Report) error {
	total := r.Energy.ITkWh
	for _, level := range []struct {
		scope string
		tags  []string
		out   *[]EnergyRow
	}{{"rack", []string{"site", "hall", "rack"}, &r.Racks}, {"host", []string{"site", "hall", "rack", "host"}, &r.Hosts}} {
		if level.scope == "rack" && r.Scope == "host" {
			continue
		}
		energy, err := b.sumBy("joules_energy", level.scope, level.tags, `r.kind == "it"`, `r._field == "joules"`)
		if err != nil {
			return err
		}
		coverage, err := b.meanBy("joules_energy", level.scope, level.tags, `r.kind == "it"`, `r._field == "coverage"`)
		if err != nil {
			return err
		}
		var rows []EnergyRow
		for k, j := range energy {
			parts := strings.Split(k, "\x00")
			row := EnergyRow{Site: parts[0], Hall: parts[1], Rack: parts[2], KWh: j / JoulesPerKWh, Coverage: coverage[k]}
			if len(parts) > 3 {
				row.Host = parts[3]
			}
			if total > 0 {
				row.Share = row.KWh / total
			}
			rows = append(rows, row)
		}
		sort.Slice(rows, func(i, j int) bool {
			if rows[i].KWh != rows[j].KWh {
				return rows[i].KWh > rows[j].KWh
			}
			return rows[i].Host+rows[i].Rack < rows[j].Host+rows[j].Rack
		})
		if level.scope == "host" {
			r.HostCount = len(rows)
			r.Series.HostEnergy = rows
			var silent []string
			for _, row := range rows {
				if row.Coverage < 0.999 {
					silent = append(silent, fmt.Sprintf("%s (%.1f %%)", row.Host, 100*row.Coverage))
				}
			}
			if len(silent) > 0 {
				slices.Sort(silent)
				if len(silent) > 10 {
					silent = append(silent[:10], fmt.Sprintf("and %d more", len(silent)-10))
				}
				r.Gaps = append(r.Gaps, "hosts with data gaps (share of the time with data): "+strings.Join(silent, ", "))
			}
			if len(rows) > b.opt.TopN {
				rows = rows[:b.opt.TopN]
			}
		}
		*level.out = rows
	}
	return nil
}

// gpus reads energy and idle energy per GPU.
func (b *builder) gpus(r *Report) error {
	tags := []string{"host", "gpu"}
	energy, err := b.sumBy("joules_energy", "gpu", tags, `r.kind == "gpu"`, `r._field == "joules"`)
	if err != nil {
		return err
	}
	idle, err := b.sumBy("joules_energy", "gpu", tags, `r.kind == "gpu"`, `r._field == "idle_joules"`)
	if err != nil {
		return err
	}
	var rows []GPURow
	for k, j := range energy {
		host, gpu, _ := strings.Cut(k, "\x00")
		rows = append(rows, GPURow{Host: host, GPU: gpu, KWh: j / JoulesPerKWh, IdleKWh: idle[k] / JoulesPerKWh})
		r.Idle.GPUkWh += j / JoulesPerKWh
		r.Idle.IdlekWh += idle[k] / JoulesPerKWh
	}
	if r.Idle.GPUkWh > 0 {
		r.Idle.Share = r.Idle.IdlekWh / r.Idle.GPUkWh
	}
	r.Energy.GPUkWh = r.Idle.GPUkWh
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].KWh != rows[j].KWh {
			return rows[i].KWh > rows[j].KWh
		}
		return rows[i].Host+rows[i].GPU < rows[j].Host+rows[j].GPU
	})
	r.GPUCount = len(rows)
	if len(rows) > b.opt.TopN {
		rows = rows[:b.opt.TopN]
	}
	r.GPUs = rows
	return nil
}

// work reads useful work per unit and its rate per joule over time.
func (b *builder) work(r *Report) error {
	scope := r.Scope
	if scope == "rack" {
		scope = "host" // work is written per host, hall and site
	}
	rows, err := b.query(b.flux("joules_work_efficiency", scope, `(r._field == "work" or r._field == "it_joules")`) +
		"\n  |> pivot(rowKey: [\"_time\"], columnKey: [\"_field\"], valueColumn: \"_value\")")
	if err != nil {
		return err
	}
	type acc struct{ work, it float64 }
	units := map[string]*acc{}
	perTime := map[string]map[time.Time]*acc{}
	for _, row := range rows {
		unit := str(row.Values["unit"])
		a := units[unit]
		if a == nil {
			a = &acc{}
			units[unit] = a
			perTime[unit] = map[time.Time]*acc{}
		}
		a.work += num(row.Values["work"])
		a.it += num(row.Values["it_joules"])
		pt := perTime[unit][row.Time]
		if pt == nil {
			pt = &acc{}
			perTime[unit][row.Time] = pt
		}
		pt.work += num(row.Values["work"])
		pt.it += num(row.Values["it_joules"])
	}
	for _, unit := range slices.Sorted(maps.Keys(units)) {
		a := units[unit]
		row := WorkRow{Unit: unit, Work: a.work, ITkWh: a.it / JoulesPerKWh}
		if a.it > 0 {
			row.PerJoule = a.work / a.it
			if r.PUE.Value != nil {
				v := row.PerJoule / *r.PUE.Value * JoulesPerKWh
				row.PerFacilityKWh = &v
			} else {
				row.PerFacilityJouleErr = "no PUE: " + r.PUE.Reason
			}
		}
		r.Work = append(r.Work, row)
	}
	// chart the unit with the most work, token first
	unit := ""
	if _, ok := units["token"]; ok {
		unit = "token"
	} else if len(units) > 0 {
		unit = slices.Sorted(maps.Keys(units))[0]
	}
	if unit != "" {
		r.Series.WorkUnit = unit
		step, _ := time.ParseDuration(r.Series.Step)
		bins := map[time.Time]*acc{}
		for t, a := range perTime[unit] {
			k := t.Truncate(step)
			bn := bins[k]
			if bn == nil {
				bn = &acc{}
				bins[k] = bn
			}
			bn.work += a.work
			bn.it += a.it
		}
		for t, a := range bins {
			if a.it > 0 {
				r.Series.WorkPerJoule = append(r.Series.WorkPerJoule, ValuePt{Time: t, Value: a.work / a.it})
			}
		}
		slices.SortFunc(r.Series.WorkPerJoule, func(x, y ValuePt) int { return x.Time.Compare(y.Time) })
	}
	return nil
}

// reconciliation sums the remainders over the range.
func (b *builder) reconciliation(r *Report) error {
	for _, kind := range []struct {
		kind, scope string
		tags        []string
	}{{"pdu_vs_bmcs", "rack", []string{"site", "hall", "rack"}}, {"pdu_vs_bmcs", "hall", []string{"site", "hall"}}, {"pdu_vs_bmcs", "site", []string{"site"}},
		{"bmc_vs_components", "host", []string{"site", "hall", "rack", "host"}}} {
		ref, err := b.sumBy("joules_reconciliation", kind.scope, kind.tags, `r.kind == "`+kind.kind+`"`, `r._field == "reference_joules"`)
		if err != nil {
			return err
		}
		parts, err := b.sumBy("joules_reconciliation", kind.scope, kind.tags, `r.kind == "`+kind.kind+`"`, `r._field == "parts_joules"`)
		if err != nil {
			return err
		}
		if len(ref) == 0 {
			continue
		}
		// hosts add up to one line per kind: a line per host is for the JSON
		if kind.scope == "host" {
			var total Reconciliation
			total.Kind, total.Where = kind.kind, fmt.Sprintf("%d hosts with a BMC and GPU or CPU counters", len(ref))
			for k, v := range ref {
				total.ReferenceKWh += v / JoulesPerKWh
				total.PartsKWh += parts[k] / JoulesPerKWh
			}
			r.Reconciliation = append(r.Reconciliation, finishRecon(total))
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(ref)) {
			where := kind.scope + " " + strings.Join(slices.DeleteFunc(strings.Split(k, "\x00"), func(s string) bool { return s == "" }), "/")
			r.Reconciliation = append(r.Reconciliation, finishRecon(Reconciliation{Kind: kind.kind, Where: where,
				ReferenceKWh: ref[k] / JoulesPerKWh, PartsKWh: parts[k] / JoulesPerKWh}))
		}
	}
	return nil
}

func finishRecon(rc Reconciliation) Reconciliation {
	rc.RemainderKWh = rc.ReferenceKWh - rc.PartsKWh
	if rc.ReferenceKWh > 0 {
		rc.Ratio = rc.RemainderKWh / rc.ReferenceKWh
	}
	return rc
}

// carbonAndCost prices each window's energy: facility energy where the
// window has it (the grid's view), else IT energy, and says which.
func (b *builder) carbonAndCost(r *Report) error {
	var intensity []ValuePt
	if m := b.opt.Carbon.Measurement; m != "" {
		rows, err := b.query(fmt.Sprintf(`from(bucket: %s)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == %s and r._field == "value")
  |> group()
  |> sort(columns: ["_time"])`, fluxString(b.opt.Bucket), b.opt.From.Add(-24*time.Hour).UTC().Format(time.RFC3339Nano), b.stop(), fluxString(m)))
		if err != nil {
			return err
		}
		for _, row := range rows {
			intensity = append(intensity, ValuePt{Time: row.Time, Value: num(row.Values["_value"])})
		}
		if len(intensity) == 0 {
			r.Gaps = append(r.Gaps, fmt.Sprintf("no carbon intensity in measurement %q for the range: carbon not computed", m))
		}
	}
	carbonOn := b.opt.Carbon.GramsPerKWh > 0 || len(intensity) > 0
	priceOn := b.opt.Price.PerKWh > 0 || len(b.opt.Price.TimeOfUse) > 0
	if !carbonOn && !priceOn {
		return nil
	}
	var grams, cost float64
	facilityWindows, itWindows, before := 0, 0, 0
	for _, w := range b.windows {
		// per site: a site's facility energy where it has a reading, else
		// its IT energy (a site without a facility meter is not priced at
		// another site's)
		kwh := 0.0
		for _, e := range w.sites {
			if e.facility > 0 {
				kwh += e.facility / JoulesPerKWh
				facilityWindows++
			} else {
				kwh += e.it / JoulesPerKWh
				itWindows++
			}
		}
		if carbonOn {
			g := b.opt.Carbon.GramsPerKWh
			if len(intensity) > 0 {
				i := sort.Search(len(intensity), func(i int) bool { return intensity[i].Time.After(w.start) }) - 1
				if i < 0 {
					i = 0
					before++
				}
				g = intensity[i].Value
			}
			grams += kwh * g
		}
		if priceOn {
			p, _ := b.opt.Price.at(w.start)
			cost += kwh * p
		}
	}
	basis := "facility energy"
	switch {
	case facilityWindows == 0:
		basis = "IT energy (no facility meter: the grid supplied more)"
	case itWindows > 0:
		basis = fmt.Sprintf("facility energy, IT energy for %d site-windows without a facility reading", itWindows)
	}
	if carbonOn {
		src := fmt.Sprintf("%g gCO2e/kWh", b.opt.Carbon.GramsPerKWh)
		if len(intensity) > 0 {
			src = "grid intensity series " + strconv.Quote(b.opt.Carbon.Measurement)
		}
		r.Carbon = &Amount{Value: grams / 1000, Unit: "kg CO2e", Basis: basis + "; " + src}
		if before > 0 {
			r.Gaps = append(r.Gaps, fmt.Sprintf("%d windows precede the first carbon intensity value: its first value is used", before))
		}
	}
	if priceOn {
		cur := b.opt.Price.Currency
		if cur == "" {
			cur = "currency units"
		}
		src := fmt.Sprintf("%g per kWh", b.opt.Price.PerKWh)
		if len(b.opt.Price.TimeOfUse) > 0 {
			src = "time-of-use tariff"
		}
		r.Cost = &Amount{Value: math.Round(cost*100) / 100, Unit: cur, Basis: basis + "; " + src}
	}
	return nil
}

// stop is the range's end for Flux: a nanosecond before To, because
// InfluxDB 1.8's Flux range includes its stop, and the window that starts
// at To is not in the report.
func (b *builder) stop() string {
	return b.opt.To.Add(-time.Nanosecond).UTC().Format(time.RFC3339Nano)
}
