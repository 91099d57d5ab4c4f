// Package exporters turns samples into what the outside world reads:
// Prometheus exposition now; line protocol for the stream and InfluxDB later.
package exporters

import (
	"bytes"
	"compress/gzip"
	"io"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/joules-energy/joules/collector"
)

// Snapshotter gives the latest samples without waiting for hardware.
type Snapshotter interface {
	Snapshot() []collector.Sample
}

// ContentType is the Prometheus text exposition format the handler writes.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// AppendText appends the samples in the Prometheus text format to buf:
// families sorted by name, one HELP and TYPE line each, series in the order
// the sources gave them. Samples whose name no Prometheus 2.x can read are
// left out.
//
// The agent writes the exposition itself rather than through client_golang's
// const metrics: an 8-GPU host has about a thousand series with long label
// sets, and building, gathering and encoding const metrics cost ~5 µs and 18
// allocations a series (see BenchmarkScrape), which broke the scrape budget.
func AppendText(buf []byte, samples []collector.Sample) []byte {
	order := make([]int, len(samples))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return samples[order[a]].Name < samples[order[b]].Name })
	var family string
	valid := false
	for _, i := range order {
		s := &samples[i]
		if s.Name != family {
			family, valid = s.Name, validMetricName(s.Name)
			if !valid {
				continue
			}
			buf = append(buf, "# HELP "...)
			buf = append(buf, s.Name...)
			buf = append(buf, ' ')
			buf = appendEscaped(buf, s.Help, false)
			buf = append(buf, "\n# TYPE "...)
			buf = append(buf, s.Name...)
			buf = append(buf, ' ')
			buf = append(buf, s.Kind.String()...)
			buf = append(buf, '\n')
		}
		if !valid {
			continue
		}
		buf = append(buf, s.Name...)
		if len(s.Labels) > 0 {
			buf = append(buf, '{')
			for k, l := range s.Labels {
				if k > 0 {
					buf = append(buf, ',')
				}
				buf = append(buf, l.Name...)
				buf = append(buf, `="`...)
				buf = appendEscaped(buf, l.Value, true)
				buf = append(buf, '"')
			}
			buf = append(buf, '}')
		}
		buf = append(buf, ' ')
		buf = appendFloat(buf, s.Value)
		buf = append(buf, '\n')
	}
	return buf
}

// appendEscaped escapes backslash and newline, and double quotes in label values.
func appendEscaped(buf []byte, s string, quote bool) []byte {
	if !strings.ContainsAny(s, "\\\n\"") {
		return append(buf, s...)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			buf = append(buf, `\\`...)
		case c == '\n':
			buf = append(buf, `\n`...)
		case c == '"' && quote:
			buf = append(buf, `\"`...)
		default:
			buf = append(buf, c)
		}
	}
	return buf
}

func appendFloat(buf []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(buf, "NaN"...)
	case math.IsInf(v, 1):
		return append(buf, "+Inf"...)
	case math.IsInf(v, -1):
		return append(buf, "-Inf"...)
	}
	return strconv.AppendFloat(buf, v, 'g', -1, 64)
}

// validMetricName is the classic name rule, [a-zA-Z_:][a-zA-Z0-9_:]*, which
// every Prometheus version reads.
func validMetricName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}

// NewRegistry returns a private registry with the process's own Go and
// process metrics and a build-info metric for program.
func NewRegistry(program string) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector(program),
	)
	return r
}

// operatorSeries are the Go and process families operators chart and alert
// on: goroutines and threads (leaks), heap in use and allocated, the GC's
// pauses and its GOGC and GOMEMLIMIT settings (to check a unit's limits took
// effect), CPU, resident memory and file descriptors. The rest of
// client_golang's ~40 families (mspan, mcache, buck_hash, the host's network
// totals, ...) describe the runtime's internals and are left out of every
// scrape.
var operatorSeries = map[string]bool{
	"go_goroutines": true, "go_threads": true, "go_info": true,
	"go_gc_duration_seconds": true, "go_gc_gogc_percent": true, "go_gc_gomemlimit_bytes": true,
	"go_memstats_alloc_bytes": true, "go_memstats_alloc_bytes_total": true, "go_memstats_heap_inuse_bytes": true,
	"go_memstats_sys_bytes": true, "go_memstats_next_gc_bytes": true,
	"process_cpu_seconds_total": true, "process_resident_memory_bytes": true, "process_virtual_memory_bytes": true,
	"process_open_fds": true, "process_max_fds": true, "process_start_time_seconds": true,
}

// OperatorSeries gathers from g only the Go and process families operators
// use (see operatorSeries) and program's build info.
func OperatorSeries(g prometheus.Gatherer, program string) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		families, err := g.Gather()
		kept := families[:0]
		for _, mf := range families {
			if name := mf.GetName(); operatorSeries[name] || name == program+"_build_info" {
				kept = append(kept, mf)
			}
		}
		return kept, err
	})
}

// Handler serves the snapshot and then self, the registry of the process's
// own metrics, as Prometheus text, gzipped when the scraper accepts it.
type Handler struct {
	snap   Snapshotter
	self   prometheus.Gatherer
	logger *slog.Logger
	bufs   sync.Pool
	gzips  sync.Pool
}

// NewHandler returns the /metrics handler.
func NewHandler(snap Snapshotter, self prometheus.Gatherer, logger *slog.Logger) *Handler {
	return &Handler{snap: snap, self: self, logger: logger}
}

// ServeHTTP renders the exposition. It never waits for hardware.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bp, _ := h.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer h.bufs.Put(bp)
	buf := AppendText((*bp)[:0], h.snap.Snapshot())
	if h.self != nil {
		families, err := h.self.Gather()
		if err != nil {
			h.logger.Warn("gathering the process's own metrics", "err", err)
		}
		out := bytes.NewBuffer(buf)
		for _, mf := range families {
			if _, err := expfmt.MetricFamilyToText(out, mf); err != nil {
				h.logger.Warn("encoding the process's own metrics", "err", err)
			}
		}
		buf = out.Bytes()
	}
	*bp = buf

	w.Header().Set("Content-Type", ContentType)
	if !acceptsGzip(r) {
		_, _ = w.Write(buf)
		return
	}
	w.Header().Set("Content-Encoding", "gzip")
	gz, _ := h.gzips.Get().(*gzip.Writer)
	if gz == nil {
		// BestSpeed: the exposition is regenerated every scrape, and its
		// repeated label sets compress well even at the fastest level.
		gz, _ = gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	}
	defer h.gzips.Put(gz)
	gz.Reset(w)
	_, _ = gz.Write(buf)
	_ = gz.Close()
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(enc) == "gzip" && strings.ReplaceAll(q, " ", "") != "q=0" {
			return true
		}
	}
	return false
}
