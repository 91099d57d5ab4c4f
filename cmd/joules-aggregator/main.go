// Command joules-aggregator is the site aggregator: it takes line protocol
// on the InfluxDB v2 write API from agents (or Telegraf, or any InfluxDB
// client) and writes it durably to InfluxDB.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/aggregator/accounting"
	"github.com/joules-energy/joules/exporters"
	"github.com/joules-energy/joules/internal/config"
	"github.com/joules-energy/joules/internal/service"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("joules-aggregator", "Site aggregator: InfluxDB v2 write API in, durable writes to InfluxDB out.")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	var (
		configFile  = app.Flag("config.file", "Aggregator configuration file (YAML).").Default("").String()
		configCheck = app.Flag("config.check", "Print the effective configuration, or every error with its line, and exit.").Bool()
		metricsPath = app.Flag("web.telemetry-path", "Path under which to expose the aggregator's own metrics.").Default("/metrics").String()
		pprofOn     = app.Flag("debug.pprof", service.PprofHelp).Bool()
		webFlags    = kingpinflag.AddFlags(app, ":9561")
	)
	logConfig := &promslog.Config{}
	promslogflag.AddFlags(app, logConfig)
	app.Version(version.Print("joules-aggregator"))
	app.HelpFlag.Short('h')
	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(stderr, "joules-aggregator: %v; see joules-aggregator --help\n", err)
		return 2
	}
	logConfig.Writer = stderr
	logger := promslog.New(logConfig)

	cfg, err := config.LoadAggregator(*configFile)
	if code, done := config.Report(stdout, stderr, "joules-aggregator", *webFlags.WebConfigFile, err, *configCheck, cfg.Effective); done {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, logger, cfg, *metricsPath, *pprofOn, webFlags); err != nil {
		logger.Error("aggregator stopped", "err", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, logger *slog.Logger, cfg config.Aggregator, metricsPath string, pprofOn bool, webFlags *web.FlagConfig) error {
	tokens, err := cfg.Tokens()
	if err != nil {
		return fmt.Errorf("tokens_file: %w", err)
	}
	if len(tokens) == 0 {
		logger.Warn("tokens_file holds no token: every write will be refused", "file", cfg.TokensFile)
	}
	influxToken, err := cfg.Influx.Token()
	if err != nil {
		return fmt.Errorf("influx token: %w", err)
	}
	out, err := aggregator.NewOutput(aggregator.OutputConfig{
		URL: cfg.Influx.URL.Value, Org: cfg.Influx.Org, Bucket: cfg.Influx.Bucket, Token: influxToken,
		SpoolDir: cfg.Influx.SpoolDir, SpoolMaxBytes: cfg.Influx.SpoolMaxBytes, BatchBytes: cfg.Influx.BatchBytes,
		Timeout: cfg.Influx.Timeout.Duration, DeadLetterFile: cfg.Influx.DeadLetterFile,
	}, logger.With("component", "output"))
	if err != nil {
		return err
	}
	reg := exporters.NewRegistry("joules_aggregator")
	var (
		write http.Handler
		acct  *accounting.Accountant
		memb  *member
	)
	if cfg.Cluster.Enabled() {
		// A member of a tier: accounting is the workers' and the roll-up's.
		if memb, err = startMember(logger, cfg, tokens, out, reg); err != nil {
			return err
		}
		write = memb.write
	} else {
		var ingest *aggregator.Ingest
		if ingest, acct, err = singleProcess(logger, cfg, tokens, out); err != nil {
			return err
		}
		reg.MustRegister(aggregator.NewCollector(ingest, out))
		if acct != nil {
			reg.MustRegister(acct)
		}
		write = ingest
	}
	mux := http.NewServeMux()
	mux.Handle("/api/v2/write", write)
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = io.WriteString(w, `{"name":"joules-aggregator","status":"pass"}`+"\n")
	})
	mux.HandleFunc("/ping", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.Handle(metricsPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	if pprofOn {
		service.ServePprof(mux, logger)
	}

	outCtx, cancelOut := context.WithCancel(context.Background())
	outDone := make(chan struct{})
	go func() { defer close(outDone); out.Run(outCtx) }()
	acctCtx, stopAccounting := context.WithCancel(context.Background())
	acctDone := make(chan struct{})
	go func() {
		defer close(acctDone)
		if acct != nil {
			acct.Run(acctCtx, out, cfg.Accounting.StateFile, cfg.Accounting.CheckpointInterval.Duration)
		}
	}()

	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	stopMember := func() {
		if memb != nil {
			memb.stop()
		}
	}
	if err := service.Serve(server, webFlags, logger, serveErr); err != nil {
		stopMember()
		stopAccounting()
		<-acctDone
		cancelOut()
		<-outDone
		return err
	}
	watchCtx, stopWatchdog := context.WithCancel(ctx)
	defer stopWatchdog()
	go service.Watchdog(watchCtx, logger, func(context.Context) bool { return out.Alive() })
	logger.Info("joules-aggregator started", "version", version.Info(), "influx", cfg.Influx.URL.Value, "bucket", cfg.Influx.Bucket)

	select {
	case <-ctx.Done():
		logger.Info("shutting down: finishing requests, then flushing to the spool")
	case err = <-serveErr:
		err = fmt.Errorf("web server: %w", err)
	}
	service.Stopping()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if serr := server.Shutdown(shutdownCtx); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		logger.Warn("web server shutdown", "err", serr)
	}
	stopMember()     // after ingest: workers and the roll-up checkpoint and give their leases up
	stopAccounting() // after ingest: the checkpoint holds every accepted point
	<-acctDone
	cancelOut()
	<-outDone
	logger.Info("stopped")
	return err
}

// singleProcess is the aggregator as one process: ingest, accounting
// (before downsampling: it sees every raw point) and the output.
func singleProcess(logger *slog.Logger, cfg config.Aggregator, tokens []string, out *aggregator.Output) (*aggregator.Ingest, *accounting.Accountant, error) {
	var processors []aggregator.Processor
	var acct *accounting.Accountant
	if ac := cfg.Accounting; ac.Enabled {
		var err error
		acct, err = accounting.New(accountingConfig(ac), logger.With("component", "accounting"))
		if err != nil {
			return nil, nil, err
		}
		if ac.StateFile != "" {
			if err := acct.Load(ac.StateFile); err != nil {
				logger.Error("accounting state", "err", err)
			}
		}
		processors = append(processors, acct)
		logger.Info("energy accounting on", "window", ac.Window.Duration, "grace", ac.Grace.Duration, "state_file", ac.StateFile)
	}
	if d := cfg.Downsample.Interval.Duration; d > 0 {
		processors = append(processors, aggregator.NewDownsample(d))
		logger.Info("downsampling raw points", "interval", d)
	}
	ingest := aggregator.NewIngest(tokens, aggregator.Limits{MaxBodyBytes: cfg.Limits.MaxBodyBytes,
		MaxDecompressedBytes: cfg.Limits.MaxDecompressedBytes, MaxLineBytes: cfg.Limits.MaxLineBytes,
		RequestsPerSecond: cfg.Limits.RequestsPerSecond, Burst: cfg.Limits.Burst}, out, logger.With("component", "ingest"), processors...)
	return ingest, acct, nil
}

// accountingConfig carries the configuration file's accounting section
// over to the accountant.
func accountingConfig(ac config.Accounting) accounting.Config {
	c := accounting.Config{Window: ac.Window.Duration, Grace: ac.Grace.Duration, MaxLateness: ac.MaxLateness.Duration,
		MaxGap: ac.MaxGap.Duration, ForgetAfter: ac.ForgetAfter.Duration, IdleBelow: ac.IdleBelow,
		Bounds:     accounting.Bounds{GPUWatts: ac.Bounds.GPUWatts, HostWatts: ac.Bounds.HostWatts, CPUWatts: ac.Bounds.CPUWatts, MeterWatts: ac.Bounds.MeterWatts},
		PowerFeeds: ac.PowerFeeds, MeterCheck: ac.MeterCheck, HostShare: ac.Workloads.HostShare.Value}
	for _, m := range ac.Meters {
		c.Meters = append(c.Meters, accounting.Meter{BMC: m.MeterName(), Site: m.Site, Hall: m.Hall, Equipment: m.Equipment, MaxWatts: m.MaxWatts,
			Feeds: accounting.Feeds{Site: m.Feeds.Site, Hall: m.Feeds.Hall, Racks: m.Feeds.Racks, Feed: m.Feeds.Feed}})
	}
	return c
}
