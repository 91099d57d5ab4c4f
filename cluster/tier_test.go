package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/joules-energy/joules/internal/testenv"
)

// The same recorded input through one process and through the tier (two
// ingest replicas, three workers, a roll-up on a three-node NATS
// cluster) gives the same derived points, and every raw line reaches the
// output.
func TestTierDerivesWhatOneProcessDoes(t *testing.T) {
	nats := testenv.StartNATSCluster(t, "c", 3, nil)
	now := time.Now()
	from := pastHour(now)
	batches := testenv.RecordedSite([]string{"s1"}, 12, from, 10)
	want, lines := oneProcess(t, batches, now)
	// The jobs span hosts of several partitions: the tier must sum them
	// across partitions as one process does.
	jobs := 0
	for k, v := range want {
		if strings.HasPrefix(k, "joules_workload_energy,") && strings.Contains(k, ",workload_kind=slurm_job") && strings.Contains(v, "hosts=2 ") {
			jobs++
		}
	}
	if jobs == 0 {
		t.Fatal("one process accounted no job across two hosts")
	}

	tr := newTier(t, nats, 8)
	in1, _ := tr.ingest("ingest-1")
	in2, pub2 := tr.ingest("ingest-2")
	// Half the writers send milliseconds: lines are published as they
	// came, with their precision.
	for i, b := range batches {
		url, code := in1.URL, 0
		if i%2 == 1 {
			code = postAt(t, in2.URL, inMillis(t, b), "ms")
		} else {
			code = post(t, url, b)
		}
		if code != 204 {
			t.Fatalf("batch %d: ingest answered %d", i, code)
		}
	}
	// A retried request is the same lines: JetStream drops it.
	if code := postAt(t, in2.URL, inMillis(t, batches[1]), "ms"); code != 204 {
		t.Fatalf("retried batch: %d", code)
	}
	if pub2.Duplicates.Load() == 0 {
		t.Error("the retried request was not taken for a duplicate")
	}
	var members []*Metrics
	for _, name := range []string{"w1", "w2", "w3"} {
		w, _ := tr.worker(name)
		members = append(members, &Metrics{Roles: []string{"worker", "rollup"}, Worker: w})
	}
	r1, _ := tr.rollup("w1")
	r2, _ := tr.rollup("w2")
	members[0].Rollup, members[1].Rollup = r1, r2
	tr.sameAs(want, 90*time.Second)
	// What /metrics says of the tier: every partition held once, one roll-up.
	if got := sumOf(t, members, "joules_cluster_partitions_owned"); got != 8 {
		t.Errorf("the workers' joules_cluster_partitions_owned add up to %g, want the 8 partitions", got)
	}
	if got := sumOf(t, members, "joules_cluster_rollup_leading"); got != 1 {
		t.Errorf("joules_cluster_rollup_leading adds up to %g over the candidates, want 1", got)
	}
	// A partition handed over is read again from its checkpoint: at least.
	if got := sumOf(t, members, "joules_cluster_worker_points_total"); got < float64(lines) {
		t.Errorf("the workers read %g raw points, %d were sent", got, lines)
	}
	testenv.WaitFor(t, 30*time.Second, "every raw line in the output", func() bool { return tr.raw.rawCount() == lines })
}

// sumOf adds a metric's values over every series of every member.
func sumOf(t *testing.T, members []*Metrics, name string) float64 {
	t.Helper()
	total := 0.0
	for _, m := range members {
		reg := prometheus.NewRegistry()
		reg.MustRegister(m)
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
			for _, s := range f.GetMetric() {
				total += s.GetGauge().GetValue() + s.GetCounter().GetValue()
			}
		}
	}
	return total
}

// balanced waits until the workers hold every partition once, each its
// share.
func balanced(t *testing.T, partitions int, workers ...*Worker) {
	t.Helper()
	share := (partitions + len(workers) - 1) / len(workers)
	testenv.WaitFor(t, 60*time.Second, fmt.Sprintf("%d partitions shared by %d workers, at most %d each", partitions, len(workers), share), func() bool {
		seen := map[int]bool{}
		for _, w := range workers {
			owned := w.Owned()
			if len(owned) > share || len(owned) < partitions/len(workers) {
				return false
			}
			for _, p := range owned {
				if seen[p] {
					return false
				}
				seen[p] = true
			}
		}
		return len(seen) == partitions
	})
}

// Partitions move to a worker that joins and from one that leaves, and
// the accounting carries over with them: the windows are still one
// process's.
func TestPartitionsRebalanceWhenWorkersJoinAndLeave(t *testing.T) {
	nats := testenv.StartNATSCluster(t, "rb", 3, nil)
	now := time.Now()
	from := pastHour(now)
	batches := testenv.RecordedSite([]string{"s1"}, 9, from, 10)
	want, _ := oneProcess(t, batches, now)

	tr := newTier(t, nats, 12)
	in, _ := tr.ingest("ingest")
	for i, b := range batches[:len(batches)/2] {
		if code := post(t, in.URL, b); code != 204 {
			t.Fatalf("batch %d: %d", i, code)
		}
	}
	w1, _ := tr.worker("w1")
	tr.rollup("w1")
	balanced(t, 12, w1)
	w2, _ := tr.worker("w2")
	w3, stop3 := tr.worker("w3")
	balanced(t, 12, w1, w2, w3)
	for i, b := range batches[len(batches)/2:] {
		if code := post(t, in.URL, b); code != 204 {
			t.Fatalf("batch %d: %d", i, code)
		}
	}
	stop3()
	if len(w3.Owned()) != 0 {
		t.Fatalf("a stopped worker holds %v", w3.Owned())
	}
	balanced(t, 12, w1, w2)
	// The first half's windows closed before the second half came, and
	// were revised.
	tr.compare(want, 90*time.Second, true)
	if w3.Released.Load() == 0 && w1.Released.Load() == 0 {
		t.Error("no partition was handed over when workers joined")
	}
}
