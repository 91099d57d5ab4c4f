package exporters

import (
	"path/filepath"
	"regexp"
	"testing"

	"github.com/joules-energy/joules/internal/testenv"
)

func TestEveryDeliveryMetricIsDocumented(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	testenv.AssertDocumented(t, regexp.MustCompile(`"(joules_(?:spool|stream)_[a-z_]+[a-z])"`), files, 12)
}
