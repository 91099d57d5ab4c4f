package collector

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/config"
	"github.com/joules-energy/joules/internal/testenv"
)

// vllmMetrics is shaped like vLLM's /metrics: colons in names, HELP and TYPE
// lines, model_name labels, histograms around the counters.
func vllmMetrics(generation, prompt float64) string {
	return fmt.Sprintf(`# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} %g
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} %g
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 10.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="meta-llama/Llama-3.1-8B-Instruct"} 12.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 12.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.9
`, prompt, generation)
}

func workValues(samples []Sample) map[string]float64 {
	out := map[string]float64{}
	for _, s := range samples {
		if s.Name != metricWork {
			continue
		}
		var ks []string
		for _, l := range s.Labels {
			if l.Name == "kind" || l.Name == "unit" || l.Name == "workload" {
				ks = append(ks, l.Name+"="+l.Value)
			}
		}
		out[strings.Join(ks, ",")] = s.Value
	}
	return out
}

func TestWorkScrapesVLLMAndSurvivesARestart(t *testing.T) {
	var gen, prompt atomic.Value
	gen.Store(1000.0)
	prompt.Store(400.0)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, vllmMetrics(gen.Load().(float64), prompt.Load().(float64)))
	}))
	defer srv.Close()
	src := NewWorkSource([]WorkTarget{{Name: "llama", URL: srv.URL + "/metrics", Metrics: WorkPresets["vllm"]}}, "", time.Second, nil, discardLogger())

	samples, err := src.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := workValues(samples)
	if got["kind=generation,unit=token,workload=llama"] != 1000 || got["kind=prompt,unit=token,workload=llama"] != 400 {
		t.Fatalf("work = %v", got)
	}
	for _, s := range samples {
		if s.Name == metricWork && !hasLabelValue(s.Labels, "model_name", "meta-llama/Llama-3.1-8B-Instruct") {
			t.Errorf("the server's labels were not kept: %v", s.Labels)
		}
	}
	// vLLM restarts: its counters start again from zero.
	gen.Store(50.0)
	prompt.Store(20.0)
	samples, _ = src.Collect(context.Background())
	got = workValues(samples)
	if got["kind=generation,unit=token,workload=llama"] != 1050 || got["kind=prompt,unit=token,workload=llama"] != 420 {
		t.Errorf("after a restart: %v, want 1050 and 420 (continued, never backwards)", got)
	}
}

func TestWorkTargetDownIsReportedOthersGoOn(t *testing.T) {
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# TYPE tgi_request_generated_tokens histogram\ntgi_request_generated_tokens_bucket{le=\"+Inf\"} 3\ntgi_request_generated_tokens_sum 777\ntgi_request_generated_tokens_count 3\n")
	}))
	defer good.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }))
	defer bad.Close()
	src := NewWorkSource([]WorkTarget{{URL: bad.URL, Metrics: WorkPresets["vllm"]}, {Name: "tgi", URL: good.URL, Metrics: WorkPresets["tgi"]}}, "", time.Second, nil, discardLogger())
	samples, err := src.Collect(context.Background())
	if err != nil {
		t.Fatalf("one target of two failing failed the source: %v", err)
	}
	if got := workValues(samples); got["kind=generation,unit=token,workload=tgi"] != 777 {
		t.Errorf("TGI's generated tokens from its histogram sum: %v", got)
	}
	up := map[string]float64{}
	for _, s := range samples {
		if s.Name == metricWorkUp {
			up[s.Labels[0].Value] = s.Value
		}
	}
	if up["tgi"] != 1 || up[strings.TrimPrefix(bad.URL, "http://")] != 0 {
		t.Errorf("target up = %v", up)
	}
}

func TestWorkTextfiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "train.prom"), []byte("# TYPE joules_work_total counter\njoules_work_total{unit=\"flop\",kind=\"training\"} 3.2e18\njoules_work_total{unit=\"sample\",kind=\"training\"} 51200\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "broken.prom"), []byte("joules_work_total{unit=\"token\" 12\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "nounit.prom"), []byte("joules_work_total 5\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a prom file"), 0o644)
	var logs testenv.LogBuffer
	src := NewWorkSource(nil, dir, time.Second, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	samples, err := src.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := workValues(samples)
	if len(got) != 2 || got["kind=training,unit=flop,workload=train"] != 3.2e18 || got["kind=training,unit=sample,workload=train"] != 51200 {
		t.Errorf("work = %v, want the two series of train.prom", got)
	}
	for _, want := range []string{"broken.prom", "nounit.prom", "without a unit label"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestWorkPresetNamesMatchConfig(t *testing.T) {
	var names []string
	for n := range WorkPresets {
		names = append(names, n)
	}
	slices.Sort(names)
	if fmt.Sprint(names) != fmt.Sprint(config.WorkPresetNames) {
		t.Errorf("presets %v, config knows %v", names, config.WorkPresetNames)
	}
}

// TGI's counters name no model; the target's model does, and a server's
// own model_name is never overwritten.
func TestWorkTargetNamesTheModel(t *testing.T) {
	tgi := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# TYPE tgi_request_generated_tokens histogram\ntgi_request_generated_tokens_sum 420\ntgi_request_generated_tokens_count 7\n")
	}))
	defer tgi.Close()
	vllm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, vllmMetrics(10, 20)) }))
	defer vllm.Close()
	src := NewWorkSource([]WorkTarget{{Name: "tgi", URL: tgi.URL, Metrics: WorkPresets["tgi"][:1], Model: "mistral-7b"},
		{Name: "vllm", URL: vllm.URL, Metrics: WorkPresets["vllm"][:1], Model: "ignored"}}, "", time.Second, nil, slog.New(slog.DiscardHandler))
	samples, err := src.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	models := map[string]string{}
	for _, s := range samples {
		if s.Name == metricWork {
			for _, l := range s.Labels {
				if l.Name == "model_name" {
					models[labelValue(s.Labels, "workload")] = l.Value
				}
			}
		}
	}
	if models["tgi"] != "mistral-7b" || models["vllm"] != "meta-llama/Llama-3.1-8B-Instruct" {
		t.Errorf("models %v", models)
	}
}

func labelValue(ls []Label, name string) string {
	for _, l := range ls {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}
