// Package meter turns what a polled meter (an SNMP PDU or UPS, a Modbus
// power meter) read into the agent's samples, with the polling discipline
// every meter gets: one poll never outlives its deadline, a failing meter
// is backed off, and its last good values are published with their age.
// The protocols (snmp, modbus) only read their profile's values; what a
// value means for energy is decided here, the same way for both.
package meter

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/joules-energy/joules/internal/schema"
)

// Quantity is what a reading measures, in the base unit its metric names.
type Quantity string

// The quantities a profile can read. Power and Energy are the equipment's
// own (a PDU unit's input, a UPS's output, a meter's total): the ones
// accounting counts for the meter's role. The others describe it.
const (
	Power          Quantity = "power"          // W
	Energy         Quantity = "energy"         // J, a counter
	PowerFactor    Quantity = "power_factor"   // ratio
	OutletPower    Quantity = "outlet_power"   // W
	OutletEnergy   Quantity = "outlet_energy"  // J, a counter
	OutletCurrent  Quantity = "outlet_current" // A
	PhasePower     Quantity = "phase_power"    // W
	PhaseEnergy    Quantity = "phase_energy"   // J, a counter
	PhaseCurrent   Quantity = "phase_current"  // A
	PhaseVoltage   Quantity = "phase_voltage"  // V
	PhasePF        Quantity = "phase_power_factor"
	UPSInputPower  Quantity = "ups_input_power" // W
	UPSOutputPower Quantity = "ups_output_power"
	UPSLoad        Quantity = "ups_load" // ratio of the rated output
)

// quantity is how one Quantity becomes a sample: the metric's name after
// joules_<protocol>_, the label that names its row, and whether it is a
// counter.
type quantity struct {
	metric, row, help string
	counter           bool
}

var quantities = map[Quantity]quantity{
	Power:          {strings.TrimPrefix(schema.MeterPowerSuffix, "_"), "equipment", "Active power through the equipment: a PDU's input, a UPS's output, a meter's total.", false},
	Energy:         {strings.TrimPrefix(schema.MeterEnergySuffix, "_"), "equipment", "Energy through the equipment: its counter (method=\"counter\", continued across resets and wraps) or its power integrated (method=\"integrated\").", true},
	PowerFactor:    {"equipment_power_factor_ratio", "equipment", "Power factor of the equipment's input.", false},
	OutletPower:    {"outlet_power_watts", "outlet", "Active power through an outlet.", false},
	OutletEnergy:   {"outlet_energy_joules_total", "outlet", "Energy through an outlet from its counter, continued across resets and wraps.", true},
	OutletCurrent:  {"outlet_current_amps", "outlet", "Current through an outlet.", false},
	PhasePower:     {"phase_power_watts", "phase", "Active power of a phase.", false},
	PhaseEnergy:    {"phase_energy_joules_total", "phase", "Energy of a phase from its counter, continued across resets and wraps.", true},
	PhaseCurrent:   {"phase_current_amps", "phase", "Current of a phase.", false},
	PhaseVoltage:   {"phase_voltage_volts", "phase", "Voltage of a phase.", false},
	PhasePF:        {"phase_power_factor_ratio", "phase", "Power factor of a phase.", false},
	UPSInputPower:  {"ups_input_power_watts", "line", "Active power into a UPS, by input line.", false},
	UPSOutputPower: {"ups_output_power_watts", "line", "Active power out of a UPS, by output line.", false},
	UPSLoad:        {"ups_load_ratio", "line", "Load of a UPS output line as a share of its rating (1 = full load).", false},
}

// Quantities lists every quantity a profile may name, sorted.
func Quantities() []Quantity {
	qs := make([]Quantity, 0, len(quantities))
	for q := range quantities {
		qs = append(qs, q)
	}
	slices.Sort(qs)
	return qs
}

// Counter says whether q is an energy counter.
func (q Quantity) Counter() bool { return quantities[q].counter }

// Reading is one value a meter gave, in its quantity's base unit.
type Reading struct {
	Quantity Quantity
	Row      string  // the equipment, outlet, phase or line it is of
	Value    float64 // W, J, A, V or a ratio
	// Wrap is, for a counter, the value in J at which the device's counter
	// wraps to zero (a 32-bit register's range times its unit); 0 when it
	// does not wrap in practice.
	Wrap float64
	// Resolution is, for a counter, its unit in J (a step of one unit is
	// always allowed, however low the meter's power bound).
	Resolution float64
}

// Spec is what a profile says of one reading, whatever the protocol: the
// quantity, the scale from the device's unit to the base unit, the range
// a real value falls in, and how rows are named.
type Spec struct {
	Reading Quantity `yaml:"reading"`
	// Scale multiplies the device's value into the base unit: 10 for
	// hundredths of kW to W, 360000 for tenths of kWh to J.
	Scale float64 `yaml:"scale"`
	// Unit is the device's unit as its MIB or register list says it, for
	// the reader of the profile ("0.01 kW", "Wh").
	Unit string `yaml:"unit"`
	// Min and Max bound a real value, in the base unit: a value outside
	// (a negative "not available", a sentinel) is not published.
	Min *float64 `yaml:"min"`
	Max *float64 `yaml:"max"`
	// WrapBits is, for a counter, the width at which the raw value wraps
	// (32 for a Counter32 or a 32-bit register); 0: it does not.
	WrapBits int `yaml:"wrap_bits"`
	// Sum adds all the rows into one, named Row (a UPS's total output from
	// its lines).
	Sum bool `yaml:"sum"`
	// Row names the single row of a scalar or summed reading (default "1").
	Row string `yaml:"row"`
	// Optional readings are ones some devices of the profile's family
	// lack (outlet metering, an energy counter): their absence is not
	// counted as a problem.
	Optional bool `yaml:"optional"`
}

// Validate reports what is wrong with the spec; where names it.
func (s *Spec) Validate(where string) error {
	var errs []error
	if _, ok := quantities[s.Reading]; !ok {
		errs = append(errs, fmt.Errorf("%s: reading %q is not one of %s", where, s.Reading, joinQuantities()))
	}
	if !(s.Scale > 0) || math.IsInf(s.Scale, 0) {
		errs = append(errs, fmt.Errorf("%s: scale must be a positive number (what one device unit is in the base unit: 10 for 0.01 kW to W), got %g", where, s.Scale))
	}
	if s.Min != nil && s.Max != nil && *s.Min > *s.Max {
		errs = append(errs, fmt.Errorf("%s: min %g is above max %g", where, *s.Min, *s.Max))
	}
	if s.WrapBits != 0 && (s.WrapBits < 8 || s.WrapBits > 64 || !s.Reading.Counter()) {
		errs = append(errs, fmt.Errorf("%s: wrap_bits %d: only an energy counter wraps, at 8 to 64 bits", where, s.WrapBits))
	}
	if s.Sum && s.WrapBits != 0 {
		errs = append(errs, fmt.Errorf("%s: a sum of counters that wrap does not wrap where they do: leave out sum or wrap_bits", where))
	}
	if s.Row == "" {
		s.Row = "1"
	}
	return errors.Join(errs...)
}

func joinQuantities() string {
	var b strings.Builder
	for i, q := range Quantities() {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(q))
	}
	return b.String()
}

// ErrOutOfRange says a value is outside its profile's range.
var ErrOutOfRange = errors.New("outside the profile's range")

// Value scales a device's value into the base unit and checks its range.
func (s *Spec) Value(raw float64) (float64, error) {
	v := raw * s.Scale
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return 0, fmt.Errorf("%s: %g is not a number: %w", s.Reading, raw, ErrOutOfRange)
	case s.Min != nil && v < *s.Min:
		return 0, fmt.Errorf("%s: %g (raw %g) is below %g: %w", s.Reading, v, raw, *s.Min, ErrOutOfRange)
	case s.Max != nil && v > *s.Max:
		return 0, fmt.Errorf("%s: %g (raw %g) is above %g: %w", s.Reading, v, raw, *s.Max, ErrOutOfRange)
	}
	return v, nil
}

// Wrap is the value in J at which the counter wraps (0: never).
func (s *Spec) Wrap() float64 {
	if s.WrapBits == 0 {
		return 0
	}
	return math.Ldexp(1, s.WrapBits) * s.Scale
}

// Problem is one reading a poll could not give: its quantity and row where
// known, why (missing, out_of_range, bad_type) and the error.
type Problem struct {
	Reading string // the profile's name for it: quantity and address
	Reason  string
	Err     error
}

// Reasons of a Problem.
const (
	ReasonMissing    = "missing"      // the device has no such object or register
	ReasonOutOfRange = "out_of_range" // outside the profile's range
	ReasonBadType    = "bad_type"     // not a number
)
