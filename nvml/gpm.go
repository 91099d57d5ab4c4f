package nvml

import (
	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/joules-energy/joules/collector"
)

// gpmLib is what GPM needs from the library.
type gpmLib interface {
	GpmSampleAlloc() (gonvml.GpmSample, gonvml.Return)
	GpmMetricsGet(*gonvml.GpmMetricsGetType) gonvml.Return
}

// gpmState keeps the previous GPM sample of a GPU: each pass computes its
// metrics between the previous pass's sample and its own, so they cover
// exactly one interval.
type gpmState struct {
	dev       gonvml.Device
	prev, cur gonvml.GpmSample
	havePrev  bool
	// get is reused every pass: the request carries room for every GPM
	// metric NVML has (~25 KB) and was the largest allocation of a pass.
	get gonvml.GpmMetricsGetType
}

// newGPMState returns nil where the GPU has no GPM (before Hopper).
func newGPMState(dev gonvml.Device) *gpmState {
	support, ret := dev.GpmQueryDeviceSupport()
	if ret != gonvml.SUCCESS || support.IsSupportedDevice == 0 {
		return nil
	}
	return &gpmState{dev: dev}
}

func (st *gpmState) free() {
	for _, s := range []gonvml.GpmSample{st.prev, st.cur} {
		if s != nil {
			s.Free()
		}
	}
	st.prev, st.cur, st.havePrev = nil, nil, false
}

type gpmMetric struct {
	id     gonvml.GpmMetricId
	name   string
	help   string
	scale  float64
	labels []collector.Label
}

const mib = 1 << 20

var gpmMetrics = []gpmMetric{
	{gonvml.GPM_METRIC_SM_UTIL, "joules_gpu_sm_activity_ratio", "Share of time SMs were busy over the interval (GPM).", 0.01, nil},
	{gonvml.GPM_METRIC_SM_OCCUPANCY, "joules_gpu_sm_occupancy_ratio", "Resident warps as a share of the SMs' maximum over the interval (GPM).", 0.01, nil},
	{gonvml.GPM_METRIC_ANY_TENSOR_UTIL, "joules_gpu_tensor_activity_ratio", "Share of time any tensor pipe was busy over the interval (GPM).", 0.01, nil},
	{gonvml.GPM_METRIC_FP16_UTIL, "joules_gpu_fp_activity_ratio", "Share of time the FP16, FP32 or FP64 pipe was busy over the interval (GPM).", 0.01, []collector.Label{{Name: "precision", Value: "fp16"}}},
	{gonvml.GPM_METRIC_FP32_UTIL, "joules_gpu_fp_activity_ratio", "Share of time the FP16, FP32 or FP64 pipe was busy over the interval (GPM).", 0.01, []collector.Label{{Name: "precision", Value: "fp32"}}},
	{gonvml.GPM_METRIC_FP64_UTIL, "joules_gpu_fp_activity_ratio", "Share of time the FP16, FP32 or FP64 pipe was busy over the interval (GPM).", 0.01, []collector.Label{{Name: "precision", Value: "fp64"}}},
	{gonvml.GPM_METRIC_DRAM_BW_UTIL, "joules_gpu_dram_bandwidth_utilization_ratio", "Device memory bandwidth used as a share of the peak over the interval (GPM).", 0.01, nil},
	{gonvml.GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC, "joules_gpu_gpm_nvlink_bytes_per_second", "NVLink traffic of all links over the interval (GPM).", mib, []collector.Label{{Name: "direction", Value: "tx"}}},
	{gonvml.GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC, "joules_gpu_gpm_nvlink_bytes_per_second", "NVLink traffic of all links over the interval (GPM).", mib, []collector.Label{{Name: "direction", Value: "rx"}}},
	{gonvml.GPM_METRIC_PCIE_TX_PER_SEC, "joules_gpu_gpm_pcie_bytes_per_second", "PCIe traffic over the interval (GPM).", mib, []collector.Label{{Name: "direction", Value: "tx"}}},
	{gonvml.GPM_METRIC_PCIE_RX_PER_SEC, "joules_gpu_gpm_pcie_bytes_per_second", "PCIe traffic over the interval (GPM).", mib, []collector.Label{{Name: "direction", Value: "rx"}}},
}

// gpmMetrics takes this pass's GPM sample and, from the second pass on,
// adds the metrics between it and the previous one.
func (r *reader) gpmMetrics(lib gpmLib) {
	st := r.g.gpm
	if st.cur == nil {
		var ret gonvml.Return
		if st.prev, ret = lib.GpmSampleAlloc(); !r.ok("gpm", ret) {
			return
		}
		if st.cur, ret = lib.GpmSampleAlloc(); !r.ok("gpm", ret) {
			st.prev.Free()
			st.prev = nil
			return
		}
	}
	if !r.ok("gpm", st.dev.GpmSampleGet(st.cur)) {
		st.havePrev = false
		return
	}
	if st.havePrev {
		mg := &st.get
		mg.Version, mg.NumMetrics, mg.Sample1, mg.Sample2 = gonvml.GPM_METRICS_GET_VERSION, uint32(len(gpmMetrics)), st.prev, st.cur
		for i, m := range gpmMetrics {
			mg.Metrics[i] = gonvml.GpmMetric{MetricId: uint32(m.id)} // no result of the last pass survives
		}
		if r.ok("gpm", lib.GpmMetricsGet(mg)) {
			for i, m := range gpmMetrics {
				if gonvml.Return(mg.Metrics[i].NvmlReturn) == gonvml.SUCCESS {
					r.add(m.name, m.help, collector.Gauge, mg.Metrics[i].Value*m.scale, m.labels...)
				}
			}
		}
	}
	st.prev, st.cur, st.havePrev = st.cur, st.prev, true
}
