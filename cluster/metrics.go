package cluster

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/joules-energy/joules/aggregator/accounting"
)

// Metrics is a member's /metrics collector: what each of its roles did,
// and the roll-up's accounting while it leads. Any of the roles may be nil.
type Metrics struct {
	Roles     []string
	Publisher *Publisher
	Worker    *Worker
	Rollup    *Rollup
}

var (
	descRole        = prometheus.NewDesc("joules_cluster_role", "The roles this member plays (1).", []string{"role"}, nil)
	descPublished   = prometheus.NewDesc("joules_cluster_published_messages_total", "Messages of raw points JetStream acknowledged.", nil, nil)
	descDuplicate   = prometheus.NewDesc("joules_cluster_duplicate_messages_total", "Of those, messages JetStream had already (a retried request).", nil, nil)
	descPubFailed   = prometheus.NewDesc("joules_cluster_publish_failures_total", "Requests answered 503 because JetStream did not acknowledge every part.", nil, nil)
	descPartitions  = prometheus.NewDesc("joules_cluster_partitions_owned", "Partitions this worker holds now.", nil, nil)
	descPending     = prometheus.NewDesc("joules_cluster_partition_pending_messages", "Messages of the partition not yet read by this worker.", []string{"partition"}, nil)
	descCheckpoint  = prometheus.NewDesc("joules_cluster_partition_checkpoint_age_seconds", "Time since the partition's last checkpoint (one is written only once the points it covers left the output spool).", []string{"partition"}, nil)
	descWorkerMsgs  = prometheus.NewDesc("joules_cluster_worker_messages_total", "Messages of raw points a worker read.", nil, nil)
	descWorkerPts   = prometheus.NewDesc("joules_cluster_worker_points_total", "Raw points a worker read.", nil, nil)
	descTakeovers   = prometheus.NewDesc("joules_cluster_partition_takeovers_total", "Partitions this worker took a lease of.", nil, nil)
	descHandovers   = prometheus.NewDesc("joules_cluster_partition_handovers_total", "Partitions this worker gave up to balance the workers.", nil, nil)
	descFenced      = prometheus.NewDesc("joules_cluster_fenced_total", "Checkpoints refused because another member had written one since: ownership had moved.", []string{"role"}, nil)
	descCheckpoints = prometheus.NewDesc("joules_cluster_checkpoints_total", "Checkpoints written.", []string{"role"}, nil)
	descLeading     = prometheus.NewDesc("joules_cluster_rollup_leading", "1 while this member is the roll-up.", nil, nil)
	descPartials    = prometheus.NewDesc("joules_cluster_rollup_partials_total", "Partials the roll-up took in.", nil, nil)
	descDerived     = prometheus.NewDesc("joules_cluster_rollup_derived_points_total", "Derived points the roll-up wrote.", nil, nil)
	descIncomplete  = prometheus.NewDesc("joules_cluster_rollup_incomplete_windows_total", "Windows the roll-up wrote before every partition had published them (after cluster.rollup_wait).", nil, nil)
	descRebuilt     = prometheus.NewDesc("joules_cluster_partition_rebuilt_total", "Partitions whose checkpoint could not be read (another version, damaged) and whose accounting was rebuilt from the start of the stream.", nil, nil)
	descFailures    = prometheus.NewDesc("joules_cluster_partition_failures_total", "Partition runs that stopped on an error (NATS, the output, a partial too large) and were taken up again from their checkpoint on the worker's next round.", nil, nil)
	descGaps        = prometheus.NewDesc("joules_cluster_partition_retention_gaps_total", "Partitions taken up from a checkpoint older than what the raw stream still holds (cluster.retention): the points in between are not accounted.", nil, nil)
	descSuperseded  = prometheus.NewDesc("joules_cluster_rollup_superseded_total", "Partials and progress of a former owner of a partition, published after its successor began: ignored.", nil, nil)
	descLatePartial = prometheus.NewDesc("joules_cluster_rollup_late_partials_total", "Partials of windows the roll-up had already let go (older than max_lateness, and every partition past them): ignored.", nil, nil)
	descRevised     = prometheus.NewDesc("joules_cluster_rollup_revised_windows_total", "Windows the roll-up wrote again because a partial of theirs changed (late points).", nil, nil)
	descRollupErr   = prometheus.NewDesc("joules_cluster_rollup_restarts_total", "Times the roll-up stopped on an error (NATS, the output) and started again from its checkpoint.", nil, nil)
	descBehind      = prometheus.NewDesc("joules_cluster_rollup_partitions_behind", "Partitions that have not published the last window whose grace has passed.", nil, nil)
)

// Describe sends nothing: the roll-up's accounting metrics come and go
// with its lease, so the collector is unchecked.
func (m *Metrics) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	c := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, r := range m.Roles {
		g(descRole, 1, r)
	}
	if p := m.Publisher; p != nil {
		c(descPublished, p.Published.Load())
		c(descDuplicate, p.Duplicates.Load())
		c(descPubFailed, p.Failed.Load())
	}
	if w := m.Worker; w != nil {
		w.mu.Lock()
		g(descPartitions, float64(len(w.owned)))
		var accts []*accounting.Accountant
		for p, r := range w.owned {
			if a := r.acct.Load(); a != nil {
				accts = append(accts, a)
			}
			label := strconv.Itoa(p)
			g(descPending, float64(r.pending.Load()), label)
			g(descCheckpoint, time.Since(time.Unix(0, r.age.Load())).Seconds(), label)
		}
		w.mu.Unlock()
		accounting.CollectPartitions(ch, accts)
		c(descWorkerMsgs, w.Messages.Load())
		c(descWorkerPts, w.Points.Load())
		c(descTakeovers, w.Takeovers.Load())
		c(descHandovers, w.Released.Load())
		c(descRebuilt, w.Rebuilt.Load())
		c(descGaps, w.Gaps.Load())
		c(descFailures, w.Failures.Load())
		c(descFenced, w.Fenced.Load(), "worker")
		c(descCheckpoints, w.Checkpoints.Load(), "worker")
	}
	if r := m.Rollup; r != nil {
		lead := 0.0
		if r.Leading.Load() {
			lead = 1
		}
		g(descLeading, lead)
		c(descPartials, r.Partials.Load())
		c(descDerived, r.Derived.Load())
		c(descFenced, r.Fenced.Load(), "rollup")
		c(descCheckpoints, r.Checkpoints.Load(), "rollup")
		c(descRollupErr, r.Errors.Load())
		if cur := r.Current(); cur != nil {
			st := cur.Stats()
			c(descIncomplete, st.Incomplete)
			c(descSuperseded, st.Superseded)
			c(descLatePartial, st.Late)
			c(descRevised, cur.Revisions())
			window := r.c.cfg.Accounting.Window
			if window <= 0 {
				window = time.Minute
			}
			closed := time.Now().Add(-r.c.cfg.Accounting.Grace).Truncate(window)
			g(descBehind, float64(len(cur.Behind(closed.UnixNano()))))
			cur.Collect(ch)
		}
	}
}
