package main

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/internal/sitemodel"
	"github.com/joules-energy/joules/internal/testenv"
	"github.com/joules-energy/joules/nvml"
	"github.com/joules-energy/joules/redfish"
	"github.com/joules-energy/joules/redfish/redfishsim"
)

func parseSite(t *testing.T, args ...string) *siteCmd {
	t.Helper()
	app := kingpin.New("joules", "")
	c := newSiteCmd(app.Command("sim", ""))
	if _, err := app.Parse(append([]string{"sim", "site"}, args...)); err != nil {
		t.Fatal(err)
	}
	return c
}

// sumOf adds the values of a metric whose labels include all of want.
func sumOf(samples []collector.Sample, name string, want ...string) (float64, int) {
	var sum float64
	n := 0
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		have := map[string]bool{}
		for _, l := range s.Labels {
			have[l.Name+"="+l.Value] = true
		}
		ok := true
		for _, w := range want {
			ok = ok && have[w]
		}
		if ok {
			sum += s.Value
			n++
		}
	}
	return sum, n
}

// The site served from the shared mockups, read by the agent's own
// sources (Redfish for BMCs, PDUs, UPS and facility meter, NVML for the
// simulated GPUs): every meter reads what the model says at that instant,
// and the chain adds up: facility > UPS output > Σ PDU output > Σ BMC > Σ
// GPU + CPU.
func TestSiteThroughTheAgentsSources(t *testing.T) {
	dir := filepath.Join(testenv.SharedTestdata(t), "redfish")
	c := parseSite(t, "--site", "test-dc", "--host", "g1=r1", "--host", "g2=r1", "--host", "g3=r2",
		"--bmc", "g1="+filepath.Join(dir, "dmtf-public-rackmount1"), "--bmc", "g2="+filepath.Join(dir, "gigabyte-h262-z63"),
		"--bmc", "g3="+filepath.Join(dir, "dmtf-public-rackmount1"),
		"--pdu", "r1="+filepath.Join(dir, "dmtf-public-pdu"), "--pdu", "r2="+filepath.Join(dir, "dmtf-public-pdu"),
		"--ups", filepath.Join(dir, "dmtf-public-power-shelf"), "--facility", filepath.Join(dir, "dmtf-public-pdu"))
	m, err := c.model()
	if err != nil {
		t.Fatal(err)
	}
	specs, opts, err := c.bmcs(m)
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]string{"g1-bmc": "host", "g2-bmc": "host", "g3-bmc": "host", "pdu-r1": "pdu_output", "pdu-r2": "pdu_output", "ups": "ups_output", "facility": "facility_input"}
	sources := map[string]*redfish.Source{}
	for _, spec := range specs {
		name, mockup, _ := strings.Cut(spec, "=")
		o := opts[name]
		o.Username, o.Password = "u", "p"
		bmc, err := redfishsim.New(name, mockup, o)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(bmc)
		t.Cleanup(srv.Close)
		src, err := redfish.NewSource(redfish.Config{Name: name, Endpoint: srv.URL, Username: "u", Password: "p", Role: roles[name]}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(src.Close)
		sources[name] = src
	}
	// read polls a source and returns a reading, and the model's values of
	// every second the poll spanned: the reading is one of them.
	read := func(name, metric string, labels ...string) (float64, []sitemodel.Chain) {
		t.Helper()
		start := time.Now().Truncate(time.Second)
		samples, err := sources[name].Collect(context.Background())
		end := time.Now()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		v, n := sumOf(samples, metric, labels...)
		if n == 0 {
			t.Fatalf("%s: no %s %v", name, metric, labels)
		}
		var chains []sitemodel.Chain
		for at := start; !at.After(end); at = at.Add(time.Second) {
			chains = append(chains, m.At(at))
		}
		return v, chains
	}
	oneOf := func(what string, got float64, chains []sitemodel.Chain, of func(sitemodel.Chain) float64) {
		t.Helper()
		var want []float64
		for _, c := range chains {
			if math.Abs(got-of(c)) <= 0.011 {
				return
			}
			want = append(want, of(c))
		}
		t.Errorf("%s: %v W, the model %v W in the seconds of the poll", what, got, want)
	}
	var bmcs float64
	for _, h := range []string{"g1", "g2", "g3"} {
		got, chains := read(h+"-bmc", "joules_redfish_host_power_watts")
		oneOf(h+" BMC host power", got, chains, func(c sitemodel.Chain) float64 { return c.BMC[h] })
		bmcs += got
	}
	var pdus float64
	for _, r := range []string{"r1", "r2"} {
		got, chains := read("pdu-"+r, "joules_redfish_equipment_power_watts", "equipment_type=rack_pdu")
		oneOf("PDU "+r+" output", got, chains, func(c sitemodel.Chain) float64 { return c.PDUOutput[r] })
		pdus += got
	}
	ups, chains := read("ups", "joules_redfish_equipment_power_watts", "equipment_type=power_shelf")
	oneOf("UPS output", ups, chains, func(c sitemodel.Chain) float64 { return c.UPSOutput })
	facility, chains := read("facility", "joules_redfish_equipment_power_watts", "equipment_type=transfer_switch")
	oneOf("facility", facility, chains, func(c sitemodel.Chain) float64 { return c.Facility })

	var parts float64
	for _, h := range []string{"g1", "g2", "g3"} {
		lib, err := nvml.SimulatedSite("dgxh200", "test-dc", h)
		if err != nil {
			t.Fatal(err)
		}
		src := nvml.New(lib, nvml.Options{Simulated: true, Logger: slog.New(slog.DiscardHandler)})
		samples, err := src.Collect(context.Background())
		src.Close()
		if err != nil {
			t.Fatal(err)
		}
		gpus, n := sumOf(samples, "joules_gpu_power_watts")
		if n != 8 {
			t.Fatalf("%s: %d GPUs", h, n)
		}
		parts += gpus + m.Host(h).At(time.Now()).CPU
	}
	// Power moves each second; the margins between stages are hundreds of
	// watts, far above what a second changes.
	if !(facility > ups && ups > pdus && pdus > bmcs && bmcs > parts) {
		t.Errorf("the chain does not add up: facility %v > UPS output %v > Σ PDU %v > Σ BMC %v > Σ GPU + CPU %v", facility, ups, pdus, bmcs, parts)
	}
	if r := facility / pdus; r < 1.2 || r > 1.6 {
		t.Errorf("facility over PDU output %v", r)
	}
}

func TestSiteFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--site", "s", "--host", "g1", "--facility", "d"},
		{"--site", "s", "--host", "g1=r1"},
		{"--site", "s", "--host", "g1=r1", "--bmc", "g9=d"},
		{"--site", "s", "--host", "g1=r1", "--pdu", "r9=d"},
		{"--site", "s", "--host", "g1=r1", "--host", "g1=r2", "--ups", "d"},
		{"--site", "s", "--host", "g1=r1", "--pue.from", "yesterday"},
		{"--site", "s", "--host", "g1=r1", "--pue.from", "-1m", "--pue.to", "-2m"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"sim", "site"}, args...), &stdout, &stderr); code != 2 {
			t.Errorf("joules sim site %s: exit %d, want 2 (stderr %q)", strings.Join(args, " "), code, stderr.String())
		}
	}
	for _, args := range [][]string{{"sim", "inference", "--site", "s"}, {"sim", "inference", "--host", "h"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 {
			t.Errorf("joules %s: exit %d, want 2", strings.Join(args, " "), code)
		}
	}
}

// --pue.from prints the PUE of the model over the range: the facility's
// energy over the UPS output's and the PDUs', which the model's counters
// give and its power, summed here second by second, agrees with.
func TestSitePUE(t *testing.T) {
	from := time.Date(2026, 3, 14, 14, 0, 0, 0, time.UTC)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"sim", "site", "--site", "s", "--host", "g1=r1", "--host", "g2=r2",
		"--pue.from", from.Format(time.RFC3339), "--pue.to", from.Add(10 * time.Minute).Format(time.RFC3339)}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	got := map[string]float64{}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		k, v, _ := strings.Cut(line, " ")
		got[k], _ = strconv.ParseFloat(v, 64)
	}
	m, err := sitemodel.New(sitemodel.Site{Seed: "s", Racks: []sitemodel.Rack{
		{Name: "r1", Hosts: []sitemodel.RackHost{{Name: "g1", Server: "dgxh200"}}},
		{Name: "r2", Hosts: []sitemodel.RackHost{{Name: "g2", Server: "dgxh200"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	var facility, ups, pdu float64
	for s := range 600 {
		c := m.At(from.Add(time.Duration(s) * time.Second))
		facility += c.Facility
		ups += c.UPSOutput
		pdu += c.PDUOutput["r1"] + c.PDUOutput["r2"]
	}
	if math.Abs(got["pue_ups_output"]-facility/ups) > 0.0001 || math.Abs(got["pue_pdu_output"]-facility/pdu) > 0.0001 {
		t.Errorf("printed %v; the power sums give %.4f (UPS output) and %.4f (PDU output)", got, facility/ups, facility/pdu)
	}
}

// Following a host, the token counters grow with its GPUs' utilization:
// over ten minutes, by the rate times the utilization summed second by
// second over its day mean, and not at all in a minute its GPUs idle.
func TestInferenceFollowsTheHost(t *testing.T) {
	sv, _ := sitemodel.ServerNamed("dgxh200")
	h := sitemodel.NewHost("s", "g1", sv)
	start := time.Date(2026, 3, 14, 3, 0, 0, 0, time.UTC)
	now := start
	sim := newInferenceSim("m", 2000, 1.5, 1, func() time.Time { return now })
	sim.follow(siteHost{h}, "s/g1")
	var busy float64
	idleMinute := -1
	for s := range 600 {
		p := h.At(start.Add(time.Duration(s) * time.Second))
		busy += p.Utilization
		if s%60 == 0 && p.Utilization == 0 && idleMinute < 0 {
			idleMinute = s / 60
		}
	}
	gen, prompt, _ := sim.counters(start.Add(10 * time.Minute))
	want := 2000 / h.MeanUtilization() * busy
	if math.Abs(gen-want) > 2 || math.Abs(prompt-1.5*want) > 2 {
		t.Errorf("generation %v, prompt %v tokens in ten minutes; the utilization makes %v and %v", gen, prompt, want, 1.5*want)
	}
	if idleMinute < 0 {
		t.Fatal("no idle minute in these ten minutes of the seed: choose a start with one")
	}
	a, _, _ := sim.counters(start.Add(time.Duration(idleMinute) * time.Minute))
	b, _, running := sim.counters(start.Add(time.Duration(idleMinute)*time.Minute + 59*time.Second))
	if a != b || running != 0 {
		t.Errorf("in an idle minute the counter went %v → %v with %v requests running", a, b, running)
	}
}
