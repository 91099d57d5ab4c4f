// Command joules-agent reads a host's energy telemetry and serves it as a
// Prometheus scrape target.
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
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/exporters"
	"github.com/joules-energy/joules/internal/config"
	"github.com/joules-energy/joules/internal/energy"
	"github.com/joules-energy/joules/internal/service"
	"github.com/joules-energy/joules/nvml"
	"github.com/joules-energy/joules/redfish"
)

const program = "joules_agent"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// node_exporter registers its flags (--path.*, --collector.*) on
	// kingpin.CommandLine in its package init, so the agent's own flags live
	// there too and every one of them appears in --help.
	app := kingpin.CommandLine
	app.Name = "joules-agent"
	app.Help = "Reads GPU, BMC, NIC, InfiniBand and RAPL telemetry of this host and serves it to Prometheus."
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	var (
		configFile  = app.Flag("config.file", "Agent configuration file (YAML). Without one the agent runs with defaults.").Default("").String()
		configCheck = app.Flag("config.check", "Print the effective configuration, or every error with its line, and exit.").Bool()
		configProbe = app.Flag("config.probe", "With or without --config.check: also try each writer's endpoint and each BMC, say what answered or what to change, and exit (1 when one fails).").Bool()
		metricsPath = app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").String()
		debugPprof  = app.Flag("debug.pprof", service.PprofHelp).Bool()
		webFlags    = kingpinflag.AddFlags(app, ":9560")
	)
	logConfig := &promslog.Config{}
	promslogflag.AddFlags(app, logConfig)
	app.Version(version.Print("joules-agent"))
	app.HelpFlag.Short('h')
	if _, err := app.Parse(args); err != nil {
		if lerr := collector.LeftOutFlag(app, args); lerr != nil {
			err = lerr
		}
		fmt.Fprintf(stderr, "joules-agent: %v; see joules-agent --help\n", err)
		return 2
	}
	logConfig.Writer = stderr
	logger := promslog.New(logConfig)

	hostname, err := os.Hostname()
	if err != nil {
		fmt.Fprintf(stderr, "joules-agent: cannot read the hostname (%v); set labels.host in the config\n", err)
	}
	cfg, err := config.LoadAgent(*configFile, hostname)
	var collectors []string
	if err == nil {
		collectors, err = configureNode(app, args, *configFile, cfg)
	}
	if err == nil {
		err = checkNVML(*configFile, cfg)
	}
	if err == nil {
		err = checkWriters(*configFile, cfg)
	}
	var meters []meterDevice // made once: checked here, then probed or polled
	if err == nil {
		meters = meterDevices(cfg)
		err = checkMeters(*configFile, meters)
	}
	if code, done := config.Report(stdout, stderr, "joules-agent", *webFlags.WebConfigFile, err, *configCheck || *configProbe, cfg.Effective); done {
		if code == 0 && *configProbe {
			code = probe(context.Background(), stdout, cfg, meters)
		}
		return code
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, logger, cfg, collectors, meters, app, *metricsPath, *debugPprof, webFlags); err != nil {
		logger.Error("agent stopped", "err", err)
		return 1
	}
	return 0
}

// configureNode hands the config's node_exporter choices to node_exporter's flags.
func configureNode(app *kingpin.Application, args []string, file string, cfg config.Agent) ([]string, error) {
	node := cfg.Sources.Node
	if !node.Enabled {
		return nil, nil
	}
	names := make([]collector.NodeCollectorName, 0, len(node.Collectors))
	for _, c := range node.Collectors {
		names = append(names, collector.NodeCollectorName{Name: c.Value, Line: c.Line})
	}
	optionNames := make([]string, 0, len(node.Options))
	for name := range node.Options {
		optionNames = append(optionNames, name)
	}
	sort.Strings(optionNames)
	options := make([]collector.NodeOption, 0, len(optionNames))
	for _, name := range optionNames {
		v := node.Options[name]
		options = append(options, collector.NodeOption{Name: name, Values: v.Values, Line: v.Line})
	}
	collectors, err := collector.ConfigureNode(app, args, names, options)
	if err != nil && file != "" {
		err = fmt.Errorf("%s: %w", file, err)
	}
	return collectors, err
}

// checkNVML checks what the config package cannot: the simulated server's name.
func checkNVML(file string, cfg config.Agent) error {
	sim := cfg.Sources.NVML.Simulate
	if !cfg.Sources.NVML.Enabled || sim.Value == "" || slices.Contains(nvml.SimulatedModels(), sim.Value) {
		return nil
	}
	err := fmt.Errorf("line %d: sources.nvml.simulate: unknown simulated server %q (known: %s)", sim.Line, sim.Value, strings.Join(nvml.SimulatedModels(), ", "))
	if file != "" {
		err = fmt.Errorf("%s: %w", file, err)
	}
	return err
}

// addNVML registers the GPU source: the real NVML, or a simulated server.
func addNVML(logger *slog.Logger, runner *collector.Runner, cfg config.Agent, counters *energy.Store, bootID, procfs string, named nvml.Workloads) (*nvml.Source, error) {
	g := cfg.Sources.NVML
	if !g.Enabled {
		return nil, nil
	}
	var lib nvml.Library = gonvml.New()
	switch {
	case g.Simulate.Value != "" && g.SimulateSite.Value != "":
		var err error
		if lib, err = nvml.SimulatedSite(g.Simulate.Value, g.SimulateSite.Value, cfg.Labels["host"]); err != nil {
			return nil, err
		}
		logger.Warn("GPUs are SIMULATED, following the simulated site's model: every GPU sample is labelled simulated=\"true\"",
			"server", g.Simulate.Value, "site", g.SimulateSite.Value, "host", cfg.Labels["host"])
	case g.Simulate.Value != "":
		var err error
		if lib, err = nvml.Simulated(g.Simulate.Value, cfg.Labels["host"]); err != nil {
			return nil, err
		}
		logger.Warn("GPUs are SIMULATED: every GPU sample is labelled simulated=\"true\"", "server", g.Simulate.Value)
	}
	src := nvml.New(lib, nvml.Options{Logger: logger.With("collector", "nvml"), Simulated: g.Simulate.Value != "", Processes: g.Processes,
		Counters: counters, BootID: bootID, Workloads: named, ProcFS: procfs})
	err := runner.Add(collector.Registration{Name: "nvml", Interval: g.Interval.Duration, Timeout: g.Timeout.Duration, Source: src})
	return src, err
}

// addRedfish registers one source per BMC or power-equipment meter.
func addRedfish(logger *slog.Logger, runner *collector.Runner, cfg config.Agent, counters *energy.Store) ([]*redfish.Source, error) {
	var sources []*redfish.Source
	for _, r := range cfg.Sources.Redfish {
		password, err := r.Password()
		if err != nil {
			return sources, err
		}
		src, err := redfish.NewSource(redfishConfig(r, password, counters), logger.With("collector", "redfish", "bmc", r.Name.Value))
		if err != nil {
			return sources, err
		}
		sources = append(sources, src)
		if r.InsecureSkipVerify {
			logger.Warn("TLS verification is off for this BMC (insecure_skip_verify)", "bmc", r.Name.Value)
		}
		// The poll's deadline is the interval: a hung BMC is given up on in
		// time for its last good values to be published, stale.
		if err := runner.Add(collector.Registration{Name: "redfish", Target: r.Name.Value, Interval: r.Interval.Duration,
			Timeout: r.Interval.Duration, StaleAfter: 30 * r.Interval.Duration, Source: src}); err != nil {
			return sources, err
		}
	}
	return sources, nil
}

// redfishConfig is the Redfish source's configuration of one BMC or meter.
func redfishConfig(r config.RedfishSource, password string, counters *energy.Store) redfish.Config {
	return redfish.Config{
		Name: r.Name.Value, Endpoint: r.Endpoint.Value, Username: r.Username, Password: password,
		BasicAuth: r.BasicAuth, CAFile: r.CAFile, InsecureSkipVerify: r.InsecureSkipVerify,
		Timeout: r.Timeout.Duration, MaxConcurrentRequests: r.MaxConcurrentRequests, Role: r.Role.Value,
		Counters: counters, MaxWatts: r.MaxPowerWatts,
	}
}

// addWork registers the work counters, when any endpoint or textfile
// directory is configured.
func addWork(logger *slog.Logger, runner *collector.Runner, cfg config.Agent, counters *energy.Store) error {
	w := cfg.Sources.Work
	if len(w.Scrape) == 0 && w.TextfileDir == "" {
		return nil
	}
	var targets []collector.WorkTarget
	for _, t := range w.Scrape {
		metrics := append([]collector.WorkMetric(nil), collector.WorkPresets[t.Preset.Value]...)
		for _, m := range t.Metrics {
			metrics = append(metrics, collector.WorkMetric{Name: m.Name, Unit: m.Unit, Kind: m.Kind})
		}
		targets = append(targets, collector.WorkTarget{Name: t.Name, URL: t.URL.Value, Metrics: metrics, Model: t.Model})
	}
	src := collector.NewWorkSource(targets, w.TextfileDir, w.Timeout.Duration, counters, logger.With("collector", "work"))
	return runner.Add(collector.Registration{Name: "work", Interval: w.Interval.Duration, Timeout: w.Timeout.Duration, Source: src})
}

// writerConfig is one of the agent's writers: exporters.stream (to the
// aggregator) or exporters.influx (straight to InfluxDB).
type writerConfig struct {
	name string
	cfg  config.Writer
}

func writerConfigs(cfg config.Agent) []writerConfig {
	return []writerConfig{{"stream", cfg.Exporters.Stream}, {"influx", cfg.Exporters.Influx}}
}

// stream is the writer's configuration as the exporters take it.
func (w writerConfig) stream(token string) exporters.StreamConfig {
	c := w.cfg
	return exporters.StreamConfig{
		Name: w.name, URL: c.URL.Value, Org: c.Org, Bucket: c.Bucket, Token: token,
		CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile, InsecureSkipVerify: c.InsecureSkipVerify,
		SpoolDir: c.SpoolDir, SpoolMaxBytes: c.SpoolMaxBytes, BatchLines: c.BatchLines,
		FlushInterval: c.FlushInterval.Duration, Timeout: c.Timeout.Duration,
	}
}

// addWriters sets up the stream to the aggregator and the direct InfluxDB
// writer, each fed by every fresh collection and reporting its own state as
// a source.
func addWriters(logger *slog.Logger, runner *collector.Runner, cfg config.Agent) ([]*exporters.Stream, error) {
	var writers []*exporters.Stream
	for _, w := range writerConfigs(cfg) {
		if w.cfg.URL.Value == "" {
			continue
		}
		token, err := w.cfg.Token()
		if err != nil {
			return writers, fmt.Errorf("exporters.%s: token: %w", w.name, err)
		}
		s, err := exporters.NewStream(w.stream(token), logger.With("exporter", w.name))
		if err != nil {
			return writers, err
		}
		writers = append(writers, s)
		runner.OnPublish(s.Add)
		if err := runner.Add(collector.Registration{Name: "exporter", Target: w.name, Interval: 5 * time.Second, Source: s}); err != nil {
			return writers, err
		}
		logger.Info("writing every sample through a disk spool", "exporter", w.name, "url", w.cfg.URL.Value, "spool", w.cfg.SpoolDir)
	}
	return writers, nil
}

func serve(ctx context.Context, logger *slog.Logger, cfg config.Agent, collectors []string, meters []meterDevice, app *kingpin.Application,
	metricsPath string, debugPprof bool, webFlags *web.FlagConfig) error {
	logger.Info("starting joules-agent", "version", version.Info(), "labels", cfg.Labels)
	runner := collector.NewRunner(logger, cfg.Labels)

	counters, err := energy.OpenStore(cfg.CounterStateDir(), logger.With("component", "counters"))
	switch {
	case err != nil:
		logger.Error("energy counter state", "err", err)
	case counters.Path() == "":
		logger.Info("energy counters are continued in memory only: they start new epochs after a restart; set state_dir to keep them")
	default:
		logger.Info("energy counters continued across restarts", "file", counters.Path())
	}
	procfs, _ := collector.FlagValue(app, "path.procfs")
	bootID := collector.BootID(procfs)

	sysfs, _ := collector.FlagValue(app, "path.sysfs")
	if node := cfg.Sources.Node; node.Enabled && len(collectors) > 0 {
		src, err := collector.NewNodeSource(logger, sysfs, collectors)
		if err != nil {
			return err
		}
		src.SetBootID(bootID)
		if err := runner.Add(collector.Registration{Name: "node", Interval: node.Interval.Duration, Timeout: node.Timeout.Duration, Source: src}); err != nil {
			return err
		}
		logger.Info("node_exporter collectors enabled", "collectors", collectors, "sysfs", sysfs)
	}

	named, resolver, err := workloads(logger, cfg, sysfs)
	if err != nil {
		return err
	}
	if resolver != nil {
		if err := runner.Add(collector.Registration{Name: "workloads", Interval: cfg.Workloads.Refresh.Duration, Source: resolver}); err != nil {
			return err
		}
	}
	gpus, err := addNVML(logger, runner, cfg, counters, bootID, procfs, named)
	if err != nil {
		return err
	}
	if gpus != nil {
		defer gpus.Close()
	}
	bmcs, err := addRedfish(logger, runner, cfg, counters)
	for _, b := range bmcs {
		defer b.Close()
	}
	if err != nil {
		return err
	}

	meterSources, err := addMeters(logger, runner, meters, counters)
	for _, m := range meterSources {
		defer m.Close()
	}
	if err != nil {
		return err
	}

	if err := addWork(logger, runner, cfg, counters); err != nil {
		return err
	}
	writers, err := addWriters(logger, runner, cfg)
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	if cfg.Exporters.Prometheus.Enabled {
		mux.Handle(metricsPath, exporters.NewHandler(runner, exporters.OperatorSeries(exporters.NewRegistry(program), program), logger))
	}
	if debugPprof {
		service.ServePprof(mux, logger)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	if metricsPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "joules-agent",
			Description: "Energy telemetry of this host: GPUs, BMCs, NICs, InfiniBand, RAPL",
			Version:     version.Info(),
			Links: []web.LandingLinks{
				{Address: metricsPath, Text: "Metrics"},
				{Address: "/healthz", Text: "Health"},
			},
		})
		if err != nil {
			return fmt.Errorf("landing page: %w", err)
		}
		mux.Handle("/", landing)
	}

	runCtx, cancelRunner := context.WithCancel(ctx)
	runnerDone := make(chan struct{})
	go func() {
		defer close(runnerDone)
		runner.Run(runCtx)
	}()
	if resolver != nil {
		resolverDone := make(chan struct{})
		go func() {
			defer close(resolverDone)
			resolver.Run(runCtx, cfg.Workloads.Refresh.Duration)
		}()
		defer func() { <-resolverDone }()
	}
	// The counter state is saved every 10 s and once more after the runner
	// stopped, so it holds the last readings.
	storeCtx, stopStore := context.WithCancel(context.Background())
	storeDone := make(chan struct{})
	go func() {
		defer close(storeDone)
		counters.Run(storeCtx, 10*time.Second)
	}()
	defer func() { stopStore(); <-storeDone }()
	// Writers outlive the runner, so the last samples are spooled on shutdown.
	writeCtx, cancelWriters := context.WithCancel(context.Background())
	var writersDone sync.WaitGroup
	for _, w := range writers {
		writersDone.Add(1)
		go func() {
			defer writersDone.Done()
			w.Run(writeCtx)
		}()
	}

	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	if err := service.Serve(server, webFlags, logger, serveErr); err != nil {
		cancelRunner()
		<-runnerDone
		cancelWriters()
		writersDone.Wait()
		return err
	}
	watchCtx, stopWatchdog := context.WithCancel(ctx)
	defer stopWatchdog()
	go service.Watchdog(watchCtx, logger, func(context.Context) bool { return runner.Alive() })

	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err = <-serveErr:
		err = fmt.Errorf("web server: %w", err)
	}
	service.Stopping()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := server.Shutdown(shutdownCtx); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		logger.Warn("web server shutdown", "err", serr)
	}
	cancelRunner()
	<-runnerDone
	cancelWriters()
	writersDone.Wait()
	logger.Info("stopped")
	return err
}
