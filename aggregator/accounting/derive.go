package accounting

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/joules-energy/joules/aggregator"
)

// Derived measurements (docs/SCHEMA.md).
const (
	measEnergy         = "joules_energy"
	measPUE            = "joules_pue"
	measWork           = "joules_work_efficiency"
	measActivity       = "joules_gpu_activity_per_watt"
	measReconciliation = "joules_reconciliation"
)

// scopeKey names a site (Hall empty) or a hall for PUE and work rates.
type scopeKey struct{ Scope, Site, Hall string }

// pueResult is PUE over one window or range of one scope.
type pueResult struct {
	PUE, Facility, IT                      float64
	OK                                     bool
	Category                               int
	Coverage, FacilityCoverage, ITCoverage float64
	Reason                                 string
}

// rollingPUE keeps a scope's PUE per window (a day of them) and per day
// (30 of them) for the rolling values.
type rollingPUE struct {
	Windows map[int64]pueResult
	Days    map[int64]pueResult
}

// Tick writes the windows whose grace has passed, writes again those that
// late points changed since, lets go of those older than MaxLateness, and
// returns the derived points.
func (a *Accountant) Tick(now time.Time) []aggregator.Point {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := now.UnixNano()
	var out []aggregator.Point
	for li, lv := range a.levels {
		starts := slices.Sorted(maps.Keys(lv.windows))
		for _, ws := range starts {
			w := lv.windows[ws]
			end := ws + lv.size
			if end+int64(a.cfg.Grace) <= n && (!w.Written || w.Dirty) {
				if w.Written {
					a.stats.Revisions++
				}
				out = a.derive(li, lv, w, out)
				w.Written, w.Dirty = true, false
			}
			if w.Written && end+int64(a.cfg.MaxLateness) < min(n, a.watermark) {
				delete(lv.windows, ws)
				lv.Released = max(lv.Released, end)
			}
		}
	}
	a.prune(n)
	return out
}

// prune forgets what is too old to matter.
func (a *Accountant) prune(now int64) {
	forget := now - int64(a.cfg.ForgetAfter) - int64(a.cfg.MaxLateness)
	for k, s := range a.series {
		if s.Seen && s.LastT < forget {
			a.ents.count(s, -1)
			delete(a.series, k)
		}
	}
	for _, seen := range [][]presence{a.ents.HostSeen, a.ents.MeterSeen, a.ents.GPUSeen} {
		for i := range seen {
			if seen[i].Seen && seen[i].Last < forget {
				seen[i] = presence{}
			}
		}
	}
	for _, r := range a.rolling {
		for ws := range r.Windows {
			if ws < now-int64(25*time.Hour) {
				delete(r.Windows, ws)
			}
		}
		for ws := range r.Days {
			if ws < now-int64(31*24*time.Hour) {
				delete(r.Days, ws)
			}
		}
	}
}

// hostResult is a host's IT energy in a window.
type hostResult struct {
	IT, Coverage float64
	Source       string
	LowerBound   bool
	BMC          bool // IT energy came from the BMC
	GPU, CPU     float64
	GPUs         int
}

type meterResult struct {
	key      meterKey
	joules   float64
	coverage float64
}

type scopeSum struct {
	IT, GPU, CPU, Coverage float64
	Hosts, Reporting       int
	LowerBound             bool
	BMCIT                  float64 // IT energy of the hosts measured by their BMC
}

type deriver struct {
	a     *Accountant
	w     *window
	res   string
	t     time.Time
	size  float64 // seconds
	out   []aggregator.Point
	hosts map[Topology]*hostResult
	sums  map[Topology]scopeSum // racks, halls and sites of the hosts
	// the window's sums by key
	hostAccs map[Topology]hostAcc
	gpuAccs  map[gpuKey]gpuAcc
	workAccs map[workKey]float64
	// meters expected in the window, with their energy
	meters []meterResult
}

func (a *Accountant) derive(li int, lv *level, w *window, out []aggregator.Point) []aggregator.Point {
	d := &deriver{a: a, w: w, res: lv.name, t: time.Unix(0, w.Start).UTC(), size: float64(lv.size) / 1e9, out: out}
	end := w.Start + lv.size
	forget := w.Start - int64(a.cfg.ForgetAfter)
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
		if p.Seen && p.First < end && p.Last >= forget {
			d.hosts[ents.Hosts[id]] = &hostResult{}
		}
	}
	for k := range d.hostAccs {
		d.host(k)
	}
	for k := range d.gpuAccs {
		d.host(k.Topology)
	}
	meters := map[uint32]bool{}
	for id, p := range ents.MeterSeen {
		if p.Seen && p.First < end && p.Last >= forget {
			meters[uint32(id)] = true
		}
	}
	for id := range w.Meters {
		meters[id] = true
	}
	for id := range meters {
		r := meterResult{key: ents.Meters[id]}
		if m, ok := w.Meters[id]; ok {
			b, kind := m.best()
			r.joules, r.coverage = b.Joules, min(1, b.Seconds/(d.size*seriesOf(ents.MeterSeries, id, kind)))
		}
		d.meters = append(d.meters, r)
	}
	d.meters = countedMeters(d.meters)
	slices.SortFunc(d.meters, func(x, y meterResult) int { return compareMeters(x.key, y.key) })

	d.gpus()
	d.hostsIT()
	d.metersOut()
	sites, halls := d.scopes()
	pues := map[scopeKey]pueResult{}
	for _, sk := range append(sites, halls...) {
		r := d.pue(sk)
		pues[sk] = r
		d.emitPUE(sk, d.res, r)
		a.recordPUE(li, sk, w.Start, lv.size, r, d)
	}
	d.work(pues)
	d.reconcile()
	if li == 0 {
		a.latest.energy = d.sums
	}
	return d.out
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
		h = &hostResult{}
		d.hosts[k] = h
	}
	return h
}

// gpus writes each GPU's energy and activity per watt, and sums them per host.
func (d *deriver) gpus() {
	gpuSeconds := map[Topology]float64{}
	keys := slices.SortedFunc(maps.Keys(d.gpuAccs), func(x, y gpuKey) int {
		if c := compareHosts(x.Topology, y.Topology); c != 0 {
			return c
		}
		return strings.Compare(x.GPU, y.GPU)
	})
	for _, k := range keys {
		g := d.gpuAccs[k]
		h := d.host(k.Topology)
		if g.Energy.has() {
			h.GPU += g.Energy.Joules
			h.GPUs++
			gpuSeconds[k.Topology] += min(g.Energy.Seconds, d.size)
			d.emit(measEnergy, d.topoTags(k.Topology, "scope", "gpu", "kind", "gpu", "gpu", k.GPU),
				num("joules", g.Energy.Joules), num("coverage", min(1, g.Energy.Seconds/d.size)), num("idle_joules", g.IdleJoules))
		}
		if g.ActivityN > 0 && g.Energy.Seconds > 0 && g.Energy.Joules > 0 {
			watts := g.Energy.Joules / g.Energy.Seconds
			activity := g.ActivitySum / float64(g.ActivityN)
			signal := "utilization"
			if g.SM {
				signal = "sm_activity"
			}
			d.emit(measActivity, d.topoTags(k.Topology, "scope", "gpu", "gpu", k.GPU),
				num("activity", activity), num("watts", watts), num("per_watt", activity/watts), str("signal", signal))
		}
	}
	// A host's GPUs are those that sent energy within forget_after, so a
	// GPU gone silent lowers the coverage of a components-only host.
	expected := map[Topology]int{}
	end, forget := d.w.Start+d.w.Size, d.w.Start-int64(d.a.cfg.ForgetAfter)
	for id, p := range d.a.ents.GPUSeen {
		if p.Seen && p.First < end && p.Last >= forget {
			expected[d.a.ents.GPUs[id].Topology]++
		}
	}
	for k, s := range gpuSeconds {
		h := d.hosts[k]
		h.Coverage = s / (d.size * float64(max(h.GPUs, expected[k]))) // used when the components are the host's source
	}
}

// hostsIT picks each host's IT energy from the best source it has.
func (d *deriver) hostsIT() {
	for _, k := range slices.SortedFunc(maps.Keys(d.hosts), compareHosts) {
		h := d.hosts[k]
		acc, hasAcc := d.hostAccs[k]
		if hasAcc {
			h.CPU = acc.CPU.Joules
		}
		componentsCoverage := h.Coverage
		if h.GPUs == 0 && hasAcc {
			componentsCoverage = min(1, acc.CPU.Seconds/(d.size*seriesOf(d.a.ents.HostSeries, d.a.ents.HostIDs[k], hostCPU)))
		}
		h.Coverage = 0
		picked := false
		if hasAcc {
			for src := range nBMCSources {
				if b := acc.BMC[src]; b.has() {
					n := seriesOf(d.a.ents.HostSeries, d.a.ents.HostIDs[k], src) // several chassis: each must report
					h.IT, h.Coverage, h.Source, h.BMC, picked = b.Joules, min(1, b.Seconds/(d.size*n)), sourceNames[src], true, true
					break
				}
			}
		}
		if !picked && (h.GPUs > 0 || (hasAcc && acc.CPU.has())) {
			h.IT, h.Coverage, h.Source, h.LowerBound = h.GPU+h.CPU, componentsCoverage, sourceComponents, true
		}
		if h.Source == "" {
			h.Source = "none" // expected but silent: coverage 0
		}
		d.emit(measEnergy, d.topoTags(k, "scope", "host", "kind", "it"),
			num("joules", h.IT), num("coverage", h.Coverage), str("source", h.Source), boolean("lower_bound", h.LowerBound))
		if h.GPUs > 0 {
			d.emit(measEnergy, d.topoTags(k, "scope", "host", "kind", "gpu"), num("joules", h.GPU))
		}
		if hasAcc && acc.CPU.has() {
			d.emit(measEnergy, d.topoTags(k, "scope", "host", "kind", "cpu"), num("joules", h.CPU))
		}
	}
	d.sums = map[Topology]scopeSum{} // rack, hall and site as host keys with the lower parts empty
	for k, h := range d.hosts {
		for _, sk := range scopesOf(k) {
			s := d.sums[sk]
			s.add(h)
			d.sums[sk] = s
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(d.sums), compareHosts) {
		s := d.sums[k]
		scope := scopeOf(k)
		d.emit(measEnergy, d.topoTags(k, "scope", scope, "kind", "it"), num("joules", s.IT), num("coverage", s.Coverage/float64(s.Hosts)),
			boolean("lower_bound", s.LowerBound), integer("hosts", s.Hosts), integer("hosts_reporting", s.Reporting))
		d.emit(measEnergy, d.topoTags(k, "scope", scope, "kind", "gpu"), num("joules", s.GPU))
		d.emit(measEnergy, d.topoTags(k, "scope", scope, "kind", "cpu"), num("joules", s.CPU))
	}
}

// scopeOf names the scope of a rack, hall or site key.
func scopeOf(k Topology) string {
	switch {
	case k.Rack != "":
		return "rack"
	case k.Hall != "":
		return "hall"
	}
	return "site"
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
		s.LowerBound = true
	}
	if h.BMC {
		s.BMCIT += h.IT
	}
}

// hostsIn sums the hosts of a site, hall or rack (empty parts match all).
func (d *deriver) hostsIn(site, hall, rack string) scopeSum {
	var s scopeSum
	for k, h := range d.hosts {
		if k.Site == site && (hall == "" || k.Hall == hall) && (rack == "" || k.Rack == rack) {
			s.add(h)
		}
	}
	return s
}

func (d *deriver) metersOut() {
	for _, m := range d.meters {
		d.emit(measEnergy, tags("resolution", d.res, "scope", "meter", "kind", m.key.Role, "site", m.key.Site, "hall", m.key.Hall, "rack", m.key.Rack, "meter", m.key.name()),
			num("joules", m.joules), num("coverage", m.coverage))
	}
}

// meterTypes is, per role, the order in which the kinds of equipment of
// one endpoint count: an endpoint that reports a transfer switch feeding a
// rack PDU measures the same energy twice, so only the items of its first
// kind in this order count. A chassis-level reading counts only where the
// endpoint reports no equipment.
var meterTypes = map[string][]string{
	roleFacilityInput: {"electrical_bus", "transfer_switch", "floor_pdu", "rack_pdu", "power_shelf", "chassis"},
	roleUPSOutput:     {"electrical_bus", "transfer_switch", "floor_pdu", "rack_pdu", "power_shelf", "chassis"},
	rolePDUOutput:     {"rack_pdu", "floor_pdu", "power_shelf", "transfer_switch", "electrical_bus", "chassis"},
	roleITInput:       {"power_shelf", "rack_pdu", "floor_pdu", "transfer_switch", "electrical_bus", "chassis"},
}

// countedMeters keeps, of each endpoint and role, the meters of the kind
// that counts.
func countedMeters(meters []meterResult) []meterResult {
	type endpoint struct{ site, hall, rack, bmc, role string }
	rank := func(k meterKey) int {
		if i := slices.Index(meterTypes[k.Role], k.Type); i >= 0 {
			return i
		}
		return len(meterTypes[k.Role]) // an unknown kind counts last
	}
	best := map[endpoint]int{}
	for _, m := range meters {
		e := endpoint{m.key.Site, m.key.Hall, m.key.Rack, m.key.BMC, m.key.Role}
		if r, ok := best[e]; !ok || rank(m.key) < r {
			best[e] = rank(m.key)
		}
	}
	return slices.DeleteFunc(meters, func(m meterResult) bool {
		return rank(m.key) != best[endpoint{m.key.Site, m.key.Hall, m.key.Rack, m.key.BMC, m.key.Role}]
	})
}

// scopes lists the sites and halls the window knows.
func (d *deriver) scopes() (sites, halls []scopeKey) {
	seen := map[scopeKey]bool{}
	add := func(site, hall string) {
		for _, sk := range []scopeKey{{Scope: "site", Site: site}, {Scope: "hall", Site: site, Hall: hall}} {
			if sk.Scope == "hall" && hall == "" || seen[sk] {
				continue
			}
			seen[sk] = true
			if sk.Scope == "site" {
				sites = append(sites, sk)
			} else {
				halls = append(halls, sk)
			}
		}
	}
	for k := range d.hosts {
		add(k.Site, k.Hall)
	}
	for _, m := range d.meters {
		add(m.key.Site, m.key.Hall)
	}
	byName := func(x, y scopeKey) int { return strings.Compare(x.Site+"\x00"+x.Hall, y.Site+"\x00"+y.Hall) }
	slices.SortFunc(sites, byName)
	slices.SortFunc(halls, byName)
	return sites, halls
}

// meterSum sums the meters of a role in a scope. A hall takes the meters
// labelled with it; a site takes its site-wide meters (neither hall nor
// rack label) when it has any, else all of its meters. It returns the
// meters it summed.
func (d *deriver) meterSum(sk scopeKey, role string) (joules, coverage float64, used []meterResult) {
	siteWide := false
	if sk.Scope == "site" {
		for _, m := range d.meters {
			if m.key.Site == sk.Site && m.key.Role == role && m.key.Hall == "" && m.key.Rack == "" {
				siteWide = true
			}
		}
	}
	for _, m := range d.meters {
		if m.key.Site != sk.Site || m.key.Role != role {
			continue
		}
		if sk.Scope == "hall" && m.key.Hall != sk.Hall || siteWide && (m.key.Hall != "" || m.key.Rack != "") {
			continue
		}
		joules += m.joules
		coverage += m.coverage
		used = append(used, m)
	}
	if len(used) > 0 {
		coverage /= float64(len(used))
	}
	return joules, coverage, used
}

// pue computes PUE (a site) or pPUE (a hall) as ISO/IEC 30134-2 defines
// it: facility energy over IT energy in the same window, with the
// category the IT meters give.
func (d *deriver) pue(sk scopeKey) pueResult {
	var r pueResult
	f, fCov, facilityMeters := d.meterSum(sk, roleFacilityInput)
	nF := len(facilityMeters)
	r.Facility, r.FacilityCoverage = f, fCov
	hostsLowerBound := false
	var notes []string
	for _, c := range []struct {
		role     string
		category int
	}{{roleUPSOutput, 1}, {rolePDUOutput, 2}, {roleITInput, 3}} {
		j, cov, used := d.meterSum(sk, c.role)
		if len(used) == 0 {
			continue
		}
		if uncovered := d.uncoveredHosts(sk, used); uncovered > 0 {
			notes = append(notes, fmt.Sprintf("%s meters do not feed %d of its hosts' racks: not used", c.role, uncovered))
			continue
		}
		r.IT, r.ITCoverage, r.Category = j, cov, c.category
		break
	}
	if r.Category == 0 {
		s := d.hostsIn(sk.Site, sk.Hall, "")
		if s.Hosts > 0 {
			r.IT, r.ITCoverage, r.Category = s.IT, s.Coverage/float64(s.Hosts), 3
			hostsLowerBound = s.LowerBound
		}
	}
	r.Coverage = min(r.FacilityCoverage, r.ITCoverage)
	where := "site " + sk.Site
	if sk.Scope == "hall" {
		where = "hall " + sk.Hall
	}
	switch {
	case nF == 0:
		r.Reason = "no facility_input meter in " + where
	case fCov == 0:
		r.Reason = "the facility_input meters of " + where + " sent no data in this window"
	case r.Category == 0:
		r.Reason = "no IT energy in " + where + ": no ups_output, pdu_output or it_input meter and no host"
	case r.ITCoverage == 0 || r.IT <= 0:
		r.Reason = "the IT energy sources of " + where + " sent no data in this window"
	default:
		r.PUE, r.OK = r.Facility/r.IT, true
		if r.Coverage < 1 {
			notes = append(notes, fmt.Sprintf("partial data: facility coverage %.4g, IT coverage %.4g", r.FacilityCoverage, r.ITCoverage))
		}
		if hostsLowerBound {
			notes = append(notes, "some hosts' IT energy is a lower bound (GPUs + CPU), so this PUE is an upper bound")
		}
	}
	if r.OK {
		r.Reason = strings.Join(notes, "; ")
	}
	return r
}

// uncoveredHosts counts the hosts of a scope that none of the meters is
// upstream of: a meter feeds the hosts of its rack, or of its hall if it
// has no rack label, or of its site if it has neither. A site whose PDUs
// are metered in one hall only must not take them for its IT energy.
func (d *deriver) uncoveredHosts(sk scopeKey, meters []meterResult) int {
	n := 0
	for k := range d.hosts {
		if k.Site != sk.Site || sk.Scope == "hall" && k.Hall != sk.Hall {
			continue
		}
		fed := slices.ContainsFunc(meters, func(m meterResult) bool {
			return (m.key.Hall == "" || m.key.Hall == k.Hall) && (m.key.Rack == "" || m.key.Rack == k.Rack)
		})
		if !fed {
			n++
		}
	}
	return n
}

func (d *deriver) emitPUE(sk scopeKey, resolution string, r pueResult) {
	fields := []aggregator.Field{num("facility_joules", r.Facility), num("it_joules", r.IT), integer("category", r.Category),
		num("coverage", r.Coverage), num("facility_coverage", r.FacilityCoverage), num("it_coverage", r.ITCoverage)}
	if r.OK {
		fields = append(fields, num("pue", r.PUE))
	}
	// Always written, empty when there is nothing to say: a revised window
	// must not keep the reason of its first writing (InfluxDB merges the
	// fields of a series at one time).
	fields = append(fields, str("reason", r.Reason))
	d.emit(measPUE, tags("resolution", resolution, "scope", sk.Scope, "site", sk.Site, "hall", sk.Hall), fields...)
	d.a.latest.setPUE(sk, resolution, r)
}

// recordPUE keeps a window's PUE for the rolling values and writes them.
func (a *Accountant) recordPUE(li int, sk scopeKey, start, size int64, r pueResult, d *deriver) {
	if li == 1 {
		return
	}
	rp := a.rolling[sk]
	if rp == nil {
		rp = &rollingPUE{Windows: map[int64]pueResult{}, Days: map[int64]pueResult{}}
		a.rolling[sk] = rp
	}
	end := start + size
	if li == 0 {
		rp.Windows[start] = r
		for _, span := range []time.Duration{time.Hour, 24 * time.Hour} {
			d.emitPUE(sk, "rolling_"+resolutionName(span), rollup(rp.Windows, end-int64(span), end, size))
		}
		return
	}
	rp.Days[start] = r
	d.emitPUE(sk, "rolling_30d", rollup(rp.Days, end-int64(30*24*time.Hour), end, size))
}

// rollup is PUE over a range from the windows in it that had a PUE:
// energy over energy, never an average of ratios.
func rollup(windows map[int64]pueResult, from, to, size int64) pueResult {
	var r pueResult
	n := float64((to - from) / size)
	got := 0
	for ws, x := range windows {
		if ws < from || ws >= to || !x.OK {
			continue
		}
		r.Facility += x.Facility
		r.IT += x.IT
		r.Coverage += x.Coverage
		r.FacilityCoverage += x.FacilityCoverage
		r.ITCoverage += x.ITCoverage
		r.Category = max(r.Category, x.Category)
		got++
	}
	r.Coverage /= n
	r.FacilityCoverage /= n
	r.ITCoverage /= n
	if got == 0 || r.IT <= 0 {
		r.Reason = "no window in the range had a PUE"
		return r
	}
	r.PUE, r.OK = r.Facility/r.IT, true
	if r.Coverage < 1 {
		r.Reason = fmt.Sprintf("%d of %d windows had a PUE; coverage %.4g", got, int(n), r.Coverage)
	}
	return r
}

// work writes work per IT joule and per facility joule (work per IT
// joule over PUE) per GPU where the workload is bound to GPUs, per host,
// hall and site.
func (d *deriver) work(pues map[scopeKey]pueResult) {
	type scoped struct {
		sk   scopeKey
		unit string
	}
	hosts := map[workKey]float64{} // by host and unit, GPU left empty
	scopes := map[scoped]float64{} // sites and halls
	for _, k := range slices.SortedFunc(maps.Keys(d.workAccs), compareWork) {
		work := d.workAccs[k]
		if k.GPU != "" {
			g, ok := d.gpuAccs[gpuKey{k.Topology, k.GPU}]
			if id, aliased := d.a.ents.GPUAlias[gpuKey{k.Topology, k.GPU}]; !ok && aliased {
				g, ok = d.gpuAccs[d.a.ents.GPUs[id]] // the workload labels its GPU by index
			}
			if ok {
				d.emitWork(d.topoTags(k.Topology, "scope", "gpu", "gpu", k.GPU, "unit", k.Unit), work, g.Energy.Joules, pues[scopeKey{Scope: "site", Site: k.Site}])
			}
		}
		hosts[workKey{k.Topology, "", k.Unit}] += work
		scopes[scoped{scopeKey{Scope: "site", Site: k.Site}, k.Unit}] += work
		if k.Hall != "" {
			scopes[scoped{scopeKey{Scope: "hall", Site: k.Site, Hall: k.Hall}, k.Unit}] += work
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(hosts), compareWork) {
		var it float64
		if h := d.hosts[k.Topology]; h != nil {
			it = h.IT
		}
		d.emitWork(d.topoTags(k.Topology, "scope", "host", "unit", k.Unit), hosts[k], it, pues[scopeKey{Scope: "site", Site: k.Site}])
	}
	for _, sc := range slices.SortedFunc(maps.Keys(scopes), func(x, y scoped) int {
		return strings.Compare(x.sk.Scope+x.sk.Site+x.sk.Hall+x.unit, y.sk.Scope+y.sk.Site+y.sk.Hall+y.unit)
	}) {
		work := scopes[sc]
		pue := pues[scopeKey{Scope: "site", Site: sc.sk.Site}]
		if sc.sk.Scope == "hall" {
			pue = pues[sc.sk]
		}
		s := d.hostsIn(sc.sk.Site, sc.sk.Hall, "")
		d.emitWork(tags("resolution", d.res, "scope", sc.sk.Scope, "site", sc.sk.Site, "hall", sc.sk.Hall, "unit", sc.unit), work, s.IT, pue)
		if d.res == d.a.levels[0].name {
			d.a.latest.setWork(sc.sk, sc.unit, work, s.IT, pue)
		}
	}
}

func compareWork(x, y workKey) int {
	if c := compareHosts(x.Topology, y.Topology); c != 0 {
		return c
	}
	return strings.Compare(x.GPU+"\x00"+x.Unit, y.GPU+"\x00"+y.Unit)
}

func (d *deriver) emitWork(t []aggregator.Tag, work, joules float64, pue pueResult) {
	fields := []aggregator.Field{num("work", work), num("it_joules", joules)}
	if joules > 0 {
		fields = append(fields, num("per_joule", work/joules))
		if pue.OK {
			fields = append(fields, num("per_facility_joule", work/joules/pue.PUE))
		}
	}
	d.emit(measWork, t, fields...)
}

// reconcile writes what the parts do not explain: a host's BMC against
// its GPUs + CPU, and the PDUs of a rack (or hall, or site) against the
// BMCs of the hosts there.
func (d *deriver) reconcile() {
	for _, k := range slices.SortedFunc(maps.Keys(d.hosts), compareHosts) {
		h := d.hosts[k]
		if !h.BMC || h.GPU+h.CPU == 0 {
			continue
		}
		d.emitRemainder(d.topoTags(k, "scope", "host", "kind", "bmc_vs_components"), h.IT, h.GPU+h.CPU)
	}
	pdus := map[Topology]float64{}
	for _, m := range d.meters {
		if m.key.Role == rolePDUOutput {
			pdus[Topology{Site: m.key.Site, Hall: m.key.Hall, Rack: m.key.Rack}] += m.joules
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(pdus), compareHosts) {
		scope := scopeOf(k)
		s := d.hostsIn(k.Site, k.Hall, k.Rack)
		d.emitRemainder(d.topoTags(k, "scope", scope, "kind", "pdu_vs_bmcs"), pdus[k], s.BMCIT)
	}
}

func (d *deriver) emitRemainder(t []aggregator.Tag, reference, parts float64) {
	fields := []aggregator.Field{num("reference_joules", reference), num("parts_joules", parts), num("remainder_joules", reference-parts)}
	if reference > 0 {
		fields = append(fields, num("remainder_ratio", (reference-parts)/reference))
	}
	d.emit(measReconciliation, t, fields...)
}

func (d *deriver) emit(measurement string, t []aggregator.Tag, fields ...aggregator.Field) {
	d.out = append(d.out, aggregator.Point{Measurement: measurement, Tags: t, Fields: fields, Time: d.t})
}

// topo is the tags of an entity at this window's resolution: its topology
// and the pairs given.
func (d *deriver) topoTags(k Topology, kv ...string) []aggregator.Tag {
	return tags(append([]string{"resolution", d.res, "site", k.Site, "hall", k.Hall, "rack", k.Rack, "host", k.Host}, kv...)...)
}

// tags builds sorted tags from key, value pairs, leaving out empty values.
func tags(kv ...string) []aggregator.Tag {
	t := make([]aggregator.Tag, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			t = append(t, aggregator.Tag{Key: kv[i], Value: kv[i+1]})
		}
	}
	slices.SortFunc(t, func(x, y aggregator.Tag) int { return strings.Compare(x.Key, y.Key) })
	return t
}

func num(key string, v float64) aggregator.Field {
	val, ok := lineprotocol.FloatValue(v)
	if !ok {
		val, _ = lineprotocol.FloatValue(0)
	}
	return aggregator.Field{Key: key, Value: val}
}

func integer(key string, v int) aggregator.Field {
	return aggregator.Field{Key: key, Value: lineprotocol.IntValue(int64(v))}
}

func str(key, v string) aggregator.Field {
	val, _ := lineprotocol.StringValue(v)
	return aggregator.Field{Key: key, Value: val}
}

func boolean(key string, v bool) aggregator.Field {
	return aggregator.Field{Key: key, Value: lineprotocol.BoolValue(v)}
}
