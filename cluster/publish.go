package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/internal/schema"
)

// Publisher is an ingest replica's sink: it splits a request's lines by
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
	lines   []byte
}

// precisionHeader carries the precision of a message's timestamps when it
// is not nanoseconds: a request's lines are published as they came.
const precisionHeader = "Joules-Precision"

// WriteLines implements aggregator.LineSink: a request whose lines are all
// good and timestamped is published as it came, each line to its
// partition's message, without decoding its fields or encoding it again.
func (p *Publisher) WriteLines(lines []byte, _ int, prec lineprotocol.Precision, _ time.Time) error {
	cfg := p.c.cfg
	groups := map[string]*group{}
	var order []*group
	for len(lines) > 0 {
		end := bytes.IndexByte(lines, '\n')
		if end < 0 {
			end = len(lines)
		}
		line := lines[:end]
		lines = lines[min(end+1, len(lines)):]
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		site, host := siteAndHost(line, schema.TagSite, schema.TagHost)
		subj := cfg.subject(Partition(site, host, cfg.Partitions), site)
		g := groups[subj]
		if g == nil {
			g = &group{subject: subj}
			groups[subj] = g
			order = append(order, g)
		}
		g.lines = append(append(g.lines, line...), '\n')
	}
	limit := int(p.c.nc.MaxPayload()) - 4096
	var futures []jetstream.PubAckFuture
	for _, g := range order {
		for data := g.lines; len(data) > 0; {
			n := len(data)
			if n > limit { // cut at the last line that fits
				n = bytes.LastIndexByte(data[:limit], '\n') + 1
				if n <= 0 {
					return fmt.Errorf("a line of %d bytes is longer than the NATS servers' max_payload", bytes.IndexByte(data, '\n'))
				}
			}
			f, err := p.publish(g.subject, data[:n], prec)
			if err != nil {
				return err
			}
			futures = append(futures, f)
			data = data[n:]
		}
	}
	return p.await(futures)
}

// publish sends one message with the id of its lines and precision.
func (p *Publisher) publish(subject string, data []byte, prec lineprotocol.Precision) (jetstream.PubAckFuture, error) {
	h := sha256.New()
	h.Write(data)
	msg := &nats.Msg{Subject: subject, Data: data}
	if prec != lineprotocol.Nanosecond {
		name := aggregator.PrecisionName(prec)
		msg.Header = nats.Header{precisionHeader: []string{name}}
		h.Write([]byte(name))
	}
	f, err := p.c.js.PublishMsgAsync(msg, jetstream.WithMsgID(hex.EncodeToString(h.Sum(nil)[:16])), jetstream.WithExpectStream(p.c.cfg.name(rawStream)))
	if err != nil {
		p.Failed.Add(1)
		return nil, fmt.Errorf("publish to %s: %w", subject, err)
	}
	return f, nil
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
			f, err := p.publish(g.subject, append([]byte(nil), buf...), lineprotocol.Nanosecond)
			if err != nil {
				return err
			}
			futures = append(futures, f)
		}
	}
	return p.await(futures)
}

// await waits for JetStream's acknowledgement of every message.
func (p *Publisher) await(futures []jetstream.PubAckFuture) error {
	cfg := p.c.cfg
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
