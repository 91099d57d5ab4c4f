package exporters

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/internal/spool"
)

// StreamConfig configures a writer to the InfluxDB v2 write API: the
// aggregator's, or InfluxDB's own.
type StreamConfig struct {
	Name string // "stream" or "influx": the target label of its metrics
	// URL is the server's base URL (https://agg.example:9561), or the same
	// ending in /api/v2/write; the writer posts to <base>/api/v2/write.
	URL                string
	Org, Bucket        string // InfluxDB 2.x org and bucket; 1.8 takes bucket "db/rp"
	Token              string // sent as "Authorization: Token …"; read from a file by the caller
	CAFile             string
	CertFile, KeyFile  string // client certificate, optional
	InsecureSkipVerify bool
	SpoolDir           string
	SpoolMaxBytes      int64
	BatchLines         int           // flush a batch at this many lines (default 5,000)
	FlushInterval      time.Duration // and at least this often (default 1 s)
	Timeout            time.Duration // one POST (default 10 s)
	NoSync             bool          // tests only
	MaxBackoff         time.Duration // between failed sends (default 30 s)
	DrainTimeout       time.Duration // how long shutdown keeps sending (default 5 s)

	transport http.RoundTripper // tests only: an in-memory server
}

func (c *StreamConfig) defaults() {
	if c.BatchLines <= 0 {
		c.BatchLines = 5000
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 5 * time.Second
	}
}

// Stream batches samples as line protocol, spools every batch to disk
// before sending it, and removes it only when the server acknowledged it.
// After an outage the spool is replayed in order, with the original
// timestamps. Delivery is at least once.
type Stream struct {
	cfg    StreamConfig
	log    *slog.Logger
	spool  *spool.Spool
	client *http.Client
	write  string // the write URL with its query
	shown  string // the write URL as logged: no query, no password

	mu      sync.Mutex
	enc     lineprotocol.Encoder
	lines   int
	started time.Time // of the batch being built
	wake    chan struct{}
	// zw and zbuf are reused by every flush: a gzip writer is some hundreds
	// of KB, and making one a second was most of the stream's garbage.
	zw   *gzip.Writer
	zbuf bytes.Buffer

	stats streamStats
}

type streamStats struct {
	mu              sync.Mutex
	producedPoints  float64
	sentPoints      float64
	sentBatches     float64
	failures        map[string]float64
	droppedFull     float64
	rejectedBatches float64
	lastSend        time.Duration
	lastSuccess     time.Time
	up              bool // the last send was answered by the write API
}

// NewStream opens the spool and prepares the HTTP client.
func NewStream(cfg StreamConfig, logger *slog.Logger) (*Stream, error) {
	cfg.defaults()
	u, err := WriteURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("exporters.%s: %w", cfg.Name, err)
	}
	shown := u.Redacted()
	u.RawQuery = writeQuery(cfg).Encode()
	client, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	sp, err := spool.Open(cfg.SpoolDir, spool.Options{MaxBytes: cfg.SpoolMaxBytes, NoSync: cfg.NoSync})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	if st := sp.Stats(); st.Batches > 0 {
		logger.Info("spool holds batches from before; replaying them first", "batches", st.Batches, "points", st.Points, "oldest", st.Oldest)
	}
	s := &Stream{
		cfg: cfg, log: logger, spool: sp, write: u.String(), shown: shown, wake: make(chan struct{}, 1),
		client: client, stats: streamStats{failures: map[string]float64{}},
	}
	s.enc.SetPrecision(lineprotocol.Millisecond)
	return s, nil
}

// Add encodes samples into the batch being built; a full batch is spooled
// at once. It is the runner's publish hook, so it must stay quick.
func (s *Stream) Add(samples []collector.Sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lines == 0 {
		s.started = time.Now()
	}
	n := AppendLines(&s.enc, samples)
	s.lines += n
	s.stats.add(func(st *streamStats) { st.producedPoints += float64(n) })
	if s.lines >= s.cfg.BatchLines {
		s.flushLocked()
	}
}

// flushLocked gzips the batch being built and spools it; call with s.mu held.
func (s *Stream) flushLocked() {
	if s.lines == 0 {
		return
	}
	s.zbuf.Reset()
	if s.zw == nil {
		s.zw, _ = gzip.NewWriterLevel(&s.zbuf, gzip.BestSpeed)
	} else {
		s.zw.Reset(&s.zbuf)
	}
	_, _ = s.zw.Write(s.enc.Bytes())
	_ = s.zw.Close()
	// Append copies the batch, so zbuf is free again once it returns.
	dropped, err := s.spool.Append(s.zbuf.Bytes(), s.lines, s.started)
	if err != nil {
		s.log.Error("cannot spool a batch; its points are lost", "points", s.lines, "err", err)
		s.stats.add(func(st *streamStats) { st.failures["spool"]++ })
	}
	if dropped.Batches > 0 {
		s.log.Warn("spool full: dropped the oldest batches", "batches", dropped.Batches, "points", dropped.Points, "max_bytes", s.cfg.SpoolMaxBytes)
		s.stats.add(func(st *streamStats) { st.droppedFull += float64(dropped.Points) })
	}
	s.enc.Reset()
	s.lines = 0
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (st *streamStats) add(f func(*streamStats)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	f(st)
}

// Run flushes batches every FlushInterval and sends the spool, oldest batch
// first, until ctx ends. It then spools what is still being built and keeps
// sending for up to DrainTimeout, so a clean shutdown with the server up
// leaves nothing behind; what remains is sent after the next start.
func (s *Stream) Run(ctx context.Context) {
	sendCtx, stopSending := context.WithCancel(context.Background())
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		s.send(sendCtx)
	}()
	ticker := time.NewTicker(s.cfg.FlushInterval)
	defer ticker.Stop()
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case <-ticker.C:
			s.mu.Lock()
			s.flushLocked()
			s.mu.Unlock()
		}
	}
	s.mu.Lock()
	s.flushLocked()
	s.mu.Unlock()
	deadline := time.Now().Add(s.cfg.DrainTimeout)
	for s.spool.Stats().Batches > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	stopSending()
	<-sent
	st := s.spool.Stats()
	s.stats.mu.Lock()
	s.log.Info("exporter stopped", "produced_points", s.stats.producedPoints, "sent_points", s.stats.sentPoints, "spooled_points", st.Points)
	s.stats.mu.Unlock()
	if err := s.spool.Close(); err != nil {
		s.log.Warn("closing the spool", "err", err)
	}
}

// send delivers spooled batches in order, with backoff on failure.
func (s *Stream) send(ctx context.Context) {
	backoff := min(time.Second, s.cfg.MaxBackoff)
	failing := false
	var toldConfig time.Time // when a configuration error was last logged
	for {
		// A backlog (after an outage) goes several spooled batches a
		// request: gzip members concatenate into one valid gzip body, so a
		// replay is not held to one batch per request by the server's rate
		// limit.
		batches, err := s.spool.PeekMany(maxRequestBytes)
		if err != nil {
			s.log.Error("spool read failed", "err", err)
		}
		b, ok := merge(batches)
		if !ok || err != nil {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			case <-time.After(s.cfg.FlushInterval):
			}
			continue
		}
		wait, err := s.post(ctx, b, len(batches))
		if err == nil {
			if ackErr := s.spool.Ack(b.Index); ackErr != nil {
				s.log.Error("spool acknowledge failed", "err", ackErr)
			}
			if failing {
				s.log.Info("delivery resumed", "target", s.shown)
			}
			failing, backoff, toldConfig = false, min(time.Second, s.cfg.MaxBackoff), time.Time{}
			continue
		}
		// A URL that reaches no write API is an operator's to fix: said as
		// an error until it is, often enough to be seen, seldom enough to
		// be read. An outage is said once.
		var cfgErr *ConfigError
		switch {
		case errors.As(err, &cfgErr) && (toldConfig.IsZero() || time.Since(toldConfig) >= configErrorEvery):
			s.log.Error("the url does not reach an InfluxDB v2 write API; points stay spooled until it is fixed and the agent restarted",
				"url", s.shown, "answer", cfgErr.Status, "fix", cfgErr.Fix, "spooled_points", s.spool.Stats().Points)
			toldConfig = time.Now()
		case !failing && cfgErr == nil:
			s.log.Warn("delivery failing; the batch stays spooled and is retried", "target", s.shown, "err", err)
		}
		failing = true
		if wait <= 0 {
			wait = backoff
			backoff = min(2*backoff, s.cfg.MaxBackoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// configErrorEvery is how often a configuration error is logged again.
const configErrorEvery = time.Minute

// maxRequestBytes bounds a request of merged batches (gzipped): well under
// the aggregator's 16 MiB body limit, and its decompressed limit.
const maxRequestBytes = 4 << 20

// merge makes one request body of spooled batches: their gzip members one
// after the other, their points added, the last one's index to
// acknowledge.
func merge(batches []spool.Batch) (spool.Batch, bool) {
	switch len(batches) {
	case 0:
		return spool.Batch{}, false
	case 1:
		return batches[0], true
	}
	m := spool.Batch{Index: batches[len(batches)-1].Index, Created: batches[0].Created}
	size := 0
	for _, b := range batches {
		size += len(b.Data)
	}
	m.Data = make([]byte, 0, size)
	for _, b := range batches {
		m.Data = append(m.Data, b.Data...)
		m.Points += b.Points
	}
	return m, true
}

// post sends one batch. A nil error means the batch is done with (delivered,
// or rejected by the server for good and counted); otherwise it is retried
// after the returned wait (0: the caller's backoff).
func (s *Stream) post(ctx context.Context, b spool.Batch, batches int) (time.Duration, error) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.write, bytes.NewReader(b.Data))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	req.Header.Set("Content-Encoding", "gzip")
	if s.cfg.Token != "" {
		req.Header.Set("Authorization", "Token "+s.cfg.Token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.stats.add(func(st *streamStats) { st.failures["connection"]++; st.up = false })
		return 0, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	elapsed := time.Since(start)
	v, err := judge(s.cfg.Name, resp, body)
	s.stats.add(func(st *streamStats) { st.up = v == delivered || v == rejected })
	switch v {
	case delivered:
		s.stats.add(func(st *streamStats) {
			st.sentPoints += float64(b.Points)
			st.sentBatches += float64(batches)
			st.lastSend = elapsed
			st.lastSuccess = time.Now()
		})
		return 0, nil
	case rejected:
		// The server kept the good lines and refused the rest for good:
		// sending it again would not change that.
		s.log.Warn("server refused lines of a batch; the good lines were kept", "err", err)
		s.stats.add(func(st *streamStats) { st.rejectedBatches += float64(batches) })
		return 0, nil
	case throttled:
		s.stats.add(func(st *streamStats) { st.failures["throttled"]++ })
		return retryAfter(resp.Header.Get("Retry-After")), err
	case unauthorized:
		s.stats.add(func(st *streamStats) { st.failures["auth"]++ })
		return 0, err
	case misconfigured:
		s.stats.add(func(st *streamStats) { st.failures["misconfigured"]++ })
		return 0, err
	default:
		s.stats.add(func(st *streamStats) { st.failures["server_error"]++ })
		return 0, err
	}
}

// retryAfter reads a Retry-After header in seconds (HTTP dates are rare from
// InfluxDB and the aggregator; they fall back to the caller's backoff).
func retryAfter(h string) time.Duration {
	if secs, err := strconv.Atoi(h); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	return 0
}

// Collect reports the writer's own state as samples (it is registered as a
// runner source so they reach /metrics and the stream itself).
func (s *Stream) Collect(context.Context) ([]collector.Sample, error) {
	now := time.Now()
	sp := s.spool.Stats()
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	target := []collector.Label{{Name: "target", Value: s.cfg.Name}}
	g := func(name, help string, v float64, extra ...collector.Label) collector.Sample {
		ls := append(append([]collector.Label{}, target...), extra...)
		collector.SortLabels(ls)
		return collector.Sample{Name: name, Help: help, Kind: collector.Gauge, Value: v, Labels: ls, Time: now}
	}
	c := func(name, help string, v float64, extra ...collector.Label) collector.Sample {
		smp := g(name, help, v, extra...)
		smp.Kind = collector.Counter
		return smp
	}
	out := []collector.Sample{
		g("joules_spool_batches", "Batches waiting in the spool.", float64(sp.Batches)),
		g("joules_spool_points", "Points waiting in the spool.", float64(sp.Points)),
		g("joules_spool_bytes", "Bytes the spool holds (gzipped line protocol).", float64(sp.Bytes)),
		c("joules_spool_dropped_points_total", "Points dropped because the spool was full (oldest first).", s.stats.droppedFull),
		c("joules_spool_corrupt_batches_total", "Spooled batches skipped because their checksum failed.", float64(sp.Corrupt)),
		c("joules_stream_produced_points_total", "Points encoded for sending.", s.stats.producedPoints),
		c("joules_stream_sent_points_total", "Points delivered and acknowledged.", s.stats.sentPoints),
		c("joules_stream_sent_batches_total", "Batches delivered and acknowledged.", s.stats.sentBatches),
		c("joules_stream_rejected_batches_total", "Batches the server answered 400: its bad lines were dropped there, the good ones kept.", s.stats.rejectedBatches),
		g("joules_stream_send_duration_seconds", "Duration of the last successful send.", s.stats.lastSend.Seconds()),
	}
	age := 0.0
	if !sp.Oldest.IsZero() {
		age = now.Sub(sp.Oldest).Seconds()
	}
	out = append(out, g("joules_spool_oldest_age_seconds", "Age of the oldest spooled batch: how far delivery is behind.", age))
	up := 0.0
	if s.stats.up {
		up = 1
	}
	out = append(out, g("joules_stream_up", "Whether the writer's last send was taken by the write API (0 from the start until the first delivery).", up))
	for _, reason := range []string{"connection", "auth", "throttled", "misconfigured", "server_error", "spool"} {
		out = append(out, c("joules_stream_send_failures_total", "Failed sends by reason; the batch stays spooled and is retried.", s.stats.failures[reason], collector.Label{Name: "reason", Value: reason}))
	}
	if !s.stats.lastSuccess.IsZero() {
		out = append(out, g("joules_stream_last_success_timestamp_seconds", "When a batch was last delivered.", float64(s.stats.lastSuccess.UnixNano())/1e9))
	}
	return out, nil
}
