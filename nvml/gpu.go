package nvml

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/internal/energy"
)

// gpu is one physical GPU and what the source keeps between passes.
type gpu struct {
	dev      gonvml.Device
	index    int
	uuid     string
	model    string
	pciBusID string
	labels   []collector.Label

	hasEnergyCounter bool
	unsupported      map[string]bool // families NVML answered NOT_SUPPORTED; not asked again until re-init
	nvlinks          []int           // active NVLink links, found once
	gpm              *gpmState
	procs            *processTracker
	lost             bool
	opts             Options

	extraSets map[string][]collector.Label // g.labels plus extras, by extras; see withExtra
	extraKey  []byte
}

func newGPU(dev gonvml.Device, index int, uuid string, opts Options) *gpu {
	g := &gpu{dev: dev, index: index, uuid: uuid, opts: opts, unsupported: map[string]bool{}}
	if name, ret := dev.GetName(); ret == gonvml.SUCCESS {
		g.model = name
	}
	if pci, ret := dev.GetPciInfo(); ret == gonvml.SUCCESS {
		g.pciBusID = pciBusID(pci)
	}
	g.labels = []collector.Label{{Name: "gpu", Value: itoa(index)}, {Name: "model", Value: g.model}, {Name: "pci_bus_id", Value: g.pciBusID}}
	if opts.Simulated {
		g.labels = append(g.labels, collector.Label{Name: "simulated", Value: "true"})
	}
	g.labels = append(g.labels, collector.Label{Name: "uuid", Value: uuid})
	collector.SortLabels(g.labels)
	_, ret := dev.GetTotalEnergyConsumption()
	g.hasEnergyCounter = ret == gonvml.SUCCESS
	g.findNVLinks()
	g.gpm = newGPMState(dev)
	if opts.Processes {
		g.procs = newProcessTracker(opts.ProcFS)
	}
	return g
}

// reopen takes the new handle after NVML was re-initialised.
func (g *gpu) reopen(dev gonvml.Device) {
	g.dev = dev
	g.unsupported = map[string]bool{}
	g.findNVLinks()
	g.gpm = newGPMState(dev)
}

func (g *gpu) freeGPM() {
	if g.gpm != nil {
		g.gpm.free()
	}
}

// pciBusID formats the bus ID as nvidia-smi does: 00000000:18:00.0.
func pciBusID(p gonvml.PciInfo) string {
	var b strings.Builder
	for _, c := range p.BusId {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	if b.Len() > 0 {
		return b.String()
	}
	return fmt.Sprintf("%08x:%02x:%02x.0", p.Domain, p.Bus, p.Device)
}

func (g *gpu) sample(name, help string, kind collector.Kind, v float64, t time.Time, extra ...collector.Label) collector.Sample {
	labels := g.labels
	if len(extra) > 0 {
		labels = g.withExtra(extra)
	}
	return collector.Sample{Name: name, Help: help, Kind: kind, Value: v, Labels: labels, Time: t}
}

// maxExtraSets bounds a GPU's cache of label sets: per-process labels come
// and go, and past this many the cache starts over.
const maxExtraSets = 4096

// withExtra returns the GPU's labels with extra added, sorted. The same
// extras come back every pass (a link, a clock, a GPM metric), so each set
// is made once and shared: samples' labels are never modified.
func (g *gpu) withExtra(extra []collector.Label) []collector.Label {
	g.extraKey = g.extraKey[:0]
	for _, l := range extra { // lengths first: no separator can collide with a value's bytes
		g.extraKey = binary.AppendUvarint(g.extraKey, uint64(len(l.Name)))
		g.extraKey = binary.AppendUvarint(append(g.extraKey, l.Name...), uint64(len(l.Value)))
		g.extraKey = append(g.extraKey, l.Value...)
	}
	if ls, ok := g.extraSets[string(g.extraKey)]; ok {
		return ls
	}
	labels := make([]collector.Label, 0, len(g.labels)+len(extra))
	labels = append(labels, g.labels...)
	labels = append(labels, extra...)
	collector.SortLabels(labels)
	if g.extraSets == nil || len(g.extraSets) >= maxExtraSets {
		g.extraSets = map[string][]collector.Label{}
	}
	g.extraSets[string(g.extraKey)] = labels
	return labels
}

// reader collects one GPU's samples and remembers the first error that is
// not "not supported". A family NVML does not support is absent, never zero.
type reader struct {
	g   *gpu
	now time.Time
	out []collector.Sample
	err error
}

// ok reports whether ret is SUCCESS. NOT_SUPPORTED marks the family so it is
// not asked again; GPU_IS_LOST and other errors are kept for the caller.
func (r *reader) ok(family string, ret gonvml.Return) bool {
	switch ret {
	case gonvml.SUCCESS:
		return true
	case gonvml.ERROR_NOT_SUPPORTED, gonvml.ERROR_FUNCTION_NOT_FOUND:
		r.g.unsupported[family] = true
	default:
		if r.err == nil {
			r.err = nvmlErr(family, ret)
		}
	}
	return false
}

// lost says the GPU fell off the bus (or the driver went) during this pass,
// so the remaining calls are skipped.
func (r *reader) lost() bool {
	if e, ok := r.err.(errNVML); ok {
		return e.ret == gonvml.ERROR_GPU_IS_LOST || e.ret == gonvml.ERROR_UNINITIALIZED || e.ret == gonvml.ERROR_DRIVER_NOT_LOADED
	}
	return false
}

func (r *reader) supported(family string) bool { return !r.g.unsupported[family] && !r.lost() }

func (r *reader) add(name, help string, kind collector.Kind, v float64, extra ...collector.Label) {
	r.out = append(r.out, r.g.sample(name, help, kind, v, r.now, extra...))
}

func lbl(name, value string) collector.Label { return collector.Label{Name: name, Value: value} }

// readGPU does one pass over one GPU.
func (s *Source) readGPU(g *gpu, now time.Time) (out []collector.Sample, err error) {
	defer func() {
		// A mock with an unwired function panics; a real NVML does not. Either
		// way one GPU's failure must not take the others down.
		if p := recover(); p != nil {
			err = fmt.Errorf("reading GPU %d: %v", g.index, p)
		}
	}()
	r := &reader{g: g, now: now, out: make([]collector.Sample, 0, 96)}
	r.power()
	r.energy()
	r.thermal()
	r.clocks()
	r.utilization()
	r.memory()
	r.pcie()
	r.nvlink()
	r.health()
	r.mig()
	if g.gpm != nil && r.supported("gpm") {
		r.gpmMetrics(s.gpm)
	}
	if g.procs != nil && r.supported("processes") {
		r.processes()
	}
	return r.out, r.err
}

func (r *reader) power() {
	d := r.g.dev
	if r.supported("power") {
		if mw, ret := d.GetPowerUsage(); r.ok("power", ret) {
			r.add("joules_gpu_power_watts", "Board power draw averaged by the driver over about a second (nvmlDeviceGetPowerUsage).", collector.Gauge, float64(mw)/1000)
		}
	}
	if r.supported("power_instant") {
		fv := []gonvml.FieldValue{{FieldId: gonvml.FI_DEV_POWER_INSTANT}}
		if ret := d.GetFieldValues(fv); r.ok("power_instant", ret) && r.ok("power_instant", gonvml.Return(fv[0].NvmlReturn)) {
			r.add("joules_gpu_power_instant_watts", "Instantaneous board power draw (field FI_DEV_POWER_INSTANT).", collector.Gauge, float64(fieldUint(fv[0]))/1000)
		}
	}
	limits := []struct {
		family, name, help string
		get                func() (uint32, gonvml.Return)
	}{
		{"power_limit", "joules_gpu_power_limit_watts", "Power management limit currently set.", d.GetPowerManagementLimit},
		{"power_enforced_limit", "joules_gpu_power_enforced_limit_watts", "Power limit the driver enforces (the lowest of all limiters).", d.GetEnforcedPowerLimit},
		{"power_default_limit", "joules_gpu_power_default_limit_watts", "Default power management limit of the board.", d.GetPowerManagementDefaultLimit},
	}
	for _, l := range limits {
		if r.supported(l.family) {
			if mw, ret := l.get(); r.ok(l.family, ret) {
				r.add(l.name, l.help, collector.Gauge, float64(mw)/1000)
			}
		}
	}
}

const helpEnergy = "Energy used by the GPU board: the driver's counter (method=\"counter\", Volta and newer, continued across driver reloads and agent restarts) or power integrated over time (method=\"integrated\"). The epoch label changes only when the total could not be continued (a new agent state, or a gap in the integration), so a reader knows not to take that step as measured."

// defaultGPUWatts bounds a GPU's energy steps when NVML reports no power
// limit: above any board made (a B200 is rated 1,000 W).
const defaultGPUWatts = 2000

// maxWatts is the most this GPU can draw: half as much again as the limit
// the driver enforces (board power briefly exceeds it), from this pass.
func (r *reader) maxWatts() float64 {
	for _, name := range []string{"joules_gpu_power_enforced_limit_watts", "joules_gpu_power_default_limit_watts", "joules_gpu_power_limit_watts"} {
		for _, s := range r.out {
			if s.Name == name && s.Value > 0 {
				return 1.5 * s.Value
			}
		}
	}
	return defaultGPUWatts
}

func (r *reader) energy() {
	g := r.g
	if r.lost() {
		return
	}
	store := g.opts.Counters
	key := "nvml/" + g.uuid
	if g.hasEnergyCounter {
		mj, ret := g.dev.GetTotalEnergyConsumption()
		if r.ok("energy", ret) {
			// The driver's counter is read directly, never stale: any drop
			// beyond a second of power is a restart, not a dip.
			joules, epoch, ev := store.Counter(key, float64(mj)/1000, g.opts.BootID, r.now, energy.Bound{MaxWatts: r.maxWatts(), DipSeconds: 1})
			switch ev {
			case energy.Reset, energy.Restarted:
				g.opts.Logger.Warn("GPU energy counter restarted (driver reload, GPU reset or reboot); the total continues", "gpu", g.index, "uuid", g.uuid)
			case energy.Suspect, energy.Implausible:
				g.opts.Logger.Warn("GPU energy counter moved more than the GPU can draw; the step is not counted", "gpu", g.index, "uuid", g.uuid, "event", ev)
			}
			r.add("joules_gpu_energy_joules_total", helpEnergy, collector.Counter, joules, lbl("epoch", epoch), lbl("method", "counter"))
		}
		return
	}
	// Pre-Volta: no counter. Integrate the power this pass just read.
	for _, s := range r.out {
		if s.Name == "joules_gpu_power_watts" {
			joules, epoch := store.Integrate(key, s.Value, r.now, g.opts.MaxIntegrationGap, r.maxWatts())
			r.add("joules_gpu_energy_joules_total", helpEnergy, collector.Counter, joules, lbl("epoch", epoch), lbl("method", "integrated"))
			return
		}
	}
}

func (r *reader) thermal() {
	d := r.g.dev
	if r.supported("temperature") {
		if c, ret := d.GetTemperature(gonvml.TEMPERATURE_GPU); r.ok("temperature", ret) {
			r.add("joules_gpu_temperature_celsius", "GPU die temperature.", collector.Gauge, float64(c))
		}
	}
	if r.supported("memory_temperature") {
		fv := []gonvml.FieldValue{{FieldId: gonvml.FI_DEV_MEMORY_TEMP}}
		if ret := d.GetFieldValues(fv); r.ok("memory_temperature", ret) && r.ok("memory_temperature", gonvml.Return(fv[0].NvmlReturn)) {
			r.add("joules_gpu_memory_temperature_celsius", "GPU memory (HBM) temperature.", collector.Gauge, float64(fieldUint(fv[0])))
		}
	}
	if r.supported("fan") {
		if pct, ret := d.GetFanSpeed(); r.ok("fan", ret) {
			r.add("joules_gpu_fan_speed_ratio", "Fan speed as a share of its maximum (absent on passively cooled boards).", collector.Gauge, float64(pct)/100)
		}
	}
	if r.supported("pstate") {
		if p, ret := d.GetPerformanceState(); r.ok("pstate", ret) && p != gonvml.PSTATE_UNKNOWN {
			r.add("joules_gpu_performance_state", "Performance state: 0 is the highest performance, 15 the lowest.", collector.Gauge, float64(p))
		}
	}
}

var clockTypes = []struct {
	name string
	typ  gonvml.ClockType
}{{"graphics", gonvml.CLOCK_GRAPHICS}, {"sm", gonvml.CLOCK_SM}, {"memory", gonvml.CLOCK_MEM}}

// clockEventReasons names the bits of nvmlDeviceGetCurrentClocksEventReasons.
var clockEventReasons = []struct {
	name string
	bit  uint64
}{
	{"gpu_idle", gonvml.ClocksEventReasonGpuIdle},
	{"applications_clocks_setting", gonvml.ClocksEventReasonApplicationsClocksSetting},
	{"sw_power_cap", gonvml.ClocksEventReasonSwPowerCap},
	{"hw_slowdown", gonvml.ClocksThrottleReasonHwSlowdown},
	{"sync_boost", gonvml.ClocksEventReasonSyncBoost},
	{"sw_thermal_slowdown", gonvml.ClocksEventReasonSwThermalSlowdown},
	{"hw_thermal_slowdown", gonvml.ClocksThrottleReasonHwThermalSlowdown},
	{"hw_power_brake_slowdown", gonvml.ClocksThrottleReasonHwPowerBrakeSlowdown},
	{"display_clock_setting", gonvml.ClocksEventReasonDisplayClockSetting},
}

func (r *reader) clocks() {
	d := r.g.dev
	for _, c := range clockTypes {
		if fam := "clock_" + c.name; r.supported(fam) {
			if mhz, ret := d.GetClockInfo(c.typ); r.ok(fam, ret) {
				r.add("joules_gpu_clock_hertz", "Current clock frequency.", collector.Gauge, float64(mhz)*1e6, lbl("clock", c.name))
			}
		}
		if fam := "clock_max_" + c.name; r.supported(fam) {
			if mhz, ret := d.GetMaxClockInfo(c.typ); r.ok(fam, ret) {
				r.add("joules_gpu_clock_max_hertz", "Maximum clock frequency.", collector.Gauge, float64(mhz)*1e6, lbl("clock", c.name))
			}
		}
	}
	if r.supported("clock_events") {
		if mask, ret := d.GetCurrentClocksEventReasons(); r.ok("clock_events", ret) {
			for _, reason := range clockEventReasons {
				r.add("joules_gpu_clock_event_active", "Whether a reason currently holds the clocks down (1) or not (0): power cap, thermal, hardware slowdown, sync boost, idle, ….",
					collector.Gauge, boolValue(mask&reason.bit != 0), lbl("reason", reason.name))
			}
		}
	}
}

func (r *reader) utilization() {
	if !r.supported("utilization") {
		return
	}
	// Under MIG NVML refuses whole-GPU utilization: the samples are then absent, not zero.
	if u, ret := r.g.dev.GetUtilizationRates(); r.ok("utilization", ret) {
		r.add("joules_gpu_utilization_ratio", "Share of the last sample period in which a kernel ran on the GPU.", collector.Gauge, float64(u.Gpu)/100)
		r.add("joules_gpu_memory_utilization_ratio", "Share of the last sample period in which device memory was read or written.", collector.Gauge, float64(u.Memory)/100)
	}
}

func (r *reader) memory() {
	d := r.g.dev
	if r.supported("memory_v2") {
		if m, ret := d.GetMemoryInfo_v2(); r.ok("memory_v2", ret) {
			r.addMemory(m.Used, m.Total, &m.Reserved)
			return
		}
	}
	if r.supported("memory") {
		if m, ret := d.GetMemoryInfo(); r.ok("memory", ret) {
			r.addMemory(m.Used, m.Total, nil)
		}
	}
}

func (r *reader) addMemory(used, total uint64, reserved *uint64) {
	r.add("joules_gpu_memory_used_bytes", "Device memory allocated.", collector.Gauge, float64(used))
	r.add("joules_gpu_memory_total_bytes", "Device memory installed.", collector.Gauge, float64(total))
	if reserved != nil {
		r.add("joules_gpu_memory_reserved_bytes", "Device memory reserved by the driver and firmware.", collector.Gauge, float64(*reserved))
	}
}

func (r *reader) pcie() {
	d := r.g.dev
	for _, dir := range []struct {
		name    string
		counter gonvml.PcieUtilCounter
	}{{"tx", gonvml.PCIE_UTIL_TX_BYTES}, {"rx", gonvml.PCIE_UTIL_RX_BYTES}} {
		if fam := "pcie_" + dir.name; r.supported(fam) {
			if kbps, ret := d.GetPcieThroughput(dir.counter); r.ok(fam, ret) {
				r.add("joules_gpu_pcie_throughput_bytes_per_second", "PCIe throughput over the driver's last 20 ms window.", collector.Gauge, float64(kbps)*1024, lbl("direction", dir.name))
			}
		}
	}
	if r.supported("pcie_gen") {
		if gen, ret := d.GetCurrPcieLinkGeneration(); r.ok("pcie_gen", ret) {
			r.add("joules_gpu_pcie_link_generation", "Current PCIe link generation.", collector.Gauge, float64(gen))
		}
	}
	if r.supported("pcie_width") {
		if w, ret := d.GetCurrPcieLinkWidth(); r.ok("pcie_width", ret) {
			r.add("joules_gpu_pcie_link_width", "Current PCIe link width in lanes.", collector.Gauge, float64(w))
		}
	}
}

// findNVLinks asks once which links are up; inactive links are never read.
func (g *gpu) findNVLinks() {
	g.nvlinks = g.nvlinks[:0]
	for link := range gonvml.NVLINK_MAX_LINKS {
		state, ret := g.dev.GetNvLinkState(link)
		if ret != gonvml.SUCCESS {
			break // NOT_SUPPORTED on the first link: no NVLink; INVALID_ARGUMENT: past the last link
		}
		if state == gonvml.FEATURE_ENABLED {
			g.nvlinks = append(g.nvlinks, link)
		}
	}
}

func (r *reader) nvlink() {
	if len(r.g.nvlinks) == 0 || !r.supported("nvlink") {
		return
	}
	fv := make([]gonvml.FieldValue, 0, 2*len(r.g.nvlinks))
	for _, link := range r.g.nvlinks {
		fv = append(fv,
			gonvml.FieldValue{FieldId: gonvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX, ScopeId: uint32(link)},
			gonvml.FieldValue{FieldId: gonvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX, ScopeId: uint32(link)})
	}
	if !r.ok("nvlink", r.g.dev.GetFieldValues(fv)) {
		return
	}
	for _, v := range fv {
		if gonvml.Return(v.NvmlReturn) != gonvml.SUCCESS {
			continue
		}
		dir := "tx"
		if v.FieldId == gonvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX {
			dir = "rx"
		}
		r.add("joules_gpu_nvlink_data_bytes_total", "NVLink payload data sent (tx) or received (rx) on one link.", collector.Counter,
			float64(fieldUint(v))*1024, lbl("direction", dir), lbl("link", itoa(int(v.ScopeId))))
	}
}

func (r *reader) health() {
	d := r.g.dev
	for _, e := range []struct {
		errType gonvml.MemoryErrorType
		typ     string
	}{{gonvml.MEMORY_ERROR_TYPE_CORRECTED, "corrected"}, {gonvml.MEMORY_ERROR_TYPE_UNCORRECTED, "uncorrected"}} {
		for _, c := range []struct {
			counter gonvml.EccCounterType
			name    string
		}{{gonvml.VOLATILE_ECC, "volatile"}, {gonvml.AGGREGATE_ECC, "aggregate"}} {
			fam := "ecc_" + e.typ + "_" + c.name
			if !r.supported(fam) {
				continue
			}
			if n, ret := d.GetTotalEccErrors(e.errType, c.counter); r.ok(fam, ret) {
				r.add("joules_gpu_ecc_errors_total", "ECC memory errors: volatile counts since the driver loaded, aggregate over the board's life.",
					collector.Counter, float64(n), lbl("counter", c.name), lbl("type", e.typ))
			}
		}
	}
	if r.supported("remapped_rows") {
		if corr, unc, pending, failed, ret := d.GetRemappedRows(); r.ok("remapped_rows", ret) {
			r.add("joules_gpu_remapped_rows", "Memory rows remapped, by the kind of error that caused it.", collector.Gauge, float64(corr), lbl("cause", "correctable"))
			r.add("joules_gpu_remapped_rows", "Memory rows remapped, by the kind of error that caused it.", collector.Gauge, float64(unc), lbl("cause", "uncorrectable"))
			r.add("joules_gpu_row_remap_pending", "Whether a row remapping waits for a GPU reset (1) or not (0).", collector.Gauge, boolValue(pending))
			r.add("joules_gpu_row_remap_failed", "Whether a row remapping has failed (1): the GPU needs service.", collector.Gauge, boolValue(failed))
		}
	}
	for _, c := range []struct {
		cause gonvml.PageRetirementCause
		name  string
	}{{gonvml.PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS, "multiple_single_bit"}, {gonvml.PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR, "double_bit"}} {
		fam := "retired_pages_" + c.name
		if !r.supported(fam) {
			continue
		}
		// Row remapping replaced page retirement on Ampere and newer, where this is NOT_SUPPORTED.
		if pages, ret := d.GetRetiredPages(c.cause); r.ok(fam, ret) {
			r.add("joules_gpu_retired_pages", "Memory pages retired (before Ampere), by cause.", collector.Gauge, float64(len(pages)), lbl("cause", c.name))
		}
	}
}

// fieldUint reads an unsigned field value, whatever its width.
func fieldUint(v gonvml.FieldValue) uint64 {
	var u uint64
	for i := 7; i >= 0; i-- {
		u = u<<8 | uint64(v.Value[i])
	}
	switch gonvml.ValueType(v.ValueType) {
	case gonvml.VALUE_TYPE_UNSIGNED_INT:
		return u & 0xffffffff
	case gonvml.VALUE_TYPE_DOUBLE:
		return uint64(math.Float64frombits(u))
	}
	return u
}
