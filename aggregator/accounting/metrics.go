package accounting

import (
	"maps"
	"slices"
	"strings"

	"github.com/joules-energy/joules/internal/schema"
	"github.com/prometheus/client_golang/prometheus"
)

// latest holds the last written values that /metrics shows, so the
// aggregator is useful with Prometheus alone.
type latest struct {
	pue    map[pueKey]pueResult
	energy map[Topology]scopeSum // site, hall and rack scopes of the last window
	work   map[workRateKey]workRate
}

type pueKey struct {
	scopeKey
	Resolution string
}

type workRateKey struct {
	scopeKey
	Unit string
}

type workRate struct{ perJoule, perFacilityJoule float64 }

func (l *latest) setPUE(sk scopeKey, resolution string, r pueResult) {
	if l.pue == nil {
		l.pue = map[pueKey]pueResult{}
	}
	l.pue[pueKey{sk, resolution}] = r
}

// window keeps what /metrics shows of the last closed base window.
func (l *latest) window(r *windowResult) {
	l.energy = r.Sums
	pues := map[scopeKey]pueResult{}
	for _, p := range r.PUEs {
		l.setPUE(p.Key, r.Res, p)
		pues[p.Key] = p
	}
	if l.work == nil {
		l.work = map[workRateKey]workRate{}
	}
	for _, w := range r.Work {
		if w.Scope != schema.ScopeSite && w.Scope != schema.ScopeHall {
			continue
		}
		k := workRateKey{scopeKey{Scope: w.Scope, Site: w.Topo.Site, Hall: w.Topo.Hall}, w.Unit}
		if w.Joules <= 0 {
			delete(l.work, k)
			continue
		}
		rate := workRate{perJoule: w.Work / w.Joules}
		if w.PUE.OK {
			rate.perFacilityJoule = rate.perJoule / w.PUE.PUE
		}
		l.work[k] = rate
	}
}

var (
	scopeLabels         = []string{"scope", "site", "hall"}
	descPUE             = prometheus.NewDesc("joules_pue_ratio", "Interim PUE (scope site) or pPUE (scope hall): facility energy over IT energy in the window, as ISO/IEC 30134-2 defines it (whose PUE is over a year). Absent where an input is missing or the ratio is implausible (below 1); joules_pue_coverage_ratio says how complete it is.", append(scopeLabels, "window"), nil)
	descPUECoverage     = prometheus.NewDesc("joules_pue_coverage_ratio", "Share of the expected meter- and host-time that had data, for the PUE of the window: the lower of facility and IT coverage.", append(scopeLabels, "window"), nil)
	descPUECategory     = prometheus.NewDesc("joules_pue_category", "ISO/IEC 30134-2 PUE category of the IT energy: 1 UPS output, 2 PDU output, 3 IT equipment input; 0 an estimate (hosts measured only by GPUs + CPU).", append(scopeLabels, "window"), nil)
	descEnergy          = prometheus.NewDesc("joules_accounted_energy_joules", "Energy of the last closed window by scope (site, hall, rack) and kind (it, gpu, cpu).", []string{"scope", "site", "hall", "rack", "kind"}, nil)
	descEnergyCoverage  = prometheus.NewDesc("joules_accounted_energy_coverage_ratio", "Share of expected host-time that had IT energy data in the last closed window.", []string{"scope", "site", "hall", "rack"}, nil)
	descWorkPerJoule    = prometheus.NewDesc("joules_work_per_joule", "Work (unit: token, flop, sample, …) per joule of IT energy in the last closed window.", append(scopeLabels, "unit"), nil)
	descWorkPerFacility = prometheus.NewDesc("joules_work_per_facility_joule", "Work per joule of facility energy (work per IT joule over PUE) in the last closed window.", append(scopeLabels, "unit"), nil)
	descSeries          = prometheus.NewDesc("joules_accounting_series", "Raw series accounting keeps state for.", nil, nil)
	descOpenWindows     = prometheus.NewDesc("joules_accounting_windows", "Windows held in memory (open, or written and kept for late points).", []string{"resolution"}, nil)
	descAcctPoints      = prometheus.NewDesc("joules_accounting_points_total", "Points accounting used (energy, power, work and activity).", nil, nil)
	descDuplicates      = prometheus.NewDesc("joules_accounting_duplicate_points_total", "Points at the time of one already counted, or older than the series' last few points (a replayed spool, a retried request): ignored, so never counted twice.", nil, nil)
	descResets          = prometheus.NewDesc("joules_accounting_counter_resets_total", "Counters that restarted from zero (a drop to a value within what the device could draw since, or a RAPL zone of a new boot): what they read since the restart is counted.", nil, nil)
	descDips            = prometheus.NewDesc("joules_accounting_counter_dips_total", "Counter readings a little below the last (a stale BMC value): held, never counted twice.", nil, nil)
	descEpochs          = prometheus.NewDesc("joules_accounting_counter_epochs_total", "Counters whose writer announced a new epoch (it could not continue the value): the step across is not counted.", nil, nil)
	descImplausible     = prometheus.NewDesc("joules_accounting_implausible_steps_total", "Steps not counted because they exceed what the device can draw, by reason: jump (a counter rose too fast), drop (a counter fell, not to a restart), restart (a restart that read too much since), power (a power reading above the bound).", []string{"reason"}, nil)
	descReordered       = prometheus.NewDesc("joules_accounting_reordered_points_total", "Points that came after a later one of their series and were placed in their order.", nil, nil)
	descUnplaced        = prometheus.NewDesc("joules_accounting_unplaced_points_total", "Out-of-order points that did not fit between their neighbours (a counter value outside them): ignored; the step around them is counted.", nil, nil)
	descWraps           = prometheus.NewDesc("joules_accounting_counter_wraps_total", "RAPL counters that wrapped at their max_energy_range.", nil, nil)
	descGaps            = prometheus.NewDesc("joules_accounting_gaps_total", "Steps longer than max_gap: power not integrated over them, counter energy counted without covered time.", nil, nil)
	descLate            = prometheus.NewDesc("joules_accounting_late_points_total", "Points whose window was already let go (later than max_lateness).", nil, nil)
	descDroppedJoules   = prometheus.NewDesc("joules_accounting_dropped_joules_total", "Energy of points later than max_lateness, not in any window.", nil, nil)
	descInvalid         = prometheus.NewDesc("joules_accounting_invalid_points_total", "Points accounting ignored: a negative or non-finite value, an activity outside 0–1, or a time more than a day ahead of the aggregator's clock.", nil, nil)
	descDroppedDerived  = prometheus.NewDesc("joules_accounting_dropped_derived_points_total", "Derived points dropped because the output refused them for long (more than 2 million waited).", nil, nil)
	descRevisions       = prometheus.NewDesc("joules_accounting_revised_windows_total", "Windows written again because late points changed them.", nil, nil)
	descCheckpoint      = prometheus.NewDesc("joules_accounting_checkpoint_last_success_timestamp_seconds", "When accounting state was last saved.", nil, nil)
)

// Describe implements prometheus.Collector.
func (a *Accountant) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPUE, descPUECoverage, descPUECategory, descEnergy, descEnergyCoverage, descWorkPerJoule, descWorkPerFacility,
		descSeries, descOpenWindows, descAcctPoints, descDuplicates, descResets, descDips, descEpochs, descImplausible, descReordered, descUnplaced,
		descWraps, descGaps, descLate, descDroppedJoules, descRevisions, descInvalid, descDroppedDerived, descCheckpoint} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (a *Accountant) Collect(ch chan<- prometheus.Metric) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.collectLatest(ch)
	collectStats(ch, []*Accountant{a})
	if !a.checkpointed.IsZero() {
		ch <- prometheus.MustNewConstMetric(descCheckpoint, prometheus.GaugeValue, float64(a.checkpointed.UnixNano())/1e9)
	}
}

// CollectPartitions sends what a cluster worker's partitions counted, summed
// over them: the counters, series and windows of Collect, without the
// latest values (those are the roll-up's).
func CollectPartitions(ch chan<- prometheus.Metric, partitions []*Accountant) {
	for _, a := range partitions {
		a.mu.Lock()
		defer a.mu.Unlock()
	}
	collectStats(ch, partitions)
}

// Collect sends the roll-up's latest values (its counts are in Stats and
// RollupStats).
func (r *Rollup) Collect(ch chan<- prometheus.Metric) {
	a := r.acct
	a.mu.Lock()
	defer a.mu.Unlock()
	a.collectLatest(ch)
}

// Revisions is how many windows the roll-up wrote again.
func (r *Rollup) Revisions() int64 {
	r.acct.mu.Lock()
	defer r.acct.mu.Unlock()
	return r.acct.stats.Revisions
}

// collectLatest sends the last written values; call with a.mu held.
func (a *Accountant) collectLatest(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, k := range slices.SortedFunc(maps.Keys(a.latest.pue), func(x, y pueKey) int {
		return strings.Compare(x.Scope+x.Site+x.Hall+x.Resolution, y.Scope+y.Site+y.Hall+y.Resolution)
	}) {
		r := a.latest.pue[k]
		l := []string{k.Scope, k.Site, k.Hall, k.Resolution}
		if r.OK {
			gauge(descPUE, r.PUE, l...)
		}
		gauge(descPUECoverage, r.Coverage, l...)
		if r.Category > 0 {
			gauge(descPUECategory, float64(r.Category), l...)
		}
	}
	for k, s := range a.latest.energy {
		scope := scopeOf(k)
		gauge(descEnergy, s.IT, scope, k.Site, k.Hall, k.Rack, schema.KindIT)
		gauge(descEnergy, s.GPU, scope, k.Site, k.Hall, k.Rack, schema.KindGPU)
		gauge(descEnergy, s.CPU, scope, k.Site, k.Hall, k.Rack, schema.KindCPU)
		if s.Hosts > 0 {
			gauge(descEnergyCoverage, s.Coverage/float64(s.Hosts), scope, k.Site, k.Hall, k.Rack)
		}
	}
	for k, r := range a.latest.work {
		gauge(descWorkPerJoule, r.perJoule, k.Scope, k.Site, k.Hall, k.Unit)
		if r.perFacilityJoule > 0 {
			gauge(descWorkPerFacility, r.perFacilityJoule, k.Scope, k.Site, k.Hall, k.Unit)
		}
	}
}

// collectStats sends the counts of accountants, summed; call with their
// locks held.
func collectStats(ch chan<- prometheus.Metric, accts []*Accountant) {
	var st Stats
	st.Implausible = map[string]int64{}
	series := 0
	windows := make([]int, nLevels)
	var names [nLevels]string
	for _, a := range accts {
		series += len(a.series)
		for i, lv := range a.levels {
			windows[i] += len(lv.windows)
			names[i] = lv.name
		}
		s := a.stats
		st.Points += s.Points
		st.Duplicates += s.Duplicates
		st.Resets += s.Resets
		st.Dips += s.Dips
		st.Epochs += s.Epochs
		st.Reordered += s.Reordered
		st.Unplaced += s.Unplaced
		st.Wraps += s.Wraps
		st.Gaps += s.Gaps
		st.LatePoints += s.LatePoints
		st.DroppedJoules += s.DroppedJoules
		st.Revisions += s.Revisions
		st.Invalid += s.Invalid
		st.DroppedDerived += s.DroppedDerived
		for k, v := range s.Implausible {
			st.Implausible[k] += v
		}
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(descSeries, float64(series))
	for i, n := range windows {
		if names[i] != "" {
			gauge(descOpenWindows, float64(n), names[i])
		}
	}
	counter(descAcctPoints, float64(st.Points))
	counter(descDuplicates, float64(st.Duplicates))
	counter(descResets, float64(st.Resets))
	counter(descDips, float64(st.Dips))
	counter(descEpochs, float64(st.Epochs))
	counter(descReordered, float64(st.Reordered))
	counter(descUnplaced, float64(st.Unplaced))
	for _, reason := range []string{implausibleJump, implausibleDrop, implausibleRestart, implausiblePower} {
		ch <- prometheus.MustNewConstMetric(descImplausible, prometheus.CounterValue, float64(st.Implausible[reason]), reason)
	}
	counter(descWraps, float64(st.Wraps))
	counter(descGaps, float64(st.Gaps))
	counter(descLate, float64(st.LatePoints))
	counter(descDroppedJoules, st.DroppedJoules)
	counter(descRevisions, float64(st.Revisions))
	counter(descInvalid, float64(st.Invalid))
	counter(descDroppedDerived, float64(st.DroppedDerived))
}
