package nvml

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/joules-energy/joules/collector"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newSim returns a source over a simulated server on a fake clock.
func newSim(t *testing.T, model string, clock *fakeClock, opts Options) (*Source, *server.Server) {
	t.Helper()
	srv := simulate(simModels[model], LoadModel{Start: clock.Now(), Seed: 42, Now: clock.Now})
	opts.Simulated = true
	opts.now = clock.Now
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	src := New(srv, opts)
	t.Cleanup(src.Close)
	return src, srv
}

func collect(t *testing.T, src *Source) []collector.Sample {
	t.Helper()
	samples, err := src.Collect(context.Background())
	if err != nil {
		t.Fatalf("collect: %v", err)
	}
	return samples
}

func label(s collector.Sample, name string) string {
	for _, l := range s.Labels {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

// values returns name's samples keyed by their labels other than the GPU's
// identity, prefixed with the gpu index.
func values(samples []collector.Sample, name string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		var key []string
		for _, l := range s.Labels {
			switch l.Name {
			case "uuid", "model", "pci_bus_id", "simulated", "epoch":
			default:
				key = append(key, l.Name+"="+l.Value)
			}
		}
		out[strings.Join(key, ",")] = s.Value
	}
	return out
}

func TestSimulatedH200CoversEveryFamily(t *testing.T) {
	clock := newClock()
	src, _ := newSim(t, "dgxh200", clock, Options{})
	collect(t, src)
	clock.Advance(time.Second)
	samples := collect(t, src) // GPM needs a second sample

	perGPU := map[string]int{ // family → series per GPU
		"joules_gpu_up": 1, "joules_gpu_power_watts": 1, "joules_gpu_power_instant_watts": 1,
		"joules_gpu_power_limit_watts": 1, "joules_gpu_power_enforced_limit_watts": 1, "joules_gpu_power_default_limit_watts": 1,
		"joules_gpu_energy_joules_total": 1, "joules_gpu_temperature_celsius": 1, "joules_gpu_memory_temperature_celsius": 1,
		"joules_gpu_performance_state": 1, "joules_gpu_clock_hertz": 3, "joules_gpu_clock_max_hertz": 3,
		"joules_gpu_clock_event_active": len(clockEventReasons), "joules_gpu_utilization_ratio": 1,
		"joules_gpu_memory_utilization_ratio": 1, "joules_gpu_memory_used_bytes": 1, "joules_gpu_memory_total_bytes": 1,
		"joules_gpu_memory_reserved_bytes": 1, "joules_gpu_pcie_throughput_bytes_per_second": 2,
		"joules_gpu_pcie_link_generation": 1, "joules_gpu_pcie_link_width": 1, "joules_gpu_nvlink_data_bytes_total": 36,
		"joules_gpu_ecc_errors_total": 4, "joules_gpu_remapped_rows": 2, "joules_gpu_row_remap_pending": 1,
		"joules_gpu_row_remap_failed": 1, "joules_gpu_mig_mode_enabled": 1, "joules_gpu_sm_activity_ratio": 1,
		"joules_gpu_sm_occupancy_ratio": 1, "joules_gpu_tensor_activity_ratio": 1, "joules_gpu_fp_activity_ratio": 3,
		"joules_gpu_dram_bandwidth_utilization_ratio": 1, "joules_gpu_gpm_nvlink_bytes_per_second": 2,
		"joules_gpu_gpm_pcie_bytes_per_second": 2,
	}
	for name, n := range perGPU {
		if got := len(values(samples, name)); got != 8*n {
			t.Errorf("%s: %d series, want %d (8 GPUs × %d)", name, got, 8*n, n)
		}
	}
	// Absent, not zero: SXM boards have no fan; Hopper has no page retirement.
	for _, name := range []string{"joules_gpu_fan_speed_ratio", "joules_gpu_retired_pages"} {
		if got := values(samples, name); len(got) != 0 {
			t.Errorf("%s present (%v) although NVML does not support it", name, got)
		}
	}
	for _, s := range samples {
		if label(s, "simulated") != "true" {
			t.Fatalf("%s lacks simulated=\"true\"", s.Name)
		}
		if strings.HasPrefix(s.Name, "joules_gpu_") && (label(s, "uuid") == "" || label(s, "model") != "NVIDIA H200 141GB HBM3e" || label(s, "pci_bus_id") == "") {
			t.Fatalf("%s lacks the GPU identity labels: %v", s.Name, s.Labels)
		}
	}
	info := values(samples, "joules_nvml_info")
	if info["cuda_version=12.4,driver_version=550.54.15,nvml_version=12.550.54.15"] != 1 {
		t.Errorf("nvml info = %v", info)
	}
}

func TestSimulatedPowerMovesAndEnergyRises(t *testing.T) {
	clock := newClock()
	src, _ := newSim(t, "dgxh200", clock, Options{})
	var energy, power []map[string]float64
	for range 30 {
		samples := collect(t, src)
		energy = append(energy, values(samples, "joules_gpu_energy_joules_total"))
		power = append(power, values(samples, "joules_gpu_power_watts"))
		clock.Advance(10 * time.Second)
	}
	for key := range energy[0] {
		for i := 1; i < len(energy); i++ {
			if energy[i][key] <= energy[i-1][key] {
				t.Fatalf("%s energy did not rise: %v then %v", key, energy[i-1][key], energy[i][key])
			}
		}
		// The counter agrees with power: over 10 s the energy added lies
		// between 10 s at the lower and the higher of the two power readings.
		last := len(energy) - 1
		gpuKey := strings.Replace(key, ",method=counter", "", 1)
		lo, hi := min(power[last-1][gpuKey], power[last][gpuKey]), max(power[last-1][gpuKey], power[last][gpuKey])
		if d := energy[last][key] - energy[last-1][key]; d < 10*lo-1 || d > 10*hi+1 {
			t.Errorf("%s: %v J over 10 s, outside [%v, %v] from power", key, d, 10*lo, 10*hi)
		}
	}
	distinct := map[float64]bool{}
	for _, p := range power {
		distinct[p["gpu=0"]] = true
	}
	if len(distinct) < 10 {
		t.Errorf("GPU 0 power took only %d distinct values over 30 readings: not moving", len(distinct))
	}
}

func TestNotSupportedIsAbsentAndNotAskedAgain(t *testing.T) {
	clock := newClock()
	src, srv := newSim(t, "dgxh200", clock, Options{})
	dev := srv.Devices[1].(*server.Device)
	calls := 0
	dev.GetUtilizationRatesFunc = func() (gonvml.Utilization, gonvml.Return) {
		calls++
		return gonvml.Utilization{}, gonvml.ERROR_NOT_SUPPORTED
	}
	for range 3 {
		samples := collect(t, src)
		util := values(samples, "joules_gpu_utilization_ratio")
		if _, ok := util["gpu=1"]; ok {
			t.Fatal("utilization of GPU 1 present although NVML refused it")
		}
		if _, ok := util["gpu=0"]; !ok {
			t.Fatal("GPU 0 lost its utilization because GPU 1 has none")
		}
	}
	if calls != 1 {
		t.Errorf("unsupported call made %d times, want 1", calls)
	}
}

func TestGPULostAndBack(t *testing.T) {
	clock := newClock()
	var logs strings.Builder
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	src, srv := newSim(t, "dgxh200", clock, Options{Logger: logger, ReinitBackoff: 30 * time.Second})
	dev := srv.Devices[3].(*server.Device)
	first := collect(t, src)
	energyBefore := values(first, "joules_gpu_energy_joules_total")["gpu=3,method=counter"]

	// GPU 3 falls off the bus: every call answers GPU_IS_LOST.
	var lost sync.Mutex
	isLost := true
	origPower, origEnergy := dev.GetPowerUsageFunc, dev.GetTotalEnergyConsumptionFunc
	dev.GetPowerUsageFunc = func() (uint32, gonvml.Return) {
		lost.Lock()
		defer lost.Unlock()
		if isLost {
			return 0, gonvml.ERROR_GPU_IS_LOST
		}
		return origPower()
	}
	srvDeviceByIndex := srv.DeviceGetHandleByIndexFunc
	srv.DeviceGetHandleByIndexFunc = func(i int) (gonvml.Device, gonvml.Return) {
		lost.Lock()
		defer lost.Unlock()
		if i == 3 && isLost {
			return nil, gonvml.ERROR_GPU_IS_LOST
		}
		return srvDeviceByIndex(i)
	}
	energyCalls := 0
	dev.GetTotalEnergyConsumptionFunc = func() (uint64, gonvml.Return) {
		energyCalls++
		return origEnergy()
	}

	clock.Advance(time.Second)
	samples := collect(t, src)
	up := values(samples, "joules_gpu_up")
	if up["gpu=3"] != 0 {
		t.Errorf("lost GPU up = %v, want 0", up["gpu=3"])
	}
	for i := range 8 {
		if i != 3 && up[fmt.Sprintf("gpu=%d", i)] != 1 {
			t.Errorf("GPU %d up = %v, want 1: one lost GPU took it down", i, up[fmt.Sprintf("gpu=%d", i)])
		}
	}
	if got := len(values(samples, "joules_gpu_power_watts")); got != 7 {
		t.Errorf("%d GPUs report power, want the 7 that are not lost", got)
	}
	// While lost, the GPU is not called (no call on a dead device each second).
	energyCalls = 0
	for range 5 {
		clock.Advance(time.Second)
		samples = collect(t, src)
	}
	if energyCalls != 0 {
		t.Errorf("lost GPU called %d times before re-initialisation", energyCalls)
	}
	if values(samples, "joules_gpu_up")["gpu=3"] != 0 {
		t.Error("lost GPU reported up before it came back")
	}

	// The GPU returns; after the backoff NVML is re-initialised and finds it.
	lost.Lock()
	isLost = false
	lost.Unlock()
	clock.Advance(time.Minute)
	collect(t, src) // re-initialises
	clock.Advance(time.Second)
	samples = collect(t, src)
	if values(samples, "joules_gpu_up")["gpu=3"] != 1 {
		t.Errorf("GPU 3 not back after re-initialisation; logs:\n%s", logs.String())
	}
	if e := values(samples, "joules_gpu_energy_joules_total")["gpu=3,method=counter"]; e < energyBefore {
		t.Errorf("energy after return %v < before loss %v", e, energyBefore)
	}
	logMu.Lock()
	defer logMu.Unlock()
	for _, want := range []string{"GPU fell off the bus", "GPU is back"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestEnergyCounterResetNeverGoesBackwards(t *testing.T) {
	clock := newClock()
	src, srv := newSim(t, "dgxh200", clock, Options{})
	dev := srv.Devices[0].(*server.Device)
	// The first value answers the source's probe for a counter; then a driver
	// reload between the 2nd and 3rd reading.
	raw := []uint64{5_000_000, 5_000_000, 6_000_000, 1_000, 501_000}
	i := 0
	dev.GetTotalEnergyConsumptionFunc = func() (uint64, gonvml.Return) {
		v := raw[min(i, len(raw)-1)]
		i++
		return v, gonvml.SUCCESS
	}
	var got []float64
	for range raw[1:] {
		got = append(got, values(collect(t, src), "joules_gpu_energy_joules_total")["gpu=0,method=counter"])
		clock.Advance(time.Second)
	}
	want := []float64{5000, 6000, 6001, 6501}
	for k := range want {
		if got[k] != want[k] {
			t.Errorf("energy after reading %d = %v J, want %v (all: %v)", k, got[k], want[k], got)
		}
	}
}

func TestPreVoltaEnergyIsIntegratedAndSaysSo(t *testing.T) {
	clock := newClock()
	src, srv := newSim(t, "dgxh200", clock, Options{MaxIntegrationGap: 5 * time.Second})
	dev := srv.Devices[0].(*server.Device)
	dev.GetTotalEnergyConsumptionFunc = func() (uint64, gonvml.Return) { return 0, gonvml.ERROR_NOT_SUPPORTED }
	watts := []uint32{100_000, 200_000, 200_000, 300_000}
	steps := []time.Duration{0, 2 * time.Second, 2 * time.Second, 20 * time.Second} // the last gap is too long
	k := 0
	dev.GetPowerUsageFunc = func() (uint32, gonvml.Return) { return watts[min(k, len(watts)-1)], gonvml.SUCCESS }
	var got []float64
	for k = range watts {
		clock.Advance(steps[k])
		v := values(collect(t, src), "joules_gpu_energy_joules_total")
		if _, ok := v["gpu=0,method=counter"]; ok {
			t.Fatal("GPU without a counter reported method=counter")
		}
		got = append(got, v["gpu=0,method=integrated"])
	}
	want := []float64{0, 300, 700, 700} // trapezoids 2 s × 150 W, 2 s × 200 W; the 20 s gap is not filled
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("integrated energy %d = %v, want %v (all %v)", i, got[i], want[i], got)
		}
	}
}

func TestMIGInstancesWithoutDoubleCounting(t *testing.T) {
	clock := newClock()
	src, srv := newSim(t, "dgxa100", clock, Options{})
	dev := srv.Devices[0].(*server.Device)
	dev.MigMode = gonvml.DEVICE_MIG_ENABLE
	dev.GetUtilizationRatesFunc = func() (gonvml.Utilization, gonvml.Return) { return gonvml.Utilization{}, gonvml.ERROR_NOT_SUPPORTED }
	instances := []*mock.Device{migDevice(1, 0, "NVIDIA A100-SXM4-40GB MIG 3g.20gb", 20<<30), migDevice(2, 0, "NVIDIA A100-SXM4-40GB MIG 1g.5gb", 5<<30)}
	dev.GetMaxMigDeviceCountFunc = func() (int, gonvml.Return) { return 7, gonvml.SUCCESS }
	dev.GetMigDeviceHandleByIndexFunc = func(i int) (gonvml.Device, gonvml.Return) {
		if i < len(instances) {
			return instances[i], gonvml.SUCCESS
		}
		return nil, gonvml.ERROR_NOT_FOUND
	}
	samples := collect(t, src)

	info := values(samples, "joules_gpu_mig_instance_info")
	if len(info) != 2 || info["compute_instance=0,gpu=0,gpu_instance=1,profile=3g.20gb"] != 1 || info["compute_instance=0,gpu=0,gpu_instance=2,profile=1g.5gb"] != 1 {
		t.Errorf("MIG instances = %v", info)
	}
	if mem := values(samples, "joules_gpu_mig_memory_total_bytes"); mem["compute_instance=0,gpu=0,gpu_instance=2,profile=1g.5gb"] != 5<<30 {
		t.Errorf("MIG memory = %v", mem)
	}
	for _, s := range samples {
		if label(s, "gpu_instance") != "" && (strings.Contains(s.Name, "power") || strings.Contains(s.Name, "energy")) {
			t.Errorf("%s repeated per MIG instance: %v", s.Name, s.Labels)
		}
	}
	if n := len(values(samples, "joules_gpu_energy_joules_total")); n != 8 {
		t.Errorf("%d energy series, want 8: once per physical GPU", n)
	}
	if _, ok := values(samples, "joules_gpu_utilization_ratio")["gpu=0"]; ok {
		t.Error("whole-GPU utilization present under MIG although NVML refuses it")
	}
	if values(samples, "joules_gpu_mig_mode_enabled")["gpu=0"] != 1 || values(samples, "joules_gpu_mig_mode_enabled")["gpu=1"] != 0 {
		t.Error("MIG mode gauge wrong")
	}
}

func migDevice(gi, ci int, name string, total uint64) *mock.Device {
	return &mock.Device{
		GetGpuInstanceIdFunc:     func() (int, gonvml.Return) { return gi, gonvml.SUCCESS },
		GetComputeInstanceIdFunc: func() (int, gonvml.Return) { return ci, gonvml.SUCCESS },
		GetNameFunc:              func() (string, gonvml.Return) { return name, gonvml.SUCCESS },
		GetMemoryInfoFunc: func() (gonvml.Memory, gonvml.Return) {
			return gonvml.Memory{Total: total, Used: total / 4, Free: total - total/4}, gonvml.SUCCESS
		},
	}
}

func TestXIDEventsCounted(t *testing.T) {
	clock := newClock()
	srv := simulate(simModels["dgxh200"], LoadModel{Start: clock.Now(), Seed: 1, Now: clock.Now})
	events := make(chan gonvml.EventData, 4)
	srv.EventSetCreateFunc = func() (gonvml.EventSet, gonvml.Return) {
		return &mock.EventSet{
			WaitFunc: func(ms uint32) (gonvml.EventData, gonvml.Return) {
				select {
				case e := <-events:
					return e, gonvml.SUCCESS
				case <-time.After(time.Duration(ms) * time.Millisecond):
					return gonvml.EventData{}, gonvml.ERROR_TIMEOUT
				}
			},
			FreeFunc: func() gonvml.Return { return gonvml.SUCCESS },
		}, gonvml.SUCCESS
	}
	src := New(srv, Options{now: clock.Now})
	defer src.Close()
	collect(t, src)
	events <- gonvml.EventData{Device: srv.Devices[2], EventType: gonvml.EventTypeXidCriticalError, EventData: 79}
	events <- gonvml.EventData{Device: srv.Devices[2], EventType: gonvml.EventTypeXidCriticalError, EventData: 79}
	events <- gonvml.EventData{Device: srv.Devices[5], EventType: gonvml.EventTypeXidCriticalError, EventData: 48}
	deadline := time.Now().Add(5 * time.Second)
	for {
		x := values(collect(t, src), "joules_gpu_xid_errors_total")
		if x["gpu=2,xid=79"] == 2 && x["gpu=5,xid=48"] == 1 {
			if len(x) != 2 {
				t.Errorf("XID counters = %v, want only the two events sent", x)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("XID counters = %v, want gpu 2 xid 79 = 2, gpu 5 xid 48 = 1", x)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNoLibraryIsAbsent(t *testing.T) {
	lib := &mock.Interface{InitFunc: func() gonvml.Return { return gonvml.ERROR_LIBRARY_NOT_FOUND }}
	src := New(lib, Options{})
	_, err := src.Collect(context.Background())
	if !errors.Is(err, collector.ErrAbsent) {
		t.Errorf("err = %v, want collector.ErrAbsent", err)
	}
	if !strings.Contains(err.Error(), "libnvidia-ml.so.1") {
		t.Errorf("err = %v, want it to name libnvidia-ml.so.1", err)
	}
}

// TestRealLibraryOnThisHost runs go-nvml's real loader. Without a driver it
// must say absent; with one it must find GPUs.
func TestRealLibraryOnThisHost(t *testing.T) {
	src := New(gonvml.New(), Options{})
	defer src.Close()
	samples, err := src.Collect(context.Background())
	if _, statErr := os.Stat("/dev/nvidiactl"); statErr != nil {
		if !errors.Is(err, collector.ErrAbsent) {
			t.Errorf("host without NVIDIA driver: err = %v, want ErrAbsent", err)
		}
		return
	}
	if err != nil || len(values(samples, "joules_gpu_up")) == 0 {
		t.Errorf("host with a driver: err %v, %d GPUs", err, len(values(samples, "joules_gpu_up")))
	}
}

func TestDriverGoneThenBack(t *testing.T) {
	clock := newClock()
	src, srv := newSim(t, "dgxh200", clock, Options{ReinitBackoff: 10 * time.Second})
	collect(t, src)
	gone := true
	for _, d := range srv.Devices {
		dev := d.(*server.Device)
		orig := dev.GetPowerUsageFunc
		dev.GetPowerUsageFunc = func() (uint32, gonvml.Return) {
			if gone {
				return 0, gonvml.ERROR_UNINITIALIZED
			}
			return orig()
		}
	}
	initCalls := 0
	srv.InitFunc = func() gonvml.Return {
		initCalls++
		if gone {
			return gonvml.ERROR_DRIVER_NOT_LOADED
		}
		return gonvml.SUCCESS
	}
	clock.Advance(time.Second)
	samples, err := src.Collect(context.Background())
	if err == nil {
		t.Error("no error while the driver is gone")
	}
	if up := values(samples, "joules_gpu_up"); len(up) != 8 || up["gpu=0"] != 0 {
		t.Errorf("GPUs not reported down while the driver is gone: %v", up)
	}
	for range 3 { // within the backoff: no re-init attempt
		clock.Advance(time.Second)
		_, _ = src.Collect(context.Background())
	}
	if initCalls != 0 {
		t.Errorf("%d re-init attempts within the backoff, want 0", initCalls)
	}
	gone = false
	clock.Advance(time.Minute)
	samples = collect(t, src)
	if up := values(samples, "joules_gpu_up"); up["gpu=0"] != 1 || initCalls != 1 {
		t.Errorf("after the driver returned: up %v, %d inits", up, initCalls)
	}
}

func TestProcessesWithCgroupsAndEstimatedShare(t *testing.T) {
	procfs := t.TempDir()
	writeProc := func(pid, comm, cgroup string) {
		dir := filepath.Join(procfs, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "comm"), []byte(comm+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644)
	}
	writeProc("1001", "vllm", "0::/system.slice/vllm.service\n")
	writeProc("1002", "python3", "0::/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0\n")
	clock := newClock()
	src, srv := newSim(t, "dgxh200", clock, Options{Processes: true, ProcFS: procfs})
	dev := srv.Devices[0].(*server.Device)
	dev.GetComputeRunningProcessesFunc = func() ([]gonvml.ProcessInfo, gonvml.Return) {
		return []gonvml.ProcessInfo{{Pid: 1001, UsedGpuMemory: 40 << 30}, {Pid: 1002, UsedGpuMemory: 10 << 30}}, gonvml.SUCCESS
	}
	dev.GetProcessUtilizationFunc = func(uint64) ([]gonvml.ProcessUtilizationSample, gonvml.Return) {
		return []gonvml.ProcessUtilizationSample{{Pid: 1001, SmUtil: 60, TimeStamp: 10}, {Pid: 1002, SmUtil: 20, TimeStamp: 11}}, gonvml.SUCCESS
	}
	dev.GetPowerUsageFunc = func() (uint32, gonvml.Return) { return 400_000, gonvml.SUCCESS }
	collect(t, src)
	clock.Advance(10 * time.Second)
	samples := collect(t, src)

	mem := values(samples, "joules_gpu_process_memory_used_bytes")
	if mem["command=vllm,gpu=0,pid=1001,systemd_unit=vllm.service"] != 40<<30 {
		t.Errorf("process memory = %v", mem)
	}
	if mem["command=python3,gpu=0,pid=1002,slurm_job=4242"] != 10<<30 {
		t.Errorf("slurm process memory = %v", mem)
	}
	power := values(samples, "joules_gpu_process_estimated_power_watts")
	if power["command=vllm,gpu=0,pid=1001,systemd_unit=vllm.service"] != 300 || power["command=python3,gpu=0,pid=1002,slurm_job=4242"] != 100 {
		t.Errorf("estimated power = %v, want 400 W shared 3:1", power)
	}
	energy := values(samples, "joules_gpu_process_estimated_energy_joules_total")
	board := values(samples, "joules_gpu_energy_joules_total")["gpu=0,method=counter"]
	var sum float64
	for _, v := range energy {
		sum += v
	}
	if sum <= 0 || sum > board {
		t.Errorf("process energy %v (sum %v) must be positive and within the board's %v", energy, sum, board)
	}
	// The GPU's workloads: the unit 60 of 80 SM, the job 20 of 80.
	shares := values(samples, "joules_gpu_workload_share_ratio")
	if shares["gpu=0,workload=vllm.service,workload_kind=systemd_unit"] != 0.75 || shares["gpu=0,workload=4242,workload_kind=slurm_job"] != 0.25 || len(shares) != 2 {
		t.Errorf("workload shares = %v, want the unit 0.75 and the job 0.25", shares)
	}
}

func TestWorkloadSharesWithoutUtilizationSamples(t *testing.T) {
	for name, tc := range map[string]struct {
		uses  [][]procUse
		other []procUse // processes of no workload
		want  []float64
	}{
		"by memory":                       {[][]procUse{{{mem: 30}}, {{mem: 10}, {mem: 20}}}, nil, []float64{0.5, 0.5}},
		"the only workload":               {[][]procUse{{{}, {}}}, nil, []float64{1}},
		"equally by processes":            {[][]procUse{{{}}, {{}, {}, {}}}, nil, []float64{0.25, 0.75}},
		"by SM over memory":               {[][]procUse{{{sm: 10, mem: 90}}, {{sm: 30, mem: 10}}}, nil, []float64{0.25, 0.75}},
		"beside a process of no workload": {[][]procUse{{{sm: 20}}}, []procUse{{sm: 80}}, []float64{0.2}},
	} {
		var all []procUse
		for _, us := range tc.uses {
			all = append(all, us...)
		}
		all = append(all, tc.other...)
		got := workloadShares(tc.uses, all)
		if len(got) != len(tc.want) {
			t.Fatalf("%s: shares %v, want %v", name, got, tc.want)
		}
		for i := range got {
			if math.Abs(got[i]-tc.want[i]) > 1e-15 {
				t.Errorf("%s: shares %v, want %v", name, got, tc.want)
			}
		}
	}
	got := allocatedShares([]Workload{{Share: 0.7}, {}, {}})
	for i, want := range []float64{0.7, 0.15, 0.15} { // the allocator's 0.7, the rest equally
		if math.Abs(got[i]-want) > 1e-15 {
			t.Errorf("allocated shares %v, want %v", got, []float64{0.7, 0.15, 0.15})
		}
	}
}

// A GPU whose processes the agent cannot see (a container without the
// host's PIDs) is shared by the workloads it is allocated to.
func TestWorkloadSharesFromTheAllocator(t *testing.T) {
	clock := newClock()
	wl, err := SimulatedWorkloads("dgxh200", "s", "h", "m")
	if err != nil {
		t.Fatal(err)
	}
	src, _ := newSim(t, "dgxh200", clock, Options{Processes: true, ProcFS: t.TempDir(), Workloads: wl})
	samples := collect(t, src)
	shares := values(samples, "joules_gpu_workload_share_ratio")
	// The site model's placement at the clock's time, by hand: GPU 6 holds
	// the two notebooks, 0.7 and 0.3.
	nb := func(n string) string {
		return "gpu=6,label_team=research,namespace=research,owner=notebook-h,owner_kind=StatefulSet,workload=research/notebook-h-" + n + ",workload_kind=k8s_pod"
	}
	if shares[nb("0")] != 0.7 || shares[nb("1")] != 0.3 {
		t.Errorf("GPU 6's shares: %v", shares)
	}
	perGPU := map[string]float64{}
	for k, v := range shares {
		gpu, _, _ := strings.Cut(k, ",")
		perGPU[gpu] += v
	}
	for gpu, sum := range perGPU {
		if sum > 1+1e-12 {
			t.Errorf("%s is shared %v times over", gpu, sum)
		}
	}
}

func TestParseCgroup(t *testing.T) {
	for name, tc := range map[string]struct {
		content string
		want    Cgroup
	}{
		"systemd service v2":  {"0::/system.slice/tgi.service\n", Cgroup{Unit: "tgi.service"}},
		"slurm v2":            {"0::/system.slice/slurmstepd.scope/job_77/step_batch/user/task_0\n", Cgroup{SlurmJob: "77"}},
		"slurm v1":            {"12:memory:/slurm/uid_1000/job_123/step_0\n1:name=systemd:/system.slice/slurmd.service\n", Cgroup{SlurmJob: "123"}},
		"kubernetes systemd":  {"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f3b2c1a_1111_2222_3333_444455556666.slice/cri-containerd-abc.scope\n", Cgroup{PodUID: "0f3b2c1a-1111-2222-3333-444455556666"}},
		"kubernetes cgroupfs": {"0::/kubepods/besteffort/pod0f3b2c1a-1111-2222-3333-444455556666/abcdef\n", Cgroup{PodUID: "0f3b2c1a-1111-2222-3333-444455556666"}},
		"user session":        {"0::/user.slice/user-1000.slice/session-3.scope\n", Cgroup{Unit: "session-3.scope"}},
		"garbage":             {"nonsense\n::\n", Cgroup{}},
	} {
		if got := parseCgroup(tc.content); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", name, got, tc.want)
		}
	}
}
