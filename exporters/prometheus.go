// Package exporters turns samples into what the outside world reads:
// Prometheus exposition now; line protocol for the stream and InfluxDB later.
package exporters

import (
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/joules-energy/joules/collector"
)

// Snapshotter gives the latest samples without waiting for hardware.
type Snapshotter interface {
	Snapshot() []collector.Sample
}

// SnapshotCollector is a prometheus.Collector that builds const metrics from
// the latest snapshot at scrape time, so a scrape never touches hardware.
type SnapshotCollector struct {
	snap   Snapshotter
	logger *slog.Logger

	mu    sync.Mutex
	descs map[string][]descVariant // by name, then label names
}

// NewSnapshotCollector returns a collector over snap.
func NewSnapshotCollector(snap Snapshotter, logger *slog.Logger) *SnapshotCollector {
	return &SnapshotCollector{snap: snap, logger: logger, descs: map[string][]descVariant{}}
}

// Describe sends nothing: the set of series is only known at scrape time,
// which makes this an unchecked collector.
func (c *SnapshotCollector) Describe(chan<- *prometheus.Desc) {}

// Collect sends one const metric per sample.
func (c *SnapshotCollector) Collect(ch chan<- prometheus.Metric) {
	names := make([]string, 0, 8)
	values := make([]string, 0, 8)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.snap.Snapshot() {
		names, values = names[:0], values[:0]
		for _, l := range s.Labels {
			names = append(names, l.Name)
			values = append(values, l.Value)
		}
		d := c.desc(s.Name, s.Help, names)
		if d == nil {
			continue
		}
		m, err := prometheus.NewConstMetric(d, valueType(s.Kind), s.Value, values...)
		if err != nil {
			c.logger.Debug("sample not exposable", "name", s.Name, "err", err)
			continue
		}
		ch <- m
	}
}

type descVariant struct {
	labelNames []string
	desc       *prometheus.Desc // nil when the name cannot be exposed
}

// desc returns a cached Desc, or nil for a name older scrapers cannot read.
// Building a Desc parses and validates names, which would otherwise be most
// of a scrape's cost; the lookup allocates nothing. Call with c.mu held.
func (c *SnapshotCollector) desc(name, help string, labelNames []string) *prometheus.Desc {
	variants := c.descs[name]
	for _, v := range variants {
		if slices.Equal(v.labelNames, labelNames) {
			return v.desc
		}
	}
	v := descVariant{labelNames: slices.Clone(labelNames)} // NewDesc keeps the slice; the caller reuses its buffer
	if legacyName.MatchString(name) {
		v.desc = prometheus.NewDesc(name, help, v.labelNames, nil)
	} else {
		// Prometheus 2.x cannot read the quoted UTF-8 names client_golang would write.
		c.logger.Warn("sample not exposable: invalid metric name", "name", name)
	}
	c.descs[name] = append(variants, v)
	return v.desc
}

var legacyName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

func valueType(k collector.Kind) prometheus.ValueType {
	switch k {
	case collector.Counter:
		return prometheus.CounterValue
	case collector.Gauge:
		return prometheus.GaugeValue
	default:
		return prometheus.UntypedValue
	}
}

// NewRegistry returns a private registry holding the snapshot collector, the
// process's own Go and process metrics, and a build-info metric for program.
func NewRegistry(snap Snapshotter, program string, logger *slog.Logger) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(
		NewSnapshotCollector(snap, logger),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector(program),
	)
	return r
}

// Handler serves r's exposition. A series that cannot be gathered is logged
// and left out; the rest are still served.
func Handler(r *prometheus.Registry, logger *slog.Logger) http.Handler {
	return promhttp.HandlerFor(r, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      r,
	})
}
