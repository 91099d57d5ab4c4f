package main

import (
	"bytes"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
)

// TestMessyInputEndToEnd writes each class of messy input through the
// public write API into a real aggregator and reads the accounting back
// from a real InfluxDB: every class on a site of its own, in one minute
// window, with values worked out by hand (as in the accountant's table
// test, aggregator/accounting/truth_test.go).
func TestMessyInputEndToEnd(t *testing.T) {
	t.Parallel()
	db := testenv.StartInfluxDB(t)
	cfg := writeAccountingConfig(t, db, "window: 1m, grace: 1s")
	addr := testenv.FreeAddr(t)
	agg := testenv.StartProcess(t, filepath.Join(binDir, "joules-aggregator"), "--config.file="+cfg, "--web.listen-address="+addr, "--log.format=json")
	agg.WaitHTTP("http://" + addr + "/health")

	// A minute window that has ended: its derived points are written at once.
	base := time.Now().Truncate(time.Minute).Add(-10 * time.Minute)
	var b bytes.Buffer
	line := func(measurement, tags string, sec, value float64) {
		fmt.Fprintf(&b, "%s,%s value=%v %d\n", measurement, tags, value, base.Add(time.Duration(sec*float64(time.Second))).UnixNano())
	}
	host := func(site string) string {
		return "bmc=" + site + "-bmc,chassis=1,hall=h1,host=" + site + "-host,rack=r1,role=host,site=" + site
	}
	// A stale reading 100 J below the last, at 30 s: 500 W × 60 s.
	for _, r := range [][2]float64{{0, 1e6}, {10, 1.005e6}, {20, 1.01e6}, {30, 1.0099e6}, {40, 1.02e6}, {50, 1.025e6}, {60, 1.03e6}} {
		line("joules_redfish_host_energy_joules_total", host("dip")+",method=counter", r[0], r[1])
	}
	// A PSU replaced in a summed counter at 30 s: 25,000 J over 50 s.
	for _, r := range [][2]float64{{0, 2e9}, {10, 2e9 + 5000}, {20, 2e9 + 10000}, {30, 1e9}, {40, 1e9 + 5000}, {50, 1e9 + 10000}, {60, 1e9 + 15000}} {
		line("joules_redfish_host_energy_joules_total", host("psu")+",method=counter", r[0], r[1])
	}
	// An agent restarted after a driver reload, without its state: a new
	// epoch on the 3 MJ since the driver loaded. 700 W × (30 + 20) s.
	gpu := "gpu=0,hall=h1,host=restart-host,method=counter,rack=r1,site=restart,uuid=GPU-1"
	for _, r := range []struct {
		sec, v float64
		epoch  string
	}{{0, 5e6, "aaaa"}, {10, 5.007e6, "aaaa"}, {20, 5.014e6, "aaaa"}, {30, 5.021e6, "aaaa"}, {40, 3e6, "bbbb"}, {50, 3.007e6, "bbbb"}, {60, 3.014e6, "bbbb"}} {
		line("joules_gpu_energy_joules_total", "epoch="+r.epoch+","+gpu, r.sec, r.v)
	}
	// A BMC counter that stops at 30 s, power at 900 W throughout: 600 W ×
	// 30 s + 900 W × 30 s.
	for s := 0.0; s <= 60; s += 10 {
		line("joules_redfish_host_power_watts", host("flip"), s, 900)
		if s <= 30 {
			line("joules_redfish_host_energy_joules_total", host("flip")+",method=counter", s, 1e6+600*s)
		}
	}
	// A power-only BMC unreadable from 20 to 50 s: its integrated counter
	// flat in a new epoch. 500 W × 30 s at coverage 0.5.
	for _, r := range []struct {
		sec, v float64
		epoch  string
	}{{0, 0, "e1"}, {10, 5000, "e1"}, {20, 10000, "e1"}, {50, 10000, "e2"}, {60, 15000, "e2"}} {
		line("joules_redfish_host_energy_joules_total", "epoch="+r.epoch+","+host("gap")+",method=integrated", r.sec, r.v)
	}
	// Power 100 × (1 + s/10) W; the 30 s reading after the 40 s one:
	// 100 × 10 × (1.5 + 2.5 + … + 6.5) = 24,000 J.
	for _, s := range []float64{0, 10, 20, 40, 30, 50, 60} {
		line("joules_redfish_host_power_watts", host("order"), s, 100*(1+s/10))
	}
	// A facility meter at 1,500 W over hosts at 2,000 W: no PUE.
	for s := 0.0; s <= 60; s += 10 {
		line("joules_redfish_host_energy_joules_total", host("low"), s, 1e6+2000*s)
		line("joules_redfish_equipment_energy_joules_total", "bmc=feed,equipment=1,equipment_type=electrical_bus,host=mgmt,method=counter,role=facility_input,site=low", s, 1500*s)
	}
	// A PDU that meters one feed of a rack: 520 W of the host's 1,000 W;
	// facility 2,500 W. Not used: PUE 2.5 from the host, category 3.
	for s := 0.0; s <= 60; s += 10 {
		line("joules_redfish_host_energy_joules_total", host("ab")+",method=counter", s, 1e6+1000*s)
		line("joules_redfish_equipment_energy_joules_total", "bmc=pdu-a,equipment=1,equipment_type=rack_pdu,hall=h1,host=mgmt,method=counter,rack=r1,role=pdu_output,site=ab", s, 520*s)
		line("joules_redfish_equipment_energy_joules_total", "bmc=feed,equipment=1,equipment_type=electrical_bus,host=mgmt,method=counter,role=facility_input,site=ab", s, 2500*s)
	}
	testenv.PostLines(t, addr, pipelineToken, b.Bytes())

	value := func(measurement, site, scope, field string, extra ...string) (any, bool) {
		filter := fmt.Sprintf(`r._measurement == %q and r.site == %q and r.scope == %q and r.resolution == "1m" and r._field == %q`, measurement, site, scope, field)
		for _, e := range extra {
			filter += " and " + e
		}
		rows := flux(t, db, fmt.Sprintf(`from(bucket: %q) |> range(start: %s, stop: %s) |> filter(fn: (r) => %s)`,
			db.Bucket, base.Format(time.RFC3339), base.Add(time.Minute).Format(time.RFC3339), filter))
		if len(rows) == 0 {
			return nil, false
		}
		return rows[0], true
	}
	it := func(site, field string) any {
		v, _ := value("joules_energy", site, "host", field, `r.kind == "it"`)
		return v
	}
	testenv.WaitFor(t, 30*time.Second, "the window's derived points in InfluxDB", func() bool {
		_, ok := value("joules_pue", "ab", "site", "pue")
		return ok
	})

	for _, c := range []struct {
		site             string
		joules, coverage float64
	}{{"dip", 30000, 1}, {"psu", 25000, 50.0 / 60}, {"flip", 45000, 1}, {"gap", 15000, 0.5}, {"order", 24000, 1}} {
		j, _ := it(c.site, "joules").(float64)
		cov, _ := it(c.site, "coverage").(float64)
		if math.Abs(j-c.joules) > 1e-6*c.joules || math.Abs(cov-c.coverage) > 1e-9 {
			t.Errorf("site %s: host IT energy %v J at coverage %v, want %v J at %v", c.site, j, cov, c.joules, c.coverage)
		}
	}
	if r, _ := it("psu", "reason").(string); !strings.Contains(r, "1 implausible step") {
		t.Errorf("site psu: reason %q, want the implausible step named", r)
	}
	if j, _ := value("joules_energy", "restart", "gpu", "joules"); j != 35000.0 {
		t.Errorf("site restart: GPU energy %v J, want 35,000", j)
	}
	if _, has := value("joules_pue", "low", "site", "pue"); has {
		t.Error("site low: a PUE was written with facility below IT")
	}
	if r, _ := value("joules_pue", "low", "site", "reason"); !strings.HasPrefix(fmt.Sprint(r), "implausible: facility below IT") {
		t.Errorf("site low: reason %q", r)
	}
	pue, _ := value("joules_pue", "ab", "site", "pue")
	category, _ := value("joules_pue", "ab", "site", "category")
	reason, _ := value("joules_pue", "ab", "site", "reason")
	if p, _ := pue.(float64); math.Abs(p-2.5) > 1e-9 || category != int64(3) || !strings.Contains(fmt.Sprint(reason), "pdu_output meters read 48 % less") {
		t.Errorf("site ab: PUE %v, category %v, reason %q; want 2.5 from the host, category 3, the PDU refused", pue, category, reason)
	}
	if interim, _ := value("joules_pue", "ab", "site", "interim"); interim != true {
		t.Errorf("site ab: interim = %v, want true", interim)
	}
}
