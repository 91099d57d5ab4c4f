package accounting

import (
	"maps"
	"slices"
	"time"
)

// ledger keeps what the base windows said of workloads, so that an hour's
// and a day's workload energy is the sum of its windows': the host's share
// and the facility's are not linear in a window's totals, and a job's
// energy must not depend on the resolution it is read at. Sums are taken
// in time order, from what was last written of each window, so that they
// come out the same to the last bit however often windows were revised
// (one process and a cluster's roll-up agree).
type ledger struct {
	// Base holds each base window's results, by start, until the day
	// it is in can no longer be revised.
	Base map[int64][]loadResult
	// Hours holds each hour's sums, by start, for its day.
	Hours map[int64][]loadResult
}

func newLedger() *ledger {
	return &ledger{Base: map[int64][]loadResult{}, Hours: map[int64][]loadResult{}}
}

func (l *ledger) fill() {
	l.Base, l.Hours = orEmpty(l.Base), orEmpty(l.Hours)
}

// loads sets or reads a window's workload results when it is written: a
// base window's are its own, kept; an hour's the sum of its base windows'
// and a day's of its hours', each with the unattributed rest of the level's
// own site energy.
func (a *Accountant) loads(lv *level, r *windowResult) {
	l := a.ledger
	start := r.Start.UnixNano()
	switch lv.id {
	case levelWindow:
		if len(r.Loads) > 0 {
			l.Base[start] = r.Loads
		} else {
			delete(l.Base, start)
		}
	case levelHour:
		r.Loads = sumLoads(l.Base, start, start+lv.size, r)
		if len(r.Loads) > 0 {
			l.Hours[start] = r.Loads
		} else {
			delete(l.Hours, start)
		}
	case levelDay:
		r.Loads = sumLoads(l.Hours, start, start+lv.size, r)
	}
	// What can no longer be revised: a day let go, and the windows in it.
	keep := start - int64(a.cfg.MaxLateness) - int64(48*time.Hour)
	for _, m := range []map[int64][]loadResult{l.Base, l.Hours} {
		for ws := range m {
			if ws < keep {
				delete(m, ws)
			}
		}
	}
}

// sumLoads sums the results of the windows of m in [from, to), in time
// order, and adds each site's unattributed rest of r's own energy.
func sumLoads(m map[int64][]loadResult, from, to int64, r *windowResult) []loadResult {
	sums := map[loadKey]*loadResult{}
	for _, ws := range slices.Sorted(maps.Keys(m)) {
		if ws < from || ws >= to {
			continue
		}
		for _, one := range m[ws] {
			if one.unattributed() {
				continue
			}
			s := sums[one.Key]
			if s == nil {
				s = &loadResult{Key: one.Key}
				sums[one.Key] = s
			}
			s.add(one)
		}
	}
	if len(sums) == 0 && !r.HasLoads {
		return nil
	}
	var out []loadResult
	attributed := map[string]*loadResult{}
	for _, k := range slices.SortedFunc(maps.Keys(sums), compareLoads) {
		s := sums[k]
		out = append(out, *s)
		a := attributed[k.Site]
		if a == nil {
			a = &loadResult{}
			attributed[k.Site] = a
		}
		a.GPU += s.GPU
		a.IT += s.IT
	}
	for _, k := range slices.SortedFunc(maps.Keys(r.Sums), compareHosts) {
		if k.Hall != "" || k.Rack != "" {
			continue
		}
		a := attributed[k.Site]
		if a == nil {
			a = &loadResult{}
		}
		s := r.Sums[k]
		var pue pueResult
		for _, p := range r.PUEs {
			if p.Key.Site == k.Site && p.Key.Hall == "" {
				pue = p
			}
		}
		out = append(out, unattributedOf(k.Site, s, siteGPU(r, k.Site), a, pue))
	}
	return out
}

// siteGPU is a site's GPU energy as far as its hosts' IT energy has it (a
// host that measured less than its GPUs counts its IT energy).
func siteGPU(r *windowResult, site string) float64 {
	var j float64
	for _, h := range r.Hosts {
		if h.Key.Site == site {
			j += min(h.GPU, max(h.IT, 0))
		}
	}
	return j
}
