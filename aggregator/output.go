package aggregator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"
	influxhttp "github.com/influxdata/influxdb-client-go/v2/api/http"
	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/joules-energy/joules/internal/spool"
)

// OutputConfig configures the InfluxDB output.
type OutputConfig struct {
	URL, Org, Bucket, Token string
	SpoolDir                string
	SpoolMaxBytes           int64
	BatchBytes              int           // merge spooled requests into writes of up to this many bytes (default 1 MiB)
	Timeout                 time.Duration // one write (default 10 s)
	DeadLetterFile          string        // lines InfluxDB refused for good (4xx), with the reason
	NoSync                  bool          // tests only
	DrainTimeout            time.Duration // how long shutdown keeps sending (default 5 s)
}

// Output makes accepted points durable in a disk spool (group commit: many
// requests, one fsync) and writes them to InfluxDB through
// influxdb-client-go in order, retrying while InfluxDB is unreachable.
type Output struct {
	cfg    OutputConfig
	log    *slog.Logger
	spool  *spool.Spool
	client influxdb2.Client
	write  [lineprotocol.Second + 1]api.WriteAPIBlocking // one per precision

	commits chan commit
	beat    atomic.Int64 // unix nanoseconds of the commit loop's last turn

	Written, Retries, DeadLettered, SpoolDropped atomic.Int64
	// Latency is, per accepted request, the time from its oldest sample to
	// its write into InfluxDB.
	Latency Quantiles
	deadMu  sync.Mutex
}

// Quantiles keeps the last 4,096 observations for p50 and p99.
type Quantiles struct {
	mu   sync.Mutex
	ring [4096]time.Duration
	n    int
}

// Observe adds one observation.
func (q *Quantiles) Observe(d time.Duration) {
	q.mu.Lock()
	q.ring[q.n%len(q.ring)] = d
	q.n++
	q.mu.Unlock()
}

// Quantile returns the φ-quantile of the kept observations, and how many there are.
func (q *Quantiles) Quantile(phi float64) (time.Duration, int) {
	q.mu.Lock()
	n := min(q.n, len(q.ring))
	vals := append([]time.Duration(nil), q.ring[:n]...)
	q.mu.Unlock()
	if n == 0 {
		return 0, 0
	}
	slices.Sort(vals)
	return vals[min(n-1, int(phi*float64(n)))], n
}

type commit struct {
	data   []byte
	points int
	prec   lineprotocol.Precision // of data's timestamps
	oldest time.Time              // the request's oldest sample: delivery latency runs from it
	done   chan error
}

// NewOutput opens the spool; Run sends it.
func NewOutput(cfg OutputConfig, logger *slog.Logger) (*Output, error) {
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = 1 << 20
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 5 * time.Second
	}
	sp, err := spool.Open(cfg.SpoolDir, spool.Options{MaxBytes: cfg.SpoolMaxBytes, NoSync: cfg.NoSync})
	if err != nil {
		return nil, fmt.Errorf("output spool: %w", err)
	}
	opts := influxdb2.DefaultOptions().SetHTTPRequestTimeout(uint(cfg.Timeout.Seconds())).SetUseGZip(true).SetMaxRetries(0)
	client := influxdb2.NewClientWithOptions(cfg.URL, cfg.Token, opts)
	// One writer per precision: a request body is spooled as received,
	// with its precision, and sent with it.
	o := &Output{cfg: cfg, log: logger, spool: sp, client: client, commits: make(chan commit, 1024)}
	for p := range o.write {
		wo := *opts.WriteOptions()
		o.write[p] = api.NewWriteAPIBlocking(cfg.Org, cfg.Bucket, client.HTTPService(), wo.SetPrecision(lineprotocol.Precision(p).Duration()))
	}
	return o, nil
}

// Write encodes points and returns once they are spooled to disk.
func (o *Output) Write(points []Point) error {
	var enc lineprotocol.Encoder
	n, err := encode(&enc, points)
	if err != nil {
		dropped := len(points) - n
		o.DeadLettered.Add(int64(dropped))
		o.log.Error("points that cannot be written as line protocol are dropped", "points", dropped, "first", err)
	}
	if n == 0 {
		return nil
	}
	return o.commit(enc.Bytes(), n, lineprotocol.Nanosecond, oldestTime(points))
}

// WriteLines spools lines as they are, n points at precision prec, and
// returns once they are on disk: a request body that needs no rewriting
// costs no re-encoding.
func (o *Output) WriteLines(lines []byte, n int, prec lineprotocol.Precision, oldest time.Time) error {
	return o.commit(lines, n, prec, oldest)
}

func (o *Output) commit(data []byte, n int, prec lineprotocol.Precision, oldest time.Time) error {
	c := commit{data: data, points: n, prec: prec, oldest: oldest, done: make(chan error, 1)}
	o.commits <- c
	return <-c.done
}

func oldestTime(points []Point) time.Time {
	oldest := points[0].Time
	for _, p := range points[1:] {
		if p.Time.Before(oldest) {
			oldest = p.Time
		}
	}
	return oldest
}

// Run commits spooled writes and sends the spool to InfluxDB until ctx ends;
// it then commits what is pending, so acknowledged points are never lost.
//
// On shutdown it keeps sending for up to DrainTimeout (default 5 s) so the
// spool is left empty when InfluxDB is reachable; what remains is sent
// after the next start.
func (o *Output) Run(ctx context.Context) {
	sendCtx, stopSending := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		o.send(sendCtx)
	}()
	heartbeat := time.NewTicker(time.Second)
	defer heartbeat.Stop()
	for {
		o.beat.Store(time.Now().UnixNano())
		select {
		case c := <-o.commits:
			o.commitGroup(c)
			continue
		case <-heartbeat.C:
			continue
		case <-ctx.Done():
		}
		break
	}
	for drained := false; !drained; {
		select {
		case c := <-o.commits:
			o.commitGroup(c)
		default:
			drained = true
		}
	}
	deadline := time.Now().Add(o.cfg.DrainTimeout)
	for o.spool.Stats().Batches > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := o.spool.Stats(); st.Batches > 0 {
		o.log.Info("points left in the output spool for the next start", "points", st.Points)
	}
	stopSending()
	wg.Wait()
	o.client.Close()
	if err := o.spool.Close(); err != nil {
		o.log.Warn("closing the output spool", "err", err)
	}
}

// commitGroup spools c and every write already waiting, with one fsync.
func (o *Output) commitGroup(first commit) {
	group := []commit{first}
	for len(group) < 256 {
		select {
		case c := <-o.commits:
			group = append(group, c)
			continue
		default:
		}
		break
	}
	entries := make([]spool.Entry, len(group))
	oldest := group[0].oldest
	for i, c := range group {
		entries[i] = spool.Entry{Data: c.data, Points: c.points, Tag: byte(c.prec)}
		if c.oldest.Before(oldest) {
			oldest = c.oldest
		}
	}
	dropped, err := o.spool.AppendMany(entries, oldest)
	if dropped.Batches > 0 {
		o.SpoolDropped.Add(int64(dropped.Points))
		o.log.Warn("output spool full: dropped the oldest points", "points", dropped.Points, "batches", dropped.Batches)
	}
	for _, c := range group {
		c.done <- err
	}
}

// send writes the spool to InfluxDB in order.
func (o *Output) send(ctx context.Context) {
	backoff := time.Second
	failing := false
	for ctx.Err() == nil {
		batches, err := o.spool.PeekMany(o.cfg.BatchBytes)
		if err != nil {
			o.log.Error("output spool read failed", "err", err)
		}
		if len(batches) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		// One write holds one precision: stop at the first batch of another.
		for i, b := range batches {
			if b.Tag != batches[0].Tag {
				batches = batches[:i]
				break
			}
		}
		prec, ok := tagPrecision(batches[0].Tag)
		if !ok {
			// Written by a later version: nothing here can send it right.
			o.log.Error("output spool batch of an unknown precision is dropped", "tag", batches[0].Tag, "points", batches[0].Points)
			o.DeadLettered.Add(int64(batches[0].Points))
			if err := o.spool.Ack(batches[0].Index); err != nil {
				o.log.Error("output spool acknowledge failed", "err", err)
			}
			continue
		}
		lines := make([]string, len(batches))
		points := 0
		for i, b := range batches {
			// Zero-copy: the spool hands out a fresh copy of each batch.
			lines[i] = unsafe.String(unsafe.SliceData(b.Data), len(b.Data))
			points += b.Points
		}
		wait, err := o.deliver(ctx, prec, lines)
		if err == nil {
			if err := o.spool.Ack(batches[len(batches)-1].Index); err != nil {
				o.log.Error("output spool acknowledge failed", "err", err)
			}
			o.Written.Add(int64(points))
			now := time.Now()
			for _, b := range batches {
				o.Latency.Observe(now.Sub(b.Created))
			}
			if failing {
				o.log.Info("InfluxDB writes resumed")
			}
			failing, backoff = false, time.Second
			continue
		}
		o.Retries.Add(1)
		if !failing {
			o.log.Warn("InfluxDB write failing; points stay spooled and are retried", "err", err)
		}
		failing = true
		if wait <= 0 {
			wait = backoff
			backoff = min(2*backoff, 30*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// deliver writes lines; 413 splits them in halves; 401, 403 and 404 are
// the configuration's and retried; other 4xx go to the dead-letter file.
// A nil error means done with; otherwise retry after wait.
func (o *Output) deliver(ctx context.Context, prec lineprotocol.Precision, batches []string) (time.Duration, error) {
	err := o.write[prec].WriteRecord(ctx, batches...)
	if err == nil {
		return 0, nil
	}
	var he *influxhttp.Error
	if !errors.As(err, &he) {
		return 0, err
	}
	lines := []byte(strings.Join(batches, "\n"))
	switch {
	case he.StatusCode == http.StatusTooManyRequests || he.StatusCode == http.StatusServiceUnavailable:
		return time.Duration(he.RetryAfter) * time.Second, err
	case he.StatusCode == http.StatusUnauthorized || he.StatusCode == http.StatusForbidden || he.StatusCode == http.StatusNotFound:
		// A wrong token, org or bucket, or a database not created yet:
		// every write would be refused alike, and none of it is the
		// points' fault. They stay spooled until it is fixed.
		return 0, fmt.Errorf("%w; check influx.token, influx.org and influx.bucket (InfluxDB 1.8: the bucket is database/retention-policy and the database must exist); the points stay spooled and are retried", err)
	case he.StatusCode == http.StatusRequestEntityTooLarge:
		half := splitLines(lines)
		if half == 0 {
			o.deadLetter(lines, prec, err)
			return 0, nil
		}
		if wait, err := o.deliver(ctx, prec, []string{string(lines[:half])}); err != nil {
			return wait, err
		}
		return o.deliver(ctx, prec, []string{string(lines[half:])})
	case he.StatusCode >= 400 && he.StatusCode < 500:
		o.deadLetter(lines, prec, err)
		return 0, nil
	}
	return 0, err
}

// splitLines returns the offset of the line boundary nearest the middle, or 0.
func splitLines(lines []byte) int {
	mid := len(lines) / 2
	for i := mid; i < len(lines)-1; i++ {
		if lines[i] == '\n' {
			return i + 1
		}
	}
	for i := mid; i > 0; i-- {
		if lines[i-1] == '\n' {
			return i
		}
	}
	return 0
}

// deadLetter keeps lines InfluxDB refused for good, with the reason and
// the precision of their timestamps.
func (o *Output) deadLetter(lines []byte, prec lineprotocol.Precision, reason error) {
	// Bodies stored as received may hold blank lines and lack a final
	// newline: count the lines that are points, and end the block.
	n := 0
	for line := range bytes.Lines(lines) {
		if line = bytes.TrimLeft(line, " \t"); len(bytes.TrimSpace(line)) > 0 && line[0] != '#' {
			n++
		}
	}
	if len(lines) > 0 && lines[len(lines)-1] != '\n' {
		lines = append(lines, '\n')
	}
	o.DeadLettered.Add(int64(n))
	o.log.Error("InfluxDB refused lines for good; they go to the dead-letter file", "lines", n, "file", o.cfg.DeadLetterFile, "err", reason)
	if o.cfg.DeadLetterFile == "" {
		return
	}
	o.deadMu.Lock()
	defer o.deadMu.Unlock()
	f, err := os.OpenFile(o.cfg.DeadLetterFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		o.log.Error("cannot open the dead-letter file", "err", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "# %s precision=%s %s\n%s", time.Now().UTC().Format(time.RFC3339), precisionNames[prec], reason, lines)
}

// Alive reports whether the commit loop turned in the last 30 s: requests
// wait on it, so a stuck loop means a stuck aggregator.
func (o *Output) Alive() bool {
	return time.Since(time.Unix(0, o.beat.Load())) < 30*time.Second
}

// Mark is a position in the output: every write that returned before it
// was taken lies below it.
func (o *Output) Mark() uint64 {
	_, next := o.spool.Bounds()
	return next
}

// Delivered says whether every write below mark has left the spool: sent
// to InfluxDB, or dead-lettered or dropped and counted so.
func (o *Output) Delivered(mark uint64) bool {
	first, _ := o.spool.Bounds()
	return first >= mark
}

// SpoolStats is the output spool's state.
func (o *Output) SpoolStats() spool.Stats { return o.spool.Stats() }

// The spool keeps a batch's precision in its tag: the precision's own
// value, so 0, the tag of batches spooled before tags existed, is
// nanoseconds, as those batches were.
func tagPrecision(tag byte) (lineprotocol.Precision, bool) {
	p := lineprotocol.Precision(tag)
	return p, p <= lineprotocol.Second
}
