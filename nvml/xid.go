package nvml

import (
	"log/slog"
	"strconv"
	"sync"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/joules-energy/joules/collector"
)

// xidCounts counts XID events per GPU UUID and XID. The source owns it, so
// counts survive an NVML re-initialisation.
type xidCounts struct {
	mu     sync.Mutex
	counts map[string]map[uint64]float64
}

func (c *xidCounts) add(uuid string, xid uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]map[uint64]float64{}
	}
	if c.counts[uuid] == nil {
		c.counts[uuid] = map[uint64]float64{}
	}
	c.counts[uuid][xid]++
}

func (c *xidCounts) samples(byUUID map[string]*gpu, now time.Time) []collector.Sample {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []collector.Sample
	for uuid, byXID := range c.counts {
		g := byUUID[uuid]
		if g == nil {
			continue
		}
		for xid, n := range byXID {
			out = append(out, g.sample("joules_gpu_xid_errors_total", "XID error events reported by the driver, by XID number.",
				collector.Counter, n, now, lbl("xid", strconv.FormatUint(xid, 10))))
		}
	}
	return out
}

// xidWatcher waits for XID events in one goroutine, which lives from NVML
// initialisation until stop.
type xidWatcher struct {
	quit chan struct{}
	done chan struct{}
}

const xidWaitMillis = 500

// startXIDWatcher registers every device for XID events and starts the
// goroutine; it returns nil when the driver offers no events.
func startXIDWatcher(lib Library, devices []gonvml.Device, counts *xidCounts, log *slog.Logger) *xidWatcher {
	set, ret := lib.EventSetCreate()
	if ret != gonvml.SUCCESS {
		log.Info("XID events unavailable", "err", gonvml.ErrorString(ret))
		return nil
	}
	registered := 0
	for _, dev := range devices {
		if dev.RegisterEvents(gonvml.EventTypeXidCriticalError, set) == gonvml.SUCCESS {
			registered++
		}
	}
	if registered == 0 {
		set.Free()
		log.Info("XID events unavailable on every GPU")
		return nil
	}
	w := &xidWatcher{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer set.Free()
		for {
			select {
			case <-w.quit:
				return
			default:
			}
			data, ret := set.Wait(xidWaitMillis)
			switch ret {
			case gonvml.SUCCESS:
				if data.EventType&gonvml.EventTypeXidCriticalError == 0 || data.Device == nil {
					continue
				}
				uuid, _ := data.Device.GetUUID()
				counts.add(uuid, data.EventData)
				log.Warn("GPU XID error", "uuid", uuid, "xid", data.EventData)
			case gonvml.ERROR_TIMEOUT:
			default:
				// A lost GPU or a driver going away: do not spin; the source re-initialises.
				select {
				case <-w.quit:
					return
				case <-time.After(xidWaitMillis * time.Millisecond):
				}
			}
		}
	}()
	return w
}

// stop ends the goroutine; it returns within one wait.
func (w *xidWatcher) stop() {
	close(w.quit)
	<-w.done
}
