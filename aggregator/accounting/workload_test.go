package accounting

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/internal/schema"
)

// workloadSite is two hosts of site s1 for `minutes` minutes, every 10 s:
//
//	host a: BMC 2,000 W; GPU 0 600 W, job 42's alone; GPU 1 300 W, shared
//	        by pod ml/p1 (0.75, team vision, model llama) and ml/p2 (0.25,
//	        team nlp); 64 CPUs, job 42 requests 32, each pod 8
//	host b: BMC 1,500 W; GPU 0 500 W, job 42's alone; GPU 1 100 W, idle;
//	        32 CPUs, job 42 requests 16
//
// and a facility meter at 4,900 W, and llama's server on host a counting
// 100 tokens a second.
func workloadSite(minutes int) []aggregator.Point {
	var s site
	from, to := t0, t0.Add(time.Duration(minutes)*time.Minute)
	topo := func(host string) []string { return []string{"site", "s1", "hall", "h1", "rack", "r1", "host", host} }
	gpu := func(host, index string) []string {
		return append(topo(host), "gpu", index, "uuid", "GPU-"+host+index)
	}
	job := []string{"workload_kind", "slurm_job", "workload", "42"}
	p1 := []string{"workload_kind", "k8s_pod", "workload", "ml/p1", "namespace", "ml", "owner_kind", "Deployment", "owner", "llama", "label_team", "vision", "label_model", "llama"}
	p2 := []string{"workload_kind", "k8s_pod", "workload", "ml/p2", "namespace", "ml", "label_team", "nlp"}
	s.host("a", "h1", "r1", 2000, from, to)
	s.host("b", "h1", "r1", 1500, from, to)
	for _, g := range []struct {
		host, index string
		watts       float64
	}{{"a", "0", 600}, {"a", "1", 300}, {"b", "0", 500}, {"b", "1", 100}} {
		s.counter("joules_gpu_energy_joules_total", g.watts, from, to, 10*time.Second, gpu(g.host, g.index)...)
	}
	for at := from; !at.After(to); at = at.Add(10 * time.Second) {
		s.points = append(s.points,
			pt(schema.WorkloadShare, at, 1, append(gpu("a", "0"), job...)...),
			pt(schema.WorkloadShare, at, 0.75, append(gpu("a", "1"), p1...)...),
			pt(schema.WorkloadShare, at, 0.25, append(gpu("a", "1"), p2...)...),
			pt(schema.WorkloadShare, at, 1, append(gpu("b", "0"), job...)...),
			pt(schema.HostCPUs, at, 64, topo("a")...),
			pt(schema.HostCPUs, at, 32, topo("b")...),
			pt(schema.WorkloadCPUs, at, 32, append(topo("a"), job...)...),
			pt(schema.WorkloadCPUs, at, 8, append(topo("a"), p1...)...),
			pt(schema.WorkloadCPUs, at, 8, append(topo("a"), p2...)...),
			pt(schema.WorkloadCPUs, at, 16, append(topo("b"), job...)...))
	}
	s.meter("facility", "facility_input", "", 4900, from, to)
	s.counter("joules_work_total", 100, from, to, 10*time.Second, append(topo("a"), "unit", "token", "kind", "generation", "workload", "vllm", "model_name", "llama")...)
	// In time order, as an agent sends its passes: a pass's shares come
	// before the GPU's next reading.
	slices.SortStableFunc(s.points, func(x, y aggregator.Point) int { return x.Time.Compare(y.Time) })
	return s.points
}

// workloadJoules is a workload's field in the window at.
func workloadField(t *testing.T, out []aggregator.Point, at time.Time, field string, kv ...string) float64 {
	t.Helper()
	return floatField(t, find(t, out, schema.Workload, at, append([]string{"resolution", "1m"}, kv...)...), field)
}

func TestWorkloadsShareTheirHostsEnergyAndAddUp(t *testing.T) {
	a, c := newTestAccountant(t, Config{})
	out := run(a, c, workloadSite(1), t0.Add(91*time.Second))
	// By hand, over the 60 s window: host a's GPUs 36,000 + 18,000 J of
	// its 120,000 J, the rest 66,000 J shared by GPU energy; host b's
	// 30,000 + 6,000 J of 90,000 J, the rest 54,000 J.
	want := []struct {
		kv                  []string
		gpu, hostShare, all float64
		hosts               float64
	}{
		{[]string{"workload_kind", "slurm_job", "workload", "42"}, 36000 + 30000, 66000*36000/54000.0 + 54000*30000/36000.0, 80000 + 75000, 2},
		{[]string{"workload_kind", "k8s_pod", "workload", "ml/p1", "namespace", "ml", "owner_kind", "Deployment", "owner", "llama", "label_team", "vision"}, 13500, 16500, 30000, 1},
		{[]string{"workload_kind", "k8s_pod", "workload", "ml/p2", "label_team", "nlp"}, 4500, 5500, 10000, 1},
	}
	total := 0.0
	for _, w := range want {
		if g := workloadField(t, out, t0, "gpu_joules", w.kv...); !closeEqual(g, w.gpu, 1e-12) {
			t.Errorf("%v: GPU %v J, want %v", w.kv, g, w.gpu)
		}
		if g := workloadField(t, out, t0, "host_share_joules", w.kv...); !closeEqual(g, w.hostShare, 1e-12) {
			t.Errorf("%v: host share %v J, want %v", w.kv, g, w.hostShare)
		}
		if g := workloadField(t, out, t0, "joules", w.kv...); !closeEqual(g, w.all, 1e-12) {
			t.Errorf("%v: %v J, want %v", w.kv, g, w.all)
		}
		if g := workloadField(t, out, t0, "facility_joules", w.kv...); !closeEqual(g, w.all*294000/210000, 1e-12) {
			t.Errorf("%v: facility %v J, want %v (PUE 1.4)", w.kv, g, w.all*1.4)
		}
		if p := find(t, out, schema.Workload, t0, w.kv...); intField(p, "hosts") != int64(w.hosts) {
			t.Errorf("%v: on %d hosts, want %v", w.kv, intField(p, "hosts"), w.hosts)
		}
		total += w.all
	}
	rest := workloadField(t, out, t0, "joules", "workload_kind", "unattributed")
	if !closeEqual(rest, 15000, 1e-12) { // host b's idle GPU, 6,000 J, and its share of the rest, 9,000 J
		t.Errorf("unattributed %v J, want 15000", rest)
	}
	if g := workloadField(t, out, t0, "host_share_joules", "workload_kind", "unattributed"); !closeEqual(g, 9000, 1e-12) {
		t.Errorf("unattributed host share %v J, want 9000", g)
	}
	if it := energyOf(t, out, t0, "resolution", "1m", "scope", "site", "kind", "it"); math.Abs(total+rest-it) > 1e-9*it {
		t.Errorf("workloads %v J + unattributed %v J = %v J, the hosts' %v J", total, rest, total+rest, it)
	}
	// llama: 6,000 tokens over its pod's 30,000 J.
	p := find(t, out, schema.Work, t0, "resolution", "1m", "scope", "model", "model", "llama", "unit", "token")
	if g := floatField(t, p, "per_joule"); !closeEqual(g, 0.2, 1e-12) {
		t.Errorf("llama %v tokens per joule, want 0.2", g)
	}
}

func intField(p *aggregator.Point, key string) int64 {
	if v, ok := field(p, key); ok {
		return v.IntV()
	}
	return -1
}

func TestWorkloadsShareTheHostByRequestedCPUs(t *testing.T) {
	a, c := newTestAccountant(t, Config{HostShare: schema.RuleRequestedCPUs})
	out := run(a, c, workloadSite(1), t0.Add(91*time.Second))
	// Host a's 66,000 J besides its GPUs by CPUs of 64: 32, 8, 8; host b's
	// 54,000 J by 16 of 32.
	for _, w := range []struct {
		id        string
		hostShare float64
	}{{"42", 66000*32/64.0 + 54000*16/32.0}, {"ml/p1", 66000 * 8 / 64.0}, {"ml/p2", 66000 * 8 / 64.0}} {
		p := find(t, out, schema.Workload, t0, "resolution", "1m", "workload", w.id)
		if g := floatField(t, p, "host_share_joules"); !closeEqual(g, w.hostShare, 1e-12) {
			t.Errorf("%s: host share %v J, want %v", w.id, g, w.hostShare)
		}
		if v, _ := field(p, "rule"); v.StringV() != schema.RuleRequestedCPUs {
			t.Errorf("%s: rule %q", w.id, v.StringV())
		}
	}
	rest := workloadField(t, out, t0, "joules", "workload_kind", "unattributed")
	if want := 6000 + 66000*16/64.0 + 54000*16/32.0; !closeEqual(rest, want, 1e-12) {
		t.Errorf("unattributed %v J, want %v", rest, want)
	}
}

// A job's total is the sum of its windows; it survives the aggregator's
// restart: state checkpointed, the agents replaying what came after.
func TestAJobsTotalSurvivesARestart(t *testing.T) {
	points := workloadSite(3)
	end := t0.Add(3*time.Minute + 31*time.Second)
	state := filepath.Join(t.TempDir(), "accounting.state")
	first, c1 := newTestAccountant(t, Config{})
	cut := slices.IndexFunc(points, func(p aggregator.Point) bool { return p.Time.After(t0.Add(75 * time.Second)) })
	written := run(first, c1, slices.Clone(points[:cut]), t0.Add(91*time.Second))
	if err := first.Save(state); err != nil {
		t.Fatal(err)
	}
	second, c2 := newTestAccountant(t, Config{})
	if err := second.Load(state); err != nil {
		t.Fatal(err)
	}
	c2.t = c1.t
	got := append(written, run(second, c2, slices.Clone(points), end)...) // a replay from the start: nothing counts twice
	byWindow := map[time.Time]float64{}
	for i := range got {
		p := &got[i]
		if p.Measurement == schema.Workload && slices.Contains(p.Tags, aggregator.Tag{Key: "workload", Value: "42"}) && slices.Contains(p.Tags, aggregator.Tag{Key: "resolution", Value: "1m"}) {
			v, _ := field(p, "joules")
			byWindow[p.Time] = v.FloatV() // a revision replaces its window's value
		}
	}
	total := 0.0
	for _, v := range byWindow {
		total += v
	}
	if want := 3 * 155000.0; len(byWindow) != 3 || !closeEqual(total, want, 1e-12) {
		t.Errorf("job 42: %v J over %d windows, want %v J over 3", total, len(byWindow), want)
	}
}

// A pass whose shares come late (after the GPU's next reading) leaves
// its step unattributed rather than guessing; a GPU with no workload has
// no share and all its energy is unattributed.
func TestAStepWithoutSharesIsUnattributed(t *testing.T) {
	var points []aggregator.Point
	for _, p := range workloadSite(1) {
		if p.Measurement == schema.WorkloadShare && p.Time.Equal(t0.Add(20*time.Second)) {
			continue // the pass at 10:00:20 lost its shares
		}
		points = append(points, p)
	}
	a, c := newTestAccountant(t, Config{})
	out := run(a, c, points, t0.Add(91*time.Second))
	// Job 42 misses host a's and b's GPU 0 for 10 s: 6,000 + 5,000 J.
	if g, want := workloadField(t, out, t0, "gpu_joules", "workload", "42"), 66000-11000.0; !closeEqual(g, want, 1e-12) {
		t.Errorf("job 42: GPU %v J, want %v", g, want)
	}
	all := 0.0
	for i := range out {
		if p := &out[i]; p.Measurement == schema.Workload && slices.Contains(p.Tags, aggregator.Tag{Key: "resolution", Value: "1m"}) {
			all += floatField(t, p, "joules")
		}
	}
	if it := energyOf(t, out, t0, "resolution", "1m", "scope", "site", "kind", "it"); math.Abs(all-it) > 1e-9*it {
		t.Errorf("workloads and the unattributed rest %v J, the hosts %v J", all, it)
	}
}

// An hour's workload energy is the sum of its windows', whatever the
// host's share would be on the hour's totals: a job on a 600 W GPU for a
// minute of a 2 kW host, the GPU then idle at 60 W with nobody on it.
func TestAJobsHourIsTheSumOfItsMinutes(t *testing.T) {
	// With max_lateness 2m the job's minutes are let go long before the
	// hour is written: their sums are kept frozen for it.
	for _, lateness := range []time.Duration{time.Hour, 2 * time.Minute} {
		t.Run("max_lateness="+lateness.String(), func(t *testing.T) { jobHour(t, lateness) })
	}
}

func jobHour(t *testing.T, lateness time.Duration) {
	var s site
	topo := []string{"site", "s1", "hall", "h1", "rack", "r1", "host", "a"}
	gpu := append(slices.Clone(topo), "gpu", "0", "uuid", "GPU-a0")
	s.host("a", "h1", "r1", 2000, t0, t0.Add(61*time.Minute))
	for i := 0; i <= 18; i++ {
		at := t0.Add(time.Duration(i) * 10 * time.Second)
		j := 600 * 60 * math.Min(float64(i)/6, 1)
		if i > 6 {
			j += 60 * 10 * float64(i-6)
		}
		s.points = append(s.points, pt("joules_gpu_energy_joules_total", at, 1000+j, gpu...))
		if i < 6 {
			s.points = append(s.points, pt(schema.WorkloadShare, at, 1, append(slices.Clone(gpu), "workload_kind", "slurm_job", "workload", "9")...))
		}
	}
	slices.SortStableFunc(s.points, func(x, y aggregator.Point) int { return x.Time.Compare(y.Time) })
	a, c := newTestAccountant(t, Config{MaxLateness: lateness})
	var out []aggregator.Point
	for i := range s.points { // a point at a time, the clock with them, so windows are let go as they would be
		c.t = s.points[i].Time
		out = append(out, run(a, c, s.points[i:i+1], s.points[i].Time)...)
	}
	out = append(out, run(a, c, nil, t0.Add(61*time.Minute+31*time.Second))...)
	if _, frozen := a.ledger.Frozen[t0.UnixNano()]; frozen != (lateness < time.Hour) {
		t.Errorf("max_lateness %s: the hour's let-go minutes frozen: %v", lateness, frozen)
	}
	// Minute 0: the GPU's 36,000 J and the host's other 84,000 J.
	if g := lastOf(t, out, schema.Workload, t0, "joules", "resolution", "1m", "workload", "9"); !closeEqual(g, 120000, 1e-12) {
		t.Errorf("the job's minute: %v J, want 120000", g)
	}
	if g := lastOf(t, out, schema.Workload, t0, "joules", "resolution", "1h", "workload", "9"); !closeEqual(g, 120000, 1e-12) {
		t.Errorf("the job's hour: %v J, want its minutes' 120000 (on the hour's totals it would be 300000)", g)
	}
	rest := lastOf(t, out, schema.Workload, t0, "joules", "resolution", "1h", "workload_kind", "unattributed")
	if it := lastOf(t, out, schema.Energy, t0, "joules", "resolution", "1h", "scope", "site", "kind", "it"); !closeEqual(120000+rest, it, 1e-12) {
		t.Errorf("the hour: job 120000 J + unattributed %v J, the site %v J", rest, it)
	}
}

// A host whose BMC measured less than its GPUs gives its workloads no more
// than it measured, and the rest is never negative.
func TestAHostBelowItsGPUs(t *testing.T) {
	var s site
	topo := []string{"site", "s1", "hall", "h1", "rack", "r1", "host", "a"}
	s.host("a", "h1", "r1", 500, t0, t0.Add(time.Minute))
	for g, w := range []float64{600, 400} {
		gpu := append(slices.Clone(topo), "gpu", fmt.Sprint(g), "uuid", fmt.Sprintf("GPU-a%d", g))
		s.counter("joules_gpu_energy_joules_total", w, t0, t0.Add(time.Minute), 10*time.Second, gpu...)
		if g == 0 {
			for at := t0; !at.After(t0.Add(time.Minute)); at = at.Add(10 * time.Second) {
				s.points = append(s.points, pt(schema.WorkloadShare, at, 1, append(slices.Clone(gpu), "workload_kind", "slurm_job", "workload", "1")...))
			}
		}
	}
	slices.SortStableFunc(s.points, func(x, y aggregator.Point) int { return x.Time.Compare(y.Time) })
	a, c := newTestAccountant(t, Config{})
	out := run(a, c, s.points, t0.Add(91*time.Second))
	// IT 30,000 J of GPUs' 60,000: the job's 36,000 J scaled by a half.
	if g := workloadField(t, out, t0, "joules", "workload", "1"); !closeEqual(g, 18000, 1e-12) {
		t.Errorf("job: %v J, want 18000", g)
	}
	for _, f := range []string{"joules", "gpu_joules", "host_share_joules"} {
		if g := workloadField(t, out, t0, f, "workload_kind", "unattributed"); g < 0 || f != "host_share_joules" && !closeEqual(g, 12000, 1e-12) {
			t.Errorf("unattributed %s %v J, want 12000 (0 for the host share)", f, g)
		}
	}
}

// Shares of a pass that come after its step was shared are late: they
// change nothing, and a step then taken back (a point placed inside it)
// comes off the workloads it was given to. A step over a gap is nobody's.
func TestLateSharesAndGaps(t *testing.T) {
	topo := []string{"site", "s1", "hall", "h1", "rack", "r1", "host", "a", "gpu", "0", "uuid", "GPU-a0"}
	share := func(at time.Time, id string, v float64) aggregator.Point {
		return pt(schema.WorkloadShare, at, v, append(slices.Clone(topo), "workload_kind", "k8s_pod", "workload", id)...)
	}
	energy := func(at time.Time, j float64) aggregator.Point {
		return pt("joules_gpu_energy_joules_total", at, j, topo...)
	}
	a, c := newTestAccountant(t, Config{})
	a.Process([]aggregator.Point{energy(t0, 0), share(t0, "ml/a", 1), energy(t0.Add(20*time.Second), 8000), share(t0.Add(20*time.Second), "ml/a", 1)})
	a.Process([]aggregator.Point{share(t0, "ml/b", 1)})                 // late: the step from t0 was shared
	a.Process([]aggregator.Point{energy(t0.Add(10*time.Second), 3000)}) // placed inside it
	a.Process([]aggregator.Point{energy(t0.Add(10*time.Minute), 9000)}) // after a gap of max_gap and more
	out := run(a, c, []aggregator.Point{share(t0.Add(10*time.Minute), "ml/a", 1), energy(t0.Add(10*time.Minute+10*time.Second), 9500)}, t0.Add(12*time.Minute))
	// ml/a had the step from its pass at t0: 3,000 J once the point at
	// 10:00:10 split it (that pass sent no shares: the rest is nobody's),
	// and none of the gap from 10:00:20, though it ran then.
	if g := workloadField(t, out, t0, "gpu_joules", "workload", "ml/a"); !closeEqual(g, 3000, 1e-12) {
		t.Errorf("ml/a: %v J, want the 3000 J of the step from its pass", g)
	}
	for i := range out {
		if p := &out[i]; p.Measurement == schema.Workload && slices.Contains(p.Tags, aggregator.Tag{Key: "workload", Value: "ml/b"}) {
			t.Errorf("ml/b came late and has a point: %s", describe(p))
		}
	}
	if g := workloadField(t, out, t0.Add(10*time.Minute), "gpu_joules", "workload", "ml/a"); !closeEqual(g, 500, 1e-12) {
		t.Errorf("ml/a after the gap: %v J, want the 500 J of the step from 10:10:00, not the gap's", g)
	}
}

// lastOf is a field of the last point written of a measurement at a time
// with the given tags: a window written again replaces what it said.
func lastOf(t *testing.T, points []aggregator.Point, measurement string, at time.Time, field string, kv ...string) float64 {
	t.Helper()
	want := tags(kv...)
	for i := len(points) - 1; i >= 0; i-- {
		p := &points[i]
		if p.Measurement != measurement || !p.Time.Equal(at) {
			continue
		}
		match := true
		for _, w := range want {
			match = match && slices.Contains(p.Tags, w)
		}
		if match {
			return floatField(t, p, field)
		}
	}
	t.Fatalf("no %s at %s with %v", measurement, at, kv)
	return 0
}
