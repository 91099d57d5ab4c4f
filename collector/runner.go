package collector

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Registration tells the runner how to drive one source.
type Registration struct {
	Name     string        // source kind, e.g. "node", "nvml", "redfish"
	Target   string        // instance of the source, e.g. a BMC name; may be empty
	Interval time.Duration // time between the starts of two collections
	Timeout  time.Duration // deadline of one collection; defaults to Interval
	// StaleAfter is how long the last good samples stay in the snapshot after
	// collections start failing; defaults to three intervals.
	StaleAfter time.Duration
	Source     Source
}

// Runner drives each registered source on its own goroutine and cadence and
// keeps the latest samples of each. A source that hangs holds up nothing but
// itself: its call is abandoned at the timeout and it is not called again
// until the abandoned call has returned.
type Runner struct {
	logger    *slog.Logger
	topology  []Label
	sources   []*sourceState
	now       func() time.Time
	onPublish []func([]Sample)
}

type sourceState struct {
	reg        Registration
	selfLabels []Label      // source, target and topology, for the self-metrics
	tick       atomic.Int64 // unix nanoseconds of the loop's last turn

	mu          sync.Mutex
	samples     []Sample // immutable once published
	labels      labelCache
	up          bool
	absent      bool
	ran         bool
	duration    time.Duration
	lastSuccess time.Time
}

// NewRunner returns a runner that adds the topology labels (site, hall, rack,
// host, …) to every sample that does not already carry a label of that name.
func NewRunner(logger *slog.Logger, topology map[string]string) *Runner {
	r := &Runner{logger: logger, now: time.Now}
	for name, value := range topology {
		if value != "" {
			r.topology = append(r.topology, Label{Name: name, Value: value})
		}
	}
	SortLabels(r.topology)
	return r
}

// OnPublish registers f to receive every successful collection's samples,
// topology labels included (the stream exporter's feed). f runs on the
// source's goroutine: it must be quick and must not modify the samples.
// Call it before Run.
func (r *Runner) OnPublish(f func([]Sample)) { r.onPublish = append(r.onPublish, f) }

// Add registers a source. Call it before Run.
func (r *Runner) Add(reg Registration) error {
	if reg.Source == nil {
		return fmt.Errorf("source %q: nil source", reg.Name)
	}
	if reg.Interval <= 0 {
		return fmt.Errorf("source %q: interval must be positive, got %s", reg.Name, reg.Interval)
	}
	if reg.Timeout <= 0 {
		reg.Timeout = reg.Interval
	}
	if reg.StaleAfter <= 0 {
		reg.StaleAfter = 3 * reg.Interval
	}
	for _, s := range r.sources {
		if s.reg.Name == reg.Name && s.reg.Target == reg.Target {
			return fmt.Errorf("source %q target %q registered twice", reg.Name, reg.Target)
		}
	}
	// The self-metrics' labels never change: merge them with the topology once.
	self := r.withTopology([]Sample{{Labels: []Label{{"source", reg.Name}, {"target", reg.Target}}}})[0].Labels
	r.sources = append(r.sources, &sourceState{reg: reg, selfLabels: self})
	return nil
}

// Run collects from every source until ctx is cancelled, then returns once
// every source loop has stopped. Calls abandoned at their timeout are not
// waited for.
func (r *Runner) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range r.sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.loop(ctx, s)
		}()
	}
	wg.Wait()
}

type collectResult struct {
	samples []Sample
	err     error
}

func (r *Runner) loop(ctx context.Context, s *sourceState) {
	logger := r.logger.With("collector", s.reg.Name, "target", s.reg.Target) // "source" is promslog's code location
	ticker := time.NewTicker(s.reg.Interval)
	defer ticker.Stop()

	var (
		pending      chan collectResult // an abandoned call that has not returned yet
		absentLogged bool
		failing      bool
	)
	for {
		s.tick.Store(r.now().UnixNano())
		if pending != nil {
			select {
			case <-pending:
				pending = nil // its result is too old to publish
			default:
				r.record(s, nil, fmt.Errorf("previous collection still running past its %s timeout", s.reg.Timeout), 0)
			}
		}
		if pending == nil {
			start := r.now()
			done := make(chan collectResult, 1)
			cctx, cancel := context.WithTimeout(ctx, s.reg.Timeout)
			go func() {
				samples, err := s.reg.Source.Collect(cctx)
				done <- collectResult{samples, err}
			}()
			var res collectResult
			select {
			case res = <-done:
			case <-cctx.Done():
				if ctx.Err() != nil {
					cancel()
					return
				}
				pending = done
				res.err = fmt.Errorf("collection timed out after %s: %w", s.reg.Timeout, cctx.Err())
			}
			cancel()
			elapsed := r.now().Sub(start)
			published := r.record(s, res.samples, res.err, elapsed)
			if res.err == nil {
				for _, f := range r.onPublish {
					f(published)
				}
			}

			switch {
			case errors.Is(res.err, ErrAbsent):
				if !absentLogged {
					logger.Info("hardware absent; the source will keep checking", "reason", res.err)
					absentLogged = true
				}
			case res.err != nil:
				if !failing {
					logger.Error("collection failed", "err", res.err, "duration_seconds", elapsed.Seconds())
				} else {
					logger.Debug("collection failed", "err", res.err)
				}
				failing = true
			default:
				if failing {
					logger.Info("collection recovered")
				}
				failing = false
				absentLogged = false
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// record publishes the outcome of one collection and returns what it published.
func (r *Runner) record(s *sourceState, samples []Sample, err error, elapsed time.Duration) []Sample {
	now := r.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ran = true
	if elapsed > 0 {
		s.duration = elapsed
	}
	s.absent = errors.Is(err, ErrAbsent)
	s.up = err == nil
	switch {
	case err == nil:
		s.samples = r.intern(&s.labels, samples)
		s.lastSuccess = now
	case samples != nil:
		// The source kept what it could (a BMC's last good values with
		// their age): publish it, but the source is down.
		s.samples = r.intern(&s.labels, samples)
	case now.Sub(s.lastSuccess) > s.reg.StaleAfter:
		s.samples = nil
	}
	return s.samples
}

// withTopology returns samples with the topology labels merged in, sorted,
// without a source's state to intern them in (the self-metrics' labels).
func (r *Runner) withTopology(samples []Sample) []Sample {
	var c labelCache
	return r.intern(&c, samples)
}

// labelCache keeps one source's merged label sets from one collection to the
// next: a source reads the same series every time, so after the first pass
// merging costs a lookup and no allocation. Sets not seen in a pass are
// dropped after it, so series that go away (a finished process) do not pile
// up.
type labelCache struct {
	sets, next map[string][]Label
	key        []byte
}

// intern merges the topology into each sample's labels, reusing the merged
// set of an earlier pass when the labels are the same. Sources often share
// one label slice between many samples (every reading of one GPU); such a
// slice is looked up once per pass.
func (r *Runner) intern(c *labelCache, samples []Sample) []Sample {
	if len(r.topology) == 0 {
		return samples
	}
	if c.next == nil {
		c.next = map[string][]Label{}
	}
	type sliceID struct {
		first *Label
		n     int
	}
	shared := map[sliceID][]Label{}
	for i := range samples {
		ls := samples[i].Labels
		var id sliceID
		if len(ls) > 0 {
			id = sliceID{&ls[0], len(ls)}
		}
		if m, ok := shared[id]; ok {
			samples[i].Labels = m
			continue
		}
		c.key = c.key[:0]
		for _, l := range ls { // lengths first: no separator can collide with a value's bytes
			c.key = binary.AppendUvarint(c.key, uint64(len(l.Name)))
			c.key = binary.AppendUvarint(append(c.key, l.Name...), uint64(len(l.Value)))
			c.key = append(c.key, l.Value...)
		}
		m, ok := c.next[string(c.key)]
		if !ok {
			if m, ok = c.sets[string(c.key)]; !ok {
				m = r.merge(ls)
			}
			c.next[string(c.key)] = m
		}
		shared[id] = m
		samples[i].Labels = m
	}
	// Keep what this pass used; reuse the old map for the next pass.
	old := c.sets
	c.sets, c.next = c.next, old
	if c.next != nil {
		clear(c.next)
	}
	return samples
}

// merge returns a new slice of ls and the topology labels it lacks, sorted
// by name. Sorted input, the usual case, is merged without sorting.
func (r *Runner) merge(ls []Label) []Label {
	m := make([]Label, 0, len(ls)+len(r.topology))
	byName := func(a, b Label) int { return strings.Compare(a.Name, b.Name) }
	if !slices.IsSortedFunc(ls, byName) {
		m = append(m, ls...)
		for _, t := range r.topology {
			if !hasLabel(ls, t.Name) {
				m = append(m, t)
			}
		}
		SortLabels(m)
		return m
	}
	i := 0
	for _, t := range r.topology {
		for i < len(ls) && ls[i].Name < t.Name {
			m = append(m, ls[i])
			i++
		}
		if i < len(ls) && ls[i].Name == t.Name {
			continue // the sample's own label wins
		}
		m = append(m, t)
	}
	return append(m, ls[i:]...)
}

func hasLabel(ls []Label, name string) bool {
	for _, l := range ls {
		if l.Name == name {
			return true
		}
	}
	return false
}

// Alive reports whether every source's loop has turned within three of its
// intervals (at least 30 s): a loop whose source hangs still turns, so only a
// runner that stopped working fails it. The systemd watchdog asks it.
func (r *Runner) Alive() bool {
	now := r.now()
	for _, s := range r.sources {
		limit := max(3*s.reg.Interval, 30*time.Second)
		if last := s.tick.Load(); last != 0 && now.Sub(time.Unix(0, last)) > limit {
			return false
		}
	}
	return true
}

// Self-metric names, exported for every registered source.
const (
	MetricSourceUp          = "joules_source_up"
	MetricSourceAbsent      = "joules_source_absent"
	MetricSourceDuration    = "joules_source_duration_seconds"
	MetricSourceLastSuccess = "joules_source_last_success_timestamp_seconds"
)

// Snapshot returns the latest samples of every source followed by the
// runner's self-metrics. It never waits for hardware. The returned samples
// must not be modified.
func (r *Runner) Snapshot() []Sample {
	now := r.now()
	var out []Sample
	for _, s := range r.sources {
		s.mu.Lock()
		samples, up, absent, ran, duration, lastSuccess := s.samples, s.up, s.absent, s.ran, s.duration, s.lastSuccess
		s.mu.Unlock()
		out = append(out, samples...)
		if !ran {
			continue
		}
		labels := s.selfLabels
		out = append(out,
			Sample{Name: MetricSourceUp, Help: "Whether the last collection of the source succeeded (1) or not (0).",
				Kind: Gauge, Value: boolValue(up), Labels: labels, Time: now},
			Sample{Name: MetricSourceAbsent, Help: "Whether the source reported its hardware absent on its last collection.",
				Kind: Gauge, Value: boolValue(absent), Labels: labels, Time: now},
			Sample{Name: MetricSourceDuration, Help: "Duration of the source's last collection, in seconds.",
				Kind: Gauge, Value: duration.Seconds(), Labels: labels, Time: now},
		)
		if !lastSuccess.IsZero() {
			out = append(out, Sample{Name: MetricSourceLastSuccess, Help: "Unix time of the source's last successful collection.",
				Kind: Gauge, Value: float64(lastSuccess.UnixNano()) / 1e9, Labels: labels, Time: now})
		}
	}
	return out
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
