package cluster

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
)

// A former owner that comes back after its successor checkpointed cannot
// overwrite the successor's checkpoint, and cannot take or renew a lease
// the successor holds.
func TestAFormerOwnerIsFenced(t *testing.T) {
	nats := testenv.StartNATSCluster(t, "fence", 3, nil)
	tr := newTier(t, nats, 4)
	old, successor := tr.conn("old"), tr.conn("successor")
	ctx := tr.ctx
	l, ok, err := old.acquire(ctx, partitionKey(2))
	if err != nil || !ok {
		t.Fatalf("first lease: %v %v", ok, err)
	}
	if _, ok, _ := successor.acquire(ctx, partitionKey(2)); ok {
		t.Fatal("a held lease was taken")
	}
	read, err := old.load(ctx, partitionKey(2))
	if err != nil {
		t.Fatal(err)
	}
	first, err := old.save(ctx, partitionKey(2), read, 10, l.gen, []byte("state at 10"))
	if err != nil {
		t.Fatal(err)
	}
	// The old owner pauses past its lease; the successor takes the
	// partition and checkpoints.
	old.release(ctx, l)
	l2, ok, err := successor.acquire(ctx, partitionKey(2))
	if err != nil || !ok {
		t.Fatalf("successor's lease: %v %v", ok, err)
	}
	if l2.gen <= l.gen {
		t.Fatalf("the successor's generation %d is not above the former owner's %d", l2.gen, l.gen)
	}
	cp, err := successor.load(ctx, partitionKey(2))
	if err != nil || cp.meta.Seq != 10 || string(cp.state) != "state at 10" {
		t.Fatalf("successor loaded %+v %q (%v), want the checkpoint at 10", cp.meta, cp.state, err)
	}
	if _, err := successor.save(ctx, partitionKey(2), cp, 25, l2.gen, []byte("state at 25")); err != nil {
		t.Fatal(err)
	}
	// The former owner wakes up and checkpoints over what it had read.
	if _, err := old.save(ctx, partitionKey(2), first, 30, l.gen, []byte("stale")); !errors.Is(err, errFenced) {
		t.Fatalf("the former owner's checkpoint: %v, want it fenced", err)
	}
	if err := old.renew(ctx, l); err == nil {
		t.Fatal("the former owner renewed a lease the successor holds")
	}
	cp, err = successor.load(ctx, partitionKey(2))
	if err != nil || cp.meta.Seq != 25 || string(cp.state) != "state at 25" {
		t.Fatalf("after the former owner's try the checkpoint is %+v %q (%v), want the successor's at 25", cp.meta, cp.state, err)
	}
}

// With two NATS servers of three gone, JetStream has no quorum: ingest
// answers 503 (so the agent keeps the batch and retries) instead of a 204
// it cannot keep; with them back, the same batch is taken.
func TestIngestAnswers503WithoutAQuorum(t *testing.T) {
	nats := testenv.StartNATSCluster(t, "quorum", 3, nil)
	tr := newTier(t, nats, 4)
	tr.cfg.PublishTimeout = 2 * time.Second
	tr.cfg.URLs = nats.URLs()[:1]
	in, pub := tr.ingest("ingest")
	batches := testenv.RecordedSite([]string{"s1"}, 2, time.Now().Add(-time.Hour).Truncate(time.Minute), 1)
	if code := post(t, in.URL, batches[0]); code != 204 {
		t.Fatalf("with every server up: %d", code)
	}
	// Another batch: the one stored is a duplicate, which the stream's
	// leader answers without its followers (it is stored already).
	batch := batches[1]
	nats.Stop(1)
	nats.Stop(2)
	if code := post(t, in.URL, batch); code != 503 {
		t.Fatalf("without a quorum ingest answered %d, want 503", code)
	}
	if pub.Failed.Load() == 0 {
		t.Error("the failed publish is not counted")
	}
	nats.Start(1)
	nats.Start(2)
	testenv.WaitFor(t, 60*time.Second, "the batch taken again once the servers are back", func() bool { return post(t, in.URL, batch) == 204 })
}

// A member configured with other partitions (it would send a host to a
// second partition and count it twice) or another lease is refused.
func TestAMemberUnlikeItsTierIsRefused(t *testing.T) {
	nats := testenv.StartNATSCluster(t, "unlike", 1, nil)
	tr := newTier(t, nats, 4)
	tr.cfg.Replicas = 1
	tr.conn("first")
	for _, c := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.Partitions = 8 }, "the tier runs with partitions 4"},
		{func(c *Config) { c.Accounting.Window = 5 * time.Minute }, "accounting window 1m0s"},
		{func(c *Config) { c.Lease = 20 * time.Second }, "every member needs the same lease"},
	} {
		cfg := tr.cfg
		cfg.Name = "other"
		c.change(&cfg)
		conn, err := Connect(tr.ctx, cfg)
		if err == nil {
			conn.Close()
			t.Fatalf("a member unlike its tier was let in (%s)", c.want)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("refused with %v, want it to say %q", err, c.want)
		}
	}
}

// A member that starts before its NATS servers waits for them.
func TestAMemberStartedBeforeNATSWaitsForIt(t *testing.T) {
	nats := testenv.StartNATSCluster(t, "late", 1, nil)
	tr := newTier(t, nats, 4)
	tr.cfg.Replicas = 1
	nats.Stop(0)
	done := make(chan error, 1)
	go func() {
		cfg := tr.cfg
		cfg.Name = "early"
		c, err := Connect(tr.ctx, cfg)
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	nats.Start(0)
	if err := <-done; err != nil {
		t.Fatalf("a member started before NATS: %v", err)
	}
}

// A worker that is stopped leaves a checkpoint of everything it read: its
// successor goes on from there instead of reading the partition again. (Its
// periodic checkpoints are an hour apart here, so only the last can.)
func TestAStoppedWorkerCheckpointsWhatItRead(t *testing.T) {
	nats := testenv.StartNATSCluster(t, "c", 3, nil)
	tr := newTier(t, nats, 1)
	tr.cfg.CheckpointEvery = time.Hour
	in, _ := tr.ingest("ingest-1")
	batches := testenv.RecordedSite([]string{"s1"}, 2, pastHour(time.Now()), 2)
	lines := 0
	for _, b := range batches {
		if code := post(t, in.URL, b); code != 204 {
			t.Fatalf("ingest answered %d", code)
		}
		lines += bytes.Count(b, []byte("\n"))
	}
	_, stop := tr.worker("w1")
	testenv.WaitFor(t, time.Minute, "the worker to write every raw line", func() bool { return tr.raw.rawCount() == lines })
	stop()
	probe := tr.conn("probe")
	s, err := probe.js.Stream(tr.ctx, probe.cfg.name(rawStream))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(tr.ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := probe.load(tr.ctx, partitionKey(0))
	if err != nil {
		t.Fatal(err)
	}
	if cp.meta.Seq != info.State.LastSeq || len(cp.state) == 0 {
		t.Errorf("the stopped worker's checkpoint holds the stream up to %d (%d bytes of state), the stream's last message is %d", cp.meta.Seq, len(cp.state), info.State.LastSeq)
	}
}
