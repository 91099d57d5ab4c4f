package collector

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/joules-energy/joules/internal/testenv"
)

// fakeNodeApp has flags shaped like node_exporter's, without its globals.
func fakeNodeApp() (*kingpin.Application, map[string]*bool, *string, *[]string) {
	app := kingpin.New("test", "")
	enabled := map[string]*bool{
		"netdev":   app.Flag("collector.netdev", "").Default("true").Bool(),
		"hwmon":    app.Flag("collector.hwmon", "").Default("true").Bool(),
		"ethtool":  app.Flag("collector.ethtool", "").Default("false").Bool(),
		"textfile": app.Flag("collector.textfile", "").Default("true").Bool(),
	}
	app.Flag("collector.disable-defaults", "").Bool()
	exclude := app.Flag("collector.netdev.device-exclude", "").String()
	units := app.Flag("collector.systemd.unit-include", "").Strings()
	app.Flag("collector.netdev.netlink", "").Default("true").Bool()
	return app, enabled, exclude, units
}

// names gives collector names as if on config lines 2, 3, ….
func names(ns ...string) []NodeCollectorName {
	out := make([]NodeCollectorName, len(ns))
	for i, n := range ns {
		out[i] = NodeCollectorName{Name: n, Line: i + 2}
	}
	return out
}

func TestConfigureNodeAppliesConfig(t *testing.T) {
	app, enabled, exclude, units := fakeNodeApp()
	got, err := ConfigureNode(app, nil, names("netdev", "ethtool"), []NodeOption{
		{Name: "netdev.device-exclude", Values: []string{"^lo$"}},
		{Name: "systemd.unit-include", Values: []string{"a", "b"}},
		{Name: "netdev.netlink", Values: []string{"false"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "ethtool,netdev" {
		t.Errorf("collectors = %v, want [ethtool netdev]", got)
	}
	if !*enabled["ethtool"] {
		t.Error("default-disabled collector chosen in the config was not enabled")
	}
	if *exclude != "^lo$" {
		t.Errorf("device-exclude = %q, want ^lo$", *exclude)
	}
	if strings.Join(*units, ",") != "a,b" {
		t.Errorf("unit-include = %v, want [a b]", *units)
	}
	if v, _ := FlagValue(app, "collector.netdev.netlink"); v != "false" {
		t.Errorf("netdev.netlink = %s, want false", v)
	}
}

func TestConfigureNodeCommandLineWins(t *testing.T) {
	app, _, exclude, _ := fakeNodeApp()
	args := []string{"--collector.netdev.device-exclude=^eth0$", "--collector.textfile", "--no-collector.hwmon"}
	if _, err := app.Parse(args); err != nil {
		t.Fatal(err)
	}
	got, err := ConfigureNode(app, args, names("netdev", "hwmon"), []NodeOption{{Name: "netdev.device-exclude", Values: []string{"^lo$"}}})
	if err != nil {
		t.Fatal(err)
	}
	if *exclude != "^eth0$" {
		t.Errorf("device-exclude = %q, want the command line's ^eth0$", *exclude)
	}
	if strings.Join(got, ",") != "netdev,textfile" {
		t.Errorf("collectors = %v, want [netdev textfile]: --collector.X adds, --no-collector.X removes", got)
	}
}

func TestConfigureNodeReportsEveryProblem(t *testing.T) {
	app, _, _, _ := fakeNodeApp()
	_, err := ConfigureNode(app, nil, names("netdev", "nvidia"), []NodeOption{
		{Name: "netdev.device-exlude", Values: []string{"x"}, Line: 9},
		{Name: "netdev.netlink", Values: []string{"maybe"}, Line: 10},
		{Name: "netdev.device-exclude", Values: []string{"a", "b"}, Line: 11},
	})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		`line 3: sources.node.collectors: unknown node_exporter collector "nvidia"`, "known: ethtool, hwmon, netdev, textfile",
		`line 9: sources.node.options: unknown node_exporter option "netdev.device-exlude"`,
		`line 10: sources.node.options: option "netdev.netlink": invalid value "maybe"`,
		`line 11: sources.node.options: option "netdev.device-exclude" takes one value, got 2`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Count(msg, "\n") != 4-1 {
		t.Errorf("want 4 errors, one per line:\n%s", msg)
	}
}

// TestConfigureNodeNamesCollectorLeftOut: a real node_exporter collector
// whose flag the build lacks (left out by its build tag, as the fake app
// lacks systemd's) is named with the way to get it, not called unknown.
func TestConfigureNodeNamesCollectorLeftOut(t *testing.T) {
	app, _, _, _ := fakeNodeApp()
	_, err := ConfigureNode(app, nil, names("netdev", "systemd"), nil)
	if err == nil {
		t.Fatal("no error")
	}
	want := "line 3: sources.node.collectors: node_exporter collector \"systemd\" is left out of this build of joules-agent (build tag nosystemd); " +
		"build with `make build ALL_COLLECTORS=1` for every collector, or add it to NODE_COLLECTORS"
	if err.Error() != want {
		t.Errorf("error:\n%s\nwant:\n%s", err, want)
	}
}

func TestLeftOutFlagNamesTheCollector(t *testing.T) {
	app, _, _, _ := fakeNodeApp()
	for _, c := range []struct {
		args []string
		want string // "" for no error
	}{
		{[]string{"--collector.systemd"}, `flag --collector.systemd: node_exporter collector "systemd" is left out of this build of joules-agent (build tag nosystemd)`},
		{[]string{"--web.listen-address=:1", "--no-collector.systemd"}, `flag --no-collector.systemd: node_exporter collector "systemd" is left out`},
		{[]string{"--collector.systemd.enable-restarts-metrics"}, `flag --collector.systemd.enable-restarts-metrics: node_exporter collector "systemd"`},
		{[]string{"--collector.netdev"}, ""},         // in the build
		{[]string{"--collector.nosuchthing"}, ""},    // not node_exporter's: kingpin's own error stands
		{[]string{"-collector.systemd"}, ""},         // not a long flag
		{[]string{"--web.listen-address=:9560"}, ""}, // not a collector's
	} {
		err := LeftOutFlag(app, c.args)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%v: error %v, want %q", c.args, err, c.want)
		}
	}
}

// TestNodeCollectorListIsCurrent: the generated list of collectors and tags
// matches the node_exporter this module builds against.
func TestNodeCollectorListIsCurrent(t *testing.T) {
	out, err := exec.Command("go", "run", "../scripts/collector-tags", "-go", "collector").Output()
	if err != nil {
		t.Fatalf("go run ../scripts/collector-tags: %v", err)
	}
	got, err := os.ReadFile("node_collectors.go")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(out) {
		t.Errorf("node_collectors.go is stale: run go run ./scripts/collector-tags -go collector > collector/node_collectors.go")
	}
	// Spot checks against node_exporter's own files.
	for name, tag := range map[string]string{"systemd": "nosystemd", "cpufreq": "nocpu", "thermal_zone": "nothermalzone", "rapl": "norapl", "sysctl": ""} {
		if got, ok := nodeCollectorTags[name]; !ok || got != tag {
			t.Errorf("nodeCollectorTags[%q] = %q, %v; want %q", name, got, ok, tag)
		}
	}
}

func TestFromFamilies(t *testing.T) {
	families := []*dto.MetricFamily{
		{Name: proto.String("node_a_total"), Help: proto.String("A."), Type: dto.MetricType_COUNTER.Enum(), Metric: []*dto.Metric{
			{Label: []*dto.LabelPair{{Name: proto.String("device"), Value: proto.String("eth0")}}, Counter: &dto.Counter{Value: proto.Float64(12)}},
		}},
		{Name: proto.String("node_b"), Help: proto.String("B."), Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(-1.5)}}}},
		{Name: proto.String("node_c"), Type: dto.MetricType_UNTYPED.Enum(), Metric: []*dto.Metric{{Untyped: &dto.Untyped{Value: proto.Float64(3)}}}},
		{Name: proto.String("node_h"), Type: dto.MetricType_HISTOGRAM.Enum(), Metric: []*dto.Metric{{Histogram: &dto.Histogram{}}}},
	}
	at := time.Unix(100, 0)
	got := FromFamilies(families, at)
	if len(got) != 3 {
		t.Fatalf("got %d samples, want 3 (histogram skipped): %+v", len(got), got)
	}
	want := []Sample{
		{Name: "node_a_total", Help: "A.", Kind: Counter, Value: 12, Labels: []Label{{"device", "eth0"}}, Time: at},
		{Name: "node_b", Help: "B.", Kind: Gauge, Value: -1.5, Labels: []Label{}, Time: at},
		{Name: "node_c", Kind: Untyped, Value: 3, Labels: []Label{}, Time: at},
	}
	for i := range want {
		if g, w := sampleString(got[i]), sampleString(want[i]); g != w {
			t.Errorf("sample %d = %s, want %s", i, g, w)
		}
	}
}

func sampleString(s Sample) string {
	var b strings.Builder
	b.WriteString(s.Name + " " + s.Kind.String() + " " + strconv.FormatFloat(s.Value, 'g', -1, 64) + " " + s.Help + " " + s.Time.String())
	for _, l := range s.Labels {
		b.WriteString(" " + l.Name + "=" + l.Value)
	}
	return b.String()
}

// TestNodeSourceOnSharedFixture runs the real node_exporter collectors on the
// sysfs tree captured from node_exporter's own fixtures.
func TestNodeSourceOnSharedFixture(t *testing.T) {
	sys := filepath.Join(testenv.SharedTestdata(t), "sysfs", "node-exporter", "sys")
	app := kingpin.CommandLine // where node_exporter's flags live
	if _, err := app.Parse([]string{"--path.sysfs=" + sys}); err != nil {
		t.Fatal(err)
	}
	collectors, err := ConfigureNode(app, nil, names("infiniband", "rapl", "hwmon"), nil)
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewNodeSource(discardLogger(), sys, collectors)
	if err != nil {
		t.Fatal(err)
	}
	samples, err := src.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	// InfiniBand data counters count 4-byte words; node_exporter exports bytes.
	counters := filepath.Join(sys, "class/infiniband/mlx4_0/ports/1/counters")
	for file, metric := range map[string]string{
		"port_rcv_data":  "node_infiniband_port_data_received_bytes_total",
		"port_xmit_data": "node_infiniband_port_data_transmitted_bytes_total",
	} {
		words := float64(testenv.ReadUint(t, filepath.Join(counters, file)))
		got, ok := find(samples, metric, map[string]string{"device": "mlx4_0", "port": "1"})
		if !ok || got != 4*words {
			t.Errorf("%s{mlx4_0,1} = %v (present %v), want 4 × %v words = %v", metric, got, ok, words, 4*words)
		}
	}

	zone := filepath.Join(sys, "class/powercap/intel-rapl:0")
	energy := float64(testenv.ReadUint(t, filepath.Join(zone, "energy_uj")))
	if got, _ := find(samples, "node_rapl_package_joules_total", map[string]string{"path": zone, "index": "0"}); got != energy/1e6 {
		t.Errorf("node_rapl_package_joules_total = %v, want %v", got, energy/1e6)
	}
	maxRange := float64(testenv.ReadUint(t, filepath.Join(zone, "max_energy_range_uj")))
	if got, _ := find(samples, metricRAPLMaxRange, map[string]string{"path": zone, "index": "0"}); got != maxRange/1e6 {
		t.Errorf("%s joined on node_exporter's labels = %v, want %v", metricRAPLMaxRange, got, maxRange/1e6)
	}
	if _, ok := find(samples, "node_hwmon_temp_celsius", nil); !ok {
		t.Error("no hwmon temperature from the fixture")
	}
	for _, c := range collectors {
		if v, ok := find(samples, "node_scrape_collector_success", map[string]string{"collector": c}); !ok || v != 1 {
			t.Errorf("collector %s success = %v (present %v), want 1", c, v, ok)
		}
	}
}
