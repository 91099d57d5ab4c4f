package redfish

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/joules-energy/joules/redfish/redfishsim"
)

// fuzzedPaths are the resources a BMC answers with the fuzzer's body: the
// ones the source discovers and reads power, energy and thermals from.
var fuzzedPaths = []string{
	"/redfish/v1/", "/redfish/v1/Chassis", "/redfish/v1/Chassis/1U", "/redfish/v1/Chassis/1U/Power",
	"/redfish/v1/Chassis/1U/EnvironmentMetrics", "/redfish/v1/Chassis/1U/PowerSubsystem",
	"/redfish/v1/Chassis/1U/PowerSubsystem/PowerSupplies", "/redfish/v1/Chassis/1U/PowerSubsystem/PowerSupplies/Bay1/Metrics",
	"/redfish/v1/Chassis/1U/Sensors", "/redfish/v1/Chassis/1U/Thermal", "/redfish/v1/Chassis/1U/ThermalSubsystem/ThermalMetrics",
}

// FuzzBMCResource serves the rackmount mockup with one resource replaced by
// arbitrary bytes: discovery and a poll must end, with samples or an
// error, never a panic or a hang.
func FuzzBMCResource(f *testing.F) {
	dir := mockupDir(f, "dmtf-public-rackmount1")
	for i, p := range fuzzedPaths {
		if raw, err := os.ReadFile(filepath.Join(dir, p[len("/redfish/v1"):], "index.json")); err == nil {
			f.Add(uint8(i), raw)
		}
		f.Add(uint8(i), []byte(`{"@odata.id": "`+p+`", "Members": [{"@odata.id": "/redfish/v1/Chassis/1U"}], "PowerWatts": {"Reading": -1e308}}`))
	}
	f.Add(uint8(3), []byte(`{"PowerControl": [{"PowerConsumedWatts": "NaN"}], "PowerSupplies": [null, {}]}`))
	f.Add(uint8(0), []byte("\x00garbage"))
	bmc, err := redfishsim.New("fuzz", dir, redfishsim.Options{Username: testUser, Password: testPass})
	if err != nil {
		f.Fatal(err)
	}
	var target string
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == target || r.URL.Path+"/" == target {
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
			return
		}
		bmc.ServeHTTP(w, r)
	}))
	defer srv.Close()
	f.Fuzz(func(t *testing.T, which uint8, doc []byte) {
		target, body = fuzzedPaths[int(which)%len(fuzzedPaths)], doc
		src, err := NewSource(Config{Name: "fuzz", Endpoint: srv.URL, Username: testUser, Password: testPass, Timeout: time.Second}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		samples, _ := src.Collect(ctx)
		if ctx.Err() != nil {
			t.Fatalf("the poll of %s did not end", target)
		}
		for _, s := range samples {
			if s.Name == "" {
				t.Fatalf("a sample without a name from %s", target)
			}
		}
	})
}
