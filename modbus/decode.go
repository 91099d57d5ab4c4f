package modbus

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// errNotImplemented is a SunSpec "not implemented" value: the device has
// the register but not the quantity.
var errNotImplemented = errors.New("the device gives the not-implemented value")

// decode turns a value's registers, as they came off the wire, into its
// number: the bytes of each register swapped for byte order little, the
// registers taken most significant first (high_first) or least
// significant first (low_first). SunSpec's not-implemented values (int16
// 0x8000, uint16 0xFFFF, int32 0x80000000, uint32 0xFFFFFFFF, the same
// for 64 bits, acc32 and acc64 0, a float NaN) are errNotImplemented.
func decode(typ string, regs []uint16, wordOrder, byteOrder string) (float64, error) {
	var u uint64
	for i := range regs {
		r := regs[i]
		if wordOrder == LowFirst {
			r = regs[len(regs)-1-i]
		}
		if byteOrder == Little {
			r = bits.ReverseBytes16(r)
		}
		u = u<<16 | uint64(r)
	}
	var v float64
	var missing bool
	switch typ {
	case TypeInt16:
		v, missing = float64(int16(u)), u == 0x8000
	case TypeUint16:
		v, missing = float64(u), u == 0xFFFF
	case TypeInt32:
		v, missing = float64(int32(u)), u == 0x80000000
	case TypeUint32:
		v, missing = float64(u), u == 0xFFFFFFFF
	case TypeInt64:
		v, missing = float64(int64(u)), u == 1<<63
	case TypeUint64:
		v, missing = float64(u), u == math.MaxUint64
	case TypeAcc32, TypeAcc64:
		v, missing = float64(u), u == 0
	case TypeFloat32:
		v = float64(math.Float32frombits(uint32(u)))
		missing = math.IsNaN(v)
	case TypeFloat64:
		v = math.Float64frombits(u)
		missing = math.IsNaN(v)
	default:
		return 0, fmt.Errorf("type %q is not a register type", typ)
	}
	if missing {
		return 0, fmt.Errorf("%s %s: %w", typ, hex(regs), errNotImplemented)
	}
	return v, nil
}

// scaleFactor is a SunSpec sunssf register's power of ten.
func scaleFactor(reg uint16) (int, error) {
	sf := int16(reg)
	switch {
	case reg == 0x8000:
		return 0, fmt.Errorf("scale factor 0x8000: %w", errNotImplemented)
	case sf < -10 || sf > 10:
		return 0, fmt.Errorf("scale factor %d is outside SunSpec's -10 to 10", sf)
	}
	return int(sf), nil
}

func hex(regs []uint16) string {
	s := ""
	for i, r := range regs {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("0x%04x", r)
	}
	return s
}
