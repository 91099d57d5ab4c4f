package aggregator

import (
	"path/filepath"
	"regexp"
	"testing"

	"github.com/joules-energy/joules/internal/testenv"
)

func TestEveryAggregatorMetricIsDocumented(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	testenv.AssertDocumented(t, regexp.MustCompile(`"(joules_(?:ingest|output)_[a-z_]+[a-z])"`), files, 13)
}
