package redfish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/internal/breaker"
)

// Source polls one BMC or power-equipment meter. Each Collect is one poll:
// it never outlives its context, and when the BMC fails it returns the last
// good values with their age, so the runner keeps publishing them, marked
// stale, while a hung or broken BMC delays nothing else.
type Source struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	conn   *conn
	breakr breaker.Breaker

	mu           sync.Mutex
	tree         *tree
	discoveredAt time.Time
	last         []collector.Sample
	lastAt       time.Time
	errCounts    map[string]float64
	lastPollReqs int64
	loggedPartly bool
	noTotal      map[string]bool // host chassis logged as having no power total
}

// NewSource returns the source for one BMC or meter.
func NewSource(cfg Config, logger *slog.Logger) (*Source, error) {
	cfg.defaults()
	if cfg.Endpoint == "" {
		return nil, fmt.Errorf("redfish %q: no endpoint", cfg.Name)
	}
	c, err := newConn(cfg)
	if err != nil {
		return nil, fmt.Errorf("redfish %q: %w", cfg.Name, err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Source{
		cfg: cfg, log: logger, now: time.Now, conn: c,
		breakr:    breaker.New(),
		errCounts: map[string]float64{},
	}, nil
}

// Close ends the Redfish session.
func (s *Source) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn.logout()
}

// ErrCircuitOpen says the source is not contacting the BMC for a while after repeated failures.
var ErrCircuitOpen = errors.New("circuit open after repeated failures; the BMC is left alone until the backoff ends")

// Collect polls the BMC once.
func (s *Source) Collect(ctx context.Context) ([]collector.Sample, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if until, open := s.breakr.Open(now); open {
		return s.stale(now), fmt.Errorf("%w (until %s)", ErrCircuitOpen, until.Format(time.RFC3339))
	}
	// Finish a little before the runner's deadline, so the last good values
	// are published even when the BMC hangs.
	if deadline, ok := ctx.Deadline(); ok {
		margin := min(time.Until(deadline)/10, time.Second)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-margin))
		defer cancel()
	}
	before := s.conn.requests.Load()
	samples, err := s.poll(ctx, now)
	s.lastPollReqs = s.conn.requests.Load() - before
	if err != nil {
		s.errCounts[errorReason(err)]++
		s.tree = nil // find the resources again next time: the BMC may have changed
		if s.breakr.Fail(now) {
			s.log.Warn("BMC failing repeatedly; backing off", "bmc", s.cfg.Name, "err", err, "backoff", s.breakr.Backoff())
		}
		return s.stale(now), err
	}
	s.breakr.OK()
	s.last, s.lastAt = samples, now
	return append(samples, s.status(now, true)...), nil
}

func (s *Source) poll(ctx context.Context, now time.Time) ([]collector.Sample, error) {
	if s.tree == nil || now.Sub(s.discoveredAt) > s.cfg.Rediscover {
		t, err := discover(ctx, s.conn)
		if err != nil {
			return nil, fmt.Errorf("discover: %w", err)
		}
		s.tree, s.discoveredAt = t, now
		if len(t.chassis) == 0 && len(t.equipment) == 0 {
			s.log.Warn("the service has neither chassis nor power equipment", "bmc", s.cfg.Name)
		}
	}
	p := &poller{
		c: s.conn, now: now, store: s.cfg.Counters, keyPrefix: "redfish/" + s.cfg.Name + "/", maxWatts: s.cfg.MaxWatts, host: s.cfg.Role == "host",
		maxGap: 3 * max(s.cfg.Timeout, 10*time.Second),
		base:   []collector.Label{lbl("bmc", s.cfg.Name), lbl("role", s.cfg.Role)},
	}
	for _, ch := range s.tree.chassis {
		if err := p.readChassis(ctx, ch); err != nil {
			return nil, err
		}
	}
	for _, e := range s.tree.equipment {
		if err := p.readEquipment(ctx, e); err != nil {
			return nil, err
		}
	}
	s.logHostPower(p.hostPower)
	if len(p.out) == 0 && len(p.errs) > 0 {
		return nil, p.errs[0] // nothing readable at all: the BMC is broken, not one resource
	}
	if len(p.errs) > 0 {
		s.errCounts["garbage"] += float64(len(p.errs))
		if !s.loggedPartly {
			s.log.Warn("some BMC resources were missing or garbled; the rest is reported", "bmc", s.cfg.Name, "first", p.errs[0], "count", len(p.errs))
			s.loggedPartly = true
		}
	}
	return p.out, nil
}

// stale returns the last good values, still with the time they were read,
// and the status saying how old they are.
func (s *Source) stale(now time.Time) []collector.Sample {
	out := make([]collector.Sample, 0, len(s.last)+8)
	out = append(out, s.last...)
	return append(out, s.status(now, false)...)
}

func (s *Source) status(now time.Time, up bool) []collector.Sample {
	labels := []collector.Label{lbl("bmc", s.cfg.Name), lbl("role", s.cfg.Role)}
	add := func(out []collector.Sample, name, help string, kind collector.Kind, v float64, extra ...collector.Label) []collector.Sample {
		ls := labels
		if len(extra) > 0 {
			ls = append(append([]collector.Label{}, labels...), extra...)
			collector.SortLabels(ls)
		}
		return append(out, collector.Sample{Name: name, Help: help, Kind: kind, Value: v, Labels: ls, Time: now})
	}
	var out []collector.Sample
	out = add(out, "joules_redfish_up", "Whether the last poll of the BMC succeeded (1) or not (0).", collector.Gauge, boolValue(up))
	_, open := s.breakr.Open(now)
	out = add(out, "joules_redfish_circuit_open", "Whether polling is suspended after repeated failures (1) or not (0).", collector.Gauge, boolValue(open))
	out = add(out, "joules_redfish_poll_requests", "HTTP requests made by the last poll (discovery included).", collector.Gauge, float64(s.lastPollReqs))
	out = add(out, "joules_redfish_requests_total", "HTTP requests made to the BMC.", collector.Counter, float64(s.conn.requests.Load()))
	for _, reason := range sortedKeys(s.errCounts) {
		out = add(out, "joules_redfish_poll_errors_total", "Failed polls and garbled resources, by reason (timeout, connection, auth, server_error, client_error, not_found, garbage).",
			collector.Counter, s.errCounts[reason], lbl("reason", reason))
	}
	if !s.lastAt.IsZero() {
		out = add(out, "joules_redfish_last_success_timestamp_seconds", "When the BMC was last read successfully.", collector.Gauge, float64(s.lastAt.UnixNano())/1e9)
		out = add(out, "joules_redfish_data_age_seconds", "Age of the BMC values being reported: 0 when fresh, growing while the BMC fails and its last good values are kept.",
			collector.Gauge, now.Sub(s.lastAt).Seconds())
	}
	return out
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
