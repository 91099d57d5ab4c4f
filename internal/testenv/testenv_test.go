package testenv

import (
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestMissingComponentHelper is what the tests below run in a child
// process, with the component missing; it does nothing on its own.
func TestMissingComponentHelper(t *testing.T) {
	switch os.Getenv("TESTENV_HELPER") {
	case "shared":
		SharedTestdata(t)
	case "tool":
		Tool(t, "joules-no-such-tool", "apt-get install -y joules-no-such-tool")
	case "wait":
		WaitFor(t, 100*time.Millisecond, "a condition that never holds", func() bool { return false })
	default:
		return
	}
	t.Log("the helper went on past a missing component")
}

func runHelper(t *testing.T, which, ci string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMissingComponentHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "TESTENV_HELPER="+which, "CI="+ci, "JOULES_TESTDATA="+t.TempDir()+"/absent")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestMissingComponentSkipsOrFailsOnCI(t *testing.T) {
	for _, which := range []string{"shared", "tool"} {
		out, err := runHelper(t, which, "")
		if err != nil || !strings.Contains(out, "--- SKIP: TestMissingComponentHelper") || strings.Contains(out, "went on") {
			t.Errorf("%s missing, CI unset: want a skip; err %v\n%s", which, err, out)
		}
		if m := findMissing(out); m == nil {
			t.Errorf("%s missing: the skip message does not match MissingPattern:\n%s", which, out)
		} else if which == "tool" && (m[1] != "joules-no-such-tool" || m[2] != "apt-get install -y joules-no-such-tool") {
			t.Errorf("MissingPattern read component %q, install %q", m[1], m[2])
		}

		out, err = runHelper(t, which, "1")
		if err == nil || !strings.Contains(out, "--- FAIL: TestMissingComponentHelper") || strings.Contains(out, "went on") {
			t.Errorf("%s missing, CI set: want a failure; err %v\n%s", which, err, out)
		}
	}
}

func findMissing(out string) []string {
	for _, line := range strings.Split(out, "\n") {
		if m := MissingPattern.FindStringSubmatch(line); m != nil {
			return m
		}
	}
	return nil
}

func TestWaitForReturnsOnceTheConditionHolds(t *testing.T) {
	var calls atomic.Int64
	start := time.Now()
	WaitFor(t, 10*time.Second, "the third call", func() bool { return calls.Add(1) >= 3 })
	if n := calls.Load(); n != 3 {
		t.Errorf("cond called %d times, want 3: WaitFor went on polling after it held", n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("WaitFor took %s for a condition true on its third poll", d)
	}
	out, err := runHelper(t, "wait", "")
	if err == nil || !strings.Contains(out, "waited 100ms for a condition that never holds") || strings.Contains(out, "went on") {
		t.Errorf("WaitFor past its deadline: want the test failed, naming what it waited for; err %v\n%s", err, out)
	}
}
