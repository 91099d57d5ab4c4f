package redfish

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

type doc = map[string]any

func ref(p string) doc { return doc{"@odata.id": p} }

func members(paths ...string) doc {
	var m []any
	for _, p := range paths {
		m = append(m, ref(p))
	}
	return doc{"Members": m, "Members@odata.count": len(m)}
}

// writeMockup writes a mockup tree: resource path (under /redfish/v1) → body.
// A service root and a one-chassis collection are added unless given.
func writeMockup(t *testing.T, chassis doc, resources map[string]doc) string {
	t.Helper()
	dir := t.TempDir()
	all := map[string]doc{
		"": {"@odata.id": "/redfish/v1/", "Chassis": ref("/redfish/v1/Chassis"), "SessionService": ref("/redfish/v1/SessionService"),
			"Links": doc{"Sessions": ref("/redfish/v1/SessionService/Sessions")}},
		"/Chassis":                 members("/redfish/v1/Chassis/1"),
		"/Chassis/1":               chassis,
		"/SessionService":          {"Sessions": ref("/redfish/v1/SessionService/Sessions")},
		"/SessionService/Sessions": members(),
	}
	for k, v := range resources {
		all[k] = v
	}
	for p, body := range all {
		file := filepath.Join(dir, filepath.FromSlash(p), "index.json")
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(body)
		if err := os.WriteFile(file, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func chassisDocWith(links doc) doc {
	d := doc{"@odata.id": "/redfish/v1/Chassis/1", "Id": "1", "Name": "Server", "ChassisType": "RackMount",
		"Links": doc{"ComputerSystems": []any{ref("/redfish/v1/Systems/1")}}}
	for k, v := range links {
		d[k] = v
	}
	return d
}

func TestLegacyPowerOnly(t *testing.T) {
	dir := writeMockup(t, chassisDocWith(doc{"Power": ref("/redfish/v1/Chassis/1/Power")}), map[string]doc{
		"/Chassis/1/Power": {
			"PowerControl": []any{doc{"MemberId": "0", "Name": "System Power Control", "PowerConsumedWatts": 400,
				"PowerMetrics": doc{"AverageConsumedWatts": 380, "MinConsumedWatts": 300, "MaxConsumedWatts": 450}}},
			"PowerSupplies": []any{
				doc{"Name": "PSU", "PowerInputWatts": 210, "PowerOutputWatts": 190, "LineInputVoltage": 230},
				doc{"Name": "PSU", "PowerInputWatts": 200, "LastPowerOutputWatts": 185}, // no MemberId, same name
			},
		},
	})
	samples, _, bmc := pollFixed(t, "legacy", dir)
	// The simulator moves power by its load factor at the fixed time.
	f := bmc.LoadFactor(time.Date(2026, 11, 28, 12, 0, 10, 0, time.UTC))
	host, ok := value(samples, "joules_redfish_host_power_watts", "source=power_supplies")
	if !ok || !near(host, round2(210*f)+round2(200*f)) {
		t.Errorf("host power = %v (%v), want the PSU inputs' sum %v: AC side, not PowerConsumedWatts", host, ok, round2(210*f)+round2(200*f))
	}
	for _, want := range []string{"psu=PSU", "psu=PSU#2"} {
		if _, ok := value(samples, "joules_redfish_psu_input_power_watts", want); !ok {
			t.Errorf("PSU %s missing: repeated names must not collide", want)
		}
	}
	if v, _ := value(samples, "joules_redfish_psu_output_power_watts", "psu=PSU#2"); !near(v, round2(185*f)) {
		t.Errorf("LastPowerOutputWatts not used as output: %v", v)
	}
	for _, stat := range []string{"consumed", "average", "min", "max"} {
		if _, ok := value(samples, "joules_redfish_power_control_watts", "stat="+stat); !ok {
			t.Errorf("power control %s missing", stat)
		}
	}
	if _, ok := value(samples, "joules_redfish_host_energy_joules_total", "method=integrated", "source=power_supplies"); !ok {
		t.Error("no integrated energy for a BMC without an energy counter")
	}
}

func TestPowerSubsystemOnly(t *testing.T) {
	dir := writeMockup(t, chassisDocWith(doc{"PowerSubsystem": ref("/redfish/v1/Chassis/1/PowerSubsystem")}), map[string]doc{
		"/Chassis/1/PowerSubsystem":                         {"PowerSupplies": ref("/redfish/v1/Chassis/1/PowerSubsystem/PowerSupplies")},
		"/Chassis/1/PowerSubsystem/PowerSupplies":           members("/redfish/v1/Chassis/1/PowerSubsystem/PowerSupplies/A", "/redfish/v1/Chassis/1/PowerSubsystem/PowerSupplies/B"),
		"/Chassis/1/PowerSubsystem/PowerSupplies/A":         {"Id": "A", "Name": "PSU A", "Metrics": ref("/redfish/v1/Chassis/1/PowerSubsystem/PowerSupplies/A/Metrics")},
		"/Chassis/1/PowerSubsystem/PowerSupplies/B":         {"Id": "B", "Name": "PSU B", "Metrics": ref("/redfish/v1/Chassis/1/PowerSubsystem/PowerSupplies/B/Metrics")},
		"/Chassis/1/PowerSubsystem/PowerSupplies/A/Metrics": {"InputPowerWatts": doc{"Reading": 500}, "OutputPowerWatts": doc{"Reading": 470}, "EnergykWh": doc{"Reading": 10}},
		"/Chassis/1/PowerSubsystem/PowerSupplies/B/Metrics": {"InputPowerWatts": doc{"Reading": 300}, "EnergykWh": doc{"Reading": 5}},
	})
	samples, _, bmc := pollFixed(t, "new", dir)
	f := bmc.LoadFactor(time.Date(2026, 11, 28, 12, 0, 10, 0, time.UTC))
	if v, ok := value(samples, "joules_redfish_host_power_watts", "source=power_subsystem"); !ok || !near(v, round2(500*f)+round2(300*f)) {
		t.Errorf("host power = %v (%v), want the sum of PSU inputs", v, ok)
	}
	e, ok := value(samples, "joules_redfish_host_energy_joules_total", "method=counter", "source=power_subsystem")
	if !ok || e < 15*3.6e6 {
		t.Errorf("host energy = %v (%v), want the PSUs' EnergykWh summed, in joules (≥ %v)", e, ok, 15*3.6e6)
	}
}

func TestPowerFromSensorsOnly(t *testing.T) {
	dir := writeMockup(t, chassisDocWith(doc{"Sensors": ref("/redfish/v1/Chassis/1/Sensors")}), map[string]doc{
		"/Chassis/1/Sensors":       members("/redfish/v1/Chassis/1/Sensors/Total", "/redfish/v1/Chassis/1/Sensors/CPU", "/redfish/v1/Chassis/1/Sensors/T1", "/redfish/v1/Chassis/1/Sensors/E"),
		"/Chassis/1/Sensors/Total": {"Id": "Total", "ReadingType": "Power", "PhysicalContext": "Chassis", "Reading": 640},
		"/Chassis/1/Sensors/CPU":   {"Id": "CPU", "ReadingType": "Power", "PhysicalContext": "CPU", "Reading": 200},
		"/Chassis/1/Sensors/T1":    {"Id": "T1", "ReadingType": "Temperature", "PhysicalContext": "Intake", "Reading": 22},
		"/Chassis/1/Sensors/E":     {"Id": "E", "ReadingType": "EnergyJoules", "PhysicalContext": "Chassis", "Reading": 1e9},
	})
	samples, _, _ := pollFixed(t, "sensors", dir)
	if _, ok := value(samples, "joules_redfish_host_power_watts", "source=sensor", "sensor=Total"); !ok {
		t.Error("no host power from the chassis power sensor")
	}
	if _, ok := value(samples, "joules_redfish_host_energy_joules_total", "method=counter", "source=sensor", "sensor=E"); !ok {
		t.Error("no host energy from the energy sensor")
	}
	if _, ok := value(samples, "joules_redfish_temperature_celsius", "sensor=T1", "physical_context=Intake"); !ok {
		t.Error("temperature sensor missing")
	}
	if _, ok := value(samples, "joules_redfish_sensor_power_watts", "sensor=CPU"); !ok {
		t.Error("component power sensor missing")
	}
}

func TestEnvironmentMetricsWithEnergyCounter(t *testing.T) {
	dir := writeMockup(t, chassisDocWith(doc{"EnvironmentMetrics": ref("/redfish/v1/Chassis/1/EnvironmentMetrics"), "Power": ref("/redfish/v1/Chassis/1/Power")}), map[string]doc{
		"/Chassis/1/EnvironmentMetrics": {"PowerWatts": doc{"Reading": 800}, "EnergyJoules": doc{"Reading": 5e8}},
		"/Chassis/1/Power":              {"PowerControl": []any{doc{"PowerConsumedWatts": 1}}},
	})
	samples, _, _ := pollFixed(t, "env", dir)
	if _, ok := value(samples, "joules_redfish_host_power_watts", "source=environment_metrics"); !ok {
		t.Error("EnvironmentMetrics not preferred for host power")
	}
	if e, ok := value(samples, "joules_redfish_host_energy_joules_total", "method=counter", "source=environment_metrics"); !ok || e < 5e8 {
		t.Errorf("host energy = %v (%v), want the EnergyJoules counter", e, ok)
	}
}

func TestNullReadingsAreAbsent(t *testing.T) {
	dir := writeMockup(t, chassisDocWith(doc{"EnvironmentMetrics": ref("/redfish/v1/Chassis/1/EnvironmentMetrics"), "Power": ref("/redfish/v1/Chassis/1/Power"),
		"Thermal": ref("/redfish/v1/Chassis/1/Thermal")}), map[string]doc{
		"/Chassis/1/EnvironmentMetrics": {"PowerWatts": doc{"Reading": nil}},
		"/Chassis/1/Power": {"PowerControl": []any{doc{"PowerConsumedWatts": nil}}, "PowerSupplies": []any{
			doc{"Name": "nil", "PowerInputWatts": nil}, doc{"Name": "nil"}}},
		"/Chassis/1/Thermal": {"Temperatures": []any{doc{"Name": "CPU", "ReadingCelsius": nil}, doc{"Name": "Inlet", "ReadingCelsius": 21}},
			"Fans": []any{doc{"Name": "Fan", "Reading": nil, "ReadingUnits": "RPM"}}},
	})
	samples, _, _ := pollFixed(t, "nulls", dir)
	for _, name := range []string{"joules_redfish_host_power_watts", "joules_redfish_host_energy_joules_total", "joules_redfish_psu_input_power_watts", "joules_redfish_fan_speed_rpm"} {
		if v, ok := value(samples, name); ok {
			t.Errorf("%s = %v from null readings; want absent", name, v)
		}
	}
	if _, ok := value(samples, "joules_redfish_temperature_celsius", "sensor=CPU"); ok {
		t.Error("null temperature reported")
	}
	if _, ok := value(samples, "joules_redfish_temperature_celsius", "sensor=Inlet"); !ok {
		t.Error("the non-null temperature is missing")
	}
}

func TestNestedChassisNotCountedTwice(t *testing.T) {
	dir := writeMockup(t, chassisDocWith(doc{"EnvironmentMetrics": ref("/redfish/v1/Chassis/1/EnvironmentMetrics")}), map[string]doc{
		"/Chassis":                             members("/redfish/v1/Chassis/1", "/redfish/v1/Chassis/GPUBoard"),
		"/Chassis/1/EnvironmentMetrics":        {"PowerWatts": doc{"Reading": 5000}},
		"/Chassis/GPUBoard":                    {"Id": "GPUBoard", "ChassisType": "Module", "EnvironmentMetrics": ref("/redfish/v1/Chassis/GPUBoard/EnvironmentMetrics"), "Links": doc{"ContainedBy": ref("/redfish/v1/Chassis/1")}},
		"/Chassis/GPUBoard/EnvironmentMetrics": {"PowerWatts": doc{"Reading": 4000}},
	})
	samples, _, _ := pollFixed(t, "nested", dir)
	if n := len(series(samples, "joules_redfish_host_power_watts")); n != 1 {
		t.Errorf("%d host power series, want 1: the GPU baseboard sits inside the server", n)
	}
	if _, ok := value(samples, "joules_redfish_component_power_watts", "chassis=GPUBoard"); !ok {
		t.Error("nested chassis power not reported as a component")
	}
}

func near(a, b float64) bool { return a-b < 1e-6 && b-a < 1e-6 }

func round2(v float64) float64 {
	return float64(int64(v*100+0.5)) / 100
}
