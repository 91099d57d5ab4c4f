package report

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/joules-energy/joules/internal/schema"
)

// Workloads is energy per workload, or per team or model (a workload
// label), over the range: the rows and the rest add up, with the energy no
// workload had, to the hosts' IT energy of the same windows.
type Workloads struct {
	By           string        `json:"by"` // workload, or a label's name
	Job          string        `json:"job,omitempty"`
	Rows         []WorkloadRow `json:"rows"`           // the top N by IT energy
	Rest         *WorkloadRow  `json:"rest,omitempty"` // the others, summed
	Unattributed *WorkloadRow  `json:"unattributed,omitempty"`
	ITkWh        float64       `json:"it_kwh"` // rows + rest + unattributed
	Rules        []string      `json:"rules"`  // how the hosts' energy besides GPUs was shared
	Basis        string        `json:"basis"`  // what cost and carbon are of
}

// WorkloadRow is one workload (or team, or model) over the range.
type WorkloadRow struct {
	Site         string    `json:"site"`
	Name         string    `json:"name"`
	Kind         string    `json:"kind,omitempty"` // slurm_job, k8s_pod, systemd_unit; by workload only
	Namespace    string    `json:"namespace,omitempty"`
	Owner        string    `json:"owner,omitempty"` // kind/name of a pod's controller
	Workloads    int       `json:"workloads"`       // how many it sums
	ITkWh        float64   `json:"it_kwh"`
	GPUkWh       float64   `json:"gpu_kwh"`
	HostSharekWh float64   `json:"host_share_kwh"`
	FacilitykWh  *float64  `json:"facility_kwh"` // IT × the site's interim PUE, where there was one
	Share        float64   `json:"share"`        // of ITkWh of the section
	Cost         *float64  `json:"cost,omitempty"`
	CarbonKg     *float64  `json:"carbon_kg,omitempty"`
	Tokens       *float64  `json:"tokens,omitempty"`           // by model: what its servers generated
	TokensPerJ   *float64  `json:"tokens_per_joule,omitempty"` // per IT joule
	Hosts        int       `json:"hosts"`                      // the most it ran on in one window
	Coverage     float64   `json:"coverage"`                   // its hosts' coverage, energy-weighted
	First        time.Time `json:"first"`                      // its first window's start
	Last         time.Time `json:"last"`                       // its last window's start
	Windows      int       `json:"windows"`

	covJ        float64
	cost, grams float64
	members     map[string]bool
}

// WorkloadEnergy reads the workload section alone: `joules job-energy`
// and scripts that need one job's or team's energy, not a whole report.
func WorkloadEnergy(ctx context.Context, q Querier, opt Options) (*Workloads, error) {
	if opt.TopN <= 0 {
		opt.TopN = 10
	}
	if opt.Bucket == "" {
		return nil, errors.New("no bucket: give --influx.bucket (InfluxDB 1.8: db/rp)")
	}
	b := &builder{q: q, opt: opt, ctx: ctx}
	res, err := b.resolution()
	if err != nil {
		return nil, err
	}
	b.res = res
	w, err := b.workloads()
	if err != nil {
		return nil, err
	}
	if w == nil {
		what := "workload energy"
		if opt.Job != "" {
			what = "Slurm job " + opt.Job
		}
		return nil, fmt.Errorf("no %s in bucket %q from %s to %s at resolution %s: does the agent name its GPUs' workloads (joules_gpu_workload_share_ratio), and did the job run then?",
			what, opt.Bucket, opt.From.UTC().Format(time.RFC3339), opt.To.UTC().Format(time.RFC3339), res)
	}
	return w, nil
}

// workloadSection adds the workload section to the report, where the
// accounting wrote workload energy.
func (b *builder) workloadSection(r *Report) error {
	if b.opt.Hall != "" || b.opt.Rack != "" || b.opt.Host != "" {
		r.Gaps = append(r.Gaps, "workloads are accounted per site: run the report without --hall, --rack and --host for their energy")
		return nil
	}
	w, err := b.workloads()
	if err != nil || w == nil {
		return err
	}
	r.Workloads = w
	if b.opt.Job != "" && len(w.Rows) == 0 {
		r.Gaps = append(r.Gaps, fmt.Sprintf("no energy of Slurm job %s in the range", b.opt.Job))
	}
	return nil
}

// workloads reads joules_workload_energy and groups it; nil when there is
// none.
func (b *builder) workloads() (*Workloads, error) {
	by := b.opt.By
	if by == "" {
		by = "workload"
	}
	var filters []string
	if b.opt.Job != "" {
		filters = append(filters, fmt.Sprintf("r.%s == %s and r.%s == %s", schema.TagWorkloadKind, fluxString(schema.WorkloadSlurmJob), schema.TagWorkload, fluxString(b.opt.Job)))
		by = "workload"
	}
	rows, err := b.query(b.flux(schema.Workload, schema.ScopeSite, filters...) + pivot)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, nil
	}
	out := &Workloads{By: by, Job: b.opt.Job}
	groups := map[string]*WorkloadRow{}
	rules := map[string]bool{}
	basisFacility, basisIT := 0, 0
	for _, row := range rows {
		v := row.Values
		kind, id, site := str(v[schema.TagWorkloadKind]), str(v[schema.TagWorkload]), str(v[schema.TagSite])
		key, name := "", ""
		switch {
		case kind == schema.WorkloadUnattributed:
			key = "\x00unattributed"
		case by == "workload":
			// A job id or pod name is a site's own: two clusters' job 42
			// are two jobs.
			name = id
			if h := str(v[schema.TagHost]); h != "" {
				name = h + "/" + id // a unit is one per host
			}
			key = site + "\x00" + kind + "\x00" + name
		default:
			name = str(v[schema.LabelPrefix+by])
			if name == "" {
				name = "(no " + by + ")"
			}
			key = "label\x00" + name
		}
		g := groups[key]
		if g == nil {
			g = &WorkloadRow{Name: name, members: map[string]bool{}}
			if by == "workload" && kind != schema.WorkloadUnattributed {
				g.Site = site
			}
			if by == "workload" && kind != schema.WorkloadUnattributed {
				g.Kind, g.Namespace = kind, str(v[schema.TagNamespace])
				if o := str(v[schema.TagOwner]); o != "" {
					g.Owner = str(v[schema.TagOwnerKind]) + "/" + o
				}
			}
			groups[key] = g
		}
		it := num(v[schema.FieldJoules])
		g.ITkWh += it / JoulesPerKWh
		g.GPUkWh += num(v[schema.FieldGPUJoules]) / JoulesPerKWh
		g.HostSharekWh += num(v[schema.FieldHostShareJoules]) / JoulesPerKWh
		g.covJ += num(v[schema.FieldCoverage]) * it
		g.Hosts = max(g.Hosts, int(num(v[schema.FieldHosts])))
		g.members[site+"\x00"+kind+"\x00"+id] = true
		g.Windows++
		if g.First.IsZero() || row.Time.Before(g.First) {
			g.First = row.Time
		}
		if row.Time.After(g.Last) {
			g.Last = row.Time
		}
		basis := it
		if present(v[schema.FieldFacilityJoules]) {
			f := num(v[schema.FieldFacilityJoules])
			if g.FacilitykWh == nil {
				g.FacilitykWh = new(float64)
			}
			*g.FacilitykWh += f / JoulesPerKWh
			basis = f
			basisFacility++
		} else {
			basisIT++
		}
		if b.carbonOn() {
			gr, _ := b.gramsAt(row.Time)
			g.grams += basis / JoulesPerKWh * gr
		}
		if b.priceOn() {
			p, _ := b.opt.Price.at(row.Time)
			g.cost += basis / JoulesPerKWh * p
		}
		if rule := str(v[schema.FieldRule]); rule != "" {
			rules[rule] = true
		}
	}
	var all []*WorkloadRow
	for _, k := range slices.Sorted(maps.Keys(groups)) {
		g := groups[k]
		b.finish(g)
		out.ITkWh += g.ITkWh
		if k == "\x00unattributed" {
			g.Name = "unattributed" // idle GPUs, hosts without workloads, their share of the rest (SumLine says so)
			out.Unattributed = g
			continue
		}
		all = append(all, g)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].ITkWh > all[j].ITkWh })
	if err := b.modelWork(by, all); err != nil {
		return nil, err
	}
	for _, g := range append(slices.Clone(all), out.Unattributed) {
		if g != nil && out.ITkWh > 0 {
			g.Share = g.ITkWh / out.ITkWh
		}
	}
	if len(all) > b.opt.TopN {
		rest := &WorkloadRow{Name: fmt.Sprintf("%d others", len(all)-b.opt.TopN), members: map[string]bool{}}
		for _, g := range all[b.opt.TopN:] {
			rest.add(g)
		}
		if out.ITkWh > 0 {
			rest.Share = rest.ITkWh / out.ITkWh
		}
		out.Rest = rest
		all = all[:b.opt.TopN]
	}
	for _, g := range all {
		out.Rows = append(out.Rows, *g)
	}
	out.Rules = slices.Sorted(maps.Keys(rules))
	switch {
	case basisFacility == 0:
		out.Basis = "IT energy (no facility meter)"
	case basisIT == 0:
		out.Basis = "facility energy (IT × the interim PUE of each window)"
	default:
		out.Basis = "facility energy where the window had a PUE, else IT energy"
	}
	return out, nil
}

// finish turns a group's sums into what the report says.
func (b *builder) finish(g *WorkloadRow) {
	g.Workloads = len(g.members)
	if g.ITkWh > 0 {
		g.Coverage = g.covJ / (g.ITkWh * JoulesPerKWh)
	}
	if b.carbonOn() {
		kg := g.grams / 1000
		g.CarbonKg = &kg
	}
	if b.priceOn() {
		c := g.cost
		g.Cost = &c
	}
}

// add sums another row into a rest row.
func (g *WorkloadRow) add(o *WorkloadRow) {
	g.Workloads += o.Workloads
	g.ITkWh += o.ITkWh
	g.GPUkWh += o.GPUkWh
	g.HostSharekWh += o.HostSharekWh
	g.Hosts = max(g.Hosts, o.Hosts)
	g.covJ += o.covJ
	if g.ITkWh > 0 {
		g.Coverage = g.covJ / (g.ITkWh * JoulesPerKWh)
	}
	for _, p := range []struct{ into, from **float64 }{{&g.FacilitykWh, &o.FacilitykWh}, {&g.Cost, &o.Cost}, {&g.CarbonKg, &o.CarbonKg}} {
		if *p.from != nil {
			if *p.into == nil {
				*p.into = new(float64)
			}
			**p.into += **p.from
		}
	}
}

// modelWork puts tokens per joule on each model's row: what the model's
// servers generated over the energy of the workloads labelled with it.
func (b *builder) modelWork(by string, rows []*WorkloadRow) error {
	if by != schema.TagModel {
		return nil
	}
	work, err := b.sumBy(schema.Work, schema.ScopeModel, []string{schema.TagModel}, fmt.Sprintf("r.%s == %s", schema.TagUnit, fluxString("token")), isField(schema.FieldWork))
	if err != nil {
		return err
	}
	for _, g := range rows {
		if w, ok := work[g.Name]; ok && g.ITkWh > 0 {
			per := w / (g.ITkWh * JoulesPerKWh)
			g.Tokens, g.TokensPerJ = &w, &per
		}
	}
	return nil
}

// Title is the section's heading.
func (w *Workloads) Title() string {
	switch {
	case w.Job != "":
		return "Slurm job " + w.Job
	case w.By == "workload":
		return "Energy by workload"
	}
	return "Energy by " + w.By
}

// SumLine says what the section adds up to.
func (w *Workloads) SumLine() string {
	if w.Job != "" {
		return fmt.Sprintf("Job %s's IT energy is its GPUs' share of their measured energy and its share of its hosts' other energy (by %s); cost and carbon are of %s.",
			w.Job, strings.Join(w.Rules, ", "), w.Basis)
	}
	return fmt.Sprintf("The rows, the rest and the unattributed energy (idle GPUs, hosts without workloads, and their share of the hosts' other energy) add up to %s kWh, the hosts' IT energy of the same windows. The hosts' energy besides their GPUs is shared by %s; cost and carbon are of %s.",
		fmtNum(w.ITkWh, 4), strings.Join(w.Rules, ", "), w.Basis)
}

// optNum prints an optional number, or a dash.
func optNum(v *float64) string {
	if v == nil {
		return "—"
	}
	return fmtNum(*v, 4)
}

func writeMarkdownWorkloads(w interface{ Write([]byte) (int, error) }, ws *Workloads) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("\n## %s\n\n| %s | kind | IT kWh | GPU kWh | host share kWh | facility kWh | share | cost | carbon kg | tokens per joule | hosts |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n", ws.Title(), ws.By)
	rows := append([]WorkloadRow(nil), ws.Rows...)
	for _, r := range []*WorkloadRow{ws.Rest, ws.Unattributed} {
		if r != nil {
			rows = append(rows, *r)
		}
	}
	for _, r := range rows {
		p("| %s | %s | %s | %s | %s | %s | %s %% | %s | %s | %s | %d |\n", r.Name, r.Kind, fmtNum(r.ITkWh, 4), fmtNum(r.GPUkWh, 4), fmtNum(r.HostSharekWh, 4),
			optNum(r.FacilitykWh), fmtNum(100*r.Share, 3), optNum(r.Cost), optNum(r.CarbonKg), optNum(r.TokensPerJ), r.Hosts)
	}
	p("\n%s\n", ws.SumLine())
}

// csvWorkloads writes the section's rows: one per number.
func csvWorkloads(ws *Workloads, row func(section, name string, value float64, unit string)) {
	section := "workloads_by_" + ws.By
	all := append([]WorkloadRow(nil), ws.Rows...)
	for _, r := range []*WorkloadRow{ws.Rest, ws.Unattributed} {
		if r != nil {
			all = append(all, *r)
		}
	}
	for _, r := range all {
		name := r.Name
		if r.Kind != "" {
			name = r.Kind + " " + r.Name
		}
		row(section, name+" it_energy", r.ITkWh, "kWh")
		row(section, name+" gpu_energy", r.GPUkWh, "kWh")
		row(section, name+" host_share", r.HostSharekWh, "kWh")
		for _, o := range []struct {
			what, unit string
			v          *float64
		}{{"facility_energy", "kWh", r.FacilitykWh}, {"cost", "", r.Cost}, {"carbon", "kg CO2e", r.CarbonKg}, {"tokens_per_joule", "token/J", r.TokensPerJ}} {
			if o.v != nil {
				row(section, name+" "+o.what, *o.v, o.unit)
			}
		}
	}
	row(section, "total it_energy", ws.ITkWh, "kWh")
}
