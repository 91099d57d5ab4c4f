package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSNMPAndModbusEntriesGetTheirDefaults(t *testing.T) {
	cfg, err := LoadAgent(writeConfig(t, `sources:
  snmp:
    - {name: pdu-1, address: 10.0.0.20, profile: apc-rpdu2, role: pdu_output}
  modbus:
    - {name: main, address: "10.0.0.30:1502", register_map: schneider-pm5000, role: facility_input, interval: 5s}
`), "h")
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Sources.SNMP[0]
	if s.Interval.Duration != 10*time.Second || s.Timeout.Duration != 2*time.Second || s.Version.Value != "2c" || *s.Retries != 1 {
		t.Errorf("snmp defaults: %+v", s)
	}
	if community, _, _, err := s.Secrets(); err != nil || community != "public" {
		t.Errorf("community %q, %v", community, err)
	}
	m := cfg.Sources.Modbus[0]
	if m.UnitID != 1 || m.Timeout.Duration != 1250*time.Millisecond {
		t.Errorf("modbus defaults: %+v", m)
	}
}

func TestSNMPv3KeysComeFromFiles(t *testing.T) {
	dir := t.TempDir()
	auth, priv := filepath.Join(dir, "auth"), filepath.Join(dir, "priv")
	os.WriteFile(auth, []byte("an-auth-key-9\n"), 0o600)
	os.WriteFile(priv, []byte("a-priv-key-99\n"), 0o600)
	cfg, err := LoadAgent(writeConfig(t, `sources:
  snmp:
    - name: ups
      address: ups.example
      profile: ups-mib
      role: ups_output
      version: 3
      v3: {username: joules, auth_password_file: `+auth+`, priv_password_file: `+priv+`}
`), "h")
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Sources.SNMP[0]
	_, authKey, privKey, err := s.Secrets()
	if err != nil {
		t.Fatal(err)
	}
	if v := s.V3; v.SecurityLevel != "authPriv" || v.AuthProtocol != "SHA" || v.PrivProtocol != "AES" || authKey != "an-auth-key-9" || privKey != "a-priv-key-99" {
		t.Errorf("v3 %+v, keys %q %q", v, authKey, privKey)
	}
	out, _ := cfg.Effective()
	if strings.Contains(string(out), "an-auth-key-9") {
		t.Error("the effective configuration shows an SNMP key")
	}
}

func TestMeterEntryErrorsNameTheEntryAndWhatToDo(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("abc\n"), 0o600)
	_, err := LoadAgent(writeConfig(t, `sources:
  redfish:
    - {name: pdu-1, endpoint: "https://10.0.0.5"}
  snmp:
    - {name: pdu-1, address: 10.0.0.20, profile: apc-rpdu2, role: pdu_output}
    - {name: pdu-2, address: "snmp://10.0.0.21", profile: apc-rpdu2, role: host}
    - {name: pdu-3, address: 10.0.0.22, profile: apc-rpdu2, profile_file: x.yml, role: pdu_output}
    - {name: pdu-4, address: 10.0.0.23, role: pdu_output}
    - {name: ups, address: 10.0.0.24, profile: ups-mib, role: ups_output, version: 3, v3: {username: u, auth_password_file: `+short+`, priv_password_file: `+short+`}}
    - {name: ups-2, address: 10.0.0.25, profile: ups-mib, role: ups_output, version: 3, v3: {security_level: authPriv}}
    - {name: pdu-5, address: 10.0.0.26, profile: sentry4, role: pdu_output, version: 1}
    - {name: pdu-6, address: 10.0.0.27, profile: sentry4, role: pdu_output, retries: 9}
  modbus:
    - {name: m1, address: 10.0.0.30, role: facility_input, unit_id: 300}
    - {name: m2, address: 10.0.0.31, register_map: schneider-pm5000, role: facility_input, interval: 10s, timeout: 10s}
`), "h")
	if err == nil {
		t.Fatal("a configuration full of mistakes loaded")
	}
	for _, want := range []string{
		`sources.snmp: name "pdu-1" is already used by another meter or BMC`,
		`address "snmp://10.0.0.21" must be host or host:port`,
		`role "host" must be one of facility_input, ups_output, pdu_output, it_input`,
		`give profile or profile_file, not both`,
		`sources.snmp "pdu-4": profile is required`,
		`the key must be at least 8 characters`,
		`v3.username is required for version 3`,
		`v3.auth_password_file is required at authPriv`,
		`version "1" must be 2c or 3`,
		`sources.snmp "pdu-6": retries 9 must be 0 to 5`,
		`unit_id 300 must be 0 to 255`,
		`sources.modbus "m1": register_map is required`,
		`timeout (10s, one request) must be positive and below the interval (10s)`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
}

func TestAccountingMetersNameAnSNMPOrModbusMeterByDevice(t *testing.T) {
	for _, c := range []struct {
		meters, want string
	}{
		{"[{device: pdu-r3a, feeds: {racks: [r3]}}]", ""},
		{"[{bmc: pdu-r1a, device: pdu-r3a}]", "give bmc (a Redfish meter) or device (an SNMP or Modbus one), not both"},
		{"[{hall: h1}]", "bmc or device is required"},
	} {
		tokens := filepath.Join(t.TempDir(), "tokens")
		os.WriteFile(tokens, []byte("a-token\n"), 0o600)
		cfg, err := LoadAggregator(writeConfig(t, "tokens_file: "+tokens+"\ninflux: {url: \"http://127.0.0.1:8086\"}\naccounting:\n  meters: "+c.meters+"\n"))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.meters, err)
		case c.want == "" && cfg.Accounting.Meters[0].MeterName() != "pdu-r3a":
			t.Errorf("%s: name %q", c.meters, cfg.Accounting.Meters[0].MeterName())
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: err %v, want %q", c.meters, err, c.want)
		}
	}
}
