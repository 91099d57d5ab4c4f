package cluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
	"go.uber.org/goleak"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/aggregator/accounting"
	"github.com/joules-energy/joules/cluster/clustertest"
	"github.com/joules-energy/joules/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*Server).Start.func1"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*stream).internalLoop"),
		// nats.go 1.55's async publish starts this for every reply
		// subscription and may leave it waiting on a nil channel when the
		// subscription is cleaned up first (the object store's Put does it
		// on every call): the client's, not ours.
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect"))
}

// memOut is an output in memory: raw lines, or derived points by key
// (the last write of a key wins, as in InfluxDB).
type memOut struct {
	mu      sync.Mutex
	lines   map[string]int // raw line → times written
	derived map[string]string
	n       uint64
}

func newMemOut() *memOut { return &memOut{lines: map[string]int{}, derived: map[string]string{}} }

func (o *memOut) WriteLines(lines []byte, _ int, _ lineprotocol.Precision, _ time.Time) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for l := range bytes.SplitSeq(bytes.TrimSpace(lines), []byte{'\n'}) {
		o.lines[string(l)]++
	}
	o.n++
	return nil
}

func (o *memOut) Write(points []aggregator.Point) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, v := range keyed(points) {
		o.derived[k] = v
	}
	o.n++
	return nil
}

func (o *memOut) Mark() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n
}

func (o *memOut) Delivered(uint64) bool { return true }

func (o *memOut) derivedCopy() map[string]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.derived)
}

func (o *memOut) rawCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.lines)
}

// keyed maps each point's measurement, tags and time to its fields.
func keyed(points []aggregator.Point) map[string]string {
	out := map[string]string{}
	for _, p := range points {
		var k, v strings.Builder
		k.WriteString(p.Measurement)
		for _, t := range p.Tags {
			fmt.Fprintf(&k, ",%s=%s", t.Key, t.Value)
		}
		fmt.Fprintf(&k, " %d", p.Time.UnixNano())
		for _, f := range p.Fields {
			fmt.Fprintf(&v, "%s=%v ", f.Key, f.Value.Interface())
		}
		out[k.String()] = v.String()
	}
	return out
}

var testAccounting = accounting.Config{Window: time.Minute, Grace: 2 * time.Second, MaxLateness: time.Hour,
	Meters: []accounting.Meter{{BMC: "ups", Site: "s1"}}}

// pastHour is where a test's recorded input starts: at the start of the
// last hour, so that the hour's window is closed (and the day's in the
// same state) for one process and for the tier alike, whenever in the
// hour the test runs; just after an hour has begun, the hour before.
func pastHour(now time.Time) time.Time {
	h := now.Truncate(time.Hour)
	if now.Sub(h) < 10*time.Second {
		h = h.Add(-time.Hour)
	}
	return h.Add(-time.Hour)
}

// oneProcess is what a single aggregator derives from the batches.
func oneProcess(t *testing.T, batches [][]byte, now time.Time) (map[string]string, int) {
	t.Helper()
	points, lines, err := clustertest.OneProcess(testAccounting, batches, now)
	if err != nil {
		t.Fatal(err)
	}
	return keyed(points), lines
}

// tier is a tier on a NATS cluster, built member by member.
type tier struct {
	t      *testing.T
	nats   *testenv.NATSCluster
	cfg    Config
	ctx    context.Context
	raw    *memOut
	derive *memOut
	stops  []func()
}

func newTier(t *testing.T, nats *testenv.NATSCluster, partitions int) *tier {
	cfg := Config{URLs: nats.URLs(), Partitions: partitions, Replicas: 3, Lease: 3 * time.Second, RollupWait: time.Minute,
		CheckpointEvery: time.Second, Accounting: testAccounting, Logger: slog.New(slog.DiscardHandler)}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr := &tier{t: t, nats: nats, cfg: cfg, ctx: ctx, raw: newMemOut(), derive: newMemOut()}
	t.Cleanup(func() {
		for _, s := range slices.Backward(tr.stops) {
			s()
		}
		cancel()
	})
	return tr
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (tr *tier) conn(name string) *Conn {
	cfg := tr.cfg
	cfg.Name = name
	c, err := Connect(tr.ctx, cfg)
	if err != nil {
		tr.t.Fatal(err)
	}
	tr.stops = append(tr.stops, c.Close)
	return c
}

// ingest starts an ingest replica and returns its write URL.
func (tr *tier) ingest(name string) (*httptest.Server, *Publisher) {
	pub := NewPublisher(tr.conn(name))
	in := aggregator.NewIngest([]string{"tok"}, aggregator.Limits{}, pub, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(in)
	tr.stops = append(tr.stops, srv.Close)
	return srv, pub
}

// run starts a goroutine member and returns a function that stops it.
func (tr *tier) run(f func(ctx context.Context)) func() {
	ctx, cancel := context.WithCancel(tr.ctx)
	done := make(chan struct{})
	go func() { defer close(done); f(ctx) }()
	stop := func() {
		cancel()
		<-done
	}
	tr.stops = append(tr.stops, stop)
	return stop
}

func (tr *tier) worker(name string) (*Worker, func()) {
	w := NewWorker(tr.conn(name), tr.raw)
	return w, tr.run(w.Run)
}

func (tr *tier) rollup(name string) (*Rollup, func()) {
	r := NewRollup(tr.conn(name), tr.derive)
	return r, tr.run(r.Run)
}

func post(t *testing.T, url string, body []byte) int {
	t.Helper()
	return postAt(t, url, body, "ns")
}

// postAt posts lines whose timestamps are at precision prec.
func postAt(t *testing.T, url string, body []byte, prec string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/api/v2/write?precision="+prec, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Token tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// inMillis rewrites nanosecond timestamps (whole milliseconds) as
// milliseconds.
func inMillis(t *testing.T, body []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	for line := range bytes.Lines(body) {
		line = bytes.TrimSuffix(line, []byte{'\n'})
		i := bytes.LastIndexByte(line, ' ')
		ns, err := strconv.ParseInt(string(line[i+1:]), 10, 64)
		if err != nil || ns%1e6 != 0 {
			t.Fatalf("%q: not a whole-millisecond timestamp", line)
		}
		fmt.Fprintf(&out, "%s %d\n", line[:i], ns/1e6)
	}
	return out.Bytes()
}

// sameAs waits until the tier has derived every key one process did, then
// compares the values, and finds nothing else.
func (tr *tier) sameAs(want map[string]string, within time.Duration) { tr.compare(want, within, false) }

// compare is sameAs; with revised, the tier may also have written points
// that a window's revision no longer has (a window closed before all its
// points came, then revised: InfluxDB keeps such a point of the first
// write).
func (tr *tier) compare(want map[string]string, within time.Duration, revised bool) {
	tr.t.Helper()
	missing := func() (n int, first []string) {
		got := tr.derive.derivedCopy()
		for _, k := range slices.Sorted(maps.Keys(want)) {
			if _, ok := got[k]; !ok {
				if n++; n <= 5 {
					first = append(first, k)
				}
			}
		}
		return n, first
	}
	deadline := time.Now().Add(within)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for n, first := missing(); n > 0; n, first = missing() {
		if time.Now().After(deadline) {
			tr.t.Fatalf("waited %s for the tier to derive the %d points one process does: %d missing, first %q", within, len(want), n, first)
		}
		<-tick.C
	}
	// Every key is there; a window written before (an hour) may still wait
	// for its revision, which a roll-up tick after the newest minutes brings.
	settled := func() bool {
		got := tr.derive.derivedCopy()
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return true
	}
	for !settled() && time.Now().Before(deadline) {
		<-tick.C
	}
	got := tr.derive.derivedCopy()
	diffs := 0
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			if diffs < 5 {
				tr.t.Errorf("%s\n one process: %s\n        tier: %s", k, want[k], got[k])
			}
			diffs++
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && !revised {
			if diffs < 5 {
				tr.t.Errorf("the tier derived a point one process does not: %s %s", k, got[k])
			}
			diffs++
		}
	}
	if diffs > 0 {
		tr.t.Fatalf("%d derived points differ from one process's %d", diffs, len(want))
	}
}
