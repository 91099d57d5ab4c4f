package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/joules-energy/joules/collector"
)

// startInference serves a simulated inference server on a free loopback
// port until the test ends, and returns its /metrics URL.
func startInference(t *testing.T, sim *inferenceSim) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveInference(ctx, slog.New(slog.DiscardHandler), l, sim) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveInference: %v", err)
		}
	})
	return "http://" + l.Addr().String() + "/metrics"
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("GET %s: %s, Content-Type %q", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte("SIMULATED")) {
		t.Errorf("the exposition does not say it is simulated:\n%s", raw)
	}
	// The agent's work source parses with the same parser and validation.
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, raw)
	}
	return families
}

// counter returns the value of the one series of a counter family, and
// checks its labels are vLLM's.
func counter(t *testing.T, families map[string]*dto.MetricFamily, name, model string) float64 {
	t.Helper()
	mf := families[name]
	if mf == nil || mf.GetType() != dto.MetricType_COUNTER || len(mf.GetMetric()) != 1 {
		t.Fatalf("%s: want one counter series, got %v", name, mf)
	}
	m := mf.GetMetric()[0]
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["model_name"] != model || labels["engine"] != "0" {
		t.Errorf("%s labels %v, want model_name=%q engine=0", name, labels, model)
	}
	return m.GetCounter().GetValue()
}

// testClock is the simulator's clock, moved by the test; its server reads
// it from other goroutines.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Unix(1_800_000_000, 0)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// The counters the agent's vLLM preset reads are served, parse, carry
// model_name, and increase between two scrapes.
func TestInferenceScrapedTwice(t *testing.T) {
	const model = `org/model "v2"`
	clock := newTestClock()
	url := startInference(t, newInferenceSim(model, 5000, 1.5, 7, clock.Now))
	first := scrape(t, url)
	clock.Advance(300 * time.Millisecond)
	second := scrape(t, url)
	preset := collector.WorkPresets["vllm"]
	if len(preset) == 0 {
		t.Fatal("the agent has no vllm preset")
	}
	for _, m := range preset {
		a, b := counter(t, first, m.Name, model), counter(t, second, m.Name, model)
		if !(b > a) {
			t.Errorf("%s went from %v to %v over 300 ms; want it to increase", m.Name, a, b)
		}
	}
	if mf := second["joules_sim_info"]; mf == nil {
		t.Error("no joules_sim_info in the exposition")
	}
	if resp, err := http.Get(strings.TrimSuffix(url, "/metrics") + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
}

// The agent's work source, with the vllm preset, reads token counts from
// the simulator.
func TestInferenceThroughWorkSource(t *testing.T) {
	clock := newTestClock()
	url := startInference(t, newInferenceSim("m", 5000, 1.5, 3, clock.Now))
	src := collector.NewWorkSource([]collector.WorkTarget{{Name: "sim", URL: url, Metrics: collector.WorkPresets["vllm"]}}, "", time.Second, nil, slog.New(slog.DiscardHandler))
	kinds := map[string]bool{}
	for range 2 {
		samples, err := src.Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range samples {
			if s.Name != "joules_work_total" {
				continue
			}
			labels := map[string]string{}
			for _, l := range s.Labels {
				labels[l.Name] = l.Value
			}
			if labels["unit"] != "token" || labels["model_name"] != "m" {
				t.Errorf("work sample labels %v", labels)
			}
			kinds[labels["kind"]] = true
		}
		clock.Advance(time.Second)
	}
	if !kinds["generation"] || !kinds["prompt"] {
		t.Errorf("work kinds read: %v, want generation and prompt", kinds)
	}
}

// The counters are computed from the time since the start: they never go
// backwards, their rate stays within the wander's range, and over ten
// minutes they average the configured rate.
func TestInferenceCountersMonotonic(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	now := start
	const rate, ratio = 2000.0, 1.5
	for seed := range uint64(5) {
		now = start
		sim := newInferenceSim("m", rate, ratio, seed, func() time.Time { return now })
		var lastGen, lastPrompt float64
		for step := range 2400 { // ten minutes in 250 ms steps
			now = start.Add(time.Duration(step) * 250 * time.Millisecond)
			gen, prompt, running := sim.counters(now)
			if gen < lastGen || prompt < lastPrompt {
				t.Fatalf("seed %d at %v: counters went back: generation %v → %v, prompt %v → %v", seed, now.Sub(start), lastGen, gen, lastPrompt, prompt)
			}
			if step > 0 && (gen-lastGen < 0.5*rate/4-1 || gen-lastGen > 1.5*rate/4+1) {
				t.Errorf("seed %d at %v: %v generation tokens in 250 ms, outside half to one and a half times the rate", seed, now.Sub(start), gen-lastGen)
			}
			if running <= 0 {
				t.Errorf("seed %d: %v requests running", seed, running)
			}
			lastGen, lastPrompt = gen, prompt
		}
		secs := now.Sub(start).Seconds()
		if got := lastGen / secs; got < 0.95*rate || got > 1.05*rate {
			t.Errorf("seed %d: %v generation tokens/s on average, want about %v", seed, got, rate)
		}
		if got := lastPrompt / secs; got < 0.95*rate*ratio || got > 1.05*rate*ratio {
			t.Errorf("seed %d: %v prompt tokens/s on average, want about %v", seed, got, rate*ratio)
		}
	}
	a, _, _ := newInferenceSim("m", rate, ratio, 1, func() time.Time { return start }).counters(start.Add(30 * time.Second))
	b, _, _ := newInferenceSim("m", rate, ratio, 2, func() time.Time { return start }).counters(start.Add(30 * time.Second))
	if a == b {
		t.Errorf("seeds 1 and 2 counted the same %v tokens in 30 s", a)
	}
}

func TestSimFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"sim", "inference", "--tokens-per-second", "0"},
		{"sim", "inference", "--prompt-ratio", "-1"},
		{"sim", "redfish", "--bmc", "a=dir", "--scale", "b=1.35"},
		{"sim", "redfish", "--bmc", "a=dir", "--scale", "a=0"},
		{"sim", "redfish", "--bmc", "a=dir", "--scale", "a=x"},
		{"sim", "redfish", "--bmc", "a=dir", "--follow", "a=b"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 {
			t.Errorf("joules %s: exit %d, want 2 (stderr %q)", strings.Join(args, " "), code, stderr.String())
		}
	}
}

func TestBMCOptions(t *testing.T) {
	opts, err := bmcOptions([]string{"pdu-a=d", "facility=d"}, []string{"facility=1.35"}, []string{"facility=pdu-a"})
	if err != nil {
		t.Fatal(err)
	}
	if f := opts["facility"]; f.Scale != 1.35 || f.LoadOf != "pdu-a" {
		t.Errorf("facility options %+v", f)
	}
	if p := opts["pdu-a"]; p.Scale != 0 || p.LoadOf != "" {
		t.Errorf("pdu-a options %+v, want the defaults", p)
	}
}
