package redfish

import (
	"testing"
	"time"
)

// BenchmarkPoll is one steady poll (after discovery) of each shared mockup
// over HTTPS to the in-process simulator, which shares the CPU with the
// poller. requests/op is what the BMC sees per poll.
func BenchmarkPoll(b *testing.B) {
	for _, m := range sharedMockups {
		b.Run(m, func(b *testing.B) {
			_, src, _ := startBMC(b, m, mockupDir(b, m))
			if _, err := collectWithin(b, src, 10*time.Second); err != nil {
				b.Fatal(err)
			}
			before := src.conn.requests.Load()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := collectWithin(b, src, 10*time.Second); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(src.conn.requests.Load()-before)/float64(b.N), "requests/op")
		})
	}
}
