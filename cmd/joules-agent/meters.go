package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/internal/config"
	"github.com/joules-energy/joules/internal/energy"
	"github.com/joules-energy/joules/meter"
	"github.com/joules-energy/joules/modbus"
	"github.com/joules-energy/joules/snmp"
)

// meterDevice is one configured SNMP or Modbus device, ready to poll.
type meterDevice struct {
	protocol, name, address, role, equipment string
	maxWatts                                 float64
	interval                                 time.Duration
	dev                                      meter.Device
	err                                      error // the entry could not be made a device
	line                                     int   // of the entry in the config file
}

// snmpDevice makes the device of a sources.snmp entry: its profile
// loaded, its secrets read.
func snmpDevice(s config.SNMPSource) (meter.Device, string, error) {
	var profile *snmp.Profile
	var err error
	if s.ProfileFile != "" {
		profile, err = snmp.LoadProfile(s.ProfileFile)
	} else {
		profile, err = snmp.ShippedProfile(s.Profile.Value)
	}
	if err != nil {
		return nil, "", err
	}
	community, auth, priv, err := s.Secrets()
	if err != nil {
		return nil, "", err
	}
	v := s.V3
	dev, err := snmp.NewDevice(snmp.Config{Address: s.Address.Value, Version: s.Version.Value, Community: community,
		Timeout: s.Timeout.Duration, Retries: *s.Retries,
		V3: snmp.V3{Username: v.Username, SecurityLevel: v.SecurityLevel, AuthProtocol: v.AuthProtocol, AuthPassword: auth,
			PrivProtocol: v.PrivProtocol, PrivPassword: priv, ContextName: v.ContextName}}, profile)
	if err != nil {
		return nil, "", err
	}
	return dev, profile.EquipmentType, nil
}

// modbusDevice makes the device of a sources.modbus entry, its register
// map loaded.
func modbusDevice(m config.ModbusSource) (meter.Device, string, error) {
	var regs *modbus.Map
	var err error
	if m.RegisterMapFile != "" {
		regs, err = modbus.LoadMap(m.RegisterMapFile)
	} else {
		regs, err = modbus.ShippedMap(m.RegisterMap.Value)
	}
	if err != nil {
		return nil, "", err
	}
	dev, err := modbus.NewDevice(modbus.Config{Address: m.Address.Value, UnitID: uint8(m.UnitID), Timeout: m.Timeout.Duration}, regs)
	if err != nil {
		return nil, "", err
	}
	return dev, regs.EquipmentType, nil
}

// checkMeters says which meters' devices could not be made, so that
// --config.check names a profile or register map that does not load, and
// what is wrong in it.
func checkMeters(file string, meters []meterDevice) error {
	var errs []error
	for _, d := range meters {
		if d.err != nil {
			err := fmt.Errorf("line %d: sources.%s %q: %w", d.line, d.protocol, d.name, d.err)
			if file != "" {
				err = fmt.Errorf("%s: %w", file, err)
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// meterDevices makes a device of every sources.snmp and sources.modbus
// entry; one that cannot be made carries its error.
func meterDevices(cfg config.Agent) []meterDevice {
	var out []meterDevice
	for _, s := range cfg.Sources.SNMP {
		d := meterDevice{protocol: "snmp", name: s.Name.Value, address: s.Address.Value, role: s.Role.Value, maxWatts: s.MaxPowerWatts, interval: s.Interval.Duration, line: s.Name.Line}
		d.dev, d.equipment, d.err = snmpDevice(s)
		out = append(out, d)
	}
	for _, m := range cfg.Sources.Modbus {
		d := meterDevice{protocol: "modbus", name: m.Name.Value, address: m.Address.Value, role: m.Role.Value, maxWatts: m.MaxPowerWatts, interval: m.Interval.Duration, line: m.Name.Line}
		d.dev, d.equipment, d.err = modbusDevice(m)
		out = append(out, d)
	}
	return out
}

// addMeters registers one source per SNMP device and Modbus meter: each
// polled on its own, so a hung meter delays nothing else.
func addMeters(logger *slog.Logger, runner *collector.Runner, meters []meterDevice, counters *energy.Store) ([]*meter.Source, error) {
	var sources []*meter.Source
	for _, d := range meters {
		if d.err != nil {
			return sources, fmt.Errorf("sources.%s %q: %w", d.protocol, d.name, d.err)
		}
		src := meter.NewSource(meter.Config{Protocol: d.protocol, Name: d.name, Role: d.role, EquipmentType: d.equipment, MaxWatts: d.maxWatts,
			Interval: d.interval, Counters: counters, Logger: logger.With("collector", d.protocol, "device", d.name)}, d.dev)
		sources = append(sources, src)
		// The poll's deadline is the interval: a hung meter is given up on in
		// time for its last good values to be published, stale.
		if err := runner.Add(collector.Registration{Name: d.protocol, Target: d.name, Interval: d.interval,
			Timeout: d.interval, StaleAfter: 30 * d.interval, Source: src}); err != nil {
			return sources, err
		}
		logger.Info("meter", "protocol", d.protocol, "device", d.name, "address", d.address, "role", d.role, "equipment_type", d.equipment)
	}
	return sources, nil
}

// probeMeter polls a device once, as the agent will: what it read, or why not.
func probeMeter(ctx context.Context, d meterDevice) (string, error) {
	if d.err != nil {
		return "", d.err
	}
	defer d.dev.Close()
	ctx, cancel := context.WithTimeout(ctx, d.interval)
	defer cancel()
	readings, problems, err := d.dev.Read(ctx)
	if err != nil {
		return "", err
	}
	var power []string
	for _, r := range readings {
		if r.Quantity == meter.Power {
			power = append(power, fmt.Sprintf("%s %g W", r.Row, r.Value))
		}
	}
	if len(power) == 0 {
		return "", fmt.Errorf("answered, but gave no power reading of its profile or register map (%d readings, %d problems): is it the right profile?", len(readings), len(problems))
	}
	found := fmt.Sprintf("%d readings; power: %s", len(readings), strings.Join(power, ", "))
	if len(problems) > 0 {
		found += fmt.Sprintf("; %d not read, first %s: %v", len(problems), problems[0].Reading, problems[0].Err)
	}
	return found, nil
}
