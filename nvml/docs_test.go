package nvml

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/joules-energy/joules/internal/testenv"
)

// TestEveryGPUMetricIsDocumented checks each metric name in the source's
// code against docs/METRICS.md, including families the simulator never
// produces (processes, XID, MIG, page retirement).
func TestEveryGPUMetricIsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "docs", "METRICS.md"))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("*.go")
	name := regexp.MustCompile(`"(joules_(gpu|nvml)_[a-z_]+[a-z])"`)
	seen := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range name.FindAllStringSubmatch(string(src), -1) {
			seen++
			if !regexp.MustCompile("`" + m[1] + "`").Match(doc) {
				t.Errorf("%s (in %s) is not in docs/METRICS.md", m[1], f)
			}
		}
	}
	if seen < 40 {
		t.Errorf("found only %d metric names in the code; the scan is broken", seen)
	}
}
