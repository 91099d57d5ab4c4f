// Package accounting turns the raw points the aggregator receives into
// energy per GPU, host, rack, hall and site in tumbling wall-clock windows,
// PUE and pPUE, work per joule and reconciliation remainders. It sits
// between ingest and output as an aggregator.Processor: it reads every
// point, changes none, and writes its derived points to the same output
// when a window closes. docs/ACCOUNTING.md has the formulas.
package accounting

import (
	"fmt"
	"log/slog"
	"maps"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/joules-energy/joules/aggregator"
)

// maxAhead is how far ahead of the aggregator's clock a point may be.
const maxAhead = 24 * time.Hour

// Stats counts what accounting saw; all are totals since start.
type Stats struct {
	Points, Duplicates, Resets, Wraps, Gaps, LatePoints, Revisions, Invalid, DroppedDerived int64
	DroppedJoules                                                                           float64
	// Dips are readings a little below the last, held; Epochs new bases
	// the writer announced; Reordered points placed in their order;
	// Unplaced older points that did not fit between their neighbours.
	Dips, Epochs, Reordered, Unplaced int64
	// Implausible counts steps not counted, by reason (jump, drop,
	// restart, power).
	Implausible map[string]int64
}

// The levels of windows: the configured window, the hour and the day.
type levelID int

const (
	levelWindow levelID = iota
	levelHour
	levelDay
	nLevels
)

// Accountant is the energy accounting processor.
type Accountant struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	mu           sync.Mutex
	series       map[string]*series
	raplWrap     map[string]float64 // host + powercap path → joules
	levels       [nLevels]*level    // by levelID
	ents         *entities
	rolling      map[scopeKey]*rollingPUE
	ledger       *ledger            // workloads of written windows, for hours' and days' sums
	latest       latest             // last written values, for /metrics
	pending      []aggregator.Point // derived points not yet handed to the output
	checkpointed time.Time
	watermark    int64                // the newest accounting point's time, unix ns
	progress     int64                // in a cluster: every window ending then or before is published, unix ns
	pended       map[*series]struct{} // series holding a point (series.PendT)
	stats        Stats
	key          []byte
}

// New returns an accountant; its derived points come out of Tick.
func New(cfg Config, logger *slog.Logger) (*Accountant, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	a := &Accountant{cfg: cfg, log: logger, now: time.Now}
	a.reset()
	return a, nil
}

func (a *Accountant) reset() {
	a.series = map[string]*series{}
	a.pended = map[*series]struct{}{}
	a.raplWrap = map[string]float64{}
	a.ents = newEntities()
	a.rolling = map[scopeKey]*rollingPUE{}
	a.ledger = newLedger()
	a.latest = latest{}
	for i, d := range [nLevels]time.Duration{a.cfg.Window, time.Hour, 24 * time.Hour} {
		a.levels[i] = &level{id: levelID(i), size: int64(d), name: resolutionName(d), windows: map[int64]*window{}}
	}
}

func resolutionName(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

// Process implements aggregator.Processor: it reads the points and returns
// them unchanged.
func (a *Accountant) Process(points []aggregator.Point) []aggregator.Point {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now().UnixNano()
	for i := range points {
		p := &points[i]
		a.observe(p, now)
	}
	return points
}

func (a *Accountant) observe(p *aggregator.Point, now int64) {
	in := classify(p.Measurement, p.Tags)
	if in == inNone {
		return
	}
	v := view(p)
	t := p.Time.UnixNano()
	// Energy, power and work are never negative and activity is a share;
	// a point from more than a day ahead of this clock is a broken clock.
	if !v.ok || math.IsNaN(v.value) || math.IsInf(v.value, 0) || v.value < 0 || (in == inActivity || in == inShare) && v.value > 1 || t > now+int64(maxAhead) {
		a.stats.Invalid++
		return
	}
	a.stats.Points++
	a.watermark = max(a.watermark, t)
	a.key = append(a.key[:0], p.Measurement...)
	for _, t := range p.Tags {
		if descriptive(t.Key) {
			continue
		}
		a.key = append(a.key, 0)
		a.key = append(a.key, t.Key...)
		a.key = append(a.key, '=')
		a.key = append(a.key, t.Value...)
	}
	s := a.series[string(a.key)]
	if s == nil {
		s = a.ents.newSeries(in, v)
		if in == inActivity {
			s.GPUSM = p.Measurement == "joules_gpu_sm_activity_ratio"
		}
		a.series[string(a.key)] = s
	}
	switch in {
	case inRAPLRange:
		a.raplWrap[s.RAPLKey] = v.value
		s.LastT, s.Seen = max(s.LastT, t), true // so that prune forgets it with its host
		return
	case inGPULimit:
		a.ents.GPULimit[s.Entity] = v.value
		s.LastT, s.Seen = max(s.LastT, t), true
		return
	case inHostCapacity:
		a.ents.Capacity[s.CapKey] = v.value
		s.LastT, s.Seen = max(s.LastT, t), true
		return
	case inActivity:
		a.activity(s, v.value, t, now)
		return
	case inShare:
		a.share(s, v.value, t)
		return
	case inLoadCPUs, inHostCPUs:
		a.cpus(s, v.value, t, now)
		return
	}
	if s.PendT != 0 {
		switch {
		case t == s.PendT:
			a.stats.Duplicates++
			return
		case t > s.PendT:
			a.release(s, now) // the series went on after it: it was no jump of the clock
		}
	}
	if s.Seen && t <= s.LastT {
		if t == s.LastT {
			a.stats.Duplicates++ // a replayed or re-sent point: already counted
			return
		}
		a.outOfOrder(s, v.value, t, now)
		return
	}
	if s.Seen && s.PendT == 0 && time.Duration(t-s.LastT) > a.cfg.MaxGap {
		// Far after the last point: a series that resumes after a gap, or
		// a clock that jumped ahead, whose later points would all look out
		// of order. Held until the next point or the clock tells.
		s.PendT, s.PendV, s.PendEpoch = t, v.value, strings.Clone(v.tag("epoch"))
		a.pended[s] = struct{}{}
		return
	}
	a.step(s, v.value, t, v.tag("epoch"), now)
}

// release takes a series' held point as the step it is.
func (a *Accountant) release(s *series, now int64) {
	t, v, epoch := s.PendT, s.PendV, s.PendEpoch
	s.PendT, s.PendV, s.PendEpoch = 0, 0, ""
	delete(a.pended, s)
	switch {
	case t == s.LastT:
		a.stats.Duplicates++
	case t < s.LastT:
		a.outOfOrder(s, v, t, now)
	default:
		a.step(s, v, t, epoch, now)
	}
}

// releaseDue takes the held points whose time the clock has passed by the
// grace: nothing newer came, and none was a clock ahead of this one.
func (a *Accountant) releaseDue(now int64) {
	for s := range a.pended {
		if s.PendT+int64(a.cfg.Grace) <= now {
			a.release(s, now)
		}
	}
}

// letGoUntil is the latest end of a level's windows that are let go (or
// would be): those a written window's max_lateness has passed, by the wall
// clock and by the newest point, and every one let go before, so that a
// clock stepped back never makes a finished window again.
func (a *Accountant) letGoUntil(lv *level, now int64) int64 {
	return max(lv.Released, min(now, a.watermark)-int64(a.cfg.MaxLateness)-1)
}

// late counts a step's share that falls in windows let go.
func (a *Accountant) late(s *series, share float64) {
	a.stats.LatePoints++
	if s.In != inWork {
		a.stats.DroppedJoules += share
	}
}

// level is one resolution of windows.
type level struct {
	id       levelID
	size     int64 // ns
	name     string
	windows  map[int64]*window // by start, unix ns
	Released int64             // the latest end of a window let go, unix ns
}

func (lv *level) start(t int64) int64 {
	s := t - t%lv.size
	if t < 0 && t%lv.size != 0 {
		s -= lv.size
	}
	return s
}

// window returns the window starting at ws, or nil when it was written
// and let go (later than MaxLateness by the wall clock and by the newest
// point).
func (a *Accountant) window(lv *level, ws int64, now int64) *window {
	if w := lv.windows[ws]; w != nil {
		return w
	}
	if ws+lv.size <= a.letGoUntil(lv, now) {
		return nil
	}
	w := newWindow(ws, lv.size, levelSlots[lv.id])
	lv.windows[ws] = w
	return w
}

// Stats returns the counts so far.
func (a *Accountant) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.stats
	st.Implausible = maps.Clone(st.Implausible)
	return st
}

// Series is the number of raw series accounting keeps state for.
func (a *Accountant) Series() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.series)
}
