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
	amount
	IdleJoules  float64
	ActivitySum float64
	ActivityN   int
	SM          bool // the activity is SM activity, not utilization
}

type meterAcc struct{ Energy, Power amount }

func (m *meterAcc) best() amount {
	if m.Energy.has() {
		return m.Energy
	}
	return m.Power
}

// window holds what was measured in one tumbling window.
type window struct {
	Start, Size int64 // unix ns
	Hosts       map[hostKey]*hostAcc
	GPUs        map[gpuKey]*gpuAcc
	Meters      map[meterKey]*meterAcc
	Work        map[workKey]float64
	Written     bool // derived points were written at least once
	Dirty       bool // changed since they were written
}

func newWindow(start, size int64) *window {
	return &window{Start: start, Size: size, Hosts: map[hostKey]*hostAcc{}, GPUs: map[gpuKey]*gpuAcc{},
		Meters: map[meterKey]*meterAcc{}, Work: map[workKey]float64{}}
}

// entry returns m[k], adding a zero value first where there is none.
func entry[K comparable, V any](m map[K]*V, k K) *V {
	v := m[k]
	if v == nil {
		v = new(V)
		m[k] = v
	}
	return v
}

func (w *window) host(k hostKey) *hostAcc    { return entry(w.Hosts, k) }
func (w *window) gpu(k gpuKey) *gpuAcc       { return entry(w.GPUs, k) }
func (w *window) meter(k meterKey) *meterAcc { return entry(w.Meters, k) }

// add puts a series' share of energy (or work) and covered seconds in.
func (w *window) add(s *series, joules, sec float64, idle bool) {
	switch s.In {
	case inGPUEnergy:
		g := w.gpu(gpuKey{s.Host, s.GPU})
		g.add(joules, sec)
		if idle {
			g.IdleJoules += joules
		}
	case inCPUEnergy:
		w.host(s.Host).CPU.add(joules, sec)
	case inBMCEnergy:
		w.host(s.Host).BMC[s.Method].add(joules, sec)
	case inBMCPower:
		w.host(s.Host).BMC[sourceBMCPower].add(joules, sec)
	case inMeterEnergy:
		w.meter(s.Meter).Energy.add(joules, sec)
	case inMeterPower:
		w.meter(s.Meter).Power.add(joules, sec)
	case inWork:
		w.Work[workKey{s.Host, s.GPU, s.Unit}] += joules
	}
	w.Dirty = true
}
