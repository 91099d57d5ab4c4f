package sitemodel

import (
	"fmt"
	"time"
)

// Workload is one workload's share of one simulated GPU, with the tags the
// agent gives it (docs/ACCOUNTING.md#workloads).
type Workload struct {
	Kind, ID string
	Share    float64
	Tags     [][2]string // namespace, owner_kind, owner, label_*
}

// WorkloadBlock is how long the simulated site keeps its placement: at
// each block's start jobs and pods move to other GPUs.
const WorkloadBlock = 10 * time.Minute

// Workloads returns what runs on each of the host's GPUs at t: a Slurm
// training job on half of them, the same job on every host of the site
// (a job spanning hosts), moving between two halves from block to block;
// the host's inference pod (serving model) on the others of the first
// three quarters; two notebook pods sharing the next GPU; and on the last,
// a batch unit every other block, else nothing. A server of fewer than
// four GPUs runs only the job.
func (h *Host) Workloads(t time.Time, model string) [][]Workload {
	g := h.Server.GPUs
	out := make([][]Workload, g)
	b := t.Unix() / int64(WorkloadBlock/time.Second)
	job := Workload{Kind: "slurm_job", ID: fmt.Sprint(4000 + b%1000), Share: 1, Tags: [][2]string{{"label_team", "research"}}}
	if g < 4 {
		for i := range out {
			out[i] = []Workload{job}
		}
		return out
	}
	first := int(b%2) * g / 4
	serving := Workload{Kind: "k8s_pod", ID: "serving/vllm-" + h.Name, Share: 1, Tags: [][2]string{
		{"namespace", "serving"}, {"owner_kind", "Deployment"}, {"owner", "vllm"}, {"label_team", "serving"}, {"label_model", model}}}
	for i := range g * 3 / 4 {
		if i >= first && i < first+g/2 {
			out[i] = []Workload{job}
		} else {
			out[i] = []Workload{serving}
		}
	}
	notebook := func(ordinal string, share float64) Workload {
		return Workload{Kind: "k8s_pod", ID: "research/notebook-" + h.Name + "-" + ordinal, Share: share, Tags: [][2]string{
			{"namespace", "research"}, {"owner_kind", "StatefulSet"}, {"owner", "notebook-" + h.Name}, {"label_team", "research"}}}
	}
	for i := g * 3 / 4; i < g-1; i++ {
		out[i] = []Workload{notebook("0", 0.7), notebook("1", 0.3)}
	}
	if b%2 == 1 {
		out[g-1] = []Workload{{Kind: "systemd_unit", ID: "embed-batch.service", Share: 1}}
	}
	return out
}
