package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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
	exited chan struct{} // closed when cmd has exited
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
	logs, err := os.Create(filepath.Join(dir, "influxd.log"))
	if err != nil {
		t.Fatal(err)
	}
	db := &InfluxDB{Bucket: "joules/autogen", t: t, bin: bin, conf: filepath.Join(dir, "influxdb.conf"), logs: logs}
	t.Cleanup(db.Stop)
	// A free port can be taken by another test's server between freePort
	// and influxd's bind: then influxd exits, and new ports are tried.
	for attempt := 1; ; attempt++ {
		httpAddr, rpcAddr := freePort(t), freePort(t)
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
		if err := os.WriteFile(db.conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		db.URL = "http://" + httpAddr
		err := db.start()
		if err == nil {
			break
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("influxd: %v; trying other ports", err)
	}
	// On a failed test, the server's own log says what it refused.
	t.Cleanup(func() {
		if t.Failed() {
			raw, _ := os.ReadFile(logs.Name())
			t.Logf("influxd log (last 4 KiB):\n%s", raw[max(0, len(raw)-4096):])
		}
	})
	db.createDatabase()
	return db
}

// createDatabase creates the database and waits until the server lists
// it: /query answers 200 with the error in its body, and on a loaded
// machine a write right after an unchecked CREATE DATABASE has found no
// database.
func (db *InfluxDB) createDatabase() {
	db.t.Helper()
	query := func(q string) string {
		resp, err := http.PostForm(db.URL+"/query", url.Values{"q": {q}})
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	WaitFor(db.t, 30*time.Second, "influxd to create the database joules (its log follows)", func() bool {
		query("CREATE DATABASE joules")
		return strings.Contains(query("SHOW DATABASES"), `["joules"]`)
	})
}

var errPortTaken = errors.New("a port was taken before influxd bound it")

// Start starts (or restarts) the server on the same data and port.
func (db *InfluxDB) Start() {
	db.t.Helper()
	if err := db.start(); err != nil {
		db.t.Fatal(err)
	}
}

func (db *InfluxDB) start() error {
	logged, _ := db.logs.Seek(0, io.SeekCurrent)
	cmd := exec.Command(db.bin, "-config", db.conf)
	cmd.Stdout, cmd.Stderr = db.logs, db.logs
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start influxd: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	db.cmd, db.exited = cmd, exited
	since := func() string {
		raw, _ := os.ReadFile(db.logs.Name())
		return string(raw[min(int(logged), len(raw)):])
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(db.URL + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
		}
		select {
		case <-exited:
			out := since()
			if strings.Contains(out, "address already in use") {
				return fmt.Errorf("%w:\n%s", errPortTaken, out)
			}
			return fmt.Errorf("influxd exited before answering /ping:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("influxd did not answer /ping within 30 s:\n%s", since())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s).
func (db *InfluxDB) Stop() {
	if db.cmd == nil {
		return
	}
	select {
	case <-db.exited:
		return
	default:
	}
	_ = db.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-db.exited:
	case <-time.After(10 * time.Second):
		_ = db.cmd.Process.Kill()
		<-db.exited
	}
}

// handedOut holds the ports freePort returned in this test binary: the
// kernel may hand a closed port out again at once, and two parallel tests
// would then race for it. Ports are process-wide, so is this set.
var handedOut sync.Map

func freePort(t testing.TB) string {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if _, taken := handedOut.LoadOrStore(addr, true); !taken {
			return addr
		}
	}
}
