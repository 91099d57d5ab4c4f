package cluster

import (
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
)

// The same recorded input through one process and through the tier (two
// ingest replicas, three workers, a roll-up on a three-node NATS
// cluster) gives the same derived points, and every raw line reaches the
// output.
func TestTierDerivesWhatOneProcessDoes(t *testing.T) {
	nats := testenv.StartNATSCluster(t, "c", 3, nil)
	now := time.Now()
	from := now.Add(-12 * time.Minute).Truncate(time.Minute)
	batches := testenv.RecordedSite([]string{"s1"}, 12, from, 10)
	want, lines := oneProcess(t, batches, now)

	tr := newTier(t, nats, 8)
	in1, _ := tr.ingest("ingest-1")
	in2, pub2 := tr.ingest("ingest-2")
	for i, b := range batches {
		url := in1.URL
		if i%2 == 1 {
			url = in2.URL
		}
		if code := post(t, url, b); code != 204 {
			t.Fatalf("batch %d: ingest answered %d", i, code)
		}
	}
	// A retried request is the same lines: JetStream drops it.
	if code := post(t, in2.URL, batches[1]); code != 204 {
		t.Fatalf("retried batch: %d", code)
	}
	if pub2.Duplicates.Load() == 0 {
		t.Error("the retried request was not taken for a duplicate")
	}
	for _, name := range []string{"w1", "w2", "w3"} {
		tr.worker(name)
	}
	tr.rollup("w1")
	tr.rollup("w2")
	tr.sameAs(want, 90*time.Second)
	testenv.WaitFor(t, 30*time.Second, "every raw line in the output", func() bool { return tr.raw.rawCount() == lines })
}
