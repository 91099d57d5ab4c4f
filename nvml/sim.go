package nvml

import (
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"sync"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxb200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// simModel describes a simulated server's GPUs.
type simModel struct {
	newServer            func() *server.Server
	idleWatts, tdpWatts  float64
	smMHz, memMHz        uint32 // maximum clocks
	pcieGen, nvlinks     int
	gpm                  bool
	energyCounter        bool
	hbmTemperatureOffset float64
}

var simModels = map[string]simModel{
	"dgxa100": {dgxa100.New, 55, 400, 1410, 1215, 4, 12, false, true, 8},
	"dgxh100": {dgxh100.New, 75, 700, 1980, 2619, 5, 18, true, true, 10},
	"dgxh200": {dgxh200.New, 75, 700, 1980, 3201, 5, 18, true, true, 10},
	"dgxb200": {dgxb200.New, 120, 1000, 1965, 3996, 6, 18, true, true, 12},
}

// SimulatedModels lists the servers Simulated accepts.
func SimulatedModels() []string {
	names := make([]string, 0, len(simModels))
	for n := range simModels {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// LoadModel drives simulated GPUs: a deterministic utilization per GPU and
// time, from which power, clocks, temperature and the other readings follow.
// Energy counters integrate the same power, so they agree with it.
type LoadModel struct {
	Start time.Time
	Seed  uint64
	Now   func() time.Time
}

// Utilization returns GPU i's utilization (0..1) at t: a slow wave per GPU
// with idle minutes, so idle-energy reports have something to find.
func (m LoadModel) Utilization(i int, t time.Time) float64 {
	phase := float64((m.Seed+uint64(i)*2654435761)%1000) / 1000 * 2 * math.Pi
	s := t.Sub(m.Start).Seconds()
	if int(s/60+float64(i)+float64(m.Seed%7))%7 == 0 {
		return 0.02 // an idle minute
	}
	u := 0.6 + 0.35*math.Sin(2*math.Pi*s/300+phase) + 0.05*math.Sin(2*math.Pi*s/7+phase)
	return math.Max(0, math.Min(1, u))
}

// Simulated returns a go-nvml mock server of the named model ("dgxh200",
// "dgxh100", "dgxb200", "dgxa100") whose readings follow a load model seeded
// by seed (use the host name, so simulated hosts differ). Every function the
// source calls is wired.
func Simulated(model, seed string) (Library, error) {
	spec, ok := simModels[model]
	if !ok {
		return nil, fmt.Errorf("unknown simulated server %q (known: %v)", model, SimulatedModels())
	}
	return simulate(spec, LoadModel{Start: time.Now(), Seed: seedOf(seed), Now: time.Now}), nil
}

// seedOf turns a name into a load model's seed.
func seedOf(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// simulate builds the mock server; tests give it a load model on a fake clock.
func simulate(spec simModel, lm LoadModel) *server.Server {
	return simulateLoad(spec, lm.Seed, loadModelSim{lm: lm, spec: spec})
}

// simLoad is what a simulated GPU's readings follow.
type simLoad interface {
	now() time.Time
	utilization(gpu int, t time.Time) float64 // 0..1
	watts(gpu int, t time.Time) float64       // NVML's power reading
	instantWatts(gpu int, t time.Time) float64
	// counters returns a function that gives GPU gpu's energy counter (mJ)
	// and NVLink data counter (KiB) at a time.
	counters(gpu int) func(t time.Time) (energyMJ, nvlinkKiB uint64)
}

// loadModelSim drives the GPUs by a LoadModel: power linear in
// utilization, counters integrated from it.
type loadModelSim struct {
	lm   LoadModel
	spec simModel
}

func (l loadModelSim) now() time.Time                         { return l.lm.Now() }
func (l loadModelSim) utilization(i int, t time.Time) float64 { return l.lm.Utilization(i, t) }
func (l loadModelSim) power(u float64) float64 {
	return l.spec.idleWatts + (l.spec.tdpWatts-l.spec.idleWatts)*u
}
func (l loadModelSim) watts(i int, t time.Time) float64 { return l.power(l.utilization(i, t)) }
func (l loadModelSim) instantWatts(i int, t time.Time) float64 {
	return l.power(math.Min(1, l.utilization(i, t)*1.03))
}

// counters integrate power by trapezoids between readings, so the energy
// counter agrees with power.
func (l loadModelSim) counters(i int) func(time.Time) (uint64, uint64) {
	var mu sync.Mutex
	var lastT time.Time
	var energyMJ, nvlinkKiB float64
	return func(now time.Time) (uint64, uint64) {
		mu.Lock()
		defer mu.Unlock()
		if !lastT.IsZero() {
			dt := now.Sub(lastT).Seconds()
			energyMJ += 1000 * dt * (l.watts(i, lastT) + l.watts(i, now)) / 2
			nvlinkKiB += dt * 100e6 * l.utilization(i, now) / float64(l.spec.nvlinks)
		} else {
			energyMJ = 1000 * 3600 * l.power(0.5) * float64(24+i) // a day of uptime before the agent started
		}
		lastT = now
		return uint64(energyMJ), uint64(nvlinkKiB)
	}
}

// simulateLoad builds the mock server with its GPUs following load.
func simulateLoad(spec simModel, seed uint64, load simLoad) *server.Server {
	srv := spec.newServer()
	srv.ShutdownFunc = func() gonvml.Return { return gonvml.SUCCESS }
	srv.EventSetCreateFunc = func() (gonvml.EventSet, gonvml.Return) {
		return &mock.EventSet{
			WaitFunc: func(ms uint32) (gonvml.EventData, gonvml.Return) {
				time.Sleep(time.Duration(ms) * time.Millisecond)
				return gonvml.EventData{}, gonvml.ERROR_TIMEOUT
			},
			FreeFunc: func() gonvml.Return { return gonvml.SUCCESS },
		}, gonvml.SUCCESS
	}
	srv.GpmSampleAllocFunc = func() (gonvml.GpmSample, gonvml.Return) {
		return &simGPMSample{}, gonvml.SUCCESS
	}
	srv.GpmMetricsGetFunc = func(mg *gonvml.GpmMetricsGetType) gonvml.Return {
		return simGPMMetrics(spec, mg)
	}
	busIDs := []uint32{0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb}
	for i, d := range srv.Devices {
		dev := d.(*server.Device)
		dev.UUID = simUUID(seed, i)
		wireSimDevice(dev, i, busIDs[i%len(busIDs)], spec, load)
	}
	return srv
}

func simUUID(seed uint64, i int) string {
	h := fnv.New128a()
	fmt.Fprintf(h, "%d/%d", seed, i)
	b := h.Sum(nil)
	return fmt.Sprintf("GPU-%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// simGPMSample is a GPM sample of a simulated GPU: when it was taken and
// the utilization then.
type simGPMSample struct {
	util float64
}

func (s *simGPMSample) Free() gonvml.Return                     { return gonvml.SUCCESS }
func (s *simGPMSample) Get(gonvml.Device) gonvml.Return         { return gonvml.ERROR_NOT_SUPPORTED }
func (s *simGPMSample) MigGet(gonvml.Device, int) gonvml.Return { return gonvml.ERROR_NOT_SUPPORTED }

func simGPMMetrics(spec simModel, mg *gonvml.GpmMetricsGetType) gonvml.Return {
	s1, ok1 := mg.Sample1.(*simGPMSample)
	s2, ok2 := mg.Sample2.(*simGPMSample)
	if !ok1 || !ok2 {
		return gonvml.ERROR_INVALID_ARGUMENT
	}
	u := (s1.util + s2.util) / 2
	for i := range mg.NumMetrics {
		m := &mg.Metrics[i]
		m.NvmlReturn = uint32(gonvml.SUCCESS)
		switch gonvml.GpmMetricId(m.MetricId) {
		case gonvml.GPM_METRIC_SM_UTIL:
			m.Value = 100 * u
		case gonvml.GPM_METRIC_SM_OCCUPANCY:
			m.Value = 70 * u
		case gonvml.GPM_METRIC_ANY_TENSOR_UTIL:
			m.Value = 85 * u
		case gonvml.GPM_METRIC_FP16_UTIL:
			m.Value = 20 * u
		case gonvml.GPM_METRIC_FP32_UTIL:
			m.Value = 10 * u
		case gonvml.GPM_METRIC_FP64_UTIL:
			m.Value = 1 * u
		case gonvml.GPM_METRIC_DRAM_BW_UTIL:
			m.Value = 60 * u
		case gonvml.GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC, gonvml.GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC:
			m.Value = 200000 * u // MiB/s
		case gonvml.GPM_METRIC_PCIE_TX_PER_SEC, gonvml.GPM_METRIC_PCIE_RX_PER_SEC:
			m.Value = 8000 * u
		default:
			m.NvmlReturn = uint32(gonvml.ERROR_NOT_SUPPORTED)
		}
	}
	return gonvml.SUCCESS
}

// wireSimDevice sets every reading of one simulated GPU from the load.
func wireSimDevice(d *server.Device, i int, bus uint32, spec simModel, load simLoad) {
	counters := load.counters(i)
	util := func() float64 { return load.utilization(i, load.now()) }
	d.GetPciInfoFunc = func() (gonvml.PciInfo, gonvml.Return) {
		return gonvml.PciInfo{Bus: bus, PciDeviceId: d.Config.PciDeviceId}, gonvml.SUCCESS
	}
	d.GetPowerUsageFunc = func() (uint32, gonvml.Return) {
		return uint32(1000 * load.watts(i, load.now())), gonvml.SUCCESS
	}
	d.GetTotalEnergyConsumptionFunc = func() (uint64, gonvml.Return) {
		if !spec.energyCounter {
			return 0, gonvml.ERROR_NOT_SUPPORTED
		}
		mj, _ := counters(load.now())
		return mj, gonvml.SUCCESS
	}
	d.GetPowerManagementLimitFunc = func() (uint32, gonvml.Return) { return uint32(spec.tdpWatts * 1000), gonvml.SUCCESS }
	d.GetEnforcedPowerLimitFunc = d.GetPowerManagementLimitFunc
	d.GetPowerManagementDefaultLimitFunc = d.GetPowerManagementLimitFunc
	d.GetFieldValuesFunc = func(values []gonvml.FieldValue) gonvml.Return {
		now := load.now()
		u := load.utilization(i, now)
		for k := range values {
			v := &values[k]
			v.NvmlReturn = uint32(gonvml.SUCCESS)
			v.ValueType = uint32(gonvml.VALUE_TYPE_UNSIGNED_LONG_LONG)
			switch v.FieldId {
			case gonvml.FI_DEV_POWER_INSTANT:
				putUint(v, uint64(1000*load.instantWatts(i, now)))
			case gonvml.FI_DEV_MEMORY_TEMP:
				putUint(v, uint64(30+45*u+spec.hbmTemperatureOffset))
			case gonvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX, gonvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX:
				_, kib := counters(now)
				putUint(v, kib)
			default:
				v.NvmlReturn = uint32(gonvml.ERROR_NOT_SUPPORTED)
			}
		}
		return gonvml.SUCCESS
	}
	d.GetTemperatureFunc = func(gonvml.TemperatureSensors) (uint32, gonvml.Return) { return uint32(30 + 45*util()), gonvml.SUCCESS }
	d.GetFanSpeedFunc = func() (uint32, gonvml.Return) { return 0, gonvml.ERROR_NOT_SUPPORTED } // SXM boards have no fan
	d.GetPerformanceStateFunc = func() (gonvml.Pstates, gonvml.Return) {
		if util() < 0.05 {
			return gonvml.PSTATE_8, gonvml.SUCCESS
		}
		return gonvml.PSTATE_0, gonvml.SUCCESS
	}
	d.GetClockInfoFunc = func(c gonvml.ClockType) (uint32, gonvml.Return) {
		u := util()
		switch c {
		case gonvml.CLOCK_MEM:
			return spec.memMHz, gonvml.SUCCESS
		default:
			return uint32(345 + float64(spec.smMHz-345)*math.Min(1, u*1.5)), gonvml.SUCCESS
		}
	}
	d.GetMaxClockInfoFunc = func(c gonvml.ClockType) (uint32, gonvml.Return) {
		if c == gonvml.CLOCK_MEM {
			return spec.memMHz, gonvml.SUCCESS
		}
		return spec.smMHz, gonvml.SUCCESS
	}
	d.GetCurrentClocksEventReasonsFunc = func() (uint64, gonvml.Return) {
		u := util()
		switch {
		case u < 0.05:
			return gonvml.ClocksEventReasonGpuIdle, gonvml.SUCCESS
		case u > 0.93:
			return gonvml.ClocksEventReasonSwPowerCap, gonvml.SUCCESS
		}
		return 0, gonvml.SUCCESS
	}
	d.GetUtilizationRatesFunc = func() (gonvml.Utilization, gonvml.Return) {
		u := util()
		return gonvml.Utilization{Gpu: uint32(100 * u), Memory: uint32(60 * u)}, gonvml.SUCCESS
	}
	d.GetMemoryInfo_v2Func = func() (gonvml.Memory_v2, gonvml.Return) {
		total := d.MemoryInfo.Total
		used := uint64(float64(total) * (0.1 + 0.8*math.Min(1, util()*1.2)))
		reserved := total / 100
		return gonvml.Memory_v2{Total: total, Reserved: reserved, Used: used, Free: total - used - reserved}, gonvml.SUCCESS
	}
	d.GetPcieThroughputFunc = func(gonvml.PcieUtilCounter) (uint32, gonvml.Return) { return uint32(2e6 * util()), gonvml.SUCCESS }
	d.GetCurrPcieLinkGenerationFunc = func() (int, gonvml.Return) { return spec.pcieGen, gonvml.SUCCESS }
	d.GetCurrPcieLinkWidthFunc = func() (int, gonvml.Return) { return 16, gonvml.SUCCESS }
	d.GetNvLinkStateFunc = func(link int) (gonvml.EnableState, gonvml.Return) {
		if link >= spec.nvlinks {
			return 0, gonvml.ERROR_INVALID_ARGUMENT
		}
		return gonvml.FEATURE_ENABLED, gonvml.SUCCESS
	}
	d.GetTotalEccErrorsFunc = func(gonvml.MemoryErrorType, gonvml.EccCounterType) (uint64, gonvml.Return) { return 0, gonvml.SUCCESS }
	d.GetRemappedRowsFunc = func() (int, int, bool, bool, gonvml.Return) { return 0, 0, false, false, gonvml.SUCCESS }
	d.GetRetiredPagesFunc = func(gonvml.PageRetirementCause) ([]uint64, gonvml.Return) { return nil, gonvml.ERROR_NOT_SUPPORTED }
	d.RegisterEventsFunc = func(uint64, gonvml.EventSet) gonvml.Return { return gonvml.SUCCESS }
	d.GpmQueryDeviceSupportFunc = func() (gonvml.GpmSupport, gonvml.Return) {
		return gonvml.GpmSupport{IsSupportedDevice: uint32(boolValue(spec.gpm))}, gonvml.SUCCESS
	}
	d.GpmSampleGetFunc = func(s gonvml.GpmSample) gonvml.Return {
		ss, ok := s.(*simGPMSample)
		if !ok {
			return gonvml.ERROR_INVALID_ARGUMENT
		}
		ss.util = util()
		return gonvml.SUCCESS
	}
	d.GetComputeRunningProcessesFunc = func() ([]gonvml.ProcessInfo, gonvml.Return) { return nil, gonvml.SUCCESS }
	d.GetProcessUtilizationFunc = func(uint64) ([]gonvml.ProcessUtilizationSample, gonvml.Return) {
		return nil, gonvml.ERROR_NOT_FOUND
	}
}

func putUint(v *gonvml.FieldValue, u uint64) {
	for k := range 8 {
		v.Value[k] = byte(u >> (8 * k))
	}
}
