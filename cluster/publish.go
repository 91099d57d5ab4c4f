package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/internal/schema"
)

// Publisher is an ingest replica's sink: it splits a request's points by
// partition and site, publishes each part to the raw stream with a message
// id that is a hash of its lines (a retried request is the same lines, so
// JetStream drops it as a duplicate) and returns once JetStream has
// acknowledged every part. Any failure fails the request with 503 and the
// writer retries it.
type Publisher struct {
	c *Conn

	Published, Duplicates, Failed atomic.Int64
}

// NewPublisher returns the sink of an ingest replica.
func NewPublisher(c *Conn) *Publisher { return &Publisher{c: c} }

type group struct {
	subject string
	points  []aggregator.Point
}

// Write implements aggregator.Sink.
func (p *Publisher) Write(points []aggregator.Point) error {
	cfg := p.c.cfg
	groups := map[string]*group{}
	var order []*group
	for i := range points {
		site, host := tagOf(points[i].Tags, schema.TagSite), tagOf(points[i].Tags, schema.TagHost)
		subj := cfg.subject(Partition(site, host, cfg.Partitions), site)
		g := groups[subj]
		if g == nil {
			g = &group{subject: subj}
			groups[subj] = g
			order = append(order, g)
		}
		g.points = append(g.points, points[i])
	}
	// A message stays under the servers' payload limit: big requests are
	// cut into several, each its own id.
	limit := int(p.c.nc.MaxPayload()) - 4096
	var futures []jetstream.PubAckFuture
	var buf []byte
	for _, g := range order {
		for start := 0; start < len(g.points); {
			var n int
			var err error
			end := len(g.points)
			for {
				buf, n, err = aggregator.Encode(buf[:0], g.points[start:end])
				if len(buf) <= limit || end-start == 1 {
					break
				}
				end = start + (end-start)/2
			}
			if err != nil {
				cfg.Logger.Warn("points that cannot be written as line protocol are dropped", "points", end-start-n, "first", err)
			}
			start = end
			if n == 0 {
				continue
			}
			sum := sha256.Sum256(buf)
			data := append([]byte(nil), buf...)
			f, err := p.c.js.PublishMsgAsync(&nats.Msg{Subject: g.subject, Data: data}, jetstream.WithMsgID(hex.EncodeToString(sum[:16])),
				jetstream.WithExpectStream(cfg.name(rawStream)))
			if err != nil {
				p.Failed.Add(1)
				return fmt.Errorf("publish to %s: %w", g.subject, err)
			}
			futures = append(futures, f)
		}
	}
	timeout := time.NewTimer(cfg.PublishTimeout)
	defer timeout.Stop()
	var errs []error
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			p.Published.Add(1)
			if ack.Duplicate {
				p.Duplicates.Add(1)
			}
		case err := <-f.Err():
			errs = append(errs, err)
		case <-timeout.C:
			p.Failed.Add(1)
			return fmt.Errorf("JetStream did not acknowledge within %s: is a quorum of NATS servers up?", cfg.PublishTimeout)
		}
	}
	if len(errs) > 0 {
		p.Failed.Add(1)
		return fmt.Errorf("JetStream refused %d of %d parts: %w", len(errs), len(futures), errors.Join(errs...))
	}
	return nil
}

func tagOf(tags []aggregator.Tag, key string) string {
	for _, t := range tags {
		if t.Key == key {
			return t.Value
		}
	}
	return ""
}

// Alive says whether the publisher can reach NATS.
func (p *Publisher) Alive(context.Context) bool { return p.c.Connected() }
