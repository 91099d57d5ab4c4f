package collector

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzRAPLZones reads powercap zones whose name, max_energy_range_uj and
// energy_uj files hold arbitrary bytes: every zone gets its readable
// sample, a range only when it parses, and nothing panics.
func FuzzRAPLZones(f *testing.F) {
	f.Add("package-0\n", "262143328850\n", "12345\n")
	f.Add("dram\n", "65532610987\n", "")
	f.Add("package-99999999999999999999", "-1", "x")
	f.Add("psys-", "18446744073709551615", "18446744073709551616")
	f.Add("\x00\n-", " 42 ", "\n")
	sysfs := f.TempDir()
	for _, zone := range []string{"intel-rapl:0", "intel-rapl:0:0", "intel-rapl:1"} {
		if err := os.MkdirAll(filepath.Join(sysfs, "class/powercap", zone), 0o755); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, name, maxRange, energy string) {
		r := NewRAPL(slog.New(slog.DiscardHandler), sysfs)
		r.readFile = func(path string) ([]byte, error) {
			switch filepath.Base(path) {
			case "name":
				return []byte(name), nil
			case "max_energy_range_uj":
				return []byte(maxRange), nil
			}
			if energy == "" {
				return nil, os.ErrPermission
			}
			return []byte(energy), nil
		}
		readable := 0
		for _, s := range r.Read(time.Unix(1, 0)) {
			switch s.Name {
			case metricRAPLReadable:
				readable++
			case metricRAPLMaxRange:
				if s.Value < 0 {
					t.Fatalf("negative range %v from %q", s.Value, maxRange)
				}
			default:
				t.Fatalf("unexpected sample %s", s.Name)
			}
			for _, l := range s.Labels {
				if l.Name == "path" && !strings.HasPrefix(l.Value, sysfs) {
					t.Fatalf("path label %q outside sysfs", l.Value)
				}
			}
		}
		if readable != 3 {
			t.Fatalf("%d readable samples for 3 zones", readable)
		}
	})
}
