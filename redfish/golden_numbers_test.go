package redfish

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The golden files of TestSharedMockupsGolden freeze what the source
// publishes for each shared mockup served by the simulator. This file
// checks that every power and energy number in them (every sample whose
// name ends in _watts or _joules_total) is what the mockup's own JSON and
// the simulator's documented load model give, computed here without the
// reader: the documents are read from the mockup folder, the field each
// sample comes from is found by the sample's labels and the reading order
// of docs/ARCHITECTURE.md, and the simulator's transformation at
// pollFixed's clock is applied by hand.
//
// The simulator (redfishsim, not bound to a meter) serves, at s seconds
// after it started:
//   - a power reading p as round(p × L(s), 0.01 W), with the load factor
//     L(s) = 0.75 + 0.25·sin(2π·s/120 + φ), φ = 2π·(FNV-1a-64(name) mod
//     1000)/1000 and name the BMC's (pollFixed names it after the mockup);
//   - an EnergykWh reading e as e + N·∫₀ˢL/3.6e6 (not rounded), an
//     EnergyJoules reading as round(e + N·∫₀ˢL, 0.01 J), where N is the
//     PowerWatts.Reading of the same document as the mockup has it, else
//     500 W;
//   - capacities (PowerCapacityWatts) as written.
//
// pollFixed polls at s = 0 (discovery, the first counter reading) and
// s = 10; the golden holds the second poll. An energy counter there is the
// first reading continued by the step between the two; integrated energy
// is the trapezoid of the two power readings over the 10 s.

// goldenFirstPoll and goldenSecondPoll are pollFixed's two polls, in seconds
// after the simulator started.
const goldenFirstPoll, goldenSecondPoll = 0.0, 10.0

// defaultNominalWatts is the simulator's Options.NominalWatts default,
// which pollFixed leaves alone.
const defaultNominalWatts = 500.0

func TestGoldenNumbersFromMockups(t *testing.T) {
	for _, m := range sharedMockups {
		t.Run(m, func(t *testing.T) {
			want, text := goldenAndExplanation(t, m)
			for _, p := range checkGoldenNumbers(text, want) {
				t.Error(p)
			}
			t.Logf("%d power and energy numbers explained", len(want))
		})
	}
}

// TestGoldenNumbersCheckFails makes sure the check above can fail: a
// golden with any one power or energy number moved by the least amount
// its text can move, a series it cannot explain, or a series left out is
// reported, and nothing else is.
func TestGoldenNumbersCheckFails(t *testing.T) {
	for _, m := range sharedMockups {
		t.Run(m, func(t *testing.T) {
			want, text := goldenAndExplanation(t, m)
			if p := checkGoldenNumbers(text, want); len(p) > 0 {
				t.Fatalf("the golden does not pass to begin with: %v", p)
			}
			lines := strings.Split(string(text), "\n")
			broken := 0
			for i, line := range lines {
				s, ok := parseGoldenLine(line)
				if !ok || !powerOrEnergy(s.name) {
					continue
				}
				v, err := strconv.ParseFloat(s.value, 64)
				if err != nil {
					t.Fatalf("line %d: %v", i+1, err)
				}
				head := line[:len(line)-len(s.value)]
				for _, changed := range []string{
					strconv.FormatFloat(math.Nextafter(v, math.Inf(1)), 'g', -1, 64), // the next number up
					lastDigitChanged(s.value), // a different text, maybe the same float64
				} {
					edited := slices.Clone(lines)
					edited[i] = head + changed
					p := checkGoldenNumbers([]byte(strings.Join(edited, "\n")), want)
					if len(p) != 1 || !strings.Contains(p[0], s.key) {
						t.Errorf("%s changed from %s to %s: reported %v, want exactly that series", s.key, s.value, changed, p)
					}
				}
				left := slices.Delete(slices.Clone(lines), i, i+1)
				if p := checkGoldenNumbers([]byte(strings.Join(left, "\n")), want); len(p) != 1 || !strings.Contains(p[0], "missing") {
					t.Errorf("%s left out: reported %v, want it missing", s.key, p)
				}
				broken++
			}
			if broken == 0 {
				t.Fatal("no power or energy number in the golden")
			}
			for _, extra := range []string{
				`joules_redfish_psu_input_power_watts{bmc="` + m + `",chassis="X",psu="Bay 9",role="host"} 1`,
				// A name no source has (built here, so that the docs test does not take it for one).
				"joules_redfish_" + `spare_energy_joules_total{bmc="` + m + `",role="host"} 0`,
			} {
				p := checkGoldenNumbers(append(slices.Clone(text), []byte(extra+"\n")...), want)
				if len(p) != 1 || !strings.Contains(p[0], "not explained") {
					t.Errorf("series added (%s): reported %v, want it unexplained", extra, p)
				}
			}
		})
	}
}

// lastDigitChanged is a number's text with its last digit of the
// significand changed.
func lastDigitChanged(v string) string {
	i := strings.IndexAny(v, "eE")
	if i < 0 {
		i = len(v)
	}
	j := i - 1
	for j >= 0 && (v[j] < '0' || v[j] > '9') {
		j--
	}
	d := byte('1')
	if v[j] == '1' {
		d = '2'
	}
	return v[:j] + string(d) + v[j+1:]
}

func powerOrEnergy(name string) bool {
	return strings.HasSuffix(name, "_watts") || strings.HasSuffix(name, "_joules_total")
}

// expectedNumber is one series's value and how it was worked out.
type expectedNumber struct {
	value float64
	how   string
}

// checkGoldenNumbers compares a golden exposition's power and energy
// samples with the numbers worked out from the mockup: every sample must
// be one of them, written exactly as the exposition writes that number,
// and every number must be in the golden.
func checkGoldenNumbers(text []byte, want map[string]expectedNumber) []string {
	var problems []string
	seen := map[string]bool{}
	for i, line := range strings.Split(string(text), "\n") {
		s, ok := parseGoldenLine(line)
		if !ok {
			if line != "" && !strings.HasPrefix(line, "#") {
				problems = append(problems, fmt.Sprintf("line %d: not a sample: %q", i+1, line))
			}
			continue
		}
		if !powerOrEnergy(s.name) {
			continue
		}
		seen[s.key] = true
		w, ok := want[s.key]
		if !ok {
			problems = append(problems, fmt.Sprintf("line %d: %s %s is not explained by the mockup", i+1, s.key, s.value))
			continue
		}
		if text := strconv.FormatFloat(w.value, 'g', -1, 64); s.value != text {
			problems = append(problems, fmt.Sprintf("line %d: %s = %s, want %s: %s", i+1, s.key, s.value, text, w.how))
		}
	}
	for _, k := range sortedKeys(want) {
		if !seen[k] {
			problems = append(problems, fmt.Sprintf("%s missing from the golden (want %v: %s)", k, want[k].value, want[k].how))
		}
	}
	return problems
}

type goldenSample struct {
	name, key, value string
}

// parseGoldenLine reads one sample line of the text exposition: name,
// optional {labels}, value. key is the name and the labels, sorted.
func parseGoldenLine(line string) (goldenSample, bool) {
	if line == "" || strings.HasPrefix(line, "#") {
		return goldenSample{}, false
	}
	end := strings.IndexAny(line, "{ ")
	if end <= 0 {
		return goldenSample{}, false
	}
	s := goldenSample{name: line[:end]}
	rest := line[end:]
	var ls []string
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, `="`)
			if eq <= 0 {
				return goldenSample{}, false
			}
			k := rest[:eq]
			rest = rest[eq+2:]
			var v strings.Builder
			closed := false
			for i := 0; i < len(rest); i++ {
				c := rest[i]
				if c == '\\' && i+1 < len(rest) {
					i++
					switch rest[i] {
					case 'n':
						v.WriteByte('\n')
					default:
						v.WriteByte(rest[i])
					}
					continue
				}
				if c == '"' {
					rest, closed = rest[i+1:], true
					break
				}
				v.WriteByte(c)
			}
			if !closed {
				return goldenSample{}, false
			}
			ls = append(ls, k+"="+strconv.Quote(v.String()))
			rest = strings.TrimPrefix(rest, ",")
		}
	}
	fields := strings.Fields(rest)
	if len(fields) != 1 {
		return goldenSample{}, false
	}
	s.value = fields[0]
	slices.Sort(ls)
	s.key = s.name + "{" + strings.Join(ls, ",") + "}"
	return s, true
}

// seriesKey is parseGoldenLine's key for a name and "label=value" pairs.
func seriesKey(name string, labels ...string) string {
	ls := make([]string, 0, len(labels))
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		ls = append(ls, k+"="+strconv.Quote(v))
	}
	slices.Sort(ls)
	return name + "{" + strings.Join(ls, ",") + "}"
}

// simModel is the simulator's load model for one BMC, written out from
// its documentation.
type simModel struct {
	phase float64
}

func newSimModel(bmc string) simModel {
	h := fnv.New64a()
	h.Write([]byte(bmc))
	return simModel{phase: 2 * math.Pi * float64(h.Sum64()%1000) / 1000}
}

// load is the share of each mockup power reading served s seconds after start.
func (m simModel) load(s float64) float64 {
	return 0.75 + 0.25*math.Sin(2*math.Pi*s/120+m.phase)
}

// loadSeconds is ∫₀ˢ load: 0.75·s + 0.25·(120/2π)·(cos φ − cos(2π·s/120 + φ)).
func (m simModel) loadSeconds(s float64) float64 {
	return 0.75*s + 0.25*120/(2*math.Pi)*(math.Cos(m.phase)-math.Cos(2*math.Pi*s/120+m.phase))
}

func hundredths(v float64) float64 { return math.Round(v*100) / 100 }

// TestSimModelIntegral checks the closed form of ∫load against a Simpson
// sum of load itself, so the energy numbers do not rest on an integral
// worked out wrong.
func TestSimModelIntegral(t *testing.T) {
	for _, m := range sharedMockups {
		sm := newSimModel(m)
		for _, s := range []float64{goldenSecondPoll, 37, 120, 1000} {
			const n = 20000
			h := s / n
			sum := sm.load(0) + sm.load(s)
			for i := 1; i < n; i++ {
				w := 2.0
				if i%2 == 1 {
					w = 4
				}
				sum += w * sm.load(float64(i)*h)
			}
			if simpson := sum * h / 3; math.Abs(simpson-sm.loadSeconds(s)) > 1e-9*s {
				t.Errorf("%s: ∫₀^%v load = %v by its closed form, %v by Simpson", m, s, sm.loadSeconds(s), simpson)
			}
		}
		if v := sm.loadSeconds(0); v != 0 {
			t.Errorf("%s: ∫₀⁰ load = %v", m, v)
		}
	}
}

// mockupDocs is a mockup's documents by resource path, relative to
// /redfish/v1 ("" is the service root), read from its index.json files.
type mockupDocs map[string]map[string]any

func readMockupDocs(t *testing.T, dir string) mockupDocs {
	t.Helper()
	docs := mockupDocs{}
	err := filepath.WalkDir(dir, func(file string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "index.json" {
			return err
		}
		rel, err := filepath.Rel(dir, filepath.Dir(file))
		if err != nil {
			return err
		}
		if rel == "." {
			rel = ""
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		docs[filepath.ToSlash(rel)] = doc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// relPath turns an @odata.id into a mockupDocs key.
func relPath(id string) string {
	id, _, _ = strings.Cut(id, "#")
	id = strings.TrimPrefix(id, "/redfish/v1")
	return strings.Trim(id, "/")
}

// linkAt is the resource doc[key] links to ("" when none).
func linkAt(doc map[string]any, key string) string {
	l, _ := doc[key].(map[string]any)
	id, _ := l["@odata.id"].(string)
	if id == "" {
		return ""
	}
	return relPath(id)
}

// memberIDs lists a collection's members as written (@odata.id).
func memberIDs(doc map[string]any) []string {
	var out []string
	list, _ := doc["Members"].([]any)
	for _, m := range list {
		mm, _ := m.(map[string]any)
		if id, _ := mm["@odata.id"].(string); id != "" {
			out = append(out, id)
		}
	}
	return out
}

func textAt(doc map[string]any, key string) string {
	s, _ := doc[key].(string)
	return s
}

// numberAt is the number at a slash-separated path in a document
// ("PowerControl/0/PowerConsumedWatts").
func numberAt(doc any, path string) (float64, bool) {
	v := doc
	for _, k := range strings.Split(path, "/") {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(x) {
				return 0, false
			}
			v = x[i]
		default:
			return 0, false
		}
	}
	f, ok := v.(float64)
	return f, ok
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// uniqueNames hands out label values as the source documents them: a
// repeated or empty name gets "#2", "#3"… in collection order.
type uniqueNames map[string]int

func (u uniqueNames) name(s string) string {
	if s == "" {
		s = "unnamed"
	}
	u[s]++
	if n := u[s]; n > 1 {
		return s + "#" + strconv.Itoa(n)
	}
	return s
}

// reading names one number of a mockup: a document and the field in it.
type reading struct {
	doc, field string
}

// readingKind is what the simulator does to a number and how the
// agent reports it.
type readingKind int

const (
	kindWatts    readingKind = iota // power: × load, to 0.01 W
	kindKWh                         // an EnergykWh counter, reported × 3.6e6 J
	kindJoules                      // an EnergyJoules counter
	kindStatic                      // served as written (capacities)
	kindIntegral                    // power integrated by the agent between the polls
)

// goldenExplainer works out the numbers of one mockup's golden.
type goldenExplainer struct {
	t    *testing.T
	docs mockupDocs
	sim  simModel
	base []string // bmc, role
	want map[string]expectedNumber
}

func (e *goldenExplainer) number(r reading) float64 {
	e.t.Helper()
	doc := e.docs[r.doc]
	if doc == nil {
		e.t.Fatalf("the mockup has no %s", r.doc)
	}
	v, ok := numberAt(doc, r.field)
	if !ok {
		e.t.Fatalf("%s has no number at %s", r.doc, r.field)
	}
	return v
}

// nominal is the power the simulator moves a document's energy counters
// by: the document's own PowerWatts.Reading as written, else the default.
func (e *goldenExplainer) nominal(doc string) float64 {
	if v, ok := numberAt(e.docs[doc], "PowerWatts/Reading"); ok && v > 0 {
		return v
	}
	return defaultNominalWatts
}

// served is the value the simulator serves for r at s, in the agent's
// unit (W, or J for energy).
func (e *goldenExplainer) served(r reading, kind readingKind, s float64) float64 {
	raw := e.number(r)
	switch kind {
	case kindWatts:
		return hundredths(raw * e.sim.load(s))
	case kindKWh:
		return (raw + e.nominal(r.doc)*e.sim.loadSeconds(s)/3.6e6) * 3.6e6
	case kindJoules:
		return hundredths(raw + e.nominal(r.doc)*e.sim.loadSeconds(s))
	case kindStatic:
		return raw
	}
	e.t.Fatalf("no served value of kind %d", kind)
	return 0
}

// value is what the golden's poll publishes from the readings summed.
func (e *goldenExplainer) value(kind readingKind, parts ...reading) (float64, string) {
	e.t.Helper()
	sum := func(k readingKind, s float64) float64 {
		total := 0.0
		for _, r := range parts {
			total += e.served(r, k, s)
		}
		return total
	}
	var what []string
	for _, r := range parts {
		what = append(what, fmt.Sprintf("%s %s (%v)", r.doc, r.field, e.number(r)))
	}
	from := strings.Join(what, " + ")
	l, ls := e.sim.load(goldenSecondPoll), e.sim.loadSeconds(goldenSecondPoll)
	switch kind {
	case kindWatts:
		return sum(kindWatts, goldenSecondPoll), fmt.Sprintf("%s × load %.6f, to 0.01 W", from, l)
	case kindStatic:
		return sum(kindStatic, goldenSecondPoll), from + " as written"
	case kindKWh, kindJoules:
		first, second := sum(kind, goldenFirstPoll), sum(kind, goldenSecondPoll)
		var nominals []string
		for _, r := range parts {
			nominals = append(nominals, strconv.FormatFloat(e.nominal(r.doc), 'g', -1, 64))
		}
		unit := "kWh, × 3.6e6"
		if kind == kindJoules {
			unit = "J, to 0.01 J"
		}
		return first + (second - first), fmt.Sprintf("counter: %s + (%s) W × ∫load %.6f s %s", from, strings.Join(nominals, ", "), ls, unit)
	case kindIntegral:
		p0, p1 := sum(kindWatts, goldenFirstPoll), sum(kindWatts, goldenSecondPoll)
		return (p1 + p0) / 2 * (goldenSecondPoll - goldenFirstPoll), fmt.Sprintf("integrated: (%v W + %v W)/2 × %v s of %s", p0, p1, goldenSecondPoll-goldenFirstPoll, from)
	}
	e.t.Fatalf("no value of kind %d", kind)
	return 0, ""
}

// expect records one series of the golden and its value.
func (e *goldenExplainer) expect(name string, ls []string, kind readingKind, parts ...reading) {
	e.t.Helper()
	if kind == kindKWh || kind == kindJoules || kind == kindIntegral {
		ls = append(slices.Clone(ls), "epoch=00000000") // the golden's normalised epoch
	}
	key := seriesKey(name, append(slices.Clone(e.base), ls...)...)
	if _, dup := e.want[key]; dup {
		e.t.Fatalf("%s worked out twice", key)
	}
	v, how := e.value(kind, parts...)
	e.want[key] = expectedNumber{value: v, how: how}
}

// hostNumbers is what one top-level chassis (or a chassis inside it)
// publishes as its total: which resource the reading order of
// docs/ARCHITECTURE.md ("Host power and energy are the chassis's total")
// picks, decided by hand from the mockup, and the readings it sums.
type hostNumbers struct {
	chassis      string   // resource path
	component    bool     // contained in another chassis: joules_redfish_component_power_watts only
	power        []string // source (and sensor) labels
	powerFrom    []reading
	energy       []string // method, source (and sensor) labels; nil: no energy
	energyKind   readingKind
	energyFrom   []reading
	capacityFrom []reading // summed; nil: no capacity
}

// goldenHosts are the host totals of each mockup's golden.
var goldenHosts = map[string][]hostNumbers{
	"dmtf-public-rackmount1": {rackmountHost},
	"dmtf-public-smartnic": {rackmountHost, {
		// Card1 is ContainedBy 1U: a component. Its EnvironmentMetrics
		// PowerWatts cites its own Sensors/TotalPower (Accelerator),
		// which a component may.
		chassis: "Chassis/Card1", component: true,
		power: []string{"source=environment_metrics"}, powerFrom: []reading{{"Chassis/Card1/EnvironmentMetrics", "PowerWatts/Reading"}},
	}},
	// PowerEquipment present: the chassis are the equipment's enclosures
	// and give no host numbers.
	"dmtf-public-pdu":         nil,
	"dmtf-public-power-shelf": nil,
	"gigabyte-h262-z63": {{
		chassis: "Chassis/Self",
		// No EnvironmentMetrics or PowerSubsystem; both legacy PSUs lack
		// PowerInputWatts, so their sum is incomplete; PowerControl[0]
		// PowerConsumedWatts is next.
		power: []string{"source=power_control"}, powerFrom: []reading{{"Chassis/Self/Power", "PowerControl/0/PowerConsumedWatts"}},
		// No EnvironmentMetrics, no sensor with a PhysicalContext, no PSU
		// counters: the BMC's one energy sensor, context-less, is the
		// chassis's (EnergyJoules).
		energy: []string{"method=counter", "source=sensor", "sensor=Power Energy Monitor"}, energyKind: kindJoules,
		energyFrom: []reading{{"Chassis/Self/Sensors/Energy", "Reading"}},
		// PowerControl[0].PowerCapacityWatts is 0 and the PSUs give none.
	}},
}

// rackmountHost is the 1U chassis of rackmount1, and of smartnic, whose 1U
// has the same power files.
var rackmountHost = hostNumbers{
	chassis: "Chassis/1U",
	// EnvironmentMetrics PowerWatts comes first; it cites Sensors/TotalPower
	// (Chassis), the chassis's own, and no component sensor is listed.
	power: []string{"source=environment_metrics"}, powerFrom: []reading{{"Chassis/1U/EnvironmentMetrics", "PowerWatts/Reading"}},
	// EnvironmentMetrics has no energy; the chassis-level energy sensor
	// Sensors/TotalEnergy (Chassis, EnergykWh) is next, before the PSUs'.
	energy: []string{"method=counter", "source=sensor", "sensor=TotalEnergy"}, energyKind: kindKWh,
	energyFrom: []reading{{"Chassis/1U/Sensors/TotalEnergy", "Reading"}},
	// The installed PowerSubsystem PSU (Bay2 is Absent).
	capacityFrom: []reading{{"Chassis/1U/PowerSubsystem/PowerSupplies/Bay1", "PowerCapacityWatts"}},
}

// goldenAndExplanation reads mockup m's golden exposition and works out,
// from the mockup's JSON, the power and energy numbers it must hold.
func goldenAndExplanation(t *testing.T, m string) (map[string]expectedNumber, []byte) {
	t.Helper()
	want := explainGolden(t, m, mockupDir(t, m))
	text, err := os.ReadFile(filepath.Join("testdata", m+".prom"))
	if err != nil {
		t.Fatal(err)
	}
	return want, text
}

// explainGolden works out every power and energy series the golden of
// mockup name should hold, from the mockup's files.
func explainGolden(t *testing.T, name, dir string) map[string]expectedNumber {
	t.Helper()
	hosts, ok := goldenHosts[name]
	if !ok {
		t.Fatalf("no host totals worked out for %s", name)
	}
	e := &goldenExplainer{t: t, docs: readMockupDocs(t, dir), sim: newSimModel(name), base: []string{"bmc=" + name, "role=host"}, want: map[string]expectedNumber{}}
	root := e.docs[""]
	if root == nil {
		t.Fatalf("%s: no service root", dir)
	}
	for _, id := range memberIDs(e.docs[linkAt(root, "Chassis")]) {
		e.chassis(relPath(id), id)
	}
	for _, h := range hosts {
		e.host(h)
	}
	if pe := linkAt(root, "PowerEquipment"); pe != "" {
		e.equipment(pe)
	}
	return e.want
}

// chassis works out a chassis's PSU, PowerControl and power Sensor series.
func (e *goldenExplainer) chassis(path, id string) {
	doc := e.docs[path]
	cl := "chassis=" + firstOf(textAt(doc, "Id"), textAt(doc, "Name"), id)

	// PowerSubsystem PSUs, at <chassis>/PowerSubsystem where the link
	// leads to no PSUs; an Absent bay is none.
	if ps := linkAt(doc, "PowerSubsystem"); ps != "" {
		psus := linkAt(e.docs[ps], "PowerSupplies")
		if psus == "" && ps != path+"/PowerSubsystem" {
			psus = linkAt(e.docs[path+"/PowerSubsystem"], "PowerSupplies")
		}
		names := uniqueNames{}
		for _, m := range memberIDs(e.docs[psus]) {
			psu := e.docs[relPath(m)]
			pl := "psu=" + names.name(firstOf(textAt(psu, "Name"), textAt(psu, "Id"), m))
			status, _ := psu["Status"].(map[string]any)
			metrics := linkAt(psu, "Metrics")
			if textAt(status, "State") == "Absent" || e.docs[metrics] == nil {
				continue
			}
			md := e.docs[metrics]
			if _, ok := numberAt(md, "InputPowerWatts/Reading"); ok {
				e.expect("joules_redfish_psu_input_power_watts", []string{cl, pl}, kindWatts, reading{metrics, "InputPowerWatts/Reading"})
			}
			if _, ok := numberAt(md, "OutputPowerWatts/Reading"); ok {
				e.expect("joules_redfish_psu_output_power_watts", []string{cl, pl}, kindWatts, reading{metrics, "OutputPowerWatts/Reading"})
			}
			if _, ok := numberAt(md, "EnergykWh/Reading"); ok {
				e.expect("joules_redfish_psu_energy_joules_total", []string{cl, pl}, kindKWh, reading{metrics, "EnergykWh/Reading"})
			}
		}
	}

	// The legacy Power resource: PowerControl's consumed power and its
	// statistics, and the PSUs.
	if pw := linkAt(doc, "Power"); e.docs[pw] != nil {
		pd := e.docs[pw]
		controls, _ := pd["PowerControl"].([]any)
		names := uniqueNames{}
		for i, c := range controls {
			cm, _ := c.(map[string]any)
			ctl := "control=" + names.name(firstOf(textAt(cm, "Name"), textAt(cm, "MemberId")))
			for _, stat := range []struct{ name, field string }{
				{"consumed", "PowerConsumedWatts"}, {"average", "PowerMetrics/AverageConsumedWatts"},
				{"min", "PowerMetrics/MinConsumedWatts"}, {"max", "PowerMetrics/MaxConsumedWatts"},
			} {
				field := fmt.Sprintf("PowerControl/%d/%s", i, stat.field)
				if _, ok := numberAt(pd, field); ok {
					e.expect("joules_redfish_power_control_watts", []string{cl, ctl, "stat=" + stat.name}, kindWatts, reading{pw, field})
				}
			}
		}
		supplies, _ := pd["PowerSupplies"].([]any)
		names = uniqueNames{}
		for i, s := range supplies {
			sm, _ := s.(map[string]any)
			pl := "psu=" + names.name(firstOf(textAt(sm, "Name"), textAt(sm, "MemberId")))
			at := func(f string) string { return fmt.Sprintf("PowerSupplies/%d/%s", i, f) }
			if _, ok := numberAt(pd, at("PowerInputWatts")); ok {
				e.expect("joules_redfish_psu_input_power_watts", []string{cl, pl}, kindWatts, reading{pw, at("PowerInputWatts")})
			}
			out := at("PowerOutputWatts")
			if _, ok := numberAt(pd, out); !ok {
				out = at("LastPowerOutputWatts")
			}
			if _, ok := numberAt(pd, out); ok {
				e.expect("joules_redfish_psu_output_power_watts", []string{cl, pl}, kindWatts, reading{pw, out})
			}
		}
	}

	// Power Sensors of the chassis's Sensors collection, named by Id (then
	// Name), unique over the whole collection.
	if sc := linkAt(doc, "Sensors"); sc != "" {
		names := uniqueNames{}
		for _, m := range memberIDs(e.docs[sc]) {
			sp := relPath(m)
			sd := e.docs[sp]
			label := names.name(firstOf(textAt(sd, "Id"), textAt(sd, "Name"), m))
			if _, ok := numberAt(sd, "Reading"); ok && textAt(sd, "ReadingType") == "Power" {
				e.expect("joules_redfish_sensor_power_watts", []string{cl, "sensor=" + label, "physical_context=" + textAt(sd, "PhysicalContext")}, kindWatts, reading{sp, "Reading"})
			}
		}
	}
}

// host works out a chassis's total power, energy and capacity.
func (e *goldenExplainer) host(h hostNumbers) {
	doc := e.docs[h.chassis]
	if doc == nil {
		e.t.Fatalf("the mockup has no %s", h.chassis)
	}
	cl := "chassis=" + firstOf(textAt(doc, "Id"), textAt(doc, "Name"), "/redfish/v1/"+h.chassis)
	typed := append([]string{cl, "chassis_type=" + textAt(doc, "ChassisType")}, h.power...)
	if h.component {
		e.expect("joules_redfish_component_power_watts", typed, kindWatts, h.powerFrom...)
		return
	}
	e.expect("joules_redfish_host_power_watts", typed, kindWatts, h.powerFrom...)
	if h.energy != nil {
		e.expect("joules_redfish_host_energy_joules_total", append([]string{cl}, h.energy...), h.energyKind, h.energyFrom...)
	}
	if h.capacityFrom != nil {
		e.expect("joules_redfish_host_power_capacity_watts", []string{cl}, kindStatic, h.capacityFrom...)
	}
}

// equipment works out the PowerEquipment series: each item's summary
// Metrics, circuits, outlets and PSUs.
func (e *goldenExplainer) equipment(pe string) {
	ped := e.docs[pe]
	for _, k := range []struct{ field, kind string }{
		{"RackPDUs", "rack_pdu"}, {"FloorPDUs", "floor_pdu"}, {"TransferSwitches", "transfer_switch"},
		{"PowerShelves", "power_shelf"}, {"ElectricalBuses", "electrical_bus"},
	} {
		for _, m := range memberIDs(e.docs[linkAt(ped, k.field)]) {
			ip := relPath(m)
			item := e.docs[ip]
			el := []string{"equipment=" + firstOf(textAt(item, "Id"), textAt(item, "Name"), m), "equipment_type=" + k.kind}
			if mp := linkAt(item, "Metrics"); e.docs[mp] != nil {
				_, hasPower := numberAt(e.docs[mp], "PowerWatts/Reading")
				_, hasEnergy := numberAt(e.docs[mp], "EnergykWh/Reading")
				if hasPower {
					e.expect("joules_redfish_equipment_power_watts", el, kindWatts, reading{mp, "PowerWatts/Reading"})
				}
				switch {
				case hasEnergy:
					e.expect("joules_redfish_equipment_energy_joules_total", append(slices.Clone(el), "method=counter"), kindKWh, reading{mp, "EnergykWh/Reading"})
				case hasPower:
					e.expect("joules_redfish_equipment_energy_joules_total", append(slices.Clone(el), "method=integrated"), kindIntegral, reading{mp, "PowerWatts/Reading"})
				}
			}
			for _, g := range []struct{ field, kind string }{{"Mains", "mains"}, {"Branches", "branch"}, {"Feeders", "feeder"}} {
				e.electrical("circuit", e.docs[linkAt(item, g.field)], append([]string{"circuit_type=" + g.kind}, el...))
			}
			e.electrical("outlet", e.docs[linkAt(item, "Outlets")], el)
			names := uniqueNames{}
			for _, pm := range memberIDs(e.docs[linkAt(item, "PowerSupplies")]) {
				psu := e.docs[relPath(pm)]
				pl := append([]string{"psu=" + names.name(firstOf(textAt(psu, "Name"), textAt(psu, "Id"), pm))}, el...)
				metrics := linkAt(psu, "Metrics")
				if _, ok := numberAt(e.docs[metrics], "InputPowerWatts/Reading"); ok {
					e.expect("joules_redfish_equipment_psu_input_power_watts", pl, kindWatts, reading{metrics, "InputPowerWatts/Reading"})
				}
				if _, ok := numberAt(e.docs[metrics], "OutputPowerWatts/Reading"); ok {
					e.expect("joules_redfish_equipment_psu_output_power_watts", pl, kindWatts, reading{metrics, "OutputPowerWatts/Reading"})
				}
			}
		}
	}
}

// electrical works out the power and energy of each circuit or outlet of
// a collection (named by Id, then Name).
func (e *goldenExplainer) electrical(what string, collection map[string]any, extra []string) {
	names := uniqueNames{}
	for _, m := range memberIDs(collection) {
		p := relPath(m)
		doc := e.docs[p]
		if doc == nil {
			continue
		}
		ls := append([]string{what + "=" + names.name(firstOf(textAt(doc, "Id"), textAt(doc, "Name"), m))}, extra...)
		if _, ok := numberAt(doc, "PowerWatts/Reading"); ok {
			e.expect("joules_redfish_"+what+"_power_watts", ls, kindWatts, reading{p, "PowerWatts/Reading"})
		}
		if _, ok := numberAt(doc, "EnergykWh/Reading"); ok {
			e.expect("joules_redfish_"+what+"_energy_joules_total", ls, kindKWh, reading{p, "EnergykWh/Reading"})
		}
	}
}
