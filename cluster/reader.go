package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// reader reads a stream from a position with one ordered consumer, kept
// for the reader's life: the position lives in the checkpoint, not in a
// durable consumer.
type reader struct {
	it jetstream.MessagesContext
}

// openReader starts after sequence after (0: from the start), on the
// subjects of filter (empty: all).
func openReader(ctx context.Context, js jetstream.JetStream, stream, filter string, after uint64) (*reader, error) {
	cc := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy,
		// Without a bound it retries for ever inside Next, where nothing can
		// stop it (no quorum): the caller restarts instead.
		MaxResetAttempts: 5}
	if filter != "" {
		cc.FilterSubjects = []string{filter}
	}
	if after > 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	cons, err := js.OrderedConsumer(ctx, stream, cc)
	if err != nil {
		return nil, fmt.Errorf("consumer on %s: %w", stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return nil, fmt.Errorf("consumer on %s: %w", stream, err)
	}
	return &reader{it: it}, nil
}

// batch hands f the messages there are now, up to max, waiting up to wait
// for the first. caughtUp says the stream had no more for this reader.
func (r *reader) batch(max int, wait time.Duration, f func(jetstream.Msg, *jetstream.MsgMetadata)) (caughtUp bool, err error) {
	for n := 0; n < max; n++ {
		msg, err := r.it.Next(jetstream.NextMaxWait(wait))
		if errors.Is(err, nats.ErrTimeout) {
			return n == 0, nil
		}
		if err != nil {
			return false, err
		}
		md, err := msg.Metadata()
		if err != nil {
			continue
		}
		f(msg, md)
		if md.NumPending == 0 {
			return true, nil
		}
	}
	return false, nil
}

func (r *reader) stop() { r.it.Stop() }
