package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/aggregator/accounting"
)

// RawOutput is where a worker writes the raw points of its partitions:
// the aggregator's durable output. A checkpoint covers only messages
// whose points have left its spool, so a worker whose disk is lost with
// it loses nothing: its successor writes them again (InfluxDB keeps one
// point per series and time).
type RawOutput interface {
	WriteLines(lines []byte, n int, prec lineprotocol.Precision, oldest time.Time) error
	Mark() uint64
	Delivered(mark uint64) bool
}

// Worker takes a fair share of the partitions (their count over the live
// workers, rounded up), in the order rendezvous hashing gives it, and
// accounts for each: it reads the partition's raw points from the stream
// after its checkpoint, writes them to the output, publishes each closed
// window's partial and checkpoints state and position together.
type Worker struct {
	c   *Conn
	out RawOutput
	log *slog.Logger

	mu    sync.Mutex
	owned map[int]*partitionRun

	Messages, Points, Checkpoints, Fenced, Takeovers, Released, Rebuilt, Gaps, Failures atomic.Int64
}

type partitionRun struct {
	p        int
	lease    *lease
	cancel   context.CancelFunc
	done     chan struct{}
	err      error
	pending  atomic.Uint64 // messages of the partition not yet read
	age      atomic.Int64  // unix ns of the last checkpoint
	lostIt   atomic.Bool   // the lease is gone: no last checkpoint
	acct     atomic.Pointer[accounting.Accountant]
	stopping atomic.Bool // being handed over
}

// NewWorker returns a worker writing raw points to out.
func NewWorker(c *Conn, out RawOutput) *Worker {
	return &Worker{c: c, out: out, log: c.cfg.Logger.With("role", "worker"), owned: map[int]*partitionRun{}}
}

// Owned lists the partitions the worker holds now.
func (w *Worker) Owned() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]int, 0, len(w.owned))
	for p := range w.owned {
		out = append(out, p)
	}
	return out
}

// Run keeps the worker's share of partitions until ctx ends; it then stops
// each, checkpoints it and gives its lease up, so successors start at once.
func (w *Worker) Run(ctx context.Context) {
	every := w.c.cfg.Lease / 3
	t := time.NewTicker(every)
	defer t.Stop()
	// The first round only says this worker is there, so that workers that
	// start together share the partitions out at once instead of the first
	// taking them all and handing most over.
	if err := w.c.heartbeat(ctx, "worker"); err != nil {
		w.log.Warn("cannot reach the leases bucket", "err", err)
	}
	for first := true; ; first = false {
		if !first {
			w.balance(ctx)
		}
		select {
		case <-ctx.Done():
			lctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			w.c.leave(lctx, "worker")
			cancel()
			w.mu.Lock()
			runs := make([]*partitionRun, 0, len(w.owned))
			for _, r := range w.owned {
				runs = append(runs, r)
			}
			w.mu.Unlock()
			w.stopAll(runs, true)
			return
		case <-t.C:
		}
	}
}

func (w *Worker) balance(ctx context.Context) {
	cfg := w.c.cfg
	round := cfg.Lease / 3
	w.mu.Lock()
	runs := make([]*partitionRun, 0, len(w.owned))
	for _, r := range w.owned {
		runs = append(runs, r)
	}
	w.mu.Unlock()
	// Renewals first, each with its own time: nothing else in a round may
	// delay them past the leases.
	for _, r := range runs {
		select {
		case <-r.done:
			w.forget(r)
			if r.stopping.Load() || r.lostIt.Load() {
				continue
			}
			// It stopped on its own: an error, or fenced by a successor.
			w.Failures.Add(1)
			w.log.Warn("partition stopped; taken up again if still held", "partition", r.p, "err", r.err)
			rctx, cancel := context.WithTimeout(ctx, round)
			err := w.c.renew(rctx, r.lease)
			cancel()
			if err == nil && !errors.Is(r.err, errFenced) {
				w.start(ctx, r.p, r.lease)
			}
			continue
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, round)
		err := w.c.renew(rctx, r.lease)
		cancel()
		if err != nil && w.c.lost(r.lease, err) && !r.stopping.Load() {
			w.log.Warn("partition lease lost: stopping it", "partition", r.p, "err", err)
			r.lostIt.Store(true)
			r.cancel() // forgotten once it has stopped, on a later round
		}
	}
	cctx, cancel := context.WithTimeout(ctx, round)
	defer cancel()
	if err := w.c.heartbeat(cctx, "worker"); err != nil {
		w.log.Warn("cannot reach the leases bucket; partitions are kept while their leases last", "err", err)
		return
	}
	members, err := w.c.members(cctx, "worker")
	if err != nil {
		return
	}
	n := max(1, len(members))
	target := (cfg.Partitions + n - 1) / n
	active := func() map[int]*partitionRun {
		w.mu.Lock()
		defer w.mu.Unlock()
		out := map[int]*partitionRun{}
		for p, r := range w.owned {
			if !r.stopping.Load() && !r.lostIt.Load() {
				out[p] = r
			}
		}
		return out
	}
	owned := active()
	pref := preference(cfg.Name, cfg.Partitions)
	if len(owned) > target {
		var extra []*partitionRun
		for i := len(pref) - 1; i >= 0 && len(owned)-len(extra) > target; i-- {
			if r := owned[pref[i]]; r != nil {
				extra = append(extra, r)
			}
		}
		w.log.Info("handing partitions over", "partitions", len(extra), "workers", n)
		w.Released.Add(int64(len(extra)))
		// In the background: their last checkpoints wait for the output,
		// and the next rounds keep renewing the leases meanwhile.
		for _, r := range extra {
			r.stopping.Store(true)
			go w.stop(r, true)
		}
		return
	}
	have := len(owned)
	for _, p := range pref {
		if have >= target || cctx.Err() != nil {
			break
		}
		w.mu.Lock()
		_, held := w.owned[p]
		w.mu.Unlock()
		if held {
			continue
		}
		l, ok, err := w.c.acquire(cctx, partitionKey(p))
		if err != nil || !ok {
			continue
		}
		w.Takeovers.Add(1)
		w.start(ctx, p, l)
		have++
	}
}

func (w *Worker) start(ctx context.Context, p int, l *lease) {
	rctx, cancel := context.WithCancel(ctx)
	r := &partitionRun{p: p, lease: l, cancel: cancel, done: make(chan struct{})}
	r.age.Store(time.Now().UnixNano())
	w.mu.Lock()
	w.owned[p] = r
	w.mu.Unlock()
	go func() {
		defer close(r.done)
		r.err = w.run(rctx, r)
	}()
}

func (w *Worker) forget(r *partitionRun) {
	w.mu.Lock()
	if w.owned[r.p] == r {
		delete(w.owned, r.p)
	}
	w.mu.Unlock()
}

// stopAll stops runs at once: each waits for its last checkpoint, and one
// after the other they would outlast the leases of the rest.
func (w *Worker) stopAll(runs []*partitionRun, release bool) {
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Go(func() { w.stop(r, release) })
	}
	wg.Wait()
}

// stop ends a partition's run (which checkpoints it) and, when asked and
// the lease is still this member's, gives the lease up.
func (w *Worker) stop(r *partitionRun, release bool) {
	r.cancel()
	<-r.done
	w.forget(r)
	if release {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		w.c.release(ctx, r.lease)
		cancel()
	}
}

// run accounts for one partition until ctx ends or it fails.
func (w *Worker) run(ctx context.Context, r *partitionRun) error {
	cfg := w.c.cfg
	key := partitionKey(r.p)
	log := w.log.With("partition", r.p)
	cp, err := w.c.load(ctx, key)
	if err != nil {
		return err
	}
	previous := cp.meta.Owner
	// Claimed at once: a former owner's next checkpoint is refused from now
	// on, not only after this one's first.
	if cp, err = w.c.claim(ctx, key, cp, r.lease.gen); err != nil {
		return err
	}
	if !cp.meta.Saved.IsZero() {
		r.age.Store(cp.meta.Saved.UnixNano())
	}
	acct, err := accounting.New(cfg.Accounting, log)
	if err != nil {
		return err
	}
	seq := cp.meta.Seq
	if cp.state != nil {
		if err := acct.UnmarshalState(cp.state); err != nil {
			// Not resumable (a checkpoint of another version, or damaged):
			// rebuilt from what the stream still holds, so only what it no
			// longer holds (older than cluster.retention) is lost.
			log.Error("partition checkpoint unreadable: accounting is rebuilt from the start of the stream", "object", cp.meta.Object, "err", err)
			w.Rebuilt.Add(1)
			acct, _ = accounting.New(cfg.Accounting, log)
			seq = 0
		}
	}
	r.acct.Store(acct)
	log.Info("partition taken", "from_seq", seq, "generation", r.lease.gen, "previous_owner", previous)
	if s, err := w.c.js.Stream(ctx, cfg.name(rawStream)); err == nil && seq > 0 && s.CachedInfo().State.FirstSeq > seq+1 {
		// The stream no longer holds what follows the checkpoint: the
		// checkpoint is older than cluster.retention.
		log.Error("the raw stream no longer holds the messages after the partition's checkpoint: their points are not accounted",
			"checkpoint_seq", seq, "stream_first_seq", s.CachedInfo().State.FirstSeq)
		w.Gaps.Add(1)
	}
	rd, err := openReader(ctx, w.c.js, cfg.name(rawStream), cfg.partitionFilter(r.p), seq)
	if err != nil {
		return fmt.Errorf("partition %d: %w", r.p, err)
	}
	defer rd.stop()
	dec := aggregator.Decoder{Reads: acct.ReadsValues}
	ck := &checkpointer{c: w.c, out: w.out, key: key, gen: r.lease.gen, every: cfg.CheckpointEvery, cp: cp, last: time.Now()}
	state := func() ([]byte, error) {
		raw, _, err := acct.MarshalState()
		return raw, err
	}
	var (
		body      []byte
		lastTick  time.Time
		progress  int64
		caughtUp  bool
		published int64
	)
	for ctx.Err() == nil {
		body = body[:0]
		lines := 0
		var oldest time.Time
		prec := lineprotocol.Nanosecond
		// Lines of one precision go to the output together.
		flush := func() error {
			if lines == 0 {
				return nil
			}
			if err := w.out.WriteLines(body, lines, prec, oldest); err != nil {
				return fmt.Errorf("partition %d: the output refused raw points: %w", r.p, err)
			}
			body, lines, oldest = body[:0], 0, time.Time{}
			return nil
		}
		var ferr error
		caughtUp, err = rd.batch(ctx, 1000, 200*time.Millisecond, func(msg jetstream.Msg, md *jetstream.MsgMetadata) {
			r.pending.Store(md.NumPending)
			if md.Sequence.Stream <= seq || ferr != nil {
				return
			}
			seq = md.Sequence.Stream
			p := lineprotocol.Nanosecond
			if name := msg.Headers().Get(precisionHeader); name != "" {
				var ok bool
				if p, ok = aggregator.ParsePrecision(name); !ok {
					log.Error("a message of the raw stream has an unknown precision: skipped", "seq", seq, "precision", name)
					return
				}
			}
			if p != prec {
				if ferr = flush(); ferr != nil {
					return
				}
				prec = p
			}
			dec.Precision = p
			points, n, old, err := dec.Decode(msg.Data())
			if err != nil {
				log.Error("a message of the raw stream is not line protocol: skipped", "seq", seq, "err", err)
				return
			}
			acct.Process(points)
			w.Messages.Add(1)
			w.Points.Add(int64(n))
			body = append(body, msg.Data()...)
			if oldest.IsZero() || old.Before(oldest) {
				oldest = old
			}
			lines += n
		})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return fmt.Errorf("read partition %d: %w", r.p, err)
		}
		if ferr != nil {
			return ferr
		}
		if caughtUp {
			r.pending.Store(0)
		}
		if err := flush(); err != nil {
			return err
		}
		if ctx.Err() != nil {
			break // stopping: the last checkpoint below, its unwritten windows still to write
		}
		now := time.Now()
		// Windows close only once the backlog is read: a successor that
		// replays one would otherwise write windows before their points.
		if caughtUp && now.Sub(lastTick) >= time.Second {
			lastTick = now
			parts, prog := acct.TickPartials(now, r.p, r.lease.gen)
			// TickPartials marked these windows written: they go out
			// whole even when the partition is stopped meanwhile, else
			// the last checkpoint would hold windows nobody published.
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.PublishTimeout)
			err := w.publishPartials(pctx, parts)
			if err == nil && prog != progress {
				if _, err = w.c.js.Publish(pctx, cfg.progressSubject(r.p), formatProgress(prog, r.lease.gen)); err != nil {
					err = fmt.Errorf("partition %d: progress: %w", r.p, err)
				} else {
					progress = prog
				}
			}
			cancel()
			if err != nil {
				return err
			}
			published += int64(len(parts))
		}
		if ctx.Err() != nil {
			break
		}
		saved, err := ck.tick(ctx, now, seq, state)
		if err != nil {
			if errors.Is(err, errFenced) {
				w.Fenced.Add(1)
			} else if ctx.Err() != nil {
				break // stopped while saving: the last checkpoint says it all
			}
			return err
		}
		if saved {
			w.Checkpoints.Add(1)
			r.age.Store(now.UnixNano())
		}
	}
	// Stopping: one last checkpoint of everything read, once its points
	// have left the spool (a successor reads again what this does not
	// cover); none when the lease is gone, since a successor may have
	// begun.
	if r.lostIt.Load() {
		return nil
	}
	if err := ck.final(seq, state); err != nil {
		log.Warn("last checkpoint of the partition not written: its successor reads again from the one before", "err", err)
		return nil
	}
	w.Checkpoints.Add(1)
	return nil
}

func (w *Worker) publishPartials(ctx context.Context, parts []*accounting.Partial) error {
	for _, p := range parts {
		raw, err := accounting.MarshalPartial(p)
		if err != nil {
			return err
		}
		if len(raw) > int(w.c.nc.MaxPayload()) {
			return fmt.Errorf("partial %s is %d bytes, over the NATS servers' max_payload of %d: raise max_payload or cluster.partitions", p.Key(), len(raw), w.c.nc.MaxPayload())
		}
		if _, err := w.c.js.PublishMsg(ctx, &nats.Msg{Subject: w.c.cfg.partialSubject(p), Data: raw}); err != nil {
			return fmt.Errorf("publish partial %s: %w", p.Key(), err)
		}
	}
	return nil
}
