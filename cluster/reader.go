package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// reader reads a stream from a position with one ephemeral pull consumer
// (no acknowledgements), kept for the reader's life: the position lives
// in the checkpoint, not in a durable consumer.
type reader struct {
	js      jetstream.JetStream
	stream  string
	cons    jetstream.Consumer
	checked time.Time // when the server last said how many are pending
}

// openReader starts after sequence after (0: from the start), on the
// subjects of filter (empty: all).
func openReader(ctx context.Context, js jetstream.JetStream, stream, filter string, after uint64) (*reader, error) {
	cc := jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckNonePolicy,
		FilterSubject: filter, InactiveThreshold: time.Minute, MemoryStorage: true}
	if after > 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	cons, err := js.CreateConsumer(ctx, stream, cc)
	if err != nil {
		return nil, fmt.Errorf("consumer on %s: %w", stream, err)
	}
	return &reader{js: js, stream: stream, cons: cons}, nil
}

// batch hands f the messages there are now, up to max, waiting up to wait
// for them. caughtUp says the stream has no more for this reader: known
// from the last message's count of those pending after it or, when none
// came, from the server (asked at most once a second; until then not
// caught up, so that a slow server never passes for an empty stream).
func (r *reader) batch(ctx context.Context, max int, wait time.Duration, f func(jetstream.Msg, *jetstream.MsgMetadata)) (caughtUp bool, err error) {
	b, err := r.cons.Fetch(max, jetstream.FetchMaxWait(wait))
	if err != nil {
		return false, err
	}
	got := 0
	for msg := range b.Messages() {
		md, err := msg.Metadata()
		if err != nil {
			continue
		}
		got++
		f(msg, md)
		caughtUp = md.NumPending == 0
	}
	if err := b.Error(); err != nil {
		return false, err
	}
	if got > 0 {
		return caughtUp, nil
	}
	if time.Since(r.checked) < time.Second {
		return false, nil
	}
	r.checked = time.Now()
	info, err := r.cons.Info(ctx)
	if err != nil {
		return false, err
	}
	return info.NumPending == 0, nil
}

func (r *reader) stop() {
	// An ephemeral consumer goes by itself after its inactive threshold;
	// deleting it at once spares the servers that minute.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = r.js.DeleteConsumer(ctx, r.stream, r.cons.CachedInfo().Name)
}
