package main

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
)

// TestAggregatorSpoolDiskFull runs the aggregator with a file-size limit
// (RLIMIT_FSIZE through prlimit), so its spool's writes fail as on a full
// disk: it answers 503 with a clear error, its other endpoints keep
// working, the agent keeps the points in its own spool, and once there is
// room again every point produced arrives.
func TestAggregatorSpoolDiskFull(t *testing.T) {
	t.Parallel()
	prlimit := testenv.Tool(t, "prlimit", "apt-get install -y util-linux")
	p := newPipeline(t)
	if err := p.agg.Stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.db.Stop() // nothing drains the spool, so it fills whatever the load on this machine
	p.agg = testenv.StartProcess(t, prlimit, "--fsize=16384:unlimited", filepath.Join(binDir, "joules-aggregator"),
		"--config.file="+p.aggCfg, "--web.listen-address="+p.aggAddr, "--log.format=json")
	p.agg.WaitHTTP("http://" + p.aggAddr + "/health")
	p.startAgent()

	deadline := time.Now().Add(60 * time.Second)
	for scrapeValue(t, "http://"+p.aggAddr+"/metrics", "joules_ingest_failed_total") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the spool never filled:\n%s", p.agg.Logs())
		}
		time.Sleep(250 * time.Millisecond)
	}
	logs := p.agg.Logs()
	if !strings.Contains(logs, "cannot accept points") || !strings.Contains(logs, "file too large") {
		t.Errorf("the aggregator does not say why it refuses points:\n%s", logs)
	}
	for _, path := range []string{"/health", "/metrics"} {
		if resp, err := http.Get("http://" + p.aggAddr + path); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("%s while the disk is full: %v %v", path, resp, err)
		}
	}
	p.waitAgent(30*time.Second, "the agent spooling what is refused", "joules_spool_points{", positive)

	if out, err := exec.Command(prlimit, fmt.Sprintf("--pid=%d", p.agg.Pid()), "--fsize=unlimited:unlimited").CombinedOutput(); err != nil {
		t.Fatalf("prlimit: %v %s", err, out)
	}
	p.db.Start()
	p.waitSpoolDrained(60 * time.Second) // the aggregator accepts again
	if err := p.agent.Stop(syscall.SIGTERM); err != nil {
		t.Errorf("agent exit: %v", err)
	}
	waitTotal(t, p.db, producedPoints(t, p.agent.Logs()), 60*time.Second)
}
