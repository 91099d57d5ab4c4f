package redfish

import (
	"context"

	"github.com/stmcginnis/gofish/schemas"

	"github.com/joules-energy/joules/collector"
)

const helpEquipmentEnergy = "Energy through the equipment: its counter (method=\"counter\") or its power integrated (method=\"integrated\")."

// readEquipment reads one PowerEquipment item: its summary power and energy,
// its circuits (mains, branches, feeders), outlets and, on power shelves,
// its PSUs. The meter's role label says what the power feeds, which decides
// the PUE category downstream.
func (p *poller) readEquipment(ctx context.Context, e *equipment) error {
	p.equipment = true
	defer func() { p.equipment = false }()
	el := []collector.Label{lbl("equipment", e.id), lbl("equipment_type", e.kind)}
	var m schemas.PowerDistributionMetrics
	ok, err := p.get(ctx, e.metrics, &m)
	if err != nil {
		return err
	}
	if ok {
		if v := m.PowerWatts.Reading; v != nil {
			p.add("joules_redfish_equipment_power_watts", "Power through the equipment (its summary metrics).", collector.Gauge, *v, el...)
			if m.EnergykWh.Reading == nil {
				joules, epoch := p.integrate(e.path, *v)
				p.add("joules_redfish_equipment_energy_joules_total", helpEquipmentEnergy, collector.Counter, joules, append(el, lbl("method", "integrated"), epoch)...)
			}
		}
		if v := m.EnergykWh.Reading; v != nil {
			total, epoch := p.counterSince(e.path, *v*3.6e6, m.EnergykWh.SensorResetTime)
			p.add("joules_redfish_equipment_energy_joules_total", helpEquipmentEnergy, collector.Counter, total, append(el, lbl("method", "counter"), epoch)...)
		}
	}
	for _, group := range []struct {
		kind     string
		circuits []named
	}{{"mains", e.mains}, {"branch", e.branches}, {"feeder", e.feeders}} {
		for _, c := range group.circuits {
			var circuit schemas.Circuit
			ok, err := p.get(ctx, c.path, &circuit)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			cl := append([]collector.Label{lbl("circuit", c.label), lbl("circuit_type", group.kind)}, el...)
			p.electrical("circuit", c.path, circuit.PowerWatts.Reading, circuit.EnergykWh.Reading, circuit.Voltage.Reading, circuit.CurrentAmps.Reading, cl)
		}
	}
	for _, o := range e.outlets {
		var outlet schemas.Outlet
		ok, err := p.get(ctx, o.path, &outlet)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		ol := append([]collector.Label{lbl("outlet", o.label)}, el...)
		p.electrical("outlet", o.path, outlet.PowerWatts.Reading, outlet.EnergykWh.Reading, outlet.Voltage.Reading, outlet.CurrentAmps.Reading, ol)
	}
	for _, psu := range e.psus {
		var pm schemas.PowerSupplyMetrics
		ok, err := p.get(ctx, psu.path, &pm)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		pl := append([]collector.Label{lbl("psu", psu.label)}, el...)
		if v := pm.InputPowerWatts.Reading; v != nil {
			p.add("joules_redfish_equipment_psu_input_power_watts", "Input power of a power shelf's PSU.", collector.Gauge, *v, pl...)
		}
		if v := pm.OutputPowerWatts.Reading; v != nil {
			p.add("joules_redfish_equipment_psu_output_power_watts", "Output power of a power shelf's PSU.", collector.Gauge, *v, pl...)
		}
	}
	return nil
}

// electrical adds the power, energy, voltage and current of a circuit or outlet.
func (p *poller) electrical(what, key string, watts, kWh, volts, amps *float64, labels []collector.Label) {
	prefix := "joules_redfish_" + what
	if watts != nil {
		p.add(prefix+"_power_watts", "Power through the "+what+".", collector.Gauge, *watts, labels...)
	}
	if kWh != nil {
		total, epoch := p.counter(key, *kWh*3.6e6)
		p.add(prefix+"_energy_joules_total", "Energy through the "+what+" from its counter (EnergykWh × 3.6e6), continued across resets.",
			collector.Counter, total, append(labels, epoch)...)
	}
	if volts != nil {
		p.add(prefix+"_voltage_volts", "Voltage of the "+what+".", collector.Gauge, *volts, labels...)
	}
	if amps != nil {
		p.add(prefix+"_current_amps", "Current through the "+what+".", collector.Gauge, *amps, labels...)
	}
}
