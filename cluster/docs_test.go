package cluster

import (
	"path/filepath"
	"regexp"
	"testing"

	"github.com/joules-energy/joules/internal/testenv"
)

func TestEveryClusterMetricIsDocumented(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	testenv.AssertDocumented(t, regexp.MustCompile(`"(joules_cluster_[a-z_]+[a-z])"`), files, 25)
}
