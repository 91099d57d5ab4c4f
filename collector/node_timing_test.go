package collector

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/joules-energy/joules/internal/testenv"
)

// BenchmarkNodeSourceCollect is one collection of netdev (this machine),
// infiniband, hwmon and rapl (the shared fixture) with the RAPL additions.
func BenchmarkNodeSourceCollect(b *testing.B) {
	sys := filepath.Join(testenv.SharedTestdata(b), "sysfs", "node-exporter", "sys")
	app := kingpin.CommandLine
	if _, err := app.Parse([]string{"--path.sysfs=" + sys}); err != nil {
		b.Fatal(err)
	}
	collectors, err := ConfigureNode(app, nil, names("netdev", "infiniband", "hwmon", "rapl"), nil)
	if err != nil {
		b.Fatal(err)
	}
	src, err := NewNodeSource(discardLogger(), sys, collectors)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		samples, err := src.Collect(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		n = len(samples)
	}
	b.ReportMetric(float64(n), "samples/op")
}

// BenchmarkRunnerPublishAndSnapshot is the runner's own cost per collection
// of 1,000 samples: adding topology labels, publishing, snapshotting.
func BenchmarkRunnerPublishAndSnapshot(b *testing.B) {
	r := NewRunner(discardLogger(), map[string]string{"site": "dc1", "hall": "h1", "rack": "r12", "host": "gpu-001"})
	s := &sourceState{reg: Registration{Name: "bench", Interval: time.Second, StaleAfter: time.Hour}}
	r.sources = append(r.sources, s)
	batch := make([]Sample, 1000)
	b.ReportAllocs()
	for b.Loop() {
		for i := range batch {
			batch[i] = Sample{Name: "node_network_receive_bytes_total", Kind: Counter, Value: float64(i), Labels: []Label{{"device", "eth0"}}}
		}
		r.record(s, batch, nil, time.Millisecond)
		if got := len(r.Snapshot()); got != 1004 {
			b.Fatalf("snapshot has %d samples", got)
		}
	}
}
