package nvml

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/joules-energy/joules/exporters"
	"github.com/joules-energy/joules/internal/testenv"
)

var epochs = regexp.MustCompile(`epoch="[0-9a-f]{8}"`)

// TestGoldenSimulatedH200 renders two passes over a simulated DGX H200 on a
// fixed clock as Prometheus text, compares it with the golden file, and
// lints it with promtool.
func TestGoldenSimulatedH200(t *testing.T) {
	clock := newClock()
	src, _ := newSim(t, "dgxh200", clock, Options{})
	collect(t, src)
	clock.Advance(time.Second)
	samples := collect(t, src)

	// Epochs are random names: the golden file freezes their place, not their value.
	buf := bytes.NewBuffer(epochs.ReplaceAll(exporters.AppendText(nil, samples), []byte(`epoch="00000000"`)))
	golden := filepath.Join("testdata", "dgxh200.prom")
	if os.Getenv("JOULES_UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (make golden writes it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("exposition differs from %s; make golden updates it after an intended change", golden)
	}

	promtool := testenv.Tool(t, "promtool", "apt-get install -y prometheus")
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = buf
	if out, err := check.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
