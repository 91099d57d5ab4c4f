package collector

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RAPL adds what node_exporter's rapl collector lacks for energy accounting:
// each zone's max_energy_range_uj, so a consumer can unwrap energy_uj
// exactly, and a clear log line with the fix when energy_uj is unreadable
// (root-only since Linux 5.10) where node_exporter stays silent.
//
// Zones get the same index and path labels as node_exporter's
// node_rapl_<zone>_joules_total, so the two join on them.
type RAPL struct {
	logger   *slog.Logger
	dir      string // <sysfs>/class/powercap
	readFile func(string) ([]byte, error)

	mu     sync.Mutex
	logged map[string]bool // problems already logged, so each is said once
}

// NewRAPL returns a RAPL reader of the powercap zones under sysfsPath.
func NewRAPL(logger *slog.Logger, sysfsPath string) *RAPL {
	return &RAPL{
		logger:   logger,
		dir:      filepath.Join(sysfsPath, "class/powercap"),
		readFile: os.ReadFile,
		logged:   map[string]bool{},
	}
}

const (
	metricRAPLMaxRange = "joules_rapl_max_energy_range_joules"
	metricRAPLReadable = "joules_rapl_energy_readable"
)

// Read returns, per zone, the wrap range of its energy counter and whether
// the counter is readable. A zone with missing or garbled files is skipped
// for the reading it lacks and the problem logged once; other zones go on.
func (r *RAPL) Read(t time.Time) []Sample {
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.once("dir", "cannot list RAPL zones", "dir", r.dir, "err", err)
		}
		return nil
	}
	var samples []Sample
	nameUses := map[string]int{}
	for _, e := range entries {
		zoneDir := filepath.Join(r.dir, e.Name())
		raw, err := r.readFile(filepath.Join(zoneDir, "name"))
		if err != nil {
			continue // the control-type directory (intel-rapl) has no name: not a zone
		}
		index, name := zoneIndexAndName(nameUses, strings.TrimSpace(string(raw)))
		nameUses[name] = index + 1
		labels := []Label{{"index", strconv.Itoa(index)}, {"path", zoneDir}, {"zone", name}}

		if maxRange, err := r.readUint(filepath.Join(zoneDir, "max_energy_range_uj")); err != nil {
			r.once(zoneDir+"/max", "cannot read RAPL max_energy_range_uj; energy of this zone cannot be unwrapped exactly",
				"zone", name, "path", zoneDir, "err", err)
		} else {
			samples = append(samples, Sample{Name: metricRAPLMaxRange, Kind: Gauge, Value: float64(maxRange) / 1e6, Labels: labels, Time: t,
				Help: "Range of the RAPL zone's energy counter in joules: node_rapl_*_joules_total wraps to zero after this value."})
		}

		readable := 1.0
		if _, err := r.readUint(filepath.Join(zoneDir, "energy_uj")); err != nil {
			readable = 0
			if errors.Is(err, fs.ErrPermission) {
				r.once("perm", "RAPL energy_uj is not readable: since Linux 5.10 only root may read it, so node_exporter's RAPL metrics are missing. "+
					"Fix: run the agent with AmbientCapabilities=CAP_DAC_READ_SEARCH, or add the systemd-tmpfiles rule "+
					"'z /sys/class/powercap/intel-rapl:*/energy_uj 0440 root joules' for the agent's group",
					"path", filepath.Join(zoneDir, "energy_uj"))
			} else {
				r.once(zoneDir+"/energy", "cannot read RAPL energy_uj", "zone", name, "path", zoneDir, "err", err)
			}
		}
		samples = append(samples, Sample{Name: metricRAPLReadable, Kind: Gauge, Value: readable, Labels: labels, Time: t,
			Help: "Whether the agent can read the RAPL zone's energy_uj counter (1) or not (0, see the agent's log for the fix)."})
	}
	return samples
}

func (r *RAPL) readUint(path string) (uint64, error) {
	raw, err := r.readFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: not an unsigned integer: %w", path, err)
	}
	return v, nil
}

func (r *RAPL) once(key, msg string, args ...any) {
	r.mu.Lock()
	seen := r.logged[key]
	r.logged[key] = true
	r.mu.Unlock()
	if !seen {
		r.logger.Warn(msg, args...)
	}
}

// zoneIndexAndName numbers zones as procfs (and so node_exporter) does: a
// name "package-1" is zone "package" index 1; a name without a numeric
// suffix takes the count of earlier zones of that name.
func zoneIndexAndName(uses map[string]int, name string) (int, string) {
	if base, suffix, ok := strings.Cut(name, "-"); ok && !strings.Contains(suffix, "-") {
		if i, err := strconv.Atoi(suffix); err == nil {
			return i, base
		}
	}
	return uses[name], name
}
