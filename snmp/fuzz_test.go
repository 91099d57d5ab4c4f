package snmp

import (
	"testing"

	"github.com/joules-energy/joules/meter"
)

// FuzzParseProfile: a user's profile file never panics the agent, and one
// that loads is one the device can read with.
func FuzzParseProfile(f *testing.F) {
	for _, name := range Shipped() {
		raw, err := shipped.ReadFile("profiles/" + name + ".yml")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte("name: x\nequipment_type: ups\nreadings: [{reading: power, oid: .1.3, scale: 1, walk: true, index: \"#.*.5\"}]"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := ParseProfile(raw, "fuzz.yml")
		if err != nil {
			return
		}
		for _, r := range p.Readings {
			if !(r.Scale > 0) || checkOID(r.OID) != nil || !validQuantity(r.Reading) {
				t.Fatalf("a profile loaded with a reading it cannot read: %+v", r)
			}
			arcs, err := parseIndex(r.Index)
			if err != nil {
				t.Fatalf("index %q loaded but does not parse: %v", r.Index, err)
			}
			rowName(arcs, "1.2.3") // must not panic
		}
	})
}

func validQuantity(q meter.Quantity) bool {
	for _, known := range meter.Quantities() {
		if q == known {
			return true
		}
	}
	return false
}
