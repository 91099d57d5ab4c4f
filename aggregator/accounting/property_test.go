package accounting

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/internal/schema"
)

// TestEnergyStaysWithinBoundsOfTheTruth generates a host's true power
// (readings every 10 s, power linear between them, so its energy is known
// exactly), writes it as a BMC energy counter and a BMC power series, and
// mutates both as real fleets do: stale dips, restarts of the counter,
// one-reading glitches, an agent restarted without its state (a new epoch
// from a new base), duplicates, neighbours swapped, readings lost, and
// the counter absent for stretches (the source flips to power). Whatever
// the mutations, the host's energy over all windows must lie between the
// truth less the steps the mutations touched and the truth plus what lost
// power readings can mislead a trapezoid by (and a stale reading taken for
// a first one, by its staleness, and a stretch estimated from a step's mean
// power, by the spread of the power); no window may count more than the
// host can draw.
func TestEnergyStaysWithinBoundsOfTheTruth(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(6, 60).Draw(rt, "readings")
		watts := make([]float64, n)
		for i := range watts {
			watts[i] = rapid.Float64Range(50, 2000).Draw(rt, fmt.Sprintf("w%d", i))
		}
		const dt = 10.0
		stepJ := func(i int) float64 { return (watts[i-1] + watts[i]) / 2 * dt } // true energy of step i (from reading i-1)
		truth := 0.0
		cum := make([]float64, n)
		for i := 1; i < n; i++ {
			truth += stepJ(i)
			cum[i] = truth
		}
		// BMC counters hold energy since the BMC was made: far more than one
		// step can count, so a glitch back to the truth is never a restart.
		base := rapid.Float64Range(1e7, 1e10).Draw(rt, "base")

		type reading struct {
			counter  *float64
			power    *float64
			epoch    string
			duplicte bool
		}
		rs := make([]reading, n)
		touched := make([]bool, n+1) // steps whose energy the mutations may lose
		mutated := make([]bool, n)
		touch := func(i int) {
			mutated[i] = true
			for j := max(1, i-1); j <= min(n-1, i+2); j++ {
				touched[j] = true
			}
		}
		offset, epoch := base, "e0"
		counterOff := false
		powerSlack, dipSlack := 0.0, 0.0
		for i := range rs {
			c := offset + cum[i]
			p := watts[i]
			r := reading{counter: &c, power: &p, epoch: epoch}
			switch rapid.IntRange(0, 19).Draw(rt, fmt.Sprintf("m%d", i)) {
			case 0: // a stale reading, 0–1 kJ below the truth (the last reading's value or less)
				d := rapid.Float64Range(0, min(1000, stepJ(max(1, i)))).Draw(rt, fmt.Sprintf("dip%d", i))
				v := c - d
				r.counter = &v
				touch(i)
				// Where it is the first reading of a base nothing tells it
				// is stale: the next step counts up to its staleness more.
				dipSlack += d
			case 1: // the counter restarts from zero somewhere in the step before
				if i > 0 {
					f := rapid.Float64Range(0, 1).Draw(rt, fmt.Sprintf("reset%d", i))
					offset = -cum[i] + f*stepJ(i)
					v := offset + cum[i]
					r.counter = &v
					touch(i)
				}
			case 2: // a one-reading glitch
				v := 1e13
				r.counter = &v
				touch(i)
			case 3: // the agent restarted without its state: a new epoch on a new base
				offset = rapid.Float64Range(1e7, 1e10).Draw(rt, fmt.Sprintf("rebase%d", i)) - cum[i]
				epoch = fmt.Sprintf("e%d", i)
				v := offset + cum[i]
				r.counter, r.epoch = &v, epoch
				touch(i)
			case 4:
				r.duplicte = true
			case 5: // the power reading is lost
				r.power = nil
				if i > 0 && i < n-1 {
					powerSlack += (max(watts[i-1], watts[i], watts[i+1]) - min(watts[i-1], watts[i], watts[i+1])) * dt
				}
			case 6: // the counter stops (a BMC whose EnvironmentMetrics went) or comes back
				counterOff = !counterOff
				touch(i)
			}
			if counterOff {
				r.counter = nil
			}
			rs[i] = r
		}
		var points []aggregator.Point
		for i, r := range rs {
			var batch []aggregator.Point
			if r.counter != nil {
				batch = append(batch, bmc(float64(i)*dt, *r.counter, "epoch", r.epoch))
			}
			if r.power != nil {
				batch = append(batch, bmcPower(float64(i)*dt, *r.power))
			}
			points = append(points, batch...)
			if r.duplicte {
				points = append(points, batch...)
			}
		}
		// neighbours swapped (a retried request overtaken by the next)
		for i := 0; i+1 < len(points); i++ {
			if rapid.IntRange(0, 9).Draw(rt, fmt.Sprintf("swap%d", i)) == 0 {
				points[i], points[i+1] = points[i+1], points[i]
				i++
			}
		}
		// A counter step that spans a mutation (a restart unseen between
		// two readings, a glitch held until the next) may lose all of its
		// energy: the counter claims that time, and what it measured is
		// all that counts.
		prev := -1
		for i, r := range rs {
			if r.counter == nil {
				continue
			}
			if prev >= 0 && slices.Contains(mutated[prev:i+1], true) {
				for j := prev + 1; j <= min(n-1, i+1); j++ {
					touched[j] = true
				}
			}
			prev = i
		}
		// Where one source takes over from another inside a slot or a long
		// step, the stretch is estimated at that step's mean power: off by
		// at most the spread of the power over two readings' time, per
		// change.
		changes := 0
		for _, m := range mutated {
			if m {
				changes++
			}
		}
		propSlack := (slices.Max(watts) - slices.Min(watts)) * 2 * dt * float64(changes)
		lost := 0.0
		for i := 1; i < n; i++ {
			if touched[i] {
				lost += stepJ(i)
			}
		}

		a, c := newTestAccountant(t, Config{})
		out := run(a, c, points, at(float64(n)*dt).Add(2*time.Minute))
		counted := 0.0
		for _, p := range out {
			if p.Measurement != schema.Energy || !hasTags(p, "resolution", "1m", "scope", "host", "kind", "it") {
				continue
			}
			j := floatField(t, &p, "joules")
			if j > a.cfg.Bounds.HostWatts*(60+30) {
				rt.Fatalf("a window counts %v J: more than the host can draw", j)
			}
			if cov := floatField(t, &p, "coverage"); cov < 0 || cov > 1+1e-9 {
				rt.Fatalf("coverage %v", cov)
			}
			counted += j
		}
		const eps = 1e-6
		if counted > truth+powerSlack+dipSlack+propSlack+eps*truth+1e-3 {
			rt.Fatalf("counted %v J, more than the truth %v J (+ %v J a lost power reading can mislead by, + %v J of stale readings, + %v J of estimates in proportion to time)",
				counted, truth, powerSlack, dipSlack, propSlack)
		}
		if counted < truth-lost-powerSlack-propSlack-eps*truth-1e-3 {
			rt.Fatalf("counted %v J, less than the truth %v J minus the %v J of the steps mutated (slack %v)", counted, truth, lost, powerSlack)
		}
	})
}
