package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/cluster"
	"github.com/joules-energy/joules/internal/config"
	"github.com/joules-energy/joules/internal/netutil"
)

// member is this process's part in a tier: its write handler (an ingest
// replica's, or one that says this member takes no writes) and its
// worker and roll-up, running until stop.
type member struct {
	write http.Handler
	conn  *cluster.Conn
	stop  func()
}

func startMember(logger *slog.Logger, cfg config.Aggregator, tokens []string, out *aggregator.Output, reg prometheus.Registerer) (*member, error) {
	cc := cfg.Cluster
	password, token, err := cc.Secrets()
	if err != nil {
		return nil, err
	}
	var tlsConfig *tls.Config
	if cc.TLS.CAFile != "" || cc.TLS.CertFile != "" {
		if tlsConfig, err = netutil.ClientTLS(cc.TLS.CAFile, false); err != nil {
			return nil, fmt.Errorf("cluster.tls: %w", err)
		}
		if cc.TLS.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(cc.TLS.CertFile, cc.TLS.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("cluster.tls: %w", err)
			}
			tlsConfig.Certificates = []tls.Certificate{cert}
		}
	}
	ccfg := cluster.Config{URLs: cc.URLs, Name: cc.Name, Prefix: cc.Prefix, Domain: cc.Domain, Partitions: cc.Partitions, Replicas: cc.Replicas,
		Retention: cc.Retention.Duration, Lease: cc.Lease.Duration, RollupWait: cc.RollupWait.Duration, PublishTimeout: cc.PublishTimeout.Duration,
		CheckpointEvery: cfg.Accounting.CheckpointInterval.Duration, Accounting: accountingConfig(cfg.Accounting),
		CredsFile: cc.CredsFile, NKeyFile: cc.NKeyFile, User: cc.User, Password: password, Token: token, TLS: tlsConfig,
		Logger: logger.With("component", "cluster")}
	if cfg.Downsample.Interval.Duration > 0 {
		logger.Warn("downsample is not applied in a tier: raw points are written as they came", "interval", cfg.Downsample.Interval.Duration)
	}
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := cluster.Connect(ctx, ccfg)
	if err != nil {
		cancel()
		return nil, err
	}
	m := &member{conn: conn}
	metrics := &cluster.Metrics{Roles: cc.Roles}
	if cc.Has(config.RoleIngest) {
		pub := cluster.NewPublisher(conn)
		metrics.Publisher = pub
		ingest := aggregator.NewIngest(tokens, aggregator.Limits{MaxBodyBytes: cfg.Limits.MaxBodyBytes,
			MaxDecompressedBytes: cfg.Limits.MaxDecompressedBytes, MaxLineBytes: cfg.Limits.MaxLineBytes,
			RequestsPerSecond: cfg.Limits.RequestsPerSecond, Burst: cfg.Limits.Burst}, pub, logger.With("component", "ingest"))
		reg.MustRegister(aggregator.NewCollector(ingest, out))
		m.write = ingest
	} else {
		m.write = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "this aggregator is a cluster member without the ingest role: write to an ingest replica", http.StatusMisdirectedRequest)
		})
	}
	var wg sync.WaitGroup
	if cc.Has(config.RoleWorker) {
		w := cluster.NewWorker(conn, out)
		metrics.Worker = w
		wg.Go(func() { w.Run(ctx) })
	}
	if cc.Has(config.RoleRollup) {
		r := cluster.NewRollup(conn, out)
		metrics.Rollup = r
		wg.Go(func() { r.Run(ctx) })
	}
	if !cc.Has(config.RoleIngest) {
		reg.MustRegister(aggregator.NewCollector(nil, out))
	}
	reg.MustRegister(metrics)
	logger.Info("cluster member started", "name", cc.Name, "roles", cc.Roles, "nats", cc.URLs, "partitions", cc.Partitions)
	m.stop = func() {
		cancel() // workers and the roll-up checkpoint and give their leases up
		wg.Wait()
		conn.Close()
	}
	return m, nil
}
