package main

import (
	"fmt"
	"log/slog"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/internal/config"
	"github.com/joules-energy/joules/internal/energy"
	"github.com/joules-energy/joules/meter"
	"github.com/joules-energy/joules/modbus"
	"github.com/joules-energy/joules/snmp"
)

// defaultMeterWatts bounds a meter's energy steps when its entry gives no
// max_power_watts: above any feed a site has.
const defaultMeterWatts = 100e6

// addMeters registers one source per SNMP device and Modbus meter: each
// polled on its own, so a hung meter delays nothing else.
func addMeters(logger *slog.Logger, runner *collector.Runner, cfg config.Agent, counters *energy.Store) ([]*meter.Source, error) {
	var sources []*meter.Source
	add := func(protocol, name, role, equipment string, maxWatts float64, interval config.Duration, dev meter.Device) error {
		if maxWatts <= 0 {
			maxWatts = defaultMeterWatts
		}
		src := meter.NewSource(meter.Config{Protocol: protocol, Name: name, Role: role, EquipmentType: equipment, MaxWatts: maxWatts,
			Interval: interval.Duration, Counters: counters, Logger: logger.With("collector", protocol, "device", name)}, dev)
		sources = append(sources, src)
		// The poll's deadline is the interval: a hung meter is given up on in
		// time for its last good values to be published, stale.
		return runner.Add(collector.Registration{Name: protocol, Target: name, Interval: interval.Duration,
			Timeout: interval.Duration, StaleAfter: 30 * interval.Duration, Source: src})
	}
	for _, s := range cfg.Sources.SNMP {
		profile, err := s.LoadProfile()
		if err != nil {
			return sources, fmt.Errorf("sources.snmp %q: %w", s.Name.Value, err)
		}
		conn, err := s.SNMPConfig()
		if err != nil {
			return sources, fmt.Errorf("sources.snmp %q: %w", s.Name.Value, err)
		}
		dev, err := snmp.NewDevice(conn, profile)
		if err != nil {
			return sources, fmt.Errorf("sources.snmp %q: %w", s.Name.Value, err)
		}
		if err := add("snmp", s.Name.Value, s.Role.Value, profile.EquipmentType, s.MaxPowerWatts, s.Interval, dev); err != nil {
			return sources, err
		}
		logger.Info("SNMP meter", "device", s.Name.Value, "address", s.Address.Value, "profile", profile.Name, "role", s.Role.Value, "version", s.Version.Value)
	}
	for _, m := range cfg.Sources.Modbus {
		regs, err := m.LoadMap()
		if err != nil {
			return sources, fmt.Errorf("sources.modbus %q: %w", m.Name.Value, err)
		}
		dev, err := modbus.NewDevice(modbus.Config{Address: m.Address.Value, UnitID: uint8(m.UnitID), Timeout: m.Timeout.Duration}, regs)
		if err != nil {
			return sources, fmt.Errorf("sources.modbus %q: %w", m.Name.Value, err)
		}
		if err := add("modbus", m.Name.Value, m.Role.Value, regs.EquipmentType, m.MaxPowerWatts, m.Interval, dev); err != nil {
			return sources, err
		}
		logger.Info("Modbus meter", "device", m.Name.Value, "address", m.Address.Value, "register_map", regs.Name, "role", m.Role.Value)
	}
	return sources, nil
}
