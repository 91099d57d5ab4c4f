// Package testenv finds what tests need outside the module: the shared
// real-world test data and the real programs (prometheus, promtool) that
// .ci/run installs.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// SharedTestdata returns the shared real-world test data folder: $JOULES_TESTDATA,
// or ../shared/testdata beside the repository. The test is skipped, saying
// why, only when the folder is absent.
func SharedTestdata(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("JOULES_TESTDATA")
	if dir == "" {
		dir = filepath.Join(RepoRoot(t), "..", "shared", "testdata")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("shared test data not found at %s (set JOULES_TESTDATA): %v", dir, err)
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
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found on CI; .ci/run must install it (%s)", name, install)
	}
	t.Skipf("%s not found; install it with: %s", name, install)
	return ""
}
