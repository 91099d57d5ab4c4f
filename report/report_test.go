package report

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
)

// day is the simulated day: fixed, so the golden files hold.
var day = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

var (
	buildOnce sync.Once
	aggBin    string
	buildErr  error
)

func aggregatorBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "joules-report-test")
		if err != nil {
			buildErr = err
			return
		}
		aggBin = filepath.Join(dir, "joules-aggregator")
		out, err := exec.Command("go", "build", "-o", aggBin, "../cmd/joules-aggregator").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return aggBin
}

// The simulated site, by hand: hosts a and b (hall h1) on BMC counters,
// host c (hall h2) without a BMC, its two GPUs its only IT energy, silent
// from 02:00 to 04:00; a site-wide facility meter at 1.25 × the IT power;
// token counters on a and b.
func hostAWatts(t time.Time) float64 {
	if h := t.Hour(); h >= 8 && h < 20 {
		return 600
	}
	return 400
}

const (
	hostBWatts   = 600.0
	gpuWatts     = 250.0 // every GPU but a's GPU 0
	idleGPUWatts = 300.0 // a's GPU 0, idle all day
	pueOfSite    = 1.25
	tokensA      = 100.0 // per second, all day
	tokensB      = 50.0  // per second, from 08:00 to midnight
)

// integral sums f over the day by the 30-s steps the simulation uses
// (f is constant within each step's start).
func integral(f func(time.Time) float64) float64 {
	total := 0.0
	for t := day; t.Before(day.Add(24 * time.Hour)); t = t.Add(30 * time.Second) {
		total += f(t) * 30
	}
	return total
}

func facilityWatts(t time.Time) float64 {
	return pueOfSite * (hostAWatts(t) + hostBWatts + 2*gpuWatts)
}

// siteDay renders the day as line protocol, in time order, 30 s apart.
func siteDay() []byte {
	var b bytes.Buffer
	var eA, eB, eF, gpuA0, gpu, tokA, tokB float64
	for t := day; !t.After(day.Add(24 * time.Hour)); t = t.Add(30 * time.Second) {
		ns := t.UnixNano()
		topoA := "hall=h1,host=a,rack=r1,site=dc1"
		topoB := "hall=h1,host=b,rack=r2,site=dc1"
		topoC := "hall=h2,host=c,rack=r9,site=dc1"
		fmt.Fprintf(&b, "joules_redfish_host_energy_joules_total,bmc=a-bmc,chassis=1,%s,method=counter,role=host value=%.3f %d\n", topoA, eA, ns)
		fmt.Fprintf(&b, "joules_redfish_host_energy_joules_total,bmc=b-bmc,chassis=1,%s,method=counter,role=host value=%.3f %d\n", topoB, eB, ns)
		for _, g := range []struct {
			topo, gpu string
			util      float64
			energy    float64
		}{{topoA, "0", 0, gpuA0}, {topoA, "1", 0.9, gpu}, {topoB, "0", 0.9, gpu}, {topoB, "1", 0.9, gpu}, {topoC, "0", 0.9, gpu}, {topoC, "1", 0.9, gpu}} {
			if g.topo == topoC && t.After(day.Add(2*time.Hour)) && t.Before(day.Add(4*time.Hour)) {
				continue // host c is silent
			}
			tags := fmt.Sprintf("gpu=%s,%s,uuid=GPU-%s-%s", g.gpu, g.topo, strings.Split(strings.Split(g.topo, "host=")[1], ",")[0], g.gpu)
			fmt.Fprintf(&b, "joules_gpu_utilization_ratio,%s value=%g %d\n", tags, g.util, ns)
			fmt.Fprintf(&b, "joules_gpu_energy_joules_total,%s,method=counter value=%.3f %d\n", tags, g.energy, ns)
		}
		fmt.Fprintf(&b, "joules_redfish_equipment_energy_joules_total,bmc=feed,equipment=1,equipment_type=electrical_bus,host=mgmt,method=counter,role=facility_input,site=dc1 value=%.3f %d\n", eF, ns)
		fmt.Fprintf(&b, "joules_work_total,%s,kind=generation,unit=token,workload=vllm value=%.0f %d\n", topoA, tokA, ns)
		fmt.Fprintf(&b, "joules_work_total,%s,kind=generation,unit=token,workload=vllm value=%.0f %d\n", topoB, tokB, ns)
		eA += hostAWatts(t) * 30
		eB += hostBWatts * 30
		eF += facilityWatts(t) * 30
		gpuA0 += idleGPUWatts * 30
		gpu += gpuWatts * 30
		tokA += tokensA * 30
		if t.Hour() >= 8 {
			tokB += tokensB * 30
		}
	}
	return b.Bytes()
}

// loadDay runs the real aggregator on the real InfluxDB, writes the day
// through it and waits until its accounting wrote every minute window.
func loadDay(t *testing.T) *testenv.InfluxDB {
	t.Helper()
	db, addr := startAggregator(t)
	lines := bytes.SplitAfter(siteDay(), []byte("\n"))
	for start := 0; start < len(lines); start += 20000 {
		body := bytes.Join(lines[start:min(start+20000, len(lines))], nil)
		testenv.PostLines(t, addr, "report-test", body)
	}
	waitMinuteWindows(t, db, addr, day, 1440)
	return db
}

// startAggregator starts the real aggregator, whose accounting takes
// points of any age, on a real InfluxDB; it returns the database and the
// aggregator's address (token "report-test").
func startAggregator(t *testing.T) (*testenv.InfluxDB, string) {
	t.Helper()
	db := testenv.StartInfluxDB(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tokens"), []byte("report-test\n"), 0o600)
	cfg := filepath.Join(dir, "aggregator.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`tokens_file: %s
influx: {url: %s, bucket: %s, spool_dir: %s, dead_letter_file: %s}
accounting: {grace: 1s, max_lateness: 87600h, forget_after: 48h, state_file: %s}
`, filepath.Join(dir, "tokens"), db.URL, db.Bucket, filepath.Join(dir, "spool"), filepath.Join(dir, "dead.lp"), filepath.Join(dir, "acct.state"))), 0o600)
	addr := testenv.FreeAddr(t)
	agg := testenv.StartProcess(t, aggregatorBinary(t), "--config.file="+cfg, "--web.listen-address="+addr)
	agg.WaitHTTP("http://" + addr + "/health")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the aggregator's log:\n%s", agg.Logs())
		}
	})
	return db, addr
}

// waitMinuteWindows waits until InfluxDB holds the n site PUE windows of a
// minute from from, and the aggregator has nothing left to write.
func waitMinuteWindows(t *testing.T, db *testenv.InfluxDB, addr string, from time.Time, n int) {
	t.Helper()
	q := NewInflux(db.URL, "", "", 30*time.Second)
	defer q.Close()
	testenv.WaitFor(t, 90*time.Second, fmt.Sprintf("%d site PUE windows in InfluxDB", n), func() bool {
		rows, err := q.Query(context.Background(), fmt.Sprintf(`from(bucket: %q) |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == "joules_pue" and r.resolution == "1m" and r.scope == "site" and r._field == "it_joules") |> count()`,
			db.Bucket, from.Format(time.RFC3339), from.Add(time.Duration(n)*time.Minute-time.Nanosecond).Format(time.RFC3339Nano)))
		return err == nil && len(rows) == 1 && num(rows[0].Values["_value"]) == float64(n) && outputIdle(addr)
	})
}

// outputIdle says whether the aggregator's output spool is empty.
func outputIdle(addr string) bool {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(body), "\njoules_output_spool_points 0\n")
}

func dayOptions(db *testenv.InfluxDB) Options {
	tou, _ := ParseTimeOfUse("0-8:0.10,8-20:0.20,20-24:0.10")
	return Options{Bucket: db.Bucket, From: day, To: day.Add(24 * time.Hour), TopN: 10,
		Carbon: Carbon{GramsPerKWh: 400}, Price: Price{TimeOfUse: tou, Currency: "EUR"},
		Now: func() time.Time { return day.Add(36 * time.Hour) }}
}

func near(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
		t.Errorf("%s = %.12g, want %.12g", what, got, want)
	}
}

// TestSimulatedDay checks every number of the report against the day
// computed here, independently of the accounting.
func TestSimulatedDay(t *testing.T) {
	db := loadDay(t)
	q := NewInflux(db.URL, "", "", 30*time.Second)
	defer q.Close()
	r, err := Build(context.Background(), q, dayOptions(db))
	if err != nil {
		t.Fatal(err)
	}

	itA, itB := integral(hostAWatts), hostBWatts*86400
	itC := 2 * gpuWatts * 86400 // counted across its silence: the counters measured it
	it := itA + itB + itC
	facility := integral(facilityWatts)
	gpuAll := (idleGPUWatts + 5*gpuWatts) * 86400
	tokens := tokensA*86400 + tokensB*16*3600
	cost := integral(func(t time.Time) float64 {
		price := 0.10
		if h := t.Hour(); h >= 8 && h < 20 {
			price = 0.20
		}
		return facilityWatts(t) * price
	}) / JoulesPerKWh

	if r.Resolution != "1m" || r.Scope != "site" {
		t.Errorf("resolution %q scope %q, want 1m and site", r.Resolution, r.Scope)
	}
	near(t, "IT energy kWh", r.Energy.ITkWh, it/JoulesPerKWh)
	near(t, "facility energy kWh", r.Energy.FacilitykWh, facility/JoulesPerKWh)
	if r.PUE.Value == nil {
		t.Fatalf("no PUE: %s", r.PUE.Reason)
	}
	near(t, "PUE", *r.PUE.Value, facility/it)
	near(t, "PUE is the site's", *r.PUE.Value, pueOfSite)
	// Host c is measured by its GPUs only: the hosts' IT energy is partly
	// an estimate, and so is a PUE from it: no category.
	if r.PUE.Category != 0 || !r.PUE.Estimate || r.PUE.Windows != 1440 || r.PUE.WindowsWithPUE != 1440 || r.PUE.Name != "Interim PUE" {
		t.Errorf("PUE category %d estimate %v, windows %d with PUE %d, %q; want 0, an estimate, 1440, 1440, an interim PUE", r.PUE.Category, r.PUE.Estimate, r.PUE.Windows, r.PUE.WindowsWithPUE, r.PUE.Name)
	}
	// The headline: the same 1,440 windows, facility over the hosts (no IT
	// meter), work over each.
	h := r.Headline
	if h.Windows != 1440 || h.Of != 1440 || h.FacilitykWh == nil || h.PUE == nil || h.RemainderKWh != nil {
		t.Fatalf("headline %+v", h)
	}
	near(t, "headline facility kWh", *h.FacilitykWh, facility/JoulesPerKWh)
	near(t, "headline IT kWh", h.ITkWh, it/JoulesPerKWh)
	near(t, "headline hosts kWh", h.HostsKWh, it/JoulesPerKWh)
	near(t, "headline PUE", *h.PUE, facility/it)
	if h.ITPoint != "the hosts, partly their GPUs + CPU (an estimate)" || !h.Estimate {
		t.Errorf("headline IT point %q estimate %v", h.ITPoint, h.Estimate)
	}
	if len(h.Work) != 1 || h.Work[0].PerFacilityJoule == nil || h.Work[0].PerHostJoule == nil {
		t.Fatalf("headline work %+v", h.Work)
	}
	near(t, "headline tokens", h.Work[0].Work, tokens)
	near(t, "headline tokens per facility joule", *h.Work[0].PerFacilityJoule, tokens/facility)
	near(t, "headline tokens per host joule", *h.Work[0].PerHostJoule, tokens/it)
	path := map[string]float64{}
	for _, ps := range r.PowerPath {
		path[ps.Role] = ps.KWh
	}
	near(t, "power path facility", path["facility_input"], facility/JoulesPerKWh)
	near(t, "power path hosts", path["hosts"], it/JoulesPerKWh)
	near(t, "power path GPUs", path["components"], gpuAll/JoulesPerKWh)
	silent := 120.0 // minutes host c sent nothing
	near(t, "IT coverage", r.Energy.ITCoverage, (3*1440-silent)/(3*1440))
	near(t, "PUE coverage", r.PUE.Coverage, (3*1440-silent)/(3*1440))
	if !r.Energy.LowerBound {
		t.Error("host c (GPUs only) does not make the IT energy a lower bound")
	}
	near(t, "GPU kWh", r.Idle.GPUkWh, gpuAll/JoulesPerKWh)
	near(t, "idle GPU kWh", r.Idle.IdlekWh, idleGPUWatts*86400/JoulesPerKWh)
	near(t, "idle share", r.Idle.Share, idleGPUWatts/(idleGPUWatts+5*gpuWatts))
	if len(r.Work) != 1 || r.Work[0].Unit != "token" {
		t.Fatalf("work rows %+v, want one for tokens", r.Work)
	}
	near(t, "tokens", r.Work[0].Work, tokens)
	near(t, "tokens per IT joule", r.Work[0].PerJoule, tokens/it)
	near(t, "tokens per facility kWh", *r.Work[0].PerFacilityKWh, tokens/facility*JoulesPerKWh)
	near(t, "carbon kg", r.Carbon.Value, facility/JoulesPerKWh*0.4)
	near(t, "cost", r.Cost.Value, math.Round(cost*100)/100)

	wantHosts := []struct {
		host string
		kwh  float64
	}{{"b", itB / JoulesPerKWh}, {"a", itA / JoulesPerKWh}, {"c", itC / JoulesPerKWh}}
	if len(r.Hosts) != 3 || r.HostCount != 3 {
		t.Fatalf("hosts %+v", r.Hosts)
	}
	for i, w := range wantHosts {
		if r.Hosts[i].Host != w.host {
			t.Errorf("host %d is %s, want %s (by energy)", i, r.Hosts[i].Host, w.host)
		}
		near(t, "host "+w.host+" kWh", r.Hosts[i].KWh, w.kwh)
	}
	near(t, "host c coverage", r.Hosts[2].Coverage, (1440-silent)/1440)
	if len(r.Halls) != 2 || r.Halls[0].Hall != "h1" || r.Halls[0].PPUE != nil {
		t.Errorf("halls %+v: want h1 and h2, without pPUE (no hall meters)", r.Halls)
	} else {
		near(t, "hall h1 kWh", r.Halls[0].ITkWh, (itA+itB)/JoulesPerKWh)
		near(t, "hall h2 kWh", r.Halls[1].ITkWh, itC/JoulesPerKWh)
	}
	if r.GPUCount != 6 || r.GPUs[0].Host != "a" || r.GPUs[0].GPU != "GPU-a-0" {
		t.Errorf("GPUs: %d, first %+v; want 6, a's GPU 0 first", r.GPUCount, r.GPUs)
	}
	var reconciled bool
	for _, rc := range r.Reconciliation {
		if rc.Kind == "bmc_vs_components" {
			reconciled = true
			near(t, "BMC reference kWh", rc.ReferenceKWh, (itA+itB)/JoulesPerKWh)
			near(t, "components kWh", rc.PartsKWh, (idleGPUWatts+3*gpuWatts)*86400/JoulesPerKWh)
		}
	}
	if !reconciled {
		t.Error("no BMC against components line")
	}
	gaps := strings.Join(r.Gaps, "\n")
	for _, want := range []string{"c (91.7 %)", "lower bound", "120 windows have a PUE from partial data"} {
		if !strings.Contains(gaps, want) {
			t.Errorf("gaps do not flag %q:\n%s", want, gaps)
		}
	}
	if len(r.Series.Power) != 96 || len(r.Series.PUE) != 96 || len(r.Series.WorkPerJoule) != 96 {
		t.Errorf("chart series have %d, %d and %d steps; want 96 (15 minutes)", len(r.Series.Power), len(r.Series.PUE), len(r.Series.WorkPerJoule))
	}
	// Every number the charts hold, from the day's power: per 15-minute
	// step, the mean of the hosts' power (host c's GPUs only while it is
	// heard; its counters span its silence, so its steps are whole), and the
	// facility's.
	for _, pt := range r.Series.Power {
		mean := func(f func(time.Time) float64) float64 {
			total := 0.0
			for t := pt.Time; t.Before(pt.Time.Add(15 * time.Minute)); t = t.Add(30 * time.Second) {
				total += f(t) * 30
			}
			return total / 900
		}
		hosts := mean(func(t time.Time) float64 { return hostAWatts(t) + hostBWatts + 2*gpuWatts })
		near(t, "chart hosts W at "+pt.Time.Format("15:04"), pt.HostsWatts, hosts)
		near(t, "chart IT W at "+pt.Time.Format("15:04"), pt.ITWatts, hosts)
		if pt.FacilityWatts == nil {
			t.Fatalf("chart step %s has no facility power", pt.Time)
		}
		near(t, "chart facility W at "+pt.Time.Format("15:04"), *pt.FacilityWatts, mean(facilityWatts))
	}
	for _, pt := range r.Series.PUE {
		near(t, "chart PUE at "+pt.Time.Format("15:04"), pt.Value, pueOfSite)
	}
	racks := map[string]float64{"r1": itA / JoulesPerKWh, "r2": itB / JoulesPerKWh, "r9": itC / JoulesPerKWh}
	if len(r.Racks) != 3 {
		t.Errorf("racks %+v", r.Racks)
	}
	for _, rk := range r.Racks {
		near(t, "rack "+rk.Rack+" kWh", rk.KWh, racks[rk.Rack])
	}
	for _, g := range r.GPUs {
		want := gpuWatts * 86400 / JoulesPerKWh
		if g.GPU == "GPU-a-0" {
			want = idleGPUWatts * 86400 / JoulesPerKWh
			near(t, "GPU a-0 idle kWh", g.IdleKWh, want)
		} else {
			near(t, "GPU "+g.GPU+" idle kWh", g.IdleKWh, 0)
		}
		near(t, "GPU "+g.GPU+" kWh", g.KWh, want)
	}

	t.Run("golden", func(t *testing.T) { golden(t, r) })
	t.Run("markdown", func(t *testing.T) {
		var md bytes.Buffer
		if err := Write(&md, r, "md"); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"# Energy report\n", "| IT energy (hosts) | 38.40 kWh (a lower bound", "| Interim PUE | 1.250, an estimate, no ISO/IEC 30134-2 category, coverage 97.2 %, 1440 of 1440 windows |",
			"| tokens | 11,520,000, 0.08333 per IT joule, 240,000 per facility kWh |", "| Cost | 7.350 EUR", "- 120 windows have a PUE from partial data", "| c | r9 | 12.00 | 31.2 % | 91.7 % |"} {
			if !strings.Contains(md.String(), want) {
				t.Errorf("Markdown lacks %q:\n%s", want, md.String())
			}
		}
	})
	t.Run("browser", func(t *testing.T) { inBrowser(t, r) })
	t.Run("filters", func(t *testing.T) {
		opt := dayOptions(db)
		opt.Host = "c"
		rc, err := Build(context.Background(), q, opt)
		if err != nil {
			t.Fatal(err)
		}
		near(t, "host c report kWh", rc.Energy.ITkWh, itC/JoulesPerKWh)
		if rc.PUE.Value != nil || !strings.Contains(rc.PUE.Reason, "site or a hall") {
			t.Errorf("a host report has PUE %v (%s)", rc.PUE.Value, rc.PUE.Reason)
		}
		opt = dayOptions(db)
		opt.Hall = "h2"
		rh, err := Build(context.Background(), q, opt)
		if err != nil {
			t.Fatal(err)
		}
		if rh.PUE.Value != nil || !strings.Contains(rh.PUE.Reason, "no facility_input meter in hall h2") {
			t.Errorf("hall h2 has pPUE %v (%s), want none: its facility is not metered", rh.PUE.Value, rh.PUE.Reason)
		}
	})
	t.Run("empty range", func(t *testing.T) {
		opt := dayOptions(db)
		opt.From, opt.To = day.AddDate(0, 0, -10), day.AddDate(0, 0, -9)
		if _, err := Build(context.Background(), q, opt); err == nil || !strings.Contains(err.Error(), "no accounting data") {
			t.Errorf("err = %v", err)
		}
	})
}

// golden compares the CSV and JSON renderings with testdata, numbers to
// 1e-9 relative (InfluxDB may sum in another order), names exactly.
func golden(t *testing.T, r *Report) {
	for _, format := range []string{"csv", "json"} {
		var buf bytes.Buffer
		if err := Write(&buf, r, format); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", "day."+format)
		if os.Getenv("JOULES_UPDATE_GOLDEN") != "" {
			os.MkdirAll("testdata", 0o755)
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (JOULES_UPDATE_GOLDEN=1 writes it)", err)
		}
		if format == "csv" {
			compareCSV(t, buf.Bytes(), want)
			continue
		}
		var got, exp any
		json.Unmarshal(buf.Bytes(), &got)
		json.Unmarshal(want, &exp)
		compareJSON(t, "$", got, exp)
	}
}

func compareCSV(t *testing.T, got, want []byte) {
	t.Helper()
	g, err := csv.NewReader(bytes.NewReader(got)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	w, _ := csv.NewReader(bytes.NewReader(want)).ReadAll()
	if len(g) != len(w) {
		t.Fatalf("CSV has %d rows, golden %d", len(g), len(w))
	}
	for i := range g {
		for j := range g[i] {
			gv, e1 := strconv.ParseFloat(g[i][j], 64)
			wv, e2 := strconv.ParseFloat(w[i][j], 64)
			if e1 == nil && e2 == nil && math.Abs(gv-wv) <= 1e-9*math.Max(1, math.Abs(wv)) {
				continue
			}
			if g[i][j] != w[i][j] {
				t.Errorf("CSV row %d column %s: %q, golden %q", i, w[0][j], g[i][j], w[i][j])
			}
		}
	}
}

func compareJSON(t *testing.T, path string, got, want any) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			t.Errorf("%s: keys differ: %v, golden %v", path, keys(g), keys(w))
			return
		}
		for k := range w {
			compareJSON(t, path+"."+k, g[k], w[k])
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			t.Errorf("%s: %d items, golden %d", path, len(g), len(w))
			return
		}
		for i := range w {
			compareJSON(t, fmt.Sprintf("%s[%d]", path, i), g[i], w[i])
		}
	case float64:
		if g, ok := got.(float64); !ok || math.Abs(g-w) > 1e-9*math.Max(1, math.Abs(w)) {
			t.Errorf("%s = %v, golden %v", path, got, w)
		}
	default:
		if got != want {
			t.Errorf("%s = %v, golden %v", path, got, want)
		}
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
