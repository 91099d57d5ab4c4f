package accounting

import (
	"testing"
	"time"

	"github.com/joules-energy/joules/internal/schema"
)

// Meters read over SNMP and Modbus count as Redfish ones do: their role
// decides the category, their device tag names them.
func TestSNMPAndModbusMetersGiveThePUEOfTheirRoles(t *testing.T) {
	for _, tc := range []struct {
		name      string
		meters    func(s *site, from, to time.Time)
		it        float64 // W
		category  int64
		meterName string
	}{
		{"snmp pdu, modbus facility", func(s *site, from, to time.Time) {
			s.counter("joules_snmp_equipment_energy_joules_total", 1300, from, to, 10*time.Second,
				"site", "s1", "hall", "h1", "host", "mgmt", "device", "pdu-a", "role", "pdu_output", "equipment", "1", "equipment_type", "rack_pdu", "method", "counter")
		}, 1300, 2, "pdu-a/rack_pdu/1"},
		{"snmp ups, integrated", func(s *site, from, to time.Time) {
			s.counter("joules_snmp_equipment_energy_joules_total", 1450, from, to, 10*time.Second,
				"site", "s1", "host", "mgmt", "device", "ups-1", "role", "ups_output", "equipment", "1", "equipment_type", "ups", "method", "integrated")
		}, 1450, 1, "ups-1/ups/1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, c := newTestAccountant(t, Config{})
			var s site
			end := t0.Add(2 * time.Minute)
			s.host("gpu-01", "h1", "r1", 500, t0, end)
			s.host("gpu-02", "h1", "r2", 700, t0, end)
			tc.meters(&s, t0, end)
			s.counter("joules_modbus_equipment_energy_joules_total", tc.it*1.25, t0, end, 10*time.Second,
				"site", "s1", "host", "mgmt", "device", "facility", "role", "facility_input", "equipment", "1", "equipment_type", "meter", "method", "counter")
			out := run(a, c, s.points, end.Add(31*time.Second))
			p := find(t, out, schema.PUE, t0, "resolution", "1m", "scope", "site", "site", "s1")
			if got := floatField(t, p, "pue"); !closeEqual(got, 1.25, 1e-9) {
				t.Errorf("PUE = %.12f, want 1.25 (%s)", got, describe(p))
			}
			if got, want := floatField(t, p, "it_joules"), tc.it*60; !closeEqual(got, want, 1e-12) {
				t.Errorf("IT energy = %v J, want %v", got, want)
			}
			if v, _ := field(p, "category"); v.IntV() != tc.category {
				t.Errorf("category = %d, want %d", v.IntV(), tc.category)
			}
			m := find(t, out, schema.Energy, t0, "resolution", "1m", "scope", "meter", "meter", tc.meterName)
			if m == nil {
				t.Fatalf("no energy of meter %s", tc.meterName)
			}
			if f := find(t, out, schema.Energy, t0, "resolution", "1m", "scope", "meter", "meter", "facility/meter/1"); f == nil {
				t.Error("no energy of the Modbus facility meter")
			}
		})
	}
}
