package aggregator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
		{name: "a comment (InfluxDB 1.8 reads quotes in it)", body: "# a=\"x\n" + good, points: 2},
		{name: "an indented comment", body: good + "  # note\n", points: 2},
		{name: "a hex float", body: good + "nvidia_gpu,gpu=0 f=0x1p3 1800000000000\n", points: 3},
		{name: "a hex float on a line a processor reads", body: good + "joules_hex value=0x1p3 1800000000000\n", processor: &reader{name: "joules_hex"}, points: 3},
		// The output's encoder drops such a point, as InfluxDB would refuse it.
		{name: "a tag key twice on a line nobody reads", body: good + "nvidia_gpu,a=1,a=2 f=1 1800000000000\n", points: 3},
		{name: "a tag key twice on a line a processor reads", body: good + "joules_dup,a=1,a=2 value=1 1800000000000\n", processor: &reader{name: "joules_dup"}, points: 3},
		{name: "tags out of order are fine", body: good + "nvidia_gpu,b=1,a=2 f=1 1800000000000\n", asIs: true, points: 3},
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
				if len(p.Tags) > 0 && p.Tags[0] == (Tag{"gpu", "2"}) && !p.Time.Equal(time.Unix(now, 0)) {
					t.Errorf("the line without a timestamp got %v, want the time of arrival", p.Time)
				}
			}
		})
	}
}

// reader is a Selective processor that reads the values of one measurement.
type reader struct {
	name string
	seen []float64
}

func (r *reader) ReadsValues(m string) bool { return m == r.name }

func (r *reader) Process(points []Point) []Point {
	for _, p := range points {
		if p.Measurement == r.name {
			r.seen = append(r.seen, p.Fields[0].Value.FloatV())
		}
	}
	return points
}

func TestIngestParsesOnlyTheValuesAProcessorReads(t *testing.T) {
	sink := &lineSink{}
	r := &reader{name: "joules_gpu_energy_joules_total"}
	in := NewIngest([]string{token}, Limits{}, sink, slog.New(slog.DiscardHandler), r)
	srv := httptest.NewServer(in)
	defer srv.Close()
	body := "joules_gpu_energy_joules_total,gpu=0 value=1234.5 1800000000000\n" +
		"nvidia_gpu,gpu=0 f0=300.5,f1=-2,f2=.25,f3=7i,f4=8u,f5=1e3,f6=true,f7=\"s\" 1800000000000\n"
	if code, resp := post(t, srv.URL+"/api/v2/write?precision=ms", "Token "+token, []byte(body), false); code != http.StatusNoContent {
		t.Fatalf("status %d: %s", code, resp)
	}
	if len(r.seen) != 1 || r.seen[0] != 1234.5 {
		t.Errorf("the processor read %v, want [1234.5]", r.seen)
	}
	if len(sink.bodies) != 1 || sink.bodies[0] != body {
		t.Errorf("bodies handed over: %q", sink.bodies)
	}
	// Values nobody reads are still checked: each of these lines is refused
	// by name, as a full parse would, and the good line is kept.
	for _, v := range []string{"1.2.3", "-", "1e400", "9223372036854775808i", "-1u", "18446744073709551616u", "maybe"} {
		sink.points, sink.bodies = nil, nil
		body := "nvidia_gpu,gpu=0 f0=1 1800000000000\nnvidia_gpu,gpu=1 f0=" + v + " 1800000000000\n"
		code, resp := post(t, srv.URL+"/api/v2/write?precision=ms", "Token "+token, []byte(body), false)
		if code != http.StatusBadRequest || !strings.Contains(resp, "line 2:") {
			t.Errorf("value %s: status %d %s, want 400 naming line 2", v, code, resp)
		}
		if len(sink.bodies) != 0 || len(sink.points) != 1 || sink.points[0].Fields[0].Value.FloatV() != 1 {
			t.Errorf("value %s: handed over %d bodies and %+v, want the good line's point with its value", v, len(sink.bodies), sink.points)
		}
	}
}

func TestStorableAgreesWithTheFullParse(t *testing.T) {
	cases := []struct {
		kind lineprotocol.ValueKind
		raw  string
	}{
		{lineprotocol.Float, "1"}, {lineprotocol.Float, "-1.5"}, {lineprotocol.Float, ".5"}, {lineprotocol.Float, "1."},
		{lineprotocol.Float, "-.5"}, {lineprotocol.Float, "1e5"}, {lineprotocol.Float, "1.5E-3"}, {lineprotocol.Float, "1.2.3"},
		{lineprotocol.Float, "-"}, {lineprotocol.Float, "."}, {lineprotocol.Float, "1e400"},
		{lineprotocol.Float, strings.Repeat("9", 300)}, {lineprotocol.Float, strings.Repeat("9", 310)},
		{lineprotocol.Int, "-9223372036854775808"}, {lineprotocol.Int, "9223372036854775807"}, {lineprotocol.Int, "9223372036854775808"},
		{lineprotocol.Int, "123456789012345678"}, {lineprotocol.Int, "1.5"},
		{lineprotocol.Uint, "18446744073709551615"}, {lineprotocol.Uint, "18446744073709551616"}, {lineprotocol.Uint, "-1"},
		{lineprotocol.Uint, "1234567890123456789"},
	}
	for _, c := range cases {
		_, err := lineprotocol.NewValueFromBytes(c.kind, []byte(c.raw))
		if got := storable(c.kind, []byte(c.raw)); got != (err == nil) {
			t.Errorf("%v %q: storable %v, the full parse says %v", c.kind, c.raw, got, err)
		}
	}
	// strconv takes these, InfluxDB 1.8 does not: the full parse encodes
	// them again as plain numbers.
	for _, raw := range []string{"0x1p3", "1_0", "0x10"} {
		if _, err := lineprotocol.NewValueFromBytes(lineprotocol.Float, []byte(raw)); err == nil && storable(lineprotocol.Float, []byte(raw)) {
			t.Errorf("%q is stored as it is; InfluxDB 1.8 refuses it", raw)
		}
	}
}

// A sink that takes points only gets every value parsed.
func TestIngestParsesEveryValueForAPointSink(t *testing.T) {
	srv, sink := newIngest(t, Limits{})
	if code, resp := post(t, srv.URL+"/api/v2/write?precision=ms", "Token "+token, []byte("nvidia_gpu,gpu=0 f0=300.5 1800000000000\n"), false); code != http.StatusNoContent {
		t.Fatalf("status %d: %s", code, resp)
	}
	if len(sink.points) != 1 || sink.points[0].Fields[0].Value.FloatV() != 300.5 {
		t.Errorf("points %+v, want f0=300.5", sink.points)
	}
}

func TestGunzipHintIsBoundedByTheBody(t *testing.T) {
	var plain strings.Builder
	for i := range 100 {
		fmt.Fprintf(&plain, "nvidia_gpu,gpu=%d f0=%d.%d %d\n", i%8, 300+i*37%101, i*7919%1000, 1800000000000+i*977)
	}
	body := gzipped([]byte(plain.String()))
	if got := gunzipHint(body, 128<<20); got != int64(plain.Len()) {
		t.Errorf("honest trailer: hint %d, want the %d bytes it decompresses to", got, plain.Len())
	}
	forged := append([]byte(nil), body...)
	binary.LittleEndian.PutUint32(forged[len(forged)-4:], 100<<20) // claims 100 MiB
	if got, most := gunzipHint(forged, 128<<20), 32*int64(len(forged)); got != most {
		t.Errorf("forged trailer: hint %d, want at most 32 times the %d-byte body, %d", got, len(forged), most)
	}
	if got := gunzipHint(forged, 1000); got != 1000 {
		t.Errorf("hint %d past the limit of 1000", got)
	}
}

// Bodies stored as received reach the dead-letter file as they are: blank
// lines and comments are not counted as lines refused, and a body without
// a final newline does not run into the next entry.
func TestDeadLetterOfABodyAsReceived(t *testing.T) {
	file := filepath.Join(t.TempDir(), "dead.lp")
	o := &Output{cfg: OutputConfig{DeadLetterFile: file}, log: slog.New(slog.DiscardHandler)}
	o.deadLetter([]byte("m v=1 1\n\n# note\n  m v=2 2"), lineprotocol.Millisecond, errors.New("refused"))
	o.deadLetter([]byte("m v=3 3\n"), lineprotocol.Second, errors.New("refused"))
	if n := o.DeadLettered.Load(); n != 3 {
		t.Errorf("%d lines counted, want the 3 points", n)
	}
	raw, _ := os.ReadFile(file)
	if !strings.Contains(string(raw), "  m v=2 2\n# ") || !strings.Contains(string(raw), "precision=ms refused") || !strings.Contains(string(raw), "precision=s refused\nm v=3 3\n") {
		t.Errorf("dead-letter file:\n%s", raw)
	}
}
