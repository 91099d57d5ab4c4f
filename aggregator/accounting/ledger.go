package accounting

import (
	"maps"
	"slices"
)

// ledger keeps what the base windows said of workloads, so that an hour's
// and a day's workload energy is the sum of its windows': the host's share
// and the facility's are not linear in a window's totals, and a job's
// energy must not depend on the resolution it is read at. Sums are taken
// in time order, from what was last written of each window, so that they
// come out the same to the last bit however often windows were revised
// (one process and a cluster's roll-up agree).
type ledger struct {
	// Base holds each written base window's results, by start, until it
	// is let go (it can no longer be revised).
	Base map[int64][]loadResult
	// Frozen holds, per hour, the sum of its base windows let go, taken
	// in time order: with the live ones added after it in time order, the
	// same sum as of all of them.
	Frozen map[int64]map[loadKey]loadResult
	// Hours holds each written hour's sums, by start, until its day is
	// let go.
	Hours map[int64][]loadResult
}

func newLedger() *ledger {
	return &ledger{Base: map[int64][]loadResult{}, Frozen: map[int64]map[loadKey]loadResult{}, Hours: map[int64][]loadResult{}}
}

func (l *ledger) fill() {
	l.Base, l.Frozen, l.Hours = orEmpty(l.Base), orEmpty(l.Frozen), orEmpty(l.Hours)
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
		r.Loads = sumLoads(l.Frozen[start], l.Base, start, start+lv.size, r)
		if len(r.Loads) > 0 {
			l.Hours[start] = r.Loads
		} else {
			delete(l.Hours, start)
		}
	case levelDay:
		r.Loads = sumLoads(nil, l.Hours, start, start+lv.size, r)
	}
}

// letGo is told that a window of a level can no longer be revised: a base
// window's results go into its hour's frozen sum, an hour's frozen sum
// goes (its own sums stay for its day), a day's hours go.
func (a *Accountant) letGo(id levelID, ws int64) {
	l := a.ledger
	switch id {
	case levelWindow:
		// In time order, every base window up to this one: their sums
		// must be taken in the order the live ones are added.
		for _, bs := range slices.Sorted(maps.Keys(l.Base)) {
			if bs > ws {
				break
			}
			hour := a.levels[levelHour].start(bs)
			if l.Frozen[hour] == nil {
				l.Frozen[hour] = map[loadKey]loadResult{}
			}
			foldLoads(l.Frozen[hour], l.Base[bs])
			delete(l.Base, bs)
		}
	case levelHour:
		delete(l.Frozen, ws)
	case levelDay:
		for hs := range l.Hours {
			if hs >= ws && hs < ws+a.levels[levelDay].size {
				delete(l.Hours, hs)
			}
		}
	}
}

// sumLoads sums frozen (a sum of earlier windows) and the results of the
// windows of m in [from, to), in time order, and adds each site's
// unattributed rest of r's own energy.
func sumLoads(frozen map[loadKey]loadResult, m map[int64][]loadResult, from, to int64, r *windowResult) []loadResult {
	sums := maps.Clone(frozen)
	if sums == nil {
		sums = map[loadKey]loadResult{}
	}
	for _, ws := range slices.Sorted(maps.Keys(m)) {
		if ws >= from && ws < to {
			foldLoads(sums, m[ws])
		}
	}
	if len(sums) == 0 && !r.HasLoads {
		return nil
	}
	return withRest(sums, r)
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
