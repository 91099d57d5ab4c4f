package aggregator

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/joules-energy/joules/internal/testenv"
)

func startOutput(t *testing.T, db *testenv.InfluxDB, mutate ...func(*OutputConfig)) *Output {
	t.Helper()
	cfg := OutputConfig{URL: db.URL, Bucket: db.Bucket, SpoolDir: t.TempDir(), DeadLetterFile: filepath.Join(t.TempDir(), "dead.lp"), Timeout: 2 * time.Second}
	for _, m := range mutate {
		m(&cfg)
	}
	out, err := NewOutput(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { out.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return out
}

func gpuPoints(n int, start time.Time) []Point {
	pts := make([]Point, n)
	for i := range pts {
		v, _ := lineprotocol.FloatValue(100 + float64(i)/4)
		pts[i] = Point{Measurement: "joules_gpu_power_watts", Tags: []Tag{{"gpu", fmt.Sprint(i % 8)}, {"host", "n1"}},
			Fields: []Field{{"value", v}}, Time: start.Add(time.Duration(i) * time.Second)}
	}
	return pts
}

// fluxCount counts the points of a measurement through Flux on /api/v2/query.
func fluxCount(db *testenv.InfluxDB, measurement string) (int64, float64, error) {
	client := influxdb2.NewClient(db.URL, "")
	defer client.Close()
	q := fmt.Sprintf(`from(bucket: %q) |> range(start: 0) |> filter(fn: (r) => r._measurement == %q) |> group()`, db.Bucket, measurement)
	res, err := client.QueryAPI("").Query(context.Background(), q)
	if err != nil {
		return 0, 0, fmt.Errorf("flux: %w", err)
	}
	var n int64
	var sum float64
	for res.Next() {
		n++
		if v, ok := res.Record().Value().(float64); ok {
			sum += v
		}
	}
	if res.Err() != nil {
		return 0, 0, fmt.Errorf("flux: %w", res.Err())
	}
	return n, sum, nil
}

// waitCount waits until InfluxDB holds want points of measurement. A query
// that fails counts as not yet: InfluxDB 1.8's Flux has answered "no
// database" for a database just created, before its first write landed.
func waitCount(t *testing.T, db *testenv.InfluxDB, measurement string, want int64, within time.Duration) float64 {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		n, sum, err := fluxCount(db, measurement)
		if err == nil && n == want {
			return sum
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d points in InfluxDB, want %d (last query error: %v)", measurement, n, want, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestOutputWritesExactValues(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	out := startOutput(t, db)
	pts := gpuPoints(40, time.Now().Add(-time.Hour).Truncate(time.Second))
	if err := out.Write(pts); err != nil {
		t.Fatal(err)
	}
	var want float64
	for _, p := range pts {
		want += p.Fields[0].Value.FloatV()
	}
	if sum := waitCount(t, db, "joules_gpu_power_watts", 40, time.Minute); sum != want {
		t.Errorf("sum of values read back %v, want %v", sum, want)
	}
}

func TestOutputRidesOutInfluxDBOutage(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	out := startOutput(t, db)
	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := out.Write(gpuPoints(10, start)); err != nil {
		t.Fatal(err)
	}
	waitCount(t, db, "joules_gpu_power_watts", 10, time.Minute)
	db.Stop()
	for i := range 5 { // accepted and spooled while InfluxDB is down
		if err := out.Write(gpuPoints(10, start.Add(time.Duration(10*(i+1))*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	if st := out.SpoolStats(); st.Points != 50 {
		t.Errorf("spool holds %d points during the outage, want 50", st.Points)
	}
	retries := out.Retries.Load()
	testenv.WaitFor(t, 30*time.Second, "two failed writes to the stopped InfluxDB", func() bool { return out.Retries.Load() >= retries+2 })
	if n := out.Written.Load(); n != 10 {
		t.Errorf("%d points written with InfluxDB down, want the 10 from before", n)
	}
	db.Start()
	waitCount(t, db, "joules_gpu_power_watts", 60, 60*time.Second)
}

// TestOutputSplitsOn413 runs InfluxDB with a small max-body-size: a merged
// write is refused with 413 and must arrive split.
func TestOutputSplitsOn413(t *testing.T) {
	db := testenv.StartInfluxDB(t, "  max-body-size = 2048")
	out := startOutput(t, db, func(c *OutputConfig) { c.BatchBytes = 64 << 10 })
	// Gzip makes the body small; write more than fits even compressed.
	pts := gpuPoints(3000, time.Now().Add(-2*time.Hour).Truncate(time.Second))
	for i := range pts {
		pts[i].Tags = append(pts[i].Tags, Tag{"uuid", fmt.Sprintf("GPU-%08x-%d", i*7919, i)})
	}
	if err := out.Write(pts); err != nil {
		t.Fatal(err)
	}
	waitCount(t, db, "joules_gpu_power_watts", 3000, 60*time.Second)
	if out.DeadLettered.Load() != 0 {
		t.Errorf("%d lines dead-lettered; 413 must split, not drop", out.DeadLettered.Load())
	}
}

func TestOutputDeadLettersRefusedLines(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	var dead string
	out := startOutput(t, db, func(c *OutputConfig) { dead = c.DeadLetterFile })
	at := time.Now().Add(-time.Hour).Truncate(time.Second)
	f, _ := lineprotocol.FloatValue(1)
	s, _ := lineprotocol.StringValue("oops")
	if err := out.Write([]Point{{Measurement: "conflict", Fields: []Field{{"value", f}}, Time: at}}); err != nil {
		t.Fatal(err)
	}
	waitCount(t, db, "conflict", 1, time.Minute)
	// A string where InfluxDB has a float: refused for good with 400.
	if err := out.Write([]Point{{Measurement: "conflict", Fields: []Field{{"value", s}}, Time: at.Add(time.Second)}}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "the refused line in the dead-letter file", func() bool { return out.DeadLettered.Load() > 0 })
	raw, _ := os.ReadFile(dead)
	if !strings.Contains(string(raw), `conflict value="oops"`) || !strings.Contains(string(raw), "field type conflict") {
		t.Errorf("dead-letter file:\n%s", raw)
	}
	// The spool moved on: a later good point still arrives.
	if err := out.Write([]Point{{Measurement: "conflict", Fields: []Field{{"value", f}}, Time: at.Add(2 * time.Second)}}); err != nil {
		t.Fatal(err)
	}
	waitCount(t, db, "conflict", 2, time.Minute)
}

// Bodies spooled as received keep their precision through the spool to
// InfluxDB, next to points encoded at nanoseconds: three writes of three
// precisions whose times, read back, are the ones written.
func TestOutputSendsEachBatchAtItsPrecision(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	out := startOutput(t, db)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := out.WriteLines([]byte(fmt.Sprintf("prec,p=s value=1 %d\n", base.Unix())), 1, lineprotocol.Second, base); err != nil {
		t.Fatal(err)
	}
	f, _ := lineprotocol.FloatValue(2)
	if err := out.Write([]Point{{Measurement: "prec", Tags: []Tag{{"p", "ns"}}, Fields: []Field{{"value", f}}, Time: base.Add(1500 * time.Microsecond)}}); err != nil {
		t.Fatal(err)
	}
	if err := out.WriteLines([]byte(fmt.Sprintf("prec,p=ms value=3 %d", base.UnixMilli()+2)), 1, lineprotocol.Millisecond, base); err != nil {
		t.Fatal(err)
	}
	waitCount(t, db, "prec", 3, time.Minute)
	client := influxdb2.NewClient(db.URL, "")
	defer client.Close()
	res, err := client.QueryAPI("").Query(context.Background(), fmt.Sprintf(`from(bucket: %q) |> range(start: 0) |> filter(fn: (r) => r._measurement == "prec") |> group()`, db.Bucket))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{"s": base, "ns": base.Add(1500 * time.Microsecond), "ms": base.Add(2 * time.Millisecond)}
	for res.Next() {
		p, _ := res.Record().ValueByKey("p").(string)
		if at := res.Record().Time(); !at.Equal(want[p]) {
			t.Errorf("point of precision %s stored at %v, want %v", p, at, want[p])
		}
		delete(want, p)
	}
	if len(want) > 0 {
		t.Errorf("missing: %v", want)
	}
}

// A database that does not exist yet (404), like a wrong token (401/403),
// is the configuration's fault, not the points': they stay spooled and
// arrive once it is fixed, and nothing goes to the dead-letter file.
func TestOutputKeepsPointsWhileTheDatabaseIsMissing(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	out := startOutput(t, db, func(c *OutputConfig) { c.Bucket = "later/autogen" })
	if err := out.Write(gpuPoints(5, time.Now().Add(-time.Hour).Truncate(time.Second))); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "two refused writes to the missing database", func() bool { return out.Retries.Load() >= 2 })
	if n, st := out.DeadLettered.Load(), out.SpoolStats(); n != 0 || st.Points != 5 {
		t.Fatalf("dead-lettered %d, spooled %d: want 0 and the 5 points kept", n, st.Points)
	}
	resp, err := http.PostForm(db.URL+"/query", url.Values{"q": {"CREATE DATABASE later"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	later := *db
	later.Bucket = "later/autogen"
	waitCount(t, &later, "joules_gpu_power_watts", 5, time.Minute)
	if n := out.DeadLettered.Load(); n != 0 {
		t.Errorf("%d lines dead-lettered", n)
	}
}
