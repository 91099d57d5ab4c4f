package redfish

import (
	"strings"

	"github.com/stmcginnis/gofish/schemas"

	"github.com/joules-energy/joules/collector"
)

// The host's chosen power and energy, its capacity and where its power
// came from, as samples; and the log line for a host without a total.

const (
	helpComponentPower = "Power of a chassis contained in the host's (a GPU baseboard, a card): part of the host's power, not added to it."
	helpPowerSource    = "Where the host's power total comes from (label source, and sensor for a Sensor); source=\"none\" when the BMC reports no reading that is the host's total and only its components are published."
	helpCapacity       = "The most the host's PSUs can deliver (sum of their PowerCapacityWatts, else PowerControl's): an upper bound, lower in practice with redundant PSUs."
)

// hostPowerNote is what one host chassis's power came from this poll, for
// the Source to log when it changes.
type hostPowerNote struct {
	chassis  string
	total    *hostTotal
	rejected []string
}

// publishHost adds a chassis's total power and, for a host, its energy,
// capacity and where the power came from.
func (p *poller) publishHost(ch *chassis, in *hostInputs, legacy *schemas.Power) {
	cl := lbl("chassis", ch.id)
	power := in.choosePower(ch.host)
	if !ch.host {
		if t := power.total; t != nil {
			p.add("joules_redfish_component_power_watts", helpComponentPower, collector.Gauge, t.value, append(t.labels(), cl, lbl("chassis_type", ch.chassisType))...)
		}
		return
	}
	if power.total == nil && !in.readAny && hasPowerResources(ch) {
		return // every power resource failed: a broken BMC, not one without a total
	}
	capacity, ok := hostCapacity(ch.psus, legacy)
	if ok {
		p.add("joules_redfish_host_power_capacity_watts", helpCapacity, collector.Gauge, capacity, cl)
	}
	p.capacity = capacity // bounds the host's energy steps
	p.hostPower = append(p.hostPower, hostPowerNote{chassis: ch.id, total: power.total, rejected: power.rejected})
	if t := power.total; t != nil {
		p.add("joules_redfish_host_power_source_info", helpPowerSource, collector.Gauge, 1, append(t.labels(), cl)...)
		p.add("joules_redfish_host_power_watts", helpHostPower, collector.Gauge, t.value, append(t.labels(), cl, lbl("chassis_type", ch.chassisType))...)
	} else {
		p.add("joules_redfish_host_power_source_info", helpPowerSource, collector.Gauge, 1, cl, lbl("source", srcNone))
	}
	energy := in.chooseEnergy(power.envRejected)
	switch {
	case energy.total != nil:
		t := energy.total
		total, epoch := p.counterSince(ch.id+"/host/"+t.key(), t.value, t.resetTime)
		p.add("joules_redfish_host_energy_joules_total", helpHostEnergy, collector.Counter, total, append(t.labels(), cl, lbl("method", "counter"), epoch)...)
	case power.total != nil:
		t := power.total
		joules, epoch := p.integrate(ch.id+"/host/"+t.key(), t.value)
		p.add("joules_redfish_host_energy_joules_total", helpHostEnergy, collector.Counter, joules, append(t.labels(), cl, lbl("method", "integrated"), epoch)...)
	}
}

func hasPowerResources(ch *chassis) bool {
	if ch.envMetrics != "" || ch.power != "" || len(ch.powerSensors) > 0 {
		return true
	}
	for _, psu := range ch.psus {
		if !psu.absent {
			return true
		}
	}
	return false
}

// logHostPower says, once per change, that a host chassis has no power
// total (the BMC, the chassis and why each candidate was passed over), and
// when it has one again.
func (s *Source) logHostPower(notes []hostPowerNote) {
	if s.noTotal == nil {
		s.noTotal = map[string]bool{}
	}
	for _, n := range notes {
		switch {
		case n.total == nil && !s.noTotal[n.chassis]:
			s.noTotal[n.chassis] = true
			s.log.Info("no reading of this BMC is the host's total power; publishing its components only, without host power and energy",
				"bmc", s.cfg.Name, "chassis", n.chassis, "passed_over", strings.Join(n.rejected, "; "))
		case n.total != nil && s.noTotal[n.chassis]:
			delete(s.noTotal, n.chassis)
			s.log.Info("host total power found", "bmc", s.cfg.Name, "chassis", n.chassis, "source", n.total.String())
		}
	}
}

// hostCapacity is the most the host's PSUs can deliver: the sum of the
// installed PowerSubsystem PSUs' PowerCapacityWatts, else the legacy PSUs',
// else PowerControl[0].PowerCapacityWatts; each only when every installed
// PSU reports one (a partial sum is no upper bound). 0 is no capacity.
func hostCapacity(psus []psuRef, legacy *schemas.Power) (float64, bool) {
	var sum psuSum
	for _, psu := range psus {
		if !psu.absent {
			sum.add(positive(psu.capacity))
		}
	}
	if sum.complete() {
		return sum.total, true
	}
	if legacy == nil {
		return 0, false
	}
	sum = psuSum{}
	for _, ps := range legacy.PowerSupplies {
		if ps.Status.State != schemas.AbsentState {
			sum.add(positive32(ps.PowerCapacityWatts))
		}
	}
	if sum.complete() {
		return sum.total, true
	}
	if len(legacy.PowerControl) > 0 {
		if v := positive32(legacy.PowerControl[0].PowerCapacityWatts); v != nil {
			return *v, true
		}
	}
	return 0, false
}

// positive is v when it is above 0, else nil (not reported).
func positive(v float64) *float64 {
	if v > 0 {
		return &v
	}
	return nil
}

func positive32(v *float32) *float64 {
	if v == nil {
		return nil
	}
	return positive(f32(*v))
}
