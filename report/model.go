package report

import "time"

// JoulesPerKWh converts energy.
const JoulesPerKWh = 3.6e6

// Report is what a report says. JSON keys and CSV columns are stable.
type Report struct {
	Title      string    `json:"title"`
	Generated  time.Time `json:"generated"`
	From       time.Time `json:"from"`
	To         time.Time `json:"to"`
	Resolution string    `json:"resolution"`
	Scope      string    `json:"scope"` // site, hall, rack or host: what the filters select
	Filters    Filters   `json:"filters"`

	Headline       Headline         `json:"headline"`
	PowerPath      []PathStep       `json:"power_path"`
	Energy         Energy           `json:"energy"`
	PUE            PUE              `json:"pue"`
	Halls          []HallRow        `json:"halls"`
	Racks          []EnergyRow      `json:"racks"`
	Hosts          []EnergyRow      `json:"hosts"`
	HostCount      int              `json:"host_count"`
	GPUs           []GPURow         `json:"gpus"`
	GPUCount       int              `json:"gpu_count"`
	Idle           Idle             `json:"gpu_idle"`
	Work           []WorkRow        `json:"work"`
	Reconciliation []Reconciliation `json:"reconciliation"`
	Workloads      *Workloads       `json:"workloads,omitempty"`
	Carbon         *Amount          `json:"carbon,omitempty"`
	Cost           *Amount          `json:"cost,omitempty"`
	Gaps           []string         `json:"gaps"`
	Series         Series           `json:"series"`
}

// Filters are the topology filters the report was asked for.
type Filters struct {
	Site string `json:"site,omitempty"`
	Hall string `json:"hall,omitempty"`
	Rack string `json:"rack,omitempty"`
	Host string `json:"host,omitempty"`
}

// Headline is the report's first screen: one set of numbers over the same
// windows (those that have a PUE; every window where none has), each of
// which can be worked out from the others: PUE = facility / IT, remainder
// = IT − hosts, work per facility joule = work / facility.
type Headline struct {
	Windows int `json:"windows"` // the windows it is over
	Of      int `json:"of"`      // the windows of the range

	FacilitykWh *float64 `json:"facility_kwh"` // nil without a facility meter
	ITkWh       float64  `json:"it_kwh"`       // at the PUE's measurement point; without a PUE, the hosts'
	ITPoint     string   `json:"it_point"`     // where it was measured: "PDU output", "UPS output", …
	PUE         *float64 `json:"pue"`
	PUEName     string   `json:"pue_name"` // "Interim PUE", or "Annual PUE" over twelve months
	Category    int      `json:"category"`
	Estimate    bool     `json:"estimate"`
	Coverage    float64  `json:"coverage"`
	Reason      string   `json:"reason,omitempty"` // why there is no PUE

	HostsKWh        float64  `json:"hosts_kwh"` // the hosts' own IT energy (their BMCs), same windows
	HostsLowerBound bool     `json:"hosts_lower_bound"`
	RemainderKWh    *float64 `json:"remainder_kwh"` // IT at the point − hosts; nil when the point is the hosts
	RemainderShare  *float64 `json:"remainder_share"`

	Work []HeadlineWork `json:"work"`
}

// HeadlineWork is work over the headline's windows and per joule of the
// headline's facility and host energy.
type HeadlineWork struct {
	Unit             string   `json:"unit"`
	Work             float64  `json:"work"`
	PerFacilityJoule *float64 `json:"per_facility_joule"`
	PerHostJoule     *float64 `json:"per_host_joule"`
}

// PathStep is the energy at one point of the power path over the
// headline's windows: facility input, UPS output, PDU output, IT input
// meters, the hosts' BMCs, their GPUs and CPUs.
type PathStep struct {
	Name     string  `json:"name"`
	Role     string  `json:"role"` // the meters' role, hosts or components
	KWh      float64 `json:"kwh"`
	Coverage float64 `json:"coverage"`
}

// Energy totals over the range, in kWh.
type Energy struct {
	ITkWh       float64 `json:"it_kwh"`       // measured at the hosts (their best source)
	FacilitykWh float64 `json:"facility_kwh"` // facility_input meters; 0 without
	ITCoverage  float64 `json:"it_coverage"`  // share of expected host-time with data
	LowerBound  bool    `json:"lower_bound"`  // some hosts only as GPUs + CPU
	GPUkWh      float64 `json:"gpu_kwh"`
}

// PUE over the range: facility energy over IT energy of the windows that
// had a PUE, never a mean of ratios.
type PUE struct {
	Value          *float64 `json:"value"`
	Name           string   `json:"name"` // "Interim PUE" or "Annual PUE"
	Category       int      `json:"category"`
	Estimate       bool     `json:"estimate"`
	ITMeter        string   `json:"it_meter"` // where its IT energy was measured
	Coverage       float64  `json:"coverage"`
	Windows        int      `json:"windows"`
	WindowsWithPUE int      `json:"windows_with_pue"`
	ITkWh          float64  `json:"it_kwh"` // at the PUE's boundary (UPS, PDU or IT input)
	FacilitykWh    float64  `json:"facility_kwh"`
	Reason         string   `json:"reason,omitempty"` // why there is none
}

// HallRow is a hall's energy and pPUE.
type HallRow struct {
	Site        string   `json:"site"`
	Hall        string   `json:"hall"`
	ITkWh       float64  `json:"it_kwh"`
	FacilitykWh float64  `json:"facility_kwh"`
	PPUE        *float64 `json:"ppue"`
	Coverage    float64  `json:"coverage"`
}

// EnergyRow is a rack's or host's IT energy.
type EnergyRow struct {
	Site     string  `json:"site"`
	Hall     string  `json:"hall,omitempty"`
	Rack     string  `json:"rack,omitempty"`
	Host     string  `json:"host,omitempty"`
	KWh      float64 `json:"kwh"`
	Share    float64 `json:"share"`
	Coverage float64 `json:"coverage"`
}

// GPURow is a GPU's energy and the part of it drawn while idle.
type GPURow struct {
	Host    string  `json:"host"`
	GPU     string  `json:"gpu"`
	KWh     float64 `json:"kwh"`
	IdleKWh float64 `json:"idle_kwh"`
}

// Idle is GPU energy drawn while the GPUs were idle.
type Idle struct {
	GPUkWh  float64 `json:"gpu_kwh"`
	IdlekWh float64 `json:"idle_kwh"`
	Share   float64 `json:"share"`
}

// WorkRow is useful work per joule of one unit over the range.
type WorkRow struct {
	Unit                string   `json:"unit"`
	Work                float64  `json:"work"`
	ITkWh               float64  `json:"it_kwh"`
	PerJoule            float64  `json:"per_joule"`
	PerFacilityKWh      *float64 `json:"per_facility_kwh"`
	PerFacilityJouleErr string   `json:"per_facility_note,omitempty"`
}

// Reconciliation is what the parts do not explain, summed over the range.
type Reconciliation struct {
	Kind         string  `json:"kind"`
	Where        string  `json:"where"`
	ReferenceKWh float64 `json:"reference_kwh"`
	PartsKWh     float64 `json:"parts_kwh"`
	RemainderKWh float64 `json:"remainder_kwh"`
	Ratio        float64 `json:"remainder_ratio"`
}

// Amount is carbon (kg CO2e) or cost, and what it was computed from.
type Amount struct {
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	Basis string  `json:"basis"`
}

// Series are the charts' data, one point per chart step.
type Series struct {
	Step         string      `json:"step"`
	Power        []PowerPt   `json:"power"`
	PUE          []ValuePt   `json:"pue"`
	WorkPerJoule []ValuePt   `json:"work_per_joule"`
	WorkUnit     string      `json:"work_unit"`
	HostEnergy   []EnergyRow `json:"-"`
	ITPoint      string      `json:"it_point"` // the name of Power's ITWatts
}

// PowerPt is mean power over a chart step: IT at the PUE's measurement
// point (the hosts' where there is no PUE), the hosts' own, and the
// facility's.
type PowerPt struct {
	Time          time.Time `json:"time"`
	ITWatts       float64   `json:"it_watts"`
	HostsWatts    float64   `json:"hosts_watts"`
	FacilityWatts *float64  `json:"facility_watts"`
}

// ValuePt is one value of a series.
type ValuePt struct {
	Time  time.Time `json:"time"`
	Value float64   `json:"value"`
}
