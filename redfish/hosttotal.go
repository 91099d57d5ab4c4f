package redfish

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/stmcginnis/gofish/schemas"

	"github.com/joules-energy/joules/collector"
)

// A BMC lists many power readings: the chassis input, each PSU, CPUs,
// memory, accelerators, voltage regulators, fans. Only a chassis-level
// input is the host's: a component's reading taken for it under-counts the
// host several times over. This file decides which reading is the host's
// total power and energy; hostinputs.go gathers the readings,
// hostpublish.go publishes the choice and the host's capacity.

// Host power and energy source names (the source label).
const (
	srcEnvironment    = "environment_metrics"     // EnvironmentMetrics PowerWatts or EnergyJoules
	srcEnvironmentKWh = "environment_metrics_kwh" // EnvironmentMetrics EnergykWh
	srcPowerSubsystem = "power_subsystem"         // PowerSubsystem PSU Metrics, summed
	srcPowerSupplies  = "power_supplies"          // legacy Power PSUs, summed
	srcPowerControl   = "power_control"           // legacy PowerControl[0]
	srcSensor         = "sensor"                  // one chassis-level Sensor (label sensor)
	srcPSUSensors     = "psu_sensors"             // the PSU input Sensors, summed
	srcNone           = "none"                    // no total: components only
)

// hostTotal is one reading that could be the host's total: where it comes
// from and its value (W for power, J for energy).
type hostTotal struct {
	source    string
	sensor    string // the Sensor's label, for source "sensor"
	value     float64
	resetTime string // an energy counter's SensorResetTime, where the BMC gives it
}

// key names the counter or integrator of a source: a switch of source
// starts another one instead of looking like a reset of the same.
func (t hostTotal) key() string {
	if t.sensor != "" {
		return t.source + "/" + t.sensor
	}
	return t.source
}

func (t hostTotal) labels() []collector.Label {
	if t.sensor != "" {
		return []collector.Label{lbl("source", t.source), lbl("sensor", t.sensor)}
	}
	return []collector.Label{lbl("source", t.source)}
}

func (t hostTotal) String() string {
	if t.sensor != "" {
		return t.source + " " + t.sensor
	}
	return t.source
}

// sensorClass is what a power or energy Sensor measures, by its
// PhysicalContext and PhysicalSubContext and by the links that cite it.
type sensorClass uint8

const (
	classOther     sensorClass = iota // a part that is never a total and is not summed: a VR's or PSU's output, a battery, a bay
	classChassis                      // Chassis or PowerSubsystem: the chassis's input
	classBoard                        // SystemBoard: the board, usually its input
	classPSUInput                     // one PSU's input
	classComponent                    // a load inside the host: CPU, memory, accelerator, fan, storage, network
	classBare                         // no PhysicalContext
)

// componentGroups are the loads whose sum the host's total cannot be
// below. A group's subsystem and its devices describe the same power
// twice, so each group counts the larger of its contexts' sums, not both.
// Voltage regulators are left out: their outputs feed the CPUs and memory
// already counted.
var componentGroups = map[schemas.PhysicalContext]string{
	schemas.CPUPhysicalContext: "cpu", schemas.CPUSubsystemPhysicalContext: "cpu",
	schemas.MemoryPhysicalContext: "memory", schemas.MemorySubsystemPhysicalContext: "memory",
	schemas.GPUPhysicalContext: "accelerator", schemas.GPUSubsystemPhysicalContext: "accelerator",
	schemas.AcceleratorPhysicalContext: "accelerator", schemas.FPGAPhysicalContext: "accelerator", schemas.ASICPhysicalContext: "accelerator",
	schemas.FanPhysicalContext: "cooling", schemas.CoolingSubsystemPhysicalContext: "cooling", schemas.PumpPhysicalContext: "cooling",
	schemas.StorageDevicePhysicalContext: "storage", schemas.StorageSubsystemPhysicalContext: "storage",
	schemas.NetworkingDevicePhysicalContext: "network", schemas.TransceiverPhysicalContext: "network",
}

func (in *hostInputs) class(s *sensorReading) sensorClass {
	if in.psuCited[s.path] {
		return classPSUInput // a PSU's Metrics name it as their source
	}
	if s.sub == schemas.OutputPhysicalSubContext {
		if _, ok := componentGroups[s.context]; ok {
			return classComponent
		}
		return classOther
	}
	switch s.context {
	case "":
		return classBare
	case schemas.ChassisPhysicalContext, schemas.PowerSubsystemPhysicalContext:
		return classChassis
	case schemas.SystemBoardPhysicalContext:
		return classBoard
	case schemas.PowerSupplyPhysicalContext:
		// A PSU's energy counter counts its input; a PSU power sensor
		// without a subcontext may be either side.
		if s.sub == schemas.InputPhysicalSubContext || s.energy {
			return classPSUInput
		}
		return classOther
	}
	if _, ok := componentGroups[s.context]; ok {
		return classComponent
	}
	return classOther
}

// componentWatts is the sum of the chassis's component power sensors.
func (in *hostInputs) componentWatts() float64 {
	byContext := map[schemas.PhysicalContext]float64{}
	for i := range in.sensors {
		s := &in.sensors[i]
		if !s.energy && s.ok && !s.absent && !s.cited && s.value > 0 && in.class(s) == classComponent {
			byContext[s.context] += s.value
		}
	}
	groups := map[string]float64{}
	for c, w := range byContext {
		g := componentGroups[c]
		groups[g] = max(groups[g], w)
	}
	sum := 0.0
	for _, g := range sortedKeys(groups) {
		sum += groups[g]
	}
	return sum
}

// sensorsOf returns the present sensors of one kind (power or energy) and
// class, in collection order.
func (in *hostInputs) sensorsOf(energy bool, c sensorClass) []*sensorReading {
	var out []*sensorReading
	for i := range in.sensors {
		s := &in.sensors[i]
		if s.energy == energy && !s.absent && !s.cited && in.class(s) == c {
			out = append(out, s)
		}
	}
	return out
}

// bareCounts says whether context-less sensors may be the chassis's: only
// on a BMC that gives no power or energy sensor a PhysicalContext (there a
// lone one is the chassis's); where others have one, a sensor without is
// unknown.
func (in *hostInputs) bareCounts() bool {
	for i := range in.sensors {
		if in.sensors[i].context != "" && !in.sensors[i].cited {
			return false
		}
	}
	return true
}

// sensorCandidates are the chassis-level sensors of one kind, best first:
// Chassis, then SystemBoard, then the one PSU input where the chassis has a
// single PSU, then a lone context-less sensor. Power sensors of the same
// class go largest first, as a total is at least each of its parts.
func (in *hostInputs) sensorCandidates(energy bool) []*sensorReading {
	var out []*sensorReading
	for _, c := range []sensorClass{classChassis, classBoard} {
		group := in.sensorsOf(energy, c)
		if !energy {
			slices.SortStableFunc(group, func(a, b *sensorReading) int { return cmp.Compare(b.value, a.value) })
		}
		out = append(out, group...)
	}
	if psus := in.sensorsOf(energy, classPSUInput); len(psus) == 1 && in.presentPSUs <= 1 {
		out = append(out, psus[0])
	}
	if bare := in.sensorsOf(energy, classBare); len(bare) == 1 && in.bareCounts() {
		out = append(out, bare[0])
	}
	return out
}

// psuSensorSum is the sum of the PSU input sensors of one kind when there
// are several and every present one reads; a single one is a candidate of
// its own.
func (in *hostInputs) psuSensorSum(energy bool) (float64, bool) {
	psus := in.sensorsOf(energy, classPSUInput)
	if len(psus) < 2 || in.presentPSUs > len(psus) {
		return 0, false
	}
	sum := 0.0
	for _, s := range psus {
		if !s.ok {
			return 0, false
		}
		sum += s.value
	}
	return sum, true
}

func (in *hostInputs) sensorAt(path string) *sensorReading {
	if path == "" {
		return nil
	}
	for i := range in.sensors {
		if in.sensors[i].path == path {
			return &in.sensors[i]
		}
	}
	return nil
}

// citesPart tells an EnvironmentMetrics reading whose DataSourceUri names a
// component's, a part's or one PSU's sensor: the reading is then that
// sensor's, not the chassis's.
func (in *hostInputs) citesPart(uri string) (string, bool) {
	s := in.sensorAt(uri)
	if s == nil {
		return "", false
	}
	switch in.class(s) {
	case classComponent, classOther:
		return s.label, true
	case classPSUInput:
		lone := len(in.sensorsOf(s.energy, classPSUInput)) == 1 && in.presentPSUs <= 1
		return s.label, !lone
	}
	return "", false
}

// hostChoice is what a chassis's host power or energy came from, and what
// was passed over on the way.
type hostChoice struct {
	total       *hostTotal
	rejected    []string // why each candidate before it was not used
	components  float64  // W: the components' sum a power total must reach
	envRejected bool     // EnvironmentMetrics gave a power that is not the host's
}

// choosePower picks the host's power: EnvironmentMetrics PowerWatts, the
// Sensor it cites, the PowerSubsystem PSUs' inputs summed, the legacy PSUs'
// summed, PowerControl's consumed power, a chassis-level power sensor, the
// PSU input sensors summed; the first that is a valid reading at least the
// sum of the chassis's component sensors. A host's EnvironmentMetrics that
// cites a component's sensor is that component's; a contained chassis (a
// card, a GPU baseboard) is itself a component, so its may.
func (in *hostInputs) choosePower(host bool) hostChoice {
	ch := hostChoice{components: in.componentWatts()}
	try := func(t hostTotal) bool {
		switch {
		case math.IsNaN(t.value) || math.IsInf(t.value, 0) || t.value < 0:
			ch.rejected = append(ch.rejected, fmt.Sprintf("%s: %v W is no power reading", t, t.value))
		case t.value < ch.components:
			ch.rejected = append(ch.rejected, fmt.Sprintf("%s: %.6g W is below its components' %.6g W", t, t.value, ch.components))
		default:
			ch.total = &t
			return true
		}
		return false
	}
	cited, citesPart := in.citesPart(in.envWattsURI)
	citesPart = citesPart && host
	if in.envWatts != nil {
		if citesPart {
			ch.rejected = append(ch.rejected, fmt.Sprintf("%s: its DataSourceUri is the sensor %s, not the chassis's", srcEnvironment, cited))
		} else if try(hostTotal{source: srcEnvironment, value: *in.envWatts}) {
			return ch
		}
		ch.envRejected = true
	}
	if s := in.sensorAt(in.envWattsURI); s != nil && !citesPart && s.ok && !s.absent && !s.energy && try(hostTotal{source: srcSensor, sensor: s.label, value: s.value}) {
		return ch
	}
	if in.psuWatts.complete() && try(hostTotal{source: srcPowerSubsystem, value: in.psuWatts.total}) {
		return ch
	}
	if in.legacyWatts.complete() && try(hostTotal{source: srcPowerSupplies, value: in.legacyWatts.total}) {
		return ch
	}
	if in.controlWatts != nil && try(hostTotal{source: srcPowerControl, value: *in.controlWatts}) {
		return ch
	}
	for _, s := range in.sensorCandidates(false) {
		if s.ok && try(hostTotal{source: srcSensor, sensor: s.label, value: s.value}) {
			return ch
		}
	}
	if sum, ok := in.psuSensorSum(false); ok && try(hostTotal{source: srcPSUSensors, value: sum}) {
		return ch
	}
	return ch
}

// chooseEnergy picks the host's energy counter: EnvironmentMetrics
// EnergyJoules, then EnergykWh, the Sensor they cite, a chassis-level energy
// sensor, the PowerSubsystem PSUs' EnergykWh summed, the PSU energy sensors
// summed. One chassis counter goes before a sum of PSU counters, which
// jumps when a single PSU is replaced. Counters cannot be checked against
// the components' power: a component's or one PSU's counter is never
// taken, nor EnvironmentMetrics' where its power was not the host's
// (envRejected).
func (in *hostInputs) chooseEnergy(envRejected bool) hostChoice {
	var ch hostChoice
	try := func(t hostTotal) bool {
		if math.IsNaN(t.value) || math.IsInf(t.value, 0) || t.value < 0 {
			ch.rejected = append(ch.rejected, fmt.Sprintf("%s: %v J is no energy reading", t, t.value))
			return false
		}
		ch.total = &t
		return true
	}
	envPart := envRejected && (in.envJoules != nil || in.envKWh != nil)
	if envPart {
		ch.rejected = append(ch.rejected, srcEnvironment+": its power is not the host's, so neither is its energy")
	}
	for _, uri := range in.envEnergyURIs {
		if cited, ok := in.citesPart(uri); ok {
			ch.rejected = append(ch.rejected, fmt.Sprintf("%s: its DataSourceUri is the sensor %s, not the chassis's", srcEnvironment, cited))
			envPart = true
		}
	}
	if !envPart {
		if in.envJoules != nil && try(hostTotal{source: srcEnvironment, value: *in.envJoules}) {
			return ch
		}
		if in.envKWh != nil && try(hostTotal{source: srcEnvironmentKWh, value: *in.envKWh * 3.6e6, resetTime: in.envKWhReset}) {
			return ch
		}
		for _, uri := range in.envEnergyURIs {
			if s := in.sensorAt(uri); s != nil && s.ok && s.energy && try(hostTotal{source: srcSensor, sensor: s.label, value: s.value, resetTime: s.resetTime}) {
				return ch
			}
		}
	}
	candidates := in.sensorCandidates(true)
	for _, s := range candidates {
		if c := in.class(s); (c == classChassis || c == classBoard) && s.ok && try(hostTotal{source: srcSensor, sensor: s.label, value: s.value, resetTime: s.resetTime}) {
			return ch
		}
	}
	if in.psuJoules.complete() && try(hostTotal{source: srcPowerSubsystem, value: in.psuJoules.total}) {
		return ch
	}
	for _, s := range candidates {
		if c := in.class(s); c != classChassis && c != classBoard && s.ok && try(hostTotal{source: srcSensor, sensor: s.label, value: s.value, resetTime: s.resetTime}) {
			return ch
		}
	}
	if sum, ok := in.psuSensorSum(true); ok && try(hostTotal{source: srcPSUSensors, value: sum}) {
		return ch
	}
	return ch
}
