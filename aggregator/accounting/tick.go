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
	var e emitter
	a.closeWindows(now.UnixNano(), func(lv *level, w *window) { a.emitWindow(&e, lv, a.derive(lv, w)) })
	return e.out
}

// emitWindow turns a derived window into points, keeps its PUE for the
// rolling values and its results for /metrics.
func (a *Accountant) emitWindow(e *emitter, lv *level, r *windowResult) {
	a.loads(lv, r)
	r.Work = append(r.Work, modelWork(r)...)
	e.window(r)
	for _, p := range r.PUEs {
		for _, rp := range a.roll(lv.id, r.Start.UnixNano(), lv.size, p) {
			e.pue(rp.pueResult, rp.Res)
			a.latest.setPUE(p.Key, rp.Res, rp.pueResult)
		}
	}
	if lv.id == levelWindow {
		a.latest.window(r)
	}
}

// closeWindows hands each window whose grace has passed, and each that
// late points changed since, to done; lets go of those older than
// MaxLateness; and forgets what is too old to matter. Call with a.mu held.
func (a *Accountant) closeWindows(n int64, done func(*level, *window)) {
	a.releaseDue(n)
	for _, lv := range a.levels {
		for _, ws := range slices.Sorted(maps.Keys(lv.windows)) {
			w := lv.windows[ws]
			end := ws + lv.size
			if end+int64(a.cfg.Grace) <= n && (!w.Written || w.Dirty) {
				if w.Written {
					a.stats.Revisions++
				}
				done(lv, w)
				w.Written, w.Dirty = true, false
			}
			if w.Written && end+int64(a.cfg.MaxLateness) < min(n, a.watermark) {
				delete(lv.windows, ws)
				lv.Released = max(lv.Released, end)
				a.letGo(lv.id, ws)
			}
		}
	}
	a.prune(n)
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
	a.pruneLoads(forget - int64(24*time.Hour)) // past every day window that may still name them
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
