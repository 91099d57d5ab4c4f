package redfishsim

import (
	"io/fs"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Meter is the point of a simulated site's power chain a BMC stands for:
// a host's PSUs, a PDU, a UPS or the facility meter. A BMC given one
// serves the meter's power and energy in place of every power and energy
// reading its mockup has for the same thing, consistently: whichever
// resource a reader takes the host's or the meter's power from, it reads
// the same number.
type Meter interface {
	Power(t time.Time) MeterPower
	// Energy is the meter's energy counter at t: the integral of its power.
	Energy(t time.Time) MeterEnergy
}

// MeterPower is a meter's power at an instant, in watts.
type MeterPower struct {
	// Input is the AC side: a host's PSU inputs (its BMC's host power), a
	// PDU's or UPS's mains, the facility feed.
	Input float64
	// Output is what leaves: a host's PSUs' DC output, a PDU's outlets, a
	// UPS's output. For a facility meter it is the input.
	Output float64
	// CPU and Fans are a host's parts, for the component sensors.
	CPU, Fans float64
	// Capacity is a host's PSUs' rated power together (0: the mockup's).
	Capacity float64
}

// MeterEnergy is a meter's energy counters, in joules.
type MeterEnergy struct {
	Input, Output float64
}

// quantity is what a reading of a bound BMC serves.
type quantity int

const (
	qInput quantity = iota
	qOutput
	qCPU
	qFans
	qInputEnergy
	qOutputEnergy
	qCapacity
	qAverage // of the input over the reading's interval
	qMin
	qMax
)

func (q quantity) energy() bool { return q == qInputEnergy || q == qOutputEnergy }
func (q quantity) stat() bool   { return q == qAverage || q == qMin || q == qMax }

// rule replaces one number of one document.
type rule struct {
	at       []string // inside the document; an excerpt's ends with "Reading"
	q        quantity
	share    float64 // of the meter's quantity
	kWh      bool    // an energy in kWh, not J
	interval time.Duration
}

// meterPlan is, per document of a bound BMC's mockup, the numbers that
// come from the meter.
type meterPlan struct {
	rules map[string][]rule
}

// planner reads a mockup tree once and decides its meterPlan.
type planner struct {
	plan  *meterPlan
	refs  map[string]rule // sensor path → the rule of the excerpt that cites it
	docs  map[string]map[string]any
	paths []string
	hosts map[string]bool // the host chassis
}

func newMeterPlan(b *BMC) (*meterPlan, error) {
	p := &planner{plan: &meterPlan{rules: map[string][]rule{}}, refs: map[string]rule{}, docs: map[string]map[string]any{}, hosts: map[string]bool{}}
	err := filepath.WalkDir(b.root, func(file string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "index.json" {
			return err
		}
		rel, err := filepath.Rel(b.root, filepath.Dir(file))
		if err != nil {
			return err
		}
		docPath := "/redfish/v1"
		if rel != "." {
			docPath += "/" + filepath.ToSlash(rel)
		}
		doc, err := b.load(docPath)
		if err != nil {
			return err
		}
		if m, ok := doc.(map[string]any); ok {
			p.docs[docPath] = m
			p.paths = append(p.paths, docPath)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.chassis()
	p.equipment()
	p.sensors()
	return p.plan, nil
}

func (p *planner) doc(docPath string) map[string]any { return p.docs[strings.TrimSuffix(docPath, "/")] }

// link is the @odata.id of doc[key].
func link(doc map[string]any, key string) string {
	m, _ := doc[key].(map[string]any)
	id, _ := m["@odata.id"].(string)
	return strings.TrimSuffix(id, "/")
}

// members lists a collection's member paths.
func (p *planner) members(collection string) []string {
	doc := p.doc(collection)
	list, _ := doc["Members"].([]any)
	var out []string
	for _, m := range list {
		if mm, ok := m.(map[string]any); ok {
			if id, _ := mm["@odata.id"].(string); id != "" {
				out = append(out, strings.TrimSuffix(id, "/"))
			}
		}
	}
	return out
}

// number returns the number at a path inside doc.
func number(doc any, at []string) (float64, bool) {
	v := lookup(doc, at)
	f, ok := v.(float64)
	return f, ok
}

func lookup(v any, at []string) any {
	for _, k := range at {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// add plans one number, if the mockup has it; an excerpt's DataSourceUri
// sensor then serves the same.
func (p *planner) add(docPath string, r rule) {
	doc := p.doc(docPath)
	if _, ok := number(doc, r.at); !ok || r.share <= 0 {
		return
	}
	p.plan.rules[docPath] = append(p.plan.rules[docPath], r)
	if n := len(r.at); n > 0 && r.at[n-1] == "Reading" {
		if ex, ok := lookup(doc, r.at[:n-1]).(map[string]any); ok {
			if uri, _ := ex["DataSourceUri"].(string); uri != "" {
				p.refs[strings.TrimSuffix(uri, "/")] = r
			}
		}
	}
}

// count is how many of the documents have a number at the path.
func (p *planner) count(docs []string, at ...string) int {
	n := 0
	for _, d := range docs {
		if _, ok := number(p.doc(d), at); ok {
			n++
		}
	}
	return n
}

func share(total float64, n int) float64 {
	if n == 0 {
		return 0
	}
	return total / float64(n)
}

// chassis plans the host readings of the top-level chassis: those linked
// to a computer system, or all of them if none is, as readers decide
// which chassis is the host. Contained chassis (cards, baseboards) keep
// their mockup readings. On a service with PowerEquipment the chassis
// are the equipment's enclosures: only their PSUs carry the meter.
func (p *planner) chassis() {
	root := p.doc("/redfish/v1")
	var top, withSystems []string
	for _, c := range p.members(link(root, "Chassis")) {
		doc := p.doc(c)
		if doc == nil {
			continue
		}
		links, _ := doc["Links"].(map[string]any)
		if link(links, "ContainedBy") != "" {
			continue
		}
		top = append(top, c)
		if systems, _ := links["ComputerSystems"].([]any); len(systems) > 0 {
			withSystems = append(withSystems, c)
		}
	}
	if link(root, "PowerEquipment") != "" {
		for _, c := range top {
			if ps := p.powerSubsystem(c); ps != "" {
				p.psus(p.members(link(p.doc(ps), "PowerSupplies")), 1)
			}
		}
		return
	}
	hosts := top
	if len(withSystems) > 0 {
		hosts = withSystems
	}
	for _, c := range hosts {
		p.hosts[c] = true
		p.hostChassis(c, 1/float64(len(hosts)))
	}
}

// powerSubsystem is a chassis' PowerSubsystem, at its usual place when the
// link leads somewhere without PSUs (the DMTF power shelf links its Sensors).
func (p *planner) powerSubsystem(c string) string {
	ps := link(p.doc(c), "PowerSubsystem")
	if ps == "" {
		return ""
	}
	if link(p.doc(ps), "PowerSupplies") == "" {
		ps = c + "/PowerSubsystem"
	}
	return ps
}

func (p *planner) hostChassis(c string, part float64) {
	doc := p.doc(c)
	if env := link(doc, "EnvironmentMetrics"); env != "" {
		p.add(env, rule{at: []string{"PowerWatts", "Reading"}, q: qInput, share: part})
		p.add(env, rule{at: []string{"EnergyJoules", "Reading"}, q: qInputEnergy, share: part})
		p.add(env, rule{at: []string{"EnergykWh", "Reading"}, q: qInputEnergy, share: part, kWh: true})
	}
	if ps := p.powerSubsystem(c); ps != "" {
		p.add(ps, rule{at: []string{"CapacityWatts"}, q: qCapacity, share: part})
		p.psus(p.members(link(p.doc(ps), "PowerSupplies")), part)
	}
	if pw := link(doc, "Power"); pw != "" {
		p.legacyPower(pw, part)
	}
}

// psus plans the PSUs of a PowerSubsystem: the power is shared by the
// PSUs that report it.
func (p *planner) psus(psus []string, part float64) {
	var metrics []string
	for _, psu := range psus {
		if m := link(p.doc(psu), "Metrics"); m != "" {
			metrics = append(metrics, m)
		}
	}
	capacity := share(part, p.count(psus, "PowerCapacityWatts"))
	for _, psu := range psus {
		p.add(psu, rule{at: []string{"PowerCapacityWatts"}, q: qCapacity, share: capacity})
		ranges, _ := p.doc(psu)["InputRanges"].([]any)
		for i := range ranges {
			p.add(psu, rule{at: []string{"InputRanges", strconv.Itoa(i), "CapacityWatts"}, q: qCapacity, share: capacity})
		}
	}
	in := share(part, p.count(metrics, "InputPowerWatts", "Reading"))
	out := share(part, p.count(metrics, "OutputPowerWatts", "Reading"))
	kwh := share(part, p.count(metrics, "EnergykWh", "Reading"))
	for _, m := range metrics {
		p.add(m, rule{at: []string{"InputPowerWatts", "Reading"}, q: qInput, share: in})
		p.add(m, rule{at: []string{"OutputPowerWatts", "Reading"}, q: qOutput, share: out})
		p.add(m, rule{at: []string{"EnergykWh", "Reading"}, q: qInputEnergy, share: kwh, kWh: true})
	}
}

// legacyPower plans the legacy Power resource: PowerControl[0] is the
// whole chassis; the PSUs share it.
func (p *planner) legacyPower(pw string, part float64) {
	doc := p.doc(pw)
	p.add(pw, rule{at: []string{"PowerControl", "0", "PowerConsumedWatts"}, q: qInput, share: part})
	p.add(pw, rule{at: []string{"PowerControl", "0", "PowerCapacityWatts"}, q: qCapacity, share: part})
	interval := time.Minute
	if m, ok := number(doc, []string{"PowerControl", "0", "PowerMetrics", "IntervalInMin"}); ok && m >= 1 {
		interval = time.Duration(m) * time.Minute
	}
	for key, q := range map[string]quantity{"AverageConsumedWatts": qAverage, "MinConsumedWatts": qMin, "MaxConsumedWatts": qMax} {
		p.add(pw, rule{at: []string{"PowerControl", "0", "PowerMetrics", key}, q: q, share: part, interval: interval})
	}
	list, _ := doc["PowerSupplies"].([]any)
	var in, out, capacity int
	for _, ps := range list {
		m, _ := ps.(map[string]any)
		if _, ok := m["PowerInputWatts"].(float64); ok {
			in++
		}
		_, o1 := m["PowerOutputWatts"].(float64)
		_, o2 := m["LastPowerOutputWatts"].(float64)
		if o1 || o2 {
			out++
		}
		if c, ok := m["PowerCapacityWatts"].(float64); ok && c > 0 {
			capacity++
		}
	}
	for i, ps := range list {
		m, _ := ps.(map[string]any)
		n := strconv.Itoa(i)
		p.add(pw, rule{at: []string{"PowerSupplies", n, "PowerInputWatts"}, q: qInput, share: share(part, in)})
		p.add(pw, rule{at: []string{"PowerSupplies", n, "PowerOutputWatts"}, q: qOutput, share: share(part, out)})
		p.add(pw, rule{at: []string{"PowerSupplies", n, "LastPowerOutputWatts"}, q: qOutput, share: share(part, out)})
		if c, _ := m["PowerCapacityWatts"].(float64); c > 0 {
			p.add(pw, rule{at: []string{"PowerSupplies", n, "PowerCapacityWatts"}, q: qCapacity, share: share(part, capacity)})
		}
	}
}

// equipmentKinds are the PowerEquipment collections.
var equipmentKinds = []string{"RackPDUs", "FloorPDUs", "TransferSwitches", "PowerShelves", "ElectricalBuses"}

// equipment plans every PowerEquipment item: its summary metrics are the
// meter's output, its mains the input, its outlets share the output and
// each branch or feeder carries its outlets' share. Items of one kind
// share the meter; each kind carries all of it (a reader counts one kind).
func (p *planner) equipment() {
	pe := p.doc(link(p.doc("/redfish/v1"), "PowerEquipment"))
	if pe == nil {
		return
	}
	for _, kind := range equipmentKinds {
		items := p.members(link(pe, kind))
		for _, item := range items {
			p.item(item, 1/float64(len(items)))
		}
	}
}

func (p *planner) item(item string, part float64) {
	doc := p.doc(item)
	if m := link(doc, "Metrics"); m != "" {
		p.add(m, rule{at: []string{"PowerWatts", "Reading"}, q: qOutput, share: part})
		p.add(m, rule{at: []string{"EnergykWh", "Reading"}, q: qOutputEnergy, share: part, kWh: true})
	}
	mains := p.members(link(doc, "Mains"))
	nMains := p.metered(mains)
	p.circuits(mains, qInput, qInputEnergy, func(string) float64 { return share(part, nMains) })
	outlets := p.members(link(doc, "Outlets"))
	nOutlets := p.metered(outlets)
	p.circuits(outlets, qOutput, qOutputEnergy, func(string) float64 { return share(part, nOutlets) })
	// A branch carries the outlets that link to it; without such links the
	// branches share the output.
	perBranch := map[string]int{}
	for _, o := range outlets {
		if p.metered([]string{o}) > 0 {
			links, _ := p.doc(o)["Links"].(map[string]any)
			perBranch[link(links, "BranchCircuit")]++
		}
	}
	for _, key := range []string{"Branches", "Feeders"} {
		circuits := p.members(link(doc, key))
		n := p.metered(circuits)
		p.circuits(circuits, qOutput, qOutputEnergy, func(c string) float64 {
			if nOutlets > 0 && key == "Branches" && len(perBranch) > 0 && perBranch[""] == 0 {
				return part * float64(perBranch[c]) / float64(nOutlets)
			}
			return share(part, n)
		})
	}
	if psus := link(doc, "PowerSupplies"); psus != "" {
		p.psus(p.members(psus), part)
	}
}

// circuits plans circuits or outlets: power and energy, and the phases of
// a polyphase reading sharing the circuit's.
func (p *planner) circuits(circuits []string, power, energy quantity, shareOf func(circuit string) float64) {
	for _, c := range circuits {
		s := shareOf(c)
		p.add(c, rule{at: []string{"PowerWatts", "Reading"}, q: power, share: s})
		p.add(c, rule{at: []string{"EnergykWh", "Reading"}, q: energy, share: s, kWh: true})
		lines := p.phases(c)
		for _, line := range lines {
			p.add(c, rule{at: []string{"PolyPhasePowerWatts", line, "Reading"}, q: power, share: s / float64(len(lines))})
		}
	}
}

// phases are the lines of a circuit's polyphase power reading that add up
// to its power: line to neutral where it has them (a wye circuit), else
// every line.
func (p *planner) phases(circuit string) []string {
	readings, _ := p.doc(circuit)["PolyPhasePowerWatts"].(map[string]any)
	var all, toNeutral []string
	for line := range readings {
		if _, ok := number(readings, []string{line, "Reading"}); ok {
			all = append(all, line)
			if strings.HasSuffix(line, "ToNeutral") {
				toNeutral = append(toNeutral, line)
			}
		}
	}
	if len(toNeutral) > 0 {
		return toNeutral
	}
	return all
}

// metered counts the circuits with a power reading, whole or by phase.
func (p *planner) metered(circuits []string) int {
	n := 0
	for _, c := range circuits {
		if _, ok := number(p.doc(c), []string{"PowerWatts", "Reading"}); ok || len(p.phases(c)) > 0 {
			n++
		}
	}
	return n
}

// sensors plans the Sensors of every chassis: a sensor an excerpt cites
// serves what the excerpt serves; of the others, those of a host chassis
// follow their physical context (the chassis input, a PSU, the CPUs, the
// fans), sharing where several measure parts of one thing.
func (p *planner) sensors() {
	type group struct {
		sensors []string
		q       quantity
	}
	groups := map[string]*group{}
	for _, sp := range p.paths {
		doc := p.docs[sp]
		rt, _ := doc["ReadingType"].(string)
		if _, ok := doc["Reading"].(float64); !ok || rt == "" {
			continue
		}
		kWh := rt == "EnergykWh"
		if r, ok := p.refs[sp]; ok {
			p.add(sp, rule{at: []string{"Reading"}, q: r.q, share: r.share, kWh: kWh, interval: r.interval})
			continue
		}
		c := chassisOf(sp)
		if !p.hosts[c] || !strings.Contains(sp, "/Sensors/") {
			continue
		}
		ctx, _ := doc["PhysicalContext"].(string)
		sub, _ := doc["PhysicalSubContext"].(string)
		whole := ctx == "" || ctx == "Chassis" || ctx == "SystemBoard"
		var key string
		var q quantity
		switch {
		case rt == "Power" && whole:
			key, q = sp, qInput
		case rt == "Power" && ctx == "PowerSupply" && sub == "Output":
			key, q = c+" psu output", qOutput
		case rt == "Power" && ctx == "PowerSupply":
			key, q = c+" psu input", qInput
		case rt == "Power" && ctx == "CPU":
			key, q = c+" cpu", qCPU
		case rt == "Power" && ctx == "Fan":
			key, q = c+" fans", qFans
		case (rt == "EnergyJoules" || kWh) && whole:
			key, q = sp, qInputEnergy
		case (rt == "EnergyJoules" || kWh) && ctx == "PowerSupply":
			key, q = c+" psu energy "+rt, qInputEnergy
		default:
			continue
		}
		g := groups[key]
		if g == nil {
			g = &group{q: q}
			groups[key] = g
		}
		g.sensors = append(g.sensors, sp)
	}
	for _, g := range groups {
		for _, sp := range g.sensors {
			rt, _ := p.docs[sp]["ReadingType"].(string)
			p.add(sp, rule{at: []string{"Reading"}, q: g.q, share: 1 / float64(len(g.sensors)), kWh: rt == "EnergykWh"})
		}
	}
}

// chassisOf is /redfish/v1/Chassis/ID of a path under it.
func chassisOf(p string) string {
	parts := strings.Split(strings.TrimPrefix(p, "/redfish/v1/Chassis/"), "/")
	return "/redfish/v1/Chassis/" + parts[0]
}

// meterValues computes a request's readings, each at most once.
type meterValues struct {
	m      Meter
	t      time.Time
	power  *MeterPower
	energy *MeterEnergy
}

func (v *meterValues) pw() MeterPower {
	if v.power == nil {
		p := v.m.Power(v.t)
		v.power = &p
	}
	return *v.power
}

func (v *meterValues) en() MeterEnergy {
	if v.energy == nil {
		e := v.m.Energy(v.t)
		v.energy = &e
	}
	return *v.energy
}

// value is what rule r serves; false keeps the mockup's number.
func (v *meterValues) value(r rule) (float64, bool) {
	switch r.q {
	case qInput:
		return round(v.pw().Input * r.share), true
	case qOutput:
		return round(v.pw().Output * r.share), true
	case qCPU:
		return round(v.pw().CPU * r.share), true
	case qFans:
		return round(v.pw().Fans * r.share), true
	case qCapacity:
		c := v.pw().Capacity
		return round(c * r.share), c > 0
	case qInputEnergy, qOutputEnergy:
		j := v.en().Input
		if r.q == qOutputEnergy {
			j = v.en().Output
		}
		if r.kWh {
			return j * r.share / 3.6e6, true
		}
		return j * r.share, true
	case qAverage:
		from := v.m.Energy(v.t.Add(-r.interval)).Input
		return round((v.en().Input - from) / r.interval.Seconds() * r.share), true
	case qMin, qMax:
		const step = 10 * time.Second
		best := v.pw().Input
		for at := v.t.Add(-r.interval); at.Before(v.t); at = at.Add(step) {
			w := v.m.Power(at).Input
			if r.q == qMin {
				best = math.Min(best, w)
			} else {
				best = math.Max(best, w)
			}
		}
		return round(best * r.share), true
	}
	return 0, false
}

// applyMeter overwrites the planned numbers of live, the served copy of
// the mockup document orig, with the meter's at t. Apparent and reactive
// power beside a reading, and the document's currents, move with it.
func (b *BMC) applyMeter(docPath string, orig, live any, t time.Time) {
	rules := b.plan.rules[docPath]
	if len(rules) == 0 {
		return
	}
	v := &meterValues{m: b.opts.Meter, t: t}
	ratio := math.NaN()
	for _, r := range rules {
		old, _ := number(orig, r.at)
		n := len(r.at)
		parent, key := lookup(live, r.at[:n-1]), r.at[n-1]
		var set func(float64)
		switch x := parent.(type) {
		case map[string]any:
			if _, ok := x[key]; !ok {
				continue // dropped by a fault
			}
			set = func(f float64) { x[key] = f }
		case []any:
			i, _ := strconv.Atoi(key)
			set = func(f float64) { x[i] = f }
		default:
			continue
		}
		val, ok := v.value(r)
		if !ok {
			continue
		}
		set(val)
		if key != "Reading" || r.q.energy() || r.q.stat() || old <= 0 {
			continue
		}
		k := val / old
		if math.IsNaN(ratio) {
			ratio = k
		}
		if ex, ok := parent.(map[string]any); ok {
			for _, f := range []string{"ApparentVA", "ReactiveVAR"} {
				if o, ok := number(orig, append(append([]string{}, r.at[:n-1]...), f)); ok {
					if _, here := ex[f]; here {
						ex[f] = round(o * k)
					}
				}
			}
		}
	}
	if math.IsNaN(ratio) {
		return
	}
	m, _ := live.(map[string]any)
	for _, key := range []string{"CurrentAmps", "InputCurrentAmps", "OutputCurrentAmps"} {
		scaleReading(m, orig, []string{key}, ratio)
	}
	if phases, ok := m["PolyPhaseCurrentAmps"].(map[string]any); ok {
		for line := range phases {
			scaleReading(m, orig, []string{"PolyPhaseCurrentAmps", line}, ratio)
		}
	}
	if rt, _ := m["ReadingType"].(string); rt == "Current" {
		scaleReading(m, orig, nil, ratio)
	}
}

// scaleReading sets the excerpt at `at` of live to orig's reading × k.
func scaleReading(live map[string]any, orig any, at []string, k float64) {
	ex, ok := lookup(live, at).(map[string]any)
	if !ok {
		return
	}
	if o, ok := number(orig, append(append([]string{}, at...), "Reading")); ok {
		if _, here := ex["Reading"]; here {
			ex["Reading"] = round(o * k)
		}
	}
}
