package nvml

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/joules-energy/joules/collector"
)

// processTracker keeps what per-process metrics need between passes.
type processTracker struct {
	procfs       string
	lastSampleTS uint64             // newest utilization sample seen, in µs
	energy       map[uint32]float64 // estimated joules per running pid
	lastEnergy   float64            // board energy at the previous pass
	haveEnergy   bool
}

func newProcessTracker(procfs string) *processTracker {
	return &processTracker{procfs: procfs, energy: map[uint32]float64{}}
}

const helpProcEnergy = "Estimated energy of the process: the board's energy over each interval shared out by the processes' SM utilization. An estimate: NVML does not meter processes."

// processes reports the GPU's compute processes with their memory and,
// where NVML has utilization samples, their SM share and an estimated share
// of the board's power and energy.
func (r *reader) processes() {
	d := r.g.dev
	t := r.g.procs
	procs, ret := d.GetComputeRunningProcesses()
	if !r.ok("processes", ret) {
		return
	}
	sm := map[uint32]uint32{} // percent of the GPU's SM time, newest sample per pid
	if samples, ret := d.GetProcessUtilization(t.lastSampleTS); ret == gonvml.SUCCESS {
		for _, s := range samples {
			sm[s.Pid] = max(sm[s.Pid], s.SmUtil)
			t.lastSampleTS = max(t.lastSampleTS, s.TimeStamp)
		}
	}
	var smTotal uint32
	for _, p := range procs {
		smTotal += sm[p.Pid]
	}
	power, havePower := r.find("joules_gpu_power_watts")
	energy, haveEnergy := r.find("joules_gpu_energy_joules_total")
	var energyDelta float64
	if haveEnergy && t.haveEnergy && energy >= t.lastEnergy {
		energyDelta = energy - t.lastEnergy
	}
	t.lastEnergy, t.haveEnergy = energy, haveEnergy

	running := map[uint32]bool{}
	var loads []Workload
	var uses [][]procUse
	var all []procUse
	for _, p := range procs {
		running[p.Pid] = true
		use := procUse{sm: sm[p.Pid], mem: p.UsedGpuMemory}
		all = append(all, use)
		labels, cg := processLabels(t.procfs, p.Pid)
		if w, ok := r.g.opts.Workloads.OfProcess(cg); ok {
			i := slices.IndexFunc(loads, func(x Workload) bool { return x.Kind == w.Kind && x.ID == w.ID })
			if i < 0 {
				loads, uses = append(loads, w), append(uses, nil)
				i = len(loads) - 1
			}
			uses[i] = append(uses[i], use)
		}
		r.add("joules_gpu_process_memory_used_bytes", "Device memory used by the process.", collector.Gauge, float64(p.UsedGpuMemory), labels...)
		if _, ok := sm[p.Pid]; !ok {
			continue
		}
		r.add("joules_gpu_process_sm_utilization_ratio", "Share of the GPU's SM time the process used (NVML process utilization samples).", collector.Gauge, float64(sm[p.Pid])/100, labels...)
		if smTotal == 0 {
			continue
		}
		share := float64(sm[p.Pid]) / float64(smTotal)
		if havePower {
			r.add("joules_gpu_process_estimated_power_watts", "Estimated power of the process: board power times its share of the SM utilization of all processes. An estimate.",
				collector.Gauge, power*share, labels...)
		}
		t.energy[p.Pid] += energyDelta * share
		r.add("joules_gpu_process_estimated_energy_joules_total", helpProcEnergy, collector.Counter, t.energy[p.Pid], labels...)
	}
	for pid := range t.energy {
		if !running[pid] {
			delete(t.energy, pid)
		}
	}
	if len(loads) > 0 {
		r.addShares(loads, workloadShares(uses, all))
	} else if ws := r.g.opts.Workloads.OnGPU(r.g.uuid, r.g.index, r.now); len(ws) > 0 {
		r.addShares(ws, allocatedShares(ws))
	}
}

// find returns the value of a sample this pass already produced for the GPU.
func (r *reader) find(name string) (float64, bool) {
	for _, s := range r.out {
		if s.Name == name {
			return s.Value, true
		}
	}
	return 0, false
}

// processLabels names a process: pid, command, and where its cgroup shows
// them, its systemd unit, Slurm job and Kubernetes pod.
func processLabels(procfs string, pid uint32) ([]collector.Label, Cgroup) {
	var cg Cgroup
	p := strconv.FormatUint(uint64(pid), 10)
	labels := []collector.Label{lbl("pid", p)}
	if comm, err := os.ReadFile(filepath.Join(procfs, p, "comm")); err == nil {
		labels = append(labels, lbl("command", strings.TrimSpace(string(comm))))
	}
	if raw, err := os.ReadFile(filepath.Join(procfs, p, "cgroup")); err == nil {
		cg = parseCgroup(string(raw))
		for _, l := range []collector.Label{lbl("systemd_unit", cg.Unit), lbl("slurm_job", cg.SlurmJob), lbl("pod_uid", cg.PodUID)} {
			if l.Value != "" {
				labels = append(labels, l)
			}
		}
	}
	return labels, cg
}

var (
	slurmJobRE = regexp.MustCompile(`job_(\d+)`)
	podUIDRE   = regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})`)
)

// parseCgroup reads /proc/PID/cgroup: the cgroup v2 line ("0::/path") or,
// on v1 hosts, the systemd or memory hierarchy.
func parseCgroup(content string) Cgroup {
	var path string
	for _, line := range strings.Split(content, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			path = parts[2]
		case path == "" && (parts[1] == "name=systemd" || strings.Contains(parts[1], "memory")):
			path = parts[2]
		}
	}
	var w Cgroup
	if m := slurmJobRE.FindStringSubmatch(path); m != nil {
		w.SlurmJob = m[1]
	}
	if m := podUIDRE.FindStringSubmatch(path); m != nil {
		w.PodUID = strings.ReplaceAll(m[1], "_", "-")
	}
	elems := strings.Split(path, "/")
	for i := len(elems) - 1; i >= 0; i-- {
		if w.SlurmJob != "" || w.PodUID != "" {
			break // the job or pod names the workload; its unit is slurmstepd's or the container runtime's
		}
		if strings.HasSuffix(elems[i], ".service") || strings.HasSuffix(elems[i], ".scope") {
			w.Unit = elems[i]
			break
		}
	}
	return w
}
