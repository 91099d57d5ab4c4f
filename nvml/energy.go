package nvml

import "time"

// energyCounter turns NVML's total-energy counter (millijoules since the
// driver loaded) into a counter that never goes backwards: when the raw
// value drops (driver reload, GPU reset) the energy counted so far is kept as
// an offset and counting resumes from the new raw value.
type energyCounter struct {
	offsetMJ uint64
	lastMJ   uint64
	seen     bool
}

// update takes a raw reading and returns the monotonic total in joules, and
// whether a reset was seen.
func (c *energyCounter) update(rawMJ uint64) (joules float64, reset bool) {
	if c.seen && rawMJ < c.lastMJ {
		c.offsetMJ += c.lastMJ
		reset = true
	}
	c.lastMJ, c.seen = rawMJ, true
	return float64(c.offsetMJ+rawMJ) / 1000, reset
}

// energyIntegrator integrates power readings over time, for GPUs without an
// energy counter (before Volta). The trapezoid between two readings is only
// added when they are at most maxGap apart: a longer gap (a lost GPU, a
// stalled agent) is left out rather than filled by invention.
type energyIntegrator struct {
	joules    float64
	lastWatts float64
	lastTime  time.Time
	maxGap    time.Duration
	gaps      int // gaps left out
}

func (e *energyIntegrator) add(watts float64, t time.Time) float64 {
	if !e.lastTime.IsZero() {
		dt := t.Sub(e.lastTime)
		switch {
		case dt <= 0:
			return e.joules // a reading not newer than the last one adds nothing
		case dt <= e.maxGap:
			e.joules += (watts + e.lastWatts) / 2 * dt.Seconds()
		default:
			e.gaps++
		}
	}
	e.lastWatts, e.lastTime = watts, t
	return e.joules
}
