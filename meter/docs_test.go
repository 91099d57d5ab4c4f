package meter

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/joules-energy/joules/internal/testenv"
)

// TestEveryMeterMetricIsDocumented checks every name the source can
// publish, for both protocols, against docs/METRICS.md.
func TestEveryMeterMetricIsDocumented(t *testing.T) {
	var names []string
	for _, q := range quantities {
		names = append(names, q.metric)
	}
	src, err := os.ReadFile("source.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`add\("([a-z_]+)"`).FindAllStringSubmatch(string(src), -1) {
		names = append(names, m[1])
	}
	if len(names) < len(quantities)+8 {
		t.Fatalf("found only %d names; the scan is broken", len(names))
	}
	var lines strings.Builder
	for _, p := range []string{"snmp", "modbus"} {
		for _, n := range names {
			lines.WriteString("joules_" + p + "_" + n + "\n")
		}
	}
	file := filepath.Join(t.TempDir(), "names.txt")
	if err := os.WriteFile(file, []byte(lines.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.AssertDocumented(t, regexp.MustCompile(`(joules_(?:snmp|modbus)_[a-z_]+[a-z])`), []string{file}, 2*len(names))
}
