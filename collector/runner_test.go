package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// find returns the value of the first sample named name whose labels include want.
func find(samples []Sample, name string, want map[string]string) (float64, bool) {
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		ok := true
		for k, v := range want {
			if !hasLabelValue(s.Labels, k, v) {
				ok = false
			}
		}
		if ok {
			return s.Value, true
		}
	}
	return 0, false
}

func hasLabelValue(ls []Label, name, value string) bool {
	for _, l := range ls {
		if l.Name == name && l.Value == value {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRunnerHangingSourceDelaysNothingElse(t *testing.T) {
	release := make(chan struct{})
	var hangCalls, fastCalls atomic.Int64
	hanging := SourceFunc(func(ctx context.Context) ([]Sample, error) {
		hangCalls.Add(1)
		<-release // ignores ctx, like a driver call stuck in the kernel
		return nil, nil
	})
	fast := SourceFunc(func(ctx context.Context) ([]Sample, error) {
		n := fastCalls.Add(1)
		return []Sample{{Name: "test_calls", Kind: Counter, Value: float64(n), Time: time.Now()}}, nil
	})

	r := NewRunner(discardLogger(), nil)
	mustAdd(t, r, Registration{Name: "hang", Interval: 20 * time.Millisecond, Timeout: 30 * time.Millisecond, Source: hanging})
	mustAdd(t, r, Registration{Name: "fast", Interval: 10 * time.Millisecond, Source: fast})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() {
		close(release)
		cancel()
		<-done
	}()

	// The fast source keeps its cadence while the other is stuck for good.
	waitFor(t, "fast source to run 20 times", func() bool { return fastCalls.Load() >= 20 })
	snap := r.Snapshot() // returns although a source is stuck: it never waits for hardware
	if v, ok := find(snap, MetricSourceUp, map[string]string{"source": "hang"}); !ok || v != 0 {
		t.Errorf("hanging source up = %v (present %v), want 0", v, ok)
	}
	if v, ok := find(snap, MetricSourceUp, map[string]string{"source": "fast"}); !ok || v != 1 {
		t.Errorf("fast source up = %v (present %v), want 1", v, ok)
	}
	if _, ok := find(snap, "test_calls", nil); !ok {
		t.Error("fast source's sample missing from snapshot")
	}
	// A stuck call is not called again on top of itself.
	if got := hangCalls.Load(); got != 1 {
		t.Errorf("hanging source called %d times while its first call was stuck, want 1", got)
	}
}

func TestRunnerCallsAgainAfterAbandonedCallReturns(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int64
	src := SourceFunc(func(ctx context.Context) ([]Sample, error) {
		if calls.Add(1) == 1 {
			<-release
		}
		return []Sample{{Name: "test_value", Kind: Gauge, Value: 7}}, nil
	})
	r := NewRunner(discardLogger(), nil)
	mustAdd(t, r, Registration{Name: "s", Interval: 10 * time.Millisecond, Timeout: 10 * time.Millisecond, Source: src})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	waitFor(t, "first call to time out", func() bool {
		v, ok := find(r.Snapshot(), MetricSourceUp, nil)
		return ok && v == 0
	})
	close(release)
	waitFor(t, "source to recover", func() bool {
		v, _ := find(r.Snapshot(), "test_value", nil)
		up, _ := find(r.Snapshot(), MetricSourceUp, nil)
		return v == 7 && up == 1
	})
}

func TestRunnerAbsentHardwareLoggedOnceAtInfo(t *testing.T) {
	var logs testenv.LogBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var calls atomic.Int64
	src := SourceFunc(func(ctx context.Context) ([]Sample, error) {
		calls.Add(1)
		return nil, fmt.Errorf("no libnvidia-ml.so.1: %w", ErrAbsent)
	})
	r := NewRunner(logger, nil)
	mustAdd(t, r, Registration{Name: "nvml", Interval: 5 * time.Millisecond, Source: src})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	waitFor(t, "several collections", func() bool { return calls.Load() >= 5 })
	cancel()
	<-done

	out := logs.String()
	if n := strings.Count(out, `msg="hardware absent`); n != 1 {
		t.Errorf("absence logged %d times, want once:\n%s", n, out)
	}
	if strings.Contains(out, "level=ERROR") {
		t.Errorf("absence logged as an error:\n%s", out)
	}
	snap := r.Snapshot()
	if v, _ := find(snap, MetricSourceAbsent, map[string]string{"source": "nvml"}); v != 1 {
		t.Errorf("%s = %v, want 1", MetricSourceAbsent, v)
	}
	if v, _ := find(snap, MetricSourceUp, map[string]string{"source": "nvml"}); v != 0 {
		t.Errorf("%s = %v, want 0", MetricSourceUp, v)
	}
}

func TestRunnerKeepsLastGoodSamplesUntilStale(t *testing.T) {
	var failing atomic.Bool
	src := SourceFunc(func(ctx context.Context) ([]Sample, error) {
		if failing.Load() {
			return nil, errors.New("bmc answered 500")
		}
		return []Sample{{Name: "test_power_watts", Kind: Gauge, Value: 350}}, nil
	})
	r := NewRunner(discardLogger(), nil)
	clock := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	r.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	s := &sourceState{reg: Registration{Name: "bmc", Interval: time.Second, StaleAfter: 3 * time.Second, Source: src}}
	r.sources = append(r.sources, s)

	samples, _ := src.Collect(context.Background())
	r.record(s, samples, nil, time.Millisecond)
	failing.Store(true)
	advance(2 * time.Second)
	r.record(s, nil, errors.New("bmc answered 500"), time.Millisecond)
	if _, ok := find(r.Snapshot(), "test_power_watts", nil); !ok {
		t.Error("last good sample dropped before it went stale")
	}
	advance(2 * time.Second)
	r.record(s, nil, errors.New("bmc answered 500"), time.Millisecond)
	if _, ok := find(r.Snapshot(), "test_power_watts", nil); ok {
		t.Error("sample older than StaleAfter still served")
	}
	want := float64(time.Unix(1_700_000_000, 0).Unix())
	if v, _ := find(r.Snapshot(), MetricSourceLastSuccess, nil); v != want {
		t.Errorf("%s = %v, want %v", MetricSourceLastSuccess, v, want)
	}
}

func TestRunnerAddsTopologyLabels(t *testing.T) {
	src := SourceFunc(func(ctx context.Context) ([]Sample, error) {
		return []Sample{{Name: "test_temp_celsius", Kind: Gauge, Value: 40, Labels: []Label{{"sensor", "t1"}, {"host", "from-source"}}}}, nil
	})
	r := NewRunner(discardLogger(), map[string]string{"site": "dc1", "rack": "r12", "host": "node7", "hall": ""})
	mustAdd(t, r, Registration{Name: "s", Interval: time.Hour, Source: src})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	waitFor(t, "first collection", func() bool { _, ok := find(r.Snapshot(), "test_temp_celsius", nil); return ok })

	for _, s := range r.Snapshot() {
		if s.Name != "test_temp_celsius" {
			continue
		}
		got := fmt.Sprint(s.Labels)
		want := "[{host from-source} {rack r12} {sensor t1} {site dc1}]"
		if got != want {
			t.Errorf("labels = %s, want %s (sorted, source's own host kept, empty hall left out)", got, want)
		}
	}
	if _, ok := find(r.Snapshot(), MetricSourceUp, map[string]string{"site": "dc1", "host": "node7"}); !ok {
		t.Error("self-metrics lack topology labels")
	}
}

func TestRunnerRejectsBadRegistrations(t *testing.T) {
	r := NewRunner(discardLogger(), nil)
	noop := SourceFunc(func(context.Context) ([]Sample, error) { return nil, nil })
	if err := r.Add(Registration{Name: "a", Interval: 0, Source: noop}); err == nil {
		t.Error("zero interval accepted")
	}
	if err := r.Add(Registration{Name: "a", Interval: time.Second}); err == nil {
		t.Error("nil source accepted")
	}
	mustAdd(t, r, Registration{Name: "a", Target: "x", Interval: time.Second, Source: noop})
	if err := r.Add(Registration{Name: "a", Target: "x", Interval: time.Second, Source: noop}); err == nil {
		t.Error("duplicate source and target accepted")
	}
}

func mustAdd(t *testing.T, r *Runner, reg Registration) {
	t.Helper()
	if err := r.Add(reg); err != nil {
		t.Fatal(err)
	}
}

func TestRunnerPublishesSamplesReturnedWithAnError(t *testing.T) {
	r := NewRunner(discardLogger(), nil)
	s := &sourceState{reg: Registration{Name: "bmc", Interval: time.Second, StaleAfter: time.Second}}
	r.sources = append(r.sources, s)
	r.record(s, []Sample{{Name: "test_power_watts", Value: 350}}, nil, time.Millisecond)
	r.record(s, []Sample{{Name: "test_power_watts", Value: 350}, {Name: "test_age_seconds", Value: 20}}, errors.New("bmc hangs"), time.Millisecond)
	snap := r.Snapshot()
	if v, ok := find(snap, "test_age_seconds", nil); !ok || v != 20 {
		t.Errorf("samples returned with an error not published: %v", snap)
	}
	if v, _ := find(snap, MetricSourceUp, nil); v != 0 {
		t.Errorf("source up = %v, want 0 after an error", v)
	}
}

func TestRunnerOnPublishGetsFreshSamplesOnly(t *testing.T) {
	var calls atomic.Int64
	src := SourceFunc(func(context.Context) ([]Sample, error) {
		if calls.Add(1)%2 == 0 {
			return []Sample{{Name: "test_stale"}}, errors.New("failing, last good values")
		}
		return []Sample{{Name: "test_fresh", Value: 1}}, nil
	})
	r := NewRunner(discardLogger(), map[string]string{"host": "n1"})
	var mu sync.Mutex
	var got []string
	r.OnPublish(func(samples []Sample) {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range samples {
			got = append(got, s.Name+fmt.Sprint(s.Labels))
		}
	})
	mustAdd(t, r, Registration{Name: "s", Interval: 5 * time.Millisecond, Source: src})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	waitFor(t, "4 collections", func() bool { return calls.Load() >= 4 })
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	for _, g := range got {
		if g != "test_fresh[{host n1}]" {
			t.Errorf("published %s; want only fresh samples with topology labels", g)
		}
	}
	if len(got) < 2 {
		t.Errorf("published %d times, want at least 2", len(got))
	}
}

// TestRunnerInternsLabelSetsAcrossCollections: equal labels in a later
// collection get the merged set of the earlier one (no new slice), sorted
// input is merged as unsorted input would be, and a set unseen for a
// collection is dropped from the cache.
func TestRunnerInternsLabelSetsAcrossCollections(t *testing.T) {
	r := NewRunner(discardLogger(), map[string]string{"site": "dc1", "host": "n1"})
	s := &sourceState{reg: Registration{Name: "s", Interval: time.Second, Source: SourceFunc(nil)}}
	pass := func(gpus ...string) []Sample {
		var out []Sample
		for _, g := range gpus {
			// Fresh slices each pass, as a source builds them; one sorted, one not.
			out = append(out,
				Sample{Name: "a", Labels: []Label{{"gpu", g}, {"uuid", "GPU-" + g}}},
				Sample{Name: "b", Labels: []Label{{"uuid", "GPU-" + g}, {"gpu", g}}})
		}
		return r.record(s, out, nil, time.Millisecond)
	}
	first := pass("0", "1")
	want := "[{gpu 0} {host n1} {site dc1} {uuid GPU-0}]"
	for _, i := range []int{0, 1} {
		if got := fmt.Sprint(first[i].Labels); got != want {
			t.Errorf("sample %d labels = %s, want %s", i, got, want)
		}
	}
	second := pass("0", "1")
	if &second[0].Labels[0] != &first[0].Labels[0] || &second[2].Labels[0] != &first[2].Labels[0] {
		t.Error("equal labels in the second collection got a new merged slice")
	}
	if n := len(s.labels.sets); n != 4 {
		t.Errorf("cache holds %d sets after two passes over 4 distinct label sets, want 4", n)
	}
	pass("1") // GPU 0's series are gone
	if n := len(s.labels.sets); n != 2 {
		t.Errorf("cache holds %d sets after a pass over 2, want 2 (the unseen dropped)", n)
	}
	third := pass("0")
	if &third[0].Labels[0] == &first[0].Labels[0] {
		t.Error("a set dropped from the cache was served from it")
	}
	if got := fmt.Sprint(third[0].Labels); got != want {
		t.Errorf("labels after re-merge = %s, want %s", got, want)
	}
}
