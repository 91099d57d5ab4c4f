package accounting

import (
	"maps"
	"slices"
	"time"

	"github.com/joules-energy/joules/aggregator"
)

// Tick writes the windows whose grace has passed, writes again those that
// late points changed since, lets go of those older than MaxLateness, and
// returns the derived points. Each window is derived (derive.go), turned
// into points (emit.go), and its PUE kept for the rolling values and its
// results for /metrics.
func (a *Accountant) Tick(now time.Time) []aggregator.Point {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := now.UnixNano()
	a.releaseDue(n)
	var e emitter
	for _, lv := range a.levels {
		for _, ws := range slices.Sorted(maps.Keys(lv.windows)) {
			w := lv.windows[ws]
			end := ws + lv.size
			if end+int64(a.cfg.Grace) <= n && (!w.Written || w.Dirty) {
				if w.Written {
					a.stats.Revisions++
				}
				r := a.derive(lv, w)
				e.window(r)
				for _, p := range r.PUEs {
					for _, rp := range a.roll(lv.id, w.Start, lv.size, p) {
						e.pue(rp.pueResult, rp.Res)
						a.latest.setPUE(p.Key, rp.Res, rp.pueResult)
					}
				}
				if lv.id == levelWindow {
					a.latest.window(r)
				}
				w.Written, w.Dirty = true, false
			}
			if w.Written && end+int64(a.cfg.MaxLateness) < min(n, a.watermark) {
				delete(lv.windows, ws)
				lv.Released = max(lv.Released, end)
			}
		}
	}
	a.prune(n)
	return e.out
}

// prune forgets what is too old to matter.
func (a *Accountant) prune(now int64) {
	forget := now - int64(a.cfg.ForgetAfter) - int64(a.cfg.MaxLateness)
	for k, s := range a.series {
		if s.Seen && s.LastT < forget && s.PendT == 0 {
			a.ents.count(s, -1)
			delete(a.series, k)
		}
	}
	for _, seen := range [][]presence{a.ents.HostSeen, a.ents.MeterSeen, a.ents.GPUSeen} {
		for i := range seen {
			if seen[i].Seen && seen[i].Last < forget {
				seen[i] = presence{}
			}
		}
	}
	for sk, r := range a.rolling {
		for ws := range r.Windows {
			if ws < now-int64(25*time.Hour) {
				delete(r.Windows, ws)
			}
		}
		for ws := range r.Days {
			if ws < now-int64(31*24*time.Hour) {
				delete(r.Days, ws)
			}
		}
		if len(r.Windows) == 0 && len(r.Days) == 0 {
			delete(a.rolling, sk) // a site or hall gone for a month
		}
	}
}
