package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"github.com/joules-energy/joules/internal/schema"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Aggregator is the configuration of joules-aggregator. Every field has a default.
type Aggregator struct {
	// TokensFile lists the tokens writers may use, one a line ("#" starts a
	// comment). Without tokens every write is refused.
	TokensFile string     `yaml:"tokens_file"`
	Limits     Limits     `yaml:"limits"`
	Influx     Output     `yaml:"influx"`
	Downsample Downsample `yaml:"downsample"`
	Accounting Accounting `yaml:"accounting"`
	Cluster    Cluster    `yaml:"cluster"`
}

// Limits bound one write request.
type Limits struct {
	MaxBodyBytes         int64 `yaml:"max_body_bytes"`
	MaxDecompressedBytes int64 `yaml:"max_decompressed_bytes"`
	MaxLineBytes         int   `yaml:"max_line_bytes"`
	// RequestsPerSecond and Burst bound each client's (IP address's)
	// requests; 0 turns the bound off (behind a proxy every agent has its
	// address).
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	Burst             int     `yaml:"burst"`
}

// Output is where the aggregator writes: InfluxDB 2.x (org, bucket, token)
// or 1.8 (bucket "db/rp", token "user:password" or none).
type Output struct {
	URL            String   `yaml:"url"`
	Org            string   `yaml:"org"`
	Bucket         string   `yaml:"bucket"`
	TokenFile      string   `yaml:"token_file"`
	TokenEnv       string   `yaml:"token_env"`
	SpoolDir       string   `yaml:"spool_dir"`
	SpoolMaxBytes  int64    `yaml:"spool_max_bytes"`
	BatchBytes     int      `yaml:"batch_bytes"`
	Timeout        Duration `yaml:"timeout"`
	DeadLetterFile string   `yaml:"dead_letter_file"`
}

// Downsample thins raw points for large fleets: of each series, at most one
// point per interval is written (0: every point, the default).
type Downsample struct {
	Interval Duration `yaml:"interval"`
}

// Accounting is energy accounting: energy per GPU, host, rack, hall and
// site in wall-clock windows, PUE, work per joule, reconciliation
// (docs/ACCOUNTING.md).
type Accounting struct {
	Enabled     bool     `yaml:"enabled"`
	Window      Duration `yaml:"window"`       // tumbling window, divides an hour
	Grace       Duration `yaml:"grace"`        // wait for late points before writing a window
	MaxLateness Duration `yaml:"max_lateness"` // later points revise a written window up to this
	MaxGap      Duration `yaml:"max_gap"`      // longest step integrated or counted as covered
	ForgetAfter Duration `yaml:"forget_after"` // a silent host stops counting against coverage
	IdleBelow   float64  `yaml:"idle_below"`   // GPU activity under which its energy is idle energy
	// StateFile is where the per-series state is checkpointed, so a
	// restart neither loses nor double counts energy.
	StateFile          string   `yaml:"state_file"`
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
	// Bounds are the most each kind of device can draw where it does not
	// report its own: a step beyond is not counted (docs/ACCOUNTING.md).
	Bounds Bounds `yaml:"bounds"`
	// Meters say what each meter feeds, where its labels do not say it
	// well enough (a PDU on one feed of an A+B rack, a hall-labelled PDU
	// that feeds one rack), and bound its power.
	Meters []AccountingMeter `yaml:"meters"`
	// PowerFeeds are the independent feeds every rack has (e.g. [A, B]);
	// empty: one.
	PowerFeeds []string `yaml:"power_feeds"`
	// MeterCheck: IT meters that read this share less than the hosts they
	// feed are taken for incomplete and not used (default 0.1).
	MeterCheck float64 `yaml:"meter_check"`
	// Workloads says how workloads share what their hosts measured.
	Workloads AccountingWorkloads `yaml:"workloads"`
}

// AccountingWorkloads configures workload accounting (docs/ACCOUNTING.md).
type AccountingWorkloads struct {
	// HostShare is how a host's energy besides its GPUs is shared among
	// its workloads: gpu_energy (default) or requested_cpus.
	HostShare String `yaml:"host_share"`
}

// Bounds of devices that report none of their own, in watts.
type Bounds struct {
	GPUWatts   float64 `yaml:"gpu_watts"`   // a GPU without a power limit from NVML (2000)
	HostWatts  float64 `yaml:"host_watts"`  // a host whose BMC reports no PSU capacity (20000)
	CPUWatts   float64 `yaml:"cpu_watts"`   // one RAPL zone (1000)
	MeterWatts float64 `yaml:"meter_watts"` // a meter without max_watts (100e6)
}

// AccountingMeter is what the configuration says of one meter.
type AccountingMeter struct {
	BMC       string        `yaml:"bmc"`    // the meter's name in the agent's redfish entry
	Device    string        `yaml:"device"` // or in its snmp or modbus entry
	Site      string        `yaml:"site"`
	Hall      string        `yaml:"hall"`
	Equipment string        `yaml:"equipment"`
	Feeds     AccountingFed `yaml:"feeds"`
	MaxWatts  float64       `yaml:"max_watts"`
}

// MeterName is the meter's name as its samples carry it: bmc or device.
func (m AccountingMeter) MeterName() string {
	if m.BMC != "" {
		return m.BMC
	}
	return m.Device
}

// AccountingFed is what a meter is upstream of.
type AccountingFed struct {
	Site  bool     `yaml:"site"`
	Hall  string   `yaml:"hall"`
	Racks []string `yaml:"racks"`
	Feed  string   `yaml:"feed"`
}

var aggregatorSections = map[string]string{
	"Aggregator": "the top level", "Limits": "limits", "Output": "influx", "Downsample": "downsample", "Accounting": "accounting",
	"Bounds": "accounting.bounds", "AccountingMeter": "an accounting.meters entry", "AccountingFed": "accounting.meters feeds",
	"AccountingWorkloads": "accounting.workloads",
	"Cluster":             "cluster", "ClusterTLS": "cluster.tls",
}

// DefaultAggregator returns the configuration used when there is no file.
func DefaultAggregator() Aggregator {
	return Aggregator{
		TokensFile: "/etc/joules/tokens",
		Limits:     Limits{MaxBodyBytes: 16 << 20, MaxDecompressedBytes: 128 << 20, MaxLineBytes: 64 << 10, RequestsPerSecond: 20, Burst: 50},
		Influx: Output{URL: String{Value: "http://127.0.0.1:8086"}, Bucket: "joules/autogen", SpoolDir: "/var/lib/joules/aggregator/spool",
			SpoolMaxBytes: 4 << 30, BatchBytes: 1 << 20, Timeout: Duration{Duration: 10 * time.Second}, DeadLetterFile: "/var/lib/joules/aggregator/dead-letter.lp"},
		Accounting: Accounting{Enabled: true, Window: Duration{Duration: time.Minute}, Grace: Duration{Duration: 30 * time.Second},
			MaxLateness: Duration{Duration: time.Hour}, MaxGap: Duration{Duration: 5 * time.Minute}, ForgetAfter: Duration{Duration: 24 * time.Hour},
			IdleBelow: 0.05, StateFile: "/var/lib/joules/aggregator/accounting.state", CheckpointInterval: Duration{Duration: 30 * time.Second}},
		Cluster: defaultCluster(),
	}
}

// LoadAggregator reads the aggregator configuration; an empty path gives the defaults.
func LoadAggregator(path string) (Aggregator, error) {
	cfg := DefaultAggregator()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		if err := decodeStrict(bytes.NewReader(raw), &cfg, aggregatorSections); err != nil {
			return cfg, fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		if path != "" {
			return cfg, fmt.Errorf("%s: %w", path, err)
		}
		return cfg, err
	}
	return cfg, nil
}

// Validate reports every problem at once.
func (c Aggregator) Validate() error {
	var errs []error
	if c.TokensFile == "" {
		errs = append(errs, errors.New("tokens_file is required: writes need a token"))
	} else if _, err := os.Stat(c.TokensFile); err != nil {
		errs = append(errs, fmt.Errorf("tokens_file: %w (one token a line)", err))
	}
	if c.Limits.MaxBodyBytes <= 0 || c.Limits.MaxDecompressedBytes < c.Limits.MaxBodyBytes || c.Limits.MaxLineBytes <= 0 {
		errs = append(errs, fmt.Errorf("limits: max_body_bytes (%d) and max_line_bytes (%d) must be positive and max_decompressed_bytes (%d) at least max_body_bytes",
			c.Limits.MaxBodyBytes, c.Limits.MaxLineBytes, c.Limits.MaxDecompressedBytes))
	}
	if c.Limits.RequestsPerSecond < 0 || c.Limits.RequestsPerSecond > 0 && c.Limits.Burst < 1 {
		errs = append(errs, fmt.Errorf("limits: requests_per_second (%g) must be 0 (no bound) or positive with a burst of at least 1 (%d)", c.Limits.RequestsPerSecond, c.Limits.Burst))
	}
	o := c.Influx
	if u, err := url.Parse(o.URL.Value); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("%s: influx.url %q must be an http(s) URL such as http://127.0.0.1:8086", lineOf(o.URL.Line), o.URL.Value))
	}
	if o.Bucket == "" {
		errs = append(errs, errors.New("influx.bucket is required (InfluxDB 1.8: \"db/rp\", e.g. joules/autogen)"))
	}
	if o.TokenFile != "" && o.TokenEnv != "" {
		errs = append(errs, errors.New("influx: give token_file or token_env, not both"))
	}
	if o.TokenFile != "" {
		if _, err := os.Stat(o.TokenFile); err != nil {
			errs = append(errs, fmt.Errorf("influx.token_file: %w", err))
		}
	}
	if o.SpoolMaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("influx.spool_max_bytes must be at least 1 MiB, got %d", o.SpoolMaxBytes))
	}
	if o.Timeout.Duration <= 0 {
		errs = append(errs, errors.New("influx.timeout must be positive"))
	}
	if c.Downsample.Interval.Duration < 0 {
		errs = append(errs, errors.New("downsample.interval must not be negative"))
	}
	if a := c.Accounting; a.Enabled {
		if a.Window.Duration <= 0 || time.Hour%a.Window.Duration != 0 || a.Window.Duration >= time.Hour {
			errs = append(errs, fmt.Errorf("%s: accounting.window %s must divide an hour and be shorter (10s, 1m, 5m, 15m…); hour and day windows are kept anyway", lineOf(a.Window.Line), a.Window.Duration))
		}
		for _, d := range []struct {
			name string
			v    Duration
		}{{"grace", a.Grace}, {"max_lateness", a.MaxLateness}, {"max_gap", a.MaxGap}, {"forget_after", a.ForgetAfter}, {"checkpoint_interval", a.CheckpointInterval}} {
			if d.v.Duration <= 0 {
				errs = append(errs, fmt.Errorf("%s: accounting.%s must be positive", lineOf(d.v.Line), d.name))
			}
		}
		if a.MaxLateness.Duration < a.Grace.Duration {
			errs = append(errs, fmt.Errorf("%s: accounting.max_lateness %s must be at least accounting.grace %s", lineOf(a.MaxLateness.Line), a.MaxLateness.Duration, a.Grace.Duration))
		}
		if a.IdleBelow < 0 || a.IdleBelow >= 1 {
			errs = append(errs, fmt.Errorf("accounting.idle_below %v must be in [0, 1)", a.IdleBelow))
		}
		for _, b := range []struct {
			name string
			v    float64
		}{{"gpu_watts", a.Bounds.GPUWatts}, {"host_watts", a.Bounds.HostWatts}, {"cpu_watts", a.Bounds.CPUWatts}, {"meter_watts", a.Bounds.MeterWatts}} {
			if b.v < 0 {
				errs = append(errs, fmt.Errorf("accounting.bounds.%s %g must be positive (watts), or left out for the default", b.name, b.v))
			}
		}
		if hs := a.Workloads.HostShare; hs.Value != "" && hs.Value != schema.RuleGPUEnergy && hs.Value != schema.RuleRequestedCPUs {
			errs = append(errs, fmt.Errorf("%s: accounting.workloads.host_share %q: say %s (the default: in proportion to each workload's GPU energy) or %s", lineOf(hs.Line), hs.Value, schema.RuleGPUEnergy, schema.RuleRequestedCPUs))
		}
		if a.MeterCheck < 0 || a.MeterCheck >= 1 {
			errs = append(errs, fmt.Errorf("accounting.meter_check %g must be in [0, 1): the share IT meters may read below the hosts they feed (0.1: 10 %%)", a.MeterCheck))
		}
		for i, m := range a.Meters {
			switch {
			case m.BMC == "" && m.Device == "":
				errs = append(errs, fmt.Errorf("accounting.meters[%d]: bmc or device is required: the meter's name in the agent's redfish entry (bmc), or its snmp or modbus entry (device)", i))
			case m.BMC != "" && m.Device != "":
				errs = append(errs, fmt.Errorf("accounting.meters[%d]: give bmc (a Redfish meter) or device (an SNMP or Modbus one), not both", i))
			}
			m.BMC = m.MeterName()
			if m.MaxWatts < 0 {
				errs = append(errs, fmt.Errorf("accounting.meters[%d] (%s): max_watts must be positive", i, m.BMC))
			}
			if m.Feeds.Site && (m.Feeds.Hall != "" || len(m.Feeds.Racks) > 0) {
				errs = append(errs, fmt.Errorf("accounting.meters[%d] (%s): feeds.site: true feeds the whole site; leave hall and racks out", i, m.BMC))
			}
			if f := m.Feeds.Feed; f != "" && !slices.Contains(a.PowerFeeds, f) {
				errs = append(errs, fmt.Errorf("accounting.meters[%d] (%s): feeds.feed %q is not one of accounting.power_feeds %v", i, m.BMC, f, a.PowerFeeds))
			}
		}
	}
	errs = append(errs, c.Cluster.validate(c.Accounting.Enabled)...)
	return errors.Join(errs...)
}

// Token reads the InfluxDB token.
func (o Output) Token() (string, error) { return secret(o.TokenFile, o.TokenEnv) }

// Tokens reads the writers' tokens.
func (c Aggregator) Tokens() ([]string, error) {
	f, err := os.Open(c.TokensFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var tokens []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			tokens = append(tokens, line)
		}
	}
	return tokens, sc.Err()
}

// Effective renders the configuration as YAML, defaults filled in.
func (c Aggregator) Effective() ([]byte, error) { return yaml.Marshal(c) }
