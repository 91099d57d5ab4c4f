package accounting

import "github.com/joules-energy/joules/internal/schema"

// Sources of a host's IT energy, best first (docs/ACCOUNTING.md), and the
// two parts of the last resort (GPUs + CPU), kept apart because their
// coverage is counted differently.
const (
	sourceBMCCounter    = iota // the BMC's input energy counter
	sourceBMCIntegrated        // the BMC's input power, integrated by the agent
	sourceBMCPower             // the BMC's input power, integrated here
	nBMCSources
)

// Cells of a host beyond its BMC sources: a BMC counter's steps across a
// restart (what it read since the restart: every source that measured that
// time comes first), and the last resort's two parts.
const (
	srcRestart = nBMCSources     // a BMC counter's steps across a restart
	srcGPU     = nBMCSources + 1 // the host's GPUs
	srcCPU     = nBMCSources + 2 // the host's RAPL zones
	nHostCells = nBMCSources + 3
)

var sourceNames = [nBMCSources]string{schema.SourceBMCCounter, schema.SourceBMCIntegrated, schema.SourceBMCPower}

// A meter's sources, best first, are a host's BMC sources: its counter,
// its power integrated by the agent, its power integrated here, and its
// counter's steps across a restart.
const (
	meterPower    = sourceBMCPower
	meterRestart  = srcRestart
	nMeterSources = srcRestart + 1
)

// levelSlots is how many slots each level's windows have (window, hour,
// day): within a window, a host's or meter's energy is built slot by slot
// from the best source that covered the slot, so a source that stops
// halfway through a window leaves the rest to the next one instead of
// taking the whole window down with it.
var levelSlots = [nLevels]int{6, 12, 24}

// cell is what one source measured in one slot of a window.
type cell struct {
	J float64 // joules
	S float32 // covered series-seconds: steps no longer than max_gap
	G float32 // series-seconds a counter spanned over a longer step: its energy is known, the time is not covered
}

func (c cell) has() bool { return c.J != 0 || c.S != 0 || c.G != 0 }

// cells are a source's slots in one window; nil until it has data.
type cells []cell

// amount is energy and the time that had data, within one window.
type amount struct {
	Joules  float64
	Seconds float64 // covered: steps no longer than MaxGap
}

func (m *amount) add(joules, sec float64) { m.Joules += joules; m.Seconds += sec }

func (m amount) has() bool { return m.Joules != 0 || m.Seconds != 0 }

type hostAcc struct {
	Src         [nHostCells]cells
	CPU         amount // the window's CPU energy, for kind=cpu
	Implausible int32  // steps of its series not counted: beyond what it can draw
}

type gpuAcc struct {
	Energy      amount // a named field: gob skips an embedded unexported type
	IdleJoules  float64
	ActivitySum float64
	ActivityN   int32
	SM          bool // the activity is SM activity, not utilization
	Implausible int32
}

// meterAcc holds a meter's energy from its counter, its power integrated
// by the agent and its power integrated here, by slot: the best that has
// data counts, so a meter whose counter comes and goes is never summed
// twice.
type meterAcc struct {
	Src         [nMeterSources]cells
	Implausible int32
}

// window holds what was measured in one tumbling window, by entity id.
type window struct {
	Start, Size int64 // unix ns
	Slots       int
	Hosts       map[uint32]hostAcc
	GPUs        map[uint32]gpuAcc
	Meters      map[uint32]meterAcc
	Work        map[uint32]float64
	Loads       map[uint32]loadAcc // by workload on a host
	HostCPUs    map[uint32]mean    // by host: its CPUs, for the requested-CPUs rule
	HasLoads    bool               // a partial's: its partition had workloads
	Written     bool               // derived points were written at least once
	Dirty       bool               // changed since they were written
}

func newWindow(start, size int64, slots int) *window {
	return &window{Start: start, Size: size, Slots: slots, Hosts: map[uint32]hostAcc{}, GPUs: map[uint32]gpuAcc{},
		Meters: map[uint32]meterAcc{}, Work: map[uint32]float64{}, Loads: map[uint32]loadAcc{}, HostCPUs: map[uint32]mean{}}
}

// update applies f to m[k] (a zero value where there is none): the values
// are held inline, which halves a window's memory.
func update[K comparable, V any](m map[K]V, k K, f func(*V)) {
	v := m[k]
	f(&v)
	m[k] = v
}

// span is the part of one step that falls in a window: [From, To) of a
// step of Len nanoseconds measuring Amount in all. Covered says the step
// was no longer than max_gap; a counter's longer step still counts its
// energy, as Gap time.
type span struct {
	From, To, Len int64
	Amount        float64
	Covered       bool
	Remove        bool // a step taken back: its time comes off
	Restart       bool // a counter's step across a restart: the energy since it, the time before unknown
}

// seconds is the span's time, negative when it is taken back.
func (sp span) seconds() float64 {
	sec := float64(sp.To-sp.From) / 1e9
	if sp.Remove {
		return -sec
	}
	return sec
}

func (sp span) share() float64 { return sp.Amount * float64(sp.To-sp.From) / float64(sp.Len) }

// addCells spreads a span over the slots it overlaps.
func (w *window) addCells(c cells, sp span) cells {
	if c == nil {
		c = make(cells, w.Slots)
	}
	slot := w.Size / int64(w.Slots)
	for i := min(int64(w.Slots)-1, max(0, (sp.From-w.Start)/slot)); i < int64(w.Slots); i++ {
		s0, s1 := w.Start+i*slot, w.Start+(i+1)*slot
		if i == int64(w.Slots)-1 {
			s1 = w.Start + w.Size // the last slot takes what integer division leaves
		}
		if s0 >= sp.To {
			break
		}
		o := min(sp.To, s1) - max(sp.From, s0)
		if o <= 0 {
			continue
		}
		c[i].J += sp.Amount * float64(o) / float64(sp.Len)
		sec := float32(float64(o) / 1e9)
		if sp.Remove {
			sec = -sec
		}
		if sp.Covered {
			c[i].S += sec
		} else {
			c[i].G += sec
		}
	}
	return c
}

// add puts a series' span of energy (or work) in. (Maps of values, read,
// changed and stored back: a closure here would escape, an allocation per
// point.)
func (w *window) add(s *series, sp span, idle bool) {
	share := sp.share()
	sec := 0.0
	if sp.Covered {
		sec = sp.seconds()
	}
	id := s.Entity
	switch s.In {
	case inGPUEnergy:
		g := w.GPUs[id]
		g.Energy.add(share, sec)
		if idle {
			g.IdleJoules += share
		}
		w.GPUs[id] = g
	case inCPUEnergy:
		h := w.Hosts[id]
		h.CPU.add(share, sec)
		h.Src[srcCPU] = w.addCells(h.Src[srcCPU], sp)
		w.Hosts[id] = h
	case inBMCEnergy, inBMCPower:
		src := sourceOf(s, sp)
		h := w.Hosts[id]
		h.Src[src] = w.addCells(h.Src[src], sp)
		w.Hosts[id] = h
	case inMeterEnergy, inMeterPower:
		src := sourceOf(s, sp)
		m := w.Meters[id]
		m.Src[src] = w.addCells(m.Src[src], sp)
		w.Meters[id] = m
	case inWork:
		w.Work[id] += share
	}
	w.Dirty = true
}

// addGPUToHost puts a GPU's span into its host's components.
func (w *window) addGPUToHost(host uint32, sp span) {
	h := w.Hosts[host]
	h.Src[srcGPU] = w.addCells(h.Src[srcGPU], sp)
	w.Hosts[host] = h
}

// implausible counts a step of a series that was not counted.
func (w *window) implausible(s *series, host uint32) {
	switch s.In {
	case inGPUEnergy:
		update(w.GPUs, s.Entity, func(g *gpuAcc) { g.Implausible++ })
		update(w.Hosts, host, func(h *hostAcc) { h.Implausible++ })
	case inCPUEnergy, inBMCEnergy, inBMCPower:
		update(w.Hosts, s.Entity, func(h *hostAcc) { h.Implausible++ })
	case inMeterEnergy, inMeterPower:
		update(w.Meters, s.Entity, func(m *meterAcc) { m.Implausible++ })
	}
	w.Dirty = true
}

// sourceOf is the source a host's or meter's step counts as: its power
// integrated here, its counter across a restart, or its energy's method.
func sourceOf(s *series, sp span) int {
	switch {
	case s.In == inBMCPower || s.In == inMeterPower:
		return sourceBMCPower
	case sp.Restart:
		return srcRestart
	}
	return int(s.Method)
}
