// Command testsummary runs `go test -json` (the command given) and prints
// what go test prints without -json: each package's ok or FAIL line and the
// whole output of every failing test. It ends with a line listing the tests
// skipped for a missing component (testenv.Missing), each with the command
// that installs it, and exits with the command's status. make test runs it.
//
//	testsummary go test -json -count=1 ./...
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testsummary go test -json [flags] [packages]")
		os.Exit(2)
	}
	module := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		module = bi.Main.Path // package paths are shown relative to it
	}
	os.Exit(run(os.Args[1:], module, os.Stdout, os.Stderr))
}

// run runs args, summarising its standard output to stdout, and returns
// its exit status.
func run(args []string, module string, stdout, stderr io.Writer) int {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintf(stderr, "testsummary: %v\n", err)
		return 2
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "testsummary: %v\n", err)
		return 2
	}
	s := newSummary(stdout, module)
	sc := bufio.NewScanner(pipe)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20) // a test may log long lines
	for sc.Scan() {
		s.Line(sc.Bytes())
	}
	readErr := sc.Err()
	if readErr != nil {
		_, _ = io.Copy(io.Discard, pipe) // let the command finish
	}
	waitErr := cmd.Wait()
	s.Finish()
	if readErr != nil {
		fmt.Fprintf(stderr, "testsummary: reading the test output: %v\n", readErr)
	}
	var exit *exec.ExitError
	switch {
	case waitErr == nil && readErr == nil:
		return 0
	case errors.As(waitErr, &exit) && exit.ExitCode() > 0:
		return exit.ExitCode()
	case waitErr != nil:
		fmt.Fprintf(stderr, "testsummary: %s: %v\n", args[0], waitErr)
	}
	return 1
}
