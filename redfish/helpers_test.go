package redfish

import (
	"context"
	"encoding/pem"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/internal/testenv"
	"github.com/joules-energy/joules/redfish/redfishsim"
)

const testUser, testPass = "monitor", "s3cret-pass"

// startBMC serves a mockup over HTTPS and returns the simulator and a source
// that verifies the simulator's certificate.
func startBMC(t testing.TB, name, dir string, mutate ...func(*Config)) (*redfishsim.BMC, *Source, *httptest.Server) {
	t.Helper()
	return startBMCWith(t, name, dir, redfishsim.Options{}, mutate...)
}

// startBMCWith is startBMC with simulator options (a clock).
func startBMCWith(t testing.TB, name, dir string, opts redfishsim.Options, mutate ...func(*Config)) (*redfishsim.BMC, *Source, *httptest.Server) {
	t.Helper()
	opts.Username, opts.Password = testUser, testPass
	bmc, err := redfishsim.New(name, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(bmc)
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Name: name, Endpoint: srv.URL, Username: testUser, Password: testPass, CAFile: ca, Timeout: 2 * time.Second}
	for _, m := range mutate {
		m(&cfg)
	}
	src, err := NewSource(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	return bmc, src, srv
}

func collectWithin(t testing.TB, src *Source, d time.Duration) ([]collector.Sample, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return src.Collect(ctx)
}

func mockupDir(t testing.TB, name string) string {
	return filepath.Join(testenv.SharedTestdata(t), "redfish", name)
}

// series renders samples as sorted "name{labels} value" lines, leaving out
// the labels every sample has (bmc, role).
func series(samples []collector.Sample, prefix string) []string {
	var out []string
	for _, s := range samples {
		if !strings.HasPrefix(s.Name, prefix) {
			continue
		}
		var ls []string
		for _, l := range s.Labels {
			if l.Name != "bmc" && l.Name != "role" {
				ls = append(ls, l.Name+"="+l.Value)
			}
		}
		out = append(out, s.Name+"{"+strings.Join(ls, ",")+"}")
	}
	sort.Strings(out)
	return out
}

func value(samples []collector.Sample, name string, want ...string) (float64, bool) {
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		ok := true
		for _, w := range want {
			k, v, _ := strings.Cut(w, "=")
			found := false
			for _, l := range s.Labels {
				if l.Name == k && l.Value == v {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			return s.Value, true
		}
	}
	return 0, false
}
