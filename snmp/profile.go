// Package snmp reads rack PDUs and UPSs over SNMP v2c or v3 with profiles:
// data files that say, for one MIB, which OIDs hold a meter's power,
// energy, phases, outlets and UPS lines, in which unit. Profiles for the
// common MIBs ship inside the agent (profiles/*.yml); a user adds one from
// a file in the same format.
package snmp

import (
	"embed"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/joules-energy/joules/meter"
)

//go:embed profiles/*.yml
var shipped embed.FS

// Profile says how to read one kind of device.
type Profile struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	MIB         string `yaml:"mib"`
	// EquipmentType labels the device's samples: rack_pdu, ups, meter.
	EquipmentType string    `yaml:"equipment_type"`
	Readings      []Reading `yaml:"readings"`
}

// Reading is one value of the profile: where it is and what it is.
type Reading struct {
	meter.Spec `yaml:",inline"`
	// OID is the object: with walk, a table column whose rows are read;
	// without, one instance (ending .0 for a scalar).
	OID  string `yaml:"oid"`
	Walk bool   `yaml:"walk"`
	// Index picks and names a walk's rows from their index arcs, dot
	// separated: # keeps the arc in the row's name, * skips it, a number
	// keeps only rows with that arc (Raritan's sensor types). Empty: the
	// whole index names the row.
	Index string `yaml:"index"`
	// DecimalsOID is a column, indexed like OID, holding how many decimal
	// digits each row's integer has (Raritan's *SensorDecimalDigits).
	DecimalsOID string `yaml:"decimals_oid"`
}

// what names the reading in problems and logs: quantity@OID.
func (r *Reading) what() string { return string(r.Reading) + "@" + r.OID }

var profiles = meter.DataFiles{FS: shipped, Dir: "profiles", Kind: "snmp profile", FileKey: "profile_file"}

// Shipped lists the names of the profiles inside the agent, sorted.
func Shipped() []string { return profiles.Names() }

// ShippedProfile returns the profile of that name inside the agent.
func ShippedProfile(name string) (*Profile, error) {
	raw, err := profiles.Read(name)
	if err != nil {
		return nil, err
	}
	return ParseProfile(raw, "shipped profile "+name)
}

// LoadProfile reads a user's profile file.
func LoadProfile(file string) (*Profile, error) {
	raw, err := meter.ReadFile("snmp profile", file)
	if err != nil {
		return nil, err
	}
	return ParseProfile(raw, file)
}

// ParseProfile decodes and validates a profile; where names it in errors.
func ParseProfile(raw []byte, where string) (*Profile, error) {
	return meter.Parse[Profile](raw, where)
}

// Validate reports every problem of the profile at once.
func (p *Profile) Validate() error {
	var errs []error
	if p.Name == "" {
		errs = append(errs, errors.New("name is required"))
	}
	if p.EquipmentType == "" {
		errs = append(errs, errors.New("equipment_type is required (rack_pdu, ups, meter)"))
	}
	if len(p.Readings) == 0 {
		errs = append(errs, errors.New("readings: the profile reads nothing"))
	}
	for i := range p.Readings {
		r := &p.Readings[i]
		where := fmt.Sprintf("readings[%d] (%s)", i, r.Reading)
		errs = append(errs, r.Spec.Validate(where))
		if err := checkOID(r.OID); err != nil {
			errs = append(errs, fmt.Errorf("%s: oid: %w", where, err))
		}
		if r.DecimalsOID != "" {
			if err := checkOID(r.DecimalsOID); err != nil {
				errs = append(errs, fmt.Errorf("%s: decimals_oid: %w", where, err))
			}
		}
		if !r.Walk && (r.Index != "" || r.DecimalsOID != "") {
			errs = append(errs, fmt.Errorf("%s: index and decimals_oid are for a walk (walk: true)", where))
		}
		if _, err := parseIndex(r.Index); err != nil {
			errs = append(errs, fmt.Errorf("%s: index: %w", where, err))
		}
	}
	return errors.Join(errs...)
}

func checkOID(oid string) error {
	s := strings.TrimPrefix(oid, ".")
	if s == "" {
		return errors.New("is required, dotted numbers such as 1.3.6.1.2.1.33.1.4.4.1.4")
	}
	for _, arc := range strings.Split(s, ".") {
		if _, err := strconv.ParseUint(arc, 10, 32); err != nil {
			return fmt.Errorf("%q is not dotted numbers such as 1.3.6.1.2.1.33.1.4.4.1.4", oid)
		}
	}
	return nil
}

// indexArc is one arc of an index pattern: keep it, skip it, or require it.
type indexArc struct {
	keep, any bool
	value     string
}

func parseIndex(pattern string) ([]indexArc, error) {
	if pattern == "" {
		return nil, nil
	}
	var arcs []indexArc
	for _, a := range strings.Split(pattern, ".") {
		switch a {
		case "#":
			arcs = append(arcs, indexArc{keep: true, any: true})
		case "*":
			arcs = append(arcs, indexArc{any: true})
		default:
			if _, err := strconv.ParseUint(a, 10, 32); err != nil {
				return nil, fmt.Errorf("%q: each arc is # (names the row), * (any) or a number (only rows with it)", pattern)
			}
			arcs = append(arcs, indexArc{value: a})
		}
	}
	return arcs, nil
}

// rowName is the name of the row with that index under the pattern, and
// false when the pattern does not take the row.
func rowName(arcs []indexArc, index string) (string, bool) {
	if arcs == nil {
		return index, true
	}
	parts := strings.Split(index, ".")
	if len(parts) != len(arcs) {
		return "", false
	}
	var kept []string
	for i, a := range arcs {
		switch {
		case !a.any && parts[i] != a.value:
			return "", false
		case a.keep:
			kept = append(kept, parts[i])
		}
	}
	return strings.Join(kept, "."), true
}
