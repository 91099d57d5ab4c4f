package main

import (
	"bytes"
	"strings"
	"testing"
)

const module = "github.com/joules-energy/joules"

// runFake runs the real go test on testdata/fake through run.
func runFake(t *testing.T, args ...string) (string, int) {
	t.Helper()
	t.Setenv("CI", "") // the fake's missing components must skip, not fail
	var out, errs bytes.Buffer
	code := run(append([]string{"go", "test", "-json", "-count=1"}, append(args, "./testdata/fake")...), module, &out, &errs)
	if errs.Len() > 0 {
		t.Logf("stderr:\n%s", errs.String())
	}
	return out.String(), code
}

func TestSummaryListsSkipsAndShowsFailures(t *testing.T) {
	t.Setenv("FAKE_FAIL", "1")
	out, code := runFake(t)
	if code != 1 { // go test's status when a test fails
		t.Errorf("exit status %d, want go test's 1", code)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) < 2 {
		t.Fatalf("output:\n%s", out)
	}
	const fake = "scripts/testsummary/testdata/fake."
	wantMissing := "skipped for missing components: " +
		fake + "TestNeedsTool (joules-no-such-tool: apt-get install -y joules-no-such-tool), " +
		fake + "TestSubtests/needs-data (fake data: make fake-data)"
	if got := lines[len(lines)-2]; got != wantMissing {
		t.Errorf("missing components line:\n got %s\nwant %s", got, wantMissing)
	}
	if got, want := lines[len(lines)-1], "other skips: "+fake+"TestSkipsForAnotherReason (not on Tuesdays)"; got != want {
		t.Errorf("last line:\n got %s\nwant %s", got, want)
	}
	for _, want := range []string{"the failure's message", "--- FAIL: TestFails/bad", "--- FAIL: TestFails ", "FAIL\t" + module + "/scripts/testsummary/testdata/fake\t"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// What plain go test leaves out: passing tests' logs, test2json's framing.
	for _, unwanted := range []string{"a passing test's log", "a passing subtest's log", "=== RUN", "--- PASS", "\nPASS\n"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("output has %q:\n%s", unwanted, out)
		}
	}
}

func TestSummarySaysWhenNothingSkipped(t *testing.T) {
	out, code := runFake(t, "-run=^TestPasses$")
	if code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	want := "ok  \t" + module + "/scripts/testsummary/testdata/fake\t"
	if !strings.HasPrefix(out, want) || !strings.HasSuffix(out, "\nskipped for missing components: none\n") {
		t.Errorf("output:\n%s\nwant %q first and the line saying none skipped last", out, want)
	}
}

func TestSummaryKeepsABuildFailureAndItsStatus(t *testing.T) {
	var out, errs bytes.Buffer
	code := run([]string{"go", "test", "-json", "-count=1", "./testdata/broken"}, module, &out, &errs)
	if code == 0 {
		t.Errorf("exit status 0 for a package that does not compile\n%s%s", out.String(), errs.String())
	}
	if !strings.Contains(out.String()+errs.String(), "broken_test.go:5") {
		t.Errorf("the compiler's error is not shown:\n%s%s", out.String(), errs.String())
	}
}
