package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/browser"
	"github.com/joules-energy/joules/internal/sitemodel"
	"github.com/joules-energy/joules/internal/testenv"
)

// The coherent site: three DGX H200 hosts in two racks, a PDU per rack, a
// UPS and the facility meter, all from the site model, for half an hour.
var siteFrom = time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)

const siteMinutes = 30

// siteModels are what each host's inference pod serves.
var siteModels = map[string]string{"gpu-01": "llama-8b", "gpu-02": "llama-8b", "gpu-03": "llama-70b"}

func coherentSite(t *testing.T) *sitemodel.Model {
	t.Helper()
	m, err := sitemodel.New(sitemodel.Site{Seed: "report-site", Racks: []sitemodel.Rack{
		{Name: "r1", Hosts: []sitemodel.RackHost{{Name: "gpu-01", Server: "dgxh200"}, {Name: "gpu-02", Server: "dgxh200"}}},
		{Name: "r2", Hosts: []sitemodel.RackHost{{Name: "gpu-03", Server: "dgxh200"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// siteLines writes what the site's agents would send, every 10 s: each
// host's BMC energy counter, its GPUs' counters and a token counter that
// follows its GPUs' utilization; each rack's PDU output, the UPS output and
// the facility meter as energy counters.
func siteLines(m *sitemodel.Model) []byte {
	var b bytes.Buffer
	for at := siteFrom; !at.After(siteFrom.Add(siteMinutes * time.Minute)); at = at.Add(10 * time.Second) {
		ns := at.UnixNano()
		chain := m.Energy(at)
		for _, rack := range m.Site().Racks {
			for _, rh := range rack.Hosts {
				h := m.Host(rh.Name)
				e := h.Energy(at)
				topo := fmt.Sprintf("hall=h1,host=%s,rack=%s,site=s1", rh.Name, rack.Name)
				fmt.Fprintf(&b, "joules_redfish_host_energy_joules_total,bmc=%s-bmc,chassis=1,%s,method=counter,role=host value=%v %d\n", rh.Name, topo, e.Input, ns)
				for i := range e.GPU {
					mj, _ := h.GPUEnergy(i, at)
					fmt.Fprintf(&b, "joules_gpu_energy_joules_total,gpu=%d,%s,method=counter,uuid=GPU-%s-%d value=%v %d\n", i, topo, rh.Name, i, float64(mj)/1000, ns)
				}
				// The workloads of the pass, as the agent writes them
				// after the GPUs' readings.
				for i, ws := range h.Workloads(at, siteModels[rh.Name]) {
					for _, w := range ws {
						tags := fmt.Sprintf("gpu=%d,%s,uuid=GPU-%s-%d,workload=%s,workload_kind=%s", i, topo, rh.Name, i, w.ID, w.Kind)
						for _, t := range w.Tags {
							tags += "," + t[0] + "=" + t[1]
						}
						fmt.Fprintf(&b, "joules_gpu_workload_share_ratio,%s value=%v %d\n", tags, w.Share, ns)
					}
				}
				fmt.Fprintf(&b, "joules_work_total,%s,kind=generation,model_name=%s,unit=token,workload=vllm value=%v %d\n", topo, siteModels[rh.Name], 1000*e.UtilizationSeconds, ns)
			}
			fmt.Fprintf(&b, "joules_redfish_equipment_energy_joules_total,bmc=pdu-%s,equipment=1,equipment_type=rack_pdu,hall=h1,host=mgmt,method=counter,rack=%s,role=pdu_output,site=s1 value=%v %d\n",
				rack.Name, rack.Name, chain.PDUOutput[rack.Name], ns)
		}
		fmt.Fprintf(&b, "joules_redfish_equipment_energy_joules_total,bmc=ups,equipment=1,equipment_type=electrical_bus,host=mgmt,method=counter,role=ups_output,site=s1 value=%v %d\n", chain.UPSOutput, ns)
		fmt.Fprintf(&b, "joules_redfish_equipment_energy_joules_total,bmc=facility,equipment=1,equipment_type=electrical_bus,host=mgmt,method=counter,role=facility_input,site=s1 value=%v %d\n", chain.Facility, ns)
	}
	return b.Bytes()
}

// loadSite writes the site through the real aggregator into the real
// InfluxDB and waits for its accounting's windows.
func loadSite(t *testing.T, m *sitemodel.Model) *testenv.InfluxDB {
	t.Helper()
	db, addr := startAggregator(t)
	testenv.PostLines(t, addr, "report-test", siteLines(m))
	waitMinuteWindows(t, db, addr, siteFrom, siteMinutes)
	return db
}

// shown is a number as a reader sees it, and how far the truth may be from
// it: half a unit of its last digit.
type shown struct {
	v, ulp float64
	text   string
}

func parseShown(t *testing.T, text string) shown {
	t.Helper()
	s := strings.TrimSpace(text)
	for _, suffix := range []string{"kWh", "%"} {
		s = strings.TrimSpace(strings.TrimSuffix(s, suffix))
	}
	s = strings.ReplaceAll(s, ",", "")
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("%q on the page is no number: %v", text, err)
	}
	decimals := 0
	if _, frac, ok := strings.Cut(s, "."); ok {
		decimals = len(frac)
	}
	return shown{v: v, ulp: 0.5 * math.Pow(10, -float64(decimals)), text: text}
}

func (s shown) lo() float64 { return s.v - s.ulp }
func (s shown) hi() float64 { return s.v + s.ulp }

// agrees says whether a shown number is one a value in [lo, hi] rounds to.
func (s shown) agrees(lo, hi float64) bool { return s.hi() >= lo && s.lo() <= hi }

// TestCoherentSiteFirstScreenAddsUp builds the report of the coherent
// site, opens it in Chromium, and reads the first screen as a reader does:
// every figure on it must follow from the others there (PUE = facility ÷
// IT, the remainder = IT − hosts and its share, tokens per facility and
// per host joule), the power path must lose energy only on its way down,
// and the PUE must be the model's.
func TestCoherentSiteFirstScreenAddsUp(t *testing.T) {
	chromium := testenv.Tool(t, "chromium", "apt-get install -y chromium")
	m := coherentSite(t)
	db := loadSite(t, m)
	q := NewInflux(db.URL, "", "", 30*time.Second)
	defer q.Close()
	to := siteFrom.Add(siteMinutes * time.Minute)
	r, err := Build(context.Background(), q, Options{Bucket: db.Bucket, From: siteFrom, To: to, Now: func() time.Time { return to.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	upsPUE, _ := m.PUE(siteFrom, to)
	if r.Headline.PUE == nil || math.Abs(*r.Headline.PUE-upsPUE) > 1e-6*upsPUE || r.Headline.ITPoint != "UPS output" || r.Headline.Category != 1 {
		t.Fatalf("headline PUE %v at the %q (category %d), want the model's %v at the UPS output, category 1", r.Headline.PUE, r.Headline.ITPoint, r.Headline.Category, upsPUE)
	}

	var html bytes.Buffer
	if err := Write(&html, r, "html"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "report.html")
	if err := os.WriteFile(path, html.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(artifactDir(t), "site-report.html"), html.Bytes(), 0o644)
	const read = `JSON.stringify({
  height: innerHeight,
  figures: Object.fromEntries([...document.querySelectorAll('#headline [id^="h-"]')].map(e => [e.id, {text: e.textContent, bottom: e.getBoundingClientRect().bottom}])),
  work: [...document.querySelectorAll('#headline .h-work')].map(c => ({unit: c.dataset.unit,
    total: c.querySelector('.h-work-total')?.textContent, facility: c.querySelector('.h-per-facility')?.textContent,
    host: c.querySelector('.h-per-host')?.textContent, bottom: c.getBoundingClientRect().bottom})),
  path: [...document.querySelectorAll('#power-path tbody tr')].map(tr => ({role: tr.dataset.role, text: tr.cells[1].textContent})),
  label: document.querySelector('#headline .equation .card:nth-child(3) .label')?.textContent
})`
	out, err := browser.Evaluate(context.Background(), chromium, path, 1200, read)
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Height  float64
		Figures map[string]struct {
			Text   string
			Bottom float64
		}
		Work []struct {
			Unit, Total, Facility, Host string
			Bottom                      float64
		}
		Path  []struct{ Role, Text string }
		Label string
	}
	if err := json.Unmarshal([]byte(out), &page); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	fig := func(id string) shown {
		f, ok := page.Figures[id]
		if !ok {
			t.Fatalf("the first screen has no %s: %s", id, out)
		}
		if f.Bottom > page.Height {
			t.Errorf("%s (%q) is below the first screen (%v > %v px)", id, f.Text, f.Bottom, page.Height)
		}
		return parseShown(t, f.Text)
	}
	facility, it, pue, hosts, rem, share := fig("h-facility"), fig("h-it"), fig("h-pue"), fig("h-hosts"), fig("h-remainder"), fig("h-remainder-share")
	if page.Label != "IT energy at the UPS output" {
		t.Errorf("the IT energy is labelled %q, want where it was measured", page.Label)
	}
	if !pue.agrees(facility.lo()/it.hi(), facility.hi()/it.lo()) {
		t.Errorf("PUE %s is not facility %s ÷ IT %s", pue.text, facility.text, it.text)
	}
	if !rem.agrees(it.lo()-hosts.hi(), it.hi()-hosts.lo()) {
		t.Errorf("remainder %s is not IT %s − hosts %s", rem.text, it.text, hosts.text)
	}
	if !share.agrees(100*rem.lo()/it.hi(), 100*rem.hi()/it.lo()) {
		t.Errorf("remainder share %s is not %s ÷ %s", share.text, rem.text, it.text)
	}
	if len(page.Work) != 1 || page.Work[0].Unit != "token" {
		t.Fatalf("work on the first screen: %+v", page.Work)
	}
	w := page.Work[0]
	if w.Bottom > page.Height {
		t.Errorf("tokens are below the first screen")
	}
	tokens, perF, perH := parseShown(t, w.Total), parseShown(t, w.Facility), parseShown(t, w.Host)
	if !perF.agrees(tokens.lo()/(facility.hi()*JoulesPerKWh), tokens.hi()/(facility.lo()*JoulesPerKWh)) {
		t.Errorf("tokens per facility joule %s is not %s ÷ %s kWh", perF.text, tokens.text, facility.text)
	}
	if !perH.agrees(tokens.lo()/(hosts.hi()*JoulesPerKWh), tokens.hi()/(hosts.lo()*JoulesPerKWh)) {
		t.Errorf("tokens per host joule %s is not %s ÷ %s kWh", perH.text, tokens.text, hosts.text)
	}

	// The power path, as shown: facility ≥ UPS output ≥ PDU output ≥ hosts
	// ≥ GPUs, and its facility is the headline's.
	order := []string{"facility_input", "ups_output", "pdu_output", "hosts", "components"}
	var prev *shown
	got := map[string]shown{}
	for _, p := range page.Path {
		got[p.Role] = parseShown(t, p.Text)
	}
	for _, role := range order {
		s, ok := got[role]
		if !ok {
			t.Errorf("the power path has no %s: %+v", role, page.Path)
			continue
		}
		if prev != nil && s.lo() > prev.hi() {
			t.Errorf("the power path gains energy on its way down: %s %s after %s", role, s.text, prev.text)
		}
		prev = &s
	}
	if got["facility_input"].v != facility.v || got["ups_output"].v != it.v || got["hosts"].v != hosts.v {
		t.Errorf("the power path (%+v) and the headline (facility %s, IT %s, hosts %s) disagree", page.Path, facility.text, it.text, hosts.text)
	}
	// And the model's energies, end to end (the counters measured every
	// window exactly).
	a, b := m.Energy(siteFrom), m.Energy(to)
	var bmc, pdu float64
	for _, v := range b.BMC {
		bmc += v
	}
	for _, v := range a.BMC {
		bmc -= v
	}
	for r := range b.PDUOutput {
		pdu += b.PDUOutput[r] - a.PDUOutput[r]
	}
	for _, c := range []struct {
		name  string
		s     shown
		joule float64
	}{{"facility", facility, b.Facility - a.Facility}, {"UPS output", it, b.UPSOutput - a.UPSOutput}, {"hosts", hosts, bmc}, {"PDU output", got["pdu_output"], pdu}} {
		if !c.s.agrees(c.joule/JoulesPerKWh, c.joule/JoulesPerKWh) {
			t.Errorf("%s: the page shows %s kWh, the model %v", c.name, c.s.text, c.joule/JoulesPerKWh)
		}
	}
}
