package accounting

import (
	"math"
	"strings"
	"time"

	"github.com/joules-energy/joules/internal/energy"
)

// histLen is how many of a series' last points are kept, so a point that
// comes out of order (after a later one of its series) lands in its place.
const histLen = 4

// histPoint is one of a series' last points: its time, its value (a power
// reading; for a counter, the value later steps measure from), and whether
// the step from the point before it was ordinary, so a point may be put
// between them.
type histPoint struct {
	T     int64
	V     float64
	Plain bool
	Idle  bool // a GPU's step to this point was idle energy
}

func (s *series) push(p histPoint) {
	if int(s.NHist) == histLen {
		copy(s.Hist[:], s.Hist[1:])
		s.NHist--
		s.Young = false // the series' first point is no longer held
	}
	s.Hist[s.NHist] = p
	s.NHist++
}

func (s *series) last() (histPoint, bool) {
	if s.NHist == 0 {
		return histPoint{}, false
	}
	return s.Hist[s.NHist-1], true
}

// Reasons a step is not counted, for joules_accounting_implausible_steps_total.
const (
	implausibleJump    = "jump"    // a counter rose faster than its device can draw
	implausibleDrop    = "drop"    // a counter fell, and not to a restart
	implausibleRestart = "restart" // a counter restarted, and read more since than its device can draw
	implausiblePower   = "power"   // a power reading above what its device can draw
)

// bound is what the device behind a series can draw.
func (a *Accountant) bound(s *series) energy.Bound {
	b := a.cfg.Bounds
	switch s.In {
	case inGPUEnergy:
		// The driver's counter is read directly, never stale: a dip is a
		// second of power at most.
		if lim := a.ents.GPULimit[s.Entity]; lim > 0 {
			return energy.Bound{MaxWatts: 1.5 * lim, DipSeconds: 1}
		}
		return energy.Bound{MaxWatts: b.GPUWatts, DipSeconds: 1}
	case inCPUEnergy:
		return energy.Bound{MaxWatts: b.CPUWatts, DipSeconds: 1}
	case inBMCEnergy, inBMCPower:
		if c := a.ents.Capacity[s.CapKey]; c > 0 {
			return energy.Bound{MaxWatts: 1.1 * c}
		}
		return energy.Bound{MaxWatts: b.HostWatts}
	case inMeterEnergy, inMeterPower:
		if m, ok := a.cfg.meterConfig(a.ents.Meters[s.Entity]); ok && m.MaxWatts > 0 {
			return energy.Bound{MaxWatts: m.MaxWatts}
		}
		return energy.Bound{MaxWatts: b.MeterWatts}
	}
	return energy.Bound{} // work has no physical bound
}

// step takes an in-order point of a counter or power series.
func (a *Accountant) step(s *series, v float64, t int64, epoch string, now int64) {
	changed := s.Seen && epoch != s.Epoch
	if !s.Seen || changed {
		s.Epoch = strings.Clone(epoch)
	}
	if s.In == inBMCPower || s.In == inMeterPower {
		a.power(s, v, t, now)
		return
	}
	a.counter(s, v, t, changed, now)
}

// counter takes a reading of an energy or work counter.
func (a *Accountant) counter(s *series, v float64, t int64, epochChanged bool, now int64) {
	b := a.bound(s)
	prev, hasPrev := s.last()
	var st energy.Step
	switch {
	case !s.Track.Seen:
		st = s.Track.Update(v, t, b)
	case epochChanged && s.Raw:
		st = s.Track.Restart(v, t, b) // a reboot restarted the RAPL counter
		a.stats.Resets++
	case epochChanged:
		st = s.Track.Rebase(v, t) // the writer could not continue it: a new base
		a.stats.Epochs++
	default:
		if j, ok := a.wrapped(s, v, t, b); ok {
			st = s.Track.Wrapped(v, t, j)
			a.stats.Wraps++
		} else {
			st = s.Track.Update(v, t, b)
		}
	}
	s.LastT, s.Seen = t, true
	a.seen(s, t)
	switch st.Event {
	case energy.Counted, energy.Reset, energy.Rebased, energy.Restarted:
		if st.Event == energy.Reset {
			a.stats.Resets++
		}
		covered := time.Duration(st.To-st.From) <= a.cfg.MaxGap
		if !covered {
			a.stats.Gaps++
		}
		a.attributeWith(s, st.From, st.To, st.Joules, covered, false, st.Event == energy.Reset || st.Event == energy.Restarted, a.idleNow(s), now)
	case energy.Held:
		a.stats.Dips++
	case energy.Suspect:
		reason := implausibleJump
		if v < s.Track.Last {
			reason = implausibleDrop
		}
		a.implausible(s, reason, t, now)
	case energy.Implausible:
		a.implausible(s, implausibleRestart, t, now)
	}
	plain := st.Event == energy.Counted && hasPrev && st.From == prev.T
	s.push(histPoint{T: t, V: s.Track.Last, Plain: plain, Idle: a.idleNow(s)})
}

// wrapped says whether a RAPL zone that went backwards wrapped at its
// range: only where the step is short and the energy it implies is one a
// CPU can draw (a reboot, which restarts the counter, is more likely
// otherwise; its epoch says so where the agent labels it).
func (a *Accountant) wrapped(s *series, v float64, t int64, b energy.Bound) (float64, bool) {
	if s.In != inCPUEnergy || v >= s.Track.Last {
		return 0, false
	}
	wrap := a.raplWrap[s.RAPLKey]
	dt := time.Duration(t - s.Track.LastTime)
	j := v + wrap - s.Track.Last
	if wrap <= 0 || j < 0 || dt > a.cfg.MaxGap || j > b.MaxJoules(dt.Seconds()) {
		return 0, false
	}
	return j, true
}

// power integrates a power reading by trapezoids; a step over MaxGap is a
// gap, never filled; a reading above what the device can draw is not power.
func (a *Accountant) power(s *series, watts float64, t, now int64) {
	if watts > a.bound(s).MaxWatts {
		a.implausible(s, implausiblePower, t, now)
		return
	}
	t0, w0, first := s.LastT, s.LastV, !s.Seen
	s.LastT, s.LastV, s.Seen = t, watts, true
	a.seen(s, t)
	s.push(histPoint{T: t, V: watts, Plain: true})
	if first {
		return
	}
	if time.Duration(t-t0) > a.cfg.MaxGap {
		a.stats.Gaps++
		return
	}
	a.attribute(s, t0, t, trapezoid(w0, watts, t0, t), true, false, now)
}

func trapezoid(w0, w1 float64, t0, t1 int64) float64 { return (w0 + w1) / 2 * float64(t1-t0) / 1e9 }

// outOfOrder places a point older than its series' newest. A point at the
// time of one already held is a duplicate (a replayed spool, a retried
// request); one between two held points is put between them: the step
// they made is taken back and the two steps through the new point are
// counted instead. A point older than every held point is taken for a
// replayed duplicate, unless the series is so young that it is its new
// first point.
func (a *Accountant) outOfOrder(s *series, v float64, t, now int64) {
	i := 0
	for ; i < int(s.NHist); i++ {
		if s.Hist[i].T == t {
			a.stats.Duplicates++
			return
		}
		if s.Hist[i].T > t {
			break
		}
	}
	if i == 0 {
		a.prepend(s, v, t, now)
		return
	}
	p, q := s.Hist[i-1], s.Hist[i]
	power := s.In == inBMCPower || s.In == inMeterPower
	b := a.bound(s)
	ok := q.Plain
	if power {
		ok = ok && v <= b.MaxWatts
	} else {
		// A counter point must lie between its neighbours, each part of
		// the step within the bound.
		ok = ok && v >= p.V && v <= q.V && v-p.V <= b.MaxJoules(float64(t-p.T)/1e9) && q.V-v <= b.MaxJoules(float64(q.T-t)/1e9)
	}
	if !ok {
		a.stats.Unplaced++
		return
	}
	if p.T < a.letGoUntil(a.levels[0], now) {
		a.late(s, 0)
		return
	}
	gap := a.cfg.MaxGap
	if power {
		if d := time.Duration(q.T - p.T); d <= gap {
			a.attribute(s, p.T, q.T, -trapezoid(p.V, q.V, p.T, q.T), true, true, now)
		}
		if time.Duration(t-p.T) <= gap {
			a.attribute(s, p.T, t, trapezoid(p.V, v, p.T, t), true, false, now)
		}
		if time.Duration(q.T-t) <= gap {
			a.attribute(s, t, q.T, trapezoid(v, q.V, t, q.T), true, false, now)
		}
	} else {
		// The step taken back and the two through the new point keep the
		// idleness the step was counted with.
		a.attributeWith(s, p.T, q.T, -(q.V - p.V), time.Duration(q.T-p.T) <= gap, true, false, q.Idle, now)
		a.attributeWith(s, p.T, t, v-p.V, time.Duration(t-p.T) <= gap, false, false, q.Idle, now)
		a.attributeWith(s, t, q.T, q.V-v, time.Duration(q.T-t) <= gap, false, false, q.Idle, now)
	}
	a.stats.Reordered++
	a.seen(s, t)
	// Insert, keeping the newest points.
	h := s.Hist[:s.NHist]
	h = append(h[:i], append([]histPoint{{T: t, V: v, Plain: true, Idle: q.Idle}}, h[i:]...)...)
	if len(h) > histLen {
		h = h[len(h)-histLen:]
		s.Young = false
	}
	s.NHist = uint8(copy(s.Hist[:], h))
}

// prepend takes a point older than every held one: the new first point of
// a young series (its batches came in reverse order), else a replay.
func (a *Accountant) prepend(s *series, v float64, t, now int64) {
	if !s.Young || s.NHist == 0 {
		a.stats.Duplicates++
		return
	}
	q := s.Hist[0]
	power := s.In == inBMCPower || s.In == inMeterPower
	b := a.bound(s)
	switch {
	case power && v > b.MaxWatts, !power && (v > q.V || q.V-v > b.MaxJoules(float64(q.T-t)/1e9)):
		a.stats.Unplaced++
		return
	case t < a.letGoUntil(a.levels[0], now):
		a.late(s, 0)
		return
	}
	if power {
		if time.Duration(q.T-t) <= a.cfg.MaxGap {
			a.attribute(s, t, q.T, trapezoid(v, q.V, t, q.T), true, false, now)
		}
	} else {
		a.attribute(s, t, q.T, q.V-v, time.Duration(q.T-t) <= a.cfg.MaxGap, false, now)
	}
	a.stats.Reordered++
	a.seen(s, t)
	if int(s.NHist) == histLen {
		s.Young = false // no room: the point is counted but not held
		return
	}
	copy(s.Hist[1:], s.Hist[:s.NHist])
	s.Hist[0] = histPoint{T: t, V: v}
	s.Hist[1].Plain = true
	s.NHist++
}

// implausible counts a step that is not counted, in the windows of its time.
func (a *Accountant) implausible(s *series, reason string, t, now int64) {
	if a.stats.Implausible == nil {
		a.stats.Implausible = map[string]int64{}
	}
	a.stats.Implausible[reason]++
	var host uint32
	if s.In == inGPUEnergy {
		host = a.ents.GPUHost[s.Entity]
	}
	for _, lv := range a.levels {
		if w := a.window(lv, lv.start(t), now); w != nil {
			w.implausible(s, host)
		}
	}
}

// activity takes a GPU activity reading: averaged per window; the newest
// reading decides whether the GPU's next energy step is idle energy.
func (a *Accountant) activity(s *series, ratio float64, t, now int64) {
	if s.Seen && t <= s.LastT {
		for _, h := range s.Hist[:s.NHist] {
			if h.T == t {
				a.stats.Duplicates++ // a replayed reading would count twice in the mean
				return
			}
		}
		if s.NHist == 0 || t < s.Hist[0].T {
			a.stats.Duplicates++
			return
		}
		a.stats.Reordered++ // an older reading: in its window's mean, not in idleness
	} else {
		s.LastT, s.LastV, s.Seen = t, ratio, true
	}
	s.pushSorted(t)
	g := s.Entity
	// SM activity (GPM) is the better signal; utilization only counts for
	// a GPU that has none.
	if s.GPUSM {
		a.ents.GPUSM[g] = true
	} else if a.ents.GPUSM[g] {
		return
	}
	if t == s.LastT {
		a.ents.GPUIdle[g] = ratio < a.cfg.IdleBelow
	}
	for _, lv := range a.levels {
		if w := a.window(lv, lv.start(t), now); w != nil {
			update(w.GPUs, g, func(acc *gpuAcc) {
				if s.GPUSM && !acc.SM {
					acc.ActivitySum, acc.ActivityN, acc.SM = 0, 0, true
				}
				acc.ActivitySum += ratio
				acc.ActivityN++
			})
			w.Dirty = true
		}
	}
}

// pushSorted keeps an activity series' last times in order, for telling
// duplicates: the oldest goes when it is full.
func (s *series) pushSorted(t int64) {
	n := int(s.NHist)
	if n == histLen {
		if t < s.Hist[0].T {
			return
		}
		copy(s.Hist[:], s.Hist[1:])
		n--
	}
	i := n
	for i > 0 && s.Hist[i-1].T > t {
		s.Hist[i] = s.Hist[i-1]
		i--
	}
	s.Hist[i] = histPoint{T: t}
	s.NHist = uint8(n + 1)
}

// seen records that an entity sent data.
func (a *Accountant) seen(s *series, t int64) {
	switch s.In {
	case inGPUEnergy:
		a.ents.HostSeen[a.ents.GPUHost[s.Entity]].mark(t)
		a.ents.GPUSeen[s.Entity].mark(t)
	case inCPUEnergy, inBMCEnergy, inBMCPower:
		a.ents.HostSeen[s.Entity].mark(t)
	case inMeterEnergy, inMeterPower:
		a.ents.MeterSeen[s.Entity].mark(t)
	}
}

// attribute spreads energy (or work) measured over [t0, t1] over the
// windows of every level it overlaps, in proportion to time. remove takes
// back a step counted before (a point placed inside it): amount is then
// negative and the step's time is taken back too.
func (a *Accountant) attribute(s *series, t0, t1 int64, amount float64, covered, remove bool, now int64) {
	a.attributeWith(s, t0, t1, amount, covered, remove, false, a.idleNow(s), now)
}

// idleNow says whether s is the energy of a GPU that idles now.
func (a *Accountant) idleNow(s *series) bool {
	return s.In == inGPUEnergy && a.ents.GPUIdle[s.Entity]
}

// attributeWith is attribute for a step that may cross a restart, with the
// idleness it had (a GPU's step placed between two it had).
func (a *Accountant) attributeWith(s *series, t0, t1 int64, amount float64, covered, remove, restart, idle bool, now int64) {
	if t1 <= t0 || math.IsNaN(amount) {
		return
	}
	length := t1 - t0
	for li, lv := range a.levels {
		// The part of the step in windows already let go is dropped, at
		// once rather than window by window: after a long silence a step
		// may span months. Hour and day windows are kept longer than
		// minutes, so each level has its own first window.
		from := max(t0, lv.start(a.letGoUntil(lv, now)))
		if from > t0 && li == 0 && !remove {
			a.late(s, amount*float64(min(from, t1)-t0)/float64(length))
		}
		for ws := lv.start(from); ws < t1; ws += lv.size {
			sp := span{From: max(from, ws), To: min(t1, ws+lv.size), Len: length, Amount: amount, Covered: covered}
			if sp.To <= sp.From {
				continue
			}
			w := a.window(lv, ws, now)
			if w == nil {
				if li == 0 && !remove {
					a.late(s, sp.share())
				}
				continue
			}
			sp.Remove, sp.Restart = remove, restart
			w.add(s, sp, idle)
			if s.In == inGPUEnergy {
				w.addGPUToHost(a.ents.GPUHost[s.Entity], sp)
				if covered {
					// a step over a gap is nobody's: who ran at its start
					// may have stopped long before its end
					w.addLoads(a.sharesAt(s.Entity, t0), sp)
				}
			}
		}
	}
}
