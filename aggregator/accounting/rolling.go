package accounting

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/joules-energy/joules/internal/schema"
)

// rollingPUE keeps a scope's PUE per window (a day of them) and per day
// (30 of them) for the rolling values.
type rollingPUE struct {
	Windows map[int64]pueResult
	Days    map[int64]pueResult
}

// rolled is a rolling PUE to write with a window: its resolution tag.
type rolled struct {
	Res string
	pueResult
}

// roll keeps a window's PUE (base and day levels) and returns the rolling
// values that end with it: the last hour and day with every window, the
// last 30 days with every day.
func (a *Accountant) roll(level levelID, start, size int64, p pueResult) []rolled {
	if level == levelHour {
		return nil
	}
	rp := a.rolling[p.Key]
	if rp == nil {
		rp = &rollingPUE{Windows: map[int64]pueResult{}, Days: map[int64]pueResult{}}
		a.rolling[p.Key] = rp
	}
	end := start + size
	if level == levelWindow {
		rp.Windows[start] = p
		return []rolled{
			{schema.Rolling1h, rollup(p.Key, rp.Windows, end-int64(time.Hour), end, size)},
			{schema.Rolling1d, rollup(p.Key, rp.Windows, end-int64(24*time.Hour), end, size)},
		}
	}
	rp.Days[start] = p
	return []rolled{{schema.Rolling30d, rollup(p.Key, rp.Days, end-int64(30*24*time.Hour), end, size)}}
}

// rollup is PUE over a range from the windows in it that had a PUE:
// energy over energy, never an average of ratios. Windows whose PUE was
// implausible or missing are left out and counted against coverage. Its
// category is the least precise of its windows' (an estimate where any
// window was one).
func rollup(sk scopeKey, windows map[int64]pueResult, from, to, size int64) pueResult {
	r := pueResult{Key: sk, Category: 3}
	n := float64((to - from) / size)
	got := 0
	// In time order: a sum of floats depends on its order, and the same
	// windows must give the same value in every process.
	for _, ws := range slices.Sorted(maps.Keys(windows)) {
		x := windows[ws]
		if ws < from || ws >= to || !x.OK {
			continue
		}
		r.Facility += x.Facility
		r.IT += x.IT
		r.Coverage += x.Coverage
		r.FacilityCoverage += x.FacilityCoverage
		r.ITCoverage += x.ITCoverage
		r.Category = min(r.Category, x.Category)
		r.Estimate = r.Estimate || x.Estimate
		if r.ITMeter == "" || r.ITMeter == x.ITMeter {
			r.ITMeter = x.ITMeter
		} else {
			r.ITMeter = "mixed"
		}
		got++
	}
	r.Coverage /= n
	r.FacilityCoverage /= n
	r.ITCoverage /= n
	if got == 0 || r.IT <= 0 {
		r.Category = 0
		r.Reason = "no window in the range had a PUE"
		return r
	}
	r.PUE, r.OK = r.Facility/r.IT, true
	if r.Coverage < 1 {
		r.Reason = fmt.Sprintf("%d of %d windows had a PUE; coverage %.4g", got, int(n), r.Coverage)
	}
	if r.Estimate {
		r.Reason = joinReasons(r.Reason, "some windows' IT energy is partly GPUs + CPU: an estimate with no ISO/IEC 30134-2 category")
	}
	return r
}

func joinReasons(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}
