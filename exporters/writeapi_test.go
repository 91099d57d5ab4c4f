package exporters

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/internal/testenv"
)

func TestWriteURLTakesTheBaseOrTheWritePath(t *testing.T) {
	for in, want := range map[string]string{
		"http://agg.example:9561":                          "http://agg.example:9561/api/v2/write",
		"http://agg.example:9561/":                         "http://agg.example:9561/api/v2/write",
		"https://agg.example:9561/api/v2/write":            "https://agg.example:9561/api/v2/write",
		"https://agg.example:9561/api/v2/write/":           "https://agg.example:9561/api/v2/write",
		"https://proxy.example/influx":                     "https://proxy.example/influx/api/v2/write",
		"https://proxy.example/influx/api/v2/write":        "https://proxy.example/influx/api/v2/write",
		"https://user:pw@influx.example:8086/api/v2/write": "https://user:pw@influx.example:8086/api/v2/write",
	} {
		u, err := WriteURL(in)
		if err != nil {
			t.Errorf("WriteURL(%q): %v", in, err)
			continue
		}
		if u.String() != want {
			t.Errorf("WriteURL(%q) = %s, want %s", in, u, want)
		}
	}
	for in, want := range map[string]string{
		"agg.example:9561":                                  "http(s)://host",
		"http://influx.example:8086/write?db=joules":        "leave out the query",
		"http://influx.example:8086/write":                  "base URL",
		"http://agg.example:9561/api/v2/write/api/v2/write": "base URL",
		"http://agg.example:9561/api/v2":                    "base URL",
		"https://user:hunter2@agg.example/write":            "base URL",
	} {
		_, err := WriteURL(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("WriteURL(%q): error %v, want one saying %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("WriteURL(%q): the error shows the password: %v", in, err)
		}
	}
}

func TestStreamDeliversToTheWritePathForm(t *testing.T) {
	rc := newReceiver(t)
	s, _, _ := startStream(t, rc.srv.URL+"/api/v2/write")
	s.Add(samplesAt(8, time.UnixMilli(1_800_000_000_000)))
	waitUntil(t, "delivery", func() bool { return rc.sink.count() == 8 })
	waitUntil(t, "joules_stream_up 1", func() bool {
		samples, _ := s.Collect(context.Background())
		return value(samples, "joules_stream_up") == 1
	})
}

// answers are what servers that are not an InfluxDB v2 write API, or are one
// in trouble, answer a write.
var answers = []struct {
	name    string
	handler http.HandlerFunc
	config  bool   // a configuration error, not an outage
	reason  string // joules_stream_send_failures_total
	want    string // in the error
}{
	{"a web server's page", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html><body>Welcome to nginx!</body></html>")
	}, true, "misconfigured", "answers 204 No Content"},
	{"an empty 200", func(w http.ResponseWriter, _ *http.Request) {}, true, "misconfigured", "reaches another service"},
	{"405", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	}, true, "misconfigured", "/api/v2/write takes no POST"},
	{"404 at the path", http.NotFound, true, "misconfigured", "nothing answers at /api/v2/write; set exporters.stream.url"},
	{"InfluxDB 2.x without the bucket", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"code":"not found","message":"bucket \"joules\" not found"}`)
	}, true, "misconfigured", `the write API says "bucket \"joules\" not found"; check exporters.stream.bucket`},
	{"InfluxDB 1.8 without the database", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":"database not found: \"joules\""}`)
	}, true, "misconfigured", `database not found`},
	{"a redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://agg.example:9561/api/v2/write", http.StatusMovedPermanently)
	}, true, "misconfigured", "redirects to https://agg.example:9561/api/v2/write"},
	{"HTTP to an HTTPS port", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, "<html><center><h1>400 Bad Request</h1></center><center>The plain HTTP request was sent to HTTPS port</center></html>")
	}, true, "misconfigured", "plain HTTP to an HTTPS port"},
	{"a login page", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, "<!doctype html><html><form>Sign in</form></html>")
	}, true, "misconfigured", "an HTML page"},
	// Outages and refusals of a real write API stay what they were.
	{"a proxy's 502", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, "<html>502 Bad Gateway</html>")
	}, false, "server_error", "502"},
	{"503", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"code":"unavailable"}`, http.StatusServiceUnavailable)
	}, false, "throttled", "503"},
	{"a refused token", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"code":"unauthorized","message":"unauthorized access"}`)
	}, false, "auth", "check token_file"},
}

func TestAnswersThatAreNotTheWriteAPIKeepThePoints(t *testing.T) {
	for _, a := range answers {
		t.Run(a.name, func(t *testing.T) {
			srv := httptest.NewServer(a.handler)
			defer srv.Close()
			res := Probe(context.Background(), StreamConfig{Name: "stream", URL: srv.URL, Token: "tok", Timeout: 2 * time.Second})
			var cfgErr *ConfigError
			if res.Err == nil || !strings.Contains(res.Err.Error(), a.want) || errors.As(res.Err, &cfgErr) != a.config {
				t.Errorf("probe: %v; want an error saying %q, a configuration error: %v", res.Err, a.want, a.config)
			}

			s, _, _ := startStream(t, srv.URL, func(c *StreamConfig) { c.DrainTimeout = time.Millisecond })
			s.Add(samplesAt(8, time.UnixMilli(1_800_000_000_000)))
			waitUntil(t, "two failed sends", func() bool {
				samples, _ := s.Collect(context.Background())
				for _, smp := range samples {
					if smp.Name == "joules_stream_send_failures_total" && smp.Labels[0].Value == a.reason && smp.Value >= 2 {
						return true
					}
				}
				return false
			})
			samples, _ := s.Collect(context.Background())
			if up := value(samples, "joules_stream_up"); up != 0 {
				t.Errorf("joules_stream_up = %v while nothing is delivered", up)
			}
			if p := s.spool.Stats().Points; p != 8 {
				t.Errorf("spool holds %d points, want the 8 not delivered", p)
			}
			if sent := value(samples, "joules_stream_sent_points_total"); sent != 0 {
				t.Errorf("%v points counted as sent", sent)
			}
		})
	}
}

// handlerTransport serves requests in memory, so that a stream runs in a
// synctest bubble.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// TestWrongURLSaidEveryMinuteAndNothingLost runs 150 s (of a synctest
// clock) against an aggregator whose write API the URL misses, then the
// same spool with the URL fixed, as after an operator's fix and restart.
func TestWrongURLSaidEveryMinuteAndNothingLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &pointSink{}
		mux := http.NewServeMux()
		mux.Handle("/api/v2/write", aggregator.NewIngest([]string{"tok"}, aggregator.Limits{}, sink, slog.New(slog.DiscardHandler)))
		var logs testenv.LogBuffer
		cfg := StreamConfig{Name: "stream", URL: "http://agg.example:9561/joules", Token: "tok", SpoolDir: t.TempDir(),
			FlushInterval: 50 * time.Millisecond, MaxBackoff: time.Second, NoSync: true, transport: handlerTransport{mux}}
		run := func(cfg StreamConfig, feed func(*Stream)) []map[string]any {
			s, err := NewStream(cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { s.Run(ctx); close(done) }()
			feed(s)
			samples, _ := s.Collect(context.Background())
			cancel()
			<-done
			var out []map[string]any
			for _, smp := range samples {
				out = append(out, map[string]any{"name": smp.Name, "value": smp.Value, "labels": fmt.Sprint(smp.Labels)})
			}
			return out
		}
		get := func(samples []map[string]any, name, label string) float64 {
			for _, smp := range samples {
				if smp["name"] == name && strings.Contains(smp["labels"].(string), label) {
					return smp["value"].(float64)
				}
			}
			t.Fatalf("no %s %s", name, label)
			return 0
		}

		t0 := time.Now()
		wrong := run(cfg, func(s *Stream) {
			for i := range 150 {
				s.Add(samplesAt(8, t0.Add(time.Duration(i)*time.Second)))
				time.Sleep(time.Second)
			}
		})
		if get(wrong, "joules_stream_up", "target") != 0 {
			t.Error("joules_stream_up is 1 while every send got 404")
		}
		if n := get(wrong, "joules_stream_send_failures_total", "misconfigured"); n < 100 {
			t.Errorf("%v sends counted as misconfigured in 150 s of tries every second", n)
		}
		if sink.count() != 0 {
			t.Fatalf("the aggregator got %d points through a wrong URL", sink.count())
		}
		var errs []map[string]any
		for _, rec := range logs.Records(t) {
			switch {
			case rec["level"] == "ERROR":
				errs = append(errs, rec)
			case rec["level"] == "WARN":
				t.Errorf("a configuration error was also logged as a warning: %v", rec)
			}
		}
		// First at the first send, then at the first send a minute later:
		// 0.05 s, 60.05 s, 120.05 s.
		if len(errs) != 3 {
			t.Errorf("%d error logs in 150 s, want 3 (one a minute):\n%v", len(errs), errs)
		}
		for _, rec := range errs {
			if rec["url"] != "http://agg.example:9561/joules/api/v2/write" || rec["answer"] != "404 Not Found" ||
				!strings.Contains(fmt.Sprint(rec["fix"]), "set exporters.stream.url to the aggregator's or InfluxDB's base URL") {
				t.Errorf("error log lacks the URL, the answer or what to change: %v", rec)
			}
		}

		cfg.URL = "http://agg.example:9561/api/v2/write"
		fixed := run(cfg, func(*Stream) { time.Sleep(2 * time.Second) })
		if get(fixed, "joules_stream_up", "target") != 1 {
			t.Error("joules_stream_up is not 1 after delivering")
		}
		if got := sink.count(); got != 150*8 {
			t.Fatalf("after the fix the aggregator got %d points, want all %d spooled", got, 150*8)
		}
		sink.mu.Lock()
		defer sink.mu.Unlock()
		for i, p := range sink.points {
			if want := t0.Add(time.Duration(i/8) * time.Second).Truncate(time.Millisecond); !p.Time.Equal(want) {
				t.Fatalf("point %d has time %v, want %v", i, p.Time, want)
			}
		}
	})
}

func TestProbe(t *testing.T) {
	sink := &pointSink{}
	mux := http.NewServeMux()
	mux.Handle("/api/v2/write", aggregator.NewIngest([]string{"tok-7731"}, aggregator.Limits{}, sink, slog.New(slog.DiscardHandler)))
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"name":"joules-aggregator","status":"pass"}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tlsSrv := httptest.NewTLSServer(mux)
	defer tlsSrv.Close()
	ca := t.TempDir() + "/ca.pem"
	writePEM(t, ca, tlsSrv.Certificate().Raw)
	gone := httptest.NewServer(mux)
	gone.Close()
	influx2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		if r.URL.Path == "/health" {
			fmt.Fprint(w, `{"name":"influxdb","message":"ready for queries and writes","status":"pass","version":"v2.7.11"}`)
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"code":"invalid","message":"writing requires points"}`)
	}))
	defer influx2.Close()

	for _, c := range []struct {
		name      string
		cfg       StreamConfig
		found     string
		errSaying string // "": no error
	}{
		{"aggregator", StreamConfig{URL: srv.URL, Token: "tok-7731"}, "joules-aggregator (health pass)", ""},
		{"write path form", StreamConfig{URL: srv.URL + "/api/v2/write", Token: "tok-7731"}, "joules-aggregator", ""},
		{"verified TLS", StreamConfig{URL: tlsSrv.URL, Token: "tok-7731", CAFile: ca}, "joules-aggregator", ""},
		{"InfluxDB 2.x", StreamConfig{URL: influx2.URL, Token: "tok-7731", Org: "energy", Bucket: "joules"}, "influxdb v2.7.11 (health pass); an empty write was refused as empty", ""},
		{"wrong token", StreamConfig{URL: srv.URL, Token: "tok-wrong"}, "joules-aggregator", "401 Unauthorized: the token was refused; check token_file"},
		{"untrusted certificate", StreamConfig{URL: tlsSrv.URL, Token: "tok-7731"}, "", "set ca_file to the CA that signed the server's certificate"},
		{"plain HTTP server, https URL", StreamConfig{URL: strings.Replace(srv.URL, "http:", "https:", 1), Token: "tok-7731"}, "", "the server speaks plain HTTP; use http://"},
		{"nothing listening", StreamConfig{URL: gone.URL, Token: "tok-7731"}, "", "check the host and port"},
		{"a path prefix that is not there", StreamConfig{URL: srv.URL + "/influx", Token: "tok-7731"}, "GET /health: 404 Not Found", "nothing answers at /influx/api/v2/write"},
	} {
		c.cfg.Name = "stream"
		res := Probe(context.Background(), c.cfg)
		if !strings.HasPrefix(res.Found, c.found) {
			t.Errorf("%s: found %q, want %q", c.name, res.Found, c.found)
		}
		switch {
		case c.errSaying == "" && res.Err != nil:
			t.Errorf("%s: %v", c.name, res.Err)
		case c.errSaying != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), c.errSaying)):
			t.Errorf("%s: error %v, want one saying %q", c.name, res.Err, c.errSaying)
		}
		if strings.Contains(fmt.Sprint(res), "tok-") {
			t.Errorf("%s: the probe's result shows the token: %+v", c.name, res)
		}
	}
	if sink.count() != 0 {
		t.Errorf("probes wrote %d points", sink.count())
	}
}

func TestProbeNeverShowsAPasswordInTheURL(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	res := Probe(context.Background(), StreamConfig{Name: "influx", URL: strings.Replace(srv.URL, "http://", "http://joules:pw-5521@", 1)})
	if res.Err == nil || strings.Contains(fmt.Sprint(res), "pw-5521") {
		t.Errorf("probe %+v: want an error, and no password", res)
	}
}

func writePEM(t *testing.T, path string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
