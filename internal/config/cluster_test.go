package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestClusterSection(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("a-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "tokens_file: " + tokens + "\ninflux: {url: \"http://127.0.0.1:8086\"}\n"

	cfg, err := LoadAggregator(writeConfig(t, base))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.Enabled() {
		t.Error("without urls the aggregator is a tier member")
	}

	cfg, err = LoadAggregator(writeConfig(t, base+"cluster: {urls: [nats://n1:4222, nats://n2:4222], name: agg-1, roles: [ingest]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Cluster.Enabled() || !cfg.Cluster.Has(RoleIngest) || cfg.Cluster.Has(RoleWorker) || cfg.Cluster.Partitions != 64 ||
		cfg.Cluster.Replicas != 3 || cfg.Cluster.Lease.Duration != 10*time.Second {
		t.Errorf("cluster section read as %+v", cfg.Cluster)
	}

	_, err = LoadAggregator(writeConfig(t, base+`accounting: {enabled: false}
cluster:
  urls: [http://n1:4222]
  name: "a.b"
  roles: [ingest, worker, janitor]
  partitions: 0
  replicas: 7
  lease: 100ms
  creds_file: /nonexistent/nats.creds
  token_file: /nonexistent/token
  tls: {cert_file: /nonexistent/cert.pem}
`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`"http://n1:4222" is not a NATS URL`,
		`cluster.name "a.b"`,
		`"janitor" is not a role`,
		"worker and rollup do the accounting: accounting.enabled must be true",
		"cluster.partitions 0: between 1 and 4096",
		"cluster.replicas 7",
		"line 10: cluster.lease 100ms: at least 1s",
		"give one of creds_file, nkey_file",
		"cluster.creds_file: stat /nonexistent/nats.creds",
		"give cert_file and key_file together",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := LoadAggregator(writeConfig(t, base+"cluster: {urls: [nats://n1:4222], partition: 8}\n")); err == nil || !strings.Contains(err.Error(), "partition") {
		t.Errorf("a misspelt key: %v", err)
	}
}
