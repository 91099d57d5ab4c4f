package accounting

import (
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/internal/schema"
)

// onHost is a workload's window on one host.
type onHost struct {
	id  uint32
	acc loadAcc
}

// loadResult is a workload's energy across its site in a window, or the
// site's unattributed rest (Key.Kind schema.WorkloadUnattributed). Its
// fields are sums, so that an hour's is the sum of its windows' (ledger).
type loadResult struct {
	Key                loadKey // site-wide (loadKey.site)
	GPU, HostShare, IT float64
	Facility           float64 // IT × the site's PUE, of the windows that had one
	ITWithPUE          float64 // the IT energy of those windows
	CovJ               float64 // Σ its hosts' coverage × its energy on each
	Hosts              int     // the most it ran on in one window
	Rule, Reason       string
}

func (l *loadResult) unattributed() bool { return l.Key.Kind == schema.WorkloadUnattributed }

// add sums another window's result of the same workload into l.
func (l *loadResult) add(o loadResult) {
	l.GPU += o.GPU
	l.HostShare += o.HostShare
	l.IT += o.IT
	l.Facility += o.Facility
	l.ITWithPUE += o.ITWithPUE
	l.CovJ += o.CovJ
	l.Hosts = max(l.Hosts, o.Hosts)
	if l.Rule == "" {
		l.Rule = o.Rule
	} else if o.Rule != "" && o.Rule != l.Rule {
		l.Rule = ruleMixed
	}
	if o.Reason != "" {
		l.Reason = o.Reason
	}
}

// ruleMixed is the rule of a workload some of whose hosts had no CPU
// counts for the requested-CPUs rule.
const ruleMixed = schema.RuleGPUEnergy + "+" + schema.RuleRequestedCPUs

// workloads shares each host's IT energy among the workloads on it, for
// the base window: each gets its share of the GPUs' measured energy and a
// share of the rest of the host's energy (its CPUs, memory, fans, PSU
// losses) by the configured rule; what no workload had is the site's
// unattributed energy, so that the workloads and the rest add up to the
// hosts' energy (docs/ACCOUNTING.md). Hours and days are the sums of their
// windows (ledger.go), so a job's energy is the same at every resolution.
func (d *deriver) workloads() {
	byHost := map[Topology][]onHost{}
	for id, acc := range d.w.Loads {
		k := d.a.ents.Loads[id]
		if k.Kind == "" || acc.GPU == 0 && acc.CPUs.N == 0 {
			continue
		}
		byHost[k.Topology] = append(byHost[k.Topology], onHost{id, acc})
	}
	if len(byHost) == 0 && !d.r.HasLoads {
		return
	}
	sites := map[loadKey]loadResult{}
	for _, h := range d.r.Hosts {
		loads := byHost[h.Key]
		if len(loads) == 0 {
			continue
		}
		itScale, rest := 1.0, h.IT-h.GPU
		if rest < 0 {
			itScale, rest = 0, 0
			if h.GPU > 0 {
				itScale = h.IT / h.GPU
			}
		}
		// In the order of their keys, not ids: a roll-up's ids differ, and
		// the sums must come out the same to the last bit.
		slices.SortFunc(loads, func(x, y onHost) int { return compareLoads(d.a.ents.Loads[x.id], d.a.ents.Loads[y.id]) })
		gpus := make([]float64, len(loads))
		var sum float64
		for i, l := range loads {
			gpus[i] = l.acc.GPU
			sum += l.acc.GPU
		}
		// The workloads' shares of the GPUs never add up to more than the
		// GPUs measured, nor their energy to more than the host's.
		if sum > h.GPU && sum > 0 {
			for i := range gpus {
				gpus[i] *= h.GPU / sum
			}
		}
		reason := ""
		if itScale < 1 {
			reason = "a host measured less than its GPUs: its workloads' GPU energy scaled to the host's"
		}
		shares, rule := d.hostShares(h, loads, gpus)
		pue := d.r.sitePUE(h.Key.Site)
		for i, l := range loads {
			gpu := gpus[i] * itScale
			hs := rest * shares[i]
			one := loadResult{Key: d.a.ents.Loads[l.id].site(), GPU: gpu, HostShare: hs, IT: gpu + hs, CovJ: h.Coverage * (gpu + hs), Rule: rule, Reason: reason}
			if pue.OK {
				one.Facility, one.ITWithPUE = one.IT*pue.PUE, one.IT
			}
			update(sites, one.Key, func(r *loadResult) {
				r.Key = one.Key
				r.add(one)
				r.Hosts++ // within one window, a workload's hosts add up
			})
		}
	}
	d.r.Loads = withRest(sites, d.r)
}

// foldLoads adds the workloads of one window's results into sums (the
// unattributed rest is each level's own).
func foldLoads(sums map[loadKey]loadResult, results []loadResult) {
	for _, one := range results {
		if !one.unattributed() {
			update(sums, one.Key, func(s *loadResult) { s.Key = one.Key; s.add(one) })
		}
	}
}

// sitePUE is the window's PUE of a site (not OK where it has none).
func (r *windowResult) sitePUE(site string) pueResult {
	for _, p := range r.PUEs {
		if p.Key.Scope == schema.ScopeSite && p.Key.Site == site {
			return p
		}
	}
	return pueResult{}
}

// withRest is the workloads of a window in key order, then each site's
// unattributed rest of the window's own energy: its IT energy less theirs.
func withRest(sums map[loadKey]loadResult, r *windowResult) []loadResult {
	var out []loadResult
	attributed := map[string]loadResult{} // by site: the sum of its workloads
	for _, k := range slices.SortedFunc(maps.Keys(sums), compareLoads) {
		s := sums[k]
		out = append(out, s)
		update(attributed, k.Site, func(a *loadResult) { a.GPU += s.GPU; a.IT += s.IT })
	}
	for _, k := range slices.SortedFunc(maps.Keys(r.Sums), compareHosts) {
		if k.Hall == "" && k.Rack == "" {
			out = append(out, unattributedOf(k.Site, r.Sums[k], siteGPU(r, k.Site), attributed[k.Site], r.sitePUE(k.Site)))
		}
	}
	return out
}

// unattributedOf is what a site's workloads (attributed, their sums) did
// not have of its IT energy: its idle GPUs, hosts without workloads, and
// their share of the hosts' other energy. gpu is the site's GPU energy as
// far as its hosts' IT energy has it.
func unattributedOf(site string, s scopeSum, gpu float64, attributed loadResult, pue pueResult) loadResult {
	it := noise(s.IT-attributed.IT, s.IT)
	g := noise(gpu-attributed.GPU, s.IT)
	u := loadResult{Key: loadKey{Topology: Topology{Site: site}, Kind: schema.WorkloadUnattributed}, IT: it, GPU: g, HostShare: it - g,
		CovJ: s.Coverage / float64(max(1, s.Hosts)) * it, Hosts: s.Hosts}
	if pue.OK {
		u.Facility, u.ITWithPUE = it*pue.PUE, it
	}
	if it < 0 {
		// An hour or day whose own sources measured less than its windows
		// gave its workloads (a source that stopped within a window):
		// said, not hidden, so that the workloads still add up.
		u.Reason = "the site's IT energy at this resolution is less than its windows gave its workloads"
	}
	return u
}

// noise is v, or 0 where it is a rounding error's worth (a billionth) of
// ref below zero: workloads that had all of the energy leave none, not
// −1e-12 J.
func noise(v, ref float64) float64 {
	if v < 0 && -v <= 1e-9*math.Abs(ref) {
		return 0
	}
	return v
}

func compareLoads(x, y loadKey) int {
	return strings.Compare(x.Site+"\x00"+x.Kind+"\x00"+x.ID+"\x00"+x.Host+"\x00"+x.Attrs+"\x00"+x.Hall+"\x00"+x.Rack,
		y.Site+"\x00"+y.Kind+"\x00"+y.ID+"\x00"+y.Host+"\x00"+y.Attrs+"\x00"+y.Hall+"\x00"+y.Rack)
}

// hostShares is each workload's share of its host's energy besides the
// GPUs, and the rule that gave it. By GPU energy (the default): the share
// of the GPUs' energy it had, so the idle GPUs' part stays unattributed.
// By requested CPUs: its CPU-time over the host's, where the host's CPU
// count and the workloads' requests are known (a workload present for part
// of the window has that part); a host without them falls back to GPU
// energy.
func (d *deriver) hostShares(h *hostResult, loads []onHost, gpus []float64) ([]float64, string) {
	shares := make([]float64, len(loads))
	if d.a.cfg.HostShare == schema.RuleRequestedCPUs {
		host := d.w.HostCPUs[d.a.ents.HostIDs[h.Key]]
		if host.N > 0 && host.Sum > 0 {
			var total float64
			for i, l := range loads {
				shares[i] = l.acc.CPUs.Sum / host.Sum // CPU-samples over the host's: time present counts
				total += shares[i]
			}
			if total > 1 { // more requested than the host has: overcommitted
				for i := range shares {
					shares[i] /= total
				}
			}
			if total > 0 {
				return shares, schema.RuleRequestedCPUs
			}
		}
	}
	if h.GPU > 0 {
		for i := range loads {
			shares[i] = min(1, gpus[i]/h.GPU)
		}
	}
	return shares, schema.RuleGPUEnergy
}

// load appends a workload's point: joules_workload_energy at scope site.
// Its facility energy is its IT energy times the site's interim PUE, only
// where every window it sums had one.
func (e *emitter) load(l loadResult, siteIT float64) {
	kind, id := l.Key.Kind, l.Key.ID
	if l.unattributed() {
		id = ""
	}
	kv := append([]string{schema.TagResolution, e.res, schema.TagScope, schema.ScopeSite, schema.TagSite, l.Key.Site, schema.TagHost, l.Key.Host,
		schema.TagWorkloadKind, kind, schema.TagWorkload, id}, l.Key.attrTags()...)
	var coverage, share float64
	if l.IT != 0 {
		coverage = l.CovJ / l.IT
	}
	if siteIT > 0 {
		share = l.IT / siteIT
	}
	fields := []aggregator.Field{num(schema.FieldJoules, l.IT), num(schema.FieldGPUJoules, l.GPU), num(schema.FieldCoverage, coverage),
		num(schema.FieldShare, share), integer(schema.FieldHosts, l.Hosts), num(schema.FieldHostShareJoules, l.HostShare)}
	if !l.unattributed() {
		fields = append(fields, str(schema.FieldRule, l.Rule))
	}
	reason := l.Reason
	if l.ITWithPUE > 0 && l.ITWithPUE == l.IT {
		fields = append(fields, num(schema.FieldFacilityJoules, l.Facility), num(schema.FieldPUE, l.Facility/l.ITWithPUE))
	} else if l.IT > 0 && reason == "" {
		reason = "no facility energy: the site had no PUE over all of it"
	}
	fields = append(fields, str(schema.FieldReason, reason)) // always: a revision must not keep an old reason
	e.emit(schema.Workload, tags(kv...), fields...)
}
