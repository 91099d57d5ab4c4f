package nvml

import (
	"slices"
	"time"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/internal/schema"
)

// Workload is who runs on a GPU: a Slurm job, a Kubernetes pod or a
// systemd unit, with the tags that describe it (namespace, owner_kind,
// owner, label_*).
type Workload struct {
	Kind, ID string
	Tags     []collector.Label
	// Share is its share of the GPU where the allocator knows it (OnGPU);
	// 0: the GPU's workloads share it equally.
	Share float64
}

// Cgroup is what a process's cgroup path says of its workload.
type Cgroup struct {
	Unit, SlurmJob, PodUID string
}

// Workloads names workloads: the agent's workload package (cgroups, the
// kubelet's pod-resources and the API server, Slurm), or a simulated site.
type Workloads interface {
	// OfProcess names the workload a process's cgroup shows; false: none.
	OfProcess(c Cgroup) (Workload, bool)
	// OnGPU lists the workloads the GPU is allocated to, for a GPU whose
	// processes say nothing (a container without the host's PIDs, a
	// simulation).
	OnGPU(uuid string, index int, now time.Time) []Workload
}

// cgroupWorkloads names workloads by their cgroup alone: a pod by its UID.
type cgroupWorkloads struct{}

func (cgroupWorkloads) OfProcess(c Cgroup) (Workload, bool) { return WorkloadOfCgroup(c) }

func (cgroupWorkloads) OnGPU(string, int, time.Time) []Workload { return nil }

// WorkloadOfCgroup is the workload a cgroup names, without looking further:
// a Slurm job by its id, a pod by its UID, else its systemd unit.
func WorkloadOfCgroup(c Cgroup) (Workload, bool) {
	switch {
	case c.SlurmJob != "":
		return Workload{Kind: schema.WorkloadSlurmJob, ID: c.SlurmJob}, true
	case c.PodUID != "":
		return Workload{Kind: schema.WorkloadK8sPod, ID: c.PodUID}, true
	case c.Unit != "":
		return Workload{Kind: schema.WorkloadSystemdUnit, ID: c.Unit}, true
	}
	return Workload{}, false
}

const helpShare = "The workload's share of the GPU in the last interval: by its processes' SM utilization where NVML samples it, else by their device memory; a GPU's only workload has all of it. Accounting shares the GPU's energy by it (docs/ACCOUNTING.md)."

// procUse is what one process of a workload used.
type procUse struct {
	sm  uint32
	mem uint64
}

// workloadShares sums each workload's processes (uses, by workload) and
// shares the GPU among all its processes (all): by SM utilization where
// samples exist, else by device memory, else equally. Processes of no
// workload keep their part, unattributed.
func workloadShares(uses [][]procUse, all []procUse) []float64 {
	var smAll, memAll uint64
	for _, u := range all {
		smAll += uint64(u.sm)
		memAll += u.mem
	}
	n := len(all)
	shares := make([]float64, len(uses))
	for i := range uses {
		var sm, mem uint64
		for _, u := range uses[i] {
			sm += uint64(u.sm)
			mem += u.mem
		}
		switch {
		case smAll > 0:
			shares[i] = float64(sm) / float64(smAll)
		case memAll > 0:
			shares[i] = float64(mem) / float64(memAll)
		case n > 0:
			shares[i] = float64(len(uses[i])) / float64(n)
		}
	}
	return shares
}

// allocatedShares are the shares of the workloads a GPU is allocated to:
// each its own where the allocator says, the rest equally.
func allocatedShares(ws []Workload) []float64 {
	shares := make([]float64, len(ws))
	given, unsaid := 0.0, 0
	for i, w := range ws {
		if w.Share > 0 {
			shares[i] = w.Share
			given += w.Share
		} else {
			unsaid++
		}
	}
	for i, w := range ws {
		if w.Share <= 0 {
			shares[i] = max(0, 1-given) / float64(unsaid)
		}
	}
	return shares
}

// addShares adds one share sample per workload.
func (r *reader) addShares(ws []Workload, shares []float64) {
	for i, w := range ws {
		labels := append([]collector.Label{lbl(schema.TagWorkloadKind, w.Kind), lbl(schema.TagWorkload, w.ID)}, w.Tags...)
		labels = slices.DeleteFunc(labels, func(l collector.Label) bool { return l.Value == "" })
		r.add(schema.WorkloadShare, helpShare, collector.Gauge, shares[i], labels...)
	}
}
