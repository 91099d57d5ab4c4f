// Package workload names the workloads on a host's GPUs for the agent: a
// process's cgroup says which Slurm job, Kubernetes pod or systemd unit it
// belongs to; the kubelet and the API server (package kube) say what a pod
// is (namespace, owner, labels) and which pods hold which GPUs; scontrol
// says what a Slurm job is (its comment's key=value pairs, account, user).
// The nvml source asks it for each GPU's workloads on every pass, so
// lookups never wait: Refresh fetches in the background.
package workload

import (
	"context"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/internal/schema"
	"github.com/joules-energy/joules/kube"
	"github.com/joules-energy/joules/nvml"
)

// Pods is what the resolver needs of the kubelet and the API server
// (kube.Client).
type Pods interface {
	Snapshot(ctx context.Context) (*kube.Snapshot, error)
}

// Config says where to look.
type Config struct {
	// Labels are the user-chosen tags: the tag name (it becomes
	// label_<name>) and the pod label it comes from; a Slurm job's comment
	// key is that label's or the tag's name.
	Labels map[string]string
	Pods   Pods // nil: no Kubernetes
	// Scontrol is the scontrol command for Slurm jobs; "" leaves Slurm
	// jobs named by id only.
	Scontrol string
	// SysFS is the host's /sys, for its CPU count (default /sys).
	SysFS  string
	Logger *slog.Logger
}

// Resolver names workloads; its methods are safe for concurrent use.
type Resolver struct {
	cfg    Config
	log    *slog.Logger
	slurm  *slurm
	labels []string // sorted tag names

	mu          sync.Mutex
	snap        *kube.Snapshot
	active      map[string]active // workloads the GPUs had lately, for their CPUs
	lastCollect time.Time         // the last two collections: a workload seen since
	prevCollect time.Time         // the one before counts, whatever the passes' jitter
	now         func() time.Time
	// kick asks Run for a refresh now: a GPU had a pod or job not known
	// yet, which would otherwise be named by its UID or id alone until the
	// next refresh.
	kick chan struct{}
}

// active is a workload seen on a GPU, and its requested CPUs.
type active struct {
	w    nvml.Workload
	cpus float64
	last time.Time
}

// activeFor is how long a workload is remembered after it was last seen
// on a GPU; its CPUs are reported only while the GPUs have it.
const activeFor = 2 * time.Minute

// kickEvery is the least time between refreshes asked for by unknown
// workloads: a node whose pods churn must not list them from the API
// server every second.
const kickEvery = 5 * time.Second

// New returns a resolver; Run (or Refresh) fetches what it knows.
func New(cfg Config) *Resolver {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SysFS == "" {
		cfg.SysFS = "/sys"
	}
	r := &Resolver{cfg: cfg, log: cfg.Logger, labels: slices.Sorted(maps.Keys(cfg.Labels)), active: map[string]active{}, now: time.Now,
		kick: make(chan struct{}, 1)}
	if cfg.Scontrol != "" {
		r.slurm = newSlurm(cfg.Scontrol, cfg.Logger)
	}
	return r
}

// Run refreshes every interval (10 s if none) until ctx ends.
func (r *Resolver) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		last := time.Now()
		r.Refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
			if wait := kickEvery - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
	}
}

// unknown asks for a refresh soon, without waiting.
func (r *Resolver) unknown() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Refresh fetches the pods of this node and the Slurm jobs asked for
// since. A source that fails keeps its last answer (kube does the same);
// the error is logged by the source.
func (r *Resolver) Refresh(ctx context.Context) {
	if r.cfg.Pods != nil {
		snap, err := r.cfg.Pods.Snapshot(ctx)
		if err != nil {
			r.log.Debug("pods", "err", err)
		}
		if snap != nil {
			r.mu.Lock()
			r.snap = snap
			r.mu.Unlock()
		}
	}
	if r.slurm != nil {
		r.slurm.refresh(ctx)
	}
}

// OfProcess implements nvml.Workloads.
func (r *Resolver) OfProcess(c nvml.Cgroup) (nvml.Workload, bool) {
	w, ok := nvml.WorkloadOfCgroup(c)
	if !ok {
		return w, false
	}
	var cpus float64
	switch w.Kind {
	case schema.WorkloadK8sPod:
		if p, ok := r.pods().ByUID(c.PodUID); ok {
			w, cpus = r.pod(p), p.CPUs
		} else if r.cfg.Pods != nil {
			r.unknown()
		}
	case schema.WorkloadSlurmJob:
		if r.slurm != nil {
			if j, ok := r.slurm.job(c.SlurmJob); ok {
				w.Tags, cpus = r.jobTags(j), j.cpusPerNode()
			} else {
				r.unknown()
			}
		}
	}
	r.seen(w, cpus)
	return w, true
}

// OnGPU implements nvml.Workloads: the pods the kubelet allocated the GPU
// to, when the agent sees none of its processes.
func (r *Resolver) OnGPU(uuid string, _ int, _ time.Time) []nvml.Workload {
	var out []nvml.Workload
	for _, p := range r.pods().ByDevice(uuid) {
		w := r.pod(p)
		r.seen(w, p.CPUs)
		out = append(out, w)
	}
	return out
}

// pods is the last snapshot of this node's pods (nil: none yet).
func (r *Resolver) pods() *kube.Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snap
}

// pod names a pod: namespace/name, with its namespace, owner and labels.
func (r *Resolver) pod(p kube.Pod) nvml.Workload {
	id := p.Namespace + "/" + p.Name
	if p.Name == "" {
		id = p.UID
	}
	w := nvml.Workload{Kind: schema.WorkloadK8sPod, ID: id, Tags: []collector.Label{
		{Name: schema.TagNamespace, Value: p.Namespace}, {Name: schema.TagOwnerKind, Value: p.OwnerKind}, {Name: schema.TagOwner, Value: p.Owner}}}
	for _, name := range r.labels {
		if v := p.Labels[r.cfg.Labels[name]]; v != "" {
			w.Tags = append(w.Tags, collector.Label{Name: schema.LabelPrefix + name, Value: v})
		}
	}
	return w
}

func (r *Resolver) jobTags(j slurmJob) []collector.Label {
	var tags []collector.Label
	for _, name := range r.labels {
		v := j.value(r.cfg.Labels[name])
		if v == "" {
			v = j.value(name) // a comment says model=…, a pod label app.kubernetes.io/model
		}
		if v != "" {
			tags = append(tags, collector.Label{Name: schema.LabelPrefix + name, Value: v})
		}
	}
	return tags
}

func (r *Resolver) seen(w nvml.Workload, cpus float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active[w.Kind+"\x00"+w.ID] = active{w: w, cpus: cpus, last: r.now()}
}

const (
	helpHostCPUs     = "CPUs the host has online: the whole of the requested-CPUs rule of workload accounting."
	helpWorkloadCPUs = "CPUs the workload requested on this host (a pod's requests, a Slurm job's CPUs per node), for the requested-CPUs rule of workload accounting."
)

// Collect implements collector.Source: the host's CPUs and the requested
// CPUs of the workloads its GPUs had since the collection before the last
// (a workload that left them no longer holds its share of the host; two
// collections, so that one that falls between two GPU passes misses none).
func (r *Resolver) Collect(context.Context) ([]collector.Sample, error) {
	now := r.now()
	var out []collector.Sample
	if n := onlineCPUs(r.cfg.SysFS); n > 0 {
		out = append(out, collector.Sample{Name: schema.HostCPUs, Help: helpHostCPUs, Kind: collector.Gauge, Value: float64(n), Time: now})
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	since := r.prevCollect
	r.prevCollect, r.lastCollect = r.lastCollect, now
	for k, a := range r.active {
		if now.Sub(a.last) > activeFor {
			delete(r.active, k)
			continue
		}
		if a.cpus <= 0 || !a.last.After(since) {
			continue
		}
		labels := append([]collector.Label{{Name: schema.TagWorkloadKind, Value: a.w.Kind}, {Name: schema.TagWorkload, Value: a.w.ID}}, a.w.Tags...)
		labels = slices.DeleteFunc(labels, func(l collector.Label) bool { return l.Value == "" })
		collector.SortLabels(labels)
		out = append(out, collector.Sample{Name: schema.WorkloadCPUs, Help: helpWorkloadCPUs, Kind: collector.Gauge, Value: a.cpus, Labels: labels, Time: now})
	}
	return out, nil
}

// onlineCPUs counts the CPUs in sysfs's devices/system/cpu/online ("0-63",
// "0-31,64-95"); 0 when it cannot be read.
func onlineCPUs(sysfs string) int {
	raw, err := os.ReadFile(filepath.Join(sysfs, "devices/system/cpu/online"))
	if err != nil {
		return 0
	}
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(string(raw)), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0
			}
		}
		n += b - a + 1
	}
	return n
}
