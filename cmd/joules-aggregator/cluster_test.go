package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/aggregator/accounting"
	"github.com/joules-energy/joules/cluster/clustertest"
	"github.com/joules-energy/joules/internal/schema"
	"github.com/joules-energy/joules/internal/testenv"
)

// clusterAccounting is the accounting every member and the reference
// process share.
var clusterAccounting = accounting.Config{Window: time.Minute, Grace: 2 * time.Second, MaxLateness: time.Hour, ForgetAfter: 24 * time.Hour}

// member starts one aggregator process of the tier.
func startClusterMember(t *testing.T, nats *testenv.NATSCluster, db *testenv.InfluxDB, dir, name, roles string) (*testenv.Process, string) {
	t.Helper()
	addr := testenv.FreeAddr(t)
	cfg := filepath.Join(dir, name+".yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`tokens_file: %s
limits: {requests_per_second: 0}
influx: {url: %s, bucket: %s, spool_dir: %s, dead_letter_file: %s, timeout: 2s}
accounting: {window: 1m, grace: 2s, max_lateness: 1h, checkpoint_interval: 1s}
cluster:
  urls: [%s]
  name: %s
  roles: [%s]
  partitions: 8
  replicas: 3
  lease: 3s
`, filepath.Join(dir, "tokens"), db.URL, db.Bucket, filepath.Join(dir, name+"-spool"), filepath.Join(dir, name+"-dead.lp"),
		strings.Join(nats.URLs(), ", "), name, roles)), 0o600)
	p := testenv.StartProcess(t, filepath.Join(binDir, "joules-aggregator"), "--config.file="+cfg, "--web.listen-address="+addr, "--log.format=json")
	p.WaitHTTP("http://" + addr + "/health")
	return p, addr
}

// windowEnergies reads the per-window energy of every scope and kind
// from InfluxDB: tags and time → joules.
func windowEnergies(t *testing.T, db *testenv.InfluxDB) map[string]float64 {
	t.Helper()
	client := influxdb2.NewClient(db.URL, "")
	defer client.Close()
	res, err := client.QueryAPI("").Query(context.Background(), fmt.Sprintf(`from(bucket: %q) |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "joules_energy" and r.resolution == "1m" and r._field == "joules")`, db.Bucket))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for res.Next() {
		r := res.Record()
		out[energyKey(r.ValueByKey("scope"), r.ValueByKey("kind"), r.ValueByKey("rack"), r.ValueByKey("host"), r.ValueByKey("gpu"), r.Time())] = r.Value().(float64)
	}
	if res.Err() != nil {
		t.Fatal(res.Err())
	}
	return out
}

func energyKey(scope, kind, rack, host, gpu any, at time.Time) string {
	s := func(v any) string {
		if v == nil {
			return ""
		}
		return fmt.Sprint(v)
	}
	return fmt.Sprintf("%s/%s/%s/%s/%s@%s", s(scope), s(kind), s(rack), s(host), s(gpu), at.UTC().Format(time.RFC3339))
}

// Agents stream to the tier (two ingest replicas, three workers that are
// roll-up candidates too, three NATS servers) while a worker is killed
// with SIGKILL, a NATS server is stopped and an ingest replica is
// stopped: every raw point reaches InfluxDB, and every window's energy is
// what one process computes from the same points, none counted twice.
func TestTierSurvivesAWorkerANATSServerAndAnIngestReplica(t *testing.T) {
	nats := testenv.StartNATSCluster(t, "faults", 3, nil)
	db := testenv.StartInfluxDB(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tokens"), []byte(pipelineToken+"\n"), 0o600)
	ingest1, addr1 := startClusterMember(t, nats, db, dir, "ingest-1", "ingest")
	_, addr2 := startClusterMember(t, nats, db, dir, "ingest-2", "ingest")
	workers := map[string]*testenv.Process{}
	for _, name := range []string{"w1", "w2", "w3"} {
		workers[name], _ = startClusterMember(t, nats, db, dir, name, "worker, rollup")
	}

	now := time.Now()
	from := now.Add(-12 * time.Minute).Truncate(time.Minute)
	batches := testenv.RecordedSite([]string{"s1"}, 10, from, 10)

	// What one process makes of the same points.
	derived, lines, err := clustertest.OneProcess(clusterAccounting, batches, now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{}
	for _, p := range derived {
		if p.Measurement != schema.Energy || tagValue(p, schema.TagResolution) != "1m" {
			continue
		}
		for _, f := range p.Fields {
			if f.Key == schema.FieldJoules {
				want[energyKey(tagValue(p, "scope"), tagValue(p, "kind"), tagValue(p, "rack"), tagValue(p, "host"), tagValue(p, "gpu"), p.Time)] = f.Value.FloatV()
			}
		}
	}

	if len(want) < 100 {
		t.Fatalf("one process derived only %d window energies", len(want))
	}
	taken := func() int {
		return strings.Count(workers["w1"].Logs(), "partition taken") + strings.Count(workers["w3"].Logs(), "partition taken")
	}
	var takenBefore int

	// The agents: each batch to one replica, to the other when it fails,
	// as an agent's retry behind a load balancer does.
	addrs := []string{addr1, addr2}
	send := func(i int, body []byte) {
		attempt := 0
		testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("a replica to take batch %d", i), func() bool {
			addr := addrs[(i+attempt)%len(addrs)]
			attempt++
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/v2/write?precision=ns", bytes.NewReader(body))
			req.Header.Set("Authorization", "Token "+pipelineToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusNoContent
		})
	}
	for i, b := range batches {
		switch i {
		case 15:
			testenv.WaitFor(t, 30*time.Second, "w2 to hold partitions", func() bool {
				return strings.Contains(workers["w2"].Logs(), "partition taken")
			})
			takenBefore = taken()
			if err := workers["w2"].Stop(syscall.SIGKILL); err == nil {
				t.Fatal("w2 survived SIGKILL?")
			}
		case 30:
			nats.Stop(1)
		case 45:
			if err := ingest1.Stop(syscall.SIGTERM); err != nil {
				t.Fatalf("ingest-1: %v", err)
			}
		}
		send(i, b)
	}

	testenv.WaitFor(t, 2*time.Minute, fmt.Sprintf("all %d raw points in InfluxDB", lines), func() bool { return totalPoints(t, db) == int64(lines) })
	var got map[string]float64
	testenv.WaitFor(t, 2*time.Minute, fmt.Sprintf("the %d window energies one process computes", len(want)), func() bool {
		got = windowEnergies(t, db)
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				return false
			}
		}
		return true
	})
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range got {
			if !yield(k) {
				return
			}
		}
	}) {
		if _, ok := want[k]; !ok {
			t.Errorf("the tier wrote a window one process does not: %s = %g", k, got[k])
		}
	}
	if n := totalPoints(t, db); n != int64(lines) {
		t.Errorf("InfluxDB holds %d raw points, %d were sent", n, lines)
	}
	if taken() <= takenBefore {
		t.Errorf("no partition of the killed worker was taken over:\n%s", workers["w1"].Logs())
	}
}

func tagValue(p aggregator.Point, key string) string {
	for _, t := range p.Tags {
		if t.Key == key {
			return t.Value
		}
	}
	return ""
}
