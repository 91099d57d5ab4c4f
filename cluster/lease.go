package cluster

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A lease is a key of the leases bucket that its owner renews; the
// bucket's TTL removes it when the owner stops (it died, or lost NATS), and
// another member may then create it. Its revision when created is the
// ownership's generation: revisions only grow, so a successor's is
// always the higher.
type lease struct {
	key string
	gen uint64 // revision at creation

	mu      sync.Mutex // renewals and the release may overlap
	rev     uint64     // revision of the last renewal
	renewed time.Time  // when
}

func partitionKey(p int) string { return fmt.Sprintf("partition.%d", p) }

const rollupKey = "rollup"

// acquire creates the lease key; false when someone holds it.
func (c *Conn) acquire(ctx context.Context, key string) (*lease, bool, error) {
	rev, err := c.leases.Create(ctx, key, []byte(c.cfg.Name))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("lease %s: %w", key, err)
	}
	return &lease{key: key, gen: rev, rev: rev, renewed: time.Now()}, true, nil
}

// renew extends the lease; an error means it is lost (or NATS is out of
// reach for now, which the caller cannot tell apart and treats the same).
func (c *Conn) renew(ctx context.Context, l *lease) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	rev, err := c.leases.Update(ctx, l.key, []byte(c.cfg.Name), l.rev)
	if err != nil {
		return fmt.Errorf("lease %s: %w", l.key, err)
	}
	l.rev, l.renewed = rev, time.Now()
	return nil
}

// lost says whether a renewal's error means the lease is gone: another
// member holds it or it expired, or it has not been renewed for so long
// that it may have expired (NATS out of reach).
func (c *Conn) lost(l *lease, err error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) ||
		time.Since(l.renewed) > c.cfg.Lease-c.cfg.Lease/3
}

// release gives the lease up at once, so a successor need not wait for
// it to expire.
func (c *Conn) release(ctx context.Context, l *lease) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := c.leases.Delete(ctx, l.key, jetstream.LastRevision(l.rev)); err != nil {
		c.cfg.Logger.Debug("lease release", "lease", l.key, "err", err)
	}
}

// heartbeat says this member is alive, so the others count it when they
// share the partitions out.
func (c *Conn) heartbeat(ctx context.Context, role string) error {
	_, err := c.leases.Put(ctx, "member."+role+"."+c.cfg.Name, []byte(c.cfg.Name))
	return err
}

// leave says at once that this member is gone, so that the others share
// its partitions out without waiting for its heartbeat to expire.
func (c *Conn) leave(ctx context.Context, role string) {
	if err := c.leases.Delete(ctx, "member."+role+"."+c.cfg.Name); err != nil {
		c.cfg.Logger.Debug("leaving", "err", err)
	}
}

// members lists the live members of a role, sorted.
func (c *Conn) members(ctx context.Context, role string) ([]string, error) {
	lister, err := c.leases.ListKeysFiltered(ctx, "member."+role+".*")
	if err != nil {
		return nil, err
	}
	var out []string
	for k := range lister.Keys() {
		out = append(out, strings.TrimPrefix(k, "member."+role+"."))
	}
	if err := ctx.Err(); err != nil {
		return nil, err // the list may have been cut short
	}
	slices.Sort(out)
	return out, nil
}

// preference orders the partitions for a member by rendezvous hashing:
// each member prefers its own, so partitions move little when members
// come and go.
func preference(member string, partitions int) []int {
	type scored struct {
		p     int
		score uint32
	}
	s := make([]scored, partitions)
	for p := range partitions {
		h := fnv.New32a()
		fmt.Fprintf(h, "%s/%d", member, p)
		s[p] = scored{p, h.Sum32()}
	}
	slices.SortFunc(s, func(a, b scored) int {
		if a.score != b.score {
			if a.score > b.score {
				return -1
			}
			return 1
		}
		return a.p - b.p
	})
	out := make([]int, partitions)
	for i, x := range s {
		out[i] = x.p
	}
	return out
}
