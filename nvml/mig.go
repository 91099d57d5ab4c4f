package nvml

import (
	"strings"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/joules-energy/joules/collector"
)

// mig reports the MIG instances of a GPU in MIG mode: their profile and
// memory. Board power and energy stay on the parent GPU only; instances
// have no power reading of their own and none is invented.
func (r *reader) mig() {
	d := r.g.dev
	if !r.supported("mig") {
		return
	}
	current, _, ret := d.GetMigMode()
	if !r.ok("mig", ret) {
		return
	}
	r.add("joules_gpu_mig_mode_enabled", "Whether the GPU is in MIG mode (1) or not (0).", collector.Gauge, boolValue(current == gonvml.DEVICE_MIG_ENABLE))
	if current != gonvml.DEVICE_MIG_ENABLE {
		return
	}
	n, ret := d.GetMaxMigDeviceCount()
	if !r.ok("mig", ret) {
		return
	}
	for i := range n {
		m, ret := d.GetMigDeviceHandleByIndex(i)
		if ret != gonvml.SUCCESS {
			continue // NOT_FOUND: no instance in this slot
		}
		gi, ret1 := m.GetGpuInstanceId()
		ci, ret2 := m.GetComputeInstanceId()
		if ret1 != gonvml.SUCCESS || ret2 != gonvml.SUCCESS {
			continue
		}
		name, _ := m.GetName()
		labels := []collector.Label{lbl("gpu_instance", itoa(gi)), lbl("compute_instance", itoa(ci)), lbl("profile", migProfile(name))}
		r.add("joules_gpu_mig_instance_info", "A MIG instance of the GPU with its profile; always 1.", collector.Gauge, 1, labels...)
		if mem, ret := m.GetMemoryInfo(); ret == gonvml.SUCCESS {
			r.add("joules_gpu_mig_memory_used_bytes", "Memory allocated in the MIG instance.", collector.Gauge, float64(mem.Used), labels...)
			r.add("joules_gpu_mig_memory_total_bytes", "Memory of the MIG instance.", collector.Gauge, float64(mem.Total), labels...)
		}
	}
}

// migProfile takes the profile from a MIG device name such as
// "NVIDIA A100-SXM4-40GB MIG 1g.5gb".
func migProfile(name string) string {
	if _, p, ok := strings.Cut(name, " MIG "); ok {
		return p
	}
	return "unknown"
}
