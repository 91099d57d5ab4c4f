package testenv

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Process is a program the test runs, with its output kept.
type Process struct {
	t    testing.TB
	cmd  *exec.Cmd
	logs LogBuffer
	done chan error
}

// StartProcess runs bin with args; it is stopped (SIGTERM) when the test ends.
func StartProcess(t testing.TB, bin string, args ...string) *Process {
	t.Helper()
	return StartProcessEnv(t, nil, bin, args...)
}

// StartProcessEnv is StartProcess with env (NAME=value) added to the test's environment.
func StartProcessEnv(t testing.TB, env []string, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{t: t, cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.logs, &p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.Stop(syscall.SIGTERM) })
	return p
}

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Logs is what the process printed so far.
func (p *Process) Logs() string { return p.logs.String() }

// WaitHTTP waits until url answers 2xx, failing the test if the process
// exits or 30 s pass.
func (p *Process) WaitHTTP(url string) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			p.t.Fatalf("%s exited before serving: %v\n%s", p.cmd.Path, err, p.Logs())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not serve %s within 30 s:\n%s", p.cmd.Path, url, p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends sig and waits for the exit (SIGKILL after 20 s); it returns the
// exit error, nil for status 0.
func (p *Process) Stop(sig syscall.Signal) error {
	if p.cmd.Process == nil {
		return nil
	}
	select {
	case err := <-p.done:
		p.done <- err
		return err
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		err := <-p.done
		p.done <- err
		p.t.Errorf("%s did not stop within 20 s of %v", p.cmd.Path, sig)
		return err
	}
}

// FreeAddr returns a loopback address with a free port.
func FreeAddr(t testing.TB) string { return freePort(t) }

// PostLines writes line protocol (nanosecond times) to an InfluxDB v2
// write endpoint at addr (the aggregator's or InfluxDB's) and fails the
// test unless it answers 204.
func PostLines(t testing.TB, addr, token string, body []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/v2/write?precision=ns", bytes.NewReader(body))
	req.Header.Set("Authorization", "Token "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("write: %s %s", resp.Status, msg)
	}
}
