package exporters

import (
	"context"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/collector"
)

type pointSink struct {
	mu     sync.Mutex
	points []aggregator.Point
}

func (p *pointSink) Write(pts []aggregator.Point) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.points = append(p.points, pts...)
	return nil
}

func (p *pointSink) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.points)
}

// receiver is the aggregator's real ingest handler over a memory sink,
// behind a switch that can take it down.
type receiver struct {
	srv  *httptest.Server
	sink *pointSink
	down atomic.Bool
	seen atomic.Int64
	hook func(w http.ResponseWriter) bool // answers instead of ingest when it returns true
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{sink: &pointSink{}}
	in := aggregator.NewIngest([]string{"tok"}, aggregator.Limits{}, rc.sink, slog.New(slog.DiscardHandler))
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.seen.Add(1)
		if rc.down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		if rc.hook != nil && rc.hook(w) {
			return
		}
		if r.URL.Path != "/api/v2/write" { // as the aggregator's mux
			http.NotFound(w, r)
			return
		}
		in.ServeHTTP(w, r)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func startStream(t *testing.T, url string, mutate ...func(*StreamConfig)) (*Stream, context.CancelFunc, chan struct{}) {
	t.Helper()
	cfg := StreamConfig{Name: "stream", URL: url, Token: "tok", SpoolDir: t.TempDir(), FlushInterval: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, NoSync: true}
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := NewStream(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, cancel, done
}

func samplesAt(n int, at time.Time) []collector.Sample {
	out := make([]collector.Sample, n)
	for i := range out {
		out[i] = collector.Sample{Name: "joules_gpu_power_watts", Kind: collector.Gauge, Value: float64(300 + i),
			Labels: []collector.Label{{Name: "gpu", Value: string(rune('0' + i%8))}, {Name: "host", Value: "n1"}}, Time: at}
	}
	return out
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// flushed reports whether the stream has spooled the batch it was building.
func flushed(s *Stream) func() bool {
	return func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.lines == 0
	}
}

func TestStreamDeliversAndReplaysInOrder(t *testing.T) {
	rc := newReceiver(t)
	s, _, _ := startStream(t, rc.srv.URL)
	t0 := time.UnixMilli(1_800_000_000_000)
	s.Add(samplesAt(8, t0))
	waitUntil(t, "first delivery", func() bool { return rc.sink.count() == 8 })
	waitUntil(t, "first acknowledgement", func() bool { return s.spool.Stats().Batches == 0 })

	rc.down.Store(true)
	for i := 1; i <= 5; i++ {
		s.Add(samplesAt(8, t0.Add(time.Duration(i)*time.Second)))
		waitUntil(t, "a batch of its own", flushed(s))
	}
	waitUntil(t, "spooling while down", func() bool { return s.spool.Stats().Points == 40 })
	before := rc.seen.Load()
	rc.down.Store(false)
	waitUntil(t, "replay", func() bool { return rc.sink.count() == 48 })
	if n := rc.seen.Load() - before; n > 2 { // one refused request may have been in flight
		t.Errorf("the backlog of 5 batches took %d requests, want 1 (gzip members merged)", n)
	}
	rc.sink.mu.Lock()
	defer rc.sink.mu.Unlock()
	for i, p := range rc.sink.points {
		want := t0.Add(time.Duration(i/8) * time.Second)
		if !p.Time.Equal(want) {
			t.Fatalf("point %d has time %v, want %v: replay out of order or timestamps changed", i, p.Time, want)
		}
	}
	// the receiver has the points before the sender has its answer
	waitUntil(t, "acknowledged", func() bool {
		samples, _ := s.Collect(context.Background())
		return value(samples, "joules_stream_sent_points_total") == 48 && value(samples, "joules_spool_points") == 0
	})
}

func value(samples []collector.Sample, name string) float64 {
	for _, s := range samples {
		if s.Name == name {
			return s.Value
		}
	}
	return -1
}

func TestStreamSpoolFullDropsOldestAndCounts(t *testing.T) {
	rc := newReceiver(t)
	rc.down.Store(true)
	s, _, _ := startStream(t, rc.srv.URL, func(c *StreamConfig) { c.SpoolMaxBytes = 2000 })
	t0 := time.UnixMilli(1_800_000_000_000)
	for i := range 40 {
		s.Add(samplesAt(8, t0.Add(time.Duration(i)*time.Second)))
		waitUntil(t, "a batch of its own", flushed(s))
	}
	samples, _ := s.Collect(context.Background())
	if value(samples, "joules_spool_dropped_points_total") <= 0 {
		t.Error("a full spool dropped nothing, or did not count it")
	}
	if b := value(samples, "joules_spool_bytes"); b > 2000 {
		t.Errorf("spool holds %v bytes over its 2000-byte bound", b)
	}
	rc.down.Store(false)
	waitUntil(t, "delivery of what was kept", func() bool { return s.spool.Stats().Batches == 0 })
	rc.sink.mu.Lock()
	first := rc.sink.points[0].Time
	rc.sink.mu.Unlock()
	if first.Equal(t0) {
		t.Error("the oldest batch survived; the newest should have")
	}
}

func TestStreamHonoursRetryAfterAndDropsRejected(t *testing.T) {
	rc := newReceiver(t)
	var throttled atomic.Int64
	var firstTry, retried atomic.Int64
	rc.hook = func(w http.ResponseWriter) bool {
		if throttled.Add(1) == 1 {
			firstTry.Store(time.Now().UnixMilli())
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}
		if retried.Load() == 0 {
			retried.Store(time.Now().UnixMilli())
		}
		return false
	}
	s, _, _ := startStream(t, rc.srv.URL)
	s.Add(samplesAt(8, time.UnixMilli(1_800_000_000_000)))
	waitUntil(t, "delivery after throttling", func() bool { return rc.sink.count() == 8 })
	if gap := retried.Load() - firstTry.Load(); gap < 950 {
		t.Errorf("retried %d ms after a 429 with Retry-After: 1", gap)
	}
	// A batch the server refuses as malformed is not retried forever.
	rc.hook = func(w http.ResponseWriter) bool {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"code":"invalid","message":"unable to parse 'x': missing fields"}`))
		return true
	}
	s.Add(samplesAt(8, time.UnixMilli(1_800_000_001_000)))
	waitUntil(t, "the refused batch to be dropped", func() bool {
		samples, _ := s.Collect(context.Background())
		return value(samples, "joules_stream_rejected_batches_total") == 1 && s.spool.Stats().Batches == 0
	})
}

func TestStreamWrongTokenKeepsRetrying(t *testing.T) {
	rc := newReceiver(t)
	s, _, _ := startStream(t, rc.srv.URL, func(c *StreamConfig) { c.Token = "wrong" })
	s.Add(samplesAt(8, time.UnixMilli(1_800_000_000_000)))
	waitUntil(t, "a few refused tries", func() bool { return rc.seen.Load() >= 3 })
	if st := s.spool.Stats(); st.Points != 8 {
		t.Errorf("spool holds %d points, want the 8 refused ones kept for a fixed token", st.Points)
	}
	samples, _ := s.Collect(context.Background())
	for _, smp := range samples {
		if smp.Name == "joules_stream_send_failures_total" && smp.Labels[0].Value == "auth" && smp.Value < 1 {
			t.Error("auth failures not counted")
		}
	}
}

func TestStreamVerifiesTLS(t *testing.T) {
	sink := &pointSink{}
	in := aggregator.NewIngest([]string{"tok"}, aggregator.Limits{}, sink, slog.New(slog.DiscardHandler))
	srv := httptest.NewTLSServer(in)
	defer srv.Close()
	ca := t.TempDir() + "/ca.pem"
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _, _ := startStream(t, srv.URL, func(c *StreamConfig) { c.CAFile = ca })
	s.Add(samplesAt(8, time.UnixMilli(1_800_000_000_000)))
	waitUntil(t, "delivery over verified TLS", func() bool { return sink.count() == 8 })

	untrusted, _, _ := startStream(t, srv.URL)
	untrusted.Add(samplesAt(8, time.UnixMilli(1_800_000_000_000)))
	waitUntil(t, "a refused handshake", func() bool {
		samples, _ := untrusted.Collect(context.Background())
		for _, smp := range samples {
			if smp.Name == "joules_stream_send_failures_total" && smp.Labels[0].Value == "connection" {
				return smp.Value >= 1
			}
		}
		return false
	})
	if st := untrusted.spool.Stats(); st.Points != 8 || sink.count() != 8 {
		t.Errorf("a server whose certificate is not trusted got the points (spool holds %d, server %d)", st.Points, sink.count())
	}
}
