package report

import (
	"slices"
	"time"
)

// series bins the windows into about 200 chart steps: power at the PUE's
// measurement point, the hosts' own, the facility's, and the PUE.
func (b *builder) series(r *Report) {
	size := b.size
	span := b.opt.To.Sub(b.opt.From)
	step := size
	for span/step > 200 {
		step *= 2
	}
	if step > size {
		// round the step to a whole number of windows that reads well
		for _, nice := range []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour, 24 * time.Hour} {
			if nice >= step && nice%size == 0 {
				step = nice
				break
			}
		}
	}
	r.Series.Step = step.String()
	r.Series.ITPoint = r.Headline.ITPoint
	type bin struct {
		hosts, facility, pueIT, pueF float64
		hasFacility                  bool
		seconds, pueSeconds          float64
	}
	bins := map[time.Time]*bin{}
	for _, w := range b.windowsRead {
		t := w.start.Truncate(step)
		bn := bins[t]
		if bn == nil {
			bn = &bin{}
			bins[t] = bn
		}
		bn.hosts += w.it
		bn.seconds += size.Seconds()
		if w.pue != nil {
			bn.facility += w.pue.facility
			bn.hasFacility = bn.hasFacility || w.pue.facility > 0
			if w.pue.ok {
				bn.pueIT += w.pue.it
				bn.pueF += w.pue.facility
				bn.pueSeconds += size.Seconds()
			}
		}
	}
	times := make([]time.Time, 0, len(bins))
	for t := range bins {
		times = append(times, t)
	}
	slices.SortFunc(times, func(x, y time.Time) int { return x.Compare(y) })
	for _, t := range times {
		bn := bins[t]
		pt := PowerPt{Time: t, HostsWatts: bn.hosts / bn.seconds, ITWatts: bn.hosts / bn.seconds}
		if r.Headline.PUE != nil {
			pt.ITWatts = 0
			if bn.pueSeconds > 0 {
				pt.ITWatts = bn.pueIT / bn.pueSeconds
			}
		}
		if bn.hasFacility {
			f := bn.facility / bn.seconds
			pt.FacilityWatts = &f
		}
		r.Series.Power = append(r.Series.Power, pt)
		if bn.pueIT > 0 {
			r.Series.PUE = append(r.Series.PUE, ValuePt{Time: t, Value: bn.pueF / bn.pueIT})
		}
	}
}
