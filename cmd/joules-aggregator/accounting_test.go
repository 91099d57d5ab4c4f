package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
)

// siteLines is a synthetic site in line protocol, seconds from..to after
// base: two hosts on BMC energy counters (500 W and 700 W), a site-wide
// facility meter at 1500 W (PUE 1.25) and 300 tokens/s on host a.
func siteLines(base time.Time, from, to int) []byte {
	var b bytes.Buffer
	for i := from; i <= to; i++ {
		ns := base.Add(time.Duration(i) * time.Second).UnixNano()
		fmt.Fprintf(&b, "joules_redfish_host_energy_joules_total,bmc=a-bmc,chassis=1,hall=h1,host=a,method=counter,rack=r1,role=host,site=s1 value=%d %d\n", 1_000_000+500*i, ns)
		fmt.Fprintf(&b, "joules_redfish_host_energy_joules_total,bmc=b-bmc,chassis=1,hall=h1,host=b,method=counter,rack=r2,role=host,site=s1 value=%d %d\n", 2_000_000+700*i, ns)
		fmt.Fprintf(&b, "joules_redfish_equipment_energy_joules_total,bmc=fac,equipment=1,equipment_type=electrical_bus,host=mgmt,method=counter,role=facility_input,site=s1 value=%d %d\n", 1500*i, ns)
		fmt.Fprintf(&b, "joules_work_total,hall=h1,host=a,kind=generation,rack=r1,site=s1,unit=token,workload=vllm value=%d %d\n", 300*i, ns)
	}
	return b.Bytes()
}

// TestAccountingEndToEnd writes a synthetic site through the real
// aggregator, restarts it halfway (the checkpoint carries the state), and
// reads the derived measurements back from the real InfluxDB.
func TestAccountingEndToEnd(t *testing.T) {
	t.Parallel()
	db := testenv.StartInfluxDB(t)
	cfg := writeAccountingConfig(t, db, "window: 1s, grace: 1s, max_lateness: 10m, checkpoint_interval: 1s")
	addr := testenv.FreeAddr(t)
	start := func() *testenv.Process {
		p := testenv.StartProcess(t, filepath.Join(binDir, "joules-aggregator"), "--config.file="+cfg, "--web.listen-address="+addr, "--log.format=json")
		p.WaitHTTP("http://" + addr + "/health")
		return p
	}

	base := time.Now().Truncate(time.Second).Add(-40 * time.Second)
	agg := start()
	testenv.PostLines(t, addr, pipelineToken, siteLines(base, 0, 10))
	if err := agg.Stop(syscall.SIGTERM); err != nil {
		t.Fatalf("aggregator exit: %v\n%s", err, agg.Logs())
	}
	agg = start()
	testenv.PostLines(t, addr, pipelineToken, siteLines(base, 10, 20)) // second 10 again: the replayed point

	query := func(filter string) []any {
		return flux(t, db, fmt.Sprintf(`from(bucket: %q) |> range(start: -1h) |> filter(fn: (r) => %s) |> group() |> sort(columns: ["_time"])`, db.Bucket, filter))
	}
	var pues []any
	deadline := time.Now().Add(30 * time.Second)
	for {
		pues = query(`r._measurement == "joules_pue" and r.resolution == "1s" and r.scope == "site" and r._field == "pue"`)
		if len(pues) >= 20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if len(pues) != 20 {
		t.Fatalf("InfluxDB has %d one-second PUE values, want 20\n%s", len(pues), agg.Logs())
	}
	for i, v := range pues {
		if got := v.(float64); math.Abs(got-1.25) > 1.25e-9 {
			t.Errorf("PUE of second %d = %v, want 1.25", i, got)
		}
	}
	it := query(`r._measurement == "joules_energy" and r.resolution == "1s" and r.scope == "site" and r.kind == "it" and r._field == "joules"`)
	total := 0.0
	for _, v := range it {
		total += v.(float64)
	}
	if len(it) != 20 || total != 1200*20 {
		t.Errorf("site IT energy: %d windows, %v J in all; want 20 and %v J (nothing lost or doubled across the restart)", len(it), total, 1200*20)
	}
	for _, v := range query(`r._measurement == "joules_work_efficiency" and r.resolution == "1s" and r.scope == "site" and r.unit == "token" and r._field == "per_joule"`) {
		if got := v.(float64); math.Abs(got-0.25) > 1e-12 {
			t.Errorf("tokens per joule = %v, want 300/1200 = 0.25", got)
			break
		}
	}

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`joules_pue_ratio{hall="",scope="site",site="s1",window="1s"} 1.25`, `joules_work_per_joule{hall="",scope="site",site="s1",unit="token"} 0.25`, "joules_accounting_duplicate_points_total 4"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(string(metrics), "joules_pue_ratio", "joules_work_per", "joules_accounted", "joules_accounting"))
		}
	}
}

func grepLines(text string, prefixes ...string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) {
				out = append(out, line)
			}
		}
	}
	return strings.Join(out, "\n")
}

// writeAccountingConfig writes an aggregator's configuration for db (token
// pipelineToken) with the accounting options given, and returns its path.
func writeAccountingConfig(t *testing.T, db *testenv.InfluxDB, accounting string) string {
	t.Helper()
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte(pipelineToken+"\n"), 0o600)
	cfg := filepath.Join(dir, "aggregator.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`tokens_file: %s
influx: {url: %s, bucket: %s, spool_dir: %s, dead_letter_file: %s, timeout: 2s}
accounting: {%s, state_file: %s}
`, tokens, db.URL, db.Bucket, filepath.Join(dir, "spool"), filepath.Join(dir, "dead.lp"), accounting, filepath.Join(dir, "accounting.state"))), 0o600)
	return cfg
}
