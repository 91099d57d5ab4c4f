package exporters

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/joules-energy/joules/collector"
)

type fixedSnapshot []collector.Sample

func (f fixedSnapshot) Snapshot() []collector.Sample { return f }

func l(name, value string) collector.Label { return collector.Label{Name: name, Value: value} }

func TestAppendText(t *testing.T) {
	snap := fixedSnapshot{
		{Name: "node_infiniband_port_data_received_bytes_total", Help: "Number of data octets received on all links", Kind: collector.Counter, Value: 18527668,
			Labels: []collector.Label{l("device", "mlx4_0"), l("host", "n1"), l("port", "1")}},
		{Name: "joules_rapl_max_energy_range_joules", Help: "Range.", Kind: collector.Gauge, Value: 262143.32885,
			Labels: []collector.Label{l("index", "0"), l("zone", "package")}},
		{Name: "node_thing", Help: "Untyped.\nSecond line with \\.", Kind: collector.Untyped, Value: 1},
		{Name: "node_infiniband_port_data_received_bytes_total", Help: "Number of data octets received on all links", Kind: collector.Counter, Value: 0,
			Labels: []collector.Label{l("device", "mlx4_0"), l("host", "n1"), l("port", "2")}},
		{Name: "joules_odd_values", Help: "Odd.", Kind: collector.Gauge, Value: math.Inf(1), Labels: []collector.Label{l("path", `C:\a "b"`+"\n")}},
		{Name: "joules_odd_values", Help: "Odd.", Kind: collector.Gauge, Value: math.NaN(), Labels: []collector.Label{l("path", "x")}},
		// a sample that cannot be exposed is left out, not fatal to the scrape
		{Name: "bad name", Help: "x", Kind: collector.Gauge, Value: 1},
	}
	want := `# HELP joules_odd_values Odd.
# TYPE joules_odd_values gauge
joules_odd_values{path="C:\\a \"b\"\n"} +Inf
joules_odd_values{path="x"} NaN
# HELP joules_rapl_max_energy_range_joules Range.
# TYPE joules_rapl_max_energy_range_joules gauge
joules_rapl_max_energy_range_joules{index="0",zone="package"} 262143.32885
# HELP node_infiniband_port_data_received_bytes_total Number of data octets received on all links
# TYPE node_infiniband_port_data_received_bytes_total counter
node_infiniband_port_data_received_bytes_total{device="mlx4_0",host="n1",port="1"} 1.8527668e+07
node_infiniband_port_data_received_bytes_total{device="mlx4_0",host="n1",port="2"} 0
# HELP node_thing Untyped.\nSecond line with \\.
# TYPE node_thing untyped
node_thing 1
`
	got := string(AppendText(nil, snap))
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}

	// Prometheus's own parser reads it back to the same values and labels.
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(got))
	if err != nil {
		t.Fatalf("expfmt cannot parse the output: %v", err)
	}
	ib := families["node_infiniband_port_data_received_bytes_total"]
	if ib.GetType().String() != "COUNTER" || len(ib.Metric) != 2 || ib.Metric[0].GetCounter().GetValue() != 18527668 {
		t.Errorf("parsed back: %v", ib)
	}
	if v := families["joules_odd_values"].Metric[0].Label[0].GetValue(); v != `C:\a "b"`+"\n" {
		t.Errorf("label value parsed back as %q", v)
	}
}

func TestHandlerGzipAndSelfMetrics(t *testing.T) {
	snap := fixedSnapshot{{Name: "joules_test_watts", Help: "Test.", Kind: collector.Gauge, Value: 350, Labels: []collector.Label{l("host", "n1")}}}
	srv := httptest.NewServer(NewHandler(snap, NewRegistry("joules_test"), slog.New(slog.DiscardHandler)))
	defer srv.Close()
	for _, gz := range []bool{false, true} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		} else {
			req.Header.Set("Accept-Encoding", "identity")
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		var body io.Reader = resp.Body
		if gz {
			if resp.Header.Get("Content-Encoding") != "gzip" {
				t.Fatal("gzip accepted but not used")
			}
			zr, err := gzip.NewReader(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		resp.Body.Close()
		if resp.Header.Get("Content-Type") != ContentType {
			t.Errorf("content type %q", resp.Header.Get("Content-Type"))
		}
		for _, want := range []string{"joules_test_watts{host=\"n1\"} 350\n", "process_resident_memory_bytes", "go_goroutines", "joules_test_build_info"} {
			if !bytes.Contains(b, []byte(want)) {
				t.Errorf("gzip=%v: exposition lacks %q", gz, want)
			}
		}
	}
}

// TestScrapeAnswersWhileASourceHangs serves /metrics from a runner whose one
// source is stuck: the scrape must answer from the snapshot regardless.
func TestScrapeAnswersWhileASourceHangs(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	entered := make(chan struct{}, 1)
	runner := collector.NewRunner(slog.New(slog.DiscardHandler), map[string]string{"host": "n1"})
	err := runner.Add(collector.Registration{Name: "redfish", Target: "bmc1", Interval: 20 * time.Millisecond, Timeout: 20 * time.Millisecond,
		Source: collector.SourceFunc(func(context.Context) ([]collector.Sample, error) {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
			return nil, nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	err = runner.Add(collector.Registration{Name: "node", Interval: 10 * time.Millisecond,
		Source: collector.SourceFunc(func(context.Context) ([]collector.Sample, error) {
			return []collector.Sample{{Name: "node_up_test", Help: "x", Kind: collector.Gauge, Value: 1}}, nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go runner.Run(ctx)
	<-entered

	srv := httptest.NewServer(NewHandler(runner, NewRegistry("joules_test"), slog.New(slog.DiscardHandler)))
	defer srv.Close()
	var body string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get(srv.URL) // returns although the BMC source is still stuck
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		if strings.Contains(body, `joules_source_up{host="n1",source="redfish",target="bmc1"} 0`) {
			break
		}
	}
	for _, want := range []string{
		`joules_source_up{host="n1",source="redfish",target="bmc1"} 0`,
		`joules_source_up{host="n1",source="node",target=""} 1`,
		`node_up_test{host="n1"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}

// TestOperatorSeries: the trimmed registry keeps the families operators use
// and drops the runtime's internals.
func TestOperatorSeries(t *testing.T) {
	families, err := OperatorSeries(NewRegistry("joules_test"), "joules_test").Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range families {
		got[mf.GetName()] = true
	}
	for _, want := range []string{"go_goroutines", "go_gc_duration_seconds", "go_memstats_heap_inuse_bytes", "go_gc_gomemlimit_bytes",
		"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "joules_test_build_info"} {
		if !got[want] {
			t.Errorf("trimmed registry lacks %s", want)
		}
	}
	for _, dropped := range []string{"go_memstats_mspan_inuse_bytes", "go_memstats_buck_hash_sys_bytes", "process_network_receive_bytes_total"} {
		if got[dropped] {
			t.Errorf("trimmed registry still has %s", dropped)
		}
	}
	// Without the trim the same registry has all of them: the test sees a filter, not a missing collector.
	all, _ := NewRegistry("joules_test").Gather()
	if len(all) <= len(families)+10 {
		t.Errorf("the full registry has %d families, the trimmed %d: expected the trim to drop more than 10", len(all), len(families))
	}
}
