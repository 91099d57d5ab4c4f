// Package sitemodel is a deterministic model of a small AI data centre's
// power: GPU hosts in racks, a PDU per rack, a UPS, cooling and the
// facility meter. Every value is a pure function of the site's seed, the
// host and the wall-clock time, so separate processes (each agent's
// simulated GPUs, the Redfish simulator, the inference simulators) agree
// without talking to each other, and every energy counter is the exact
// integral of its power.
//
// The power chain, at every second:
//
//	host DC      = Σ GPU + CPU + fans + other
//	BMC input    = host DC / PSU efficiency (80 PLUS Titanium curve)
//	PDU output   = Σ BMC inputs of the rack + the rack's switches
//	PDU input    = PDU output + fixed loss + resistive loss
//	UPS output   = Σ PDU inputs
//	UPS input    = UPS output + UPS losses (fixed, linear, quadratic)
//	cooling      = (UPS input + fixed loads) / COP(outdoor temperature) + cooling fixed
//	facility     = UPS input + cooling + fixed loads (lighting, offices)
package sitemodel

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Site describes a simulated site.
type Site struct {
	// Seed makes the site's load: processes given the same seed, host
	// names and servers compute the same numbers.
	Seed   string
	Racks  []Rack
	Params Params // the zero value means DefaultParams
}

// Rack is a rack of hosts behind one PDU.
type Rack struct {
	Name  string
	Hosts []RackHost
}

// RackHost is a host in a rack and its server (a ServerNames name).
type RackHost struct {
	Name, Server string
}

// Params are the site's physics beyond the hosts.
type Params struct {
	RackSwitchWatts float64 // per rack: top-of-rack and management switches, on the PDU, without a BMC

	PDUFixedWatts  float64 // a PDU's own electronics
	PDURatedWatts  float64
	PDULossAtRated float64 // resistive loss at rated load, as a share of it (goes with the square of load)

	UPSRatedWatts float64
	UPSLoss       [3]float64 // loss = rated × (l0 + l1·x + l2·x²), x = output / rated

	CoolingCOP        float64 // heat removed per watt of cooling at CoolingRefCelsius outdoors
	CoolingRefCelsius float64
	CoolingCOPPerC    float64 // COP lost per °C warmer outdoors
	CoolingMinCOP     float64
	CoolingFixedWatts float64 // air handlers' fans and pumps, whatever the load

	FixedWatts float64 // lighting, offices, security: on the facility meter, not the UPS

	OutdoorMeanCelsius, OutdoorSwingCelsius float64 // daily curve, warmest at 15:00 UTC
}

// DefaultParams are a small modern site's: 99.5 % PDUs, a double-conversion
// UPS of 40 kW, chillers with economisers.
func DefaultParams() Params {
	return Params{
		RackSwitchWatts: 400,
		PDUFixedWatts:   15, PDURatedWatts: 17300, PDULossAtRated: 0.004,
		UPSRatedWatts: 40000, UPSLoss: [3]float64{0.012, 0.020, 0.010},
		CoolingCOP: 5, CoolingRefCelsius: 20, CoolingCOPPerC: 0.12, CoolingMinCOP: 1.5, CoolingFixedWatts: 800,
		FixedWatts:         600,
		OutdoorMeanCelsius: 18, OutdoorSwingCelsius: 7,
	}
}

// PDULoss is a PDU's loss at an output power.
func (p Params) PDULoss(output float64) float64 {
	x := output / p.PDURatedWatts
	return p.PDUFixedWatts + p.PDULossAtRated*p.PDURatedWatts*x*x
}

// UPSLossAt is the UPS's loss at an output power.
func (p Params) UPSLossAt(output float64) float64 {
	x := output / p.UPSRatedWatts
	return p.UPSRatedWatts * (p.UPSLoss[0] + p.UPSLoss[1]*x + p.UPSLoss[2]*x*x)
}

// OutdoorCelsius is the outdoor temperature at second tod of the day (UTC).
func (p Params) OutdoorCelsius(tod float64) float64 {
	return p.OutdoorMeanCelsius + p.OutdoorSwingCelsius*math.Sin(2*math.Pi*(tod-9*3600)/day)
}

// COP is the cooling plant's coefficient of performance at an outdoor temperature.
func (p Params) COP(celsius float64) float64 {
	return math.Max(p.CoolingMinCOP, p.CoolingCOP-p.CoolingCOPPerC*(celsius-p.CoolingRefCelsius))
}

// Model is a site's model.
type Model struct {
	site   Site
	hosts  []*Host
	byName map[string]*Host
	rackOf []int // per host, its rack's index
	s      *series
	widest int // of the hosts' series
}

// Quantities of the site's series after one per host (BMC input, mW):
// per rack PDU output and input, then these.
const (
	sUPSOutput = iota
	sUPSInput
	sCooling
	sFixed
	sFacility
	siteParts
)

// New returns the model of a site.
func New(site Site) (*Model, error) {
	if site.Params == (Params{}) {
		site.Params = DefaultParams()
	}
	m := &Model{site: site, byName: map[string]*Host{}}
	racks := map[string]bool{}
	for r, rack := range site.Racks {
		if rack.Name == "" || racks[rack.Name] {
			return nil, fmt.Errorf("rack %q: racks need distinct names", rack.Name)
		}
		racks[rack.Name] = true
		for _, rh := range rack.Hosts {
			server, ok := ServerNamed(rh.Server)
			if !ok {
				return nil, fmt.Errorf("host %s: unknown server %q (known: %v)", rh.Name, rh.Server, ServerNames())
			}
			if rh.Name == "" || m.byName[rh.Name] != nil {
				return nil, fmt.Errorf("host %q: hosts need distinct names", rh.Name)
			}
			h := NewHost(site.Seed, rh.Name, server)
			m.hosts = append(m.hosts, h)
			m.byName[rh.Name] = h
			m.rackOf = append(m.rackOf, r)
			m.widest = max(m.widest, h.s.width)
		}
	}
	if len(m.hosts) == 0 {
		return nil, errors.New("a site needs at least one host")
	}
	m.s = newSeries(len(m.hosts)+2*len(site.Racks)+siteParts, m.step)
	return m, nil
}

// Site returns the site the model was made from, defaults filled in.
func (m *Model) Site() Site { return m.site }

// Host returns a host of the site, or nil.
func (m *Model) Host(name string) *Host { return m.byName[name] }

func (m *Model) idxPDUOutput(r int) int { return len(m.hosts) + 2*r }
func (m *Model) idxPDUInput(r int) int  { return len(m.hosts) + 2*r + 1 }
func (m *Model) idx(part int) int       { return len(m.hosts) + 2*len(m.site.Racks) + part }

func (m *Model) step(tod int, out []int64) {
	p := m.site.Params
	nr := len(m.site.Racks)
	for r := range nr {
		out[m.idxPDUOutput(r)] = milli(p.RackSwitchWatts)
	}
	buf := make([]int64, m.widest) // each host writes what is read of it
	for i, h := range m.hosts {
		v := buf[:h.s.width]
		h.step(tod, v)
		in := v[h.Server.GPUs+hInput]
		out[i] = in
		out[m.idxPDUOutput(m.rackOf[i])] += in
	}
	var upsOut int64
	for r := range nr {
		pduOut := out[m.idxPDUOutput(r)]
		pduIn := pduOut + milli(p.PDULoss(float64(pduOut)/1000))
		out[m.idxPDUInput(r)] = pduIn
		upsOut += pduIn
	}
	upsIn := upsOut + milli(p.UPSLossAt(float64(upsOut)/1000))
	fixed := milli(p.FixedWatts)
	heat := float64(upsIn+fixed) / 1000
	cooling := milli(heat/p.COP(p.OutdoorCelsius(float64(tod))) + p.CoolingFixedWatts)
	out[m.idx(sUPSOutput)], out[m.idx(sUPSInput)] = upsOut, upsIn
	out[m.idx(sCooling)], out[m.idx(sFixed)] = cooling, fixed
	out[m.idx(sFacility)] = upsIn + cooling + fixed
}

// Chain is the site's power chain, in watts (Model.At) or in joules from
// the epoch (Model.Energy).
type Chain struct {
	BMC       map[string]float64 // per host: its PSUs' input
	PDUOutput map[string]float64 // per rack
	PDUInput  map[string]float64 // per rack
	UPSOutput float64
	UPSInput  float64
	Cooling   float64
	Fixed     float64 // lighting and other fixed loads
	Facility  float64 // the facility meter: UPS input + cooling + fixed loads
}

func (m *Model) chain(v []int64) Chain {
	c := Chain{BMC: map[string]float64{}, PDUOutput: map[string]float64{}, PDUInput: map[string]float64{}}
	for i, h := range m.hosts {
		c.BMC[h.Name] = float64(v[i]) / 1000
	}
	for r, rack := range m.site.Racks {
		c.PDUOutput[rack.Name] = float64(v[m.idxPDUOutput(r)]) / 1000
		c.PDUInput[rack.Name] = float64(v[m.idxPDUInput(r)]) / 1000
	}
	c.UPSOutput, c.UPSInput = float64(v[m.idx(sUPSOutput)])/1000, float64(v[m.idx(sUPSInput)])/1000
	c.Cooling, c.Fixed = float64(v[m.idx(sCooling)])/1000, float64(v[m.idx(sFixed)])/1000
	c.Facility = float64(v[m.idx(sFacility)]) / 1000
	return c
}

// At returns the site's power chain at t, in watts.
func (m *Model) At(t time.Time) Chain { return m.chain(m.s.at(t)) }

// Energy returns the site's energy from the epoch to t, in joules: the
// exact integral of At.
func (m *Model) Energy(t time.Time) Chain { return m.chain(m.s.integral(t)) }

// OutdoorCelsius is the outdoor temperature at t.
func (m *Model) OutdoorCelsius(t time.Time) float64 {
	return m.site.Params.OutdoorCelsius(float64(floorMod(t.Unix(), day)))
}

// PUE returns the site's PUE between from and to (facility energy over
// IT energy): with the IT energy at the UPS output (ISO/IEC 30134-2
// category 1) and at the PDU outputs (category 2).
func (m *Model) PUE(from, to time.Time) (upsOutput, pduOutput float64) {
	a, b := m.Energy(from), m.Energy(to)
	var pdu float64
	for r := range b.PDUOutput {
		pdu += b.PDUOutput[r] - a.PDUOutput[r]
	}
	facility := b.Facility - a.Facility
	return facility / (b.UPSOutput - a.UPSOutput), facility / pdu
}
