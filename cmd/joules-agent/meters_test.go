package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
	"github.com/joules-energy/joules/meter/metersim"
)

// TestMetersOverSNMPAndModbus runs the built agent against a real SNMP
// agent replaying the recording of an APC rack PDU (snmpsimd), a user's
// profile from a file, and a Modbus TCP meter, and reads what it serves.
func TestMetersOverSNMPAndModbus(t *testing.T) {
	shared := testenv.SharedTestdata(t)
	data := t.TempDir()
	rec, err := os.ReadFile(filepath.Join(shared, "snmp", "apc_ap8959eu3.snmprec"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(data, "rack12.snmprec"), rec, 0o644)
	snmpd := testenv.StartSNMPSim(t, data, "rack12")

	// 42 kW and 1.5e10 J, as a Schneider PM5000 lays them out.
	modbus, err := metersim.NewModbusServer(testenv.FreeAddr(t), metersim.PM5000(
		func(time.Time) float64 { return 42000 }, func(time.Time) float64 { return 1.5e10 }))
	if err != nil {
		t.Fatal(err)
	}
	defer modbus.Stop()

	// A PDU that never answers: it reads what it is sent and says nothing.
	hung, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()

	// The user's own profile: the same PDU's device power, in its unit.
	profile := writeFile(t, "my-pdu.yml", "name: my-pdu\nequipment_type: rack_pdu\nreadings:\n"+
		"  - {reading: power, oid: 1.3.6.1.4.1.318.1.1.26.4.3.1.5.1, unit: 0.01 kW, scale: 10}\n")
	community := writeFile(t, "community", "rack12\n")
	cfg := `labels: {site: dc1, hall: h1, host: mgmt}
sources:
  nvml: {enabled: false}
  node: {enabled: false}
  snmp:
    - {name: pdu-apc, address: "` + snmpd.Addr + `", community_file: ` + community + `, profile: apc-rpdu2, role: pdu_output, interval: 2s, timeout: 1s}
    - {name: pdu-mine, address: "` + snmpd.Addr + `", community_file: ` + community + `, profile_file: ` + profile + `, role: pdu_output, interval: 2s, timeout: 1s}
    - {name: pdu-hung, address: "` + hung.LocalAddr().String() + `", profile: apc-rpdu2, role: pdu_output, interval: 2s, timeout: 500ms}
  modbus:
    - {name: main, address: "` + modbus.Addr() + `", register_map: schneider-pm5000, role: facility_input, interval: 2s, timeout: 1s}
`
	file := writeFile(t, "agent.yml", cfg)
	if out, err := exec.Command(agentBin, "--config.check", "--config.file="+file).CombinedOutput(); err != nil ||
		strings.Contains(string(out), "rack12") || !strings.Contains(string(out), "community_file") {
		t.Fatalf("--config.check must pass, name the community file and never show the community: %v\n%s", err, out)
	}
	a := startAgent(t, "--config.file="+file)
	body := a.scrapeWhen(t, func(b string) bool {
		return strings.Contains(b, `joules_snmp_equipment_power_watts{device="pdu-apc"`) && strings.Contains(b, `joules_snmp_equipment_power_watts{device="pdu-mine"`) &&
			strings.Contains(b, `joules_modbus_equipment_power_watts{device="main"`) && strings.Contains(b, `joules_snmp_poll_errors_total{device="pdu-hung"`) &&
			integratedAbove(b, "pdu-mine", 0)
	})
	// rPDU2DeviceStatusPower.1 = 27 (0.01 kW), rPDU2DeviceStatusEnergy.1 = 19677 (0.1 kWh).
	for _, c := range []struct {
		name     string
		want     float64
		matchers []string
	}{
		{"joules_snmp_equipment_power_watts", 270, []string{`device="pdu-apc"`, `equipment="1"`, `equipment_type="rack_pdu"`, `role="pdu_output"`, `site="dc1"`}},
		{"joules_snmp_equipment_energy_joules_total", 19677 * 360000, []string{`device="pdu-apc"`, `method="counter"`}},
		{"joules_snmp_phase_voltage_volts", 231, []string{`device="pdu-apc"`, `phase="1"`}},
		{"joules_snmp_equipment_power_watts", 270, []string{`device="pdu-mine"`}},
		{"joules_modbus_equipment_power_watts", 42000, []string{`device="main"`, `equipment_type="meter"`, `role="facility_input"`}},
		{"joules_modbus_equipment_energy_joules_total", 4166666 * 3600, []string{`device="main"`, `method="counter"`}},
		{"joules_snmp_up", 1, []string{`device="pdu-apc"`}},
		{"joules_modbus_up", 1, []string{`device="main"`}},
		{"joules_source_up", 1, []string{`source="snmp"`, `target="pdu-apc"`}},
		{"joules_source_up", 1, []string{`source="modbus"`, `target="main"`}},
		// The hung PDU is down, for want of an answer; the others are not held up.
		{"joules_snmp_up", 0, []string{`device="pdu-hung"`}},
		{"joules_source_up", 0, []string{`source="snmp"`, `target="pdu-hung"`}},
	} {
		if got := metricValue(t, body, c.name, c.matchers...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.matchers, got, c.want)
		}
	}
	// The user's profile has no energy counter: its power is integrated
	// (the exposition was awaited until it rose above 0).
	if got := metricValue(t, body, "joules_snmp_equipment_energy_joules_total", `device="pdu-mine"`, `method="integrated"`); got <= 0 {
		t.Errorf("integrated energy %v", got)
	}
	if got := metricValue(t, body, "joules_snmp_poll_errors_total", `device="pdu-hung"`, `reason="timeout"`); got < 1 {
		t.Errorf("the hung PDU's timeouts: %v", got)
	}
	promtool := testenv.Tool(t, "promtool", "apt-get install -y prometheus")
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = strings.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// integratedAbove says whether the exposition has device's integrated
// energy above min.
func integratedAbove(body, device string, min float64) bool {
	for _, line := range strings.Split(body, "\n") {
		m := sampleLine.FindStringSubmatch(line)
		if m == nil || m[1] != "joules_snmp_equipment_energy_joules_total" || !strings.Contains(m[2], `device="`+device+`"`) || !strings.Contains(m[2], `method="integrated"`) {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		return err == nil && v > min
	}
	return false
}

// TestConfigCheckNamesABadProfileOrRegisterMap: --config.check loads every
// meter's profile or register map and names what is wrong, with the
// entry's line.
func TestConfigCheckNamesABadProfileOrRegisterMap(t *testing.T) {
	bad := writeFile(t, "bad.yml", "name: x\nequipment_type: rack_pdu\nreadings: [{reading: power, oid: 1.3.6, scale: 1, colour: red}]\n")
	key := writeFile(t, "key", "a-long-enough-key\n")
	cfg := writeFile(t, "agent.yml", `sources:
  nvml: {enabled: false}
  node: {enabled: false}
  snmp:
    - {name: pdu-1, address: 10.0.0.20, profile: apc-rpdu3, role: pdu_output}
    - {name: pdu-2, address: 10.0.0.21, profile_file: `+bad+`, role: pdu_output}
    - {name: ups, address: 10.0.0.22, profile: ups-mib, role: ups_output, version: 3, v3: {username: u, auth_protocol: SHA1, auth_password_file: `+key+`, priv_password_file: `+key+`}}
  modbus:
    - {name: m1, address: 10.0.0.30, register_map: schneider-pm9000, role: facility_input}
`)
	out, err := exec.Command(agentBin, "--config.check", "--config.file="+cfg).CombinedOutput()
	if exitCode(err) == 0 {
		t.Fatalf("--config.check passed:\n%s", out)
	}
	for _, want := range []string{
		`line 5: sources.snmp "pdu-1": snmp profile "apc-rpdu3" is not one the agent ships (apc-rpdu2, apc-ups, eaton-epdu, raritan-pdu2, sentry4, ups-mib, vertiv-geist): name one of them, or give profile_file`,
		`line 6: sources.snmp "pdu-2": ` + bad + `: `, `field colour not found`,
		`line 7: sources.snmp "ups": v3 auth_protocol "SHA1" is not one of MD5, SHA, SHA224, SHA256, SHA384, SHA512`,
		`line 9: sources.modbus "m1": modbus register map "schneider-pm9000" is not one the agent ships (schneider-pm5000, socomec-diris, sunspec-meter)`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--config.check does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "a-long-enough-key") {
		t.Error("--config.check shows an SNMP key")
	}
}
