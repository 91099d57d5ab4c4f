package redfish

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/stmcginnis/gofish/schemas"

	"github.com/joules-energy/joules/collector"
	"github.com/joules-energy/joules/internal/energy"
)

// poller reads one discovered tree into samples. It keeps, per chassis and
// per equipment, the energy counters and integrators between polls.
type poller struct {
	c    *conn
	base []collector.Label // bmc and role
	now  time.Time
	out  []collector.Sample
	errs []error // resources that failed; the poll goes on without them

	// Energy continuation: counters and integrators by key, persisted.
	store     *energy.Store
	keyPrefix string
	maxGap    time.Duration
	maxWatts  float64 // a meter's bound
	host      bool    // a host's BMC: its chassis are bounded by their PSUs' capacity
	capacity  float64 // the chassis being read: its PSUs' capacity, 0 unknown
	equipment bool    // power equipment is being read: the meter's bound

	hostPower []hostPowerNote // what each host chassis's power came from, logged by the Source
}

func (p *poller) add(name, help string, kind collector.Kind, v float64, extra ...collector.Label) {
	labels := make([]collector.Label, 0, len(p.base)+len(extra))
	labels = append(labels, p.base...)
	labels = append(labels, extra...)
	collector.SortLabels(labels)
	p.out = append(p.out, collector.Sample{Name: name, Help: help, Kind: kind, Value: v, Labels: labels, Time: p.now})
}

func lbl(name, value string) collector.Label { return collector.Label{Name: name, Value: value} }

// get reads one resource. A failure that is the BMC's transport (timeout,
// connection, 5xx, 401 after re-login) ends the poll; one resource that is
// missing or garbled is recorded and skipped.
func (p *poller) get(ctx context.Context, path string, v any) (bool, error) {
	if path == "" {
		return false, nil
	}
	err := p.c.getJSON(ctx, path, v)
	if err == nil {
		return true, nil
	}
	var ge *garbageError
	if statusOf(err) == 404 || errors.As(err, &ge) {
		p.errs = append(p.errs, err)
		return false, nil
	}
	return false, err
}

// defaultHostWatts bounds a host's energy steps where the BMC reports no
// capacity: above any server made.
const defaultHostWatts = 20_000

// bound is what the chassis or meter being read can draw.
func (p *poller) bound() energy.Bound {
	switch {
	case !p.host || p.equipment:
		return energy.Bound{MaxWatts: p.maxWatts}
	case p.capacity > 0:
		return energy.Bound{MaxWatts: 1.1 * p.capacity}
	}
	return energy.Bound{MaxWatts: defaultHostWatts}
}

// counter continues a hardware energy counter (in joules) across resets,
// glitches and agent restarts: the total and its epoch label.
func (p *poller) counter(key string, joules float64) (float64, collector.Label) {
	return p.counterSince(key, joules, "")
}

// counterSince is counter for a reading whose device says when it was last
// reset (a Redfish SensorResetTime): a new reset time is a restart.
func (p *poller) counterSince(key string, joules float64, resetTime string) (float64, collector.Label) {
	total, epoch, _ := p.store.Counter(p.keyPrefix+key, joules, resetTime, p.now, p.bound())
	return total, lbl("epoch", epoch)
}

// integrate integrates power between polls, a gap starting a new epoch:
// the energy and its epoch label.
func (p *poller) integrate(key string, watts float64) (float64, collector.Label) {
	joules, epoch := p.store.Integrate(p.keyPrefix+key, watts, p.now, p.maxGap, p.bound().MaxWatts)
	return joules, lbl("epoch", epoch)
}

const (
	helpHostPower  = "Power drawn by the host at its PSU inputs (AC side), from the best resource the BMC has (label source)."
	helpHostEnergy = "Energy drawn by the host: the BMC's counter (method=\"counter\", continued across BMC resets) or host power integrated over time (method=\"integrated\")."
)

// readChassis reads one chassis: PSUs, power control and power sensors,
// the host's power, energy and capacity chosen from them (hosttotal.go),
// temperatures and fans.
func (p *poller) readChassis(ctx context.Context, ch *chassis) error {
	cl := lbl("chassis", ch.id)
	var env schemas.EnvironmentMetrics
	hasEnv, err := p.get(ctx, ch.envMetrics, &env)
	if err != nil {
		return err
	}
	in := newHostInputs(hasEnv, &env, ch.psus)
	p.capacity, _ = hostCapacity(ch.psus, nil) // the PSU counters' bound; the legacy Power resource may add to it below

	// PSUs of the PowerSubsystem; an empty bay is none.
	for _, psu := range ch.psus {
		if psu.absent {
			continue
		}
		var m schemas.PowerSupplyMetrics
		ok, err := p.get(ctx, psu.path, &m)
		if err != nil {
			return err
		}
		in.addPSU(ok, &m)
		if !ok {
			continue
		}
		pl := lbl("psu", psu.label)
		if v := m.InputPowerWatts.Reading; v != nil {
			p.add("joules_redfish_psu_input_power_watts", "PSU input (AC side) power.", collector.Gauge, *v, cl, pl)
		}
		if v := m.OutputPowerWatts.Reading; v != nil {
			p.add("joules_redfish_psu_output_power_watts", "PSU output (DC side) power.", collector.Gauge, *v, cl, pl)
		}
		if v := m.InputVoltage.Reading; v != nil {
			p.add("joules_redfish_psu_input_voltage_volts", "PSU input line voltage.", collector.Gauge, *v, cl, pl)
		}
		if v := m.EnergykWh.Reading; v != nil {
			total, epoch := p.counterSince(ch.id+"/psu/"+psu.label, *v*3.6e6, m.EnergykWh.SensorResetTime)
			p.add("joules_redfish_psu_energy_joules_total", "PSU input energy from the PSU's own counter (EnergykWh × 3.6e6), continued across resets.", collector.Counter, total, cl, pl, epoch)
		}
	}

	// The legacy Power resource.
	var legacy schemas.Power
	hasLegacy, err := p.get(ctx, ch.power, &legacy)
	if err != nil {
		return err
	}
	if hasLegacy {
		in.addLegacy(&legacy)
		seen := labels{}
		for _, pc := range legacy.PowerControl {
			ctl := lbl("control", seen.unique(firstNonEmpty(pc.Name, pc.MemberID)))
			for _, stat := range []struct {
				name string
				v    *float32
			}{{"consumed", pc.PowerConsumedWatts}, {"average", pc.PowerMetrics.AverageConsumedWatts}, {"min", pc.PowerMetrics.MinConsumedWatts}, {"max", pc.PowerMetrics.MaxConsumedWatts}} {
				if stat.v != nil {
					p.add("joules_redfish_power_control_watts", "Legacy Power resource's PowerControl: consumed power and its average, minimum and maximum over the BMC's interval.",
						collector.Gauge, f32(*stat.v), cl, ctl, lbl("stat", stat.name))
				}
			}
		}
		seen = labels{}
		for _, ps := range legacy.PowerSupplies {
			pl := lbl("psu", seen.unique(firstNonEmpty(ps.Name, ps.MemberID)))
			if ps.PowerInputWatts != nil {
				p.add("joules_redfish_psu_input_power_watts", "PSU input (AC side) power.", collector.Gauge, f32(*ps.PowerInputWatts), cl, pl)
			}
			if ps.PowerOutputWatts != nil {
				p.add("joules_redfish_psu_output_power_watts", "PSU output (DC side) power.", collector.Gauge, f32(*ps.PowerOutputWatts), cl, pl)
			} else if ps.LastPowerOutputWatts != nil {
				p.add("joules_redfish_psu_output_power_watts", "PSU output (DC side) power.", collector.Gauge, f32(*ps.LastPowerOutputWatts), cl, pl)
			}
			if ps.LineInputVoltage != nil {
				p.add("joules_redfish_psu_input_voltage_volts", "PSU input line voltage.", collector.Gauge, f32(*ps.LineInputVoltage), cl, pl)
			}
		}
	}

	// Sensors of power and energy.
	for _, s := range ch.powerSensors {
		var sensor schemas.Sensor
		ok, err := p.get(ctx, s.path, &sensor)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		in.addSensor(s, &sensor)
		if sensor.Reading != nil && sensor.ReadingType == schemas.PowerReadingType {
			p.add("joules_redfish_sensor_power_watts", "A power Sensor of the chassis.", collector.Gauge, *sensor.Reading, cl, lbl("sensor", s.label), lbl("physical_context", string(sensor.PhysicalContext)))
		}
	}
	if err := p.readCitedSensors(ctx, in); err != nil {
		return err
	}

	if !ch.equipment { // a PDU's or power shelf's own chassis: its power is the equipment's
		var legacyDoc *schemas.Power
		if hasLegacy {
			legacyDoc = &legacy
		}
		p.publishHost(ch, in, legacyDoc)
	}
	return p.readThermal(ctx, ch, cl)
}

// f32 widens a float32 reading without binary noise: 271.93 stays 271.93,
// not 271.92999267578125.
func f32(v float32) float64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(v), 'g', -1, 32), 64)
	return f
}

func lastSegment(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// readThermal reads temperatures and fans. Temperatures come from the
// ThermalMetrics readings, then from Sensors of ReadingType Temperature that
// those readings did not already cite (DataSourceUri), and from the legacy
// Thermal resource only when neither newer resource gave any: a BMC that
// serves both generations describes the same sensors twice.
func (p *poller) readThermal(ctx context.Context, ch *chassis, cl collector.Label) error {
	const help = "Temperature reported by the BMC."
	names := labels{}
	cited := map[string]bool{}
	done := false
	if ch.thermalMetrics != "" {
		var tm schemas.ThermalMetrics
		ok, err := p.get(ctx, ch.thermalMetrics, &tm)
		if err != nil {
			return err
		}
		for _, r := range tm.TemperatureReadingsCelsius {
			if !ok || r.Reading == nil {
				continue
			}
			cited[r.DataSourceURI] = true
			p.add("joules_redfish_temperature_celsius", help, collector.Gauge, *r.Reading, cl,
				lbl("sensor", names.unique(firstNonEmpty(r.DeviceName, lastSegment(r.DataSourceURI)))), lbl("physical_context", string(r.PhysicalContext)))
			done = true
		}
	}
	for _, s := range ch.tempSensors {
		if cited[s.path] {
			continue
		}
		var sensor schemas.Sensor
		ok, err := p.get(ctx, s.path, &sensor)
		if err != nil {
			return err
		}
		if ok && sensor.Reading != nil {
			p.add("joules_redfish_temperature_celsius", help, collector.Gauge, *sensor.Reading, cl, lbl("sensor", names.unique(s.label)), lbl("physical_context", string(sensor.PhysicalContext)))
			done = true
		}
	}
	var legacy schemas.Thermal
	hasLegacy := false
	if ch.thermal != "" && (!done || len(ch.fans) == 0) {
		var err error
		if hasLegacy, err = p.get(ctx, ch.thermal, &legacy); err != nil {
			return err
		}
	}
	if !done && hasLegacy {
		for _, t := range legacy.Temperatures {
			if t.ReadingCelsius != nil {
				p.add("joules_redfish_temperature_celsius", help, collector.Gauge, *t.ReadingCelsius, cl,
					lbl("sensor", names.unique(firstNonEmpty(t.Name, t.MemberID))), lbl("physical_context", string(t.PhysicalContext)))
			}
		}
	}
	// Fans: the ThermalSubsystem's, else the legacy ones.
	if len(ch.fans) > 0 {
		for _, f := range ch.fans {
			var fan schemas.Fan
			ok, err := p.get(ctx, f.path, &fan)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			fl := lbl("fan", f.label)
			if v := fan.SpeedPercent.Reading; v != nil {
				p.add("joules_redfish_fan_speed_ratio", "Fan speed as a share of its maximum.", collector.Gauge, *v/100, cl, fl)
			}
			if v := fan.SpeedPercent.SpeedRPM; v != nil {
				p.add("joules_redfish_fan_speed_rpm", "Fan speed.", collector.Gauge, *v, cl, fl)
			}
		}
	} else if hasLegacy {
		seen := labels{}
		for _, f := range legacy.Fans {
			if f.Reading == nil {
				continue
			}
			//lint:ignore SA1019 firmware older than Thermal v1.1 names fans only in FanName
			fl := lbl("fan", seen.unique(firstNonEmpty(f.Name, f.FanName, f.MemberID)))
			if f.ReadingUnits == schemas.PercentReadingUnits {
				p.add("joules_redfish_fan_speed_ratio", "Fan speed as a share of its maximum.", collector.Gauge, float64(*f.Reading)/100, cl, fl)
			} else {
				p.add("joules_redfish_fan_speed_rpm", "Fan speed.", collector.Gauge, float64(*f.Reading), cl, fl)
			}
		}
	}
	return nil
}
