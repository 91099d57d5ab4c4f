// Package cluster runs the aggregator as a tier on NATS JetStream: ingest
// replicas publish each accepted request, split by partition, to a
// replicated stream; workers own partitions through leases in a key-value
// bucket and account for them, checkpointing their state with the stream
// position in JetStream; one elected roll-up merges the partitions'
// closed windows and writes the derived points. docs/SCALE.md has the
// shape and what happens when each part dies.
package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/joules-energy/joules/aggregator/accounting"
)

// Names of what the tier keeps in JetStream, under the configured prefix
// (default JOULES): the raw stream, the partials stream, the leases bucket,
// the checkpoints bucket and the state object store.
const (
	rawStream      = "_IN"
	partialsStream = "_PARTIALS"
	leaseBucket    = "_LEASES"
	metaBucket     = "_CHECKPOINTS"
	stateStore     = "_STATE"
)

// Config is the runtime configuration of a member of the tier.
type Config struct {
	URLs []string
	// Name identifies the member in leases and logs; unique in the tier.
	Name string
	// Prefix names the streams and buckets and starts the subjects
	// (lower-cased), so several tiers can share NATS servers.
	Prefix string
	// Domain is the JetStream domain of the tier's servers: needed by a
	// member whose NATS server is a leaf node of them (another site).
	Domain string
	// Partitions of the hosts (default 64); fixed for the tier's life.
	Partitions int
	// Replicas of every stream and bucket (default 3; 1 for one server).
	Replicas int
	// Retention of raw points in the stream (default 24 h): a worker's
	// checkpoint older than that cannot be resumed from.
	Retention time.Duration
	// Lease is how long a partition stays with a member that stopped
	// renewing it (default 10 s).
	Lease time.Duration
	// RollupWait is how long after a window's grace the roll-up waits for
	// a partition that has not published before it writes the window
	// without it (default 2 min); a late partial revises it.
	RollupWait time.Duration
	// PublishTimeout bounds an ingest request's wait for JetStream's
	// acknowledgements (default 5 s); past it the writer gets 503.
	PublishTimeout time.Duration
	// CheckpointEvery is how often a worker and the roll-up checkpoint.
	CheckpointEvery time.Duration
	// Accounting is the accounting configuration every worker and the
	// roll-up share.
	Accounting accounting.Config
	// Credentials: a .creds file, an nkey seed file, or a user and password.
	CredsFile, NKeyFile, User, Password, Token string
	TLS                                        *tls.Config
	Logger                                     *slog.Logger
}

func (c *Config) defaults() {
	if c.Prefix == "" {
		c.Prefix = "JOULES"
	}
	if c.Partitions <= 0 {
		c.Partitions = 64
	}
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
	if c.Retention <= 0 {
		c.Retention = 24 * time.Hour
	}
	if c.Lease <= 0 {
		c.Lease = 10 * time.Second
	}
	if c.RollupWait <= 0 {
		c.RollupWait = 2 * time.Minute
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.CheckpointEvery <= 0 {
		c.CheckpointEvery = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.URLs) == 0 {
		errs = append(errs, errors.New("cluster.urls: at least one NATS server URL (nats://host:4222)"))
	}
	if c.Name == "" {
		errs = append(errs, errors.New("cluster.name: the member's name, unique in the tier"))
	} else if !validName.MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("cluster.name %q: letters, digits, - and _ only (it is a key of the leases bucket)", c.Name))
	}
	if c.Partitions > 4096 {
		errs = append(errs, fmt.Errorf("cluster.partitions %d: at most 4096", c.Partitions))
	}
	if c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("cluster.replicas %d: JetStream keeps at most 5", c.Replicas))
	}
	if c.Lease > 0 && c.Lease < time.Second {
		errs = append(errs, fmt.Errorf("cluster.lease %s: at least 1s", c.Lease))
	}
	return errors.Join(errs...)
}

// validName is what a key of a key-value bucket takes, less the dot.
var validName = regexp.MustCompile(`^[-_A-Za-z0-9]+$`)

func (c Config) name(suffix string) string { return c.Prefix + suffix }

// subject returns the subject of a partition's raw points from one site.
func (c Config) subject(partition int, site string) string {
	return fmt.Sprintf("%s.in.%d.%s", strings.ToLower(c.Prefix), partition, token(site))
}

func (c Config) partitionFilter(partition int) string {
	return fmt.Sprintf("%s.in.%d.>", strings.ToLower(c.Prefix), partition)
}

func (c Config) partialSubject(p *accounting.Partial) string {
	return fmt.Sprintf("%s.partial.%s", strings.ToLower(c.Prefix), p.Key())
}

func (c Config) progressSubject(partition int) string {
	return fmt.Sprintf("%s.progress.%d", strings.ToLower(c.Prefix), partition)
}

// Partition is the partition of a host: a hash of its site and name, so
// all of a host's series, and so its whole accounting, go to one worker.
func Partition(site, host string, partitions int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(site))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(host))
	return int(h.Sum32() % uint32(partitions))
}

// token makes a tag value one subject token: characters NATS gives a
// meaning to become _, and an empty value is _.
func token(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f:
			return '_'
		}
		return r
	}, s)
}

func lower(s string) string { return strings.ToLower(s) }

// A progress message is "<unix ns> <generation>".
func formatProgress(t int64, gen uint64) []byte {
	return fmt.Appendf(nil, "%d %d", t, gen)
}

func parseProgress(b []byte) (t int64, gen uint64, err error) {
	_, err = fmt.Sscanf(string(b), "%d %d", &t, &gen)
	return t, gen, err
}
