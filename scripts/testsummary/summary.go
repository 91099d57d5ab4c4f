package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/joules-energy/joules/internal/testenv"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// skip is a test that skipped, and why.
type skip struct {
	pkg, test          string
	component, install string // for a missing component
	reason             string // otherwise
}

// topTest holds the output of one top-level test and its subtests until
// the top-level test ends: printed if it failed, dropped otherwise.
type topTest struct {
	lines []testLine
	ended map[string]string // test name → pass, fail or skip
}

type testLine struct{ test, text string }

// summary turns test2json events back into go test's plain output and
// collects the skips.
type summary struct {
	out     io.Writer
	module  string
	running map[[2]string]*topTest // by package and top-level test
	missing []skip
	other   []skip
}

func newSummary(out io.Writer, module string) *summary {
	return &summary{out: out, module: module, running: map[[2]string]*topTest{}}
}

// framing is test2json's per-test bookkeeping, which plain output lacks.
var framing = regexp.MustCompile(`^=== (RUN|PAUSE|CONT|NAME)\b`)

// Line takes one line of the command's output.
func (s *summary) Line(raw []byte) {
	var e event
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &e) != nil {
		fmt.Fprintf(s.out, "%s\n", raw) // not an event: pass it on
		return
	}
	switch {
	case e.Action == "build-output":
		fmt.Fprint(s.out, e.Output)
	case e.Test == "":
		s.packageEvent(e)
	default:
		s.testEvent(e)
	}
}

func (s *summary) packageEvent(e event) {
	switch e.Action {
	case "output":
		if e.Output != "PASS\n" { // plain go test prints only "ok" for a passing package
			fmt.Fprint(s.out, e.Output)
		}
	case "fail":
		// Tests still running when the package failed (a timeout, a crash
		// in another goroutine): their output is what explains it.
		for k, top := range s.running {
			if k[0] != e.Package {
				continue
			}
			fmt.Fprintf(s.out, "--- %s did not finish; its output:\n", k[1])
			s.print(top, func(string) bool { return true })
			delete(s.running, k)
		}
	case "pass", "skip":
		for k := range s.running {
			if k[0] == e.Package {
				delete(s.running, k)
			}
		}
	}
}

func (s *summary) testEvent(e event) {
	name, _, _ := strings.Cut(e.Test, "/")
	k := [2]string{e.Package, name}
	top := s.running[k]
	if top == nil {
		top = &topTest{ended: map[string]string{}}
		s.running[k] = top
	}
	switch e.Action {
	case "output":
		if !framing.MatchString(e.Output) {
			top.lines = append(top.lines, testLine{e.Test, e.Output})
		}
	case "pass", "fail", "skip":
		top.ended[e.Test] = e.Action
		if e.Action == "skip" {
			s.recordSkip(e.Package, e.Test, top)
		}
		if e.Test != name {
			return
		}
		if e.Action == "fail" {
			// The test's own lines and its failed or unfinished subtests'.
			s.print(top, func(test string) bool { return test == name || top.ended[test] != "pass" && top.ended[test] != "skip" })
		}
		delete(s.running, k)
	}
}

func (s *summary) print(top *topTest, keep func(test string) bool) {
	for _, l := range top.lines {
		if keep(l.test) {
			fmt.Fprint(s.out, l.text)
		}
	}
}

// logPrefix is what testing puts before a message: "    file_test.go:12: ".
var logPrefix = regexp.MustCompile(`^\s*\S+\.go:\d+: `)

func (s *summary) recordSkip(pkg, test string, top *topTest) {
	sk := skip{pkg: pkg, test: test}
	for _, l := range top.lines {
		if l.test != test {
			continue
		}
		text := strings.TrimRight(l.text, "\n")
		if m := testenv.MissingPattern.FindStringSubmatch(text); m != nil {
			sk.component, sk.install = m[1], m[2]
			s.missing = append(s.missing, sk)
			return
		}
		if msg := strings.TrimSpace(logPrefix.ReplaceAllString(text, "")); msg != "" && !strings.HasPrefix(msg, "--- SKIP") {
			sk.reason = msg
		}
	}
	s.other = append(s.other, sk)
}

// Finish prints the skips: always the missing components' line, then the
// other skips if there were any.
func (s *summary) Finish() {
	var parts []string
	for _, sk := range sorted(s.missing) {
		parts = append(parts, fmt.Sprintf("%s (%s: %s)", s.name(sk), sk.component, sk.install))
	}
	if len(parts) == 0 {
		parts = []string{"none"}
	}
	fmt.Fprintf(s.out, "skipped for missing components: %s\n", strings.Join(parts, ", "))
	parts = nil
	for _, sk := range sorted(s.other) {
		parts = append(parts, fmt.Sprintf("%s (%s)", s.name(sk), cmp.Or(sk.reason, "no reason given")))
	}
	if len(parts) > 0 {
		fmt.Fprintf(s.out, "other skips: %s\n", strings.Join(parts, ", "))
	}
}

// name is pkg.Test with the package relative to the module.
func (s *summary) name(sk skip) string {
	pkg := sk.pkg
	if s.module != "" && strings.HasPrefix(pkg, s.module+"/") {
		pkg = strings.TrimPrefix(pkg, s.module+"/")
	}
	return pkg + "." + sk.test
}

func sorted(skips []skip) []skip {
	return slices.SortedFunc(slices.Values(skips), func(a, b skip) int {
		return cmp.Or(cmp.Compare(a.pkg, b.pkg), cmp.Compare(a.test, b.test))
	})
}
