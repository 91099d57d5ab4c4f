// Package energy turns hardware energy readings into counters that never go
// backwards, and integrates power where hardware has no energy counter. The
// GPU and BMC sources share it.
package energy

import "time"

// Counter turns a hardware energy counter that restarts from zero (a driver
// reload, a GPU reset, a BMC reboot) into one that never decreases: when the
// raw value drops, the total so far is kept as an offset and counting resumes
// from the new raw value. Raw values are in any unit; totals are in the same.
type Counter struct {
	offset float64
	last   float64
	seen   bool
}

// Update takes a raw reading and returns the monotonic total, and whether a
// reset was seen.
func (c *Counter) Update(raw float64) (total float64, reset bool) {
	if c.seen && raw < c.last {
		c.offset += c.last
		reset = true
	}
	c.last, c.seen = raw, true
	return c.offset + raw, reset
}

// Integrator integrates power readings (W) into energy (J) by trapezoids. A
// step longer than MaxGap (a lost device, a stalled agent, an unreachable
// BMC) is left out rather than filled by invention, and counted in Gaps.
type Integrator struct {
	MaxGap time.Duration
	Joules float64
	Gaps   int

	lastWatts float64
	lastTime  time.Time
}

// Add takes a reading and returns the energy so far.
func (e *Integrator) Add(watts float64, t time.Time) float64 {
	if !e.lastTime.IsZero() {
		dt := t.Sub(e.lastTime)
		switch {
		case dt <= 0:
			return e.Joules // not newer than the last reading: adds nothing
		case dt <= e.MaxGap:
			e.Joules += (watts + e.lastWatts) / 2 * dt.Seconds()
		default:
			e.Gaps++
		}
	}
	e.lastWatts, e.lastTime = watts, t
	return e.Joules
}
