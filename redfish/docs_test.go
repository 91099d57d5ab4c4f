package redfish

import (
	"path/filepath"
	"regexp"
	"testing"

	"github.com/joules-energy/joules/internal/testenv"
)

// TestEveryRedfishMetricIsDocumented checks the names in the code and in the
// golden expositions (which hold the names built at run time) against
// docs/METRICS.md.
func TestEveryRedfishMetricIsDocumented(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	golden, _ := filepath.Glob("testdata/*.prom")
	testenv.AssertDocumented(t, regexp.MustCompile(`(joules_redfish_[a-z_]+[a-z])`), append(files, golden...), 25, "joules_redfish_host_power")
}
