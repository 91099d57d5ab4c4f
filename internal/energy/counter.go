package energy

import (
	"crypto/rand"
	"encoding/hex"
	"math"
	"time"
)

// Counter continues a hardware counter into a total that never goes
// backwards: resets, dips, glitches and new bases go through Track's rules,
// and only what they count is added. Epoch names the continuation: it
// changes only when the total could not be continued (no saved state), so
// a reader that sees a new epoch knows the value started again from an
// unknown base. Hardware is the epoch of the hardware counter where the
// device tells it (a boot id, a BMC sensor's reset time): a change means
// the counter restarted even if it has already climbed past its old value.
type Counter struct {
	Track
	Total    float64
	Epoch    string
	Hardware string
}

// Update takes a raw reading and returns the continued total and what the
// reading was. hardware is the device's epoch ("" when unknown).
func (c *Counter) Update(raw float64, hardware string, at time.Time, b Bound) (float64, Event) {
	if c.Epoch == "" {
		c.Epoch = NewEpoch()
	}
	t := at.UnixNano()
	if math.IsNaN(raw) || math.IsInf(raw, 0) || raw < 0 {
		return c.Total, Held // not a reading
	}
	if c.Seen && t <= c.LastTime {
		if raw == c.Last {
			return c.Total, Held // the same reading again
		}
		// The clock stepped back (an NTP correction after a jump ahead):
		// the reading is newer all the same. Measure it from just before
		// now, so the lag budget alone bounds it, and go on from here.
		c.LastTime = t - 1
		if c.CandTime != 0 {
			c.CandTime = t - 1
		}
	}
	var s Step
	switch {
	case !c.Seen:
		s = c.Track.Update(raw, t, b)
		c.Total = raw
	case hardware != "" && c.Hardware != "" && hardware != c.Hardware:
		s = c.Restart(raw, t, b)
	default:
		s = c.Track.Update(raw, t, b)
	}
	if hardware != "" {
		c.Hardware = hardware
	}
	c.Total += s.Joules
	return c.Total, s.Event
}

// NewEpoch returns a fresh epoch name: eight hex digits.
func NewEpoch() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Integrator integrates power readings (W) into energy (J) by trapezoids.
// A step longer than MaxGap (a lost device, a stalled agent, an
// unreachable BMC) is left out, counted in Gaps, and starts a new Epoch:
// the total stays flat across the gap, and the new epoch tells a reader
// that the flat step was not a measured zero. A reading above MaxWatts is
// not power a device can draw: skipped.
type Integrator struct {
	MaxGap    time.Duration
	MaxWatts  float64
	Joules    float64
	Gaps      int
	Epoch     string
	LastWatts float64
	LastTime  int64 // unix ns; 0 before the first reading
}

// Add takes a reading and returns the energy so far; Epoch is then the
// epoch that value belongs to.
func (e *Integrator) Add(watts float64, at time.Time) float64 {
	if e.Epoch == "" {
		e.Epoch = NewEpoch()
	}
	if e.MaxWatts > 0 && watts > e.MaxWatts || watts < 0 || math.IsNaN(watts) || math.IsInf(watts, 0) {
		return e.Joules
	}
	t := at.UnixNano()
	if e.LastTime != 0 {
		dt := time.Duration(t - e.LastTime)
		switch {
		case dt == 0:
			return e.Joules // the same instant: adds nothing
		case dt < 0:
			// The clock stepped back: start again from here, counting nothing.
			e.LastWatts, e.LastTime = watts, t
			return e.Joules
		case dt <= e.MaxGap:
			e.Joules += (watts + e.LastWatts) / 2 * dt.Seconds()
		default:
			e.Gaps++
			e.Epoch = NewEpoch()
		}
	}
	e.LastWatts, e.LastTime = watts, t
	return e.Joules
}
