// Package schema names what the aggregator's accounting writes to InfluxDB
// and the report reads back: measurements, tags, fields and their values
// (docs/SCHEMA.md). Both import it, so a name changes in one place.
package schema

import "strings"

// Derived measurements.
const (
	Energy         = "joules_energy"
	PUE            = "joules_pue"
	Work           = "joules_work_efficiency"
	Activity       = "joules_gpu_activity_per_watt"
	Reconciliation = "joules_reconciliation"
	Workload       = "joules_workload_energy"
)

// Derived are every measurement accounting writes.
var Derived = []string{Energy, PUE, Work, Activity, Reconciliation, Workload}

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
	TagModel      = "model" // joules_work_efficiency at scope model: the model served
)

// Values of the scope tag.
const (
	ScopeSite  = "site"
	ScopeHall  = "hall"
	ScopeRack  = "rack"
	ScopeHost  = "host"
	ScopeGPU   = "gpu"
	ScopeMeter = "meter"
	ScopeModel = "model" // joules_work_efficiency: work per joule of one model's workloads
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

// Workload accounting (docs/ACCOUNTING.md#workloads). The agent writes
// each GPU's share per workload (WorkloadShare) and each workload's
// requested CPUs (WorkloadCPUs) with the workload's tags; the aggregator
// writes Workload (joules_workload_energy) with the same tags.
const (
	WorkloadShare = "joules_gpu_workload_share_ratio"
	WorkloadCPUs  = "joules_workload_requested_cpus"
	HostCPUs      = "joules_host_cpus"

	TagWorkloadKind = "workload_kind"
	TagWorkload     = "workload"  // a job id, namespace/pod, a unit
	TagNamespace    = "namespace" // a pod's
	TagOwnerKind    = "owner_kind"
	TagOwner        = "owner"
	// LabelPrefix starts the tags of user-chosen labels (a pod label or a
	// Slurm comment's key=value): label_team, label_model.
	LabelPrefix = "label_"
)

// Values of the workload_kind tag.
const (
	WorkloadSlurmJob    = "slurm_job"
	WorkloadK8sPod      = "k8s_pod"
	WorkloadSystemdUnit = "systemd_unit"
	// WorkloadUnattributed is the part of a site's IT energy no workload
	// had: idle GPUs, the host's share of them, hosts without workloads.
	WorkloadUnattributed = "unattributed"
)

// Fields of joules_workload_energy (besides joules, coverage, hosts,
// facility_joules, pue, reason).
const (
	FieldGPUJoules       = "gpu_joules"        // its processes' share of its GPUs' measured energy
	FieldHostShareJoules = "host_share_joules" // its share of its hosts' energy besides the GPUs
	FieldShare           = "share"             // of the site's IT energy
	FieldRule            = "rule"              // how the host's share was given
)

// Values of the rule field: how a host's energy besides its GPUs is shared.
const (
	RuleGPUEnergy     = "gpu_energy"
	RuleRequestedCPUs = "requested_cpus"
)

// WorkloadTag says whether a raw tag describes the workload (and goes on
// its derived points) rather than the GPU or host.
func WorkloadTag(key string) bool {
	switch key {
	case TagNamespace, TagOwnerKind, TagOwner:
		return true
	}
	name, ok := strings.CutPrefix(key, LabelPrefix)
	return ok && name != ""
}
