package cluster

import (
	"context"
	"encoding/json"
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
	// A member that starts before its NATS servers (or while they restart)
	// waits for them, as setting up does, rather than exit.
	opts := []nats.Option{nats.Name("joules-aggregator " + cfg.Name), nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
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
	return retry(ctx, time.Minute, func(ctx context.Context) error {
		// The first member makes the streams and buckets; the others use
		// them as they are (a member's own replicas or retention never
		// reconfigures the tier's; change them with the nats CLI).
		if err := c.stream(ctx, jetstream.StreamConfig{
			Name: cfg.name(rawStream), Subjects: []string{fmt.Sprintf("%s.in.>", lower(cfg.Prefix))}, Storage: jetstream.FileStorage,
			Replicas: cfg.Replicas, MaxAge: cfg.Retention, Duplicates: 2 * time.Minute, Discard: jetstream.DiscardOld,
			Description: "joules: raw points, by partition and site",
		}); err != nil {
			return err
		}
		// A partial is kept until it can no longer revise its window (a day's
		// window, its lateness and a margin); one per window and partition.
		if err := c.stream(ctx, jetstream.StreamConfig{
			Name: cfg.name(partialsStream), Subjects: []string{lower(cfg.Prefix) + ".partial.>", lower(cfg.Prefix) + ".progress.>"}, Storage: jetstream.FileStorage,
			Replicas: cfg.Replicas, MaxAge: 48*time.Hour + cfg.Accounting.MaxLateness, MaxMsgsPerSubject: 1, Discard: jetstream.DiscardOld,
			Description: "joules: each partition's closed windows, for the roll-up",
		}); err != nil {
			return err
		}
		var err error
		if c.leases, err = c.bucket(ctx, jetstream.KeyValueConfig{Bucket: cfg.name(leaseBucket), TTL: cfg.Lease, Replicas: cfg.Replicas, Storage: jetstream.FileStorage,
			Description: "joules: members and who owns each partition and the roll-up"}); err != nil {
			return err
		}
		if c.metas, err = c.bucket(ctx, jetstream.KeyValueConfig{Bucket: cfg.name(metaBucket), Replicas: cfg.Replicas, Storage: jetstream.FileStorage,
			Description: "joules: each partition's and the roll-up's last checkpoint"}); err != nil {
			return err
		}
		if c.states, err = c.js.ObjectStore(ctx, cfg.name(stateStore)); errors.Is(err, jetstream.ErrBucketNotFound) {
			c.states, err = c.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: cfg.name(stateStore), Replicas: cfg.Replicas, Storage: jetstream.FileStorage,
				Description: "joules: accounting state of the checkpoints"})
		}
		if err != nil {
			return fmt.Errorf("object store %s: %w", cfg.name(stateStore), err)
		}
		return c.sameTier(ctx)
	})
}

// stream makes a stream unless it is there; one that is there with other
// replicas or retention than this member's is said, and left as it is.
func (c *Conn) stream(ctx context.Context, sc jetstream.StreamConfig) error {
	s, err := c.js.Stream(ctx, sc.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = c.js.CreateStream(ctx, sc)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil // another member made it meanwhile
		}
	} else if err == nil {
		if have := s.CachedInfo().Config; have.Replicas != sc.Replicas || have.MaxAge != sc.MaxAge {
			c.cfg.Logger.Warn("the tier's stream has other settings than this member's; it is left as it is",
				"stream", sc.Name, "replicas", have.Replicas, "max_age", have.MaxAge, "this_member_replicas", sc.Replicas, "this_member_max_age", sc.MaxAge)
		}
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", sc.Name, err)
	}
	return nil
}

// bucket opens a key-value bucket, or makes it unless it is there.
func (c *Conn) bucket(ctx context.Context, kc jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := c.js.KeyValue(ctx, kc.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = c.js.CreateKeyValue(ctx, kc)
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = c.js.KeyValue(ctx, kc.Bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", kc.Bucket, err)
	}
	if kc.TTL > 0 {
		if st, err := kv.Status(ctx); err == nil && st.TTL() != kc.TTL {
			return nil, fmt.Errorf("%w: bucket %s expires leases after %s, this member's cluster.lease is %s: every member needs the same lease", errMismatch, kc.Bucket, st.TTL(), kc.TTL)
		}
	}
	return kv, nil
}

// tierSettings are what every member must agree on: a member with other
// partitions would send a host to a second partition and count it twice,
// one with other windows would make partials the roll-up cannot merge.
type tierSettings struct {
	Partitions                 int
	Window, Grace, MaxLateness time.Duration
}

// sameTier records the tier's settings the first time and refuses a member
// whose settings differ.
func (c *Conn) sameTier(ctx context.Context) error {
	a := c.cfg.Accounting.WithDefaults()
	want := tierSettings{Partitions: c.cfg.Partitions, Window: a.Window, Grace: a.Grace, MaxLateness: a.MaxLateness}
	raw, err := json.Marshal(want)
	if err != nil {
		return err
	}
	if _, err := c.metas.Create(ctx, "tier", raw); err == nil || !errors.Is(err, jetstream.ErrKeyExists) {
		return err
	}
	e, err := c.metas.Get(ctx, "tier")
	if err != nil {
		return fmt.Errorf("the tier's settings: %w", err)
	}
	var have tierSettings
	if err := json.Unmarshal(e.Value(), &have); err != nil {
		return fmt.Errorf("the tier's settings: %w", err)
	}
	if have != want {
		return fmt.Errorf("%w: the tier runs with partitions %d, accounting window %s, grace %s, max_lateness %s; this member has %d, %s, %s, %s: every member needs the same (changing them needs a new tier: another cluster.prefix)",
			errMismatch, have.Partitions, have.Window, have.Grace, have.MaxLateness, want.Partitions, want.Window, want.Grace, want.MaxLateness)
	}
	return nil
}

// errMismatch is a member configured unlike its tier: retrying cannot help.
var errMismatch = errors.New("this member's settings are not the tier's")

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
		if errors.Is(err, errMismatch) {
			return err
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
