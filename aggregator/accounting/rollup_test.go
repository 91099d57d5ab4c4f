package accounting

import (
	"hash/fnv"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/internal/schema"
)

// clusterSite is a site of two halls with everything accounting reads:
// BMC counters and power, GPUs with activity, RAPL, work, PDUs, a UPS and
// a facility meter; one host falls silent halfway and one GPU's points come
// late, so windows are revised.
func clusterSite(from, to time.Time) []aggregator.Point {
	var s site
	for i, h := range []struct{ name, hall, rack string }{{"n1", "h1", "r1"}, {"n2", "h1", "r1"}, {"n3", "h1", "r2"}, {"n4", "h2", "r3"}, {"n5", "h2", "r3"}} {
		end := to
		if h.name == "n3" {
			end = from.Add(to.Sub(from) / 2)
		}
		s.host(h.name, h.hall, h.rack, 3000+float64(i)*250, from, end)
		topo := []string{"site", "s1", "hall", h.hall, "rack", h.rack, "host", h.name}
		for g := range 2 {
			gpu := []string{"gpu", string(rune('0' + g)), "uuid", "GPU-" + h.name + string(rune('a'+g))}
			s.counter("joules_gpu_energy_joules_total", 400+float64(g*50+i*10), from, to, 5*time.Second, append(topo, gpu...)...)
			for at := from; !at.After(to); at = at.Add(5 * time.Second) {
				s.points = append(s.points, pt("joules_gpu_sm_activity_ratio", at, 0.3+0.1*float64(g), append(topo, gpu...)...))
			}
		}
		// Workloads: a Slurm job across n1 and n4 (in different halls,
		// and for some partition counts in different partitions), two pods
		// sharing a GPU of n2, a unit on n3.
		for at := from; !at.After(to); at = at.Add(5 * time.Second) {
			for _, l := range workloadsOf(h.name) {
				share, _ := strconv.ParseFloat(l[0], 64)
				s.points = append(s.points, pt(schema.WorkloadShare, at, share, append(append(slices.Clone(topo), "gpu", "0", "uuid", "GPU-"+h.name+"a"), l[1:]...)...))
			}
		}
		s.counter("node_rapl_package_joules_total", 180, from, to, 10*time.Second, append(topo, "index", "0", "path", "/sys/class/powercap/intel-rapl:0")...)
		s.counter("joules_work_total", 900+float64(i), from, to, 10*time.Second, append(topo, "unit", "token", "model_name", "m")...)
	}
	s.points = append(s.points, pt("joules_redfish_host_power_watts", from, 2000, "site", "s1", "hall", "h2", "rack", "r4", "host", "n6", "bmc", "n6-bmc", "role", "host", "chassis", "1"))
	for at := from.Add(7 * time.Second); !at.After(to); at = at.Add(7 * time.Second) {
		s.points = append(s.points, pt("joules_redfish_host_power_watts", at, 2000+float64(at.Unix()%5)*10, "site", "s1", "hall", "h2", "rack", "r4", "host", "n6", "bmc", "n6-bmc", "role", "host", "chassis", "1"))
	}
	s.meter("pdu-h1", rolePDUOutput, "h1", 13_500, from, to)
	s.meter("pdu-h2", rolePDUOutput, "h2", 8_700, from, to)
	s.counter("joules_redfish_equipment_energy_joules_total", 23_000, from, to, 10*time.Second,
		"site", "s1", "host", "mgmt", "bmc", "ups", "role", roleUPSOutput, "equipment", "1", "equipment_type", "ups", "method", "counter")
	s.counter("joules_modbus_equipment_energy_joules_total", 31_000, from, to, 10*time.Second,
		"site", "s1", "host", "mgmt2", "device", "facility", "role", roleFacilityInput, "equipment", "main", "equipment_type", "meter", "method", "counter")
	return s.points
}

// workloadsOf is the workloads on a host's first GPU in clusterSite: their
// share, then their tags.
func workloadsOf(host string) [][]string {
	switch host {
	case "n1", "n4":
		return [][]string{{"1", "workload_kind", "slurm_job", "workload", "7", "label_team", "physics"}}
	case "n2":
		return [][]string{{"0.6", "workload_kind", "k8s_pod", "workload", "ml/a", "namespace", "ml", "label_model", "m"},
			{"0.4", "workload_kind", "k8s_pod", "workload", "ml/b", "namespace", "ml"}}
	case "n3":
		return [][]string{{"1", "workload_kind", "systemd_unit", "workload", "train.service"}}
	}
	return nil
}

func partitionOf(p aggregator.Point, n int) int {
	h := fnv.New32a()
	for _, t := range p.Tags {
		if t.Key == "site" || t.Key == "host" {
			h.Write([]byte(t.Value))
			h.Write([]byte{0})
		}
	}
	return int(h.Sum32() % uint32(n))
}

// keyed turns derived points into their line-protocol text, sorted.
func keyed(points []aggregator.Point) []string {
	out := make([]string, 0, len(points))
	for i := range points {
		out = append(out, describe(&points[i])+" "+points[i].Time.Format(time.RFC3339Nano))
	}
	sort.Strings(out)
	return out
}

// feed hands the points in time order to process every step of the clock,
// the GPU of host n2 a minute late, and calls tick after each step.
func feed(points []aggregator.Point, from, to time.Time, process func([]aggregator.Point), tick func(time.Time)) {
	points = slices.Clone(points)
	due := func(p aggregator.Point) time.Time {
		for _, t := range p.Tags {
			if t.Key == "uuid" && t.Value == "GPU-n2a" {
				return p.Time.Add(time.Minute)
			}
		}
		return p.Time
	}
	slices.SortStableFunc(points, func(x, y aggregator.Point) int { return due(x).Compare(due(y)) })
	i := 0
	for now := from; !now.After(to); now = now.Add(5 * time.Second) {
		j := i
		for j < len(points) && !due(points[j]).After(now) {
			j++
		}
		process(points[i:j])
		i = j
		tick(now)
	}
}

func TestPartitionsRolledUpDeriveWhatOneProcessDoes(t *testing.T) {
	cfg := Config{Window: time.Minute, Grace: 20 * time.Second, MaxLateness: 10 * time.Minute,
		Meters: []Meter{{BMC: "pdu-h1", Site: "s1", Hall: "h1"}, {BMC: "pdu-h2", Site: "s1", Hall: "h2"}}}
	from := t0
	to := from.Add(40 * time.Minute)
	points := clusterSite(from, to.Add(-5*time.Minute))

	one, c := newTestAccountant(t, cfg)
	var want []aggregator.Point
	feed(points, from, to, func(p []aggregator.Point) { one.Process(p) }, func(now time.Time) {
		c.t = now
		want = append(want, one.Tick(now)...)
	})

	for _, n := range []int{1, 3, 8} {
		parts := make([]*Accountant, n)
		clocks := make([]*clock, n)
		for i := range parts {
			parts[i], clocks[i] = newTestAccountant(t, cfg)
		}
		roll, err := NewRollup(cfg, n, time.Minute, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		var got []aggregator.Point
		feed(points, from, to, func(p []aggregator.Point) {
			byPart := make([][]aggregator.Point, n)
			for _, q := range p {
				k := partitionOf(q, n)
				byPart[k] = append(byPart[k], q)
			}
			for k, ps := range byPart {
				parts[k].Process(ps)
			}
		}, func(now time.Time) {
			for k, a := range parts {
				clocks[k].t = now
				ps, progress := a.TickPartials(now, k, 1)
				for _, p := range ps {
					raw, err := MarshalPartial(p)
					if err != nil {
						t.Fatal(err)
					}
					back, err := UnmarshalPartial(raw)
					if err != nil {
						t.Fatal(err)
					}
					if err := roll.Add(back); err != nil {
						t.Fatal(err)
					}
				}
				roll.Progress(k, progress, 1)
			}
			got = append(got, roll.Tick(now)...)
		})
		w, g := keyed(want), keyed(got)
		if len(w) == 0 {
			t.Fatal("one process derived nothing")
		}
		if !slices.Equal(w, g) {
			for i := range max(len(w), len(g)) {
				var x, y string
				if i < len(w) {
					x = w[i]
				}
				if i < len(g) {
					y = g[i]
				}
				if x != y {
					t.Fatalf("%d partitions: %d derived points against one process's %d; first difference:\n one: %s\ntier: %s", n, len(g), len(w), x, y)
				}
			}
		}
		if st := roll.Stats(); st.Incomplete != 0 {
			t.Errorf("%d partitions: %d windows derived before every partition published", n, st.Incomplete)
		}
		if one.Stats().Revisions == 0 {
			t.Fatal("the late GPU revised no window: the test lost its point")
		}
		t.Logf("%d partitions: %d derived points, as one process", n, len(g))
	}
}

// An independent check of the merged numbers: the site's IT energy of a
// whole window is what its hosts' counters rose in it.
func TestRollupSumsHostsAcrossPartitions(t *testing.T) {
	cfg := Config{Window: time.Minute, Grace: 20 * time.Second, MaxLateness: 10 * time.Minute}
	var s site
	for i, name := range []string{"a", "b", "c", "d"} {
		s.host(name, "h1", "r1", 1000*float64(i+1), t0, t0.Add(3*time.Minute))
	}
	roll, err := NewRollup(cfg, 4, time.Minute, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	parts := make([]*Accountant, 4)
	for i := range parts {
		parts[i], _ = newTestAccountant(t, cfg)
	}
	for _, p := range s.points {
		parts[partitionOf(p, 4)].Process([]aggregator.Point{p})
	}
	end := t0.Add(4 * time.Minute)
	var out []aggregator.Point
	for k, a := range parts {
		a.now = func() time.Time { return end }
		ps, progress := a.TickPartials(end, k, 1)
		for _, p := range ps {
			if err := roll.Add(p); err != nil {
				t.Fatal(err)
			}
		}
		roll.Progress(k, progress, 1)
	}
	out = roll.Tick(end)
	got := floatField(t, find(t, out, "joules_energy", t0.Add(time.Minute), "scope", "site", "kind", "it"), "joules")
	if want := (1000.0 + 2000 + 3000 + 4000) * 60; math.Abs(got-want) > 1e-6 {
		t.Errorf("site IT energy of the second minute: %g J, want %g J (10 kW for 60 s)", got, want)
	}
	site := find(t, out, "joules_energy", t0.Add(time.Minute), "scope", "site", "kind", "it")
	if v, _ := field(site, "hosts"); v.IntV() != 4 {
		t.Errorf("the site's second minute does not count 4 hosts: %s", describe(site))
	}
}

// A partition that does not publish holds a window back for the wait,
// then the window is written without it and revised when it comes; a
// partial of an older generation of its partition does not replace a
// newer one's.
func TestRollupWaitsForASilentPartitionThenRevises(t *testing.T) {
	cfg := Config{Window: time.Minute, Grace: 10 * time.Second, MaxLateness: time.Hour}
	var s site
	s.host("a", "h1", "r1", 1000, t0, t0.Add(2*time.Minute))
	s.host("b", "h1", "r1", 3000, t0, t0.Add(2*time.Minute))
	parts := map[string]*Accountant{}
	for _, h := range []string{"a", "b"} {
		parts[h], _ = newTestAccountant(t, cfg)
	}
	for _, p := range s.points {
		for _, tg := range p.Tags {
			if tg.Key == "host" {
				parts[tg.Value].Process([]aggregator.Point{p})
			}
		}
	}
	roll, err := NewRollup(cfg, 2, 2*time.Minute, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	closeAt := t0.Add(3 * time.Minute)
	a, _ := parts["a"].TickPartials(closeAt, 0, 5)
	var progress int64
	for _, p := range a {
		if err := roll.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	_, progress = parts["a"].TickPartials(closeAt, 0, 5)
	roll.Progress(0, progress, 5)
	second := t0.Add(time.Minute)
	if out := roll.Tick(closeAt); find(t, out, "joules_energy", second, "scope", "site", "kind", "it") != nil {
		t.Fatal("a window was written while partition 1 had not published and the wait had not passed")
	}
	if got := roll.Behind(second.Add(time.Minute).UnixNano()); len(got) != 1 || got[0] != 1 {
		t.Fatalf("partitions behind: %v, want [1]", got)
	}
	out := roll.Tick(second.Add(time.Minute + 10*time.Second + 2*time.Minute))
	site1 := find(t, out, "joules_energy", second, "scope", "site", "kind", "it")
	if got := floatField(t, site1, "joules"); math.Abs(got-1000*60) > 1e-6 {
		t.Fatalf("without partition 1 the site's second minute is %g J, want host a's 60 kJ", got)
	}
	if roll.Stats().Incomplete == 0 {
		t.Error("the window written without partition 1 is not counted incomplete")
	}
	b, progressB := parts["b"].TickPartials(closeAt, 1, 7)
	for _, p := range b {
		if err := roll.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	roll.Progress(1, progressB, 7)
	out = roll.Tick(closeAt.Add(3 * time.Minute))
	if got := floatField(t, find(t, out, "joules_energy", second, "scope", "site", "kind", "it"), "joules"); math.Abs(got-4000*60) > 1e-6 {
		t.Fatalf("revised with partition 1 the site's second minute is %g J, want 240 kJ (a 1 kW + b 3 kW for 60 s)", got)
	}
	// A former owner of partition 1 (generation 6) publishes late: ignored.
	stale := *b[0]
	stale.Gen = 6
	if err := roll.Add(&stale); err != nil {
		t.Fatal(err)
	}
	if roll.Stats().Superseded != 1 {
		t.Errorf("a partial of an older generation was taken: %+v", roll.Stats())
	}
}
