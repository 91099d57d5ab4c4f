// Package energy holds the rules that keep energy counters true when
// hardware misbehaves: a reading slightly below the last (a stale value) is
// held, a restart from zero counts only what physics allows since, a jump
// or a drop that is neither waits for the next reading to say whether it
// was a glitch or a new base, and no step is ever counted above the most
// the device can draw. The agent's GPU, BMC and work sources continue
// their counters with it (counter.go), persisted across restarts
// (store.go); the aggregator's accounting applies the same steps to every
// counter it receives.
package energy

import "math"

// Event says what a reading did.
type Event uint8

const (
	// First is a series' first reading: a baseline, nothing counted.
	First Event = iota
	// Counted is an ordinary step.
	Counted
	// Held is a reading a little below the last (a stale or transient
	// value, within Bound.DipSeconds of the most power): not counted, and
	// later steps measure from the higher value, so it never counts twice.
	Held
	// Reset is a counter that restarted from zero (a reboot, a driver
	// reload): what it read since the restart is counted, as it is within
	// the bound.
	Reset
	// Suspect is a jump above the bound or a drop that is no restart: not
	// counted, held until the next reading, which either continues from
	// the last value (the suspect reading was a glitch) or from the suspect
	// one (a new base: a PSU replaced in a summed counter).
	Suspect
	// Rebased is the reading that confirmed a suspect one as a new base:
	// the energy since the suspect reading is counted, the time before it
	// is not.
	Rebased
	// Restarted is a reading of a new epoch (labelled by the writer) whose
	// value since the restart is within the bound: counted.
	Restarted
	// Implausible is a restart whose value since the restart is above the
	// bound: not counted, the counter continues from it.
	Implausible
)

var eventNames = [...]string{"first", "counted", "held", "reset", "suspect", "rebased", "restarted", "implausible"}

func (e Event) String() string {
	if int(e) < len(eventNames) {
		return eventNames[e]
	}
	return "unknown"
}

// LagSeconds is how far a counter's reading may trail its device: a BMC
// that refreshes its counter every 10 to 30 s can report 30 s of energy in
// a 1 s step. Over any run of readings a counter may count at most the
// device's most power over the run plus this lag (a leaky bucket: Track's
// Budget), so a lagging counter may catch up but a glitch that climbs a
// little each step is still caught.
const LagSeconds = 30

// DefaultMeterWatts bounds the energy steps of a meter whose rating is not
// configured: above any feed a site has.
const DefaultMeterWatts = 100e6

// Bound is what physics allows one counter.
type Bound struct {
	// MaxWatts is the most the device can draw (a GPU's power limit, a
	// host's PSU capacity, a meter's rating); 0 leaves steps unbounded (work
	// counters), where any drop is a restart.
	MaxWatts float64
	// DipSeconds: a reading below the last by at most MaxWatts×DipSeconds
	// is a dip, held; default 60.
	DipSeconds float64
	// Wrap is, for a counter of fixed width, the value at which it wraps
	// to zero (a 32-bit register's range times its unit); 0: it does not.
	// A drop that the rest of the range and the new value explain within
	// the bound is a wrap, counted.
	Wrap float64
	// Resolution is the counter's unit in J (0.1 kWh is 360 kJ): a coarse
	// counter rises a whole unit at once, which a low MaxWatts over a short
	// step would otherwise take for a glitch, losing every step.
	Resolution float64
}

// MaxJoules is the most a step of dt seconds may count.
func (b Bound) MaxJoules(dt float64) float64 {
	if b.MaxWatts <= 0 {
		return math.Inf(1)
	}
	return b.MaxWatts*(max(dt, 0)+LagSeconds) + b.Resolution
}

func (b Bound) dip() float64 {
	if b.MaxWatts <= 0 {
		return 0
	}
	s := b.DipSeconds
	if s <= 0 {
		s = 60
	}
	return b.MaxWatts * s
}

// Track is one counter between readings: the value and time later steps
// measure from, and a suspect reading waiting for the next one to confirm
// or dismiss it. Times are unix nanoseconds. Its fields are exported so
// that owners can persist it.
type Track struct {
	Last     float64
	LastTime int64
	Cand     float64
	CandTime int64 // 0: no suspect reading
	Seen     bool
	// Budget is what a lagging counter may still count beyond the most
	// power since its last reading: up to LagSeconds of it.
	Budget float64
	// Old is the base before the last new base, for a while: a counter that
	// served a wrong value for several readings and then returns to its
	// old base is restored, not taken for a restart. Since is what was
	// counted from the new base meanwhile.
	Old, OldTime, Since float64
}

// oldFor is how long the base before a new one is remembered.
const oldFor = 10 * 60 * 1e9

// Step is what one reading counts: Joules over [From, To] (unix ns; From
// == To when nothing is counted).
type Step struct {
	Event    Event
	Joules   float64
	From, To int64
}

// Update takes reading v at time t (after the last one: callers order
// readings and drop duplicates) and returns what it counts.
func (tr *Track) Update(v float64, t int64, b Bound) Step {
	if !tr.Seen {
		*tr = Track{Last: v, LastTime: t, Seen: true, Budget: b.lag()}
		return Step{Event: First, From: t, To: t}
	}
	dt := float64(t-tr.LastTime) / 1e9
	d := v - tr.Last
	if tr.OldTime != 0 && float64(t)-tr.OldTime > oldFor {
		tr.Old, tr.OldTime, tr.Since = 0, 0, 0
	}
	allow := tr.allow(dt, b)
	switch {
	case d >= 0 && d <= allow:
		tr.Since += d
		return tr.acceptKeep(Counted, d, v, t, allow, b)
	case d < 0 && b.Wrap > 0 && d+b.Wrap >= 0 && d+b.Wrap <= allow:
		tr.Since += d + b.Wrap
		return tr.acceptKeep(Counted, d+b.Wrap, v, t, allow, b)
	case d < 0 && -d <= b.dip() && !(v <= allow && v < tr.Last/2):
		// A little below: a stale reading. (Far below, at a value it could
		// have counted since a restart, is a restart of a young counter.)
		return Step{Event: Held, From: t, To: t}
	case d < 0 && tr.OldTime != 0 && v >= tr.Old && v-tr.Old <= b.MaxJoules((float64(t)-tr.OldTime)/1e9):
		// Back on the old base: what it counted since, less what was
		// counted on the wrong one, over the time since the old base.
		j := max(0, v-tr.Old-tr.Since)
		from := int64(tr.OldTime)
		s := tr.accept(Counted, j, v, t)
		s.From = from
		return s
	case tr.CandTime != 0 && v >= tr.Cand && v-tr.Cand <= b.MaxJoules(float64(t-tr.CandTime)/1e9):
		// The suspect reading was a new base: count from it; the time
		// between the last good reading and it is not measured.
		s := Step{Event: Rebased, Joules: v - tr.Cand, From: tr.CandTime, To: t}
		*tr = Track{Last: v, LastTime: t, Seen: true, Old: tr.Last, OldTime: float64(tr.LastTime), Since: v - tr.Cand,
			Budget: max(0, b.lag()-(v-tr.Cand))}
		return s
	case d < 0 && b.MaxWatts <= 0:
		return tr.accept(Reset, v, v, t) // unbounded: any drop is a restart
	case d < 0 && v <= allow:
		s := tr.accept(Reset, v, v, t)
		tr.Budget = min(b.lag(), allow-v)
		return s
	}
	tr.Cand, tr.CandTime = v, t
	return Step{Event: Suspect, From: t, To: t}
}

func (tr *Track) accept(e Event, joules, v float64, t int64) Step {
	s := Step{Event: e, Joules: joules, From: tr.LastTime, To: t}
	*tr = Track{Last: v, LastTime: t, Seen: true, Budget: tr.Budget}
	return s
}

// acceptKeep is accept for an ordinary step: a base remembered stays, and
// the budget keeps what the step did not use.
func (tr *Track) acceptKeep(e Event, joules, v float64, t int64, allow float64, b Bound) Step {
	s := Step{Event: e, Joules: joules, From: tr.LastTime, To: t}
	tr.Last, tr.LastTime, tr.Cand, tr.CandTime = v, t, 0, 0
	tr.Budget = min(b.lag(), allow-joules)
	return s
}

// allow is what a reading dt seconds after the last accepted one may
// count: the device's most power over dt plus the budget left.
func (tr *Track) allow(dt float64, b Bound) float64 {
	if b.MaxWatts <= 0 {
		return math.Inf(1)
	}
	return min(b.lag(), max(0, tr.Budget)) + b.MaxWatts*max(dt, 0) + b.Resolution
}

func (b Bound) lag() float64 {
	if b.MaxWatts <= 0 {
		return 0
	}
	return b.MaxWatts * LagSeconds
}

// Restart takes the first reading of a new epoch: the counter restarted
// from zero at some moment since the last reading, so v is the energy since
// then, counted when the bound allows it.
func (tr *Track) Restart(v float64, t int64, b Bound) Step {
	if !tr.Seen {
		return tr.Update(v, t, b)
	}
	dt := float64(t-tr.LastTime) / 1e9
	if allow := tr.allow(dt, b); v <= allow {
		s := tr.accept(Restarted, v, v, t)
		tr.Budget = min(b.lag(), allow-v)
		return s
	}
	*tr = Track{Last: v, LastTime: t, Seen: true, Budget: b.lag()}
	return Step{Event: Implausible, From: t, To: t}
}

// Wrapped takes a reading of a counter that wrapped at its range (a RAPL
// zone): joules is what the caller worked out it counted since the last.
func (tr *Track) Wrapped(v float64, t int64, joules float64) Step {
	return tr.accept(Counted, joules, v, t)
}

// Rebase starts the counter afresh at v: the step since the last reading
// is not counted (a new epoch of a counter whose value continues from an
// unknown base).
func (tr *Track) Rebase(v float64, t int64) Step {
	*tr = Track{Last: v, LastTime: t, Seen: true, Budget: tr.Budget}
	return Step{Event: First, From: t, To: t}
}
