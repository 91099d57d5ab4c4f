package nvml

import (
	"path/filepath"
	"regexp"
	"testing"

	"github.com/joules-energy/joules/internal/testenv"
)

// TestEveryGPUMetricIsDocumented checks each metric name in the source's
// code against docs/METRICS.md, including families the simulator never
// produces (processes, XID, MIG, page retirement).
func TestEveryGPUMetricIsDocumented(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	testenv.AssertDocumented(t, regexp.MustCompile(`"(joules_(?:gpu|nvml)_[a-z_]+[a-z])"`), files, 40)
}
