package accounting

import (
	"strings"

	"github.com/influxdata/line-protocol/v2/lineprotocol"

	"github.com/joules-energy/joules/aggregator"
	"github.com/joules-energy/joules/internal/energy"
	"github.com/joules-energy/joules/internal/schema"
)

// input is what a raw series means to accounting.
type input uint8

const (
	inNone         input = iota
	inGPUEnergy          // joules_gpu_energy_joules_total: counter, one GPU
	inCPUEnergy          // node_rapl_{package,dram}_joules_total: counter that wraps, one host
	inRAPLRange          // joules_rapl_max_energy_range_joules: where a RAPL zone wraps
	inBMCEnergy          // joules_redfish_host_energy_joules_total, role host: counter, one host
	inBMCPower           // joules_redfish_host_power_watts, role host: power to integrate
	inMeterEnergy        // energy of a meter whose role is not host: counter
	inMeterPower         // power of such a meter: power to integrate
	inWork               // joules_work_total: work counter
	inActivity           // joules_gpu_sm_activity_ratio or joules_gpu_utilization_ratio
	inGPULimit           // joules_gpu_power_enforced_limit_watts: bounds a GPU's steps
	inHostCapacity       // joules_redfish_host_power_capacity_watts: bounds a chassis's steps
	inShare              // joules_gpu_workload_share_ratio: a workload's share of a GPU
	inLoadCPUs           // joules_workload_requested_cpus: a workload's CPUs on a host
	inHostCPUs           // joules_host_cpus: a host's CPUs
)

// Roles of meters, as the agent's redfish role label says them.
const (
	roleHost          = schema.RoleHost
	roleFacilityInput = schema.RoleFacilityInput
	roleUPSOutput     = schema.RoleUPSOutput
	rolePDUOutput     = schema.RolePDUOutput
	roleITInput       = schema.RoleITInput
)

// Tags that describe a series without naming it: the epoch of a counter
// (it changes when the writer could not continue the value) and the
// resource a BMC reading came from (it may alternate between two schema
// paths). Neither starts a new series in accounting.
func descriptive(key string) bool { return key == "epoch" || key == "source" }

// ReadsValues implements aggregator.Selective: accounting reads the values
// of its inputs only. A measurement is one when it is one for a host or
// for a meter (the redfish ones depend on the role tag).
func (a *Accountant) ReadsValues(measurement string) bool {
	return classify(measurement, nil) != inNone || classify(measurement, meterRole) != inNone
}

var meterRole = []aggregator.Tag{{Key: "role", Value: "meter"}}

// meterInputs are the equipment metrics of every meter protocol: a meter's
// energy counter and its power, counted for the meter's role.
var meterInputs = func() map[string]input {
	m := map[string]input{}
	for _, p := range schema.MeterProtocols {
		m["joules_"+p+schema.MeterEnergySuffix] = inMeterEnergy
		m["joules_"+p+schema.MeterPowerSuffix] = inMeterPower
	}
	return m
}()

// classify says what a point is for, from its measurement and, for a
// Redfish reading, its role tag (looked up only then: most points are not
// accounting's).
func classify(measurement string, tags []aggregator.Tag) input {
	role := func() string { return pointView{tags: tags}.tag("role") }
	if in, ok := meterInputs[measurement]; ok {
		if r := role(); r != "" && r != roleHost {
			return in
		}
		return inNone
	}
	switch measurement {
	case "joules_gpu_energy_joules_total":
		return inGPUEnergy
	case "node_rapl_package_joules_total", "node_rapl_dram_joules_total":
		return inCPUEnergy
	case "joules_rapl_max_energy_range_joules":
		return inRAPLRange
	case "joules_redfish_host_energy_joules_total":
		if r := role(); r == "" || r == roleHost {
			return inBMCEnergy
		}
		return inMeterEnergy
	case "joules_redfish_host_power_watts":
		if r := role(); r == "" || r == roleHost {
			return inBMCPower
		}
		return inMeterPower
	case "joules_work_total":
		return inWork
	case "joules_gpu_sm_activity_ratio", "joules_gpu_utilization_ratio":
		return inActivity
	case "joules_gpu_power_enforced_limit_watts":
		return inGPULimit
	case schema.WorkloadShare:
		return inShare
	case schema.WorkloadCPUs:
		return inLoadCPUs
	case schema.HostCPUs:
		return inHostCPUs
	case "joules_redfish_host_power_capacity_watts":
		if r := role(); r == "" || r == roleHost {
			return inHostCapacity
		}
	}
	return inNone
}

// Topology names a host by where it is. It is exported because the keys
// that embed it are checkpointed with gob, which skips unexported fields.
type Topology struct{ Site, Hall, Rack, Host string }

// gpuKey names one GPU: its UUID where the point has one, else its index.
type gpuKey struct {
	Topology
	GPU string
}

// meterKey names one meter: the BMC or power-equipment endpoint (bmc tag;
// an SNMP or Modbus meter's device tag) and, for power equipment, the item
// (equipment_type and equipment tags).
type meterKey struct {
	Site, Hall, Rack, BMC, Type, Equipment, Role string
}

// name is the meter tag of derived points: bmc/type/equipment.
func (k meterKey) name() string {
	name := k.BMC + "/" + k.Type
	if k.Equipment != "" {
		name += "/" + k.Equipment
	}
	return name
}

// workKey names one kind of work on one host, or on one GPU where the
// workload publishes its gpu label.
type workKey struct {
	Topology
	GPU, Unit string
	Model     string // the model served, where the server says (vLLM, SGLang)
}

// series is the state of one raw series between its points.
type series struct {
	In     input
	Method uint8 // host or meter energy: sourceBMCCounter or sourceBMCIntegrated
	GPUSM  bool  // activity: SM activity (preferred) rather than utilization
	Raw    bool  // a hardware counter no writer continues (RAPL): a new epoch restarted it from zero
	// Entity is what the series is summed into: a host (CPU, BMC), a GPU
	// (GPU energy, activity, workload share), a meter, a kind of work or a
	// workload on a host, by its id in entities.
	Entity  uint32
	Load    uint32 // a workload share: the workload on the GPU's host
	RAPLKey string // host and powercap path: joins the zone's wrap range
	CapKey  string // host and chassis: joins the chassis's PSU capacity
	Epoch   string // the epoch tag of its last point

	// Counter: what the next reading is measured from (energy.Track);
	// power: the last reading.
	Track energy.Track
	// LastT is the newest point's time (unix ns), LastV its value (power,
	// activity); Seen says they hold a point.
	LastT int64
	LastV float64
	Seen  bool
	// Hist holds the last points in order, so a point that comes out of
	// order lands in its place (steps.go); Young says Hist still holds the
	// series' first point.
	Hist  [histLen]histPoint
	NHist uint8
	Young bool
	// Pend is a point more than max_gap after the series' last, held until
	// the next point or the clock says whether the series resumed after a
	// gap or its clock jumped ahead (PendT 0: none).
	PendT     int64
	PendV     float64
	PendEpoch string
}

// pointView is what accounting reads of a point.
type pointView struct {
	tags  []aggregator.Tag
	value float64
	ok    bool
}

func view(p *aggregator.Point) pointView {
	v := pointView{tags: p.Tags}
	for _, f := range p.Fields {
		if f.Key != "value" {
			continue
		}
		switch f.Value.Kind() {
		case lineprotocol.Float:
			v.value, v.ok = f.Value.FloatV(), true
		case lineprotocol.Int:
			v.value, v.ok = float64(f.Value.IntV()), true
		case lineprotocol.Uint:
			v.value, v.ok = float64(f.Value.UintV()), true
		}
	}
	return v
}

func (v pointView) tag(key string) string {
	for _, t := range v.tags {
		if t.Key == key {
			return t.Value
		}
		if t.Key > key { // tags are sorted
			break
		}
	}
	return ""
}

// newSeries fills a series' identity from its first point. Strings are
// cloned: the point's strings point into the request body.
func (e *entities) newSeries(in input, v pointView) *series {
	s := &series{In: in}
	host := Topology{Site: strings.Clone(v.tag(schema.TagSite)), Hall: strings.Clone(v.tag(schema.TagHall)), Rack: strings.Clone(v.tag(schema.TagRack)), Host: strings.Clone(v.tag(schema.TagHost))}
	switch in {
	case inGPUEnergy, inActivity, inGPULimit, inShare:
		gpu := v.tag("uuid")
		if gpu == "" {
			gpu = v.tag(schema.TagGPU)
		}
		s.Entity = e.gpu(gpuKey{host, strings.Clone(gpu)})
		if index := v.tag(schema.TagGPU); index != "" && index != gpu {
			e.GPUAlias[gpuKey{host, strings.Clone(index)}] = s.Entity
		}
	case inCPUEnergy, inRAPLRange:
		s.RAPLKey = strings.Clone(host.Host + "\x00" + v.tag("path"))
		s.Entity = e.host(host)
		s.Raw = in == inCPUEnergy
	case inBMCEnergy, inBMCPower, inHostCapacity:
		s.Method = sourceBMCCounter
		if v.tag("method") == "integrated" {
			s.Method = sourceBMCIntegrated
		}
		s.Entity = e.host(host)
		s.CapKey = strings.Clone(host.Host + "\x00" + v.tag("bmc") + "\x00" + v.tag("chassis"))
	case inMeterEnergy, inMeterPower:
		if v.tag("method") == "integrated" {
			s.Method = sourceBMCIntegrated
		}
		typ := v.tag("equipment_type")
		if typ == "" {
			typ = "chassis" // a meter that presents itself as a chassis
		}
		name := v.tag("bmc")
		if name == "" {
			name = v.tag(schema.TagDevice) // an SNMP or Modbus meter
		}
		s.Entity = e.meter(meterKey{Site: host.Site, Hall: host.Hall, Rack: host.Rack, BMC: strings.Clone(name),
			Type: strings.Clone(typ), Equipment: strings.Clone(v.tag("equipment")), Role: strings.Clone(v.tag("role"))})
	case inWork:
		model := v.tag("model_name") // vLLM's and SGLang's label of the model served
		s.Entity = e.work(workKey{host, strings.Clone(v.tag(schema.TagGPU)), strings.Clone(v.tag(schema.TagUnit)), strings.Clone(model)})
	case inLoadCPUs:
		s.Entity = e.load(loadOf(host, v))
	case inHostCPUs:
		s.Entity = e.host(host)
	}
	if in == inShare {
		s.Load = e.load(loadOf(host, v))
	}
	s.Young = true
	e.count(s, 1)
	return s
}

// Kinds of series that feed a host or a meter, for counting them.
const (
	hostCPU     = nBMCSources // after the BMC sources
	nHostKinds  = nBMCSources + 1
	nMeterKinds = meterPower + 1 // the two energy methods, then power
)

// count adds delta to the series feeding the series' entity, by kind: how
// many a window should have, so that one silent chassis, socket or PSU
// shows in coverage instead of hiding behind the others.
func (e *entities) count(s *series, delta int) {
	switch s.In {
	case inBMCEnergy, inBMCPower, inCPUEnergy:
		kind := int(s.Method)
		if s.In == inBMCPower {
			kind = sourceBMCPower
		} else if s.In == inCPUEnergy {
			kind = hostCPU
		}
		n := e.HostSeries[s.Entity]
		n[kind] += delta
		e.HostSeries[s.Entity] = n
	case inMeterEnergy, inMeterPower:
		kind := int(s.Method)
		if s.In == inMeterPower {
			kind = meterPower
		}
		n := e.MeterSeries[s.Entity]
		n[kind] += delta
		e.MeterSeries[s.Entity] = n
	}
}

// seriesOf is how many series of a kind feed a host or meter (at least 1).
func seriesOf[N ~[nHostKinds]int | ~[nMeterKinds]int](m map[uint32]N, id uint32, kind int) float64 {
	n := m[id]
	return float64(max(1, n[kind]))
}

// entities interns the hosts, GPUs, meters and kinds of work that windows
// sum, so a window keys its sums by small ids and holds them inline: the
// memory per window and entity is a few dozen bytes, not the keys' strings.
// Ids are never reused; an entity silent past forget_after is no longer
// expected (its presence is cleared) but keeps its id.
type entities struct {
	HostIDs   map[Topology]uint32
	Hosts     []Topology
	HostSeen  []presence
	GPUIDs    map[gpuKey]uint32
	GPUs      []gpuKey
	GPUHost   []uint32  // the GPU's host id
	GPUIdle   []bool    // the last activity reading was under idle_below
	GPUSM     []bool    // the GPU reports SM activity
	GPULimit  []float64 // the power limit the GPU's driver enforces, W; 0 unknown
	MeterIDs  map[meterKey]uint32
	Meters    []meterKey
	MeterSeen []presence
	WorkIDs   map[workKey]uint32
	Works     []workKey
	// Loads are workloads on hosts (workload.go); Shares holds each GPU's
	// newest sets of workload shares, by GPU id.
	LoadIDs  map[loadKey]uint32
	Loads    []loadKey
	LoadSeen []presence
	Shares   map[uint32][]shareSet
	// GPUSeen is when each GPU sent energy; GPUAlias finds a GPU by its
	// index where its points carry a uuid (a workload labels work by index).
	GPUSeen  []presence
	GPUAlias map[gpuKey]uint32
	// HostSeries and MeterSeries count the series feeding each host (BMC
	// energy by source, CPU) and meter (energy by method, power).
	HostSeries  map[uint32][nHostKinds]int
	MeterSeries map[uint32][nMeterKinds]int
	// Capacity is each chassis's PSU capacity (W), by host id, bmc and
	// chassis: the bound of its BMC's steps.
	Capacity map[string]float64
}

// presence is when an entity first and last sent data (unix ns).
type presence struct {
	First, Last int64
	Seen        bool
}

// expected says whether the entity counts in a window ending at end: it
// sent data before the end, and not longer than forget_after before
// (forget).
func (p presence) expected(end, forget int64) bool {
	return p.Seen && p.First < end && p.Last >= forget
}

func (p *presence) mark(t int64) {
	if !p.Seen {
		*p = presence{First: t, Last: t, Seen: true}
		return
	}
	p.First = min(p.First, t)
	p.Last = max(p.Last, t)
}

func newEntities() *entities {
	return &entities{HostIDs: map[Topology]uint32{}, GPUIDs: map[gpuKey]uint32{}, MeterIDs: map[meterKey]uint32{}, WorkIDs: map[workKey]uint32{},
		LoadIDs: map[loadKey]uint32{}, Shares: map[uint32][]shareSet{}, GPUAlias: map[gpuKey]uint32{}, HostSeries: map[uint32][nHostKinds]int{}, MeterSeries: map[uint32][nMeterKinds]int{}, Capacity: map[string]float64{}}
}

func intern[K comparable](ids map[K]uint32, keys *[]K, k K) (uint32, bool) {
	if id, ok := ids[k]; ok {
		return id, false
	}
	id := uint32(len(*keys))
	ids[k] = id
	*keys = append(*keys, k)
	return id, true
}

func (e *entities) host(k Topology) uint32 {
	id, added := intern(e.HostIDs, &e.Hosts, k)
	if added {
		e.HostSeen = append(e.HostSeen, presence{})
	}
	return id
}

func (e *entities) gpu(k gpuKey) uint32 {
	id, added := intern(e.GPUIDs, &e.GPUs, k)
	if added {
		e.GPULimit = append(e.GPULimit, 0)
		e.GPUHost = append(e.GPUHost, e.host(k.Topology))
		e.GPUIdle = append(e.GPUIdle, false)
		e.GPUSM = append(e.GPUSM, false)
		e.GPUSeen = append(e.GPUSeen, presence{})
	}
	return id
}

func (e *entities) meter(k meterKey) uint32 {
	id, added := intern(e.MeterIDs, &e.Meters, k)
	if added {
		e.MeterSeen = append(e.MeterSeen, presence{})
	}
	return id
}

func (e *entities) work(k workKey) uint32 {
	id, _ := intern(e.WorkIDs, &e.Works, k)
	return id
}
