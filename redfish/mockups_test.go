package redfish

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/exporters"
	"github.com/joules-energy/joules/internal/testenv"
	"github.com/joules-energy/joules/redfish/redfishsim"
)

var sharedMockups = []string{"dmtf-public-rackmount1", "dmtf-public-smartnic", "dmtf-public-pdu", "dmtf-public-power-shelf", "gigabyte-h262-z63"}

// pollFixed serves a mockup on a fixed clock and polls it twice: the values
// are then the same on every run, and the second poll is a steady one (no
// discovery).
func pollFixed(t *testing.T, name, dir string, mutate ...func(*Config)) ([]collector.Sample, *Source, *redfishsim.BMC) {
	t.Helper()
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	bmc, src, _ := startBMCWith(t, name, dir, redfishsim.Options{Now: func() time.Time { return at }}, func(c *Config) {
		c.Timeout = 0 // the default
		for _, m := range mutate {
			m(c)
		}
	})
	src.now = func() time.Time { return at }
	if _, err := collectWithin(t, src, 10*time.Second); err != nil {
		t.Fatalf("first poll: %v", err)
	}
	at = at.Add(10 * time.Second)
	samples, err := collectWithin(t, src, 10*time.Second)
	if err != nil {
		t.Fatalf("second poll: %v", err)
	}
	return samples, src, bmc
}

// TestSharedMockupsGolden reads every shared mockup end to end through the
// simulator: host power, energy, PSUs, temperatures, fans and power
// equipment per mockup against a golden file; no duplicate series; promtool
// finds nothing to complain about.
func TestSharedMockupsGolden(t *testing.T) {
	for _, m := range sharedMockups {
		t.Run(m, func(t *testing.T) {
			dir := mockupDir(t, m)
			samples, _, _ := pollFixed(t, m, dir)

			seen := map[string]bool{}
			for _, s := range samples {
				key := s.Name + fmtLabels(s.Labels)
				if seen[key] {
					t.Errorf("duplicate series %s", key)
				}
				seen[key] = true
			}

			var kept []collector.Sample
			for _, s := range samples {
				switch s.Name {
				case "joules_redfish_requests_total", "joules_redfish_last_success_timestamp_seconds":
					continue // depend on the test's own timing
				}
				kept = append(kept, s)
			}
			// Epochs are random names: the golden file freezes their place, not their value.
			text := regexp.MustCompile(`epoch="[0-9a-f]{8}"`).ReplaceAll(exporters.AppendText(nil, kept), []byte(`epoch="00000000"`))
			golden := filepath.Join("testdata", m+".prom")
			if os.Getenv("JOULES_UPDATE_GOLDEN") != "" {
				if err := os.WriteFile(golden, text, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (make golden writes it)", err)
			}
			if !bytes.Equal(text, want) {
				t.Errorf("readings differ from %s (make golden updates it after an intended change):\n%s", golden, text)
			}
			promtool := testenv.Tool(t, "promtool", "apt-get install -y prometheus")
			check := exec.Command(promtool, "check", "metrics")
			check.Stdin = bytes.NewReader(text)
			if out, err := check.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
				t.Errorf("promtool check metrics: %v\n%s", err, out)
			}

			// What the mockup holds decides what must come out.
			hasPower, hasTemps, isEquipment := mockupHolds(t, dir)
			if hasPower && !isEquipment {
				if _, ok := value(samples, "joules_redfish_host_power_watts"); !ok {
					t.Error("mockup has power readings but no host power came out")
				}
				if _, ok := value(samples, "joules_redfish_host_energy_joules_total"); !ok {
					t.Error("no host energy (counter or integrated)")
				}
			}
			if isEquipment {
				if _, ok := value(samples, "joules_redfish_equipment_power_watts"); !ok {
					if _, ok := value(samples, "joules_redfish_equipment_psu_input_power_watts"); !ok {
						t.Error("power equipment without equipment power")
					}
				}
				if _, ok := value(samples, "joules_redfish_host_power_watts"); ok {
					t.Error("a PDU's own chassis reported as host power")
				}
			}
			if hasTemps {
				if _, ok := value(samples, "joules_redfish_temperature_celsius"); !ok {
					t.Error("mockup has temperatures but none came out")
				}
			}
		})
	}
}

func fmtLabels(ls []collector.Label) string {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString("," + l.Name + "=" + l.Value)
	}
	return b.String()
}

// mockupHolds scans a mockup's files for power readings, temperatures and
// PowerEquipment.
func mockupHolds(t *testing.T, dir string) (power, temps, equipment bool) {
	t.Helper()
	_, err := os.Stat(filepath.Join(dir, "PowerEquipment", "index.json"))
	equipment = err == nil
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "index.json" {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		s := string(raw)
		power = power || strings.Contains(s, `"PowerConsumedWatts"`) || strings.Contains(s, `"PowerWatts"`) || strings.Contains(s, `"InputPowerWatts"`) || strings.Contains(s, `"ReadingType": "Power"`)
		temps = temps || strings.Contains(s, `"ReadingCelsius"`) || strings.Contains(s, `"TemperatureReadingsCelsius"`) || strings.Contains(s, `"ReadingType": "Temperature"`)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return power, temps, equipment
}

func TestPowerEquipmentWithRoles(t *testing.T) {
	samples, _, _ := pollFixed(t, "pdu-a", mockupDir(t, "dmtf-public-pdu"), func(c *Config) { c.Role = "pdu_output" })
	if _, ok := value(samples, "joules_redfish_equipment_power_watts", "equipment=1", "equipment_type=rack_pdu", "role=pdu_output"); !ok {
		t.Error("rack PDU power missing or without its role")
	}
	for _, name := range []string{"joules_redfish_outlet_power_watts", "joules_redfish_outlet_energy_joules_total", "joules_redfish_outlet_voltage_volts",
		"joules_redfish_outlet_current_amps", "joules_redfish_circuit_power_watts", "joules_redfish_equipment_energy_joules_total"} {
		if _, ok := value(samples, name, "role=pdu_output"); !ok {
			t.Errorf("%s missing", name)
		}
	}
	if _, ok := value(samples, "joules_redfish_circuit_power_watts", "circuit_type=branch"); !ok {
		t.Error("no branch circuit")
	}
	for _, s := range samples {
		for _, l := range s.Labels {
			if l.Name == "role" && l.Value != "pdu_output" {
				t.Fatalf("%s has role %q", s.Name, l.Value)
			}
		}
	}

	shelf, _, _ := pollFixed(t, "shelf", mockupDir(t, "dmtf-public-power-shelf"), func(c *Config) { c.Role = "it_input" })
	// Of the shelf's six PSUs only Bay 1 has a Metrics resource in the
	// mockup, and its PowerSubsystem link points at Sensors by mistake.
	if _, ok := value(shelf, "joules_redfish_psu_input_power_watts", "chassis=PowerShelf", "psu=Power Supply Bay 1"); !ok {
		t.Error("power shelf PSU not found through the conventional PowerSubsystem path")
	}
	if _, ok := value(shelf, "joules_redfish_circuit_power_watts", "circuit_type=mains", "role=it_input"); !ok {
		t.Error("no mains circuit on the power shelf")
	}
}
