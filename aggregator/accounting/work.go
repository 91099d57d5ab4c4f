package accounting

import (
	"maps"
	"slices"
	"strings"

	"github.com/joules-energy/joules/internal/schema"
)

// workResult is work per joule at one scope: a GPU where the workload is
// bound to GPUs, a host, a hall or a site.
type workResult struct {
	Scope        string
	Topo         Topology // a GPU's or host's; a hall's or site's with the narrower parts empty
	GPU, Unit    string
	Model        string // scope model: the model served
	Work, Joules float64
	PUE          pueResult // of the site, or the hall: for work per facility joule
}

// reconResult is what the parts do not explain.
type reconResult struct {
	Kind, Scope      string
	Topo             Topology
	Reference, Parts float64
}

// work computes work per IT joule and per facility joule (work per IT
// joule over PUE) per GPU where the workload is bound to GPUs, per host,
// hall and site.
func (d *deriver) work(pues map[scopeKey]pueResult) {
	type scoped struct {
		sk   scopeKey
		unit string
	}
	hosts := map[workKey]float64{}  // by host and unit, GPU left empty
	scopes := map[scoped]float64{}  // sites and halls
	models := map[workKey]float64{} // by site, unit and model
	gpuEnergy := map[gpuKey]float64{}
	for _, g := range d.r.GPUs {
		if g.Energy {
			gpuEnergy[g.Key] = g.Joules
		}
	}
	gpus := map[workKey]float64{} // by GPU and unit, the models served on it summed
	for _, k := range slices.SortedFunc(maps.Keys(d.workAccs), compareWork) {
		work := d.workAccs[k]
		if k.GPU != "" {
			gpus[workKey{Topology: k.Topology, GPU: k.GPU, Unit: k.Unit}] += work
		}
		hosts[workKey{Topology: k.Topology, Unit: k.Unit}] += work
		if k.Model != "" {
			models[workKey{Topology: Topology{Site: k.Site}, Unit: k.Unit, Model: k.Model}] += work
		}
		scopes[scoped{scopeKey{Scope: schema.ScopeSite, Site: k.Site}, k.Unit}] += work
		if k.Hall != "" {
			scopes[scoped{scopeKey{Scope: schema.ScopeHall, Site: k.Site, Hall: k.Hall}, k.Unit}] += work
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(gpus), compareWork) {
		j, ok := gpuEnergy[gpuKey{k.Topology, k.GPU}]
		if id, aliased := d.a.ents.GPUAlias[gpuKey{k.Topology, k.GPU}]; !ok && aliased {
			j, ok = gpuEnergy[d.a.ents.GPUs[id]] // the workload labels its GPU by index
		}
		if ok {
			d.r.Work = append(d.r.Work, workResult{Scope: schema.ScopeGPU, Topo: k.Topology, GPU: k.GPU, Unit: k.Unit, Work: gpus[k], Joules: j,
				PUE: pues[scopeKey{Scope: schema.ScopeSite, Site: k.Site}]})
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(hosts), compareWork) {
		var it float64
		if h := d.hosts[k.Topology]; h != nil {
			it = h.IT
		}
		d.r.Work = append(d.r.Work, workResult{Scope: schema.ScopeHost, Topo: k.Topology, Unit: k.Unit, Work: hosts[k], Joules: it, PUE: pues[scopeKey{Scope: schema.ScopeSite, Site: k.Site}]})
	}
	for _, sc := range slices.SortedFunc(maps.Keys(scopes), func(x, y scoped) int {
		return strings.Compare(x.sk.Scope+x.sk.Site+x.sk.Hall+x.unit, y.sk.Scope+y.sk.Site+y.sk.Hall+y.unit)
	}) {
		pue := pues[scopeKey{Scope: schema.ScopeSite, Site: sc.sk.Site}]
		if sc.sk.Scope == schema.ScopeHall {
			pue = pues[sc.sk]
		}
		s := d.r.Sums[Topology{Site: sc.sk.Site, Hall: sc.sk.Hall}]
		d.r.Work = append(d.r.Work, workResult{Scope: sc.sk.Scope, Topo: Topology{Site: sc.sk.Site, Hall: sc.sk.Hall}, Unit: sc.unit, Work: scopes[sc], Joules: s.IT, PUE: pue})
	}
	d.r.ModelWork = models
}

// modelWork is work per joule of each model served: the work its servers
// counted over the energy of the workloads labelled with the model
// (label_model), across the site. A model no workload is labelled with has
// no energy to count it against and is not written.
func modelWork(r *windowResult) []workResult {
	energy := map[workKey]float64{}
	for _, l := range r.Loads {
		if m := l.Key.attr(schema.LabelPrefix + schema.TagModel); m != "" && !l.unattributed() {
			energy[workKey{Topology: Topology{Site: l.Key.Site}, Model: m}] += l.IT
		}
	}
	var out []workResult
	for _, k := range slices.SortedFunc(maps.Keys(r.ModelWork), compareWork) {
		j, ok := energy[workKey{Topology: k.Topology, Model: k.Model}]
		if !ok {
			continue
		}
		out = append(out, workResult{Scope: schema.ScopeModel, Topo: k.Topology, Unit: k.Unit, Model: k.Model, Work: r.ModelWork[k], Joules: j, PUE: r.sitePUE(k.Site)})
	}
	return out
}

func compareWork(x, y workKey) int {
	if c := compareHosts(x.Topology, y.Topology); c != 0 {
		return c
	}
	return strings.Compare(x.GPU+"\x00"+x.Unit+"\x00"+x.Model, y.GPU+"\x00"+y.Unit+"\x00"+y.Model)
}

// reconcile computes what the parts do not explain: a host's BMC against
// its GPUs + CPU, and the PDUs of a rack (or hall, or site: the PDUs'
// labels) against the BMCs of the hosts they feed.
func (d *deriver) reconcile() {
	for _, h := range d.r.Hosts {
		if !h.BMC || h.GPU+h.CPU == 0 {
			continue
		}
		d.r.Recon = append(d.r.Recon, reconResult{Kind: schema.KindBMCVsComponents, Scope: schema.ScopeHost, Topo: h.Key, Reference: h.IT, Parts: h.GPU + h.CPU})
	}
	groups := map[Topology][]meterResult{}
	for _, m := range d.r.Meters {
		if m.key.Role == rolePDUOutput {
			k := Topology{Site: m.key.Site, Hall: m.key.Hall, Rack: m.key.Rack}
			groups[k] = append(groups[k], m)
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(groups), compareHosts) {
		var ref, parts float64
		for _, m := range groups[k] {
			ref += m.joules
		}
		for _, h := range d.r.Hosts {
			if h.BMC && slices.ContainsFunc(groups[k], func(m meterResult) bool { return m.reach.feeds(h.Key) }) {
				parts += h.IT
			}
		}
		d.r.Recon = append(d.r.Recon, reconResult{Kind: schema.KindPDUVsBMCs, Scope: scopeOf(k), Topo: k, Reference: ref, Parts: parts})
	}
}
