package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Cluster makes the aggregator a member of a tier on NATS JetStream
// (docs/SCALE.md). Without urls the aggregator is one process and needs
// no NATS at all.
type Cluster struct {
	URLs []string `yaml:"urls"`
	// Name is the member's name in leases and logs (default: the host name).
	Name string `yaml:"name"`
	// Roles this process plays: ingest, worker, rollup (default all three).
	Roles  []string `yaml:"roles"`
	Prefix string   `yaml:"prefix"` // of streams, buckets and subjects (JOULES)
	// Domain is the JetStream domain of the tier's servers, for a member
	// whose NATS server is a leaf node of theirs (another site).
	Domain     string   `yaml:"domain"`
	Partitions int      `yaml:"partitions"` // of the hosts (64); fixed for the tier's life
	Replicas   int      `yaml:"replicas"`   // of every stream and bucket (3)
	Retention  Duration `yaml:"retention"`  // of raw points in the stream (24h)
	Lease      Duration `yaml:"lease"`      // a dead member's partitions move after this (10s)
	// RollupWait: how long the roll-up waits for a partition nobody serves
	// before it writes a window without it (2m).
	RollupWait     Duration `yaml:"rollup_wait"`
	PublishTimeout Duration `yaml:"publish_timeout"` // an ingest request's wait for JetStream (5s)
	// Credentials: one of a .creds file, an nkey seed file, a user with a
	// password file, or a token file.
	CredsFile    string     `yaml:"creds_file"`
	NKeyFile     string     `yaml:"nkey_file"`
	User         string     `yaml:"user"`
	PasswordFile string     `yaml:"password_file"`
	TokenFile    string     `yaml:"token_file"`
	TLS          ClusterTLS `yaml:"tls"`
}

// ClusterTLS is the client side of TLS to the NATS servers.
type ClusterTLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"` // with key_file: a client certificate
	KeyFile  string `yaml:"key_file"`
}

// Cluster roles.
const (
	RoleIngest = "ingest"
	RoleWorker = "worker"
	RoleRollup = "rollup"
)

// Enabled says whether the aggregator is a member of a tier.
func (c Cluster) Enabled() bool { return len(c.URLs) > 0 }

// Has says whether the member plays role.
func (c Cluster) Has(role string) bool { return slices.Contains(c.Roles, role) }

// memberName is what a key of the leases bucket takes, less the dot.
var memberName = regexp.MustCompile(`^[-_A-Za-z0-9]+$`)

func defaultCluster() Cluster {
	name, _ := os.Hostname()
	name, _, _ = strings.Cut(name, ".") // the short name: a key takes no dot
	return Cluster{Name: name, Roles: []string{RoleIngest, RoleWorker, RoleRollup}, Prefix: "JOULES", Partitions: 64, Replicas: 3,
		Retention: Duration{Duration: 24 * time.Hour}, Lease: Duration{Duration: 10 * time.Second}, RollupWait: Duration{Duration: 2 * time.Minute},
		PublishTimeout: Duration{Duration: 5 * time.Second}}
}

func (c Cluster) validate(accounting bool) []error {
	if !c.Enabled() {
		return nil
	}
	var errs []error
	for _, u := range c.URLs {
		if !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
			errs = append(errs, fmt.Errorf("cluster.urls: %q is not a NATS URL (nats://host:4222 or tls://host:4222)", u))
		}
	}
	if !memberName.MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("cluster.name %q: the member's name, unique in the tier: letters, digits, - and _", c.Name))
	}
	if len(c.Roles) == 0 {
		errs = append(errs, errors.New("cluster.roles: at least one of ingest, worker, rollup"))
	}
	for _, r := range c.Roles {
		if r != RoleIngest && r != RoleWorker && r != RoleRollup {
			errs = append(errs, fmt.Errorf("cluster.roles: %q is not a role: ingest, worker or rollup", r))
		}
	}
	if (c.Has(RoleWorker) || c.Has(RoleRollup)) && !accounting {
		errs = append(errs, errors.New("cluster.roles worker and rollup do the accounting: accounting.enabled must be true"))
	}
	if c.Partitions < 1 || c.Partitions > 4096 {
		errs = append(errs, fmt.Errorf("cluster.partitions %d: between 1 and 4096", c.Partitions))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("cluster.replicas %d: between 1 and 5 (3 in production, 1 on one server)", c.Replicas))
	}
	if c.Lease.Duration < time.Second {
		errs = append(errs, fmt.Errorf("%s: cluster.lease %s: at least 1s", lineOf(c.Lease.Line), c.Lease.Duration))
	}
	for _, d := range []struct {
		name string
		v    Duration
	}{{"retention", c.Retention}, {"rollup_wait", c.RollupWait}, {"publish_timeout", c.PublishTimeout}} {
		if d.v.Duration <= 0 {
			errs = append(errs, fmt.Errorf("%s: cluster.%s must be positive", lineOf(d.v.Line), d.name))
		}
	}
	n := 0
	for _, f := range []string{c.CredsFile, c.NKeyFile, c.User, c.TokenFile} {
		if f != "" {
			n++
		}
	}
	if n > 1 {
		errs = append(errs, errors.New("cluster: give one of creds_file, nkey_file, user (with password_file) or token_file"))
	}
	if (c.User == "") != (c.PasswordFile == "") {
		errs = append(errs, errors.New("cluster: user and password_file go together"))
	}
	for _, f := range []struct{ name, path string }{{"creds_file", c.CredsFile}, {"nkey_file", c.NKeyFile}, {"password_file", c.PasswordFile},
		{"token_file", c.TokenFile}, {"tls.ca_file", c.TLS.CAFile}, {"tls.cert_file", c.TLS.CertFile}, {"tls.key_file", c.TLS.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("cluster.%s: %w", f.name, err))
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("cluster.tls: give cert_file and key_file together"))
	}
	return errs
}

// Secrets reads the password and token files.
func (c Cluster) Secrets() (password, token string, err error) {
	if password, err = secret(c.PasswordFile, ""); err != nil {
		return "", "", fmt.Errorf("cluster.password_file: %w", err)
	}
	if token, err = secret(c.TokenFile, ""); err != nil {
		return "", "", fmt.Errorf("cluster.token_file: %w", err)
	}
	return password, token, nil
}
