package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	nodecollector "github.com/prometheus/node_exporter/collector"
)

// NodeOption is one node_exporter option from the config: the name of a
// --collector.* flag without its "collector." prefix, and its values.
type NodeOption struct {
	Name   string
	Values []string
	Line   int // line in the config file, for error messages; 0 if unknown
}

// NodeCollectorName is a node_exporter collector chosen in the config.
type NodeCollectorName struct {
	Name string
	Line int // line in the config file, for error messages; 0 if unknown
}

// ConfigureNode applies the config's choice of node_exporter collectors and
// their options to node_exporter's kingpin flags, which live on app. Flags
// given on the command line (args) win over the config: --collector.X adds X
// to the chosen collectors, --no-collector.X removes it, and an option flag
// keeps its command-line value. It returns the chosen collectors, sorted, or
// every problem found, each naming what to fix.
//
// LeftOutFlag names a command-line flag of a node_exporter collector that
// this build left out (--collector.systemd, --no-collector.systemd,
// --collector.systemd.unit-include=…), with the build option that brings
// it in; nil when args have none. Without it the user would get kingpin's
// "unknown long flag".
func LeftOutFlag(app *kingpin.Application, args []string) error {
	have := map[string]bool{}
	for _, f := range app.Model().Flags {
		have[f.Name] = true
	}
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		name = strings.TrimPrefix(name, "no-")
		rest, ok := strings.CutPrefix(name, "collector.")
		if !ok || have[name] || !strings.HasPrefix(a, "--") {
			continue
		}
		c, _, _ := strings.Cut(rest, ".")
		if tag, ok := nodeCollectorTags[c]; ok && !have["collector."+c] {
			return fmt.Errorf("flag %s: node_exporter collector %q is left out of this build of joules-agent (build tag %s); "+
				"build with `make build ALL_COLLECTORS=1` for every collector, or add it to NODE_COLLECTORS", a, c, tag)
		}
	}
	return nil
}

// node_exporter reads its flags when a collector is first created and keeps
// that instance for the life of the process, so call this once, before
// NewNodeSource.
func ConfigureNode(app *kingpin.Application, args []string, collectors []NodeCollectorName, options []NodeOption) ([]string, error) {
	flags := map[string]*kingpin.FlagModel{}
	for _, f := range app.Model().Flags {
		flags[f.Name] = f
	}
	explicit, err := commandLineFlags(app, args)
	if err != nil {
		return nil, err
	}

	var errs []error
	chosen := map[string]bool{}
	for _, c := range collectors {
		if !isCollectorFlag(flags["collector."+c.Name]) {
			if tag, ok := nodeCollectorTags[c.Name]; ok {
				errs = append(errs, fmt.Errorf("%s: node_exporter collector %q is left out of this build of joules-agent (build tag %s); "+
					"build with `make build ALL_COLLECTORS=1` for every collector, or add it to NODE_COLLECTORS", atLine(c.Line, "sources.node.collectors"), c.Name, tag))
				continue
			}
			errs = append(errs, fmt.Errorf("%s: unknown node_exporter collector %q (known: %s)",
				atLine(c.Line, "sources.node.collectors"), c.Name, strings.Join(knownCollectors(flags), ", ")))
			continue
		}
		chosen[c.Name] = true
	}
	for name, value := range explicit {
		c, ok := strings.CutPrefix(name, "collector.")
		if !ok || !isCollectorFlag(flags[name]) {
			continue
		}
		chosen[c] = value == "true"
	}
	for _, opt := range options {
		flagName := "collector." + opt.Name
		f, ok := flags[flagName]
		where := atLine(opt.Line, "sources.node.options")
		if !ok || isCollectorFlag(f) {
			errs = append(errs, fmt.Errorf("%s: unknown node_exporter option %q; options are node_exporter's --collector.* flags without the \"collector.\" prefix (see joules-agent --help)", where, opt.Name))
			continue
		}
		if _, ok := explicit[flagName]; ok {
			continue // the command line wins
		}
		if len(opt.Values) > 1 && !isCumulative(f) {
			errs = append(errs, fmt.Errorf("%s: option %q takes one value, got %d", where, opt.Name, len(opt.Values)))
			continue
		}
		for _, v := range opt.Values {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: option %q: invalid value %q: %w", where, opt.Name, v, err))
			}
		}
	}
	var names []string
	for name, on := range chosen {
		if !on {
			continue
		}
		if err := flags["collector."+name].Value.Set("true"); err != nil {
			errs = append(errs, fmt.Errorf("enable node_exporter collector %q: %w", name, err))
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names, errors.Join(errs...)
}

func atLine(line int, key string) string {
	if line > 0 {
		return fmt.Sprintf("line %d: %s", line, key)
	}
	return key
}

// isCumulative tells flags that take a value per repetition (kingpin's Strings).
func isCumulative(f *kingpin.FlagModel) bool {
	c, ok := f.Value.(interface{ IsCumulative() bool })
	return ok && c.IsCumulative()
}

// FlagValue returns the current value of one of app's flags, e.g. node_exporter's path.sysfs.
func FlagValue(app *kingpin.Application, name string) (string, bool) {
	for _, f := range app.Model().Flags {
		if f.Name == name {
			return f.Value.String(), true
		}
	}
	return "", false
}

func commandLineFlags(app *kingpin.Application, args []string) (map[string]string, error) {
	pc, err := app.ParseContext(args)
	if err != nil {
		return nil, fmt.Errorf("parse command line: %w", err)
	}
	explicit := map[string]string{}
	for _, el := range pc.Elements {
		fc, ok := el.Clause.(*kingpin.FlagClause)
		if !ok {
			continue
		}
		value := "true"
		if el.Value != nil {
			value = *el.Value
		}
		explicit[fc.Model().Name] = value
	}
	return explicit, nil
}

// isCollectorFlag tells node_exporter's --collector.<name> switches from its
// --collector.<name>.<option> flags.
func isCollectorFlag(f *kingpin.FlagModel) bool {
	if f == nil || !f.IsBoolFlag() {
		return false
	}
	rest := strings.TrimPrefix(f.Name, "collector.")
	return rest != f.Name && !strings.Contains(rest, ".") && rest != "disable-defaults"
}

func knownCollectors(flags map[string]*kingpin.FlagModel) []string {
	var names []string
	for name, f := range flags {
		if isCollectorFlag(f) {
			names = append(names, strings.TrimPrefix(name, "collector."))
		}
	}
	sort.Strings(names)
	return names
}

// NodeSource runs embedded node_exporter collectors and turns their metrics
// into samples under node_exporter's own names, so dashboards and alerts
// written for node_exporter keep working.
type NodeSource struct {
	registry *prometheus.Registry
	rapl     *RAPL // nil unless the rapl collector is chosen
	now      func() time.Time
	bootID   string
}

// SetBootID labels the RAPL energy counters with the host's boot (their
// epoch): RAPL counters restart with a reboot, and the label lets a reader
// tell a restart from a wrap.
func (s *NodeSource) SetBootID(id string) { s.bootID = id }

// NewNodeSource creates the chosen node_exporter collectors (configured by
// ConfigureNode) and, when rapl is among them, the agent's RAPL additions
// reading sysfs at sysfsPath.
func NewNodeSource(logger *slog.Logger, sysfsPath string, collectors []string) (*NodeSource, error) {
	if len(collectors) == 0 {
		return nil, errors.New("no node_exporter collector chosen")
	}
	nc, err := nodecollector.NewNodeCollector(logger, collectors...)
	if err != nil {
		return nil, fmt.Errorf("create node_exporter collectors %v: %w", collectors, err)
	}
	registry := prometheus.NewRegistry()
	if err := registry.Register(nc); err != nil {
		return nil, fmt.Errorf("register node_exporter collectors: %w", err)
	}
	s := &NodeSource{registry: registry, now: time.Now}
	if slices.Contains(collectors, "rapl") {
		s.rapl = NewRAPL(logger, sysfsPath)
	}
	return s, nil
}

// Collect gathers every chosen collector once. node_exporter's collectors do
// not take a context; the runner's timeout bounds a slow one.
func (s *NodeSource) Collect(ctx context.Context) ([]Sample, error) {
	families, err := s.registry.Gather()
	if err != nil && len(families) == 0 {
		return nil, fmt.Errorf("gather node_exporter metrics: %w", err)
	}
	now := s.now()
	samples := FromFamilies(families, now)
	if s.bootID != "" {
		for i := range samples {
			if strings.HasPrefix(samples[i].Name, "node_rapl_") && strings.HasSuffix(samples[i].Name, "_joules_total") {
				samples[i].Labels = append(samples[i].Labels, Label{Name: "epoch", Value: s.bootID})
				SortLabels(samples[i].Labels)
			}
		}
	}
	if s.rapl != nil {
		samples = append(samples, s.rapl.Read(now)...)
	}
	// A gather error with families means some metrics were inconsistent; the
	// rest are still good and node_scrape_collector_success says which failed.
	return samples, nil
}

// FromFamilies converts gathered counter, gauge and untyped families into
// samples stamped t. Histograms and summaries are skipped: none of the
// host collectors the agent embeds produce them.
func FromFamilies(families []*dto.MetricFamily, t time.Time) []Sample {
	n := 0
	for _, mf := range families {
		n += len(mf.GetMetric())
	}
	samples := make([]Sample, 0, n)
	for _, mf := range families {
		var kind Kind
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			kind = Counter
		case dto.MetricType_GAUGE:
			kind = Gauge
		case dto.MetricType_UNTYPED:
			kind = Untyped
		default:
			continue
		}
		for _, m := range mf.GetMetric() {
			var value float64
			switch kind {
			case Counter:
				value = m.GetCounter().GetValue()
			case Gauge:
				value = m.GetGauge().GetValue()
			default:
				value = m.GetUntyped().GetValue()
			}
			labels := make([]Label, len(m.GetLabel()))
			for i, lp := range m.GetLabel() {
				labels[i] = Label{Name: lp.GetName(), Value: lp.GetValue()}
			}
			samples = append(samples, Sample{Name: mf.GetName(), Help: mf.GetHelp(), Kind: kind, Value: value, Labels: labels, Time: t})
		}
	}
	return samples
}
