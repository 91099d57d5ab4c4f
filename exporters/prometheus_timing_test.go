package exporters

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/joules-energy/joules/collector"
)

// gpuHostSnapshot is shaped like an 8-GPU host's: 1,000 series with the GPU
// identity and topology labels.
func gpuHostSnapshot() fixedSnapshot {
	snap := make(fixedSnapshot, 1000)
	for i := range snap {
		snap[i] = collector.Sample{Name: "joules_gpu_metric_" + strconv.Itoa(i%100), Help: "Power.", Kind: collector.Gauge, Value: float64(i) * 1.37,
			Labels: []collector.Label{l("gpu", strconv.Itoa(i/125)), l("hall", "h1"), l("host", "gpu-001"), l("model", "NVIDIA H200 141GB HBM3e"),
				l("pci_bus_id", "00000000:18:00.0"), l("rack", "r12"), l("site", "dc1"), l("uuid", "GPU-62b047b9-576e-6dd9-0624-6dcf665b15d6")}}
	}
	return snap
}

// BenchmarkScrape renders an 8-GPU host's snapshot through the real handler,
// gzipped as Prometheus asks.
func BenchmarkScrape(b *testing.B) {
	logger := slog.New(slog.DiscardHandler)
	h := NewHandler(gpuHostSnapshot(), NewRegistry("joules_bench"), logger)
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

// BenchmarkAppendText is the encoding alone.
func BenchmarkAppendText(b *testing.B) {
	snap := gpuHostSnapshot()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendText(buf[:0], snap)
	}
	b.SetBytes(int64(len(buf)))
}
