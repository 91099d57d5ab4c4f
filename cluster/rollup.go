package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/aggregator/accounting"
)

// DerivedOutput is where the roll-up writes derived points.
type DerivedOutput interface {
	aggregator.Sink
	Mark() uint64
	Delivered(mark uint64) bool
}

// Rollup is a candidate for the tier's one roll-up: while it holds the
// roll-up lease it reads the partials stream after its checkpoint, derives
// each window once every partition has published it (accounting.Rollup),
// writes the derived points and checkpoints; the others wait for the lease.
type Rollup struct {
	c   *Conn
	out DerivedOutput
	log *slog.Logger

	mu      sync.Mutex
	current *accounting.Rollup // while leading

	Leading                     atomic.Bool
	lostIt                      atomic.Bool // the lease is gone: no last checkpoint
	Partials, Derived, Elected  atomic.Int64
	Checkpoints, Fenced, Errors atomic.Int64
}

// NewRollup returns a roll-up candidate writing to out.
func NewRollup(c *Conn, out DerivedOutput) *Rollup {
	return &Rollup{c: c, out: out, log: c.cfg.Logger.With("role", "rollup")}
}

// Current is the roll-up's accounting while this member leads, else nil.
func (r *Rollup) Current() *accounting.Rollup {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current
}

// Run competes for the roll-up lease until ctx ends.
func (r *Rollup) Run(ctx context.Context) {
	every := r.c.cfg.Lease / 3
	t := time.NewTicker(every)
	defer t.Stop()
	var (
		l      *lease
		cancel context.CancelFunc
		done   chan error
	)
	stop := func(release bool) {
		if cancel == nil {
			return
		}
		cancel()
		if err := <-done; err != nil {
			r.log.Warn("roll-up stopped", "err", err)
		}
		cancel, done = nil, nil
		r.Leading.Store(false)
		if release {
			cctx, c := context.WithTimeout(context.Background(), 5*time.Second)
			r.c.release(cctx, l)
			c()
		}
		l = nil
	}
	for {
		cctx, c := context.WithTimeout(ctx, every)
		switch {
		case l == nil:
			if nl, ok, err := r.c.acquire(cctx, rollupKey); err == nil && ok {
				l = nl
				r.Elected.Add(1)
				r.lostIt.Store(false)
				lctx, lcancel := context.WithCancel(ctx)
				cancel, done = lcancel, make(chan error, 1)
				r.Leading.Store(true)
				go func() { done <- r.lead(lctx, l) }()
			}
		default:
			select {
			case err := <-done:
				r.Errors.Add(1)
				r.log.Warn("roll-up stopped; it starts again from its checkpoint", "err", err)
				cancel, done = nil, nil
				r.Leading.Store(false)
				if errors.Is(err, errFenced) {
					l = nil
					break
				}
				lctx, lcancel := context.WithCancel(ctx)
				cancel, done = lcancel, make(chan error, 1)
				r.Leading.Store(true)
				go func() { done <- r.lead(lctx, l) }()
			default:
				if err := r.c.renew(cctx, l); err != nil && r.c.lost(l, err) {
					r.log.Warn("roll-up lease lost", "err", err)
					r.lostIt.Store(true)
					stop(false)
				}
			}
		}
		c()
		select {
		case <-ctx.Done():
			stop(true)
			return
		case <-t.C:
		}
	}
}

// lead is the roll-up's work while it holds the lease.
func (r *Rollup) lead(ctx context.Context, l *lease) error {
	cfg := r.c.cfg
	cp, err := r.c.load(ctx, rollupKey)
	if err != nil {
		return err
	}
	previous := cp.meta.Owner
	if cp, err = r.c.claim(ctx, rollupKey, cp, l.gen); err != nil {
		return err
	}
	roll, err := accounting.NewRollup(cfg.Accounting, cfg.Partitions, cfg.RollupWait, r.log)
	if err != nil {
		return err
	}
	seq := cp.meta.Seq
	if cp.state != nil {
		if err := roll.UnmarshalState(cp.state); err != nil {
			// The partials stream keeps the last partial of every window for
			// two days: read from its start, the roll-up is rebuilt (all but
			// the rolling 30-day PUE's older days).
			r.log.Error("roll-up checkpoint unreadable: rebuilt from the start of the partials stream", "err", err)
			roll, _ = accounting.NewRollup(cfg.Accounting, cfg.Partitions, cfg.RollupWait, r.log)
			seq = 0
		}
	}
	r.mu.Lock()
	r.current = roll
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.current = nil
		r.mu.Unlock()
	}()
	r.log.Info("roll-up elected", "from_seq", seq, "generation", l.gen, "previous", previous)
	rd, err := openReader(ctx, r.c.js, cfg.name(partialsStream), "", seq)
	if err != nil {
		return fmt.Errorf("roll-up: %w", err)
	}
	defer rd.stop()
	ck := &checkpointer{c: r.c, out: r.out, key: rollupKey, gen: l.gen, every: cfg.CheckpointEvery, cp: cp, last: time.Now()}
	progressPrefix := lower(cfg.Prefix) + ".progress."
	var (
		lastTick time.Time
		caughtUp bool
	)
	for ctx.Err() == nil {
		caughtUp, err = rd.batch(ctx, 500, 200*time.Millisecond, func(msg jetstream.Msg, md *jetstream.MsgMetadata) {
			if md.Sequence.Stream <= seq {
				return
			}
			seq = md.Sequence.Stream
			if p, ok := strings.CutPrefix(msg.Subject(), progressPrefix); ok {
				part, err1 := strconv.Atoi(p)
				t, gen, err2 := parseProgress(msg.Data())
				if err1 == nil && err2 == nil {
					roll.Progress(part, t, gen)
				}
				return
			}
			if err := roll.AddEncoded(msg.Data()); err != nil {
				r.log.Error("a partial is not usable: skipped", "subject", msg.Subject(), "err", err)
				return
			}
			r.Partials.Add(1)
		})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return fmt.Errorf("read partials: %w", err)
		}
		now := time.Now()
		if caughtUp && now.Sub(lastTick) >= time.Second {
			lastTick = now
			if points := roll.Tick(now); len(points) > 0 {
				if err := r.out.Write(points); err != nil {
					return fmt.Errorf("the output refused derived points: %w", err)
				}
				r.Derived.Add(int64(len(points)))
			}
		}
		if ctx.Err() != nil {
			break // stopping: the last checkpoint below
		}
		saved, err := ck.tick(ctx, now, seq, roll.MarshalState)
		if err != nil {
			if errors.Is(err, errFenced) {
				r.Fenced.Add(1)
			} else if ctx.Err() != nil {
				break
			}
			return err
		}
		if saved {
			r.Checkpoints.Add(1)
		}
	}
	if r.lostIt.Load() {
		return nil // a successor may have begun
	}
	if err := ck.final(seq, roll.MarshalState); err != nil {
		r.log.Warn("last roll-up checkpoint not written: the next roll-up reads again from the one before", "err", err)
	}
	return nil
}
