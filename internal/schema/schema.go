// Package schema names what the aggregator's accounting writes to InfluxDB
// and the report reads back: measurements, tags, fields and their values
// (docs/SCHEMA.md). Both import it, so a name changes in one place.
package schema

// Derived measurements.
const (
	Energy         = "joules_energy"
	PUE            = "joules_pue"
	Work           = "joules_work_efficiency"
	Activity       = "joules_gpu_activity_per_watt"
	Reconciliation = "joules_reconciliation"
)

// Tags of derived points.
const (
	TagResolution = "resolution"
	TagScope      = "scope"
	TagSite       = "site"
	TagHall       = "hall"
	TagRack       = "rack"
	TagHost       = "host"
	TagGPU        = "gpu"
	TagKind       = "kind"
	TagMeter      = "meter"
	TagUnit       = "unit"
)

// Values of the scope tag.
const (
	ScopeSite  = "site"
	ScopeHall  = "hall"
	ScopeRack  = "rack"
	ScopeHost  = "host"
	ScopeGPU   = "gpu"
	ScopeMeter = "meter"
)

// Values of the kind tag: energy kinds (meters carry their role), and
// reconciliations.
const (
	KindIT              = "it"
	KindGPU             = "gpu"
	KindCPU             = "cpu"
	KindBMCVsComponents = "bmc_vs_components"
	KindPDUVsBMCs       = "pdu_vs_bmcs"
)

// Resolution tag values besides the accounting windows' own (1m, 1h, 1d).
const (
	Rolling1h  = "rolling_1h"
	Rolling1d  = "rolling_1d"
	Rolling30d = "rolling_30d"
)

// Fields of joules_energy.
const (
	FieldJoules         = "joules"
	FieldCoverage       = "coverage"
	FieldSource         = "source"
	FieldLowerBound     = "lower_bound"
	FieldHosts          = "hosts"
	FieldHostsReporting = "hosts_reporting"
	FieldIdleJoules     = "idle_joules"
	FieldReason         = "reason" // also joules_pue's
)

// Fields of joules_pue.
const (
	FieldPUE              = "pue"
	FieldFacilityJoules   = "facility_joules"
	FieldITJoules         = "it_joules" // also joules_work_efficiency's
	FieldCategory         = "category"
	FieldFacilityCoverage = "facility_coverage"
	FieldITCoverage       = "it_coverage"
	FieldEstimate         = "estimate"
	FieldInterim          = "interim"
	FieldITMeter          = "it_meter" // where the IT energy was measured: ups_output, pdu_output, it_input, hosts
)

// Fields of joules_work_efficiency.
const (
	FieldWork             = "work"
	FieldPerJoule         = "per_joule"
	FieldPerFacilityJoule = "per_facility_joule"
)

// Fields of joules_gpu_activity_per_watt.
const (
	FieldActivity = "activity"
	FieldWatts    = "watts"
	FieldPerWatt  = "per_watt"
	FieldSignal   = "signal"
)

// Fields of joules_reconciliation.
const (
	FieldReferenceJoules = "reference_joules"
	FieldPartsJoules     = "parts_joules"
	FieldRemainderJoules = "remainder_joules"
	FieldRemainderRatio  = "remainder_ratio"
)

// Values of the source field of a host's IT energy; several joined by "+"
// when the best source changed within the window.
const (
	SourceBMCCounter    = "bmc_counter"
	SourceBMCIntegrated = "bmc_integrated"
	SourceBMCPower      = "bmc_power_integrated"
	SourceComponents    = "components_lower_bound"
	SourceNone          = "none"
)

// Meter roles: where a meter sits on the power path.
const (
	RoleHost          = "host"
	RoleFacilityInput = "facility_input"
	RoleUPSOutput     = "ups_output"
	RolePDUOutput     = "pdu_output"
	RoleITInput       = "it_input"
)

// Meter inputs: the agent's equipment metrics that accounting counts for a
// meter's role, whichever protocol read them (joules_<protocol><suffix>).
const (
	MeterEnergySuffix = "_equipment_energy_joules_total"
	MeterPowerSuffix  = "_equipment_power_watts"
	// TagDevice names an SNMP or Modbus meter, as tag bmc names a Redfish one.
	TagDevice = "device"
)

// MeterProtocols are the protocols whose equipment metrics are meters.
var MeterProtocols = []string{"redfish", "snmp", "modbus"}

// ITMeterHosts is the it_meter of a PUE whose IT energy is the hosts' own.
const ITMeterHosts = "hosts"

// Reason prefixes the report looks for.
const (
	ReasonImplausible = "implausible: "
)
