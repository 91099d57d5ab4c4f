package config

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Agent is the configuration of joules-agent. Every field has a default.
type Agent struct {
	// Labels are the topology labels put on every sample: site, hall, rack
	// and host (which defaults to the hostname), and any others the site uses.
	Labels    map[string]string `yaml:"labels"`
	Sources   Sources           `yaml:"sources"`
	Exporters Exporters         `yaml:"exporters"`
	// Workloads says how GPU processes are named: which Kubernetes pod or
	// Slurm job they belong to, with which labels (docs/ACCOUNTING.md).
	Workloads Workloads `yaml:"workloads"`
	// StateDir keeps the energy counters' continuation state, so that a
	// restarted agent continues its totals. Empty: the directory systemd
	// gives the unit ($STATE_DIRECTORY, /var/lib/joules), else memory only.
	StateDir string `yaml:"state_dir"`
}

// CounterStateDir is where the agent keeps its counters' state: StateDir,
// else <$STATE_DIRECTORY>/counters; "" keeps it in memory only.
func (c Agent) CounterStateDir() string {
	if c.StateDir != "" {
		return c.StateDir
	}
	if d, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":"); d != "" {
		return d + "/counters"
	}
	return ""
}

// Sources configures what the agent reads.
type Sources struct {
	Node    NodeSource      `yaml:"node"`
	NVML    NVMLSource      `yaml:"nvml"`
	Redfish []RedfishSource `yaml:"redfish"`
	// SNMP and Modbus are facility and PDU meters polled by this agent.
	SNMP   []SNMPSource   `yaml:"snmp"`
	Modbus []ModbusSource `yaml:"modbus"`
	Work   WorkSource     `yaml:"work"`
}

// WorkSource configures the counters of useful work: local metrics
// endpoints of inference or training servers, and a textfile directory.
type WorkSource struct {
	Interval    Duration     `yaml:"interval"`
	Timeout     Duration     `yaml:"timeout"`
	Scrape      []WorkTarget `yaml:"scrape"`
	TextfileDir string       `yaml:"textfile_dir"` // *.prom files with joules_work_total{unit=…}
}

// WorkTarget is one endpoint: a preset (vllm, sglang, tgi, triton) or
// explicit metrics, or both.
type WorkTarget struct {
	URL     String       `yaml:"url"`
	Name    string       `yaml:"name"` // the workload label; default host:port
	Preset  String       `yaml:"preset"`
	Metrics []WorkMetric `yaml:"metrics"`
	// Model names the model served where the server's counters do not
	// (TGI's): their model_name label, for work per joule per model.
	Model string `yaml:"model"`
}

// WorkMetric is a counter (or a histogram's _sum or _count) of work.
type WorkMetric struct {
	Name string `yaml:"name"`
	Unit string `yaml:"unit"` // token, flop, sample, inference, …
	Kind string `yaml:"kind"` // generation, prompt, training, …
}

// WorkPresetNames are the presets the agent knows (kept in step with
// collector.WorkPresets by a test).
var WorkPresetNames = []string{"sglang", "tgi", "triton", "vllm"}

// RedfishSource is one BMC or power-equipment meter.
type RedfishSource struct {
	Name     String `yaml:"name"`
	Endpoint String `yaml:"endpoint"`
	Username string `yaml:"username"`
	// PasswordFile holds the password (one line); PasswordEnv names an
	// environment variable that holds it. The password itself never
	// appears in the config, the logs or --config.check.
	PasswordFile          string   `yaml:"password_file"`
	PasswordEnv           string   `yaml:"password_env"`
	BasicAuth             bool     `yaml:"basic_auth"`
	CAFile                string   `yaml:"ca_file"`
	InsecureSkipVerify    bool     `yaml:"insecure_skip_verify"`
	Interval              Duration `yaml:"interval"`
	Timeout               Duration `yaml:"timeout"` // one HTTP request
	MaxConcurrentRequests int      `yaml:"max_concurrent_requests"`
	Role                  String   `yaml:"role"`
	// MaxPowerWatts is the most a meter (role other than host) can carry:
	// an energy step above it is a glitch, not counted (default 100 MW). A
	// host's bound is its PSUs' capacity.
	MaxPowerWatts float64 `yaml:"max_power_watts"`
}

// Roles a Redfish meter can have; they decide the PUE category downstream.
var Roles = []string{"host", "facility_input", "ups_output", "pdu_output", "it_input"}

// NVMLSource configures the GPU source.
type NVMLSource struct {
	Enabled  bool     `yaml:"enabled"`
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
	// Simulate runs the source on a simulated server (dgxh200, dgxh100,
	// dgxb200, dgxa100) for demos and load tests; every sample is then
	// labelled simulated="true".
	Simulate String `yaml:"simulate"`
	// SimulateSite, with Simulate, makes the simulated GPUs follow this
	// host's share of the simulated site of that seed (the Redfish and
	// inference simulators of `joules sim site` and `joules sim inference
	// --site` compute the same numbers).
	SimulateSite String `yaml:"simulate_site"`
	// Processes adds per-process GPU memory, SM share and estimated
	// energy, and each GPU's share per workload.
	Processes bool `yaml:"processes"`
	// SimulateModel, with SimulateSite, is the model the host's simulated
	// inference pod serves (its label_model), as its inference simulator
	// says.
	SimulateModel String `yaml:"simulate_model"`
}

// Workloads configures how GPU processes are named.
type Workloads struct {
	// Labels are user-chosen tags of workloads: the tag's name (written as
	// label_<name>) and the pod label it comes from; a Slurm job's comment
	// key=value is that key's or the name's.
	Labels     map[string]String   `yaml:"labels"`
	Kubernetes KubernetesWorkloads `yaml:"kubernetes"`
	Slurm      SlurmWorkloads      `yaml:"slurm"`
	// Refresh is how often pods and jobs are looked up again (10s).
	Refresh Duration `yaml:"refresh"`
}

// KubernetesWorkloads: where the agent learns about pods.
type KubernetesWorkloads struct {
	// PodResourcesSocket is the kubelet's pod-resources socket: which pod
	// holds which GPU (e.g. /var/lib/kubelet/pod-resources/kubelet.sock).
	PodResourcesSocket String `yaml:"pod_resources_socket"`
	// APIServer reads pods' namespace, owner and labels: in-cluster, or a
	// URL.
	APIServer String `yaml:"api_server"`
	TokenFile String `yaml:"token_file"`
	CAFile    String `yaml:"ca_file"`
	NodeName  String `yaml:"node_name"` // default $NODE_NAME
}

// SlurmWorkloads: where the agent learns about Slurm jobs.
type SlurmWorkloads struct {
	// Scontrol is the scontrol command; empty: jobs are named by id only.
	Scontrol String `yaml:"scontrol"`
}

// NodeSource configures the embedded node_exporter collectors.
type NodeSource struct {
	Enabled    bool     `yaml:"enabled"`
	Interval   Duration `yaml:"interval"`
	Timeout    Duration `yaml:"timeout"`
	Collectors []String `yaml:"collectors"`
	// Options are node_exporter's --collector.* flags without the
	// "collector." prefix, e.g. netdev.device-exclude.
	Options map[string]Strings `yaml:"options"`
}

// Exporters configures where samples go.
type Exporters struct {
	Prometheus PrometheusExporter `yaml:"prometheus"`
	// Stream sends every sample to the aggregator; Influx writes straight
	// to InfluxDB. Both through their own disk spool; both off by default.
	Stream Writer `yaml:"stream"`
	Influx Writer `yaml:"influx"`
}

// Writer is a durable writer to an InfluxDB v2 write API (the aggregator's
// or InfluxDB's).
type Writer struct {
	URL                String   `yaml:"url"` // base URL; empty turns the writer off
	Org                string   `yaml:"org"`
	Bucket             string   `yaml:"bucket"`
	TokenFile          string   `yaml:"token_file"`
	TokenEnv           string   `yaml:"token_env"`
	CAFile             string   `yaml:"ca_file"`
	CertFile           string   `yaml:"cert_file"`
	KeyFile            string   `yaml:"key_file"`
	InsecureSkipVerify bool     `yaml:"insecure_skip_verify"`
	SpoolDir           string   `yaml:"spool_dir"`
	SpoolMaxBytes      int64    `yaml:"spool_max_bytes"`
	BatchLines         int      `yaml:"batch_lines"`
	FlushInterval      Duration `yaml:"flush_interval"`
	Timeout            Duration `yaml:"timeout"`
}

// Token reads the writer's token from its file or environment variable.
func (w Writer) Token() (string, error) {
	return secret(w.TokenFile, w.TokenEnv)
}

// secret reads a secret from a file (first line) or an environment variable.
func secret(file, env string) (string, error) {
	switch {
	case file != "":
		raw, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		return strings.TrimRight(string(raw), "\r\n"), nil
	case env != "":
		return os.Getenv(env), nil
	}
	return "", nil
}

func (w *Writer) defaults(spoolDir string) {
	if w.SpoolDir == "" {
		w.SpoolDir = spoolDir
	}
	if w.SpoolMaxBytes == 0 {
		w.SpoolMaxBytes = 1 << 30
	}
	if w.BatchLines == 0 {
		w.BatchLines = 5000
	}
	if w.FlushInterval.Duration == 0 {
		w.FlushInterval.Duration = time.Second
	}
	if w.Timeout.Duration == 0 {
		w.Timeout.Duration = 10 * time.Second
	}
}

func (w Writer) validate(section string, tokenRequired bool) error {
	if w.URL.Value == "" {
		return nil
	}
	var errs []error
	at := lineOf(w.URL.Line)
	if u, err := url.Parse(w.URL.Value); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, fmt.Errorf("%s: %s.url %q must be an http(s) URL such as https://aggregator:9561", at, section, w.URL.Value))
	}
	if w.TokenFile != "" && w.TokenEnv != "" {
		errs = append(errs, fmt.Errorf("%s: %s: give token_file or token_env, not both", at, section))
	}
	if tokenRequired && w.TokenFile == "" && w.TokenEnv == "" {
		errs = append(errs, fmt.Errorf("%s: %s: token_file or token_env is required (the aggregator refuses anonymous writes)", at, section))
	}
	if w.TokenFile != "" {
		if _, err := os.Stat(w.TokenFile); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s.token_file: %w", at, section, err))
		}
	}
	if w.TokenEnv != "" && os.Getenv(w.TokenEnv) == "" {
		errs = append(errs, fmt.Errorf("%s: %s: environment variable %s (token_env) is empty or unset", at, section, w.TokenEnv))
	}
	if (w.CertFile == "") != (w.KeyFile == "") {
		errs = append(errs, fmt.Errorf("%s: %s: cert_file and key_file go together", at, section))
	}
	if w.SpoolMaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("%s: %s.spool_max_bytes must be at least 1 MiB, got %d", at, section, w.SpoolMaxBytes))
	}
	return errors.Join(errs...)
}

// PrometheusExporter configures the /metrics endpoint.
type PrometheusExporter struct {
	Enabled bool `yaml:"enabled"`
}

var agentSections = map[string]string{
	"Agent":               "the top level",
	"Sources":             "sources",
	"NodeSource":          "sources.node",
	"NVMLSource":          "sources.nvml",
	"RedfishSource":       "a sources.redfish entry",
	"SNMPSource":          "a sources.snmp entry",
	"SNMPv3":              "a sources.snmp v3 block",
	"ModbusSource":        "a sources.modbus entry",
	"WorkSource":          "sources.work",
	"WorkTarget":          "a sources.work.scrape entry",
	"WorkMetric":          "a sources.work.scrape metrics entry",
	"Exporters":           "exporters",
	"PrometheusExporter":  "exporters.prometheus",
	"Writer":              "exporters.stream or exporters.influx",
	"Workloads":           "workloads",
	"KubernetesWorkloads": "workloads.kubernetes",
	"SlurmWorkloads":      "workloads.slurm",
}

// DefaultNodeCollectors are the node_exporter collectors run when the config names none.
var DefaultNodeCollectors = []string{"netdev", "infiniband", "hwmon", "rapl"}

// DefaultAgent returns the configuration used when there is no file.
func DefaultAgent() Agent {
	var collectors []String
	for _, c := range DefaultNodeCollectors {
		collectors = append(collectors, String{Value: c})
	}
	cfg := Agent{
		Labels: map[string]string{},
		Sources: Sources{Node: NodeSource{
			Enabled:    true,
			Interval:   Duration{Duration: time.Second},
			Collectors: collectors,
			Options:    map[string]Strings{},
		}},
		Exporters: Exporters{Prometheus: PrometheusExporter{Enabled: true}},
	}
	cfg.Sources.NVML = NVMLSource{Enabled: true, Interval: Duration{Duration: time.Second}, Processes: true}
	cfg.Workloads.Refresh = Duration{Duration: 10 * time.Second}
	return cfg
}

// LoadAgent reads the agent configuration from path; an empty path gives the
// defaults. hostname fills the host label when the file does not set one.
// The error names the file and lists every problem with its line.
func LoadAgent(path, hostname string) (Agent, error) {
	cfg := DefaultAgent()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		// yaml.v3 replaces a list already present (the default collectors) rather than appending to it.
		if err := decodeStrict(bytes.NewReader(raw), &cfg, agentSections); err != nil {
			return cfg, fmt.Errorf("%s: %w", path, err)
		}
	}
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	for _, d := range []struct{ timeout, interval *Duration }{
		{&cfg.Sources.Node.Timeout, &cfg.Sources.Node.Interval},
		{&cfg.Sources.NVML.Timeout, &cfg.Sources.NVML.Interval},
	} {
		if d.timeout.Duration == 0 {
			d.timeout.Duration = d.interval.Duration
		}
	}
	for i := range cfg.Sources.Redfish {
		r := &cfg.Sources.Redfish[i]
		if r.Interval.Duration == 0 {
			r.Interval.Duration = 10 * time.Second
		}
		if r.Timeout.Duration == 0 {
			r.Timeout.Duration = min(5*time.Second, r.Interval.Duration/2)
		}
		if r.MaxConcurrentRequests == 0 {
			r.MaxConcurrentRequests = 4
		}
		if r.Role.Value == "" {
			r.Role.Value = "host"
		}
	}
	for i := range cfg.Sources.SNMP {
		cfg.Sources.SNMP[i].defaults()
	}
	for i := range cfg.Sources.Modbus {
		cfg.Sources.Modbus[i].defaults()
	}
	if w := &cfg.Sources.Work; w.Interval.Duration == 0 {
		w.Interval.Duration = time.Second
	}
	if w := &cfg.Sources.Work; w.Timeout.Duration == 0 {
		w.Timeout.Duration = w.Interval.Duration
	}
	cfg.Exporters.Stream.defaults("/var/lib/joules/spool/stream")
	cfg.Exporters.Influx.defaults("/var/lib/joules/spool/influx")
	if cfg.Labels["host"] == "" {
		cfg.Labels["host"] = hostname
	}
	if err := cfg.Validate(); err != nil {
		if path != "" {
			return cfg, fmt.Errorf("%s: %w", path, err)
		}
		return cfg, err
	}
	return cfg, nil
}

// Validate reports every problem of the configuration at once.
func (c Agent) Validate() error {
	var errs []error
	names := make([]string, 0, len(c.Labels))
	for name := range c.Labels {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !ValidLabelName(name) {
			errs = append(errs, fmt.Errorf("labels: %q is not a valid label name: use letters, digits and underscores, not starting with a digit or __", name))
		}
	}
	n := c.Sources.Node
	if n.Enabled {
		errs = append(errs, positive("sources.node.interval", n.Interval))
		errs = append(errs, timeoutWithin("sources.node", n.Timeout, n.Interval))
		seen := map[string]bool{}
		for _, col := range n.Collectors {
			if seen[col.Value] {
				errs = append(errs, fmt.Errorf("line %d: sources.node.collectors: %q is listed twice", col.Line, col.Value))
			}
			seen[col.Value] = true
		}
	}
	if g := c.Sources.NVML; g.Enabled {
		if g.Interval.Duration < 100*time.Millisecond {
			errs = append(errs, fmt.Errorf("%s: sources.nvml.interval must be at least 100ms, got %s", lineOf(g.Interval.Line), g.Interval.Duration))
		}
		errs = append(errs, timeoutWithin("sources.nvml", g.Timeout, g.Interval))
		if g.SimulateModel.Value != "" && g.SimulateSite.Value == "" {
			errs = append(errs, fmt.Errorf("%s: sources.nvml.simulate_model needs sources.nvml.simulate_site", lineOf(g.SimulateModel.Line)))
		}
		if g.SimulateSite.Value != "" && g.Simulate.Value == "" {
			errs = append(errs, fmt.Errorf("%s: sources.nvml.simulate_site needs sources.nvml.simulate (the simulated server)", lineOf(g.SimulateSite.Line)))
		}
	}
	errs = append(errs, c.Workloads.validate()...)
	bmcs := map[string]bool{}
	for _, r := range c.Sources.Redfish {
		errs = append(errs, r.validate(bmcs))
	}
	for _, s := range c.Sources.SNMP {
		errs = append(errs, s.validate(bmcs))
	}
	for _, m := range c.Sources.Modbus {
		errs = append(errs, m.validate(bmcs))
	}
	errs = append(errs, c.Exporters.Stream.validate("exporters.stream", true), c.Exporters.Influx.validate("exporters.influx", false))
	w := c.Sources.Work
	if len(w.Scrape) > 0 || w.TextfileDir != "" {
		errs = append(errs, positive("sources.work.interval", w.Interval), timeoutWithin("sources.work", w.Timeout, w.Interval))
	}
	for _, t := range w.Scrape {
		at := lineOf(t.URL.Line)
		if u, err := url.Parse(t.URL.Value); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s: sources.work.scrape: url %q must be an http(s) URL such as http://127.0.0.1:8000/metrics", at, t.URL.Value))
		}
		if t.Preset.Value != "" && !slices.Contains(WorkPresetNames, t.Preset.Value) {
			errs = append(errs, fmt.Errorf("%s: sources.work.scrape: preset %q is not one of %s", lineOf(t.Preset.Line), t.Preset.Value, strings.Join(WorkPresetNames, ", ")))
		}
		if t.Preset.Value == "" && len(t.Metrics) == 0 {
			errs = append(errs, fmt.Errorf("%s: sources.work.scrape %q: give a preset or metrics", at, t.URL.Value))
		}
		for _, m := range t.Metrics {
			if m.Name == "" || m.Unit == "" {
				errs = append(errs, fmt.Errorf("%s: sources.work.scrape %q: each metric needs a name and a unit", at, t.URL.Value))
			}
		}
	}
	if s, i := c.Exporters.Stream, c.Exporters.Influx; s.URL.Value != "" && i.URL.Value != "" && s.SpoolDir == i.SpoolDir {
		errs = append(errs, fmt.Errorf("exporters.stream and exporters.influx share the spool_dir %s: give each its own", s.SpoolDir))
	}
	return errors.Join(errs...)
}

func (r RedfishSource) validate(names map[string]bool) error {
	var errs []error
	at := lineOf(r.Name.Line)
	switch {
	case r.Name.Value == "":
		errs = append(errs, fmt.Errorf("%s: sources.redfish: an entry has no name", lineOf(r.Endpoint.Line)))
	case names[r.Name.Value]:
		errs = append(errs, fmt.Errorf("%s: sources.redfish: name %q is used twice", at, r.Name.Value))
	}
	names[r.Name.Value] = true
	if u, err := url.Parse(r.Endpoint.Value); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, fmt.Errorf("%s: sources.redfish %q: endpoint %q must be an http(s) URL such as https://10.0.0.5", lineOf(r.Endpoint.Line), r.Name.Value, r.Endpoint.Value))
	}
	if r.MaxPowerWatts < 0 {
		errs = append(errs, fmt.Errorf("sources.redfish %q: max_power_watts %g must be positive (watts), or left out for the default", r.Name.Value, r.MaxPowerWatts))
	}
	if !slices.Contains(Roles, r.Role.Value) {
		errs = append(errs, fmt.Errorf("%s: sources.redfish %q: role %q is not one of %s", lineOf(r.Role.Line), r.Name.Value, r.Role.Value, strings.Join(Roles, ", ")))
	}
	if r.PasswordFile != "" && r.PasswordEnv != "" {
		errs = append(errs, fmt.Errorf("%s: sources.redfish %q: give password_file or password_env, not both", at, r.Name.Value))
	}
	if r.Username != "" && r.PasswordFile == "" && r.PasswordEnv == "" {
		errs = append(errs, fmt.Errorf("%s: sources.redfish %q: username without password_file or password_env (passwords are never written in the config)", at, r.Name.Value))
	}
	if r.PasswordFile != "" {
		if _, err := os.Stat(r.PasswordFile); err != nil {
			errs = append(errs, fmt.Errorf("%s: sources.redfish %q: password_file: %w", at, r.Name.Value, err))
		}
	}
	if r.PasswordEnv != "" && os.Getenv(r.PasswordEnv) == "" {
		errs = append(errs, fmt.Errorf("%s: sources.redfish %q: environment variable %s (password_env) is empty or unset", at, r.Name.Value, r.PasswordEnv))
	}
	if r.CAFile != "" {
		if _, err := os.Stat(r.CAFile); err != nil {
			errs = append(errs, fmt.Errorf("%s: sources.redfish %q: ca_file: %w", at, r.Name.Value, err))
		}
	}
	if r.Interval.Duration < time.Second {
		errs = append(errs, fmt.Errorf("%s: sources.redfish %q: interval must be at least 1s, got %s", lineOf(r.Interval.Line), r.Name.Value, r.Interval.Duration))
	}
	if r.Timeout.Duration <= 0 || r.Timeout.Duration >= r.Interval.Duration {
		errs = append(errs, fmt.Errorf("%s: sources.redfish %q: timeout (%s, one request) must be positive and below the interval (%s)",
			lineOf(r.Timeout.Line), r.Name.Value, r.Timeout.Duration, r.Interval.Duration))
	}
	return errors.Join(errs...)
}

// Password returns the BMC password from its file or environment variable.
func (r RedfishSource) Password() (string, error) {
	pw, err := secret(r.PasswordFile, r.PasswordEnv)
	if err != nil {
		return "", fmt.Errorf("sources.redfish %q: password_file: %w", r.Name.Value, err)
	}
	return pw, nil
}

func lineOf(line int) string {
	if line > 0 {
		return fmt.Sprintf("line %d", line)
	}
	return "default"
}

func timeoutWithin(section string, timeout, interval Duration) error {
	if timeout.Duration < 0 {
		return fmt.Errorf("%s: %s.timeout must not be negative, got %s", lineOf(timeout.Line), section, timeout.Duration)
	}
	if timeout.Duration > interval.Duration && interval.Duration > 0 {
		return fmt.Errorf("%s: %s.timeout (%s) must not exceed %s.interval (%s)", lineOf(timeout.Line), section, timeout.Duration, section, interval.Duration)
	}
	return nil
}

func positive(what string, d Duration) error {
	if d.Duration > 0 {
		return nil
	}
	if d.Line > 0 {
		return fmt.Errorf("line %d: %s must be positive, got %s", d.Line, what, d.Duration)
	}
	return fmt.Errorf("%s must be positive, got %s", what, d.Duration)
}

// Effective renders the configuration as YAML, defaults filled in.
func (c Agent) Effective() ([]byte, error) {
	return yaml.Marshal(c)
}

// labelName is what a workload label's name may be: it becomes the tag
// label_<name>.
var workloadLabelName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

func (w Workloads) validate() []error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(w.Labels)) {
		key := w.Labels[name]
		if !workloadLabelName.MatchString(name) {
			errs = append(errs, fmt.Errorf("%s: workloads.labels: %q is no tag name: lower case letters, digits and _ (it is written as label_%s)", lineOf(key.Line), name, name))
		}
		if key.Value == "" {
			errs = append(errs, fmt.Errorf("%s: workloads.labels.%s: say which pod label it comes from (e.g. %s: app.kubernetes.io/%s)", lineOf(key.Line), name, name, name))
		}
	}
	if a := w.Kubernetes.APIServer; a.Value != "" && a.Value != "in-cluster" && !strings.HasPrefix(a.Value, "https://") && !strings.HasPrefix(a.Value, "http://") {
		errs = append(errs, fmt.Errorf("%s: workloads.kubernetes.api_server %q: say in-cluster or the server's URL", lineOf(a.Line), a.Value))
	}
	if w.Refresh.Duration < time.Second {
		errs = append(errs, fmt.Errorf("%s: workloads.refresh %s: at least 1s (pods and jobs are looked up that often)", lineOf(w.Refresh.Line), w.Refresh.Duration))
	}
	return errs
}
