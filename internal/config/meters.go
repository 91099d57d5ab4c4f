package config

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// SNMPSource is one rack PDU or UPS read over SNMP.
type SNMPSource struct {
	Name    String `yaml:"name"`
	Address String `yaml:"address"` // host or host:port (161)
	Version String `yaml:"version"` // 2c (default) or 3
	// Community (v2c): CommunityFile holds it (one line); Community gives
	// it inline, for the read-only "public" of a lab. Default public.
	Community     string   `yaml:"community"`
	CommunityFile string   `yaml:"community_file"`
	V3            SNMPv3   `yaml:"v3"`
	Interval      Duration `yaml:"interval"`
	Timeout       Duration `yaml:"timeout"` // one request
	Retries       *int     `yaml:"retries"` // after a request times out (default 1; 0: none)
	Role          String   `yaml:"role"`
	// Profile names a shipped profile; ProfileFile is the user's own.
	Profile       String  `yaml:"profile"`
	ProfileFile   string  `yaml:"profile_file"`
	MaxPowerWatts float64 `yaml:"max_power_watts"`
}

// SNMPv3 is the user-based security of an SNMP v3 device. The keys are
// read from files, never written in the config.
type SNMPv3 struct {
	Username         string `yaml:"username"`
	SecurityLevel    string `yaml:"security_level"` // authPriv (default), authNoPriv, noAuthNoPriv
	AuthProtocol     string `yaml:"auth_protocol"`  // SHA (default), SHA256, …
	AuthPasswordFile string `yaml:"auth_password_file"`
	PrivProtocol     string `yaml:"priv_protocol"` // AES (default), AES256, …
	PrivPasswordFile string `yaml:"priv_password_file"`
	ContextName      string `yaml:"context_name"`
}

// ModbusSource is one Modbus TCP power meter.
type ModbusSource struct {
	Name     String   `yaml:"name"`
	Address  String   `yaml:"address"` // host or host:port (502)
	UnitID   int      `yaml:"unit_id"` // default 1
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
	Role     String   `yaml:"role"`
	// RegisterMap names a shipped map; RegisterMapFile is the user's own.
	RegisterMap     String  `yaml:"register_map"`
	RegisterMapFile string  `yaml:"register_map_file"`
	MaxPowerWatts   float64 `yaml:"max_power_watts"`
}

// MeterRoles are the roles of an SNMP or Modbus meter: what it feeds.
var MeterRoles = []string{"facility_input", "ups_output", "pdu_output", "it_input"}

func (s *SNMPSource) defaults() {
	if s.Interval.Duration == 0 {
		s.Interval.Duration = 10 * time.Second
	}
	if s.Timeout.Duration == 0 {
		s.Timeout.Duration = min(2*time.Second, s.Interval.Duration/4)
	}
	if s.Version.Value == "" {
		s.Version.Value = "2c"
	}
	if s.Retries == nil {
		one := 1
		s.Retries = &one
	}
	if s.Version.Value == "3" {
		if s.V3.SecurityLevel == "" {
			s.V3.SecurityLevel = "authPriv"
		}
		if s.V3.AuthProtocol == "" && s.V3.SecurityLevel != "noAuthNoPriv" {
			s.V3.AuthProtocol = "SHA"
		}
		if s.V3.PrivProtocol == "" && s.V3.SecurityLevel == "authPriv" {
			s.V3.PrivProtocol = "AES"
		}
	}
}

func (m *ModbusSource) defaults() {
	if m.Interval.Duration == 0 {
		m.Interval.Duration = 10 * time.Second
	}
	if m.Timeout.Duration == 0 {
		m.Timeout.Duration = min(2*time.Second, m.Interval.Duration/4)
	}
	if m.UnitID == 0 {
		m.UnitID = 1
	}
}

// meterCommon checks what every polled meter entry needs: a name unique
// among all meters and BMCs, an address, a role, an interval and timeout.
func meterCommon(section string, name, address, role String, interval, timeout Duration, maxWatts float64, names map[string]bool) []error {
	var errs []error
	at := lineOf(name.Line)
	switch {
	case name.Value == "":
		errs = append(errs, fmt.Errorf("%s: %s: an entry has no name", lineOf(address.Line), section))
	case names[name.Value]:
		errs = append(errs, fmt.Errorf("%s: %s: name %q is already used by another meter or BMC; names label the meter's samples and must be unique", at, section, name.Value))
	}
	names[name.Value] = true
	if address.Value == "" || strings.Contains(address.Value, "://") {
		errs = append(errs, fmt.Errorf("%s: %s %q: address %q must be host or host:port, such as 10.0.0.20 or pdu-a1.example:161", lineOf(address.Line), section, name.Value, address.Value))
	} else if _, _, err := net.SplitHostPort(address.Value); err != nil && strings.Count(address.Value, ":") == 1 {
		errs = append(errs, fmt.Errorf("%s: %s %q: address %q: %w", lineOf(address.Line), section, name.Value, address.Value, err))
	}
	if !slices.Contains(MeterRoles, role.Value) {
		errs = append(errs, fmt.Errorf("%s: %s %q: role %q must be one of %s: what the meter feeds decides the PUE category", lineOf(role.Line), section, name.Value, role.Value, strings.Join(MeterRoles, ", ")))
	}
	if maxWatts < 0 {
		errs = append(errs, fmt.Errorf("%s %q: max_power_watts %g must be positive (watts), or left out for the default", section, name.Value, maxWatts))
	}
	if interval.Duration < time.Second {
		errs = append(errs, fmt.Errorf("%s: %s %q: interval must be at least 1s, got %s", lineOf(interval.Line), section, name.Value, interval.Duration))
	}
	if timeout.Duration <= 0 || timeout.Duration >= interval.Duration {
		errs = append(errs, fmt.Errorf("%s: %s %q: timeout (%s, one request) must be positive and below the interval (%s)", lineOf(timeout.Line), section, name.Value, timeout.Duration, interval.Duration))
	}
	return errs
}

func (s SNMPSource) validate(names map[string]bool) error {
	errs := meterCommon("sources.snmp", s.Name, s.Address, s.Role, s.Interval, s.Timeout, s.MaxPowerWatts, names)
	at := lineOf(s.Name.Line)
	if r := *s.Retries; r < 0 || r > 5 {
		errs = append(errs, fmt.Errorf("%s: sources.snmp %q: retries %d must be 0 to 5: each retry waits another timeout within the interval", at, s.Name.Value, r))
	}
	switch {
	case s.Profile.Value != "" && s.ProfileFile != "":
		errs = append(errs, fmt.Errorf("%s: sources.snmp %q: give profile or profile_file, not both", at, s.Name.Value))
	case s.Profile.Value == "" && s.ProfileFile == "":
		errs = append(errs, fmt.Errorf("%s: sources.snmp %q: profile is required: a shipped profile (apc-rpdu2, ups-mib, …), or profile_file for your own", at, s.Name.Value))
	}
	switch s.Version.Value {
	case "2c":
		if s.Community != "" && s.CommunityFile != "" {
			errs = append(errs, fmt.Errorf("%s: sources.snmp %q: give community or community_file, not both", at, s.Name.Value))
		}
	case "3":
		v := s.V3
		if v.Username == "" {
			errs = append(errs, fmt.Errorf("%s: sources.snmp %q: v3.username is required for version 3", at, s.Name.Value))
		}
		if v.SecurityLevel != "noAuthNoPriv" && v.AuthPasswordFile == "" {
			errs = append(errs, fmt.Errorf("%s: sources.snmp %q: v3.auth_password_file is required at %s (keys are never written in the config)", at, s.Name.Value, v.SecurityLevel))
		}
		if v.SecurityLevel == "authPriv" && v.PrivPasswordFile == "" {
			errs = append(errs, fmt.Errorf("%s: sources.snmp %q: v3.priv_password_file is required at authPriv", at, s.Name.Value))
		}
	default:
		errs = append(errs, fmt.Errorf("%s: sources.snmp %q: version %q must be 2c or 3", lineOf(s.Version.Line), s.Name.Value, s.Version.Value))
	}
	if _, _, _, err := s.Secrets(); err != nil {
		errs = append(errs, fmt.Errorf("%s: sources.snmp %q: %w", at, s.Name.Value, err))
	}
	return errors.Join(errs...)
}

// Secrets reads the entry's community (v2c) or v3 keys from their files.
func (s SNMPSource) Secrets() (community, auth, priv string, err error) {
	if s.Version.Value != "3" {
		switch {
		case s.CommunityFile != "":
			if community, err = secret(s.CommunityFile, ""); err != nil {
				return "", "", "", fmt.Errorf("community_file: %w", err)
			}
		case s.Community != "":
			community = s.Community
		default:
			community = "public"
		}
		return community, "", "", nil
	}
	v := s.V3
	if v.AuthPasswordFile != "" {
		if auth, err = secret(v.AuthPasswordFile, ""); err != nil {
			return "", "", "", fmt.Errorf("v3.auth_password_file: %w", err)
		}
		// RFC 3414 and net-snmp want keys of at least 8 characters.
		if len(auth) < 8 {
			return "", "", "", errors.New("v3.auth_password_file: the key must be at least 8 characters (RFC 3414)")
		}
	}
	if v.PrivPasswordFile != "" {
		if priv, err = secret(v.PrivPasswordFile, ""); err != nil {
			return "", "", "", fmt.Errorf("v3.priv_password_file: %w", err)
		}
		if len(priv) < 8 {
			return "", "", "", errors.New("v3.priv_password_file: the key must be at least 8 characters (RFC 3414)")
		}
	}
	return "", auth, priv, nil
}

func (m ModbusSource) validate(names map[string]bool) error {
	errs := meterCommon("sources.modbus", m.Name, m.Address, m.Role, m.Interval, m.Timeout, m.MaxPowerWatts, names)
	at := lineOf(m.Name.Line)
	if m.UnitID < 0 || m.UnitID > 255 {
		errs = append(errs, fmt.Errorf("%s: sources.modbus %q: unit_id %d must be 0 to 255 (1 for most meters; a gateway's downstream address otherwise)", at, m.Name.Value, m.UnitID))
	}
	switch {
	case m.RegisterMap.Value != "" && m.RegisterMapFile != "":
		errs = append(errs, fmt.Errorf("%s: sources.modbus %q: give register_map or register_map_file, not both", at, m.Name.Value))
	case m.RegisterMap.Value == "" && m.RegisterMapFile == "":
		errs = append(errs, fmt.Errorf("%s: sources.modbus %q: register_map is required: a shipped map (schneider-pm5000, …), or register_map_file for your own", at, m.Name.Value))
	}
	return errors.Join(errs...)
}
