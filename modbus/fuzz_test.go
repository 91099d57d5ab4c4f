package modbus

import (
	"math"
	"testing"
)

// FuzzParseMap: a user's register map never panics the agent, and every
// register a loaded map names decodes without panicking, to a number or
// an error, never NaN (an infinity is refused later, by the range check).
func FuzzParseMap(f *testing.F) {
	for _, name := range ShippedMaps() {
		raw, err := shipped.ReadFile("maps/" + name + ".yml")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw, []byte{0x80, 0, 0xff, 0xff, 0x41, 0x20, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	}
	f.Fuzz(func(t *testing.T, raw, words []byte) {
		m, err := ParseMap(raw, "fuzz.yml")
		if err != nil {
			return
		}
		for _, r := range m.Readings {
			n := r.Words()
			if n == 0 {
				t.Fatalf("a map loaded with a reading of no registers: %+v", r)
			}
			regs := make([]uint16, n)
			for i := range regs {
				if 2*i+1 < len(words) {
					regs[i] = uint16(words[2*i])<<8 | uint16(words[2*i+1])
				}
			}
			wo, bo := r.WordOrder, r.ByteOrder
			if wo == "" {
				wo = m.WordOrder
			}
			if bo == "" {
				bo = m.ByteOrder
			}
			if v, err := decode(r.Type, regs, wo, bo); err == nil && math.IsNaN(v) {
				t.Fatalf("%s %v decoded to %v", r.Type, regs, v)
			}
		}
	})
}
