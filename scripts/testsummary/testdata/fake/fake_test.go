// Package fake is what the testsummary tests run go test on: tests that
// pass, skip for a missing component or for another reason, and fail.
package fake

import (
	"os"
	"testing"

	"github.com/joules-energy/joules/internal/testenv"
)

func TestPasses(t *testing.T) { t.Log("a passing test's log") }

func TestNeedsTool(t *testing.T) {
	testenv.Tool(t, "joules-no-such-tool", "apt-get install -y joules-no-such-tool")
}

func TestSubtests(t *testing.T) {
	t.Run("needs-data", func(t *testing.T) { testenv.Missing(t, "fake data", "absent", "make fake-data") })
	t.Run("fine", func(t *testing.T) {})
}

func TestSkipsForAnotherReason(t *testing.T) { t.Skip("not on Tuesdays") }

func TestFails(t *testing.T) {
	if os.Getenv("FAKE_FAIL") == "" {
		return
	}
	t.Run("good", func(t *testing.T) { t.Log("a passing subtest's log") })
	t.Run("bad", func(t *testing.T) { t.Error("the failure's message") })
}
