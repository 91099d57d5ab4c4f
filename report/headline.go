package report

import (
	"maps"
	"slices"

	"github.com/joules-energy/joules/internal/schema"
)

// itPoints names where a PUE's IT energy was measured, as the headline
// says it (the field it_meter of the accounting's PUE points).
var itPoints = map[string]string{
	schema.RoleUPSOutput: "UPS output",
	schema.RolePDUOutput: "PDU output",
	schema.RoleITInput:   "IT equipment input (meters)",
	schema.ITMeterHosts:  "IT equipment input (the hosts' BMCs)",
	"mixed":              "mixed measurement points",
}

// headline builds the first screen: one set of numbers over the same
// windows, those with a PUE (every window where none has one), so that
// each can be worked out from the others on the page.
func (b *builder) headline(r *Report) {
	h := &r.Headline
	h.Of = r.PUE.Windows
	h.PUEName = r.PUE.Name
	var sel []window
	for _, w := range b.windowsRead {
		if w.pue != nil && w.pue.ok {
			sel = append(sel, w)
		}
	}
	withPUE := len(sel) > 0
	if !withPUE {
		sel = b.windowsRead
		h.Reason = r.PUE.Reason
	}
	h.Windows = len(sel)
	var facility, it, hosts, cov, gpu, cpu float64
	meter := ""
	h.Category = 3
	if withPUE { // the range's PUE is of the same windows
		h.Category, h.Estimate, meter = r.PUE.Category, r.PUE.Estimate, r.PUE.ITMeter
	}
	units := map[string]float64{}
	for _, w := range sel {
		hosts += w.it
		gpu += w.gpu
		cpu += w.cpu
		h.HostsLowerBound = h.HostsLowerBound || w.lowerBound
		for u, v := range w.work {
			units[u] += v.work
		}
		if withPUE {
			facility += w.pue.facility
			it += w.pue.it
			cov += w.pue.coverage
		} else {
			cov += w.itCoverage
		}
	}
	h.HostsKWh = hosts / JoulesPerKWh
	if h.Windows > 0 {
		h.Coverage = cov / float64(h.Windows)
	}
	if withPUE {
		f := facility / JoulesPerKWh
		h.FacilitykWh = &f
		h.ITkWh = it / JoulesPerKWh
		pue := facility / it
		h.PUE = &pue
		h.ITPoint = itPoints[meter]
		if meter == schema.ITMeterHosts && h.Estimate {
			h.ITPoint = "the hosts, partly their GPUs + CPU (an estimate)"
		}
		if meter != schema.ITMeterHosts {
			rem := h.ITkWh - h.HostsKWh
			h.RemainderKWh = &rem
			if h.ITkWh > 0 {
				share := rem / h.ITkWh
				h.RemainderShare = &share
			}
		}
	} else {
		h.Category = 0
		h.ITkWh = h.HostsKWh
		h.ITPoint = "the hosts' BMCs"
		if h.HostsLowerBound {
			h.ITPoint = "the hosts, partly their GPUs + CPU (a lower bound)"
		}
	}
	for _, u := range slices.Sorted(maps.Keys(units)) {
		hw := HeadlineWork{Unit: u, Work: units[u]}
		if h.FacilitykWh != nil && *h.FacilitykWh > 0 {
			v := hw.Work / (*h.FacilitykWh * JoulesPerKWh)
			hw.PerFacilityJoule = &v
		}
		if hosts > 0 {
			v := hw.Work / hosts
			hw.PerHostJoule = &v
		}
		h.Work = append(h.Work, hw)
	}
	b.powerPath(r, sel, withPUE, facility, gpu, cpu)
}

// powerPath lists the energy at each point of the power path over the
// headline's windows, from the facility meter down to the GPUs and CPUs.
func (b *builder) powerPath(r *Report, sel []window, withPUE bool, facility, gpu, cpu float64) {
	type acc struct{ j, cov float64 }
	roles := map[string]*acc{}
	for _, w := range sel {
		for role, m := range w.meters {
			a := roles[role]
			if a == nil {
				a = &acc{}
				roles[role] = a
			}
			j, cov := m.joules()
			a.j += j
			a.cov += cov
		}
	}
	n := float64(max(1, len(sel)))
	for _, step := range []struct{ role, name string }{
		{schema.RoleFacilityInput, "Facility input"}, {schema.RoleUPSOutput, "UPS output"},
		{schema.RolePDUOutput, "PDU output"}, {schema.RoleITInput, "IT equipment input (meters)"},
	} {
		a := roles[step.role]
		if a == nil {
			continue
		}
		j := a.j
		if step.role == schema.RoleFacilityInput && withPUE {
			j = facility // what the PUE has: site-wide meters where there are any
		}
		r.PowerPath = append(r.PowerPath, PathStep{Name: step.name, Role: step.role, KWh: j / JoulesPerKWh, Coverage: a.cov / n})
	}
	hostCov := 0.0
	for _, w := range sel {
		hostCov += w.itCoverage
	}
	r.PowerPath = append(r.PowerPath, PathStep{Name: "Hosts (their BMCs)", Role: "hosts", KWh: r.Headline.HostsKWh, Coverage: hostCov / n})
	switch {
	case gpu > 0 && cpu > 0:
		r.PowerPath = append(r.PowerPath, PathStep{Name: "GPUs + CPUs (their own counters)", Role: "components", KWh: (gpu + cpu) / JoulesPerKWh})
	case gpu > 0:
		r.PowerPath = append(r.PowerPath, PathStep{Name: "GPUs (no CPU energy reported)", Role: "components", KWh: gpu / JoulesPerKWh})
	case cpu > 0:
		r.PowerPath = append(r.PowerPath, PathStep{Name: "CPUs (no GPU energy reported)", Role: "components", KWh: cpu / JoulesPerKWh})
	}
}
