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
	"math"
	"sync"
	"time"

	"github.com/joules-energy/joules/aggregator"
)

// Config says how accounting windows work. Zero fields take the defaults.
type Config struct {
	// Window is the tumbling window, aligned to the wall clock (1m).
	// Windows of an hour and a day are kept as well.
	Window time.Duration
	// Grace is how long after its end a window waits for late points
	// before it is written (30s).
	Grace time.Duration
	// MaxLateness is how long a written window is kept: points later than
	// its grace but within this revise it, and it is written again
	// (InfluxDB overwrites the earlier values). A window is let go once
	// both the wall clock and the newest point seen are this far past its
	// end, so a wall clock stepped forward does not turn current points
	// into late ones. Points for a window let go are counted as dropped
	// (1h).
	MaxLateness time.Duration
	// MaxGap is the longest step between two power readings that is
	// integrated, and between two counter readings that counts as
	// covered time (5m). A counter's energy over a longer step is still
	// counted (the counter measured it); the time is not covered.
	MaxGap time.Duration
	// ForgetAfter is how long a silent host or meter stays expected in
	// coverage before it is taken for decommissioned (24h).
	ForgetAfter time.Duration
	// IdleBelow is the GPU activity under which a GPU's energy counts as
	// idle energy (0.05).
	IdleBelow float64
}

func (c *Config) defaults() {
	if c.Window <= 0 {
		c.Window = time.Minute
	}
	if c.Grace <= 0 {
		c.Grace = 30 * time.Second
	}
	if c.MaxLateness <= 0 {
		c.MaxLateness = time.Hour
	}
	if c.MaxGap <= 0 {
		c.MaxGap = 5 * time.Minute
	}
	if c.ForgetAfter <= 0 {
		c.ForgetAfter = 24 * time.Hour
	}
	if c.IdleBelow <= 0 {
		c.IdleBelow = 0.05
	}
}

// Validate checks a configuration after defaults.
func (c Config) Validate() error {
	c.defaults()
	if time.Hour%c.Window != 0 || c.Window >= time.Hour {
		return fmt.Errorf("accounting.window %s must divide an hour and be shorter (e.g. 10s, 1m, 5m, 15m): hour and day windows are kept anyway", c.Window)
	}
	if c.MaxLateness < c.Grace {
		return fmt.Errorf("accounting.max_lateness %s must be at least accounting.grace %s", c.MaxLateness, c.Grace)
	}
	return nil
}

// maxAhead is how far ahead of the aggregator's clock a point may be.
const maxAhead = 24 * time.Hour

// maxRAPLWatts bounds the power a RAPL zone's wrap may imply: a larger one
// is a reboot that restarted the counter, not a wrap.
const maxRAPLWatts = 2000

// Stats counts what accounting saw; all are totals since start.
type Stats struct {
	Points, Duplicates, Resets, Wraps, Gaps, LatePoints, Revisions, Invalid, DroppedDerived int64
	DroppedJoules                                                                           float64
}

// Accountant is the energy accounting processor.
type Accountant struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	mu           sync.Mutex
	series       map[string]*series
	raplWrap     map[string]float64 // host + powercap path → joules
	levels       [3]*level          // window, hour, day
	ents         *entities
	rolling      map[scopeKey]*rollingPUE
	latest       latest             // last written values, for /metrics
	pending      []aggregator.Point // derived points not yet handed to the output
	checkpointed time.Time
	watermark    int64 // the newest accounting point's time, unix ns
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
	a.raplWrap = map[string]float64{}
	a.ents = newEntities()
	a.rolling = map[scopeKey]*rollingPUE{}
	a.latest = latest{}
	for i, d := range []time.Duration{a.cfg.Window, time.Hour, 24 * time.Hour} {
		a.levels[i] = &level{size: int64(d), name: resolutionName(d), windows: map[int64]*window{}}
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
	if !v.ok || math.IsNaN(v.value) || math.IsInf(v.value, 0) || v.value < 0 || in == inActivity && v.value > 1 || t > now+int64(maxAhead) {
		a.stats.Invalid++
		return
	}
	a.stats.Points++
	a.watermark = max(a.watermark, t)
	a.key = append(a.key[:0], p.Measurement...)
	for _, t := range p.Tags {
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
		s.Last, s.LastT, s.Seen = v.value, t, true // so that prune forgets it with its host
	case inActivity:
		a.activity(s, v.value, t, now)
	case inBMCPower, inMeterPower:
		a.power(s, v.value, t, now)
	default:
		a.counter(s, v.value, t, now)
	}
}

// counter takes a reading of an energy or work counter.
func (a *Accountant) counter(s *series, value float64, t, now int64) {
	if !s.Seen {
		s.Last, s.LastT, s.Seen = value, t, true
		a.seen(s, t)
		return
	}
	if t <= s.LastT {
		a.stats.Duplicates++ // a replayed or re-sent point: already counted
		return
	}
	delta := value - s.Last
	if delta < 0 {
		// A RAPL counter wraps at its range; a reboot restarts it from zero.
		// A wrap is taken only where the power it implies is a CPU's.
		if wrap := a.raplWrap[s.RAPLKey]; s.In == inCPUEnergy && wrap > 0 && value+wrap-s.Last >= 0 &&
			time.Duration(t-s.LastT) <= a.cfg.MaxGap && (value+wrap-s.Last)/(float64(t-s.LastT)/1e9) <= maxRAPLWatts {
			delta = value + wrap - s.Last
			a.stats.Wraps++
		} else {
			delta = value // the counter restarted from zero (reboot, driver reload, restarted server)
			a.stats.Resets++
		}
	}
	t0 := s.LastT
	s.Last, s.LastT = value, t
	a.seen(s, t)
	covered := time.Duration(t-t0) <= a.cfg.MaxGap
	if !covered {
		a.stats.Gaps++
	}
	a.attribute(s, t0, t, delta, covered, now)
}

// power integrates a power reading by trapezoids; a step over MaxGap is a
// gap, never filled.
func (a *Accountant) power(s *series, watts float64, t, now int64) {
	if s.Seen && t <= s.LastT {
		a.stats.Duplicates++
		return
	}
	t0, w0, first := s.LastT, s.Last, !s.Seen
	s.Last, s.LastT, s.Seen = watts, t, true
	a.seen(s, t)
	if first {
		return
	}
	if time.Duration(t-t0) > a.cfg.MaxGap {
		a.stats.Gaps++
		return
	}
	a.attribute(s, t0, t, (watts+w0)/2*float64(t-t0)/1e9, true, now)
}

func (a *Accountant) activity(s *series, ratio float64, t, now int64) {
	if s.Seen && t <= s.LastT {
		a.stats.Duplicates++ // a replayed reading would count twice in the mean and reset idleness
		return
	}
	s.Last, s.LastT, s.Seen = ratio, t, true
	g := s.Entity
	// SM activity (GPM) is the better signal; utilization only counts for
	// a GPU that has none.
	if s.GPUSM {
		a.ents.GPUSM[g] = true
	} else if a.ents.GPUSM[g] {
		return
	}
	a.ents.GPUIdle[g] = ratio < a.cfg.IdleBelow
	for _, lv := range a.levels {
		if w := a.window(lv, lv.start(t), now); w != nil {
			update(w.GPUs, g, func(acc *gpuAcc) {
				if s.GPUSM && !acc.SM {
					acc.ActivitySum, acc.ActivityN, acc.SM = 0, 0, true
				}
				acc.ActivitySum += ratio
				acc.ActivityN++
			})
			w.Dirty = true
		}
	}
}

// seen records that an entity sent data.
func (a *Accountant) seen(s *series, t int64) {
	switch s.In {
	case inGPUEnergy:
		a.ents.HostSeen[a.ents.GPUHost[s.Entity]].mark(t)
		a.ents.GPUSeen[s.Entity].mark(t)
	case inCPUEnergy, inBMCEnergy, inBMCPower:
		a.ents.HostSeen[s.Entity].mark(t)
	case inMeterEnergy, inMeterPower:
		a.ents.MeterSeen[s.Entity].mark(t)
	}
}

// attribute spreads energy (or work) measured over [t0, t1] over the
// windows of every level it overlaps, in proportion to time.
func (a *Accountant) attribute(s *series, t0, t1 int64, amount float64, covered bool, now int64) {
	span := float64(t1 - t0)
	for li, lv := range a.levels {
		// The part of the step in windows already let go is dropped, at
		// once rather than window by window: after a long silence a step
		// may span months. Hour and day windows are kept longer than
		// minutes, so each level has its own first window.
		from := max(t0, lv.start(a.letGoUntil(lv, now)))
		if from > t0 && li == 0 {
			a.late(s, amount*float64(min(from, t1)-t0)/span)
		}
		for ws := lv.start(from); ws < t1; ws += lv.size {
			overlap := float64(min(t1, ws+lv.size) - max(from, ws))
			if overlap <= 0 {
				continue
			}
			share := amount * overlap / span
			w := a.window(lv, ws, now)
			if w == nil {
				if li == 0 {
					a.late(s, share)
				}
				continue
			}
			sec := 0.0
			if covered {
				sec = overlap / 1e9
			}
			w.add(s, share, sec, s.In == inGPUEnergy && a.ents.GPUIdle[s.Entity])
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
	w := newWindow(ws, lv.size)
	lv.windows[ws] = w
	return w
}

// Stats returns the counts so far.
func (a *Accountant) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// Series is the number of raw series accounting keeps state for.
func (a *Accountant) Series() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.series)
}
