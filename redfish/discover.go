package redfish

import (
	"context"
	"encoding/json"
	"math"
	"sort"
	"strconv"

	"github.com/stmcginnis/gofish/schemas"
)

// chassisDoc is the part of a Chassis resource discovery needs: its links.
type chassisDoc struct {
	ID                 string `json:"Id"`
	Name               string
	ChassisType        string
	Power              link
	Thermal            link
	PowerSubsystem     link
	ThermalSubsystem   link
	EnvironmentMetrics link
	Sensors            link
	Links              struct {
		ContainedBy     link
		ComputerSystems []link
	}
}

// chassis is one chassis with the paths of what it can report.
type chassis struct {
	id, path, chassisType string
	containedBy           string // the chassis this one sits in, if any
	systems               int    // computer systems linked to it
	host                  bool   // its power is the host's: see markHosts
	equipment             bool   // the enclosure of power equipment (a PDU), not a host

	envMetrics, power, thermal string
	psus                       []psuRef // PowerSubsystem PSUs
	thermalMetrics             string
	fans                       []named
	powerSensors               []named // Sensors of ReadingType Power, EnergyJoules or EnergykWh
	tempSensors                []named // Sensors of ReadingType Temperature
}

// named is a resource path and the label it is reported under.
type named struct {
	label, path string
}

// psuRef is one PowerSubsystem PSU: its label and Metrics path, and what
// its own resource says that does not move between polls: whether the bay
// is empty (State Absent) and its rated PowerCapacityWatts (0 unknown).
type psuRef struct {
	named
	absent   bool
	capacity float64
}

// equipment is one PowerEquipment item (a rack PDU, floor PDU, transfer
// switch, power shelf or electrical bus).
type equipment struct {
	id, path, kind  string
	metrics         string
	mains, branches []named // circuits
	feeders         []named
	outlets         []named
	psus            []psuRef // power shelves: PSU Metrics paths
}

// tree is what discovery found on one service.
type tree struct {
	chassis   []*chassis
	equipment []*equipment
}

// discover walks the service once: the chassis and their power and thermal
// resources, and the power equipment. Reading the same paths every poll
// then costs one request per resource.
func discover(ctx context.Context, c *conn) (*tree, error) {
	var root struct {
		Chassis        link
		PowerEquipment link
	}
	if err := c.getJSON(ctx, "/redfish/v1/", &root); err != nil {
		return nil, err
	}
	t := &tree{}
	if root.Chassis.ID != "" {
		var members collection
		if err := c.getJSON(ctx, root.Chassis.ID, &members); err != nil {
			return nil, err
		}
		for _, m := range members.Members {
			ch, err := discoverChassis(ctx, c, m.ID)
			if err != nil {
				return nil, err
			}
			t.chassis = append(t.chassis, ch)
		}
		markHosts(t.chassis)
	}
	if root.PowerEquipment.ID != "" {
		eq, err := discoverEquipment(ctx, c, root.PowerEquipment.ID)
		if err != nil {
			return nil, err
		}
		t.equipment = eq
		for _, ch := range t.chassis {
			ch.equipment = len(eq) > 0
		}
	}
	return t, nil
}

func discoverChassis(ctx context.Context, c *conn, path string) (*chassis, error) {
	var doc chassisDoc
	if err := c.getJSON(ctx, path, &doc); err != nil {
		return nil, err
	}
	ch := &chassis{
		id: firstNonEmpty(doc.ID, doc.Name, path), path: path, chassisType: doc.ChassisType,
		envMetrics: doc.EnvironmentMetrics.ID, power: doc.Power.ID, thermal: doc.Thermal.ID,
	}
	ch.containedBy, ch.systems = doc.Links.ContainedBy.ID, len(doc.Links.ComputerSystems)

	if doc.PowerSubsystem.ID != "" {
		var ps struct{ PowerSupplies link }
		if err := c.getJSON(ctx, doc.PowerSubsystem.ID, &ps); err != nil {
			return nil, err
		}
		if conventional := path + "/PowerSubsystem"; ps.PowerSupplies.ID == "" && doc.PowerSubsystem.ID != conventional {
			// The link points somewhere without PSUs (the DMTF power-shelf
			// mockup links its Sensors): try the conventional place.
			if err := c.getJSON(ctx, conventional, &ps); err != nil && statusOf(err) != 404 {
				return nil, err
			}
		}
		psus, err := discoverPSUs(ctx, c, ps.PowerSupplies.ID)
		if err != nil {
			return nil, err
		}
		ch.psus = psus
	}
	if doc.ThermalSubsystem.ID != "" {
		var ts struct {
			ThermalMetrics link
			Fans           link
		}
		if err := c.getJSON(ctx, doc.ThermalSubsystem.ID, &ts); err != nil {
			return nil, err
		}
		ch.thermalMetrics = ts.ThermalMetrics.ID
		if ts.Fans.ID != "" {
			fans, err := namedMembers(ctx, c, ts.Fans.ID)
			if err != nil {
				return nil, err
			}
			ch.fans = fans
		}
	}
	if doc.Sensors.ID != "" {
		var members collection
		if err := c.getJSON(ctx, doc.Sensors.ID, &members); err != nil {
			return nil, err
		}
		seen := labels{}
		for _, m := range members.Members {
			var s struct {
				ID          string `json:"Id"`
				Name        string
				ReadingType string
			}
			if err := c.getJSON(ctx, m.ID, &s); err != nil {
				return nil, err
			}
			n := named{label: seen.unique(firstNonEmpty(s.ID, s.Name, m.ID)), path: m.ID}
			switch s.ReadingType {
			case "Power", "EnergyJoules", "EnergykWh":
				ch.powerSensors = append(ch.powerSensors, n)
			case "Temperature":
				ch.tempSensors = append(ch.tempSensors, n)
			}
		}
	}
	return ch, nil
}

// markHosts decides which chassis measure the host's power, so nothing is
// counted twice: a chassis contained by another (a GPU baseboard, a card, a
// module, a blade's sub-chassis) never does; of the top-level chassis, those
// linked to a computer system do; if none is, every top-level chassis does
// (an enclosure BMC, or a BMC that omits the links). Contained chassis are
// still reported, as components.
func markHosts(all []*chassis) {
	known := map[string]bool{}
	for _, ch := range all {
		known[ch.path] = true
	}
	var top []*chassis
	for _, ch := range all {
		if ch.containedBy == "" || !known[ch.containedBy] {
			top = append(top, ch)
		}
	}
	withSystems := 0
	for _, ch := range top {
		if ch.systems > 0 {
			withSystems++
		}
	}
	for _, ch := range top {
		ch.host = withSystems == 0 || ch.systems > 0
	}
}

// discoverPSUs lists a chassis's PSU collection: each PSU's label (its Name
// first), Metrics path, state and capacity, read once here because they do
// not move.
func discoverPSUs(ctx context.Context, c *conn, path string) ([]psuRef, error) {
	seen := labels{}
	var out []psuRef
	err := eachMember(ctx, c, path, func(id string, raw json.RawMessage, doc memberDoc) {
		psu := psuRef{named: named{label: seen.unique(firstNonEmpty(doc.Name, doc.ID, id)), path: doc.Metrics.ID}}
		// State and capacity only refine the totals: a BMC that garbles
		// them loses the capacity, not the PSU.
		var extra struct {
			Status             schemas.Status
			PowerCapacityWatts *float64
		}
		if json.Unmarshal(raw, &extra) == nil {
			psu.absent = extra.Status.State == schemas.AbsentState
			if v := extra.PowerCapacityWatts; v != nil && *v > 0 && !math.IsInf(*v, 0) {
				psu.capacity = *v
			}
		}
		out = append(out, psu)
	})
	return out, err
}

// namedMembers lists a collection's members with unique labels, read from
// each member's Id first, then Name.
func namedMembers(ctx context.Context, c *conn, path string) ([]named, error) {
	seen := labels{}
	var out []named
	err := eachMember(ctx, c, path, func(id string, _ json.RawMessage, doc memberDoc) {
		out = append(out, named{label: seen.unique(firstNonEmpty(doc.ID, doc.Name, id)), path: id})
	})
	return out, err
}

// memberDoc is what every member listing reads of a member.
type memberDoc struct {
	ID      string `json:"Id"`
	Name    string
	Metrics link
}

// eachMember reads the collection at path (none when path is empty) and
// each member once, in the collection's order, and hands each to fn with
// its path and raw document.
func eachMember(ctx context.Context, c *conn, path string, fn func(id string, raw json.RawMessage, doc memberDoc)) error {
	if path == "" {
		return nil
	}
	var members collection
	if err := c.getJSON(ctx, path, &members); err != nil {
		return err
	}
	for _, m := range members.Members {
		var raw json.RawMessage
		if err := c.getJSON(ctx, m.ID, &raw); err != nil {
			return err
		}
		var doc memberDoc
		if err := json.Unmarshal(raw, &doc); err != nil {
			return &garbageError{path: m.ID, err: err}
		}
		fn(m.ID, raw, doc)
	}
	return nil
}

// equipmentKinds are the PowerEquipment collections, with the label value
// each member gets.
var equipmentKinds = []struct{ field, kind string }{
	{"RackPDUs", "rack_pdu"}, {"FloorPDUs", "floor_pdu"}, {"TransferSwitches", "transfer_switch"},
	{"PowerShelves", "power_shelf"}, {"ElectricalBuses", "electrical_bus"},
}

func discoverEquipment(ctx context.Context, c *conn, path string) ([]*equipment, error) {
	var root map[string]any
	if err := c.getJSON(ctx, path, &root); err != nil {
		return nil, err
	}
	var out []*equipment
	for _, k := range equipmentKinds {
		ref, _ := root[k.field].(map[string]any)
		collPath, _ := ref["@odata.id"].(string)
		if collPath == "" {
			continue
		}
		var members collection
		if err := c.getJSON(ctx, collPath, &members); err != nil {
			return nil, err
		}
		for _, m := range members.Members {
			var doc struct {
				ID            string `json:"Id"`
				Name          string
				Metrics       link
				Mains         link
				Branches      link
				Feeders       link
				Outlets       link
				PowerSupplies link
			}
			if err := c.getJSON(ctx, m.ID, &doc); err != nil {
				return nil, err
			}
			e := &equipment{id: firstNonEmpty(doc.ID, doc.Name, m.ID), path: m.ID, kind: k.kind, metrics: doc.Metrics.ID}
			var err error
			if e.mains, err = namedMembers(ctx, c, doc.Mains.ID); err != nil {
				return nil, err
			}
			if e.branches, err = namedMembers(ctx, c, doc.Branches.ID); err != nil {
				return nil, err
			}
			if e.feeders, err = namedMembers(ctx, c, doc.Feeders.ID); err != nil {
				return nil, err
			}
			if e.outlets, err = namedMembers(ctx, c, doc.Outlets.ID); err != nil {
				return nil, err
			}
			if e.psus, err = discoverPSUs(ctx, c, doc.PowerSupplies.ID); err != nil {
				return nil, err
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// labels hands out unique label values: a repeated or empty name gets a
// suffix, so members without MemberId or with the same name never collide.
type labels map[string]int

func (l labels) unique(name string) string {
	if name == "" {
		name = "unnamed"
	}
	l[name]++
	if n := l[name]; n > 1 {
		return name + "#" + strconv.Itoa(n)
	}
	return name
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// sortedKeys is used where map order would otherwise leak into output.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
