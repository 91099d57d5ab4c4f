// Package testenv finds what tests need outside the module: the shared
// real-world test data and the real programs (prometheus, promtool) that
// .ci/run installs.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// SharedTestdata returns the shared real-world test data folder: $JOULES_TESTDATA,
// or ../shared/testdata beside the repository. When the folder is absent the
// test fails on CI (CI set) and is skipped, saying why, elsewhere.
func SharedTestdata(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("JOULES_TESTDATA")
	if dir == "" {
		dir = filepath.Join(RepoRoot(t), "..", "shared", "testdata")
	}
	if _, err := os.Stat(dir); err != nil {
		Missing(t, "shared test data", err.Error(), "put the project's shared test data at ../shared/testdata beside the repository, or set JOULES_TESTDATA to its folder")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// RepoRoot returns the repository's root folder.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the repository")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Tool returns the path of a program the tests need. On CI (CI set) a
// missing program fails the test, since .ci/run installs it; elsewhere the
// test is skipped with the command that installs it.
func Tool(t testing.TB, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	Missing(t, name, "not on PATH", install)
	return ""
}

// Missing stops a test that needs a component this machine lacks: on CI
// (CI set) it fails, since .ci/run provides every component; elsewhere it
// skips with MissingMessage, which make test lists at its end.
func Missing(t testing.TB, component, why, install string) {
	t.Helper()
	msg := MissingMessage(component, why, install)
	if os.Getenv("CI") != "" {
		t.Fatalf("on CI, .ci/run must provide every component: %s", msg)
	}
	t.Skip(msg)
}

// MissingMessage is the skip message of a test that lacks a component:
//
//	missing component "NAME" (WHY); install: COMMAND
//
// scripts/testsummary finds skips by this form; MissingPattern matches it.
func MissingMessage(component, why, install string) string {
	return fmt.Sprintf("missing component %q (%s); install: %s", component, why, install)
}

// MissingPattern matches a MissingMessage in a line of test output: the
// component is its first group, the install command its second.
var MissingPattern = regexp.MustCompile(`missing component "([^"]+)" \(.*\); install: (.+)$`)

// AssertDocumented checks that every metric name matching pattern (its first
// group) in files appears, in backquotes, in docs/METRICS.md. At least min
// distinct names must be found, so a broken scan cannot pass.
func AssertDocumented(t testing.TB, pattern *regexp.Regexp, files []string, min int, skip ...string) {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(RepoRoot(t), "docs", "METRICS.md"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range pattern.FindAllStringSubmatch(string(src), -1) {
			name := m[1]
			if seen[name] || slices.Contains(skip, name) {
				continue
			}
			seen[name] = true
			if !strings.Contains(string(doc), "`"+name+"`") {
				t.Errorf("%s (in %s) is not in docs/METRICS.md", name, f)
			}
		}
	}
	if len(seen) < min {
		t.Errorf("found only %d metric names; the scan is broken", len(seen))
	}
}

// ReadUint reads a file holding one unsigned integer, as sysfs counters do.
func ReadUint(t testing.TB, path string) uint64 {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}
