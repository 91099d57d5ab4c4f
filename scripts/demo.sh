#!/usr/bin/env bash
# The whole pipeline on this one machine: InfluxDB, the aggregator, and a
# simulated site demo-dc, hall h1: three GPU hosts in racks r1 and r2 (eight
# simulated H200s, a simulated vLLM server and a simulated BMC each), a PDU
# per rack (pdu_output; r1's on Redfish, r2's on SNMP), a UPS (ups_output,
# on SNMP) and the facility meter (facility_input, on Modbus TCP), read by the hosts' agents and by management agents, all
# streaming to the aggregator. Every simulated reading (GPUs, BMCs, PDUs,
# UPS, facility meter, token counters) comes from one site model, computed
# alike by each process from the site's seed and the wall clock, so the
# site adds up: facility > UPS > PDUs > BMCs > GPUs + CPUs, and the PUE is
# the model's. Everything simulated says so. Ctrl-C stops it all.
# DEMO_SECONDS=N stops it after N seconds and checks what reached InfluxDB
# and the report (for CI). DEMO_CLUSTER=1 (make demo-cluster) runs the
# aggregator as a tier on NATS JetStream instead (scripts/demo-cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=bin
[ -x "$BIN/joules-agent" ] && [ -x "$BIN/joules-aggregator" ] && [ -x "$BIN/joules" ] || { echo "demo: run 'make build' first (make demo does)"; exit 1; }
STATE=${DEMO_DIR:-$(mktemp -d -t joules-demo.XXXXXX)}
SHARED=${JOULES_TESTDATA:-../shared/testdata}
mkdir -p "$STATE"
export PATH="$PATH:$(go env GOPATH)/bin"

if ! command -v influxd >/dev/null 2>&1; then
	echo "demo: building InfluxDB 1.8.10 (about 2 minutes, once)"
	(cd /tmp && GOFLAGS= go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10)
fi
# The tier's start_tier and check_tier (and nats-server, installed if missing).
[ -z "${DEMO_CLUSTER:-}" ] || . scripts/demo-cluster.sh

# iso T: T (seconds since the epoch) as RFC 3339.
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
# edge_after T, edge_before T: the nearest ten-second window edge at or
# after (before) T that is not a whole minute, where the model's power
# steps: a step on a range's edge would blur into it.
edge_after() {
	local e=$(( ($1 + 9) / 10 * 10 ))
	(( e % 60 )) || e=$((e + 10))
	echo "$e"
}
edge_before() {
	local e=$(( $1 / 10 * 10 ))
	(( e % 60 )) || e=$((e - 10))
	echo "$e"
}

started=$(date -u +%s)
# The chain's energies are compared from 30 s on, when every meter has
# been polled.
CHAIN_START=$(edge_after $((started + 30)))
pids=()
cleanup() {
	echo
	echo "demo: stopping"
	for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; wait "${pids[i]}" 2>/dev/null || true; done
	echo "demo: stopped; files in $STATE"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

cat > "$STATE/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:18088"
[meta]
  dir = "$STATE/influx/meta"
[data]
  dir = "$STATE/influx/data"
  wal-dir = "$STATE/influx/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:18086"
  flux-enabled = true
  log-enabled = false
[logging]
  level = "warn"
CONF
influxd -config "$STATE/influxdb.conf" >"$STATE/influxd.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -sf http://127.0.0.1:18086/ping >/dev/null && break; sleep 0.2; done
curl -sf -XPOST http://127.0.0.1:18086/query --data-urlencode "q=CREATE DATABASE joules" >/dev/null

echo demo-token > "$STATE/tokens"
cat > "$STATE/aggregator.yml" <<CONF
tokens_file: $STATE/tokens
influx:
  url: http://127.0.0.1:18086
  bucket: joules/autogen
  spool_dir: $STATE/aggregator-spool
  dead_letter_file: $STATE/dead-letter.lp
# Ten-second windows so that PUE and tokens per joule show within a minute
# (the shipped default is one minute).
accounting: {window: 10s, grace: 5s, state_file: $STATE/accounting.state}
CONF
# The aggregator: one process, or with DEMO_CLUSTER=1 a tier whose members
# each run with this configuration plus a cluster: section. INGEST: where
# the agents stream (each ingest replica in turn); AGGREGATOR_LOGS: what the
# short run checks for errors.
INGEST=(127.0.0.1:9561)
AGGREGATOR_LOGS=("$STATE/aggregator.log")
AGGREGATOR_MSG="http://127.0.0.1:9561/health   (metrics: /metrics)"
if [ -n "${DEMO_CLUSTER:-}" ]; then
	start_tier
else
	"$BIN/joules-aggregator" --config.file "$STATE/aggregator.yml" --web.listen-address 127.0.0.1:9561 >"$STATE/aggregator.log" 2>&1 & pids+=($!)
fi

# The site: its seed, and its hosts with their racks. Every simulator
# below is given the same, and computes the same site from it.
SITE=demo-dc
SERVER=dgxh200
hosts=(
	# host      rack port inference       tokens/s seed model                             BMC mockup
	"demo-gpu-01 r1   9560 127.0.0.1:18101 2400     1    meta-llama/Llama-3.1-8B-Instruct  dmtf-public-rackmount1"
	"demo-gpu-02 r1   9562 127.0.0.1:18102 3600     2    meta-llama/Llama-3.1-8B-Instruct  gigabyte-h262-z63"
	"demo-gpu-03 r2   9563 127.0.0.1:18103 1500     3    meta-llama/Llama-3.1-70B-Instruct dmtf-public-rackmount1"
)
racks=(r1 r2)
SITE_ARGS=(--site "$SITE" --server "$SERVER")
for h in "${hosts[@]}"; do read -r host rack _ <<<"$h"; SITE_ARGS+=(--host "$host=$rack"); done

# Redfish: each host's BMC and rack r1's PDU. Rack r2's PDU and the UPS
# speak SNMP (a Raritan PX2 and a UPS on the standard UPS-MIB, read with
# the raritan-pdu2 and ups-mib profiles) and the facility meter Modbus TCP
# (a Schneider PM5000, read with the schneider-pm5000 register map), as in
# most buildings: the PUE comes out of SNMP and Modbus meters. All from the
# site model. Neither the PX2 (without its energy sensor) nor UPS-MIB has
# an energy counter, so their power is integrated: they are polled every
# second, as often as the model's power changes. (A PDU's counter in whole
# Wh would be coarser than the demo's half-minute checks: one Wh is 3.6 kJ,
# a few per cent of a rack PDU's energy in 20 s, more than its losses.)
SNMP_PDU=127.0.0.1:18161
SNMP_UPS=127.0.0.1:18162
MODBUS_FACILITY=127.0.0.1:18502
rm -f "$STATE/bmcs" # a DEMO_DIR used before keeps the last run's endpoints
if [ -d "$SHARED/redfish" ]; then
	echo joules-demo > "$STATE/bmc.pass"
	mockups=()
	for h in "${hosts[@]}"; do read -r host _ _ _ _ _ _ bmc <<<"$h"; mockups+=(--bmc "$host=$SHARED/redfish/$bmc"); done
	mockups+=(--pdu "r1=$SHARED/redfish/dmtf-public-pdu" --snmp-pdu "r2=$SNMP_PDU")
	"$BIN/joules" sim site "${SITE_ARGS[@]}" "${mockups[@]}" \
		--snmp-ups "$SNMP_UPS" --modbus-facility "$MODBUS_FACILITY" \
		--tls --tls.ca-out "$STATE/bmc-ca.pem" --listen-address 127.0.0.1:18000 \
		--password-file "$STATE/bmc.pass" --endpoints-out "$STATE/bmcs" >"$STATE/sim.log" 2>&1 & pids+=($!)
	for _ in $(seq 150); do [ -s "$STATE/bmcs" ] && break; sleep 0.1; done
	[ -s "$STATE/bmcs" ] || { echo "demo: the site simulator did not start:"; cat "$STATE/sim.log"; exit 1; }
else
	echo "demo: no shared Redfish mockups at $SHARED/redfish: running without BMCs, PDUs or facility meters"
fi

# A simulated vLLM server on each host: its token rate follows the host's
# GPUs (rates and models differ).
MGMT_PORT=9564
for h in "${hosts[@]}"; do
	read -r host _ _ addr rate seed model _ <<<"$h"
	"$BIN/joules" sim inference --listen-address "$addr" --tokens-per-second "$rate" --seed "$seed" --model "$model" \
		--site "$SITE" --host "$host" --server "$SERVER" >"$STATE/inference-$host.log" 2>&1 & pids+=($!)
done
for h in "${hosts[@]}"; do
	read -r host _ _ addr _ <<<"$h"
	for _ in $(seq 100); do curl -sf "http://$addr/healthz" >/dev/null && break; sleep 0.1; done
	curl -sf "http://$addr/healthz" >/dev/null || { echo "demo: the inference simulator of $host did not start:"; cat "$STATE/inference-$host.log"; exit 1; }
done

# redfish_entry NAME ROLE: one sources.redfish entry, for a BMC the simulator serves.
redfish_entry() {
	local url
	url=$(awk -v n="$1" '$1 == n {print $2}' "$STATE/bmcs" 2>/dev/null)
	[ -n "$url" ] || return 0
	echo "    - {name: $1, endpoint: \"$url\", username: monitor, password_file: $STATE/bmc.pass, ca_file: $STATE/bmc-ca.pem, role: $2}"
}

# next_ingest: sets STREAM_URL to the aggregator the next agent streams
# to, each of INGEST in turn (an agent streams to one URL).
ingest_turn=0
next_ingest() { STREAM_URL="http://${INGEST[ingest_turn++ % ${#INGEST[@]}]}"; }

# start_agent HOST PORT: runs the agent with $STATE/agent-HOST.yml.
start_agent() {
	"$BIN/joules-agent" --config.file "$STATE/agent-$1.yml" --web.listen-address "127.0.0.1:$2" >"$STATE/agent-$1.log" 2>&1 & pids+=($!)
}

for h in "${hosts[@]}"; do
	read -r host rack port addr _ _ model _ <<<"$h"
	next_ingest
	{
		echo "labels: {site: $SITE, hall: h1, rack: $rack, host: $host}"
		echo "sources:"
		# the site model's jobs and pods on the GPUs, as the kubelet and
		# Slurm would name them; the inference pod serves the host's model
		echo "  nvml: {simulate: $SERVER, simulate_site: $SITE, simulate_model: \"$model\"}"
		echo "  node: {collectors: [netdev, hwmon, rapl]}"
		echo "  work: {scrape: [{name: vllm, url: \"http://$addr/metrics\", preset: vllm}]}"
		if [ -s "$STATE/bmcs" ]; then
			echo "  redfish:"
			redfish_entry "$host-bmc" host
		fi
		echo "exporters:"
		echo "  stream: {url: \"$STREAM_URL\", token_file: $STATE/tokens, spool_dir: $STATE/spool-$host}"
	} > "$STATE/agent-$host.yml"
	start_agent "$host" "$port"
done

# mgmt_agent NAME PORT RACK ENTRY...: an agent with no GPUs or host
# counters of its own, only meters, labelled with their roles (they decide
# the PUE category) and, for a rack's PDU, with the rack it feeds. An
# ENTRY is NAME:ROLE for a Redfish meter, or a whole YAML source line
# (snmp: or modbus:).
mgmt_agent() {
	local name=$1 port=$2 rack=$3 e
	shift 3
	next_ingest
	{
		echo "labels: {site: $SITE, hall: h1, ${rack:+rack: $rack, }host: $name}"
		echo "sources:"
		echo "  nvml: {enabled: false}"
		echo "  node: {enabled: false}"
		echo "  redfish:"
		for e in "$@"; do [[ $e == *": "* ]] || redfish_entry "${e%%:*}" "${e#*:}"; done
		for e in "$@"; do [[ $e != *": "* ]] || echo "  $e"; done
		echo "exporters:"
		echo "  stream: {url: \"$STREAM_URL\", token_file: $STATE/tokens, spool_dir: $STATE/spool-$name}"
	} > "$STATE/agent-$name.yml"
	start_agent "$name" "$port"
	mgmt+=("$name:$port")
}
mgmt=()
if [ -s "$STATE/bmcs" ]; then
	port=$MGMT_PORT
	mgmt_agent demo-mgmt-r1 "$port" r1 pdu-r1:pdu_output
	mgmt_agent demo-mgmt-r2 $((port + 1)) r2 "snmp: [{name: pdu-r2, address: \"$SNMP_PDU\", community: public, profile: raritan-pdu2, role: pdu_output, interval: 1s}]"
	mgmt_agent demo-mgmt $((port + 2)) "" "snmp: [{name: ups, address: \"$SNMP_UPS\", community: public, profile: ups-mib, role: ups_output, interval: 1s}]" \
		"modbus: [{name: facility, address: \"$MODBUS_FACILITY\", register_map: schneider-pm5000, role: facility_input, interval: 5s}]"
fi

agents=()
for h in "${hosts[@]}"; do read -r host _ port _ <<<"$h"; agents+=("$host:$port"); done
agents+=("${mgmt[@]}")
for a in "${agents[@]}"; do
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:${a#*:}/healthz" >/dev/null && break; sleep 0.2; done
	curl -sf "http://127.0.0.1:${a#*:}/healthz" >/dev/null || { echo "demo: the agent ${a%%:*} did not start:"; cat "$STATE/agent-${a%%:*}.log"; exit 1; }
done
# The report starts 20 s after the agents, on a window: by then every
# source has had its first reading (a first reading is a baseline, so the
# windows before it would show the BMCs' hosts measured by their GPUs
# alone).
report_from=$(edge_after $(( $(date -u +%s) + 20 )))
REPORT_FROM=$(iso "$report_from")

model_pue() { "$BIN/joules" sim site "${SITE_ARGS[@]}" "--pue.from=$1" "--pue.to=$2" 2>/dev/null; }

cat <<MSG

joules demo — everything below is SIMULATED (GPUs, BMCs, PDUs, UPS, facility meter, inference servers,
all from one site model; samples say simulated="true" where they are), site $SITE, hall h1:
  agents             $(for h in "${hosts[@]}"; do read -r host rack port _ <<<"$h"; printf '\n    %-15s rack %s  http://127.0.0.1:%s/metrics' "$host" "$rack" "$port"; done)$(for a in "${mgmt[@]}"; do printf '\n    %-15s         http://127.0.0.1:%s/metrics  (meters)' "${a%%:*}" "${a#*:}"; done)
  inference (vLLM)   $(for h in "${hosts[@]}"; do read -r host _ _ addr rate _ <<<"$h"; printf '\n    %-15s http://%s/metrics  (~%s tokens/s over a day, with its GPUs)' "$host" "$addr" "$rate"; done)
  aggregator         $AGGREGATOR_MSG
  InfluxDB (Flux)    http://127.0.0.1:18086          bucket joules/autogen
  simulated BMCs     $( [ -s "$STATE/bmcs" ] && tr '\n' ' ' < "$STATE/bmcs" )
  simulated meters   $( [ -s "$STATE/bmcs" ] && echo "pdu-r2 snmp://$SNMP_PDU (raritan-pdu2) ups snmp://$SNMP_UPS (ups-mib) facility modbus://$MODBUS_FACILITY (schneider-pm5000)" )
  site model PUE     $(model_pue -10m now | tr '\n' ' ')(the last 10 minutes; facility over UPS output, and over PDU output)
  logs and config    $STATE
Ctrl-C stops everything.
MSG

# flux_count FILTER: how many points InfluxDB holds that pass the Flux filter.
flux_count() {
	flux_query "from(bucket:\"joules/autogen\") |> range(start: -1h) |> filter(fn: (r) => $1) |> group() |> count()" _value
}

# flux_query QUERY COLUMN: the first row's COLUMN of a Flux query's answer.
flux_query() {
	curl -sf -XPOST http://127.0.0.1:18086/api/v2/query -H 'Content-Type: application/vnd.flux' -H 'Accept: application/csv' --data "$1" |
		tr -d '\r' | grep -v -e '^#' -e '^$' | awk -F, -v col="$2" 'NR==1 {for (i=1; i<=NF; i++) if ($i==col) c=i} NR==2 {print $c}'
}

# window_sum FROM TO FILTER: the joules of the ten-second windows starting in [FROM, TO) that pass FILTER.
window_sum() {
	flux_query "from(bucket:\"joules/autogen\") |> range(start: $1, stop: $2) |> filter(fn: (r) => r._measurement == \"joules_energy\" and r.resolution == \"10s\" and r._field == \"joules\" and $3) |> group() |> sum()" _value
}

# write_report: the energy report of the demo so far, as HTML, and as CSV
# for the checks.
write_report() {
	# up to 15 s ago, on a window: the windows since may still lack the
	# meters' last poll
	REPORT_TO=$(iso "$(edge_before $(( $(date -u +%s) - 15 )))")
	"$BIN/joules" report --config.file "$STATE/aggregator.yml" --from "$REPORT_FROM" --to "$REPORT_TO" --out "$STATE/report.html" 2>>"$STATE/report.log" &&
		"$BIN/joules" report --config.file "$STATE/aggregator.yml" --from "$REPORT_FROM" --to "$REPORT_TO" --format csv --out "$STATE/report.csv" 2>>"$STATE/report.log" &&
		echo "demo: report written: $STATE/report.html (open it in a browser; also $STATE/report.csv)"
}

# check_accounting: the aggregator's accounting wrote PUE and tokens per
# joule, the report has both, and its PUE is the site model's.
check_accounting() {
	local ok=true n
	n=$(flux_count 'r._measurement == "joules_pue" and r.scope == "site" and r._field == "pue"')
	echo "demo: InfluxDB holds ${n:-0} site PUE values"
	[ "${n:-0}" -gt 0 ] || ok=false
	n=$(flux_count 'r._measurement == "joules_work_efficiency" and r.scope == "site" and r.unit == "token" and r._field == "per_joule"')
	echo "demo: InfluxDB holds ${n:-0} site tokens-per-joule values"
	[ "${n:-0}" -gt 0 ] || ok=false
	if write_report; then
		grep -E '^(pue,pue|pue,category|work,token_per_joule|energy,it|energy,facility),' "$STATE/report.csv" | sed 's/^/demo: report: /'
		grep -q '^pue,pue,' "$STATE/report.csv" || { echo "demo: the report has no PUE"; ok=false; }
		grep -q '^work,token_per_joule,' "$STATE/report.csv" || { echo "demo: the report has no tokens per joule"; ok=false; }
		[ -s "$STATE/bmcs" ] && { check_model_pue || ok=false; }
		check_headline || ok=false
		check_workloads || ok=false
	else
		echo "demo: the report failed:"; cat "$STATE/report.log"; ok=false
	fi
	$ok
}

# check_headline: the report's headline adds up (facility ÷ IT = PUE) and
# its power path loses energy only on its way down.
check_headline() {
	awk -F, '
		$1 == "headline" { h[$2] = $3 }
		$1 == "power_path" { path[++n] = $3; role[n] = $2 }
		END {
			ok = 1
			if (("pue" in h) && (h["it"] <= 0 || (h["facility"] / h["it"] - h["pue"])^2 > 1e-18)) { print "demo: the headline does not add up: facility " h["facility"] " / IT " h["it"] " != PUE " h["pue"]; ok = 0 }
			for (i = 2; i <= n; i++) if (path[i] > path[i-1] * (1 + 1e-9)) { print "demo: the power path gains energy: " role[i] " " path[i] " after " role[i-1] " " path[i-1]; ok = 0 }
			if (ok) printf "demo: headline: facility %.4f kWh / IT %.4f kWh = PUE %.4f; the power path falls from %.4f to %.4f kWh\n", h["facility"], h["it"], h["pue"], path[1], path[n]
			exit !ok
		}' "$STATE/report.csv"
}

# check_workloads: the report's workload section adds up: its rows (the
# site model's Slurm job across the hosts, inference and notebook pods, a
# unit) and the unattributed rest make the hosts' IT energy.
check_workloads() {
	awk -F, '
		$1 == "energy" && $2 == "it" { it = $3 }
		$1 == "workloads_by_workload" && $2 == "total it_energy" { total = $3 }
		$1 == "workloads_by_workload" && $2 ~ / it_energy$/ && $2 != "total it_energy" { sum += $3; n++; if ($2 ~ /^slurm_job /) jobs++ }
		END {
			if (n == 0) { print "demo: the report has no workload section"; exit 1 }
			if ((sum - total)^2 > (1e-9 * total)^2 || (total - it)^2 > (1e-6 * it)^2) { print "demo: the workloads do not add up: rows " sum " kWh, total " total " kWh, hosts " it " kWh"; exit 1 }
			if (jobs == 0) { print "demo: the workload section has no Slurm job"; exit 1 }
			printf "demo: workloads: %d rows (unattributed included) add up to %.4f kWh, the hosts%s %.4f kWh\n", n, sum, "'"'"'", it
		}' "$STATE/report.csv"
}

# check_model_pue: the report's PUE is within 3 % of the site model's over
# the windows that have one, for the category the report gives.
check_model_pue() {
	local pue category first last key want
	pue=$(awk -F, '$1 == "pue" && $2 == "pue" {print $3; exit}' "$STATE/report.csv")
	category=$(awk -F, '$1 == "pue" && $2 == "category" {print $3; exit}' "$STATE/report.csv")
	local windows="from(bucket:\"joules/autogen\") |> range(start: $REPORT_FROM, stop: $REPORT_TO) |> filter(fn: (r) => r._measurement == \"joules_pue\" and r.scope == \"site\" and r.resolution == \"10s\" and r._field == \"pue\") |> group()"
	first=$(flux_query "$windows |> first()" _time)
	last=$(flux_query "$windows |> last()" _time)
	[ -n "$pue" ] && [ -n "$first" ] && [ -n "$last" ] || { echo "demo: no PUE windows to compare with the model"; return 1; }
	case "${category%.*}" in
	1) key=pue_ups_output ;;
	2) key=pue_pdu_output ;;
	*) echo "demo: the report's PUE is of category $category, not the UPS's (1) or the PDUs' (2)"; return 1 ;;
	esac
	want=$(model_pue "$first" "$(iso $(( $(date -u -d "$last" +%s) + 10 )))" | awk -v key="$key" '$1 == key {print $2}')
	echo "demo: PUE (category ${category%.*}) in the report $pue, the site model's over the same windows ($first to $last) $want"
	awk -v got="$pue" -v want="$want" 'BEGIN {d = got / want - 1; exit !(d < 0.03 && d > -0.03)}' ||
		{ echo "demo: the report's PUE is more than 3 % from the model's"; return 1; }
}

# check_chain: over the closed windows since everything started, the
# energies add up the way power flows: facility > UPS output ≥ Σ PDU
# output ≥ Σ BMC ≥ Σ GPU + CPU. Meters polled at different moments share a
# window's energy by time, which blurs a step in power across the window
# edge it falls on; the model's steps fall on whole minutes, so the range
# starts and ends on other window edges.
check_chain() {
	local end from to facility ups pdu bmc gpu cpu
	end=$(edge_before $(( $(date -u +%s) - 20 )))
	(( end > CHAIN_START )) || { echo "demo: the run is too short to compare the chain's energies"; return 1; }
	from=$(iso "$CHAIN_START")
	to=$(iso "$end")
	facility=$(window_sum "$from" "$to" 'r.scope == "meter" and r.kind == "facility_input" and r.meter =~ /^facility\/meter\//')
	ups=$(window_sum "$from" "$to" 'r.scope == "meter" and r.kind == "ups_output" and r.meter =~ /^ups\/ups\//')
	pdu=$(window_sum "$from" "$to" 'r.scope == "meter" and r.kind == "pdu_output" and r.meter =~ /^pdu-[^\/]+\/rack_pdu\//')
	bmc=$(window_sum "$from" "$to" 'r.scope == "host" and r.kind == "it"')
	gpu=$(window_sum "$from" "$to" 'r.scope == "host" and r.kind == "gpu"')
	cpu=$(window_sum "$from" "$to" 'r.scope == "host" and r.kind == "cpu"')
	awk -v f="${facility:-0}" -v u="${ups:-0}" -v p="${pdu:-0}" -v b="${bmc:-0}" -v g="${gpu:-0}" -v c="${cpu:-0}" -v from="$from" -v to="$to" 'BEGIN {
		printf "demo: energy from %s to %s (kWh): facility %.4f, UPS output %.4f, PDU output %.4f, BMCs %.4f, GPUs %.4f + CPUs %.4f\n", from, to, f/3.6e6, u/3.6e6, p/3.6e6, b/3.6e6, g/3.6e6, c/3.6e6
		if (!(g > 0 && f > u && u >= p && p >= b && b >= g + c)) { print "demo: the energies do not add up the way power flows"; exit 1 }
	}'
}

# wait_until T: sleeps until the clock reaches T (seconds since the epoch).
wait_until() {
	local now
	now=$(date -u +%s)
	(( now >= $1 )) || sleep $(( $1 - now ))
}

if [ -n "${DEMO_SECONDS:-}" ]; then
	sleep "$DEMO_SECONDS"
	# A short run still checks a few closed windows: the chain's range,
	# and the report's three windows after REPORT_FROM.
	wait_until $(( CHAIN_START + 40 ))
	wait_until $(( report_from + 45 ))
	ok=true
	for h in "${hosts[@]}"; do
		read -r host _ <<<"$h"
		n=$(flux_count "r._measurement == \"joules_gpu_power_watts\" and r.host == \"$host\"")
		echo "demo: InfluxDB holds ${n:-0} GPU power points from $host after ${DEMO_SECONDS}s"
		[ "${n:-0}" -gt 0 ] || ok=false
	done
	n=$(flux_count 'r._measurement == "joules_work_total" and r.unit == "token"')
	echo "demo: InfluxDB holds ${n:-0} token counter points (joules_work_total, unit=token)"
	[ "${n:-0}" -gt 0 ] || ok=false
	if [ -s "$STATE/bmcs" ]; then
		check_chain || ok=false
		for m in redfish:pdu_output snmp:pdu_output snmp:ups_output modbus:facility_input; do
			n=$(flux_count "r._measurement == \"joules_${m%%:*}_equipment_power_watts\" and r.role == \"${m#*:}\"")
			echo "demo: InfluxDB holds ${n:-0} ${m%%:*} equipment power points with role ${m#*:}"
			[ "${n:-0}" -gt 0 ] || ok=false
		done
	fi
	if grep -q -i 'level=error' "${AGGREGATOR_LOGS[@]}"; then
		echo "demo: the aggregator logged errors:"
		grep -i 'level=error' "${AGGREGATOR_LOGS[@]}" | head -20
		ok=false
	fi
	if [ -n "${DEMO_CLUSTER:-}" ]; then check_tier || ok=false; fi
	check_accounting || ok=false
	$ok
else
	REPORT_AFTER=${DEMO_REPORT_AFTER:-90}
	echo "demo: the energy report comes in ${REPORT_AFTER}s (accounting needs a few closed windows), then every 10 minutes"
	sleep "$REPORT_AFTER"
	while true; do
		write_report || { echo "demo: the report failed:"; tail -5 "$STATE/report.log"; }
		sleep 600
	done
fi
