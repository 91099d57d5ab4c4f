package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// errFenced says another member wrote a checkpoint since this one read
// it: this one no longer owns what it checkpoints.
var errFenced = errors.New("another member checkpointed since: ownership moved")

// checkpointMeta is what the checkpoints bucket holds for a partition or
// the roll-up; the state itself is an object in the state store.
type checkpointMeta struct {
	Seq    uint64    // the stream sequence the state holds every message up to
	Object string    // the state's object
	Gen    uint64    // the ownership generation that wrote it
	Owner  string    // the member that wrote it
	Saved  time.Time // when
}

type checkpoint struct {
	meta  checkpointMeta
	rev   uint64 // the bucket's revision of it; 0: none yet
	state []byte
}

// load reads key's last checkpoint; none is a first start.
func (c *Conn) load(ctx context.Context, key string) (checkpoint, error) {
	e, err := c.metas.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return checkpoint{}, nil
	}
	if err != nil {
		return checkpoint{}, fmt.Errorf("checkpoint %s: %w", key, err)
	}
	var cp checkpoint
	if err := json.Unmarshal(e.Value(), &cp.meta); err != nil {
		return checkpoint{}, fmt.Errorf("checkpoint %s: %w", key, err)
	}
	cp.rev = e.Revision()
	if cp.meta.Object == "" { // claimed, never saved
		return cp, nil
	}
	if cp.state, err = c.states.GetBytes(ctx, cp.meta.Object); err != nil {
		return checkpoint{}, fmt.Errorf("checkpoint %s: state object %s: %w", key, cp.meta.Object, err)
	}
	return cp, nil
}

// claim writes the checkpoint as it is under this owner's generation, so
// that a former owner's next save is refused at once.
func (c *Conn) claim(ctx context.Context, key string, cp checkpoint, gen uint64) (checkpoint, error) {
	meta := cp.meta
	meta.Gen, meta.Owner = gen, c.cfg.Name
	raw, err := json.Marshal(meta)
	if err != nil {
		return cp, err
	}
	var rev uint64
	if cp.rev == 0 {
		rev, err = c.metas.Create(ctx, key, raw)
	} else {
		rev, err = c.metas.Update(ctx, key, raw, cp.rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return cp, errFenced
	}
	if err != nil {
		return cp, fmt.Errorf("claim %s: %w", key, err)
	}
	cp.meta, cp.rev = meta, rev
	return cp, nil
}

// save writes a new checkpoint of key over prev, only if prev is still the
// last one (errFenced otherwise), and returns it.
func (c *Conn) save(ctx context.Context, key string, prev checkpoint, seq, gen uint64, state []byte) (checkpoint, error) {
	meta := checkpointMeta{Seq: seq, Gen: gen, Owner: c.cfg.Name, Saved: time.Now().UTC()}
	meta.Object = fmt.Sprintf("%s-%d-%d-%d", key, gen, seq, meta.Saved.UnixNano())
	if _, err := c.states.PutBytes(ctx, meta.Object, state); err != nil {
		return prev, fmt.Errorf("checkpoint %s: %w", key, err)
	}
	raw, err := json.Marshal(meta)
	if err != nil {
		return prev, err
	}
	var rev uint64
	if prev.rev == 0 {
		rev, err = c.metas.Create(ctx, key, raw)
	} else {
		rev, err = c.metas.Update(ctx, key, raw, prev.rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		_ = c.states.Delete(ctx, meta.Object)
		return prev, errFenced
	}
	if err != nil {
		// The update may have landed with its answer lost (a timeout): the
		// object is kept unless the key is seen to name another.
		if e, gerr := c.metas.Get(ctx, key); gerr == nil {
			var now checkpointMeta
			if json.Unmarshal(e.Value(), &now) == nil && now.Object == meta.Object {
				rev, err = e.Revision(), nil
			} else {
				_ = c.states.Delete(ctx, meta.Object)
			}
		}
		if err != nil {
			return prev, fmt.Errorf("checkpoint %s: %w", key, err)
		}
	}
	if prev.meta.Object != "" {
		if err := c.states.Delete(ctx, prev.meta.Object); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			c.cfg.Logger.Warn("old checkpoint state left in the store", "object", prev.meta.Object, "err", err)
		}
	}
	return checkpoint{meta: meta, rev: rev}, nil
}

// checkpointer keeps a partition's (or the roll-up's) checkpoints: every
// interval it takes the state and the position it covers, and writes them
// once the output has sent every point written before, so that a
// checkpoint never covers points still only in this member's spool.
type checkpointer struct {
	c   *Conn
	out interface {
		Mark() uint64
		Delivered(uint64) bool
	}
	key     string
	gen     uint64
	every   time.Duration
	cp      checkpoint // the last one written (or read, or claimed)
	pending *pendingSave
	last    time.Time
}

type pendingSave struct {
	state []byte
	seq   uint64
	mark  uint64
}

// tick takes the state when a checkpoint is due and writes the one taken
// once the output has caught up; saved says one was written.
func (k *checkpointer) tick(ctx context.Context, now time.Time, seq uint64, state func() ([]byte, error)) (saved bool, err error) {
	if k.pending == nil && now.Sub(k.last) >= k.every {
		raw, err := state()
		if err != nil {
			return false, err
		}
		k.pending = &pendingSave{state: raw, seq: seq, mark: k.out.Mark()}
	}
	if k.pending == nil || !k.out.Delivered(k.pending.mark) {
		return false, nil
	}
	if k.cp, err = k.c.save(ctx, k.key, k.cp, k.pending.seq, k.gen, k.pending.state); err != nil {
		return false, err
	}
	k.pending, k.last = nil, now
	return true, nil
}

// final writes a last checkpoint of everything up to seq, once the output
// has sent it (waiting up to 5 s); not written, the successor reads again
// from the one before, and the error says why.
func (k *checkpointer) final(seq uint64, state func() ([]byte, error)) error {
	raw, err := state()
	if err != nil {
		return err
	}
	mark := k.out.Mark()
	for deadline := time.Now().Add(5 * time.Second); !k.out.Delivered(mark); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return errors.New("the output has not sent the last points")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = k.c.save(ctx, k.key, k.cp, seq, k.gen, raw)
	return err
}
