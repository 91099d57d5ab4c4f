package collector

import (
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
)

// writeTree writes files (path → content) under a new temp sysfs root.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for path, content := range files {
		full := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func raplValues(samples []Sample, name string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		var zone, index string
		for _, l := range s.Labels {
			switch l.Name {
			case "zone":
				zone = l.Value
			case "index":
				index = l.Value
			}
		}
		out[zone+"-"+index] = s.Value
	}
	return out
}

func TestRAPLMaxRangeAndZoneNaming(t *testing.T) {
	root := writeTree(t, map[string]string{
		"class/powercap/intel-rapl/enabled":                 "1\n",
		"class/powercap/intel-rapl:0/name":                  "package-0\n",
		"class/powercap/intel-rapl:0/energy_uj":             "262143328000\n",
		"class/powercap/intel-rapl:0/max_energy_range_uj":   "262143328850\n",
		"class/powercap/intel-rapl:1/name":                  "package-1\n",
		"class/powercap/intel-rapl:1/energy_uj":             "12\n",
		"class/powercap/intel-rapl:1/max_energy_range_uj":   "65532610987\n",
		"class/powercap/intel-rapl:0:0/name":                "dram\n",
		"class/powercap/intel-rapl:0:0/energy_uj":           "5\n",
		"class/powercap/intel-rapl:0:0/max_energy_range_uj": "65712999613\n",
		"class/powercap/intel-rapl:1:0/name":                "dram\n",
		"class/powercap/intel-rapl:1:0/energy_uj":           "6\n",
		"class/powercap/intel-rapl:1:0/max_energy_range_uj": "65712999613\n",
	})
	samples := NewRAPL(discardLogger(), root).Read(time.Now())
	got := raplValues(samples, metricRAPLMaxRange)
	want := map[string]float64{"package-0": 262143.32885, "package-1": 65532.610987, "dram-0": 65712.999613, "dram-1": 65712.999613}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("max range of %s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d zones, want %d: %v", len(got), len(want), got)
	}
	for k, v := range raplValues(samples, metricRAPLReadable) {
		if v != 1 {
			t.Errorf("zone %s readable = %v, want 1", k, v)
		}
	}
	// The path label is what node_exporter puts on node_rapl_*_joules_total.
	for _, s := range samples {
		for _, l := range s.Labels {
			if l.Name == "path" && !strings.HasPrefix(l.Value, filepath.Join(root, "class/powercap/intel-rapl:")) {
				t.Errorf("path label %q does not name the zone directory", l.Value)
			}
		}
	}
}

func TestRAPLBadZonesDoNotHideGoodOnes(t *testing.T) {
	root := writeTree(t, map[string]string{
		"class/powercap/intel-rapl:0/name":                "package-0\n",
		"class/powercap/intel-rapl:0/energy_uj":           "100\n",
		"class/powercap/intel-rapl:0/max_energy_range_uj": "262143328850\n",
		// garbage in the range file
		"class/powercap/intel-rapl:1/name":                "package-1\n",
		"class/powercap/intel-rapl:1/energy_uj":           "100\n",
		"class/powercap/intel-rapl:1/max_energy_range_uj": "lots\n",
		// missing range file and garbage counter
		"class/powercap/intel-rapl:2/name":      "package-2\n",
		"class/powercap/intel-rapl:2/energy_uj": "-3\n",
	})
	var logs testenv.LogBuffer
	r := NewRAPL(slog.New(slog.NewTextHandler(&logs, nil)), root)
	samples := r.Read(time.Now())
	r.Read(time.Now())

	if got := raplValues(samples, metricRAPLMaxRange); len(got) != 1 || got["package-0"] != 262143.32885 {
		t.Errorf("max ranges = %v, want only package-0 = 262143.32885", got)
	}
	readable := raplValues(samples, metricRAPLReadable)
	if readable["package-0"] != 1 || readable["package-1"] != 1 || readable["package-2"] != 0 {
		t.Errorf("readable = %v, want package-0 1, package-1 1, package-2 0", readable)
	}
	out := logs.String()
	for _, want := range []string{"intel-rapl:1", "intel-rapl:2", "max_energy_range_uj", "not an unsigned integer"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n != 3 {
		t.Errorf("logged %d lines over two reads, want 3 (each problem once):\n%s", n, out)
	}
}

func TestRAPLUnreadableEnergyLogsTheFixOnce(t *testing.T) {
	root := writeTree(t, map[string]string{
		"class/powercap/intel-rapl:0/name":                  "package-0\n",
		"class/powercap/intel-rapl:0/energy_uj":             "100\n",
		"class/powercap/intel-rapl:0/max_energy_range_uj":   "262143328850\n",
		"class/powercap/intel-rapl:0:0/name":                "core\n",
		"class/powercap/intel-rapl:0:0/energy_uj":           "100\n",
		"class/powercap/intel-rapl:0:0/max_energy_range_uj": "262143328850\n",
	})
	var logs testenv.LogBuffer
	r := NewRAPL(slog.New(slog.NewTextHandler(&logs, nil)), root)
	// Tests run as root, which reads any file: stand in for the kernel's
	// 0400 root-only energy_uj (Linux 5.10+) by refusing it.
	r.readFile = func(path string) ([]byte, error) {
		if filepath.Base(path) == "energy_uj" {
			return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrPermission}
		}
		return os.ReadFile(path)
	}
	var samples []Sample
	for range 3 {
		samples = r.Read(time.Now())
	}
	for zone, v := range raplValues(samples, metricRAPLReadable) {
		if v != 0 {
			t.Errorf("zone %s readable = %v, want 0", zone, v)
		}
	}
	if got := raplValues(samples, metricRAPLMaxRange); len(got) != 2 {
		t.Errorf("max ranges = %v, want both zones: the range file stays world-readable", got)
	}
	out := logs.String()
	if n := strings.Count(out, "\n"); n != 1 {
		t.Errorf("logged %d lines, want one for all zones and reads:\n%s", n, out)
	}
	for _, want := range []string{"level=WARN", "5.10", "CAP_DAC_READ_SEARCH", "tmpfiles"} {
		if !strings.Contains(out, want) {
			t.Errorf("log line lacks %q: %s", want, out)
		}
	}
}

func TestRAPLNoPowercapIsQuiet(t *testing.T) {
	var logs testenv.LogBuffer
	samples := NewRAPL(slog.New(slog.NewTextHandler(&logs, nil)), t.TempDir()).Read(time.Now())
	if len(samples) != 0 || logs.String() != "" {
		t.Errorf("host without powercap: samples %v, log %q; want none", samples, logs.String())
	}
}

// TestRAPLWrapCanBeUnwrappedFromTheRange shows the contract the range
// serves: node_exporter passes energy_uj through, so across a wrap its
// counter drops; with the range the agent exports, the energy used across
// the wrap is exact.
func TestRAPLWrapCanBeUnwrappedFromTheRange(t *testing.T) {
	const maxUJ = 262143328850
	root := writeTree(t, map[string]string{
		"class/powercap/intel-rapl:0/name":                "package-0\n",
		"class/powercap/intel-rapl:0/energy_uj":           fmt.Sprintf("%d\n", maxUJ-1_000_000),
		"class/powercap/intel-rapl:0/max_energy_range_uj": fmt.Sprintf("%d\n", maxUJ),
	})
	r := NewRAPL(discardLogger(), root)
	before := raplValues(r.Read(time.Now()), metricRAPLMaxRange)["package-0"]
	readBefore := float64(maxUJ-1_000_000) / 1e6
	if err := os.WriteFile(filepath.Join(root, "class/powercap/intel-rapl:0/energy_uj"), []byte("2500000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	after := raplValues(r.Read(time.Now()), metricRAPLMaxRange)["package-0"]
	readAfter := 2.5
	if before != after || after != float64(maxUJ)/1e6 {
		t.Fatalf("range %v then %v, want %v both times", before, after, float64(maxUJ)/1e6)
	}
	used := readAfter + after - readBefore // the counter wrapped once
	if math.Abs(used-3.5) > 1e-6 {
		t.Errorf("energy across the wrap = %v J, want 3.5 J (1 J to the wrap, 2.5 J after)", used)
	}
}
