package aggregator

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// lineSink records which way ingest handed over a request.
type lineSink struct {
	memSink
	mu     sync.Mutex
	bodies []string
	precs  []lineprotocol.Precision
	counts []int
	oldest []time.Time
}

func (l *lineSink) WriteLines(lines []byte, n int, prec lineprotocol.Precision, oldest time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bodies = append(l.bodies, string(lines))
	l.precs = append(l.precs, prec)
	l.counts = append(l.counts, n)
	l.oldest = append(l.oldest, oldest)
	return nil
}

func TestIngestSpoolsCleanBodiesAsReceived(t *testing.T) {
	const now = 1_800_000_100
	good := "joules_gpu_power_watts,host=n1,gpu=0 value=350.5 1800000000000\n" +
		"joules_gpu_power_watts,gpu=1,host=n1 value=351i 1799999999000\n"
	cases := []struct {
		name      string
		body      string
		gz        bool
		processor Processor
		asIs      bool
		points    int
	}{
		{name: "every line good and timestamped", body: good, asIs: true, points: 2},
		{name: "gzip: the body as decompressed", body: good, gz: true, asIs: true, points: 2},
		{name: "no final newline", body: strings.TrimSuffix(good, "\n"), asIs: true, points: 2},
		{name: "a line without a timestamp gets the time of arrival", body: good + "joules_gpu_power_watts,gpu=2,host=n1 value=3\n", points: 3},
		{name: "a bad line: only the good ones are spooled", body: good + "bad line\n", points: 2},
		{name: "carriage returns", body: strings.ReplaceAll(good, "\n", "\r\n"), points: 2},
		{name: "a processor that drops a point", body: good + "joules_gpu_power_watts,gpu=0,host=n1 value=1 1800000000100\n", processor: NewDownsample(time.Minute), points: 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sink := &lineSink{}
			var procs []Processor
			if c.processor != nil {
				procs = append(procs, c.processor)
			}
			in := NewIngest([]string{token}, Limits{}, sink, slog.New(slog.DiscardHandler), procs...)
			in.now = func() time.Time { return time.Unix(now, 0) }
			srv := httptest.NewServer(in)
			defer srv.Close()
			body := []byte(c.body)
			if c.gz {
				body = gzipped(body)
			}
			code, resp := post(t, srv.URL+"/api/v2/write?precision=ms", "Token "+token, body, c.gz)
			if want := http.StatusNoContent; strings.Contains(c.body, "bad line") {
				if code != http.StatusBadRequest {
					t.Fatalf("status %d, want 400: %s", code, resp)
				}
			} else if code != want {
				t.Fatalf("status %d, want %d: %s", code, want, resp)
			}
			if c.asIs {
				if len(sink.bodies) != 1 || len(sink.points) != 0 {
					t.Fatalf("%d bodies and %d points handed over, want the body once", len(sink.bodies), len(sink.points))
				}
				if sink.bodies[0] != c.body || sink.precs[0] != lineprotocol.Millisecond || sink.counts[0] != c.points {
					t.Errorf("handed over %q at %v with %d points, want the body as sent at ms with %d", sink.bodies[0], sink.precs[0], sink.counts[0], c.points)
				}
				if !sink.oldest[0].Equal(time.UnixMilli(1799999999000)) {
					t.Errorf("oldest %v, want the second line's 1799999999000 ms", sink.oldest[0])
				}
				return
			}
			if len(sink.bodies) != 0 || len(sink.points) != c.points {
				t.Fatalf("%d bodies and %d points handed over, want %d points", len(sink.bodies), len(sink.points), c.points)
			}
			for _, p := range sink.points {
				if p.Tags[0] == (Tag{"gpu", "2"}) && !p.Time.Equal(time.Unix(now, 0)) {
					t.Errorf("the line without a timestamp got %v, want the time of arrival", p.Time)
				}
			}
		})
	}
}
