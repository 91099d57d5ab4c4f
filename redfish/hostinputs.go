package redfish

import (
	"context"
	"strings"

	"github.com/stmcginnis/gofish/schemas"
)

// What a chassis said this poll that could be its total power or energy,
// gathered while readChassis reads its resources.

// psuSum adds one reading per present PSU; it is a total only when every
// present PSU gave one.
type psuSum struct {
	total   float64
	n       int
	missing bool
}

func (s *psuSum) add(v *float64) {
	if v == nil {
		s.missing = true
		return
	}
	s.total += *v
	s.n++
}

func (s psuSum) complete() bool { return s.n > 0 && !s.missing }

// sensorReading is one Sensor of ReadingType Power, EnergyJoules or
// EnergykWh as read this poll.
type sensorReading struct {
	label, path string
	energy      bool    // an energy counter, value in joules; else power in watts
	value       float64 // valid when ok
	resetTime   string  // SensorResetTime
	ok          bool    // has a reading
	absent      bool    // Status.State Absent: the device is not installed
	cited       bool    // read only because EnvironmentMetrics cites it: not of this chassis's collection
	context     schemas.PhysicalContext
	sub         schemas.PhysicalSubContext
}

// hostInputs is everything a chassis said this poll that could be its
// total power or energy.
type hostInputs struct {
	envWatts, envJoules, envKWh *float64
	envKWhReset                 string   // EnvironmentMetrics.EnergykWh.SensorResetTime
	envWattsURI                 string   // EnvironmentMetrics.PowerWatts.DataSourceUri
	envEnergyURIs               []string // EnergyJoules' and EnergykWh's
	psuWatts, psuJoules         psuSum   // PowerSubsystem PSU Metrics: InputPowerWatts, EnergykWh in J
	legacyWatts                 psuSum   // legacy Power PSUs' PowerInputWatts
	controlWatts                *float64 // legacy PowerControl[0].PowerConsumedWatts
	presentPSUs                 int      // PSUs the chassis lists as installed; -1 when it lists none
	psuCited                    map[string]bool
	sensors                     []sensorReading
	readAny                     bool // some power resource answered this poll
}

func newHostInputs(hasEnv bool, env *schemas.EnvironmentMetrics, psus []psuRef) *hostInputs {
	in := &hostInputs{presentPSUs: -1, psuCited: map[string]bool{}, readAny: hasEnv}
	if hasEnv {
		in.envWatts, in.envWattsURI = env.PowerWatts.Reading, trimURI(env.PowerWatts.DataSourceURI)
		in.envJoules, in.envKWh, in.envKWhReset = env.EnergyJoules.Reading, env.EnergykWh.Reading, env.EnergykWh.SensorResetTime
		for _, uri := range []string{env.EnergyJoules.DataSourceURI, env.EnergykWh.DataSourceURI} {
			if uri != "" {
				in.envEnergyURIs = append(in.envEnergyURIs, trimURI(uri))
			}
		}
	}
	if len(psus) > 0 {
		in.presentPSUs = 0
		for _, psu := range psus {
			if !psu.absent {
				in.presentPSUs++
			}
		}
	}
	return in
}

func trimURI(uri string) string { return strings.TrimSuffix(uri, "/") }

// addPSU takes one installed PSU's Metrics (ok false: unreadable).
func (in *hostInputs) addPSU(ok bool, m *schemas.PowerSupplyMetrics) {
	if !ok {
		in.psuWatts.add(nil)
		in.psuJoules.add(nil)
		return
	}
	in.readAny = true
	for _, uri := range []string{m.InputPowerWatts.DataSourceURI, m.EnergykWh.DataSourceURI} {
		if uri != "" {
			in.psuCited[trimURI(uri)] = true
		}
	}
	in.psuWatts.add(m.InputPowerWatts.Reading)
	if v := m.EnergykWh.Reading; v != nil {
		j := *v * 3.6e6
		in.psuJoules.add(&j)
	} else {
		in.psuJoules.add(nil)
	}
}

// addLegacy takes the legacy Power resource's PowerControl and PSUs.
func (in *hostInputs) addLegacy(legacy *schemas.Power) {
	in.readAny = true
	if len(legacy.PowerControl) > 0 && legacy.PowerControl[0].PowerConsumedWatts != nil {
		v := f32(*legacy.PowerControl[0].PowerConsumedWatts)
		in.controlWatts = &v
	}
	present := 0
	for _, ps := range legacy.PowerSupplies {
		if ps.Status.State == schemas.AbsentState {
			continue
		}
		present++
		var v *float64
		if ps.PowerInputWatts != nil {
			w := f32(*ps.PowerInputWatts)
			v = &w
		}
		in.legacyWatts.add(v)
	}
	if in.presentPSUs < 0 && len(legacy.PowerSupplies) > 0 {
		in.presentPSUs = present
	}
}

// addSensor takes one power or energy Sensor as read this poll.
func (in *hostInputs) addSensor(n named, s *schemas.Sensor) {
	in.readAny = true
	var r sensorReading
	if in.setSensor(&r, n, s) {
		in.sensors = append(in.sensors, r)
	}
}

func (in *hostInputs) setSensor(r *sensorReading, n named, s *schemas.Sensor) bool {
	scale := 1.0
	switch s.ReadingType {
	case schemas.PowerReadingType:
	case schemas.EnergyJoulesReadingType:
		r.energy = true
	case schemas.EnergykWhReadingType:
		r.energy, scale = true, 3.6e6
	default:
		return false
	}
	r.label, r.path = n.label, trimURI(n.path)
	r.context, r.sub = s.PhysicalContext, s.PhysicalSubContext
	r.absent = s.Status.State == schemas.AbsentState
	r.resetTime = s.SensorResetTime
	if s.Reading != nil {
		r.value, r.ok = *s.Reading*scale, true
	}
	return true
}

// readCitedSensors reads the Sensors that EnvironmentMetrics cites for a
// reading it does not give itself, where the chassis's Sensors collection
// does not list them: at most three requests, only on such BMCs.
func (p *poller) readCitedSensors(ctx context.Context, in *hostInputs) error {
	var uris []string
	if in.envWatts == nil && in.envWattsURI != "" {
		uris = append(uris, in.envWattsURI)
	}
	if in.envJoules == nil && in.envKWh == nil {
		uris = append(uris, in.envEnergyURIs...)
	}
	for _, uri := range uris {
		if in.sensorAt(uri) != nil || !strings.HasPrefix(uri, "/redfish/") {
			continue // listed already, or not a path of this service
		}
		var s schemas.Sensor
		ok, err := p.get(ctx, uri, &s)
		if err != nil {
			return err
		}
		var r sensorReading
		if ok && in.setSensor(&r, named{label: firstNonEmpty(s.ID, lastSegment(uri)), path: uri}, &s) {
			r.cited = true
			in.sensors = append(in.sensors, r)
		}
	}
	return nil
}
