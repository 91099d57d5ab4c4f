package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// inferenceSim is a simulated inference server: it serves the token
// counters of vLLM's /metrics (vllm:generation_tokens_total and
// vllm:prompt_tokens_total, labelled model_name and engine as vLLM labels
// them) moving at a rate that wanders around the configured one.
//
// The counters are the integral of the rate from the start, so they never
// go backwards: the rate is the mean rate times a sum of slow and fast
// sines whose periods and phases come from the seed, and never falls below
// half the mean. Following a simulated host's GPUs instead, the rate goes
// with their utilization (none when they idle), the mean rate being the
// rate at their mean utilization over a day.
type inferenceSim struct {
	model       string
	rate        float64 // generation tokens per second, on average
	promptRatio float64 // prompt tokens per generation token, on average
	start       time.Time
	now         func() time.Time
	generation  wander
	prompt      wander

	gpus      gpuActivity // nil: the wander
	following string      // the site and host gpus are, for the log
	startBusy float64     // gpus' utilization-seconds at the start
}

// gpuActivity is a simulated host's GPUs: their mean utilization (0..1),
// its integral over time, and its mean over a day.
type gpuActivity interface {
	Utilization(t time.Time) float64
	UtilizationSeconds(t time.Time) float64
	MeanUtilization() float64
}

// wander is a rate factor 1 + Σ aᵢ·sin(2πt/pᵢ + φᵢ), with Σ aᵢ < 0.5.
type wander struct {
	amp, period, phase [3]float64
}

func newWander(r *rand.Rand) wander {
	var w wander
	w.amp = [3]float64{0.25, 0.12, 0.06}
	for i, span := range [3][2]float64{{45, 120}, {8, 20}, {1.5, 4}} {
		w.period[i] = span[0] + r.Float64()*(span[1]-span[0])
		w.phase[i] = r.Float64() * 2 * math.Pi
	}
	return w
}

// factor is the rate factor s seconds after the start.
func (w wander) factor(s float64) float64 {
	f := 1.0
	for i := range w.amp {
		f += w.amp[i] * math.Sin(2*math.Pi*s/w.period[i]+w.phase[i])
	}
	return f
}

// integral is ∫₀ˢ factor dt.
func (w wander) integral(s float64) float64 {
	v := s
	for i := range w.amp {
		k := 2 * math.Pi / w.period[i]
		v -= w.amp[i] / k * (math.Cos(k*s+w.phase[i]) - math.Cos(w.phase[i]))
	}
	return v
}

func newInferenceSim(model string, rate, promptRatio float64, seed uint64, now func() time.Time) *inferenceSim {
	r := rand.New(rand.NewPCG(seed, 0x6a6f756c6573))
	return &inferenceSim{model: model, rate: rate, promptRatio: promptRatio, start: now(), now: now,
		generation: newWander(r), prompt: newWander(r)}
}

// follow makes the token rates go with the GPUs' utilization.
func (s *inferenceSim) follow(gpus gpuActivity, name string) {
	s.gpus, s.following = gpus, name
	s.startBusy = gpus.UtilizationSeconds(s.start)
}

// counters returns the generation and prompt token totals, and the
// requests running, at t.
func (s *inferenceSim) counters(t time.Time) (generation, prompt, running float64) {
	if s.gpus != nil {
		perBusySecond := s.rate / s.gpus.MeanUtilization()
		busy := max(s.gpus.UtilizationSeconds(t)-s.startBusy, 0)
		generation = math.Floor(perBusySecond * busy)
		prompt = math.Floor(perBusySecond * s.promptRatio * busy)
		running = math.Round(perBusySecond * s.gpus.Utilization(t) / 40)
		return generation, prompt, running
	}
	sec := max(t.Sub(s.start).Seconds(), 0)
	generation = math.Floor(s.rate * s.generation.integral(sec))
	prompt = math.Floor(s.rate * s.promptRatio * s.prompt.integral(sec))
	// About 40 generation tokens per second per running request.
	running = math.Round(s.rate * s.generation.factor(sec) / 40)
	return generation, prompt, running
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// ServeHTTP serves /metrics in the Prometheus text format, as vLLM does,
// and /healthz.
func (s *inferenceSim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz", "/health":
		_, _ = io.WriteString(w, "ok\n")
		return
	case "/metrics":
	default:
		http.NotFound(w, r)
		return
	}
	generation, prompt, running := s.counters(s.now())
	labels := `{engine="0",model_name="` + labelEscaper.Replace(s.model) + `"}`
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
	var b strings.Builder
	b.WriteString("# SIMULATED inference server (joules sim inference): these counters are made up.\n")
	b.WriteString("# HELP joules_sim_info A simulator made this exposition; its numbers are not measurements.\n")
	b.WriteString("# TYPE joules_sim_info gauge\n")
	b.WriteString(`joules_sim_info{simulator="inference",server="vllm"} 1` + "\n")
	b.WriteString("# HELP vllm:num_requests_running Number of requests in model execution batches.\n")
	b.WriteString("# TYPE vllm:num_requests_running gauge\n")
	b.WriteString("vllm:num_requests_running" + labels + " " + num(running) + "\n")
	b.WriteString("# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n")
	b.WriteString("# TYPE vllm:prompt_tokens_total counter\n")
	b.WriteString("vllm:prompt_tokens_total" + labels + " " + num(prompt) + "\n")
	b.WriteString("# HELP vllm:generation_tokens_total Number of generation tokens processed.\n")
	b.WriteString("# TYPE vllm:generation_tokens_total counter\n")
	b.WriteString("vllm:generation_tokens_total" + labels + " " + num(generation) + "\n")
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = io.WriteString(w, b.String())
}

// serveInference serves sim on l until ctx ends.
func serveInference(ctx context.Context, logger *slog.Logger, l net.Listener, sim *inferenceSim) error {
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	logger.Info("SIMULATED inference server serving vLLM token counters", "url", "http://"+l.Addr().String()+"/metrics",
		"model", sim.model, "tokens_per_second", sim.rate, "prompt_ratio", sim.promptRatio, "following_gpus_of", cmp.Or(sim.following, "none"))
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("inference simulator: %w", err)
	}
	return nil
}
