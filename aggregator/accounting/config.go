package accounting

import (
	"errors"
	"fmt"
	"time"

	"github.com/joules-energy/joules/internal/energy"
	"github.com/joules-energy/joules/internal/schema"
)

// Config says how accounting windows work. Zero fields take the defaults.
type Config struct {
	// Window is the tumbling window, aligned to the wall clock (1m).
	// Windows of an hour and a day are kept as well.
	Window time.Duration
	// Grace is how long after its end a window waits for late points
	// before it is written (30s).
	Grace time.Duration
	// MaxLateness is how long a written window is kept: points later than
	// its grace but within this revise it, and it is written again
	// (InfluxDB overwrites the earlier values). A window is let go once
	// both the wall clock and the newest point seen are this far past its
	// end, so a wall clock stepped forward does not turn current points
	// into late ones. Points for a window let go are counted as dropped
	// (1h).
	MaxLateness time.Duration
	// MaxGap is the longest step between two power readings that is
	// integrated, and between two counter readings that counts as
	// covered time (5m). A counter's energy over a longer step is still
	// counted (the counter measured it); the time is not covered.
	MaxGap time.Duration
	// ForgetAfter is how long a silent host or meter stays expected in
	// coverage before it is taken for decommissioned (24h).
	ForgetAfter time.Duration
	// IdleBelow is the GPU activity under which a GPU's energy counts as
	// idle energy (0.05).
	IdleBelow float64
	// Bounds are the most power each kind of device can draw: a step
	// beyond them is not counted.
	Bounds Bounds
	// Meters say what each meter feeds, where its labels do not say it
	// well enough, and bound its power.
	Meters []Meter
	// PowerFeeds are the independent power feeds every rack has (A and B):
	// a role's meters are the IT energy of a host only when they meter all
	// of its rack's feeds. Empty: one feed.
	PowerFeeds []string
	// MeterCheck is how much less than the hosts they feed IT meters may
	// read before they are taken for incomplete and not used (0.1: 10 %).
	MeterCheck float64
	// HostShare is how a host's energy besides its GPUs is shared among
	// the workloads on it: in proportion to their GPU energy
	// (schema.RuleGPUEnergy, the default) or to their requested CPUs
	// (schema.RuleRequestedCPUs).
	HostShare string
}

// Bounds are the defaults of what a device can draw, where it does not
// report its own (docs/ACCOUNTING.md).
type Bounds struct {
	GPUWatts   float64 // a GPU without a reported power limit (2,000 W)
	HostWatts  float64 // a host whose BMC reports no PSU capacity (20,000 W)
	CPUWatts   float64 // one RAPL zone (1,000 W)
	MeterWatts float64 // a meter with no max_watts of its own (100 MW)
}

// Meter is what the configuration says of one meter.
type Meter struct {
	// BMC is the meter's bmc tag (its name in the agent's redfish entry);
	// Site, Hall and Equipment, when set, narrow the match.
	BMC, Site, Hall, Equipment string
	// Feeds is what the meter is upstream of; empty: what its labels say
	// (its rack, else its hall, else its site).
	Feeds Feeds
	// MaxWatts bounds its energy steps (default Bounds.MeterWatts).
	MaxWatts float64
}

// Feeds is what a meter is upstream of.
type Feeds struct {
	Site  bool     // the whole site
	Hall  string   // a hall; with Racks, the hall of the racks (default the meter's)
	Racks []string // racks of Hall
	Feed  string   // one of PowerFeeds; empty: all of them
}

func (f Feeds) empty() bool { return !f.Site && f.Hall == "" && len(f.Racks) == 0 && f.Feed == "" }

// WithDefaults is the configuration with every default filled in, as New
// uses it.
func (c Config) WithDefaults() Config {
	c.defaults()
	return c
}

func (c *Config) defaults() {
	if c.Window <= 0 {
		c.Window = time.Minute
	}
	if c.Grace <= 0 {
		c.Grace = 30 * time.Second
	}
	if c.MaxLateness <= 0 {
		c.MaxLateness = time.Hour
	}
	if c.MaxGap <= 0 {
		c.MaxGap = 5 * time.Minute
	}
	if c.ForgetAfter <= 0 {
		c.ForgetAfter = 24 * time.Hour
	}
	if c.IdleBelow <= 0 {
		c.IdleBelow = 0.05
	}
	b := &c.Bounds
	if b.GPUWatts <= 0 {
		b.GPUWatts = 2000
	}
	if b.HostWatts <= 0 {
		b.HostWatts = 20_000
	}
	if b.CPUWatts <= 0 {
		b.CPUWatts = 1000
	}
	if b.MeterWatts <= 0 {
		b.MeterWatts = energy.DefaultMeterWatts
	}
	if c.MeterCheck <= 0 {
		c.MeterCheck = 0.1
	}
	if c.HostShare == "" {
		c.HostShare = schema.RuleGPUEnergy
	}
}

// Validate checks a configuration after defaults, reporting every problem.
// The meters' entries are the configuration file's to check
// (internal/config), with their lines; one that names no meter matches none.
func (c Config) Validate() error {
	c.defaults()
	var errs []error
	if time.Hour%c.Window != 0 || c.Window >= time.Hour {
		errs = append(errs, fmt.Errorf("accounting.window %s must divide an hour and be shorter (e.g. 10s, 1m, 5m, 15m): hour and day windows are kept anyway", c.Window))
	}
	if c.MaxLateness < c.Grace {
		errs = append(errs, fmt.Errorf("accounting.max_lateness %s must be at least accounting.grace %s", c.MaxLateness, c.Grace))
	}
	if c.HostShare != schema.RuleGPUEnergy && c.HostShare != schema.RuleRequestedCPUs {
		errs = append(errs, fmt.Errorf("accounting.workloads.host_share %q: say %s or %s", c.HostShare, schema.RuleGPUEnergy, schema.RuleRequestedCPUs))
	}
	return errors.Join(errs...)
}

// meterConfig finds the configuration of a meter: the most specific entry
// that matches it.
func (c *Config) meterConfig(k meterKey) (Meter, bool) {
	best, score := Meter{}, -1
	for _, m := range c.Meters {
		if m.BMC != k.BMC || m.Site != "" && m.Site != k.Site || m.Hall != "" && m.Hall != k.Hall || m.Equipment != "" && m.Equipment != k.Equipment {
			continue
		}
		s := 0
		for _, set := range []string{m.Site, m.Hall, m.Equipment} {
			if set != "" {
				s++
			}
		}
		if s > score {
			best, score = m, s
		}
	}
	return best, score >= 0
}
