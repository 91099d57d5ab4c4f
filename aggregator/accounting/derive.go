package accounting

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/joules-energy/joules/internal/schema"
)

// windowResult is what one window says, before it becomes points
// (emit.go): energy per GPU, host, rack, hall, site and meter, PUE and
// pPUE, work per joule and reconciliation.
type windowResult struct {
	Res    string // the resolution tag
	Start  time.Time
	Size   float64 // seconds
	GPUs   []gpuResult
	Hosts  []*hostResult         // by topology
	Sums   map[Topology]scopeSum // racks, halls and sites, as keys with the narrower parts empty
	Meters []meterResult         // the meters that count, by name
	PUEs   []pueResult           // sites, then halls
	Work   []workResult
	Recon  []reconResult
	Loads  []loadResult // workloads by site, then the site's unattributed energy
	// HasLoads says workloads were ever seen: then every site has an
	// unattributed rest, also in windows without workloads.
	HasLoads bool
	// ModelWork is work by site, unit and model served, for work per
	// joule per model once the window's workloads are known (ledger.go).
	ModelWork map[workKey]float64
}

type gpuResult struct {
	Key                          gpuKey
	Joules, Coverage, IdleJoules float64
	Energy                       bool // the GPU sent energy in the window
	Activity, Watts              float64
	HasActivity, SM              bool
	Implausible                  int32
}

// hostResult is a host's IT energy in a window.
type hostResult struct {
	Key          Topology
	IT, Coverage float64
	Sources      []string // the sources used, best first
	LowerBound   bool     // part of it is GPUs + CPU only
	BMC          bool     // all of it came from the BMC
	GPU, CPU     float64
	GPUs         int
	HasCPU       bool
	Implausible  int32
}

func (h *hostResult) source() string {
	if len(h.Sources) == 0 {
		return sourceNone
	}
	return strings.Join(h.Sources, "+")
}

type scopeSum struct {
	IT, GPU, CPU, Coverage float64
	Hosts, Reporting       int
	Estimated              int     // hosts whose IT energy is partly GPUs + CPU, a lower bound
	BMCIT                  float64 // IT energy of the hosts measured wholly by their BMC
	Implausible            int32
}

func (s *scopeSum) add(h *hostResult) {
	s.IT += h.IT
	s.GPU += h.GPU
	s.CPU += h.CPU
	s.Coverage += h.Coverage
	s.Hosts++
	if h.Coverage > 0 {
		s.Reporting++
	}
	if h.LowerBound {
		s.Estimated++
	}
	if h.BMC {
		s.BMCIT += h.IT
	}
	s.Implausible += h.Implausible
}

type meterResult struct {
	key         meterKey
	reach       reach
	joules      float64
	coverage    float64
	implausible int32
}

// deriver computes one window's result.
type deriver struct {
	a *Accountant
	w *window
	r *windowResult
	// the window's end and the time before which an entity silent since
	// is forgotten (unix ns)
	end, forget int64
	hosts       map[Topology]*hostResult
	// the window's sums by key
	hostAccs map[Topology]hostAcc
	gpuAccs  map[gpuKey]gpuAcc
	workAccs map[workKey]float64
}

// derive computes what a window says. It changes no accounting state: the
// caller writes the points, and updates /metrics and the rolling values.
func (a *Accountant) derive(lv *level, w *window) *windowResult {
	r := &windowResult{Res: lv.name, Start: time.Unix(0, w.Start).UTC(), Size: float64(lv.size) / 1e9, HasLoads: w.HasLoads || len(a.ents.Loads) > 0}
	d := &deriver{a: a, w: w, r: r, end: w.Start + lv.size, forget: w.Start - int64(a.cfg.ForgetAfter)}
	ents := a.ents
	d.hostAccs = make(map[Topology]hostAcc, len(w.Hosts))
	for id, acc := range w.Hosts {
		d.hostAccs[ents.Hosts[id]] = acc
	}
	d.gpuAccs = make(map[gpuKey]gpuAcc, len(w.GPUs))
	for id, acc := range w.GPUs {
		d.gpuAccs[ents.GPUs[id]] = acc
	}
	d.workAccs = make(map[workKey]float64, len(w.Work))
	for id, v := range w.Work {
		d.workAccs[ents.Works[id]] = v
	}
	d.hosts = map[Topology]*hostResult{}
	for id, p := range ents.HostSeen {
		if p.expected(d.end, d.forget) {
			d.host(ents.Hosts[id])
		}
	}
	for k := range d.hostAccs {
		d.host(k)
	}
	for k := range d.gpuAccs {
		d.host(k.Topology)
	}
	d.gpus()
	d.hostsIT()
	d.meters()
	sites, halls := d.scopes()
	pues := map[scopeKey]pueResult{}
	for _, sk := range append(sites, halls...) {
		p := d.pue(sk)
		pues[sk] = p
		r.PUEs = append(r.PUEs, p)
	}
	if lv.id == levelWindow {
		d.workloads() // an hour's and a day's are their windows' sums
	}
	d.work(pues)
	d.reconcile()
	return r
}

func compareMeters(x, y meterKey) int {
	return strings.Compare(x.Site+"\x00"+x.Hall+"\x00"+x.Rack+"\x00"+x.name(), y.Site+"\x00"+y.Hall+"\x00"+y.Rack+"\x00"+y.name())
}

func compareHosts(x, y Topology) int {
	return strings.Compare(x.Site+"\x00"+x.Hall+"\x00"+x.Rack+"\x00"+x.Host, y.Site+"\x00"+y.Hall+"\x00"+y.Rack+"\x00"+y.Host)
}

func (d *deriver) host(k Topology) *hostResult {
	h := d.hosts[k]
	if h == nil {
		h = &hostResult{Key: k}
		d.hosts[k] = h
	}
	return h
}

// gpus computes each GPU's energy and activity per watt, and sums them per
// host.
func (d *deriver) gpus() {
	size := d.r.Size
	keys := slices.SortedFunc(maps.Keys(d.gpuAccs), func(x, y gpuKey) int {
		if c := compareHosts(x.Topology, y.Topology); c != 0 {
			return c
		}
		return strings.Compare(x.GPU, y.GPU)
	})
	for _, k := range keys {
		g := d.gpuAccs[k]
		h := d.host(k.Topology)
		res := gpuResult{Key: k, Implausible: g.Implausible}
		if g.Energy.has() {
			h.GPU += g.Energy.Joules
			h.GPUs++
			res.Energy, res.Joules, res.Coverage, res.IdleJoules = true, g.Energy.Joules, min(1, g.Energy.Seconds/size), g.IdleJoules
		}
		if g.ActivityN > 0 && g.Energy.Seconds > 0 && g.Energy.Joules > 0 {
			res.HasActivity, res.SM = true, g.SM
			res.Activity, res.Watts = g.ActivitySum/float64(g.ActivityN), g.Energy.Joules/g.Energy.Seconds
		}
		if res.Energy || res.HasActivity {
			d.r.GPUs = append(d.r.GPUs, res)
		}
	}
}

// expectedGPUs counts each host's GPUs that sent energy within
// forget_after, so that a GPU gone silent lowers the coverage of a host
// measured by its components.
func (d *deriver) expectedGPUs() map[Topology]int {
	expected := map[Topology]int{}
	for id, p := range d.a.ents.GPUSeen {
		if p.expected(d.end, d.forget) {
			expected[d.a.ents.GPUs[id].Topology]++
		}
	}
	return expected
}

// hostsIT builds each host's IT energy, slot by slot, from the best
// source that has data (sources.go), and sums racks, halls and sites.
func (d *deriver) hostsIT() {
	expected := d.expectedGPUs()
	ents := d.a.ents
	for _, k := range slices.SortedFunc(maps.Keys(d.hosts), compareHosts) {
		h := d.hosts[k]
		acc := d.hostAccs[k]
		id := ents.HostIDs[k]
		h.CPU, h.HasCPU, h.Implausible = acc.CPU.Joules, acc.CPU.has(), acc.Implausible
		// Best first: the BMC's counter, the agent's integration, its
		// power integrated here, its counter across a restart, components.
		var srcs [nBMCSources + 2]source
		for src := range nBMCSources {
			srcs[src] = source{cells: acc.Src[src], series: seriesOf(ents.HostSeries, id, src)}
		}
		srcs[srcRestart] = source{cells: acc.Src[srcRestart], series: seriesOf(ents.HostSeries, id, sourceBMCCounter)}
		srcs[srcRestart+1] = components(acc, max(h.GPUs, expected[k]), seriesOf(ents.HostSeries, id, hostCPU), d.w.Slots)
		p := pick(srcs[:], d.w.Slots, d.r.Size/float64(d.w.Slots))
		h.IT, h.Coverage = p.joules, min(1, p.covered/d.r.Size)
		for src := range nBMCSources {
			if p.used&(1<<src) != 0 || src == sourceBMCCounter && p.used&(1<<srcRestart) != 0 {
				h.Sources = append(h.Sources, sourceNames[src])
			}
		}
		if p.used&(1<<(srcRestart+1)) != 0 {
			h.Sources = append(h.Sources, sourceComponents)
			h.LowerBound = true
		}
		h.BMC = len(h.Sources) > 0 && !h.LowerBound
		d.r.Hosts = append(d.r.Hosts, h)
	}
	d.r.Sums = map[Topology]scopeSum{}
	for _, h := range d.r.Hosts {
		for _, sk := range scopesOf(h.Key) {
			s := d.r.Sums[sk]
			s.add(h)
			d.r.Sums[sk] = s
		}
	}
}

// scopeOf names the scope of a rack, hall or site key.
func scopeOf(k Topology) string {
	switch {
	case k.Rack != "":
		return schema.ScopeRack
	case k.Hall != "":
		return schema.ScopeHall
	}
	return schema.ScopeSite
}

// scopesOf lists the rack, hall and site a host is in, as host keys with
// the narrower parts empty; a host without a rack or hall label is in no
// rack or hall.
func scopesOf(k Topology) []Topology {
	scopes := []Topology{{Site: k.Site}}
	if k.Hall != "" {
		scopes = append(scopes, Topology{Site: k.Site, Hall: k.Hall})
	}
	if k.Rack != "" {
		scopes = append(scopes, Topology{Site: k.Site, Hall: k.Hall, Rack: k.Rack})
	}
	return scopes
}

// meters computes every meter expected in the window: its energy, slot
// by slot from the best of its counter, the agent's integration and its
// power integrated here, and its coverage.
func (d *deriver) meters() {
	ents := d.a.ents
	ids := map[uint32]bool{}
	for id, p := range ents.MeterSeen {
		if p.expected(d.end, d.forget) {
			ids[uint32(id)] = true
		}
	}
	for id := range d.w.Meters {
		ids[id] = true
	}
	var all []meterResult
	for id := range ids {
		k := ents.Meters[id]
		r := meterResult{key: k, reach: d.a.reachOf(k)}
		if m, ok := d.w.Meters[id]; ok {
			var srcs [nMeterSources]source
			for src := range nMeterSources {
				kind := src
				if src == meterRestart {
					kind = sourceBMCCounter
				}
				srcs[src] = source{cells: m.Src[src], series: seriesOf(ents.MeterSeries, id, kind)}
			}
			p := pick(srcs[:], d.w.Slots, d.r.Size/float64(d.w.Slots))
			r.joules, r.coverage, r.implausible = p.joules, min(1, p.covered/d.r.Size), m.Implausible
		}
		all = append(all, r)
	}
	d.r.Meters = countedMeters(all)
	slices.SortFunc(d.r.Meters, func(x, y meterResult) int { return compareMeters(x.key, y.key) })
}
