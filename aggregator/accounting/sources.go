package accounting

import "github.com/joules-energy/joules/internal/schema"

const (
	sourceComponents = schema.SourceComponents // GPUs + CPU RAPL: a lower bound
	sourceNone       = schema.SourceNone
)

// source is one way of measuring a host or meter in a window: its slots,
// and how many series feed it (several chassis, PSUs or sockets), each of
// which covers at most the whole slot.
type source struct {
	cells  cells
	series float64
}

// frac is the share of slot i the source spanned (its energy is known
// there) and covered (its time too), between 0 and 1.
func (s source) frac(i int, slotSec float64) (spanned, covered float64) {
	c := s.cells[i]
	n := slotSec * s.series
	return min(1, float64(c.S+c.G)/n), min(1, float64(c.S)/n)
}

// picked is what pick made of a window's sources.
type picked struct {
	joules, covered float64 // covered: seconds of the window
	used            uint    // bit i: source i counted somewhere
}

// pick builds energy slot by slot: in each slot the best source that has
// data counts for the share of the slot it spans, the next for the share
// still missing (in proportion: its energy in the slot times the share it
// fills over the share it spans), and so on. A source that stops halfway
// through a window so leaves the rest to the next, and sources that all
// cover a slot are never added. A source of several series that lacks one
// is not filled: its coverage shows the silent one.
func pick(srcs []source, slots int, slotSec float64) picked {
	var p picked
	for i := range slots {
		filled, cov := 0.0, 0.0
		for si, s := range srcs {
			if s.cells == nil || !s.cells[i].has() {
				continue
			}
			spanned, covered := s.frac(i, slotSec)
			if spanned <= 0 {
				continue
			}
			take := min(spanned, 1-filled)
			if take <= 0 {
				break
			}
			ratio := take / spanned
			p.joules += s.cells[i].J * ratio
			cov += covered * ratio
			filled += take
			p.used |= 1 << si
			if s.series > 1 && spanned < 1 {
				// A source of several series (chassis, PSUs) that spans part
				// of the slot lacks one of them, not part of the time: no
				// other source measures that one apart, so nothing fills it
				// (the next would add the others' energy again).
				break
			}
		}
		p.covered += min(1, cov) * slotSec
	}
	return p
}

// components is a host's last resort: its GPUs and RAPL zones together,
// whose share of a slot is its GPUs' (out of the GPUs it should have)
// where they have data, else its RAPL zones' (out of its zones), so the
// CPUs still count when every GPU is silent. The cells' time is the share
// already, so the source counts as one series.
func components(acc hostAcc, gpus int, cpuSeries float64, slots int) source {
	gpu, cpu := acc.Src[srcGPU], acc.Src[srcCPU]
	if gpu == nil && cpu == nil {
		return source{}
	}
	c := make(cells, slots)
	for i := range c {
		var g, p cell
		if gpu != nil {
			g = gpu[i]
		}
		if cpu != nil {
			p = cpu[i]
		}
		c[i].J = g.J + p.J
		switch {
		case gpus > 0 && g.S+g.G > 0:
			c[i].S, c[i].G = g.S/float32(gpus), g.G/float32(gpus)
		case p.S+p.G > 0:
			c[i].S, c[i].G = p.S/float32(cpuSeries), p.G/float32(cpuSeries)
		}
	}
	return source{cells: c, series: 1}
}
