package accounting

import (
	"cmp"
	"slices"
	"strings"

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

// mean is a gauge's readings in a window: their sum and count.
type mean struct {
	Sum float64
	N   int32
}

// shareSet is one agent pass's shares of one GPU: which workloads had
// which share of it at time T (unix ns).
type shareSet struct {
	T      int64
	Loads  []uint32
	Shares []float64
	// Used says a step was shared by it: a share of its pass that comes
	// later is late (the step would otherwise be taken back from other
	// workloads than it was given to).
	Used bool
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
	i, found := slices.BinarySearchFunc(sets, t, func(x shareSet, t int64) int { return cmp.Compare(x.T, t) })
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
	if set.Used {
		a.stats.LatePoints++
		return
	}
	if j := slices.Index(set.Loads, s.Load); j >= 0 {
		set.Shares[j] = v
	} else {
		set.Loads, set.Shares = append(set.Loads, s.Load), append(set.Shares, v)
	}
	a.ents.Shares[s.Entity] = sets
}

// sharesAt is the set of a GPU's shares from the pass at t, the start of
// one of its energy steps: the processes that ran then share the step. No
// set: the step is unattributed (no workload ran, or the agent reports
// none).
func (a *Accountant) sharesAt(gpu uint32, t int64) *shareSet {
	sets := a.ents.Shares[gpu]
	i, found := slices.BinarySearchFunc(sets, t, func(x shareSet, t int64) int { return cmp.Compare(x.T, t) })
	if !found {
		return nil
	}
	sets[i].Used = true
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
