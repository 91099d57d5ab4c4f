package workload

import (
	"path/filepath"
	"regexp"
	"testing"

	"github.com/joules-energy/joules/internal/testenv"
)

// TestEveryWorkloadMetricIsDocumented checks the agent's workload metrics
// (named in internal/schema, which the aggregator reads them by) against
// docs/METRICS.md.
func TestEveryWorkloadMetricIsDocumented(t *testing.T) {
	schema := filepath.Join(testenv.RepoRoot(t), "internal", "schema", "schema.go")
	testenv.AssertDocumented(t, regexp.MustCompile(`"(joules_(?:host_cpus|workload_requested_cpus|gpu_workload_[a-z_]+[a-z]))"`), []string{schema}, 3)
}
