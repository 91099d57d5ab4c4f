package config

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/joules-energy/joules/modbus"
	"github.com/joules-energy/joules/snmp"
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
	Retries       int      `yaml:"retries"`
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
	if s.Retries == 0 {
		s.Retries = 1
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
	if _, err := s.LoadProfile(); err != nil {
		errs = append(errs, fmt.Errorf("%s: sources.snmp %q: %w", lineOf(s.Profile.Line), s.Name.Value, err))
	}
	switch s.Version.Value {
	case "2c":
		if s.Community != "" && s.CommunityFile != "" {
			errs = append(errs, fmt.Errorf("%s: sources.snmp %q: give community or community_file, not both", at, s.Name.Value))
		}
		if _, err := s.community(); err != nil {
			errs = append(errs, fmt.Errorf("%s: sources.snmp %q: %w", at, s.Name.Value, err))
		}
	case "3":
		v := s.V3
		if v.Username == "" {
			errs = append(errs, fmt.Errorf("%s: sources.snmp %q: v3.username is required for version 3", at, s.Name.Value))
		}
		if !slices.Contains(snmp.Levels, v.SecurityLevel) {
			errs = append(errs, fmt.Errorf("%s: sources.snmp %q: v3.security_level %q is not one of %s", at, s.Name.Value, v.SecurityLevel, strings.Join(snmp.Levels, ", ")))
		}
		if v.SecurityLevel != "noAuthNoPriv" {
			if !slices.Contains(snmp.AuthProtocols, v.AuthProtocol) {
				errs = append(errs, fmt.Errorf("%s: sources.snmp %q: v3.auth_protocol %q is not one of %s", at, s.Name.Value, v.AuthProtocol, strings.Join(snmp.AuthProtocols, ", ")))
			}
			if v.AuthPasswordFile == "" {
				errs = append(errs, fmt.Errorf("%s: sources.snmp %q: v3.auth_password_file is required at %s (keys are never written in the config)", at, s.Name.Value, v.SecurityLevel))
			}
		}
		if v.SecurityLevel == "authPriv" {
			if !slices.Contains(snmp.PrivProtocols, v.PrivProtocol) {
				errs = append(errs, fmt.Errorf("%s: sources.snmp %q: v3.priv_protocol %q is not one of %s", at, s.Name.Value, v.PrivProtocol, strings.Join(snmp.PrivProtocols, ", ")))
			}
			if v.PrivPasswordFile == "" {
				errs = append(errs, fmt.Errorf("%s: sources.snmp %q: v3.priv_password_file is required at authPriv", at, s.Name.Value))
			}
		}
		if _, err := s.SNMPConfig(); err != nil && v.Username != "" {
			errs = append(errs, fmt.Errorf("%s: sources.snmp %q: %w", at, s.Name.Value, err))
		}
	default:
		errs = append(errs, fmt.Errorf("%s: sources.snmp %q: version %q must be 2c or 3", lineOf(s.Version.Line), s.Name.Value, s.Version.Value))
	}
	return errors.Join(errs...)
}

// LoadProfile returns the entry's profile: shipped, or from its file.
func (s SNMPSource) LoadProfile() (*snmp.Profile, error) {
	switch {
	case s.Profile.Value != "" && s.ProfileFile != "":
		return nil, errors.New("give profile or profile_file, not both")
	case s.ProfileFile != "":
		return snmp.LoadProfile(s.ProfileFile)
	case s.Profile.Value != "":
		return snmp.ShippedProfile(s.Profile.Value)
	}
	return nil, fmt.Errorf("profile is required: one of %s, or profile_file for your own", strings.Join(snmp.Shipped(), ", "))
}

func (s SNMPSource) community() (string, error) {
	if s.CommunityFile == "" {
		if s.Community == "" {
			return "public", nil
		}
		return s.Community, nil
	}
	c, err := secret(s.CommunityFile, "")
	if err != nil {
		return "", fmt.Errorf("community_file: %w", err)
	}
	return c, nil
}

// SNMPConfig is how the snmp package reaches the device, secrets read.
func (s SNMPSource) SNMPConfig() (snmp.Config, error) {
	cfg := snmp.Config{Address: s.Address.Value, Version: s.Version.Value, Timeout: s.Timeout.Duration, Retries: s.Retries}
	if s.Version.Value != "3" {
		c, err := s.community()
		cfg.Community = c
		return cfg, err
	}
	v := s.V3
	cfg.V3 = snmp.V3{Username: v.Username, SecurityLevel: v.SecurityLevel, AuthProtocol: v.AuthProtocol, PrivProtocol: v.PrivProtocol, ContextName: v.ContextName}
	var err error
	if v.AuthPasswordFile != "" {
		if cfg.V3.AuthPassword, err = secret(v.AuthPasswordFile, ""); err != nil {
			return cfg, fmt.Errorf("v3.auth_password_file: %w", err)
		}
	}
	if v.PrivPasswordFile != "" {
		if cfg.V3.PrivPassword, err = secret(v.PrivPasswordFile, ""); err != nil {
			return cfg, fmt.Errorf("v3.priv_password_file: %w", err)
		}
	}
	// net-snmp and the RFC require keys of at least 8 characters.
	if v.SecurityLevel != "noAuthNoPriv" && len(cfg.V3.AuthPassword) < 8 {
		return cfg, errors.New("v3.auth_password_file: the key must be at least 8 characters (RFC 3414)")
	}
	if v.SecurityLevel == "authPriv" && len(cfg.V3.PrivPassword) < 8 {
		return cfg, errors.New("v3.priv_password_file: the key must be at least 8 characters (RFC 3414)")
	}
	return cfg, nil
}

func (m ModbusSource) validate(names map[string]bool) error {
	errs := meterCommon("sources.modbus", m.Name, m.Address, m.Role, m.Interval, m.Timeout, m.MaxPowerWatts, names)
	if m.UnitID < 0 || m.UnitID > 255 {
		errs = append(errs, fmt.Errorf("sources.modbus %q: unit_id %d must be 0 to 255 (1 for most meters; a gateway's downstream address otherwise)", m.Name.Value, m.UnitID))
	}
	if _, err := m.LoadMap(); err != nil {
		errs = append(errs, fmt.Errorf("%s: sources.modbus %q: %w", lineOf(m.RegisterMap.Line), m.Name.Value, err))
	}
	return errors.Join(errs...)
}

// LoadMap returns the entry's register map: shipped, or from its file.
func (m ModbusSource) LoadMap() (*modbus.Map, error) {
	switch {
	case m.RegisterMap.Value != "" && m.RegisterMapFile != "":
		return nil, errors.New("give register_map or register_map_file, not both")
	case m.RegisterMapFile != "":
		return modbus.LoadMap(m.RegisterMapFile)
	case m.RegisterMap.Value != "":
		return modbus.ShippedMap(m.RegisterMap.Value)
	}
	return nil, fmt.Errorf("register_map is required: one of %s, or register_map_file for your own", strings.Join(modbus.ShippedMaps(), ", "))
}
