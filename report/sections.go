package report

import (
	"fmt"

	"github.com/joules-energy/joules/internal/schema"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// halls reads each hall's IT energy and its pPUE.
func (b *builder) halls(r *Report) error {
	if r.Scope != "site" && r.Scope != "hall" {
		return nil
	}
	energy, err := b.sumBy(schema.Energy, schema.ScopeHall, []string{schema.TagSite, schema.TagHall}, isKind(schema.KindIT), isField(schema.FieldJoules))
	if err != nil {
		return err
	}
	coverage, err := b.meanBy(schema.Energy, schema.ScopeHall, []string{schema.TagSite, schema.TagHall}, isKind(schema.KindIT), isField(schema.FieldCoverage))
	if err != nil {
		return err
	}
	pue, err := b.query(b.flux(schema.PUE, schema.ScopeHall, anyField(schema.FieldFacilityJoules, schema.FieldITJoules, schema.FieldPUE)) +
		pivot)
	if err != nil {
		return err
	}
	type acc struct{ f, it, fAll float64 }
	pp := map[string]*acc{}
	for _, row := range pue {
		k := str(row.Values[schema.TagSite]) + "\x00" + str(row.Values[schema.TagHall])
		a := pp[k]
		if a == nil {
			a = &acc{}
			pp[k] = a
		}
		a.fAll += num(row.Values[schema.FieldFacilityJoules])
		if present(row.Values[schema.FieldPUE]) {
			a.f += num(row.Values[schema.FieldFacilityJoules])
			a.it += num(row.Values[schema.FieldITJoules])
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
		energy, err := b.sumBy(schema.Energy, level.scope, level.tags, isKind(schema.KindIT), isField(schema.FieldJoules))
		if err != nil {
			return err
		}
		coverage, err := b.meanBy(schema.Energy, level.scope, level.tags, isKind(schema.KindIT), isField(schema.FieldCoverage))
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
	energy, err := b.sumBy(schema.Energy, "gpu", tags, isKind(schema.KindGPU), isField(schema.FieldJoules))
	if err != nil {
		return err
	}
	idle, err := b.sumBy(schema.Energy, "gpu", tags, isKind(schema.KindGPU), isField(schema.FieldIdleJoules))
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

// work sums useful work per unit over the windows, and charts its rate
// per joule over time.
func (b *builder) work(r *Report) error {
	units := map[string]*workAmount{}
	for _, w := range b.windowsRead {
		for unit, v := range w.work {
			a := units[unit]
			if a == nil {
				a = &workAmount{}
				units[unit] = a
			}
			a.work += v.work
			a.it += v.it
		}
	}
	for _, unit := range slices.Sorted(maps.Keys(units)) {
		a := units[unit]
		row := WorkRow{Unit: unit, Work: a.work, ITkWh: a.it / JoulesPerKWh}
		if a.it > 0 {
			row.PerJoule = a.work / a.it
			// per facility kWh as the headline has it: its work over its
			// facility energy, the same windows
			for _, hw := range r.Headline.Work {
				if hw.Unit == unit && hw.PerFacilityJoule != nil {
					v := *hw.PerFacilityJoule * JoulesPerKWh
					row.PerFacilityKWh = &v
				}
			}
			if row.PerFacilityKWh == nil {
				row.PerFacilityJouleErr = "no facility energy: " + r.PUE.Reason
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
		bins := map[time.Time]*workAmount{}
		for _, w := range b.windowsRead {
			v, ok := w.work[unit]
			if !ok {
				continue
			}
			k := w.start.Truncate(step)
			bn := bins[k]
			if bn == nil {
				bn = &workAmount{}
				bins[k] = bn
			}
			bn.work += v.work
			bn.it += v.it
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
	}{
		{schema.KindPDUVsBMCs, schema.ScopeRack, []string{schema.TagSite, schema.TagHall, schema.TagRack}},
		{schema.KindPDUVsBMCs, schema.ScopeHall, []string{schema.TagSite, schema.TagHall}},
		{schema.KindPDUVsBMCs, schema.ScopeSite, []string{schema.TagSite}},
		{schema.KindBMCVsComponents, schema.ScopeHost, []string{schema.TagSite, schema.TagHall, schema.TagRack, schema.TagHost}},
	} {
		ref, err := b.sumBy(schema.Reconciliation, kind.scope, kind.tags, isKind(kind.kind), isField(schema.FieldReferenceJoules))
		if err != nil {
			return err
		}
		parts, err := b.sumBy(schema.Reconciliation, kind.scope, kind.tags, isKind(kind.kind), isField(schema.FieldPartsJoules))
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
