package aggregator

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
)

// gpuLines is a 5,000-line batch of GPU-like lines with 10 fields, or 1.
func gpuLines(fields int) []byte {
	var b bytes.Buffer
	t := int64(1_800_000_000_000)
	for i := range 5000 {
		fmt.Fprintf(&b, "nvidia_gpu,host=gpu-%03d,gpu=%d,uuid=GPU-%08x-1234-5678-9abc-def012345678,model=NVIDIA\\ H200 ", i/8, i%8, i)
		for f := range fields {
			if f > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "f%d=%d.%d", f, 300+i%400, f)
		}
		fmt.Fprintf(&b, " %d\n", t+int64(i))
	}
	return b.Bytes()
}

// discardSink takes bodies as received, as the output does.
type discardSink struct{}

func (discardSink) Write([]Point) error { return nil }

func (discardSink) WriteLines([]byte, int, lineprotocol.Precision, time.Time) error { return nil }

// BenchmarkIngest is parse and hand-off of one 5,000-line request through
// the real handler, output off. lines/s per core is 5,000 / (ns/op · 1e-9).
func BenchmarkIngest(b *testing.B) {
	for _, c := range []struct {
		name   string
		fields int
		gzip   bool
	}{{"10fields-plain", 10, false}, {"10fields-gzip", 10, true}, {"1field-plain", 1, false}} {
		b.Run(c.name, func(b *testing.B) {
			body := gpuLines(c.fields)
			if c.gzip {
				var z bytes.Buffer
				zw := gzip.NewWriter(&z)
				zw.Write(body)
				zw.Close()
				body = z.Bytes()
			}
			in := NewIngest([]string{"t"}, Limits{}, discardSink{}, slog.New(slog.DiscardHandler))
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			start := time.Now()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/api/v2/write?precision=ms", bytes.NewReader(body))
				req.Header.Set("Authorization", "Token t")
				if c.gzip {
					req.Header.Set("Content-Encoding", "gzip")
				}
				w := httptest.NewRecorder()
				in.ServeHTTP(w, req)
				if w.Code != http.StatusNoContent {
					b.Fatal(w.Code, w.Body.String())
				}
			}
			b.ReportMetric(float64(5000*b.N)/time.Since(start).Seconds(), "lines/s")
		})
	}
}
