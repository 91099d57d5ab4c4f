package meter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/internal/breaker"
	"github.com/joules-energy/joules/internal/energy"
	"github.com/joules-energy/joules/internal/schema"
)

// Device is one meter as a protocol reads it.
type Device interface {
	// Read polls the device once, within ctx: its readings, what it could
	// not read of its profile, or an error when it could not be read at
	// all (a *PollError says why).
	Read(ctx context.Context) ([]Reading, []Problem, error)
	// Requests is how many requests (SNMP PDUs, Modbus transactions) it
	// has sent so far.
	Requests() int64
	// Close releases the connection.
	Close() error
}

// PollError is a poll that failed as a whole, with the reason its
// joules_<protocol>_poll_errors_total counts.
type PollError struct {
	Reason string // timeout, connection, auth, protocol
	Err    error
}

func (e *PollError) Error() string { return e.Err.Error() }
func (e *PollError) Unwrap() error { return e.Err }

// Reason is the poll_errors_total reason of err.
func Reason(err error) string {
	var pe *PollError
	var ne net.Error
	switch {
	case errors.As(err, &pe):
		return pe.Reason
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	default:
		return "connection"
	}
}

// Config is one meter's source.
type Config struct {
	Protocol      string // snmp or modbus: its metrics are joules_<protocol>_…
	Name          string // the device label
	Role          string // what the meter feeds: facility_input, ups_output, pdu_output, it_input
	EquipmentType string // rack_pdu, ups, meter: from the profile
	// MaxWatts bounds an energy step: more than this over the step is a
	// glitch, not counted (default energy.DefaultMeterWatts).
	MaxWatts float64
	// Interval is the poll interval; power is integrated across gaps of at
	// most three of them (a longer one starts a new epoch).
	Interval time.Duration
	Counters *energy.Store
	Logger   *slog.Logger
}

// Source polls one meter for the runner. Each Collect is one poll.
type Source struct {
	cfg    Config
	dev    Device
	now    func() time.Time
	breakr breaker.Breaker

	mu         sync.Mutex
	last       []collector.Sample
	lastAt     time.Time
	errCounts  map[string]float64
	problems   map[[2]string]float64
	logged     map[[2]string]bool
	reqsBefore int64
	pollReqs   int64
	hasCounter map[string]bool // rows whose energy counter has been read
}

// NewSource returns the source of one meter read through dev.
func NewSource(cfg Config, dev Device) *Source {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Counters == nil {
		cfg.Counters = energy.NewMemoryStore()
	}
	if cfg.MaxWatts <= 0 {
		cfg.MaxWatts = energy.DefaultMeterWatts
	}
	return &Source{cfg: cfg, dev: dev, now: time.Now, breakr: breaker.New(),
		errCounts: map[string]float64{}, problems: map[[2]string]float64{}, logged: map[[2]string]bool{}, hasCounter: map[string]bool{}}
}

// Close closes the device's connection, once no poll is using it.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dev.Close()
}

// ErrCircuitOpen says the meter is left alone for a while after repeated failures.
var ErrCircuitOpen = errors.New("circuit open after repeated failures; the meter is left alone until the backoff ends")

// Collect polls the meter once. When it fails, the last good values are
// returned with their age, and the error.
func (s *Source) Collect(ctx context.Context) ([]collector.Sample, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if until, open := s.breakr.Open(now); open {
		s.pollReqs = 0
		return s.stale(now), fmt.Errorf("%w (until %s)", ErrCircuitOpen, until.Format(time.RFC3339))
	}
	// Give up a little before the runner does, so the last good values
	// are published even when the meter hangs.
	if deadline, ok := ctx.Deadline(); ok {
		margin := min(time.Until(deadline)/10, time.Second)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-margin))
		defer cancel()
	}
	readings, problems, err := s.dev.Read(ctx)
	if err == nil && len(readings) == 0 && len(problems) > 0 {
		// Answered, but nothing of its profile: the wrong profile, or a
		// card that has not started its tables. Not a meter that is up.
		err = &PollError{Reason: "no_readings", Err: fmt.Errorf("the device answered but gave no reading of its profile (%d not read, first %s: %v): is it the right profile?",
			len(problems), problems[0].Reading, problems[0].Err)}
	}
	reqs := s.dev.Requests()
	s.pollReqs, s.reqsBefore = reqs-s.reqsBefore, reqs
	if err != nil {
		s.errCounts[Reason(err)]++
		if s.breakr.Fail(now) {
			s.cfg.Logger.Warn("meter failing repeatedly; backing off", "err", err, "backoff", s.breakr.Backoff())
		}
		return s.stale(now), err
	}
	s.breakr.OK()
	for _, p := range problems {
		key := [2]string{p.Reading, p.Reason}
		s.problems[key]++
		if !s.logged[key] {
			s.logged[key] = true
			s.cfg.Logger.Warn("a reading of the meter's profile could not be used; the rest is reported", "reading", p.Reading, "reason", p.Reason, "err", p.Err)
		}
	}
	samples := s.samples(readings, now)
	s.last, s.lastAt = samples, now
	return append(samples, s.status(now, true)...), nil
}

// samples turns readings into samples: energy counters continued through
// the counter store (resets, wraps and glitches by energy's rules), and
// the equipment's power integrated where it has no counter.
func (s *Source) samples(readings []Reading, now time.Time) []collector.Sample {
	prefix := "joules_" + s.cfg.Protocol + "_"
	keyPrefix := s.cfg.Protocol + "/" + s.cfg.Name + "/"
	maxGap := 3 * s.cfg.Interval
	for _, r := range readings {
		if r.Quantity == Energy {
			s.hasCounter[r.Row] = true
		}
	}
	out := make([]collector.Sample, 0, len(readings)+4)
	add := func(q quantity, v float64, row string, extra ...collector.Label) {
		labels := append([]collector.Label{
			{Name: schema.TagDevice, Value: s.cfg.Name}, {Name: "role", Value: s.cfg.Role},
			{Name: "equipment_type", Value: s.cfg.EquipmentType}, {Name: q.row, Value: row},
		}, extra...)
		collector.SortLabels(labels)
		kind := collector.Gauge
		if q.counter {
			kind = collector.Counter
		}
		out = append(out, collector.Sample{Name: prefix + q.metric, Help: q.help, Kind: kind, Value: v, Labels: labels, Time: now})
	}
	for _, r := range readings {
		q := quantities[r.Quantity]
		if !q.counter {
			add(q, r.Value, r.Row)
			// A row that has shown a counter is never integrated: a poll
			// whose counter was unreadable leaves a gap in its series, not
			// a second series of another method.
			if r.Quantity == Power && !s.hasCounter[r.Row] {
				j, epoch := s.cfg.Counters.Integrate(keyPrefix+"power/"+r.Row, r.Value, now, maxGap, s.cfg.MaxWatts)
				add(quantities[Energy], j, r.Row, collector.Label{Name: "method", Value: "integrated"}, collector.Label{Name: "epoch", Value: epoch})
			}
			continue
		}
		total, epoch, _ := s.cfg.Counters.Counter(keyPrefix+string(r.Quantity)+"/"+r.Row, r.Value, "", now,
			energy.Bound{MaxWatts: s.cfg.MaxWatts, Wrap: r.Wrap, Resolution: r.Resolution})
		extra := []collector.Label{{Name: "epoch", Value: epoch}}
		if r.Quantity == Energy {
			extra = append(extra, collector.Label{Name: "method", Value: "counter"})
		}
		add(q, total, r.Row, extra...)
	}
	return out
}

// stale is the last good values, still with the time they were read, and
// the status saying how old they are.
func (s *Source) stale(now time.Time) []collector.Sample {
	out := make([]collector.Sample, 0, len(s.last)+8)
	out = append(out, s.last...)
	return append(out, s.status(now, false)...)
}

func (s *Source) status(now time.Time, up bool) []collector.Sample {
	prefix := "joules_" + s.cfg.Protocol + "_"
	base := []collector.Label{{Name: schema.TagDevice, Value: s.cfg.Name}, {Name: "role", Value: s.cfg.Role}}
	var out []collector.Sample
	add := func(name, help string, kind collector.Kind, v float64, extra ...collector.Label) {
		labels := append(slices.Clone(base), extra...)
		collector.SortLabels(labels)
		out = append(out, collector.Sample{Name: prefix + name, Help: help, Kind: kind, Value: v, Labels: labels, Time: now})
	}
	_, open := s.breakr.Open(now)
	add("up", "Whether the last poll of the meter succeeded (1) or not (0).", collector.Gauge, b2f(up))
	add("circuit_open", "Whether polling is suspended after repeated failures (1) or not (0).", collector.Gauge, b2f(open))
	add("poll_requests", "Requests the last poll sent.", collector.Gauge, float64(s.pollReqs))
	add("requests_total", "Requests sent to the meter.", collector.Counter, float64(s.reqsBefore))
	for _, reason := range slices.Sorted(maps.Keys(s.errCounts)) {
		add("poll_errors_total", "Failed polls, by reason (timeout, connection, auth, protocol, no_readings).", collector.Counter, s.errCounts[reason],
			collector.Label{Name: "reason", Value: reason})
	}
	keys := make([][2]string, 0, len(s.problems))
	for k := range s.problems {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) })
	for _, k := range keys {
		add("reading_problems_total", "Readings of the profile the meter did not give, by reading and reason (missing, out_of_range, bad_type).",
			collector.Counter, s.problems[k], collector.Label{Name: "reading", Value: k[0]}, collector.Label{Name: "reason", Value: k[1]})
	}
	if !s.lastAt.IsZero() {
		add("last_success_timestamp_seconds", "When the meter was last read successfully.", collector.Gauge, float64(s.lastAt.UnixNano())/1e9)
		add("data_age_seconds", "Age of the meter's values being reported: 0 when fresh, growing while the meter fails and its last good values are kept.",
			collector.Gauge, now.Sub(s.lastAt).Seconds())
	}
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
