package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Conn is a member's connection to the tier's NATS servers, with the
// streams and buckets set up.
type Conn struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	leases jetstream.KeyValue
	metas  jetstream.KeyValue
	states jetstream.ObjectStore
}

// Connect connects to NATS and creates or updates the tier's streams and
// buckets (idempotent: every member does it at start).
func Connect(ctx context.Context, cfg Config) (*Conn, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := []nats.Option{nats.Name("joules-aggregator " + cfg.Name), nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				cfg.Logger.Warn("NATS connection lost; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { cfg.Logger.Info("NATS connection back", "server", nc.ConnectedUrlRedacted()) })}
	switch {
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("cluster.nkey_file: %w", err)
		}
		opts = append(opts, o)
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.TLS != nil {
		opts = append(opts, nats.Secure(cfg.TLS))
	}
	nc, err := nats.Connect(joinURLs(cfg.URLs), opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to NATS %v: %w (are the servers up, and the credentials right?)", cfg.URLs, err)
	}
	c := &Conn{cfg: cfg, nc: nc}
	if err := c.setup(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func joinURLs(urls []string) string {
	s := ""
	for i, u := range urls {
		if i > 0 {
			s += ","
		}
		s += u
	}
	return s
}

func (c *Conn) setup(ctx context.Context) error {
	// Unacknowledged publishes are given up after the request's own wait,
	// so a lost quorum cannot pile them up until publishing stalls.
	opts := []jetstream.JetStreamOpt{jetstream.WithPublishAsyncTimeout(c.cfg.PublishTimeout)}
	js, err := jetstream.New(c.nc, opts...)
	if c.cfg.Domain != "" {
		js, err = jetstream.NewWithDomain(c.nc, c.cfg.Domain, opts...)
	}
	if err != nil {
		return fmt.Errorf("cluster: JetStream: %w", err)
	}
	c.js = js
	cfg := c.cfg
	// The servers may still be electing a meta leader just after they
	// start: setting up is retried for a while.
	return retry(ctx, 30*time.Second, func(ctx context.Context) error {
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: cfg.name(rawStream), Subjects: []string{fmt.Sprintf("%s.in.>", lower(cfg.Prefix))}, Storage: jetstream.FileStorage,
			Replicas: cfg.Replicas, MaxAge: cfg.Retention, Duplicates: 2 * time.Minute, Discard: jetstream.DiscardOld,
			Description: "joules: raw points, by partition and site",
		}); err != nil {
			return fmt.Errorf("stream %s: %w", cfg.name(rawStream), err)
		}
		// A partial is kept until it can no longer revise its window (a day's
		// window, its lateness and a margin); one per window and partition.
		keep := 48*time.Hour + cfg.Accounting.MaxLateness
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: cfg.name(partialsStream), Subjects: []string{lower(cfg.Prefix) + ".partial.>", lower(cfg.Prefix) + ".progress.>"}, Storage: jetstream.FileStorage,
			Replicas: cfg.Replicas, MaxAge: keep, MaxMsgsPerSubject: 1, Discard: jetstream.DiscardOld,
			Description: "joules: each partition's closed windows, for the roll-up",
		}); err != nil {
			return fmt.Errorf("stream %s: %w", cfg.name(partialsStream), err)
		}
		var err error
		if c.leases, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: cfg.name(leaseBucket), TTL: cfg.Lease, Replicas: cfg.Replicas, Storage: jetstream.FileStorage,
			Description: "joules: members and who owns each partition and the roll-up"}); err != nil {
			return fmt.Errorf("bucket %s: %w", cfg.name(leaseBucket), err)
		}
		if c.metas, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: cfg.name(metaBucket), Replicas: cfg.Replicas, Storage: jetstream.FileStorage,
			Description: "joules: each partition's and the roll-up's last checkpoint"}); err != nil {
			return fmt.Errorf("bucket %s: %w", cfg.name(metaBucket), err)
		}
		if c.states, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: cfg.name(stateStore), Replicas: cfg.Replicas, Storage: jetstream.FileStorage,
			Description: "joules: accounting state of the checkpoints"}); err != nil {
			return fmt.Errorf("object store %s: %w", cfg.name(stateStore), err)
		}
		return nil
	})
}

// retry calls f until it succeeds, ctx ends or within has passed.
func retry(ctx context.Context, within time.Duration, f func(context.Context) error) error {
	deadline := time.Now().Add(within)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("cluster setup: %w", err)
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Close drains and closes the connection.
func (c *Conn) Close() {
	if err := c.nc.Drain(); err != nil {
		c.nc.Close()
	}
}

// Connected says whether the connection is up now.
func (c *Conn) Connected() bool { return c.nc.IsConnected() }
