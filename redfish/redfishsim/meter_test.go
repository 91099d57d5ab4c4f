package redfishsim

import (
	"math"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/testenv"
)

// fakeMeter draws steady power that rises a watt a second, so a reading
// that came from the wrong instant or quantity shows.
type fakeMeter struct{ t0 time.Time }

func (m fakeMeter) Power(t time.Time) MeterPower {
	in := 5000 + t.Sub(m.t0).Seconds()
	return MeterPower{Input: in, Output: 0.95 * in, CPU: 420, Fans: 310, Capacity: 19800}
}

func (m fakeMeter) Energy(t time.Time) MeterEnergy {
	s := t.Sub(m.t0).Seconds()
	in := 1e9 + 5000*s + s*s/2
	return MeterEnergy{Input: in, Output: 0.95 * in}
}

// boundBMC serves a shared mockup bound to a fakeMeter on a fixed clock.
func boundBMC(t *testing.T, mockup string) (*httptest.Server, fakeMeter, *time.Time) {
	t.Helper()
	dir := filepath.Join(testenv.SharedTestdata(t), "redfish", mockup)
	now := time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)
	m := fakeMeter{t0: now.Add(-time.Hour)}
	bmc, err := New(mockup, dir, Options{Username: "u", Password: "p", Now: func() time.Time { return now }, Meter: m})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(bmc)
	t.Cleanup(srv.Close)
	return srv, m, &now
}

// at reads a number from a served document.
func at(t *testing.T, srv *httptest.Server, path string, keys ...any) float64 {
	t.Helper()
	code, body := get(t, srv, path, true)
	if code != 200 {
		t.Fatalf("GET %s: %d", path, code)
	}
	var v any = body
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			v = v.(map[string]any)[k]
		case int:
			v = v.([]any)[k]
		}
	}
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("%s %v: %v is no number", path, keys, v)
	}
	return f
}

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s: %v, want %v", what, got, want)
	}
}

// Every resource a reader may take a host's power from serves the meter's
// input, at the request's instant: EnvironmentMetrics, the PowerSubsystem
// PSUs (shared by those that report), the legacy PowerControl and PSUs,
// and the chassis-wide sensors; energy likewise, in J or kWh; the PSUs'
// output is the DC side; capacities are the meter's.
func TestMeterReplacesEveryHostReading(t *testing.T) {
	srv, m, now := boundBMC(t, "dmtf-public-rackmount1")
	for range 3 {
		p, e := m.Power(*now), m.Energy(*now)
		kwh := e.Input / 3.6e6
		const c = "/redfish/v1/Chassis/1U"
		near(t, "EnvironmentMetrics PowerWatts", at(t, srv, c+"/EnvironmentMetrics", "PowerWatts", "Reading"), p.Input, 0.006)
		near(t, "PSU 1 input", at(t, srv, c+"/PowerSubsystem/PowerSupplies/Bay1/Metrics", "InputPowerWatts", "Reading"), p.Input, 0.006)
		near(t, "PSU 1 output", at(t, srv, c+"/PowerSubsystem/PowerSupplies/Bay1/Metrics", "OutputPowerWatts", "Reading"), p.Output, 0.006)
		near(t, "PSU 1 energy", at(t, srv, c+"/PowerSubsystem/PowerSupplies/Bay1/Metrics", "EnergykWh", "Reading"), kwh, 1e-9)
		near(t, "PowerControl consumed", at(t, srv, c+"/Power", "PowerControl", 0, "PowerConsumedWatts"), p.Input, 0.006)
		near(t, "PowerControl average over its 30 minutes", at(t, srv, c+"/Power", "PowerControl", 0, "PowerMetrics", "AverageConsumedWatts"),
			(e.Input-m.Energy(now.Add(-30*time.Minute)).Input)/1800, 0.006)
		near(t, "PowerControl maximum", at(t, srv, c+"/Power", "PowerControl", 0, "PowerMetrics", "MaxConsumedWatts"), p.Input, 0.006)
		near(t, "PowerControl minimum", at(t, srv, c+"/Power", "PowerControl", 0, "PowerMetrics", "MinConsumedWatts"), p.Input-1800, 0.006)
		near(t, "legacy PSU output", at(t, srv, c+"/Power", "PowerSupplies", 0, "LastPowerOutputWatts"), p.Output, 0.006)
		near(t, "TotalPower sensor", at(t, srv, c+"/Sensors/TotalPower", "Reading"), p.Input, 0.006)
		near(t, "PS1InputPower sensor", at(t, srv, c+"/Sensors/PS1InputPower", "Reading"), p.Input, 0.006)
		near(t, "CPU1Power sensor", at(t, srv, c+"/Sensors/CPU1Power", "Reading"), p.CPU, 0.006)
		near(t, "TotalEnergy sensor (kWh)", at(t, srv, c+"/Sensors/TotalEnergy", "Reading"), kwh, 1e-9)
		near(t, "PS1Energy sensor (kWh)", at(t, srv, c+"/Sensors/PS1Energy", "Reading"), kwh, 1e-9)
		near(t, "PowerSubsystem capacity", at(t, srv, c+"/PowerSubsystem", "CapacityWatts"), p.Capacity, 0)
		near(t, "PSU 1 capacity", at(t, srv, c+"/PowerSubsystem/PowerSupplies/Bay1", "PowerCapacityWatts"), p.Capacity, 0)
		near(t, "PowerControl capacity", at(t, srv, c+"/Power", "PowerControl", 0, "PowerCapacityWatts"), p.Capacity, 0)
		near(t, "PS1InputPower's apparent power over its power, as in the mockup",
			at(t, srv, c+"/Sensors/PS1InputPower", "ApparentVA")/at(t, srv, c+"/Sensors/PS1InputPower", "Reading"),
			ratioVA(t, "dmtf-public-rackmount1", "Chassis/1U/Sensors/PS1InputPower"), 0.001)
		*now = now.Add(7 * time.Second)
	}
	// What the meter does not measure keeps the mockup's behaviour.
	if code, body := get(t, srv, "/redfish/v1/Chassis/1U/Sensors/AmbientTemp", true); code != 200 || body["Reading"] == nil {
		t.Errorf("temperature sensor: %d %v", code, body)
	}
}

// ratioVA is a mockup excerpt's apparent power over its power.
func ratioVA(t *testing.T, mockup, doc string) float64 {
	t.Helper()
	b, err := New("x", filepath.Join(testenv.SharedTestdata(t), "redfish", mockup), Options{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := b.load("/redfish/v1/" + doc)
	if err != nil {
		t.Fatal(err)
	}
	m := d.(map[string]any)
	return m["ApparentVA"].(float64) / m["Reading"].(float64)
}

// A BMC with only the legacy Power resource and a Power and an Energy
// sensor (the Gigabyte capture) serves the meter through all three.
func TestMeterOnLegacyBMC(t *testing.T) {
	srv, m, now := boundBMC(t, "gigabyte-h262-z63")
	p, e := m.Power(*now), m.Energy(*now)
	near(t, "PowerControl consumed", at(t, srv, "/redfish/v1/Chassis/Self/Power", "PowerControl", 0, "PowerConsumedWatts"), p.Input, 0.006)
	near(t, "Power sensor", at(t, srv, "/redfish/v1/Chassis/Self/Sensors/Power", "Reading"), p.Input, 0.006)
	near(t, "Energy sensor (J)", at(t, srv, "/redfish/v1/Chassis/Self/Sensors/Energy", "Reading"), e.Input, 1e-3)
}

// A PDU mockup bound to a meter: the rack PDU's summary is the output, its
// outlets and branches share it (each branch its outlets), its mains carry
// the input; the sensors the readings cite serve the same; the transfer
// switch, another kind, carries the whole meter too.
func TestMeterOnPDU(t *testing.T) {
	srv, m, now := boundBMC(t, "dmtf-public-pdu")
	p, e := m.Power(*now), m.Energy(*now)
	const pdu = "/redfish/v1/PowerEquipment/RackPDUs/1"
	near(t, "rack PDU power", at(t, srv, pdu+"/Metrics", "PowerWatts", "Reading"), p.Output, 0.006)
	near(t, "rack PDU energy", at(t, srv, pdu+"/Metrics", "EnergykWh", "Reading"), e.Output/3.6e6, 1e-9)
	near(t, "PDUPower sensor", at(t, srv, "/redfish/v1/Chassis/PDU/Sensors/PDUPower", "Reading"), p.Output, 0.006)
	var phases float64
	for _, l := range []string{"Line1ToNeutral", "Line2ToNeutral", "Line3ToNeutral"} {
		phases += at(t, srv, pdu+"/Mains/AC1", "PolyPhasePowerWatts", l, "Reading")
	}
	near(t, "mains, phase by phase", phases, p.Input, 0.02)
	var outlets, branches float64
	for _, o := range []string{"A1", "A2", "A3", "B1", "B2", "B3", "C1", "C2", "C3"} { // A4 and A5 read nothing
		outlets += at(t, srv, pdu+"/Outlets/"+o, "PowerWatts", "Reading")
	}
	if _, body := get(t, srv, pdu+"/Outlets/A4", true); lookup(body, []string{"PowerWatts", "Reading"}) != nil {
		t.Errorf("outlet A4, without a reading in the mockup, reads %v", body["PowerWatts"])
	}
	for _, b := range []string{"A", "B", "C"} {
		branches += at(t, srv, pdu+"/Branches/"+b, "PowerWatts", "Reading")
	}
	near(t, "Σ outlets", outlets, p.Output, 0.06)
	near(t, "Σ branches", branches, p.Output, 0.02)
	near(t, "branch A: its three metered outlets of nine", at(t, srv, pdu+"/Branches/A", "PowerWatts", "Reading"), p.Output*3/9, 0.006)
	near(t, "outlet current moves with its power", at(t, srv, pdu+"/Outlets/A1", "CurrentAmps", "Reading"),
		1.68*at(t, srv, pdu+"/Outlets/A1", "PowerWatts", "Reading")/197.4, 0.01)
	near(t, "transfer switch power", at(t, srv, "/redfish/v1/PowerEquipment/TransferSwitches/1/Metrics", "PowerWatts", "Reading"), p.Output, 0.006)
}

// A power shelf standing for a UPS: its summary is the output, its mains
// share the input, and its PSU the whole of both.
func TestMeterOnPowerShelf(t *testing.T) {
	srv, m, now := boundBMC(t, "dmtf-public-power-shelf")
	p := m.Power(*now)
	const shelf = "/redfish/v1/PowerEquipment/PowerShelves/1"
	near(t, "shelf power", at(t, srv, shelf+"/Metrics", "PowerWatts", "Reading"), p.Output, 0.006)
	near(t, "Σ mains", at(t, srv, shelf+"/Mains/AC1", "PowerWatts", "Reading")+at(t, srv, shelf+"/Mains/AC2", "PowerWatts", "Reading"), p.Input, 0.011)
	near(t, "PSU input", at(t, srv, "/redfish/v1/Chassis/PowerShelf/PowerSubsystem/PowerSupplies/Bay1/Metrics", "InputPowerWatts", "Reading"), p.Input, 0.006)
}
