package collector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/joules-energy/joules/internal/energy"
)

// WorkMetric is one counter of useful work an inference or training server
// exposes: its series name (a counter, or a histogram's _sum or _count), the
// unit of the work (token, flop, sample, inference) and what kind of work it
// is (generation, prompt, …).
type WorkMetric struct {
	Name, Unit, Kind string
}

// WorkPresets are the work counters of known servers.
var WorkPresets = map[string][]WorkMetric{
	"vllm":   {{"vllm:generation_tokens_total", "token", "generation"}, {"vllm:prompt_tokens_total", "token", "prompt"}},
	"sglang": {{"sglang:generation_tokens_total", "token", "generation"}, {"sglang:prompt_tokens_total", "token", "prompt"}},
	"tgi":    {{"tgi_request_generated_tokens_sum", "token", "generation"}, {"tgi_request_input_length_sum", "token", "prompt"}},
	"triton": {{"nv_inference_count", "inference", "inference"}},
}

// WorkTarget is one local metrics endpoint to scrape.
type WorkTarget struct {
	Name    string // the workload label; defaults to the URL's host:port
	URL     string
	Metrics []WorkMetric
	// Model is the model_name label of counters that carry none (TGI
	// names its model in /info, not in its metrics).
	Model string
}

// WorkSource reads counters of useful work (tokens, FLOP, samples) from the
// Prometheus endpoints of inference servers and from a textfile directory
// (node_exporter's *.prom convention) where any workload can publish
// joules_work_total{unit="token"|"flop"|"sample"|…}. Every counter is
// continued across resets (a restarted server starts again from zero), so
// joules_work_total never goes backwards.
type WorkSource struct {
	targets     []WorkTarget
	textfileDir string
	client      *http.Client
	log         *slog.Logger
	now         func() time.Time

	mu       sync.Mutex
	counters *energy.Store
	logged   map[string]bool
}

// NewWorkSource returns the source; timeout bounds one scrape. counters
// continues the work counters across restarts (nil: in memory).
func NewWorkSource(targets []WorkTarget, textfileDir string, timeout time.Duration, counters *energy.Store, logger *slog.Logger) *WorkSource {
	if counters == nil {
		counters = energy.NewMemoryStore()
	}
	for i := range targets {
		if targets[i].Name == "" {
			if u, err := url.Parse(targets[i].URL); err == nil {
				targets[i].Name = u.Host
			}
		}
	}
	return &WorkSource{targets: targets, textfileDir: textfileDir, client: &http.Client{Timeout: timeout}, log: logger, now: time.Now,
		counters: counters, logged: map[string]bool{}}
}

const (
	metricWork   = "joules_work_total"
	helpWork     = "Useful work done by a workload, by unit (token, flop, sample, inference) and kind, continued across the workload's restarts."
	metricWorkUp = "joules_work_target_up"
)

// Collect scrapes every target and reads the textfile directory. A target
// that fails is reported down and the others go on.
func (w *WorkSource) Collect(ctx context.Context) ([]Sample, error) {
	now := w.now()
	var out []Sample
	var errs []error
	for _, t := range w.targets {
		samples, err := w.scrape(ctx, t, now)
		up := 1.0
		if err != nil {
			up = 0
			errs = append(errs, fmt.Errorf("work target %s: %w", t.Name, err))
			w.once("target:"+t.Name, "cannot read a workload's metrics; its work is missing until it answers", "workload", t.Name, "url", t.URL, "err", err)
		} else {
			delete(w.logged, "target:"+t.Name)
		}
		out = append(out, samples...)
		out = append(out, Sample{Name: metricWorkUp, Help: "Whether the workload's metrics endpoint answered the last scrape.", Kind: Gauge, Value: up,
			Labels: []Label{{"workload", t.Name}}, Time: now})
	}
	if w.textfileDir != "" {
		out = append(out, w.textfiles(now)...)
	}
	if len(errs) > 0 && len(errs) == len(w.targets) && w.textfileDir == "" {
		return out, errors.Join(errs...)
	}
	return out, nil
}

func (w *WorkSource) scrape(ctx context.Context, t WorkTarget, now time.Time) ([]Sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s", resp.Status)
	}
	families, err := parseText(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, err
	}
	var out []Sample
	for _, m := range t.Metrics {
		for _, v := range seriesValues(families, m.Name) {
			labels := append(v.labels, Label{"kind", m.Kind}, Label{"unit", m.Unit}, Label{"workload", t.Name})
			if t.Model != "" && !hasLabel(labels, "model_name") {
				labels = append(labels, Label{"model_name", t.Model})
			}
			out = append(out, w.counterSample(labels, v.value, now))
		}
	}
	return out, nil
}

// textfiles reads joules_work_total from every *.prom file; a file that
// does not parse is logged once and skipped, the others are read.
func (w *WorkSource) textfiles(now time.Time) []Sample {
	files, _ := filepath.Glob(filepath.Join(w.textfileDir, "*.prom"))
	sort.Strings(files)
	var out []Sample
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			w.once("file:"+f, "cannot read a work textfile", "file", f, "err", err)
			continue
		}
		families, err := parseText(io.LimitReader(fh, 8<<20))
		fh.Close()
		if err != nil {
			w.once("file:"+f, "work textfile is not in the Prometheus text format; it is skipped until fixed", "file", f, "err", err)
			continue
		}
		delete(w.logged, "file:"+f)
		workload := strings.TrimSuffix(filepath.Base(f), ".prom")
		for _, v := range seriesValues(families, metricWork) {
			labels := v.labels
			if !hasLabel(labels, "unit") {
				w.once("unit:"+f, "joules_work_total without a unit label is skipped: say unit=\"token\", \"flop\", \"sample\"…", "file", f)
				continue
			}
			if !hasLabel(labels, "workload") {
				labels = append(labels, Label{"workload", workload})
			}
			out = append(out, w.counterSample(labels, v.value, now))
		}
	}
	return out
}

// counterSample continues the counter of one series across resets; the
// epoch label says when it could not be continued (a new agent state).
func (w *WorkSource) counterSample(labels []Label, value float64, now time.Time) Sample {
	SortLabels(labels)
	var key strings.Builder
	key.WriteString("work/")
	for _, l := range labels {
		key.WriteString(l.Name + "=" + l.Value + ",")
	}
	total, epoch, ev := w.counters.Counter(key.String(), value, "", now, energy.Bound{}) // work has no physical bound
	if ev == energy.Reset {
		w.log.Info("a workload's counter restarted (a server restart?); continuing from its last total", "labels", key.String())
	}
	labels = append(labels, Label{"epoch", epoch})
	SortLabels(labels)
	return Sample{Name: metricWork, Help: helpWork, Kind: Counter, Value: total, Labels: labels, Time: now}
}

func (w *WorkSource) once(key, msg string, args ...any) {
	w.mu.Lock()
	seen := w.logged[key]
	w.logged[key] = true
	w.mu.Unlock()
	if !seen {
		w.log.Warn(msg, args...)
	}
}

func parseText(r io.Reader) (map[string]*dto.MetricFamily, error) {
	parser := expfmt.NewTextParser(model.LegacyValidation)
	return parser.TextToMetricFamilies(r)
}

type seriesValue struct {
	labels []Label
	value  float64
}

// seriesValues finds a series name among the families: a counter, gauge or
// untyped family of that name, or a histogram's or summary's _sum or _count.
func seriesValues(families map[string]*dto.MetricFamily, name string) []seriesValue {
	var out []seriesValue
	collect := func(mf *dto.MetricFamily, value func(*dto.Metric) float64) {
		for _, m := range mf.GetMetric() {
			var ls []Label
			for _, lp := range m.GetLabel() {
				ls = append(ls, Label{lp.GetName(), lp.GetValue()})
			}
			out = append(out, seriesValue{ls, value(m)})
		}
	}
	if mf, ok := families[name]; ok {
		collect(mf, func(m *dto.Metric) float64 {
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			default:
				return m.GetUntyped().GetValue()
			}
		})
		return out
	}
	for suffix, pick := range map[string]func(*dto.Metric) float64{
		"_sum": func(m *dto.Metric) float64 {
			if m.Histogram != nil {
				return m.GetHistogram().GetSampleSum()
			}
			return m.GetSummary().GetSampleSum()
		},
		"_count": func(m *dto.Metric) float64 {
			if m.Histogram != nil {
				return float64(m.GetHistogram().GetSampleCount())
			}
			return float64(m.GetSummary().GetSampleCount())
		},
	} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if mf, ok := families[base]; ok {
				collect(mf, pick)
			}
		}
	}
	return out
}
