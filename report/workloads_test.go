package report

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/browser"
	"github.com/joules-energy/joules/internal/sitemodel"
	"github.com/joules-energy/joules/internal/testenv"
)

// modelWorkloads computes, from the site model alone, what each workload
// of the coherent site used over [from, to): each 10 s step of a GPU
// shared by the placement at the step's start, and per host and minute
// its BMC's energy beyond its GPUs shared by their GPU energy.
type modelLoad struct {
	gpu, hostShare float64
	hosts          map[string]bool
	team, model    string
}

func modelWorkloads(m *sitemodel.Model, from, to time.Time) (map[string]*modelLoad, float64) {
	loads := map[string]*modelLoad{}
	var hostsIT float64
	for _, rack := range m.Site().Racks {
		for _, rh := range rack.Hosts {
			h := m.Host(rh.Name)
			for min := from; min.Before(to); min = min.Add(time.Minute) {
				gpuOf := map[string]float64{}
				var gpuAll float64
				for at := min; at.Before(min.Add(time.Minute)); at = at.Add(10 * time.Second) {
					for i, ws := range h.Workloads(at, siteModels[rh.Name]) {
						a, _ := h.GPUEnergy(i, at)
						b, _ := h.GPUEnergy(i, at.Add(10*time.Second))
						j := float64(b-a) / 1000
						gpuAll += j
						for _, w := range ws {
							key := w.Kind + " " + w.ID
							if w.Kind == "systemd_unit" {
								key = w.Kind + " " + rh.Name + "/" + w.ID // one per host
							}
							l := loads[key]
							if l == nil {
								l = &modelLoad{hosts: map[string]bool{}}
								for _, t := range w.Tags {
									switch t[0] {
									case "label_team":
										l.team = t[1]
									case "label_model":
										l.model = t[1]
									}
								}
								loads[key] = l
							}
							l.gpu += j * w.Share
							l.hosts[rh.Name] = true
							gpuOf[key] += j * w.Share
						}
					}
					// the GPUs with no workload: no share at all
				}
				it := h.Energy(min.Add(time.Minute)).Input - h.Energy(min).Input
				hostsIT += it
				for key, j := range gpuOf {
					loads[key].hostShare += (it - gpuAll) * j / gpuAll
				}
			}
		}
	}
	return loads, hostsIT
}

// TestCoherentSiteWorkloadsAddUp writes the coherent site, with a Slurm
// job across all three hosts moving between GPUs, inference pods, two
// notebook pods sharing a GPU and a unit that comes and goes, through the
// real aggregator into the real InfluxDB, and reads the report's workload
// section by workload, team and model against the site model.
func TestCoherentSiteWorkloadsAddUp(t *testing.T) {
	m := coherentSite(t)
	db := loadSite(t, m)
	q := NewInflux(db.URL, "", "", 30*time.Second)
	defer q.Close()
	to := siteFrom.Add(siteMinutes * time.Minute)
	want, hostsIT := modelWorkloads(m, siteFrom, to)
	opt := Options{Bucket: db.Bucket, From: siteFrom, To: to, TopN: 100, Price: Price{PerKWh: 0.2}, Now: func() time.Time { return to.Add(time.Hour) }}

	r, err := Build(context.Background(), q, opt)
	if err != nil {
		t.Fatal(err)
	}
	ws := r.Workloads
	if ws == nil || ws.Unattributed == nil {
		t.Fatalf("no workload section: %+v", ws)
	}
	// Every workload and the rest add up to the hosts' energy.
	sum := ws.Unattributed.ITkWh
	for _, row := range ws.Rows {
		sum += row.ITkWh
	}
	if math.Abs(sum-r.Energy.ITkWh) > 1e-9*r.Energy.ITkWh || math.Abs(ws.ITkWh*JoulesPerKWh-hostsIT) > 1e-9*hostsIT {
		t.Errorf("workloads + unattributed %v kWh, section total %v, hosts %v kWh, the model's %v kWh", sum, ws.ITkWh, r.Energy.ITkWh, hostsIT/JoulesPerKWh)
	}
	if len(ws.Rows) != len(want) {
		t.Errorf("%d workloads, the model has %d", len(ws.Rows), len(want))
	}
	var pue float64
	if r.PUE.Value != nil {
		pue = *r.PUE.Value
	}
	spanning := 0
	for _, row := range ws.Rows {
		w := want[row.Kind+" "+row.Name]
		if w == nil {
			t.Errorf("%s %s is not in the model", row.Kind, row.Name)
			continue
		}
		if g := row.GPUkWh * JoulesPerKWh; math.Abs(g-w.gpu) > 1e-9*w.gpu {
			t.Errorf("%s %s: GPU %v J, the model %v J", row.Kind, row.Name, g, w.gpu)
		}
		if h := row.HostSharekWh * JoulesPerKWh; math.Abs(h-w.hostShare) > 1e-9*w.hostShare {
			t.Errorf("%s %s: host share %v J, the model %v J", row.Kind, row.Name, h, w.hostShare)
		}
		if row.Hosts != len(w.hosts) {
			t.Errorf("%s %s: on %d hosts, the model %d", row.Kind, row.Name, row.Hosts, len(w.hosts))
		}
		if len(w.hosts) > 1 {
			spanning++
		}
		// Facility energy by each window's interim PUE: over the range it
		// is near the range's PUE times IT (the PUE moves a little).
		if row.FacilitykWh == nil || math.Abs(*row.FacilitykWh/row.ITkWh-pue) > 0.01*pue {
			t.Errorf("%s %s: facility %v kWh of IT %v kWh, the range's PUE %v", row.Kind, row.Name, row.FacilitykWh, row.ITkWh, pue)
		}
		if row.Cost == nil || math.Abs(*row.Cost-0.2**row.FacilitykWh) > 1e-9**row.Cost {
			t.Errorf("%s %s: cost %v, want 0.2 per facility kWh of %v", row.Kind, row.Name, row.Cost, row.FacilitykWh)
		}
	}
	if spanning == 0 {
		t.Error("no job spans hosts")
	}
	nb0, nb1 := want["k8s_pod research/notebook-gpu-01-0"], want["k8s_pod research/notebook-gpu-01-1"]
	if nb0 == nil || nb1 == nil || math.Abs(nb0.gpu/nb1.gpu-0.7/0.3) > 1e-9 {
		t.Errorf("the notebooks share their GPU 0.7 to 0.3: %+v %+v", nb0, nb1)
	}

	// The page as a reader sees it in Chromium: every row's IT energy, as
	// shown, adds up to the total shown.
	chromium := testenv.Tool(t, "chromium", "apt-get install -y chromium")
	var html bytes.Buffer
	if err := Write(&html, r, "html"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "report.html")
	os.WriteFile(path, html.Bytes(), 0o644)
	out, err := browser.Evaluate(context.Background(), chromium, path, 1200, `JSON.stringify({
  rows: [...document.querySelectorAll('#workloads tr.w-row .w-it')].map(e => e.textContent),
  total: document.querySelector('#workloads .w-total .w-it')?.textContent})`)
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Rows  []string
		Total string
	}
	if err := json.Unmarshal([]byte(out), &page); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(page.Rows) != len(ws.Rows)+1 || page.Total == "" {
		t.Fatalf("the page's workload section: %s", out)
	}
	var lo, hi float64
	for _, text := range page.Rows {
		v := parseShown(t, text)
		lo, hi = lo+v.lo(), hi+v.hi()
	}
	if total := parseShown(t, page.Total); !total.agrees(lo, hi) {
		t.Errorf("the rows shown add up to %v–%v kWh, the total shown is %s", lo, hi, total.text)
	}

	// By team and by model, against the model's workloads summed.
	for _, by := range []string{"team", "model"} {
		opt.By = by
		rb, err := Build(context.Background(), q, opt)
		if err != nil {
			t.Fatal(err)
		}
		sums := map[string]float64{}
		for _, w := range want {
			name := map[string]string{"team": w.team, "model": w.model}[by]
			if name == "" {
				name = "(no " + by + ")"
			}
			sums[name] += w.gpu + w.hostShare
		}
		got := map[string]WorkloadRow{}
		for _, row := range rb.Workloads.Rows {
			got[row.Name] = row
		}
		for name, j := range sums {
			if g := got[name].ITkWh * JoulesPerKWh; math.Abs(g-j) > 1e-9*j {
				t.Errorf("by %s, %s: %v J, the model %v J", by, name, g, j)
			}
		}
		if by == "model" {
			// Tokens per joule: each model's servers' tokens over its
			// pods' energy.
			for model, hosts := range map[string][]string{"llama-8b": {"gpu-01", "gpu-02"}, "llama-70b": {"gpu-03"}} {
				var tokens float64
				for _, h := range hosts {
					tokens += 1000 * (m.Host(h).Energy(to).UtilizationSeconds - m.Host(h).Energy(siteFrom).UtilizationSeconds)
				}
				row := got[model]
				if want := tokens / sums[model]; row.TokensPerJ == nil || math.Abs(*row.TokensPerJ-want) > 1e-9*want {
					t.Errorf("%s: %v tokens per joule, want %v", model, row.TokensPerJ, want)
				}
			}
		}
		var md bytes.Buffer
		if err := Write(&md, rb, "md"); err != nil || !strings.Contains(md.String(), "## Energy by "+by) {
			t.Errorf("markdown has no section by %s: %v", by, err)
		}
	}

	// One job by its id, as `joules report --job` and `joules job-energy` read it.
	var job string
	for k, w := range want {
		if strings.HasPrefix(k, "slurm_job ") && len(w.hosts) == 3 {
			job = strings.TrimPrefix(k, "slurm_job ")
			break
		}
	}
	j, err := WorkloadEnergy(context.Background(), q, Options{Bucket: db.Bucket, From: siteFrom, To: to, Job: job})
	if err != nil {
		t.Fatal(err)
	}
	w := want["slurm_job "+job]
	if len(j.Rows) != 1 || math.Abs(j.Rows[0].ITkWh*JoulesPerKWh-(w.gpu+w.hostShare)) > 1e-9*(w.gpu+w.hostShare) {
		t.Errorf("job %s: %+v, the model %v J", job, j.Rows, w.gpu+w.hostShare)
	}
}
