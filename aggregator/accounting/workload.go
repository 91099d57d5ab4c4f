package accounting

import (
	"maps"
	"slices"
	"strings"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/internal/schema"
)

// loadKey names one workload on one host: its kind and id, and what
// describes it (namespace, owner, user labels) as sorted key=value pairs
// joined by NUL, so that a workload whose labels change becomes a second
// series rather than one with two sets of tags.
type loadKey struct {
	Topology
	Kind, ID, Attrs string
}

// site is the workload's key across the site: a job or pod on several hosts
// is one workload; a systemd unit is one per host (every host has its own
// nvidia-persistenced.service).
func (k loadKey) site() loadKey {
	t := Topology{Site: k.Site}
	if k.Kind == schema.WorkloadSystemdUnit {
		t.Host = k.Host
	}
	return loadKey{Topology: t, Kind: k.Kind, ID: k.ID, Attrs: k.Attrs}
}

// loadOf reads a workload's key from a share or CPU point. Strings are
// cloned: the point's point into the request body.
func loadOf(host Topology, v pointView) loadKey {
	var attrs []string
	for _, t := range v.tags {
		if schema.WorkloadTag(t.Key) {
			attrs = append(attrs, t.Key+"="+t.Value)
		}
	}
	return loadKey{Topology: host, Kind: strings.Clone(v.tag(schema.TagWorkloadKind)), ID: strings.Clone(v.tag(schema.TagWorkload)), Attrs: strings.Join(attrs, "\x00")}
}

// attrTags are a workload's describing tags as key, value pairs.
func (k loadKey) attrTags() []string {
	if k.Attrs == "" {
		return nil
	}
	var kv []string
	for _, a := range strings.Split(k.Attrs, "\x00") {
		key, val, _ := strings.Cut(a, "=")
		kv = append(kv, key, val)
	}
	return kv
}

func (k loadKey) attr(key string) string {
	for _, a := range strings.Split(k.Attrs, "\x00") {
		if v, ok := strings.CutPrefix(a, key+"="); ok {
			return v
		}
	}
	return ""
}

func (e *entities) load(k loadKey) uint32 {
	id, added := intern(e.LoadIDs, &e.Loads, k)
	if added {
		e.LoadSeen = append(e.LoadSeen, presence{})
	}
	return id
}

// loadAcc is what one workload on one host had in a window.
type loadAcc struct {
	GPU  float64 // joules: its shares of its GPUs' energy steps
	CPUs mean    // its requested CPUs
}

func (l *loadAcc) add(o loadAcc) {
	l.GPU += o.GPU
	l.CPUs.Sum += o.CPUs.Sum
	l.CPUs.N += o.CPUs.N
}

// mean is a gauge averaged over a window.
type mean struct {
	Sum float64
	N   int32
}

func (m mean) value() (float64, bool) {
	if m.N == 0 {
		return 0, false
	}
	return m.Sum / float64(m.N), true
}

// shareSet is one agent pass's shares of one GPU: which workloads had
// which share of it at time T (unix ns).
type shareSet struct {
	T      int64
	Loads  []uint32
	Shares []float64
}

// keptShareSets is how many passes of shares a GPU keeps: a step is
// shared out by the set of its start, and a step taken back (a point
// placed inside it) by the same set again, so they must outlive a series'
// reorder history.
const keptShareSets = 2 * histLen

// share takes one workload's share of a GPU from an agent pass. A pass's
// shares all carry its time; a replayed one sets the same value again.
func (a *Accountant) share(s *series, v float64, t int64) {
	s.LastT, s.Seen = max(s.LastT, t), true
	a.ents.LoadSeen[s.Load].mark(t)
	sets := a.ents.Shares[s.Entity]
	i, found := slices.BinarySearchFunc(sets, t, func(x shareSet, t int64) int { return compareInt(x.T, t) })
	if !found {
		if len(sets) >= keptShareSets && i == 0 {
			a.stats.LatePoints++ // older than every pass kept: its steps are shared out already
			return
		}
		// The oldest set's slices hold the new one's: a GPU's shares
		// allocate nothing once it has kept its sets.
		var reuse shareSet
		if len(sets) >= keptShareSets {
			reuse = sets[0]
			sets = slices.Delete(sets, 0, 1)
			i--
		}
		sets = slices.Insert(sets, i, shareSet{T: t, Loads: reuse.Loads[:0], Shares: reuse.Shares[:0]})
	}
	set := &sets[i]
	if j := slices.Index(set.Loads, s.Load); j >= 0 {
		set.Shares[j] = v
	} else {
		set.Loads, set.Shares = append(set.Loads, s.Load), append(set.Shares, v)
	}
	a.ents.Shares[s.Entity] = sets
}

func compareInt(x, y int64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// sharesAt is the set of a GPU's shares from the pass at t, the start of
// one of its energy steps: the processes that ran then share the step. No
// set: the step is unattributed (no workload ran, or the agent reports
// none).
func (a *Accountant) sharesAt(gpu uint32, t int64) *shareSet {
	sets := a.ents.Shares[gpu]
	i, found := slices.BinarySearchFunc(sets, t, func(x shareSet, t int64) int { return compareInt(x.T, t) })
	if !found {
		return nil
	}
	return &sets[i]
}

// addLoads shares a GPU's span among the workloads of a set. Shares that
// add up to more than the whole GPU (rounding in the agent) are scaled to
// it.
func (w *window) addLoads(set *shareSet, sp span) {
	if set == nil {
		return
	}
	total := 0.0
	for _, v := range set.Shares {
		total += v
	}
	scale := 1.0
	if total > 1 {
		scale = 1 / total
	}
	j := sp.share()
	for i, id := range set.Loads {
		update(w.Loads, id, func(l *loadAcc) { l.GPU += j * set.Shares[i] * scale })
	}
}

// cpus takes a gauge of CPUs: a workload's requested CPUs or a host's
// CPUs, averaged per window. A point not newer than the series' last is a
// replay, not counted twice in the mean.
func (a *Accountant) cpus(s *series, v float64, t, now int64) {
	if s.Seen && t <= s.LastT {
		a.stats.Duplicates++
		return
	}
	s.LastT, s.Seen = t, true
	if s.In == inLoadCPUs {
		a.ents.LoadSeen[s.Entity].mark(t)
	}
	for _, lv := range a.levels {
		w := a.window(lv, lv.start(t), now)
		if w == nil {
			continue
		}
		if s.In == inLoadCPUs {
			update(w.Loads, s.Entity, func(l *loadAcc) { l.CPUs.Sum += v; l.CPUs.N++ })
		} else {
			update(w.HostCPUs, s.Entity, func(m *mean) { m.Sum += v; m.N++ })
		}
		w.Dirty = true
	}
}

// pruneLoads forgets workloads silent since before forget and the share
// sets of GPUs silent as long: pods come and go by the thousand. A
// workload's id is not reused; its key's strings are let go.
func (a *Accountant) pruneLoads(forget int64) {
	e := a.ents
	for id := range e.LoadSeen {
		if p := e.LoadSeen[id]; p.Seen && p.Last < forget {
			delete(e.LoadIDs, e.Loads[id])
			e.Loads[id], e.LoadSeen[id] = loadKey{}, presence{}
		}
	}
	for gpu, sets := range e.Shares {
		if len(sets) == 0 || sets[len(sets)-1].T < forget {
			delete(e.Shares, gpu)
		}
	}
}

// onHost is a workload's window on one host.
type onHost struct {
	id  uint32
	acc loadAcc
}

// loadResult is a workload's energy across its site in a window.
type loadResult struct {
	Key                  loadKey // site-wide (loadKey.site); Kind unattributed for the rest
	GPU, HostShare, IT   float64
	Coverage             float64 // its hosts' coverage, weighted by its energy on each
	Hosts                int
	Share                float64 // of the site's IT energy
	PUE                  pueResult
	Rule, Reason         string
	unattributed         bool
	covWeight, itWeights float64
}

// workloads shares each host's IT energy among the workloads on it: each
// gets its share of the GPUs' measured energy and a share of the rest of
// the host's energy (its CPUs, memory, fans, PSU losses) by the configured
// rule; what no workload had is the site's unattributed energy, so that the
// workloads and the rest add up to the hosts' energy (docs/ACCOUNTING.md).
func (d *deriver) workloads(pues map[scopeKey]pueResult) {
	byHost := map[Topology][]onHost{}
	for id, acc := range d.w.Loads {
		k := d.a.ents.Loads[id]
		if k.Kind == "" || acc.GPU == 0 && acc.CPUs.N == 0 {
			continue
		}
		byHost[k.Topology] = append(byHost[k.Topology], onHost{id, acc})
	}
	if len(byHost) == 0 {
		return
	}
	sites := map[loadKey]*loadResult{}
	attributed := map[string]float64{} // IT energy of workloads, by site
	for _, h := range d.r.Hosts {
		loads := byHost[h.Key]
		if len(loads) == 0 {
			continue
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
		gpuScale, reason := 1.0, ""
		if sum > h.GPU && sum > 0 {
			gpuScale = h.GPU / sum
		}
		itScale, rest := 1.0, h.IT-h.GPU
		if rest < 0 {
			itScale, rest = 0, 0
			if h.GPU > 0 {
				itScale = h.IT / h.GPU
			}
			reason = "a host measured less than its GPUs: its workloads' GPU energy scaled to the host's"
		}
		shares, rule := d.hostShares(h, loads, gpus)
		for i, l := range loads {
			gpu := gpus[i] * gpuScale * itScale
			hs := rest * shares[i]
			key := d.a.ents.Loads[l.id].site()
			r := sites[key]
			if r == nil {
				r = &loadResult{Key: key, Rule: rule, PUE: pues[scopeKey{Scope: schema.ScopeSite, Site: key.Site}]}
				sites[key] = r
			}
			if r.Rule != rule {
				r.Rule = schema.RuleGPUEnergy + "+" + schema.RuleRequestedCPUs // some hosts had no CPU counts
			}
			if reason != "" {
				r.Reason = reason
			}
			r.GPU += gpu
			r.HostShare += hs
			r.IT += gpu + hs
			r.covWeight += h.Coverage * (gpu + hs)
			r.Hosts++
		}
	}
	var out []loadResult
	for _, k := range slices.SortedFunc(maps.Keys(sites), compareLoads) {
		r := sites[k]
		if r.IT > 0 {
			r.Coverage = r.covWeight / r.IT
		}
		out = append(out, *r)
		attributed[k.Site] += r.IT
	}
	for _, site := range slices.Sorted(maps.Keys(attributed)) {
		s := d.r.Sums[Topology{Site: site}]
		it, gpu := s.IT-attributed[site], s.GPU-d.attributedGPU(out, site)
		out = append(out, loadResult{Key: loadKey{Topology: Topology{Site: site}, Kind: schema.WorkloadUnattributed}, unattributed: true,
			IT: it, GPU: gpu, HostShare: it - gpu, Coverage: s.Coverage / float64(max(1, s.Hosts)), Hosts: s.Hosts,
			PUE: pues[scopeKey{Scope: schema.ScopeSite, Site: site}]})
	}
	for i := range out {
		if s := d.r.Sums[Topology{Site: out[i].Key.Site}]; s.IT > 0 {
			out[i].Share = out[i].IT / s.IT
		}
	}
	d.r.Loads = out
}

func compareLoads(x, y loadKey) int {
	return strings.Compare(x.Site+"\x00"+x.Kind+"\x00"+x.ID+"\x00"+x.Host+"\x00"+x.Attrs+"\x00"+x.Hall+"\x00"+x.Rack,
		y.Site+"\x00"+y.Kind+"\x00"+y.ID+"\x00"+y.Host+"\x00"+y.Attrs+"\x00"+y.Hall+"\x00"+y.Rack)
}

func (d *deriver) attributedGPU(out []loadResult, site string) float64 {
	var j float64
	for _, r := range out {
		if r.Key.Site == site && !r.unattributed {
			j += r.GPU
		}
	}
	return j
}

// hostShares is each workload's share of its host's energy besides the
// GPUs, and the rule that gave it. By GPU energy (the default): the share
// of the GPUs' energy it had, so the idle GPUs' part stays unattributed.
// By requested CPUs: its CPUs over the host's, where the host's CPU count
// and the workloads' requests are known; a host without them falls back to
// GPU energy.
func (d *deriver) hostShares(h *hostResult, loads []onHost, gpus []float64) ([]float64, string) {
	shares := make([]float64, len(loads))
	if d.a.cfg.HostShare == schema.RuleRequestedCPUs {
		hostCPUs, ok := d.w.HostCPUs[d.a.ents.HostIDs[h.Key]].value()
		if ok && hostCPUs > 0 {
			var total float64
			for i, l := range loads {
				if c, ok := l.acc.CPUs.value(); ok {
					shares[i] = c / hostCPUs
					total += shares[i]
				}
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
// where the site has one.
func (e *emitter) load(l loadResult) {
	kind, id := l.Key.Kind, l.Key.ID
	if l.unattributed {
		kind, id = schema.WorkloadUnattributed, ""
	}
	kv := append([]string{schema.TagResolution, e.res, schema.TagScope, schema.ScopeSite, schema.TagSite, l.Key.Site, schema.TagHost, l.Key.Host,
		schema.TagWorkloadKind, kind, schema.TagWorkload, id}, l.Key.attrTags()...)
	fields := []aggregator.Field{num(schema.FieldJoules, l.IT), num(schema.FieldGPUJoules, l.GPU), num(schema.FieldCoverage, l.Coverage),
		num(schema.FieldShare, l.Share), integer(schema.FieldHosts, l.Hosts), num(schema.FieldHostShareJoules, l.HostShare)}
	if !l.unattributed {
		fields = append(fields, str(schema.FieldRule, l.Rule))
	}
	if l.PUE.OK {
		fields = append(fields, num(schema.FieldFacilityJoules, l.IT*l.PUE.PUE), num(schema.FieldPUE, l.PUE.PUE))
	}
	fields = append(fields, str(schema.FieldReason, l.Reason)) // always: a revision must not keep an old reason
	e.emit(schema.Workload, tags(kv...), fields...)
}
