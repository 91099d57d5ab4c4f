// Package modbus reads power meters over Modbus TCP with register maps:
// data files that say, for one family of meters, which registers hold its
// power, energy, phase powers, currents and voltages, in which type, word
// order and unit. Maps for common meters ship inside the agent
// (maps/*.yml); a user adds one from a file in the same format. What a
// value means for energy (counters, resets, wraps) is the meter package's.
package modbus

import (
	"embed"
	"errors"
	"fmt"
	"strings"

	mb "github.com/simonvetter/modbus"

	"github.com/joules-energy/joules/meter"
)

//go:embed maps/*.yml
var shipped embed.FS

// Map says how to read one kind of meter.
type Map struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// EquipmentType labels the device's samples: meter (the default),
	// ups, rack_pdu.
	EquipmentType string `yaml:"equipment_type"`
	// WordOrder is the default order of the registers of a 32- or 64-bit
	// value: high_first (the default: the first register holds the most
	// significant word) or low_first.
	WordOrder string `yaml:"word_order"`
	// ByteOrder is the default order of the two bytes in a register: big
	// (the default, Modbus's own) or little.
	ByteOrder string `yaml:"byte_order"`
	// Table is the default register table: holding (the default; function
	// code 3) or input (function code 4).
	Table string `yaml:"table"`
	// Expect is what some registers must hold for the map to apply (a
	// SunSpec marker and model ID): checked once per connection, a device
	// that holds something else fails its polls (reason protocol).
	Expect   []Expect  `yaml:"expect"`
	Readings []Reading `yaml:"readings"`
}

// Expect is a run of registers whose values the map requires.
type Expect struct {
	// Address is the wire address of the first register.
	Address *int `yaml:"address"`
	// Table is holding or input (default: the map's).
	Table string `yaml:"table"`
	// Values are the registers' required values, from Address on.
	Values []uint16 `yaml:"values"`
	// Description says what the values mean, for the error.
	Description string `yaml:"description"`
}

// Reading is one value of the map: where it is and what it is.
type Reading struct {
	meter.Spec `yaml:",inline"`
	// Address is the 0-based address sent on the wire (the PDU address) of
	// the value's first register. Vendors' register lists are often
	// 1-based ("register 3060", or "43060" in the Modicon convention):
	// the map gives the wire address, 3059 for both.
	Address *int `yaml:"address"`
	// Table is holding (function code 3) or input (function code 4);
	// default: the map's.
	Table string `yaml:"table"`
	// Type is the value's type: int16, uint16, int32, uint32, int64,
	// uint64, float32, float64, or SunSpec's acc32 and acc64 (unsigned
	// counters).
	Type string `yaml:"type"`
	// ScaleRegister is the wire address of a SunSpec scale factor (sunssf:
	// an int16 power-of-ten exponent, in the same table) applied to the
	// raw value before Scale: raw × 10^sf.
	ScaleRegister *int `yaml:"scale_register"`
	// WordOrder and ByteOrder override the map's for this value.
	WordOrder string `yaml:"word_order"`
	ByteOrder string `yaml:"byte_order"`
}

// Register types.
const (
	TypeInt16   = "int16"
	TypeUint16  = "uint16"
	TypeInt32   = "int32"
	TypeUint32  = "uint32"
	TypeInt64   = "int64"
	TypeUint64  = "uint64"
	TypeFloat32 = "float32"
	TypeFloat64 = "float64"
	TypeAcc32   = "acc32"
	TypeAcc64   = "acc64"
)

// Word orders, byte orders and tables.
const (
	HighFirst = "high_first"
	LowFirst  = "low_first"
	BigEndian = "big"
	Little    = "little"
	Holding   = "holding"
	Input     = "input"
)

// words is how many registers each type takes.
var words = map[string]int{
	TypeInt16: 1, TypeUint16: 1, TypeInt32: 2, TypeUint32: 2, TypeInt64: 4, TypeUint64: 4,
	TypeFloat32: 2, TypeFloat64: 4, TypeAcc32: 2, TypeAcc64: 4,
}

// Types lists the register types a map may name.
func Types() []string {
	return []string{TypeInt16, TypeUint16, TypeInt32, TypeUint32, TypeInt64, TypeUint64, TypeFloat32, TypeFloat64, TypeAcc32, TypeAcc64}
}

// Words is how many 16-bit registers the reading's value takes.
func (r *Reading) Words() int { return words[r.Type] }

// what names the reading in problems and logs: quantity@address
// (quantity@input:address for an input register).
func (r *Reading) what() string {
	addr := -1
	if r.Address != nil {
		addr = *r.Address
	}
	if r.Table == Input {
		return fmt.Sprintf("%s@input:%d", r.Reading, addr)
	}
	return fmt.Sprintf("%s@%d", r.Reading, addr)
}

func regType(table string) mb.RegType {
	if table == Input {
		return mb.INPUT_REGISTER
	}
	return mb.HOLDING_REGISTER
}

var shippedMaps = meter.DataFiles{FS: shipped, Dir: "maps", Kind: "modbus register map", FileKey: "register_map_file"}

// ShippedMaps lists the names of the maps inside the agent, sorted.
func ShippedMaps() []string { return shippedMaps.Names() }

// ShippedMap returns the map of that name inside the agent.
func ShippedMap(name string) (*Map, error) {
	raw, err := shippedMaps.Read(name)
	if err != nil {
		return nil, err
	}
	return ParseMap(raw, "shipped register map "+name)
}

// LoadMap reads a user's register map file.
func LoadMap(file string) (*Map, error) {
	raw, err := meter.ReadFile("modbus register map", file)
	if err != nil {
		return nil, err
	}
	return ParseMap(raw, file)
}

// ParseMap decodes and validates a register map; where names it in errors.
func ParseMap(raw []byte, where string) (*Map, error) { return meter.Parse[Map](raw, where) }

// Validate reports every problem of the map at once, and fills in the
// defaults (the readings' table, word and byte order from the map's).
func (m *Map) Validate() error {
	var errs []error
	if m.Name == "" {
		errs = append(errs, errors.New("name is required"))
	}
	if m.EquipmentType == "" {
		m.EquipmentType = "meter"
	}
	m.WordOrder = orDefault(m.WordOrder, HighFirst)
	m.ByteOrder = orDefault(m.ByteOrder, BigEndian)
	m.Table = orDefault(m.Table, Holding)
	errs = append(errs, checkOrders("", m.WordOrder, m.ByteOrder, m.Table))
	if len(m.Readings) == 0 {
		errs = append(errs, errors.New("readings: the map reads nothing"))
	}
	for i := range m.Expect {
		e := &m.Expect[i]
		where := fmt.Sprintf("expect[%d]", i)
		e.Table = orDefault(e.Table, m.Table)
		if e.Table != Holding && e.Table != Input {
			errs = append(errs, fmt.Errorf("%s: table %q is not holding or input", where, e.Table))
		}
		n := len(e.Values)
		if n == 0 || n > maxRegisters {
			errs = append(errs, fmt.Errorf("%s: values: give 1 to %d register values", where, maxRegisters))
		}
		errs = append(errs, checkAddress(where+": address", e.Address, max(n, 1)))
	}
	seen := map[[2]string]int{}
	for i := range m.Readings {
		r := &m.Readings[i]
		where := fmt.Sprintf("readings[%d] (%s)", i, r.Reading)
		errs = append(errs, r.Spec.Validate(where))
		r.Table = orDefault(r.Table, m.Table)
		r.WordOrder = orDefault(r.WordOrder, m.WordOrder)
		r.ByteOrder = orDefault(r.ByteOrder, m.ByteOrder)
		errs = append(errs, checkOrders(where+": ", r.WordOrder, r.ByteOrder, r.Table))
		n, ok := words[r.Type]
		switch {
		case r.Type == "":
			errs = append(errs, fmt.Errorf("%s: type is required (%s)", where, strings.Join(Types(), ", ")))
		case !ok:
			errs = append(errs, fmt.Errorf("%s: type %q is not one of %s", where, r.Type, strings.Join(Types(), ", ")))
		}
		errs = append(errs, checkAddress(where+": address", r.Address, max(n, 1)))
		if r.ScaleRegister != nil {
			errs = append(errs, checkAddress(where+": scale_register", r.ScaleRegister, 1))
			if r.Type == TypeFloat32 || r.Type == TypeFloat64 {
				errs = append(errs, fmt.Errorf("%s: scale_register is for integer registers (SunSpec's sunssf), not %s", where, r.Type))
			}
		}
		if ok && r.WrapBits > 16*n {
			errs = append(errs, fmt.Errorf("%s: wrap_bits %d is wider than a %s (%d bits)", where, r.WrapBits, r.Type, 16*n))
		}
		if r.Sum {
			errs = append(errs, fmt.Errorf("%s: sum is for tables of rows; a register is one value (give each phase its own reading and row)", where))
		}
		key := [2]string{string(r.Reading), r.Row}
		if j, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("%s: reading %s row %s is also readings[%d]: give each its own row", where, r.Reading, r.Row, j))
		} else {
			seen[key] = i
		}
	}
	return errors.Join(errs...)
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func checkOrders(where, wordOrder, byteOrder, table string) error {
	var errs []error
	if wordOrder != HighFirst && wordOrder != LowFirst {
		errs = append(errs, fmt.Errorf("%sword_order %q is not high_first or low_first", where, wordOrder))
	}
	if byteOrder != BigEndian && byteOrder != Little {
		errs = append(errs, fmt.Errorf("%sbyte_order %q is not big or little", where, byteOrder))
	}
	if table != Holding && table != Input {
		errs = append(errs, fmt.Errorf("%stable %q is not holding or input", where, table))
	}
	return errors.Join(errs...)
}

// checkAddress checks that n registers from addr are on the wire's range.
func checkAddress(where string, addr *int, n int) error {
	switch {
	case addr == nil:
		return fmt.Errorf("%s is required: the 0-based wire address (a vendor's 1-based register number less one)", where)
	case *addr < 0 || *addr+n-1 > 0xFFFF:
		return fmt.Errorf("%s %d: %d register(s) from it must lie within 0 to 65535 (the wire address, 0-based)", where, *addr, n)
	}
	return nil
}
