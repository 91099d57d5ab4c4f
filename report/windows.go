package report

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/joules-energy/joules/internal/schema"
)

// window is one accounting window of the report's scope: what the
// headline, the range totals, the charts, carbon and cost are made of.
type window struct {
	start      time.Time
	sites      map[string]*siteEnergy // what carbon and cost are computed from
	it         float64                // the hosts' own IT energy
	itCoverage float64
	lowerBound bool
	gpu, cpu   float64 // the hosts' GPUs and CPUs
	pue        *pueWindow
	work       map[string]workAmount // by unit
	meters     map[string]*meterEnergy
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
	rows                   int // sites (no site filter) or halls of that name: coverage is their mean
	category               int
	ok, estimate           bool
	itMeter, reason        string
}

// meterEnergy is the energy of one role's meters in a window: those with
// no hall (site-wide) apart from the rest, so a site that has both is not
// summed twice (as the accounting sums them).
type meterEnergy struct {
	siteWide, all       float64
	siteWideN, allN     int
	siteWideCov, allCov float64
}

func (m *meterEnergy) joules() (float64, float64) {
	if m.siteWideN > 0 {
		return m.siteWide, m.siteWideCov / float64(m.siteWideN)
	}
	return m.all, m.allCov / float64(max(1, m.allN))
}

const pivot = "\n  |> pivot(rowKey: [\"_time\"], columnKey: [\"_field\"], valueColumn: \"_value\")"

// windows reads the windows of the report's scope: the hosts' IT energy,
// their GPUs and CPUs, and for a site or hall its PUE, work and meters.
func (b *builder) windows(r *Report) error {
	scope := r.Scope
	byStart := map[time.Time]*window{}
	at := func(t time.Time) *window {
		w := byStart[t]
		if w == nil {
			w = &window{start: t, work: map[string]workAmount{}, meters: map[string]*meterEnergy{}}
			byStart[t] = w
		}
		return w
	}
	rows, err := b.query(b.flux(schema.Energy, scope, isKind(schema.KindIT), anyField(schema.FieldJoules, schema.FieldCoverage, schema.FieldLowerBound)) + pivot)
	if err != nil {
		return err
	}
	counts := map[time.Time]int{}
	for _, row := range rows {
		w := at(row.Time)
		w.it += num(row.Values[schema.FieldJoules])
		w.site(str(row.Values[schema.TagSite])).it += num(row.Values[schema.FieldJoules])
		w.itCoverage += num(row.Values[schema.FieldCoverage])
		counts[row.Time]++
		if lb, _ := row.Values[schema.FieldLowerBound].(bool); lb {
			w.lowerBound = true
		}
	}
	for t, w := range byStart {
		w.itCoverage /= float64(counts[t]) // several sites (no site filter), or several racks in no hall…
	}
	parts, err := b.query(b.flux(schema.Energy, scope, "("+isKind(schema.KindGPU)+" or "+isKind(schema.KindCPU)+")", isField(schema.FieldJoules)))
	if err != nil {
		return err
	}
	for _, row := range parts {
		w := at(row.Time)
		if str(row.Values[schema.TagKind]) == schema.KindGPU {
			w.gpu += num(row.Values["_value"])
		} else {
			w.cpu += num(row.Values["_value"])
		}
	}
	if scope == "site" || scope == "hall" {
		if err := b.pueWindows(scope, at); err != nil {
			return err
		}
		if err := b.meterWindows(at); err != nil {
			return err
		}
	}
	if err := b.workWindows(scope, at); err != nil {
		return err
	}
	for _, w := range byStart {
		b.windowsRead = append(b.windowsRead, *w)
	}
	sort.Slice(b.windowsRead, func(i, j int) bool { return b.windowsRead[i].start.Before(b.windowsRead[j].start) })
	if len(b.windowsRead) == 0 {
		return fmt.Errorf("no accounting windows at resolution %s for this %s from %s to %s: check the filters (site, hall, rack, host) and the range",
			b.res, scope, b.opt.From.UTC().Format(time.RFC3339), b.opt.To.UTC().Format(time.RFC3339))
	}
	return nil
}

func (b *builder) pueWindows(scope string, at func(time.Time) *window) error {
	rows, err := b.query(b.flux(schema.PUE, scope) + pivot)
	if err != nil {
		return err
	}
	for _, row := range rows {
		w := at(row.Time)
		p := w.pue
		if p == nil {
			p = &pueWindow{ok: true, category: 3}
			w.pue = p
		}
		p.facility += num(row.Values[schema.FieldFacilityJoules])
		p.it += num(row.Values[schema.FieldITJoules])
		w.site(str(row.Values[schema.TagSite])).facility += num(row.Values[schema.FieldFacilityJoules])
		p.coverage = (p.coverage*float64(p.rows) + num(row.Values[schema.FieldCoverage])) / float64(p.rows+1)
		p.rows++
		// several sites: the least precise category, an estimate if any is
		p.category = min(p.category, int(num(row.Values[schema.FieldCategory])))
		if e, _ := row.Values[schema.FieldEstimate].(bool); e {
			p.estimate = true
		}
		p.itMeter = joinMeter(p.itMeter, str(row.Values[schema.FieldITMeter]))
		if !present(row.Values[schema.FieldPUE]) {
			p.ok = false
			p.reason = str(row.Values[schema.FieldReason])
		} else if reason := str(row.Values[schema.FieldReason]); reason != "" && p.reason == "" {
			p.reason = reason
		}
	}
	return nil
}

// meterWindows reads the meters' energy per window, by role.
func (b *builder) meterWindows(at func(time.Time) *window) error {
	rows, err := b.query(b.flux(schema.Energy, schema.ScopeMeter, anyField(schema.FieldJoules, schema.FieldCoverage)) + pivot)
	if err != nil {
		return err
	}
	for _, row := range rows {
		w := at(row.Time)
		role := str(row.Values[schema.TagKind])
		m := w.meters[role]
		if m == nil {
			m = &meterEnergy{}
			w.meters[role] = m
		}
		j, cov := num(row.Values[schema.FieldJoules]), num(row.Values[schema.FieldCoverage])
		m.all += j
		m.allCov += cov
		m.allN++
		if str(row.Values[schema.TagHall]) == "" && str(row.Values[schema.TagRack]) == "" {
			m.siteWide += j
			m.siteWideCov += cov
			m.siteWideN++
		}
	}
	return nil
}

// workAmount is work and the IT energy it was done with.
type workAmount struct{ work, it float64 }

// workWindows reads work and its IT energy per window and unit at the
// report's scope (a rack's work is its hosts').
func (b *builder) workWindows(scope string, at func(time.Time) *window) error {
	if scope == schema.ScopeRack {
		scope = schema.ScopeHost // work is written per host, hall and site
	}
	rows, err := b.query(b.flux(schema.Work, scope, anyField(schema.FieldWork, schema.FieldITJoules)) + pivot)
	if err != nil {
		return err
	}
	for _, row := range rows {
		w := at(row.Time)
		unit := str(row.Values[schema.TagUnit])
		a := w.work[unit]
		a.work += num(row.Values[schema.FieldWork])
		a.it += num(row.Values[schema.FieldITJoules])
		w.work[unit] = a
	}
	return nil
}

// rangePUE is the PUE over the range: energy over energy of the windows
// that had one, and the data gaps the windows show.
func (b *builder) rangePUE(r *Report) {
	expected := int(b.opt.To.Sub(b.opt.From) / b.size)
	var it, coverage float64
	var lowerBound bool
	pue := &r.PUE
	pue.Windows = expected
	pue.Name = pueName(b.opt.From, b.opt.To)
	pue.Category = 3
	reasons := map[string]int{}
	partial := 0
	for _, w := range b.windowsRead {
		it += w.it
		coverage += w.itCoverage
		lowerBound = lowerBound || w.lowerBound
		r.Energy.GPUkWh += w.gpu / JoulesPerKWh
		if w.pue == nil {
			continue
		}
		r.Energy.FacilitykWh += w.pue.facility / JoulesPerKWh
		if !w.pue.ok {
			reasons[w.pue.reason]++
			continue
		}
		pue.WindowsWithPUE++
		pue.ITkWh += w.pue.it / JoulesPerKWh
		pue.FacilitykWh += w.pue.facility / JoulesPerKWh
		pue.Coverage += w.pue.coverage
		pue.Category = min(pue.Category, w.pue.category) // the least precise window's
		pue.Estimate = pue.Estimate || w.pue.estimate
		pue.ITMeter = joinMeter(pue.ITMeter, w.pue.itMeter)
		if w.pue.coverage < 1 {
			partial++
		}
	}
	if pue.WindowsWithPUE == 0 {
		pue.Category = 0
	}
	r.Energy.ITkWh = it / JoulesPerKWh
	r.Energy.LowerBound = lowerBound
	if expected > 0 {
		r.Energy.ITCoverage = coverage / float64(expected)
		pue.Coverage /= float64(expected)
	}
	switch {
	case r.Scope != "site" && r.Scope != "hall":
		pue.Reason = "PUE is defined for a site or a hall; this report is for a " + r.Scope
	case pue.WindowsWithPUE == 0 && len(reasons) > 0:
		pue.Reason = mostCommon(reasons)
	case pue.WindowsWithPUE == 0:
		pue.Reason = "no PUE windows in the range"
	case pue.ITkWh > 0:
		v := pue.FacilitykWh / pue.ITkWh
		pue.Value = &v
	}
	if missing := expected - len(b.windowsRead); missing > 0 {
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
}

func joinMeter(a, b string) string {
	if a == "" || a == b {
		return b
	}
	return "mixed"
}

// pueName is what a PUE over the range may be called: ISO/IEC 30134-2's
// PUE is over twelve months; anything shorter is an interim value.
func pueName(from, to time.Time) string {
	if !from.AddDate(1, 0, 0).After(to) {
		return "Annual PUE"
	}
	return "Interim PUE"
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
