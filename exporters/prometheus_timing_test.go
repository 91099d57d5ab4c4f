package exporters

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/joules-energy/joules/collector"
)

// BenchmarkScrape renders a snapshot the size of an 8-GPU host's (1,000
// series) through the real handler.
func BenchmarkScrape(b *testing.B) {
	snap := make(fixedSnapshot, 1000)
	for i := range snap {
		snap[i] = collector.Sample{Name: "joules_gpu_power_watts", Help: "Power.", Kind: collector.Gauge, Value: float64(i),
			Labels: []collector.Label{{Name: "gpu", Value: strconv.Itoa(i)}, {Name: "host", Value: "gpu-001"}, {Name: "site", Value: "dc1"}}}
	}
	logger := slog.New(slog.DiscardHandler)
	h := Handler(NewRegistry(snap, "joules_bench", logger), logger)
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}
