package testenv

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// InfluxDB is a real InfluxDB OSS 1.8 server on loopback, with Flux enabled
// and a database "joules" (bucket "joules/autogen" in the v2 API).
type InfluxDB struct {
	URL    string
	Bucket string
	t      testing.TB
	bin    string
	conf   string
	cmd    *exec.Cmd
	logs   *os.File
}

// InfluxDBInstall builds the influxd the tests use (about 2 minutes once,
// then cached in $(go env GOPATH)/bin); make test and .ci/run run it when
// influxd is missing. Outside the module, so the module's settings do not
// apply to InfluxDB's build.
const InfluxDBInstall = "(cd /tmp && GOFLAGS= go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10)"

// StartInfluxDB starts influxd (InfluxDBInstall) with its data in a
// temporary folder. It is stopped when the test ends.
// httpOptions are extra lines for its [http] section (max-body-size = 4096).
func StartInfluxDB(t testing.TB, httpOptions ...string) *InfluxDB {
	t.Helper()
	bin, err := exec.LookPath("influxd")
	if err != nil {
		gopath, _ := exec.Command("go", "env", "GOPATH").Output()
		candidate := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "influxd")
		if _, serr := os.Stat(candidate); serr == nil {
			bin = candidate
		}
	}
	if bin == "" {
		Missing(t, "influxd", "not on PATH nor in $(go env GOPATH)/bin", InfluxDBInstall)
	}
	dir := t.TempDir()
	httpAddr, rpcAddr := freePort(t), freePort(t)
	conf := filepath.Join(dir, "influxdb.conf")
	body := fmt.Sprintf(`reporting-disabled = true
bind-address = %q
[meta]
  dir = %q
[data]
  dir = %q
  wal-dir = %q
  query-log-enabled = false
[http]
  bind-address = %q
  flux-enabled = true
  log-enabled = false
%s
[logging]
  level = "warn"
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
`, rpcAddr, filepath.Join(dir, "meta"), filepath.Join(dir, "data"), filepath.Join(dir, "wal"), httpAddr, strings.Join(httpOptions, "\n"))
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(dir, "influxd.log"))
	if err != nil {
		t.Fatal(err)
	}
	db := &InfluxDB{URL: "http://" + httpAddr, Bucket: "joules/autogen", t: t, bin: bin, conf: conf, logs: logs}
	db.Start()
	resp, err := http.PostForm(db.URL+"/query", url.Values{"q": {"CREATE DATABASE joules"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	t.Cleanup(db.Stop)
	return db
}

// Start starts (or restarts) the server on the same data and port.
func (db *InfluxDB) Start() {
	db.t.Helper()
	db.cmd = exec.Command(db.bin, "-config", db.conf)
	db.cmd.Stdout, db.cmd.Stderr = db.logs, db.logs
	if err := db.cmd.Start(); err != nil {
		db.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(db.URL + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return
			}
		}
		if time.Now().After(deadline) {
			raw, _ := os.ReadFile(db.logs.Name())
			db.t.Fatalf("influxd did not answer /ping within 30 s:\n%s", raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s).
func (db *InfluxDB) Stop() {
	if db.cmd == nil || db.cmd.Process == nil || db.cmd.ProcessState != nil {
		return
	}
	_ = db.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = db.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = db.cmd.Process.Kill()
		<-done
	}
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
