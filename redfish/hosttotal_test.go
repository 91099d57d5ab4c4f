package redfish

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/joules-energy/joules/collector"
)

// hostWant is what one host chassis must publish. Every number is read by
// hand from the mockup's JSON; the comments say where.
type hostWant struct {
	chassis      string
	power        float64
	powerLabels  []string // source (and sensor) of joules_redfish_host_power_watts
	energy       float64
	energyLabels []string // method, source (and sensor) of joules_redfish_host_energy_joules_total
	capacity     float64  // 0: joules_redfish_host_power_capacity_watts absent
}

// checkHosts asserts the host series of a poll: exactly the chassis in
// want have host power, each with the value and labels wanted, the source
// info saying the same, and the capacity wanted or none.
func checkHosts(t *testing.T, samples []collector.Sample, want []hostWant) {
	t.Helper()
	var got, wantChassis []string
	for _, s := range samples {
		if s.Name == "joules_redfish_host_power_watts" {
			got = append(got, label(s, "chassis"))
		}
	}
	for _, w := range want {
		wantChassis = append(wantChassis, w.chassis)
	}
	slices.Sort(got)
	if !slices.Equal(got, wantChassis) {
		t.Errorf("host power for chassis %v, want %v", got, wantChassis)
	}
	for _, w := range want {
		ch := "chassis=" + w.chassis
		if v, ok := value(samples, "joules_redfish_host_power_watts", append([]string{ch}, w.powerLabels...)...); !ok || !near(v, w.power) {
			t.Errorf("%s: host power = %v (found %v), want %v from %v; have %v", w.chassis, v, ok, w.power, w.powerLabels, series(samples, "joules_redfish_host_power_watts"))
		}
		if _, ok := value(samples, "joules_redfish_host_power_source_info", append([]string{ch}, w.powerLabels...)...); !ok {
			t.Errorf("%s: no source info with %v; have %v", w.chassis, w.powerLabels, series(samples, "joules_redfish_host_power_source_info"))
		}
		if v, ok := value(samples, "joules_redfish_host_energy_joules_total", append([]string{ch}, w.energyLabels...)...); !ok || !near(v, w.energy) {
			t.Errorf("%s: host energy = %v (found %v), want %v from %v; have %v", w.chassis, v, ok, w.energy, w.energyLabels, series(samples, "joules_redfish_host_energy_joules_total"))
		}
		v, ok := value(samples, "joules_redfish_host_power_capacity_watts", ch)
		switch {
		case w.capacity == 0 && ok:
			t.Errorf("%s: capacity %v where the BMC reports none", w.chassis, v)
		case w.capacity != 0 && (!ok || !near(v, w.capacity)):
			t.Errorf("%s: capacity = %v (found %v), want %v", w.chassis, v, ok, w.capacity)
		}
	}
	if len(want) == 0 {
		for _, name := range []string{"joules_redfish_host_energy_joules_total", "joules_redfish_host_power_capacity_watts"} {
			if s := series(samples, name); len(s) > 0 {
				t.Errorf("no host chassis, yet %v", s)
			}
		}
	}
}

// TestHostTotalsOfSharedMockups reads every shared mockup as it is written
// and checks each host chassis's power, energy and capacity against the
// numbers in its files.
func TestHostTotalsOfSharedMockups(t *testing.T) {
	rackmount := hostWant{
		chassis: "1U",
		// Chassis/1U/EnvironmentMetrics PowerWatts.Reading 374.
		power: 374, powerLabels: []string{"source=environment_metrics"},
		// EnvironmentMetrics has no energy; Sensors/TotalEnergy
		// (PhysicalContext Chassis) Reading 325675 kWh × 3.6e6 J/kWh =
		// 1.17243e12 J. Not Sensors/PS1Energy, PSU 1's 7855 kWh.
		energy: 325675 * 3.6e6, energyLabels: []string{"method=counter", "source=sensor", "sensor=TotalEnergy"},
		// PowerSubsystem/PowerSupplies/Bay1 PowerCapacityWatts 400; Bay2 has
		// Status.State Absent. (The legacy Power resource describes the
		// same PSUs, older: it is not added.)
		capacity: 400,
	}
	for _, tc := range []struct {
		mockup string
		hosts  []hostWant
		check  func(t *testing.T, samples []collector.Sample)
	}{
		{mockup: "dmtf-public-rackmount1", hosts: []hostWant{rackmount}},
		{mockup: "dmtf-public-smartnic", hosts: []hostWant{rackmount}, // its 1U chassis has the same power files as rackmount1's
			check: func(t *testing.T, samples []collector.Sample) {
				// Chassis/Card1 is ContainedBy 1U: a component. Its
				// EnvironmentMetrics PowerWatts.Reading 374.
				if v, ok := value(samples, "joules_redfish_component_power_watts", "chassis=Card1", "source=environment_metrics"); !ok || !near(v, 374) {
					t.Errorf("Card1 component power = %v (%v), want 374", v, ok)
				}
			}},
		// PowerEquipment present: the chassis are the equipment's enclosures.
		{mockup: "dmtf-public-pdu"},
		{mockup: "dmtf-public-power-shelf"},
		{mockup: "gigabyte-h262-z63", hosts: []hostWant{{
			chassis: "Self",
			// No EnvironmentMetrics or PowerSubsystem; the legacy PSUs
			// (Name "nil") have no PowerInputWatts; Chassis/Self/Power
			// PowerControl[0].PowerConsumedWatts 100.
			power: 100, powerLabels: []string{"source=power_control"},
			// Chassis/Self/Sensors/Energy: Id "Power Energy Monitor",
			// EnergyJoules, Reading 468; no sensor of this BMC has a
			// PhysicalContext, so its one energy sensor is the chassis's.
			energy: 468, energyLabels: []string{"method=counter", "source=sensor", "sensor=Power Energy Monitor"},
			// PowerControl[0].PowerCapacityWatts 0, and the PSUs report
			// none: no capacity.
		}}},
	} {
		t.Run(tc.mockup, func(t *testing.T) {
			samples, _ := pollRaw(t, tc.mockup, mockupDir(t, tc.mockup), nil)
			checkHosts(t, samples, tc.hosts)
			if s := series(samples, "joules_redfish_host_power_source_info"); len(tc.hosts) == 0 && len(s) > 0 {
				t.Errorf("power equipment's enclosures reported as hosts: %v", s)
			}
			if tc.check != nil {
				tc.check(t, samples)
			}
		})
	}
}

// TestRackmountSensorsNotPSU1 reads rackmount1's chassis by its Sensors
// alone (its EnvironmentMetrics, PowerSubsystem and Power links removed):
// the chassis's own sensors are the totals, never PSU 1's.
func TestRackmountSensorsNotPSU1(t *testing.T) {
	dir := mockupDir(t, "dmtf-public-rackmount1")
	sensorsOnly := func(t *testing.T) map[string]any {
		ch := readDoc(t, dir, "Chassis/1U")
		delete(ch, "EnvironmentMetrics")
		delete(ch, "PowerSubsystem")
		delete(ch, "Power")
		return map[string]any{"Chassis/1U": ch}
	}
	// Sensors/TotalPower (PhysicalContext Chassis) Reading 374; the only
	// component power sensor is CPU1Power, 90.
	power := []string{"chassis=1U", "source=sensor", "sensor=TotalPower"}

	t.Run("chassis energy sensor", func(t *testing.T) {
		samples, _ := pollRaw(t, "rack", dir, sensorsOnly(t))
		if v, ok := value(samples, "joules_redfish_host_power_watts", power...); !ok || !near(v, 374) {
			t.Errorf("host power = %v (%v), want TotalPower's 374; have %v", v, ok, series(samples, "joules_redfish_host_power_watts"))
		}
		// Sensors/TotalEnergy Reading 325675 kWh; PS1Energy's 7855 kWh is PSU 1's.
		if v, ok := value(samples, "joules_redfish_host_energy_joules_total", "source=sensor", "sensor=TotalEnergy", "method=counter"); !ok || !near(v, 325675*3.6e6) {
			t.Errorf("host energy = %v (%v), want TotalEnergy's 325675 kWh = 1.17243e12 J; have %v", v, ok, series(samples, "joules_redfish_host_energy_joules_total"))
		}
		if _, ok := value(samples, "joules_redfish_host_energy_joules_total", "sensor=PS1Energy"); ok {
			t.Error("PSU 1's energy counter taken as the chassis's")
		}
	})

	t.Run("two PSUs, one counter", func(t *testing.T) {
		// Without TotalEnergy, and with PSU 2 installed but not reading,
		// PS1Energy is one PSU of two: no counter, power integrated.
		o := sensorsOnly(t)
		o["Chassis/1U/Sensors"] = withoutMembers(t, dir, "Chassis/1U/Sensors", "TotalEnergy")
		ps2 := readDoc(t, dir, "Chassis/1U/Sensors/PS2Energy")
		ps2["Status"] = map[string]any{"State": "Enabled"}
		o["Chassis/1U/Sensors/PS2Energy"] = ps2
		samples, _ := pollRaw(t, "rack", dir, o)
		// Two polls 10 s apart at 374 W: 374 × 10 = 3740 J.
		if v, ok := value(samples, "joules_redfish_host_energy_joules_total", append(power, "method=integrated")...); !ok || !near(v, 3740) {
			t.Errorf("host energy = %v (%v), want TotalPower integrated, 3740 J; have %v", v, ok, series(samples, "joules_redfish_host_energy_joules_total"))
		}
	})

	t.Run("two PSU counters", func(t *testing.T) {
		// PSU 2 installed and counting 145 kWh: the host's counter is the
		// two PSUs' sum, (7855 + 145) kWh × 3.6e6 = 2.88e10 J.
		o := sensorsOnly(t)
		o["Chassis/1U/Sensors"] = withoutMembers(t, dir, "Chassis/1U/Sensors", "TotalEnergy")
		ps2 := readDoc(t, dir, "Chassis/1U/Sensors/PS2Energy")
		ps2["Status"], ps2["Reading"] = map[string]any{"State": "Enabled"}, 145
		o["Chassis/1U/Sensors/PS2Energy"] = ps2
		samples, _ := pollRaw(t, "rack", dir, o)
		if v, ok := value(samples, "joules_redfish_host_energy_joules_total", "source=psu_sensors", "method=counter"); !ok || !near(v, 2.88e10) {
			t.Errorf("host energy = %v (%v), want the PSU counters' sum 2.88e10 J; have %v", v, ok, series(samples, "joules_redfish_host_energy_joules_total"))
		}
	})
}

func ownMockup(name string) string { return filepath.Join("testdata", "mockups", name) }

// TestLiquidBladeSensorsOnly reads a liquid-cooled blade whose BMC has only
// Sensors: 36 power sensors for CPUs, memory, accelerators, VRs, NICs,
// drives, fans, the BMC, the 48 V board output and the blade's input, and
// energy sensors for CPUs and GPUs.
func TestLiquidBladeSensorsOnly(t *testing.T) {
	dir := ownMockup("liquid-blade")
	// Sensors/Blade_Input_Power: PhysicalContext Chassis, PhysicalSubContext
	// Input, Reading 3462. Its components: CPUs 285 + 271, DIMMs 11 + 12 +
	// 11 + 10 + 12 + 11 + 11 + 12 = 90, GPUs 612 + 598 + 605 + 590 = 2405,
	// NICs 19 + 18, NVMe 9 + 8, fans 6 + 6: 3117 ≤ 3462.
	power := []string{"chassis=Blade1", "source=sensor", "sensor=Blade_Input_Power"}

	t.Run("with an energy sensor", func(t *testing.T) {
		samples, _ := pollRaw(t, "blade", dir, nil)
		checkHosts(t, samples, []hostWant{{
			chassis: "Blade1", power: 3462, powerLabels: power[1:],
			// Sensors/Blade_Input_Energy: Chassis/Input, EnergyJoules,
			// Reading 5184000000. Not CPU0_Pkg_Energy (no context, the
			// first energy sensor), nor a CPU's or GPU's.
			energy: 5184000000, energyLabels: []string{"method=counter", "source=sensor", "sensor=Blade_Input_Energy"},
		}})
		// Every power sensor is still published, the components with them.
		if n := len(series(samples, "joules_redfish_sensor_power_watts")); n != 36 {
			t.Errorf("%d power sensors published, want the mockup's 36", n)
		}
	})

	t.Run("without", func(t *testing.T) {
		o := map[string]any{"Chassis/Blade1/Sensors": withoutMembers(t, dir, "Chassis/Blade1/Sensors", "Blade_Input_Energy")}
		samples, _ := pollRaw(t, "blade", dir, o)
		checkHosts(t, samples, []hostWant{{
			chassis: "Blade1", power: 3462, powerLabels: power[1:],
			// Two polls 10 s apart at 3462 W: 3462 × 10 = 34620 J.
			energy: 34620, energyLabels: append([]string{"method=integrated"}, power[1:]...),
		}})
	})
}

// TestOnlyPSUInputSumIsTotal reads a server whose PowerControl and
// SystemBoard sensor report less than its components: the PSU input
// sensors' sum is the total.
func TestOnlyPSUInputSumIsTotal(t *testing.T) {
	samples, raw := pollRaw(t, "psu-sum", ownMockup("psu-input-sum"), nil)
	checkHosts(t, samples, []hostWant{{
		chassis: "Node1",
		// Components: CPUs 350 + 340 = 690; memory: DIMMs 25 + 24 + 23 + 22
		// = 94 against Memory_Power (MemorySubsystem) 96, the same power
		// twice, so 96; GPUs 300 + 310 = 610; fans 21 + 19 = 40: 1436 W (the
		// VRs' 330 + 322 feed the CPUs). PowerControl's 420 and
		// Board_Power's 520 are below it; PSU0_Input_Power 760 +
		// PSU1_Input_Power 745 = 1505 is not.
		power: 1505, powerLabels: []string{"source=psu_sensors"},
		// PSU0_Energy 1520.5 + PSU1_Energy 1498.25 = 3018.75 kWh × 3.6e6.
		energy: 10867500000, energyLabels: []string{"method=counter", "source=psu_sensors"},
		// No PSU lists a capacity; Power PowerControl[0].PowerCapacityWatts 2400.
		capacity: 2400,
	}})
	if strings.Contains(raw.log.String(), "no reading") {
		t.Errorf("a host with a total logged as without:\n%s", raw.log)
	}
}

// TestTotalBelowComponentsRejected reads a server whose EnvironmentMetrics
// PowerWatts is less than its CPUs, memory and fans draw: not the total.
func TestTotalBelowComponentsRejected(t *testing.T) {
	samples, _ := pollRaw(t, "below", ownMockup("total-below-components"), nil)
	checkHosts(t, samples, []hostWant{{
		chassis: "Node2",
		// EnvironmentMetrics PowerWatts 655 < CPUs 410 + 395, memory 120,
		// fan 30 = 955. Next: PowerSubsystem Bay1 Metrics InputPowerWatts
		// 540 + Bay2 545 = 1085.
		power: 1085, powerLabels: []string{"source=power_subsystem"},
		// EnvironmentMetrics EnergykWh 812.5 goes with its power, not the
		// host's: Bay1 EnergykWh 410.25 + Bay2 402.5 = 812.75 kWh × 3.6e6.
		energy: 2925900000, energyLabels: []string{"method=counter", "source=power_subsystem"},
		// Bay1 and Bay2 PowerCapacityWatts 800 each.
		capacity: 1600,
	}})
}

// TestNoHostTotal reads a server with component sensors only: no host
// power or energy, the source info says none, one log line says why.
func TestNoHostTotal(t *testing.T) {
	raw := serveRaw(t, "parts", ownMockup("components-only"), nil)
	var samples []collector.Sample
	for range 3 {
		samples = raw.poll(t)
	}
	checkHosts(t, samples, nil)
	if _, ok := value(samples, "joules_redfish_host_power_source_info", "chassis=Node3", "source=none"); !ok {
		t.Errorf("no source=\"none\" info; have %v", series(samples, "joules_redfish_host_power_source_info"))
	}
	// The components are still there: Sensors/CPU0_Power Reading 300.
	if v, ok := value(samples, "joules_redfish_sensor_power_watts", "chassis=Node3", "sensor=CPU0_Power", "physical_context=CPU"); !ok || v != 300 {
		t.Errorf("CPU0_Power = %v (%v), want 300", v, ok)
	}
	log := raw.log.String()
	if n := strings.Count(log, "no reading of this BMC is the host's total power"); n != 1 {
		t.Fatalf("%d log lines about the missing total in 3 polls, want 1:\n%s", n, log)
	}
	// Board_Power (SystemBoard) 900 < CPUs 300 + 290, DIMMs 41 + 39, GPU
	// 700, fan 25 = 1395.
	for _, want := range []string{"bmc=parts", "chassis=Node3", "Board_Power", "1395"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log line lacks %q:\n%s", want, log)
		}
	}
}

// TestSourceSwitchStartsNewCounter serves a BMC whose EnvironmentMetrics
// gives EnergyJoules, then only EnergykWh (a lower number), then
// EnergyJoules again: each path is its own counter, so neither looks like
// a reset of the other.
func TestSourceSwitchStartsNewCounter(t *testing.T) {
	dir := writeMockup(t, chassisDocWith(doc{"EnvironmentMetrics": ref("/redfish/v1/Chassis/1/EnvironmentMetrics")}), map[string]doc{
		"/Chassis/1/EnvironmentMetrics": {"PowerWatts": doc{"Reading": 500}, "EnergyJoules": doc{"Reading": 1e9}},
	})
	override := map[string]any{}
	raw := serveRaw(t, "switch", dir, override)
	first := raw.poll(t)
	if v, ok := value(first, "joules_redfish_host_energy_joules_total", "source=environment_metrics"); !ok || v != 1e9 {
		t.Fatalf("first poll: %v (%v), want EnergyJoules 1e9", v, ok)
	}
	raw.set("Chassis/1/EnvironmentMetrics", doc{"PowerWatts": doc{"Reading": 500}, "EnergykWh": doc{"Reading": 250}})
	second := raw.poll(t)
	// 250 kWh × 3.6e6 = 9e8 J: a counter of its own, not 1e9 + 9e8.
	if v, ok := value(second, "joules_redfish_host_energy_joules_total", "source=environment_metrics_kwh"); !ok || v != 9e8 {
		t.Errorf("second poll: %v (%v), want EnergykWh's 9e8 J; have %v", v, ok, series(second, "joules_redfish_host_energy_joules_total"))
	}
	raw.set("Chassis/1/EnvironmentMetrics", doc{"PowerWatts": doc{"Reading": 500}, "EnergyJoules": doc{"Reading": 1e9 + 10000}})
	third := raw.poll(t)
	// Back on EnergyJoules, 20 s and 10 kJ after its last reading (500 W).
	if v, ok := value(third, "joules_redfish_host_energy_joules_total", "source=environment_metrics"); !ok || v != 1e9+10000 {
		t.Errorf("third poll: %v (%v), want EnergyJoules continued to 1.00001e9; have %v", v, ok, series(third, "joules_redfish_host_energy_joules_total"))
	}
}

// TestEnvironmentMetricsDataSource follows EnvironmentMetrics' DataSourceUri:
// to a Sensor no collection lists when EnvironmentMetrics gives no
// reading itself, and away from EnvironmentMetrics when it names a CPU's.
func TestEnvironmentMetricsDataSource(t *testing.T) {
	t.Run("sensor outside the collection", func(t *testing.T) {
		dir := writeMockup(t, chassisDocWith(doc{"EnvironmentMetrics": ref("/redfish/v1/Chassis/1/EnvironmentMetrics")}), map[string]doc{
			"/Chassis/1/EnvironmentMetrics": {"PowerWatts": doc{"DataSourceUri": "/redfish/v1/Chassis/1/Meters/Input"}},
			"/Chassis/1/Meters/Input":       {"Id": "Input", "ReadingType": "Power", "Reading": 812},
		})
		samples, _ := pollRaw(t, "cited", dir, nil)
		checkHosts(t, samples, []hostWant{{
			chassis: "1", power: 812, powerLabels: []string{"source=sensor", "sensor=Input"},
			// 812 W for the 10 s between the polls.
			energy: 8120, energyLabels: []string{"method=integrated", "source=sensor", "sensor=Input"},
		}})
	})
	t.Run("a CPU's sensor", func(t *testing.T) {
		dir := writeMockup(t, chassisDocWith(doc{"EnvironmentMetrics": ref("/redfish/v1/Chassis/1/EnvironmentMetrics"),
			"Power": ref("/redfish/v1/Chassis/1/Power"), "Sensors": ref("/redfish/v1/Chassis/1/Sensors")}), map[string]doc{
			"/Chassis/1/EnvironmentMetrics": {"PowerWatts": doc{"Reading": 240, "DataSourceUri": "/redfish/v1/Chassis/1/Sensors/CPU"},
				"EnergyJoules": doc{"Reading": 5e8}},
			"/Chassis/1/Sensors":     members("/redfish/v1/Chassis/1/Sensors/CPU"),
			"/Chassis/1/Sensors/CPU": {"Id": "CPU", "ReadingType": "Power", "PhysicalContext": "CPU", "Reading": 240},
			"/Chassis/1/Power":       {"PowerControl": []any{doc{"PowerConsumedWatts": 700}}},
		})
		samples, _ := pollRaw(t, "cpu", dir, nil)
		checkHosts(t, samples, []hostWant{{
			// EnvironmentMetrics' 240 W is the CPU's; PowerControl 700.
			chassis: "1", power: 700, powerLabels: []string{"source=power_control"},
			// Its EnergyJoules goes with its power: PowerControl's 700 W
			// integrated over 10 s instead.
			energy: 7000, energyLabels: []string{"method=integrated", "source=power_control"},
		}})
	})
}
