package exporters

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/joules-energy/joules/collector"
)

type fixedSnapshot []collector.Sample

func (f fixedSnapshot) Snapshot() []collector.Sample { return f }

func TestSnapshotCollectorExposition(t *testing.T) {
	snap := fixedSnapshot{
		{Name: "node_infiniband_port_data_received_bytes_total", Help: "Number of data octets received on all links", Kind: collector.Counter, Value: 18527668,
			Labels: []collector.Label{{Name: "device", Value: "mlx4_0"}, {Name: "host", Value: "n1"}, {Name: "port", Value: "1"}}},
		{Name: "joules_rapl_max_energy_range_joules", Help: "Range.", Kind: collector.Gauge, Value: 262143.32885,
			Labels: []collector.Label{{Name: "index", Value: "0"}, {Name: "zone", Value: "package"}}},
		{Name: "node_thing", Help: "Untyped.", Kind: collector.Untyped, Value: 1},
		// a sample that cannot be exposed is left out, not fatal to the scrape
		{Name: "bad name", Help: "x", Kind: collector.Gauge, Value: 1},
	}
	want := `
# HELP joules_rapl_max_energy_range_joules Range.
# TYPE joules_rapl_max_energy_range_joules gauge
joules_rapl_max_energy_range_joules{index="0",zone="package"} 262143.32885
# HELP node_infiniband_port_data_received_bytes_total Number of data octets received on all links
# TYPE node_infiniband_port_data_received_bytes_total counter
node_infiniband_port_data_received_bytes_total{device="mlx4_0",host="n1",port="1"} 1.8527668e+07
# HELP node_thing Untyped.
# TYPE node_thing untyped
node_thing 1
`
	c := NewSnapshotCollector(snap, slog.New(slog.DiscardHandler))
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	// A second scrape reuses the cached descriptors and gives the same answer.
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
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

	srv := httptest.NewServer(Handler(NewRegistry(runner, "joules_test", slog.New(slog.DiscardHandler)), slog.New(slog.DiscardHandler)))
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
		"process_resident_memory_bytes",
		"joules_test_build_info",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}
