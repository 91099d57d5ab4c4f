package aggregator

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// memSink keeps what ingest accepted; ingest's own behaviour is under test.
type memSink struct {
	mu     sync.Mutex
	points []Point
}

// Write keeps copies: the points' arrays and strings are the request's,
// reused once it is answered.
func (m *memSink) Write(points []Point) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range points {
		c := Point{Measurement: strings.Clone(p.Measurement), Time: p.Time}
		for _, t := range p.Tags {
			c.Tags = append(c.Tags, Tag{strings.Clone(t.Key), strings.Clone(t.Value)})
		}
		for _, f := range p.Fields {
			c.Fields = append(c.Fields, Field{strings.Clone(f.Key), f.Value})
		}
		m.points = append(m.points, c)
	}
	return nil
}

const token = "agent-token-1"

func newIngest(t *testing.T, limits Limits) (*httptest.Server, *memSink) {
	t.Helper()
	sink := &memSink{}
	in := NewIngest([]string{"other", token}, limits, sink, slog.New(slog.DiscardHandler))
	in.now = func() time.Time { return time.Unix(1_800_000_000, 0) }
	srv := httptest.NewServer(in)
	t.Cleanup(srv.Close)
	return srv, sink
}

func post(t *testing.T, url, auth string, body []byte, gz bool) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestIngestKeepsGoodLinesAndNamesBadOnes(t *testing.T) {
	srv, sink := newIngest(t, Limits{})
	body := strings.Join([]string{
		`joules_gpu_power_watts,gpu=0,host=n1 value=350.5 1800000000000`,
		`joules_gpu_power_watts,gpu=1,host=n1 value= 1800000000000`, // no field value
		``,
		`joules_gpu_power_watts,gpu=2,host=n1 value=351 1800000000000`,
		`bad line without fields`,
		`joules_gpu_power_watts,gpu=3,host=n1 value=352 notatime`,
	}, "\n")
	code, resp := post(t, srv.URL+"/api/v2/write?precision=ms", "Token "+token, []byte(body), false)
	if code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400: %s", code, resp)
	}
	var e influxError
	json.Unmarshal([]byte(resp), &e)
	for _, want := range []string{"2 lines accepted, 3 refused", "line 2:", "line 5:", "line 6:"} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("message lacks %q: %s", want, e.Message)
		}
	}
	if len(sink.points) != 2 || sink.points[1].Tags[0] != (Tag{"gpu", "2"}) || sink.points[0].Fields[0].Value.FloatV() != 350.5 {
		t.Errorf("kept %+v, want lines 1 and 4", sink.points)
	}
	if !sink.points[0].Time.Equal(time.UnixMilli(1800000000000)) {
		t.Errorf("time %v: precision=ms not applied", sink.points[0].Time)
	}
}

func TestIngestRefusesWithoutValidToken(t *testing.T) {
	srv, sink := newIngest(t, Limits{})
	for _, auth := range []string{"", "Token wrong", "Basic " + token, "Token " + token + "x"} {
		code, _ := post(t, srv.URL+"/api/v2/write", auth, []byte("m value=1"), false)
		if code != http.StatusUnauthorized {
			t.Errorf("auth %q: status %d, want 401", auth, code)
		}
	}
	if len(sink.points) != 0 {
		t.Error("points accepted without a valid token")
	}
	if code, _ := post(t, srv.URL+"/api/v2/write", "Bearer "+token, []byte("m value=1"), false); code != http.StatusNoContent {
		t.Errorf("Bearer token: %d", code)
	}
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestIngestLimits(t *testing.T) {
	srv, sink := newIngest(t, Limits{MaxBodyBytes: 64 << 10, MaxDecompressedBytes: 1 << 20, MaxLineBytes: 200})
	bomb := gzipped(bytes.Repeat([]byte("m value=1 1\n"), 200_000)) // 2.4 MB from ~10 KB
	if len(bomb) > 64<<10 {
		t.Fatalf("bomb is %d bytes compressed; the test wants it under the body limit", len(bomb))
	}
	if code, resp := post(t, srv.URL+"/api/v2/write", "Token "+token, bomb, true); code != http.StatusRequestEntityTooLarge {
		t.Errorf("gzip bomb: %d %s, want 413", code, resp)
	}
	if code, _ := post(t, srv.URL+"/api/v2/write", "Token "+token, bytes.Repeat([]byte("m value=1 1\n"), 10_000), false); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d, want 413", code)
	}
	long := "m,tag=" + strings.Repeat("x", 300) + " value=1 1"
	code, resp := post(t, srv.URL+"/api/v2/write", "Token "+token, []byte("ok value=1 1\n"+long+"\nok value=2 2"), false)
	if code != http.StatusBadRequest || !strings.Contains(resp, "line 2: line of") {
		t.Errorf("over-long line: %d %s", code, resp)
	}
	if len(sink.points) != 2 {
		t.Errorf("kept %d points, want the 2 short lines", len(sink.points))
	}
	if code, _ := post(t, srv.URL+"/api/v2/write", "Token "+token, []byte("not gzip"), true); code != http.StatusBadRequest {
		t.Errorf("bad gzip: %d, want 400", code)
	}
}

// TestIngestTelegrafLines takes lines as Telegraf's outputs.influxdb_v2
// writes them: gzip, several fields of every type, escaped names, ns times.
func TestIngestTelegrafLines(t *testing.T) {
	srv, sink := newIngest(t, Limits{})
	lines := `cpu,cpu=cpu-total,host=node\ 7 usage_idle=97.2,usage_user=1.5 1800000000000000000
mem,host=node\ 7 used=123456i,available_percent=55.1,swap_free=0u 1800000000000000000
system,host=node\ 7 uptime_format="12 days, 3:04",load1=0.5 1800000000000000000
nvidia_smi,index=0,name=NVIDIA\ H200,uuid=GPU-1 power_draw=612.4,temperature_gpu=61i,pstate="P0" 1800000000000000000
`
	code, resp := post(t, srv.URL+"/api/v2/write?org=site&bucket=joules&precision=ns", "Token "+token, gzipped([]byte(lines)), true)
	if code != http.StatusNoContent {
		t.Fatalf("Telegraf lines: %d %s", code, resp)
	}
	if len(sink.points) != 4 || sink.points[0].Tags[1] != (Tag{"host", "node 7"}) || len(sink.points[2].Fields) != 2 {
		t.Errorf("parsed %+v", sink.points)
	}
}

func TestIngestSortsTags(t *testing.T) {
	srv, sink := newIngest(t, Limits{})
	if code, resp := post(t, srv.URL+"/api/v2/write", "Token "+token, []byte("m,zone=b,host=a,gpu=0 value=1 1"), false); code != http.StatusNoContent {
		t.Fatalf("%d %s", code, resp)
	}
	got := sink.points[0].Tags
	if got[0].Key != "gpu" || got[1].Key != "host" || got[2].Key != "zone" {
		t.Errorf("tags %v, want sorted by key", got)
	}
}

func TestIngestBoundsEachClientsRequests(t *testing.T) {
	sink := &memSink{}
	in := NewIngest([]string{"t"}, Limits{RequestsPerSecond: 2, Burst: 3}, sink, slog.New(slog.DiscardHandler))
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	in.now = func() time.Time { return now }
	send := func(addr, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/api/v2/write", strings.NewReader("m value=1 1"))
		req.RemoteAddr = addr
		req.Header.Set("Authorization", "Token "+token)
		w := httptest.NewRecorder()
		in.ServeHTTP(w, req)
		return w
	}
	for i := range 3 {
		if w := send("10.0.0.1:4000", "t"); w.Code != http.StatusNoContent {
			t.Fatalf("request %d within the burst: %d %s", i, w.Code, w.Body)
		}
	}
	w := send("10.0.0.1:4001", "t")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" || !strings.Contains(w.Body.String(), "10.0.0.1") {
		t.Errorf("over the burst: %d, Retry-After %q, %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if w := send("10.0.0.2:4000", "wrong"); w.Code != http.StatusUnauthorized {
		t.Errorf("another client is not throttled by the first: %d", w.Code)
	}
	for range 3 {
		send("10.0.0.3:1", "wrong") // unauthenticated floods count too
	}
	if w := send("10.0.0.3:1", "t"); w.Code != http.StatusTooManyRequests {
		t.Errorf("a client that flooded without a token: %d, want 429", w.Code)
	}
	now = now.Add(time.Second) // two more tokens
	if w := send("10.0.0.1:4000", "t"); w.Code != http.StatusNoContent {
		t.Errorf("after a second: %d", w.Code)
	}
	if got := in.Stats.Throttled.Load(); got != 2 {
		t.Errorf("throttled = %d, want 2", got)
	}
	if len(sink.points) != 4 {
		t.Errorf("%d points accepted, want 4", len(sink.points))
	}
}
