// Package nvml is the GPU source: power, energy, clocks, utilization,
// memory, PCIe and NVLink, health (ECC, row remapping, XID events), MIG
// instances, Hopper GPM activity and GPU processes, read through NVML with
// github.com/NVIDIA/go-nvml, which loads libnvidia-ml.so.1 at run time.
package nvml

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/internal/energy"
)

// Library is the part of NVML the source uses: go-nvml's Interface, backed by
// the real libnvidia-ml.so.1 (gonvml.New()) or by go-nvml's mock servers.
type Library = gonvml.Interface

// Options tune the source; the zero value is usable.
type Options struct {
	Logger *slog.Logger
	// Simulated marks every sample simulated="true" (mock servers).
	Simulated bool
	// Processes turns on per-process metrics (memory, SM share, estimated energy).
	Processes bool
	// Workloads names the workloads of processes and GPUs for the
	// workload share metric (default: by the process's cgroup alone).
	Workloads Workloads
	// ProcFS is where process cgroups are read (default /proc).
	ProcFS string
	// MaxIntegrationGap bounds the power-integration step for GPUs without an
	// energy counter; a longer gap is left out (default 10 s).
	MaxIntegrationGap time.Duration
	// ReinitBackoff is the first wait before re-initialising NVML after the
	// driver went away or a GPU fell off the bus; it doubles up to 5 minutes
	// (default 10 s).
	ReinitBackoff time.Duration
	// Counters continues the energy counters across driver reloads and
	// agent restarts (default: in memory only).
	Counters *energy.Store
	// BootID identifies the host's boot (procfs sys/kernel/random/boot_id):
	// the epoch of the driver's counters, which restart with every boot.
	BootID string
	now    func() time.Time
}

const maxReinitBackoff = 5 * time.Minute

// Source reads every physical GPU of the host in one pass per interval.
type Source struct {
	lib  Library
	opts Options
	log  *slog.Logger

	mu          sync.Mutex
	initialized bool
	nextInit    time.Time
	backoff     time.Duration
	lastInitErr error
	info        []collector.Sample // joules_nvml_info
	gpus        []*gpu             // in index order; lost GPUs stay listed
	byUUID      map[string]*gpu
	xid         *xidWatcher
	xids        xidCounts
	gpm         gpmLib
}

// New returns a GPU source over lib. It does not touch NVML until the first
// Collect, so an agent on a host without the driver starts normally.
func New(lib Library, opts Options) *Source {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ProcFS == "" {
		opts.ProcFS = "/proc"
	}
	if opts.Workloads == nil {
		opts.Workloads = cgroupWorkloads{}
	}
	if opts.MaxIntegrationGap <= 0 {
		opts.MaxIntegrationGap = 10 * time.Second
	}
	if opts.ReinitBackoff <= 0 {
		opts.ReinitBackoff = 10 * time.Second
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	if opts.Counters == nil {
		opts.Counters = energy.NewMemoryStore()
	}
	return &Source{lib: lib, opts: opts, log: opts.Logger, byUUID: map[string]*gpu{}, backoff: opts.ReinitBackoff}
}

// errNVML wraps an NVML return code as an error.
type errNVML struct {
	op  string
	ret gonvml.Return
}

func (e errNVML) Error() string { return fmt.Sprintf("%s: %s", e.op, gonvml.ErrorString(e.ret)) }

func nvmlErr(op string, ret gonvml.Return) error { return errNVML{op, ret} }

// Collect reads every GPU once. With no NVML library or driver it returns
// collector.ErrAbsent; after the driver went away it re-initialises with
// backoff while reporting what it knew as down.
func (s *Source) Collect(ctx context.Context) ([]collector.Sample, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.now()
	if !s.initialized {
		if now.Before(s.nextInit) {
			return s.downSamples(now), s.lastInitErr
		}
		if err := s.init(now); err != nil {
			s.lastInitErr = err
			s.nextInit = now.Add(s.backoff)
			s.backoff = min(2*s.backoff, maxReinitBackoff)
			return s.downSamples(now), err
		}
		s.backoff = s.opts.ReinitBackoff
	}

	samples := append([]collector.Sample(nil), s.info...)
	var lost, driverGone bool
	for _, g := range s.gpus {
		if ctx.Err() != nil {
			return samples, fmt.Errorf("nvml pass: %w", ctx.Err())
		}
		if g.lost {
			samples = append(samples, g.sample("joules_gpu_up", helpUp, collector.Gauge, 0, now))
			lost = true
			continue
		}
		out, err := s.readGPU(g, now)
		samples = append(samples, out...)
		var ne errNVML
		switch {
		case err == nil:
		case errors.As(err, &ne) && ne.ret == gonvml.ERROR_GPU_IS_LOST:
			g.lost = true
			lost = true
			s.log.Error("GPU fell off the bus; the others continue, NVML will be re-initialised", "gpu", g.index, "uuid", g.uuid, "err", err)
		case errors.As(err, &ne) && (ne.ret == gonvml.ERROR_UNINITIALIZED || ne.ret == gonvml.ERROR_DRIVER_NOT_LOADED):
			driverGone = true
		default:
			s.log.Warn("GPU read failed", "gpu", g.index, "uuid", g.uuid, "err", err)
		}
		samples = append(samples, g.sample("joules_gpu_up", helpUp, collector.Gauge, boolValue(!g.lost && !driverGone), now))
	}
	samples = append(samples, s.xids.samples(s.byUUID, now)...)
	if driverGone {
		s.shutdown()
		s.nextInit = now.Add(s.backoff)
		return s.downSamples(now), errors.New("NVML driver went away; re-initialising with backoff")
	}
	if lost && now.After(s.nextInit) {
		// Re-enumerate on a backoff: a GPU that comes back after a reset or
		// driver reload is found again, with its energy counter continued.
		s.nextInit = now.Add(s.backoff)
		s.backoff = min(2*s.backoff, maxReinitBackoff)
		s.shutdown()
	}
	return samples, nil
}

// Close stops the XID event goroutine and shuts NVML down.
func (s *Source) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutdown()
}

func (s *Source) shutdown() {
	if !s.initialized {
		return
	}
	if s.xid != nil {
		s.xid.stop()
		s.xid = nil
	}
	for _, g := range s.gpus {
		g.freeGPM()
	}
	s.lib.Shutdown()
	s.initialized = false
}

// init loads NVML and enumerates the GPUs. GPUs already known (by UUID)
// keep their state, so energy counters continue across a re-init.
func (s *Source) init(now time.Time) error {
	ret := s.lib.Init()
	switch ret {
	case gonvml.SUCCESS:
	case gonvml.ERROR_LIBRARY_NOT_FOUND:
		return fmt.Errorf("libnvidia-ml.so.1 not found (no NVIDIA driver installed): %w", collector.ErrAbsent)
	case gonvml.ERROR_DRIVER_NOT_LOADED:
		return fmt.Errorf("NVIDIA driver not loaded: %w", collector.ErrAbsent)
	default:
		return nvmlErr("nvmlInit", ret)
	}
	s.initialized = true
	driver, _ := s.lib.SystemGetDriverVersion()
	nvmlVersion, _ := s.lib.SystemGetNVMLVersion()
	cuda, ret := s.lib.SystemGetCudaDriverVersion()
	cudaVersion := ""
	if ret == gonvml.SUCCESS {
		cudaVersion = fmt.Sprintf("%d.%d", cuda/1000, cuda%1000/10)
	}
	count, ret := s.lib.DeviceGetCount()
	if ret != gonvml.SUCCESS {
		s.shutdown()
		return nvmlErr("nvmlDeviceGetCount", ret)
	}
	if count == 0 {
		s.shutdown()
		return fmt.Errorf("NVML sees no GPU: %w", collector.ErrAbsent)
	}
	infoLabels := []collector.Label{{Name: "cuda_version", Value: cudaVersion}, {Name: "driver_version", Value: driver}, {Name: "nvml_version", Value: nvmlVersion}}
	if s.opts.Simulated {
		infoLabels = append(infoLabels, collector.Label{Name: "simulated", Value: "true"})
	}
	s.info = []collector.Sample{{Name: "joules_nvml_info", Help: "NVIDIA driver, CUDA and NVML versions of the host; always 1.",
		Kind: collector.Gauge, Value: 1, Labels: infoLabels, Time: now}}

	var devices []gonvml.Device
	for i := range count {
		dev, ret := s.lib.DeviceGetHandleByIndex(i)
		if ret != gonvml.SUCCESS {
			s.log.Warn("cannot open GPU; it is skipped until NVML is re-initialised", "gpu", i, "err", gonvml.ErrorString(ret))
			continue
		}
		uuid, ret := dev.GetUUID()
		if ret != gonvml.SUCCESS {
			s.log.Warn("cannot read GPU UUID; it is skipped", "gpu", i, "err", gonvml.ErrorString(ret))
			continue
		}
		g := s.byUUID[uuid]
		if g == nil {
			g = newGPU(dev, i, uuid, s.opts)
			s.byUUID[uuid] = g
			s.gpus = append(s.gpus, g)
			s.log.Info("GPU found", "gpu", i, "uuid", uuid, "model", g.model, "pci_bus_id", g.pciBusID,
				"energy", map[bool]string{true: "counter", false: "integrated from power"}[g.hasEnergyCounter])
		} else {
			g.reopen(dev)
			if g.lost {
				s.log.Info("GPU is back", "gpu", i, "uuid", uuid)
			}
			g.lost = false
		}
		devices = append(devices, dev)
	}
	s.gpm = s.lib
	s.xid = startXIDWatcher(s.lib, devices, &s.xids, s.log)
	s.log.Info("NVML initialised", "driver_version", driver, "cuda_version", cudaVersion, "gpus", len(devices))
	return nil
}

// downSamples reports every known GPU as down, for passes without NVML.
func (s *Source) downSamples(now time.Time) []collector.Sample {
	out := make([]collector.Sample, 0, len(s.gpus))
	for _, g := range s.gpus {
		out = append(out, g.sample("joules_gpu_up", helpUp, collector.Gauge, 0, now))
	}
	return out
}

const helpUp = "Whether the GPU answered NVML in the last pass (0: fallen off the bus, or the driver is gone)."

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func itoa(i int) string { return strconv.Itoa(i) }
