package redfish

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/joules-energy/joules/internal/testenv"
)

// TestEveryRedfishMetricIsDocumented checks the names in the code and in the
// golden expositions (which hold the names built at run time) against
// docs/METRICS.md.
func TestEveryRedfishMetricIsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "docs", "METRICS.md"))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("*.go")
	golden, _ := filepath.Glob("testdata/*.prom")
	name := regexp.MustCompile(`(joules_redfish_[a-z_]+[a-z])`)
	seen := map[string]bool{}
	for _, f := range append(files, golden...) {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range name.FindAllString(string(src), -1) {
			if m == "joules_redfish_host_power" || seen[m] {
				continue // a prefix used in a test
			}
			seen[m] = true
			if !regexp.MustCompile("`" + m + "`").Match(doc) {
				t.Errorf("%s (in %s) is not in docs/METRICS.md", m, f)
			}
		}
	}
	if len(seen) < 25 {
		t.Errorf("found only %d names; the scan is broken", len(seen))
	}
}
