#!/usr/bin/env bash
# The whole pipeline on this one machine: InfluxDB, the aggregator, and a
# simulated site demo-dc: three GPU hosts (eight simulated H200s each, a
# simulated vLLM server each; two with a simulated BMC) in hall h1, racks r1
# and r2, and a management agent reading a simulated PDU (pdu_output) and a
# facility meter (facility_input: the same PDU mockup carrying 1.35 times
# its load), all streaming to the aggregator. Everything simulated says so.
# Ctrl-C stops it all. DEMO_SECONDS=N stops it after N seconds and checks
# what reached InfluxDB (for CI).
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

STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
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
"$BIN/joules-aggregator" --config.file "$STATE/aggregator.yml" --web.listen-address 127.0.0.1:9561 >"$STATE/aggregator.log" 2>&1 & pids+=($!)

# Redfish: the two hosts' BMCs, the PDU the hall hangs from, and the
# facility meter upstream of it. The mockups' readings are scaled so that
# the simulated site adds up: a BMC's energy counter runs at about its eight
# GPUs plus a quarter (unscaled, the rackmount mockup's runs at about
# 225 W, the Gigabyte one's at about 355 W), the PDU (its rack PDU,
# 5,935 W) carries about the three hosts, and the facility meter (its
# transfer switch, 1,383 W: for a facility_input meter the transfer switch
# is what counts) reads 1.35 times the PDU and moves with it.
if [ -d "$SHARED/redfish" ]; then
	echo joules-demo > "$STATE/bmc.pass"
	"$BIN/joules" sim redfish --tls --tls.ca-out "$STATE/bmc-ca.pem" --listen-address 127.0.0.1:18000 \
		--password-file "$STATE/bmc.pass" --endpoints-out "$STATE/bmcs" \
		--bmc "rack1-bmc=$SHARED/redfish/dmtf-public-rackmount1" \
		--bmc "giga-bmc=$SHARED/redfish/gigabyte-h262-z63" \
		--bmc "pdu-a=$SHARED/redfish/dmtf-public-pdu" \
		--bmc "facility=$SHARED/redfish/dmtf-public-pdu" \
		--scale rack1-bmc=24 --scale giga-bmc=15 --scale pdu-a=2.6 \
		--scale facility=14.95 --follow facility=pdu-a >"$STATE/sim.log" 2>&1 & pids+=($!)
	for _ in $(seq 150); do [ -s "$STATE/bmcs" ] && break; sleep 0.1; done
	[ -s "$STATE/bmcs" ] || { echo "demo: the Redfish simulator did not start:"; cat "$STATE/sim.log"; exit 1; }
else
	echo "demo: no shared Redfish mockups at $SHARED/redfish: running without BMCs or facility meters"
fi

# The GPU hosts: eight simulated H200s each, a simulated vLLM server each
# (rates, seeds and models differ) and, on two of them, a BMC.
hosts=(
	# host      rack port inference       tokens/s seed model                             BMC
	"demo-gpu-01 r1   9560 127.0.0.1:18101 2400     1    meta-llama/Llama-3.1-8B-Instruct  rack1-bmc"
	"demo-gpu-02 r1   9562 127.0.0.1:18102 3600     2    meta-llama/Llama-3.1-8B-Instruct  giga-bmc"
	"demo-gpu-03 r2   9563 127.0.0.1:18103 1500     3    meta-llama/Llama-3.1-70B-Instruct -"
)
MGMT_PORT=9564
for h in "${hosts[@]}"; do
	read -r host _ _ addr rate seed model _ <<<"$h"
	"$BIN/joules" sim inference --listen-address "$addr" --tokens-per-second "$rate" --seed "$seed" --model "$model" \
		>"$STATE/inference-$host.log" 2>&1 & pids+=($!)
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

# start_agent HOST PORT: runs the agent with $STATE/agent-HOST.yml.
start_agent() {
	"$BIN/joules-agent" --config.file "$STATE/agent-$1.yml" --web.listen-address "127.0.0.1:$2" >"$STATE/agent-$1.log" 2>&1 & pids+=($!)
}

for h in "${hosts[@]}"; do
	read -r host rack port addr _ _ _ bmc <<<"$h"
	{
		echo "labels: {site: demo-dc, hall: h1, rack: $rack, host: $host}"
		echo "sources:"
		echo "  nvml: {simulate: dgxh200}"
		echo "  node: {collectors: [netdev, hwmon, rapl]}"
		echo "  work: {scrape: [{name: vllm, url: \"http://$addr/metrics\", preset: vllm}]}"
		if [ "$bmc" != - ] && [ -s "$STATE/bmcs" ]; then
			echo "  redfish:"
			redfish_entry "$bmc" host
		fi
		echo "exporters:"
		echo "  stream: {url: \"http://127.0.0.1:9561\", token_file: $STATE/tokens, spool_dir: $STATE/spool-$host}"
	} > "$STATE/agent-$host.yml"
	start_agent "$host" "$port"
done

# The management agent: no GPUs or host counters of its own, only the
# hall's meters, labelled with their roles (they decide the PUE category).
if [ -s "$STATE/bmcs" ]; then
	{
		echo "labels: {site: demo-dc, hall: h1, host: demo-mgmt}"
		echo "sources:"
		echo "  nvml: {enabled: false}"
		echo "  node: {enabled: false}"
		echo "  redfish:"
		redfish_entry pdu-a pdu_output
		redfish_entry facility facility_input
		echo "exporters:"
		echo "  stream: {url: \"http://127.0.0.1:9561\", token_file: $STATE/tokens, spool_dir: $STATE/spool-demo-mgmt}"
	} > "$STATE/agent-demo-mgmt.yml"
	start_agent demo-mgmt "$MGMT_PORT"
fi

agents=()
for h in "${hosts[@]}"; do read -r host _ port _ <<<"$h"; agents+=("$host:$port"); done
[ -s "$STATE/bmcs" ] && agents+=("demo-mgmt:$MGMT_PORT")
for a in "${agents[@]}"; do
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:${a#*:}/healthz" >/dev/null && break; sleep 0.2; done
	curl -sf "http://127.0.0.1:${a#*:}/healthz" >/dev/null || { echo "demo: the agent ${a%%:*} did not start:"; cat "$STATE/agent-${a%%:*}.log"; exit 1; }
done

cat <<MSG

joules demo — everything below is SIMULATED (GPUs, BMCs, PDU, facility meter, inference servers;
samples say simulated="true" where they are), site demo-dc, hall h1:
  agents             $(for h in "${hosts[@]}"; do read -r host rack port _ <<<"$h"; printf '\n    %-14s rack %s  http://127.0.0.1:%s/metrics' "$host" "$rack" "$port"; done)$( [ -s "$STATE/bmcs" ] && printf '\n    %-14s         http://127.0.0.1:%s/metrics  (PDU and facility meter)' demo-mgmt "$MGMT_PORT")
  inference (vLLM)   $(for h in "${hosts[@]}"; do read -r host _ _ addr rate _ <<<"$h"; printf '\n    %-14s http://%s/metrics  (~%s tokens/s)' "$host" "$addr" "$rate"; done)
  aggregator         http://127.0.0.1:9561/health   (metrics: /metrics)
  InfluxDB (Flux)    http://127.0.0.1:18086          bucket joules/autogen
  simulated BMCs     $( [ -s "$STATE/bmcs" ] && tr '\n' ' ' < "$STATE/bmcs" )
  logs and config    $STATE
Ctrl-C stops everything.
MSG

# flux_count FILTER: how many points InfluxDB holds that pass the Flux filter.
flux_count() {
	curl -sf -XPOST http://127.0.0.1:18086/api/v2/query -H 'Content-Type: application/vnd.flux' -H 'Accept: application/csv' \
		--data "from(bucket:\"joules/autogen\") |> range(start: -1h) |> filter(fn: (r) => $1) |> group() |> count()" |
		tr -d '\r' | grep -v -e '^#' -e '^$' | awk -F, 'NR==1 {for (i=1; i<=NF; i++) if ($i=="_value") c=i} NR==2 {print $c}'
}

# write_report: the energy report of the demo so far, as HTML, and as CSV
# for the checks.
write_report() {
	"$BIN/joules" report --config.file "$STATE/aggregator.yml" --from "$STARTED" --out "$STATE/report.html" 2>>"$STATE/report.log" &&
		"$BIN/joules" report --config.file "$STATE/aggregator.yml" --from "$STARTED" --format csv --out "$STATE/report.csv" 2>>"$STATE/report.log" &&
		echo "demo: report written: $STATE/report.html (open it in a browser; also $STATE/report.csv)"
}

# check_accounting: the aggregator's accounting wrote PUE (facility meter
# over the PDU: category 2) and tokens per joule, and the report has both.
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
	else
		echo "demo: the report failed:"; cat "$STATE/report.log"; ok=false
	fi
	$ok
}

if [ -n "${DEMO_SECONDS:-}" ]; then
	sleep "$DEMO_SECONDS"
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
		for role in pdu_output facility_input; do
			n=$(flux_count "r._measurement == \"joules_redfish_equipment_power_watts\" and r.role == \"$role\"")
			echo "demo: InfluxDB holds ${n:-0} equipment power points with role $role"
			[ "${n:-0}" -gt 0 ] || ok=false
		done
	fi
	if grep -q -i 'level=error' "$STATE/aggregator.log"; then
		echo "demo: the aggregator logged errors:"
		grep -i 'level=error' "$STATE/aggregator.log" | head -20
		ok=false
	fi
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
