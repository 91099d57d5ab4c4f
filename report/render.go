package report

import (
	_ "embed"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Formats the report renders to.
var Formats = []string{"html", "md", "csv", "json"}

// Write renders the report in a format.
func Write(w io.Writer, r *Report, format string) error {
	switch format {
	case "html":
		return writeHTML(w, r)
	case "md":
		return writeMarkdown(w, r)
	case "csv":
		return writeCSV(w, r)
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return fmt.Errorf("format %q: use one of %s", format, strings.Join(Formats, ", "))
}

//go:embed report.html.tmpl
var htmlTemplate string

var funcs = template.FuncMap{
	"kwh":    func(v float64) string { return fmtNum(v, 3) + " kWh" },
	"num":    func(v float64) string { return fmtNum(v, 4) },
	"pct":    func(v float64) string { return fmtNum(100*v, 3) + " %" },
	"ratio":  func(v *float64) string { return ratioText(v) },
	"time":   fmtTime,
	"svg":    func(b []byte) template.HTML { return template.HTML(b) }, // rendered by gonum/plot from numbers only
	"cat":    categoryText,
	"pueCat": pueCategoryText,
	"deref":  func(v *float64) float64 { return *v },
	"opt":    optNum,
}

func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

func ratioText(v *float64) string {
	if v == nil {
		return "—"
	}
	return strconv.FormatFloat(*v, 'f', 3, 64)
}

func categoryText(c int) string {
	switch c {
	case 1:
		return "category 1 (UPS output)"
	case 2:
		return "category 2 (PDU output)"
	case 3:
		return "category 3 (IT equipment input)"
	}
	return "no category"
}

// fmtNum prints a number with about sig significant digits and thousands
// separators, never in exponent form.
func fmtNum(v float64, sig int) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	decimals := max(0, sig-1-int(math.Floor(math.Log10(math.Abs(v)))))
	s := strconv.FormatFloat(v, 'f', decimals, 64)
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if frac != "" {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

func writeHTML(w io.Writer, r *Report) error {
	charts, err := Charts(r)
	if err != nil {
		return err
	}
	t, err := template.New("report").Funcs(funcs).Parse(htmlTemplate)
	if err != nil {
		return err
	}
	return t.Execute(w, struct {
		*Report
		Charts []Chart
	}{r, charts})
}

func writeMarkdown(w io.Writer, r *Report) error {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("# %s\n\n", r.Title)
	p("%s to %s, accounting windows of %s. Generated %s.\n\n", fmtTime(r.From), fmtTime(r.To), r.Resolution, r.Generated.Format(time.RFC3339))
	writeMarkdownHeadline(w, r)
	p("\n## Over the whole range\n\n| | |\n|---|---|\n")
	p("| IT energy (hosts) | %s kWh%s |\n", fmtNum(r.Energy.ITkWh, 4), lowerBoundNote(r.Energy.LowerBound))
	p("| IT coverage | %s %% of expected host-time |\n", fmtNum(100*r.Energy.ITCoverage, 3))
	if r.Energy.FacilitykWh > 0 {
		p("| Facility energy | %s kWh |\n", fmtNum(r.Energy.FacilitykWh, 4))
	}
	if r.PUE.Value != nil {
		p("| %s | %s, %s, coverage %s %%, %d of %d windows |\n", r.PUE.Name, ratioText(r.PUE.Value), pueCategoryText(r.PUE.Category, r.PUE.Estimate), fmtNum(100*r.PUE.Coverage, 3), r.PUE.WindowsWithPUE, r.PUE.Windows)
	} else {
		p("| PUE | none: %s |\n", r.PUE.Reason)
	}
	p("| GPU energy | %s kWh, of it idle %s kWh (%s %%) |\n", fmtNum(r.Idle.GPUkWh, 4), fmtNum(r.Idle.IdlekWh, 4), fmtNum(100*r.Idle.Share, 3))
	for _, wr := range r.Work {
		per := "—"
		if wr.PerFacilityKWh != nil {
			per = fmtNum(*wr.PerFacilityKWh, 4)
		}
		p("| %ss | %s, %s per IT joule, %s per facility kWh |\n", wr.Unit, fmtNum(wr.Work, 4), fmtNum(wr.PerJoule, 4), per)
	}
	if r.Carbon != nil {
		p("| Carbon | %s %s (%s) |\n", fmtNum(r.Carbon.Value, 4), r.Carbon.Unit, r.Carbon.Basis)
	}
	if r.Cost != nil {
		p("| Cost | %s %s (%s) |\n", fmtNum(r.Cost.Value, 4), r.Cost.Unit, r.Cost.Basis)
	}
	if len(r.Gaps) > 0 {
		p("\n## Data gaps\n\n")
		for _, g := range r.Gaps {
			p("- %s\n", g)
		}
	}
	if len(r.Halls) > 0 {
		p("\n## Halls\n\n| site | hall | IT kWh | facility kWh | pPUE | coverage |\n|---|---|---:|---:|---:|---:|\n")
		for _, h := range r.Halls {
			p("| %s | %s | %s | %s | %s | %s %% |\n", h.Site, h.Hall, fmtNum(h.ITkWh, 4), fmtNum(h.FacilitykWh, 4), ratioText(h.PPUE), fmtNum(100*h.Coverage, 3))
		}
	}
	p("\n## Hosts (top %d of %d)\n\n| host | rack | kWh | share | coverage |\n|---|---|---:|---:|---:|\n", len(r.Hosts), r.HostCount)
	for _, h := range r.Hosts {
		p("| %s | %s | %s | %s %% | %s %% |\n", h.Host, h.Rack, fmtNum(h.KWh, 4), fmtNum(100*h.Share, 3), fmtNum(100*h.Coverage, 3))
	}
	p("\n## GPUs (top %d of %d)\n\n| host | GPU | kWh | idle kWh |\n|---|---|---:|---:|\n", len(r.GPUs), r.GPUCount)
	for _, g := range r.GPUs {
		p("| %s | %s | %s | %s |\n", g.Host, g.GPU, fmtNum(g.KWh, 4), fmtNum(g.IdleKWh, 4))
	}
	if r.Workloads != nil {
		writeMarkdownWorkloads(w, r.Workloads)
	}
	if len(r.Reconciliation) > 0 {
		p("\n## Reconciliation\n\n| kind | where | reference kWh | parts kWh | remainder kWh | remainder |\n|---|---|---:|---:|---:|---:|\n")
		for _, rc := range r.Reconciliation {
			p("| %s | %s | %s | %s | %s | %s %% |\n", rc.Kind, rc.Where, fmtNum(rc.ReferenceKWh, 4), fmtNum(rc.PartsKWh, 4), fmtNum(rc.RemainderKWh, 4), fmtNum(100*rc.Ratio, 3))
		}
	}
	return nil
}

// writeMarkdownHeadline writes the headline and the power path: the same
// windows, each number from the others.
func writeMarkdownHeadline(w io.Writer, r *Report) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	h := r.Headline
	p("## Headline\n\n")
	if h.PUE != nil {
		p("Over the %d of %d windows that have a PUE.\n\n", h.Windows, h.Of)
		p("| Facility energy | ÷ IT energy at the %s | = %s |\n|---:|---:|---:|\n", h.ITPoint, h.PUEName)
		p("| %s kWh | %s kWh | %s (%s, coverage %s %%) |\n\n", fmtNum(*h.FacilitykWh, 4), fmtNum(h.ITkWh, 4), ratioText(h.PUE), pueCategoryText(h.Category, h.Estimate), fmtNum(100*h.Coverage, 3))
	} else {
		p("Over all %d windows with data; no PUE: %s.\n\n", h.Windows, h.Reason)
		p("| IT energy at %s |\n|---:|\n| %s kWh |\n\n", h.ITPoint, fmtNum(h.ITkWh, 4))
	}
	p("| | |\n|---|---|\n| The hosts' own IT energy (their BMCs) | %s kWh%s |\n", fmtNum(h.HostsKWh, 4), lowerBoundNote(h.HostsLowerBound))
	if h.RemainderKWh != nil {
		share := ""
		if h.RemainderShare != nil {
			share = fmt.Sprintf(", %s %% of the %s", fmtNum(100**h.RemainderShare, 3), h.ITPoint)
		}
		p("| Unexplained: %s − hosts | %s kWh%s |\n", h.ITPoint, fmtNum(*h.RemainderKWh, 4), share)
	}
	for _, hw := range h.Work {
		var per []string
		if hw.PerFacilityJoule != nil {
			per = append(per, fmtNum(*hw.PerFacilityJoule, 4)+" per facility joule")
		}
		if hw.PerHostJoule != nil {
			per = append(per, fmtNum(*hw.PerHostJoule, 4)+" per host joule")
		}
		p("| %ss | %s, %s |\n", hw.Unit, fmtNum(hw.Work, 4), strings.Join(per, ", "))
	}
	if len(r.PowerPath) > 0 {
		p("\n## Energy along the power path\n\n| where | kWh | coverage |\n|---|---:|---:|\n")
		for _, ps := range r.PowerPath {
			p("| %s | %s | %s %% |\n", ps.Name, fmtNum(ps.KWh, 4), fmtNum(100*ps.Coverage, 3))
		}
	}
}

func pueCategoryText(c int, estimate bool) string {
	if estimate {
		return "an estimate, no ISO/IEC 30134-2 category"
	}
	return categoryText(c)
}

func lowerBoundNote(lb bool) string {
	if lb {
		return " (a lower bound: some hosts only as GPUs + CPU)"
	}
	return ""
}

// writeCSV writes one row per number: section, name, value, unit, and the
// topology it belongs to; the columns never change.
func writeCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	row := func(section, name string, value float64, unit, site, hall, rack, host, gpu string) {
		_ = cw.Write([]string{section, name, strconv.FormatFloat(value, 'g', -1, 64), unit, site, hall, rack, host, gpu,
			r.From.Format(time.RFC3339), r.To.Format(time.RFC3339)})
	}
	_ = cw.Write([]string{"section", "name", "value", "unit", "site", "hall", "rack", "host", "gpu", "from", "to"})
	f := r.Filters
	h := r.Headline
	if h.FacilitykWh != nil {
		row("headline", "facility", *h.FacilitykWh, "kWh", f.Site, f.Hall, f.Rack, f.Host, "")
	}
	row("headline", "it", h.ITkWh, "kWh", f.Site, f.Hall, f.Rack, f.Host, "")
	if h.PUE != nil {
		row("headline", "pue", *h.PUE, "ratio", f.Site, f.Hall, "", "", "")
	}
	row("headline", "hosts", h.HostsKWh, "kWh", f.Site, f.Hall, f.Rack, f.Host, "")
	if h.RemainderKWh != nil {
		row("headline", "remainder", *h.RemainderKWh, "kWh", f.Site, f.Hall, f.Rack, f.Host, "")
	}
	row("headline", "windows", float64(h.Windows), "windows", f.Site, f.Hall, f.Rack, f.Host, "")
	for _, hw := range h.Work {
		row("headline", hw.Unit, hw.Work, hw.Unit, f.Site, f.Hall, f.Rack, f.Host, "")
		if hw.PerFacilityJoule != nil {
			row("headline", hw.Unit+"_per_facility_joule", *hw.PerFacilityJoule, hw.Unit+"/J", f.Site, f.Hall, f.Rack, f.Host, "")
		}
		if hw.PerHostJoule != nil {
			row("headline", hw.Unit+"_per_host_joule", *hw.PerHostJoule, hw.Unit+"/J", f.Site, f.Hall, f.Rack, f.Host, "")
		}
	}
	for _, ps := range r.PowerPath {
		row("power_path", ps.Role, ps.KWh, "kWh", f.Site, f.Hall, f.Rack, f.Host, "")
	}
	row("energy", "it", r.Energy.ITkWh, "kWh", f.Site, f.Hall, f.Rack, f.Host, "")
	row("energy", "it_coverage", r.Energy.ITCoverage, "ratio", f.Site, f.Hall, f.Rack, f.Host, "")
	row("energy", "facility", r.Energy.FacilitykWh, "kWh", f.Site, f.Hall, f.Rack, f.Host, "")
	row("energy", "gpu", r.Energy.GPUkWh, "kWh", f.Site, f.Hall, f.Rack, f.Host, "")
	if r.PUE.Value != nil {
		row("pue", "pue", *r.PUE.Value, "ratio", f.Site, f.Hall, "", "", "")
	}
	row("pue", "category", float64(r.PUE.Category), "category", f.Site, f.Hall, "", "", "")
	row("pue", "coverage", r.PUE.Coverage, "ratio", f.Site, f.Hall, "", "", "")
	for _, h := range r.Halls {
		row("hall", "it", h.ITkWh, "kWh", h.Site, h.Hall, "", "", "")
		if h.PPUE != nil {
			row("hall", "ppue", *h.PPUE, "ratio", h.Site, h.Hall, "", "", "")
		}
	}
	for _, rk := range r.Racks {
		row("rack", "it", rk.KWh, "kWh", rk.Site, rk.Hall, rk.Rack, "", "")
	}
	for _, h := range r.Hosts {
		row("host", "it", h.KWh, "kWh", h.Site, h.Hall, h.Rack, h.Host, "")
		row("host", "coverage", h.Coverage, "ratio", h.Site, h.Hall, h.Rack, h.Host, "")
	}
	for _, g := range r.GPUs {
		row("gpu", "energy", g.KWh, "kWh", "", "", "", g.Host, g.GPU)
		row("gpu", "idle", g.IdleKWh, "kWh", "", "", "", g.Host, g.GPU)
	}
	row("gpu_idle", "idle", r.Idle.IdlekWh, "kWh", f.Site, f.Hall, f.Rack, f.Host, "")
	row("gpu_idle", "share", r.Idle.Share, "ratio", f.Site, f.Hall, f.Rack, f.Host, "")
	for _, wr := range r.Work {
		row("work", wr.Unit, wr.Work, wr.Unit, f.Site, f.Hall, f.Rack, f.Host, "")
		row("work", wr.Unit+"_per_joule", wr.PerJoule, wr.Unit+"/J", f.Site, f.Hall, f.Rack, f.Host, "")
		if wr.PerFacilityKWh != nil {
			row("work", wr.Unit+"_per_facility_kwh", *wr.PerFacilityKWh, wr.Unit+"/kWh", f.Site, f.Hall, f.Rack, f.Host, "")
		}
	}
	for _, rc := range r.Reconciliation {
		row("reconciliation", rc.Kind+" "+rc.Where, rc.RemainderKWh, "kWh", f.Site, f.Hall, f.Rack, f.Host, "")
	}
	if r.Carbon != nil {
		row("carbon", "emissions", r.Carbon.Value, r.Carbon.Unit, f.Site, f.Hall, f.Rack, f.Host, "")
	}
	if r.Cost != nil {
		row("cost", "energy", r.Cost.Value, r.Cost.Unit, f.Site, f.Hall, f.Rack, f.Host, "")
	}
	if r.Workloads != nil {
		csvWorkloads(r.Workloads, func(section, name string, value float64, unit string) {
			row(section, name, value, unit, f.Site, "", "", "", "")
		})
	}
	cw.Flush()
	return cw.Error()
}
