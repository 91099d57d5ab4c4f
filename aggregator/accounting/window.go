package accounting

// Sources of a host's IT energy, best first (docs/ACCOUNTING.md).
const (
	sourceBMCCounter    = iota // the BMC's input energy counter
	sourceBMCIntegrated        // the BMC's input power, integrated by the agent
	sourceBMCPower             // the BMC's input power, integrated here
	nBMCSources
)

var sourceNames = [nBMCSources]string{"bmc_counter", "bmc_integrated", "bmc_power_integrated"}

// sourceComponents is the last resort: GPUs + CPU RAPL, a lower bound.
const sourceComponents = "components_lower_bound"

// amount is energy and the time that had data, within one window.
type amount struct {
	Joules  float64
	Seconds float64 // covered: steps no longer than MaxGap
}

func (m *amount) add(joules, sec float64) { m.Joules += joules; m.Seconds += sec }

func (m amount) has() bool { return m.Joules != 0 || m.Seconds != 0 }

type hostAcc struct {
	BMC [nBMCSources]amount
	CPU amount
}

type gpuAcc struct {
	Energy      amount // a named field: gob skips an embedded unexported type
	IdleJoules  float64
	ActivitySum float64
	ActivityN   int32
	SM          bool // the activity is SM activity, not utilization
}

// meterAcc holds a meter's energy from its counter, from its power
// integrated by the agent, and from its power integrated here; the first
// that has data counts, so a meter whose counter comes and goes is never
// summed twice.
type meterAcc struct {
	Energy [2]amount // sourceBMCCounter, sourceBMCIntegrated
	Power  amount
}

func (m *meterAcc) best() (amount, int) {
	for kind, e := range m.Energy {
		if e.has() {
			return e, kind
		}
	}
	return m.Power, meterPower
}

// window holds what was measured in one tumbling window, by entity id.
type window struct {
	Start, Size int64 // unix ns
	Hosts       map[uint32]hostAcc
	GPUs        map[uint32]gpuAcc
	Meters      map[uint32]meterAcc
	Work        map[uint32]float64
	Written     bool // derived points were written at least once
	Dirty       bool // changed since they were written
}

func newWindow(start, size int64) *window {
	return &window{Start: start, Size: size, Hosts: map[uint32]hostAcc{}, GPUs: map[uint32]gpuAcc{},
		Meters: map[uint32]meterAcc{}, Work: map[uint32]float64{}}
}

// update applies f to m[k] (a zero value where there is none): the values
// are held inline, which halves a window's memory.
func update[V any](m map[uint32]V, k uint32, f func(*V)) {
	v := m[k]
	f(&v)
	m[k] = v
}

// add puts a series' share of energy (or work) and covered seconds in.
func (w *window) add(s *series, joules, sec float64, idle bool) {
	switch s.In {
	case inGPUEnergy:
		update(w.GPUs, s.Entity, func(g *gpuAcc) {
			g.Energy.add(joules, sec)
			if idle {
				g.IdleJoules += joules
			}
		})
	case inCPUEnergy:
		update(w.Hosts, s.Entity, func(h *hostAcc) { h.CPU.add(joules, sec) })
	case inBMCEnergy:
		update(w.Hosts, s.Entity, func(h *hostAcc) { h.BMC[s.Method].add(joules, sec) })
	case inBMCPower:
		update(w.Hosts, s.Entity, func(h *hostAcc) { h.BMC[sourceBMCPower].add(joules, sec) })
	case inMeterEnergy:
		update(w.Meters, s.Entity, func(m *meterAcc) { m.Energy[s.Method].add(joules, sec) })
	case inMeterPower:
		update(w.Meters, s.Entity, func(m *meterAcc) { m.Power.add(joules, sec) })
	case inWork:
		w.Work[s.Entity] += joules
	}
	w.Dirty = true
}
