#!/usr/bin/env bash
# The whole pipeline on this one machine: InfluxDB, the aggregator, two
# simulated BMCs and a simulated PDU, and an agent with eight simulated
# H200s streaming to the aggregator. Everything simulated says so. Ctrl-C
# stops it all. DEMO_SECONDS=N stops it after N seconds (for CI).
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
CONF
"$BIN/joules-aggregator" --config.file "$STATE/aggregator.yml" --web.listen-address 127.0.0.1:9561 >"$STATE/aggregator.log" 2>&1 & pids+=($!)

bmcs=()
if [ -d "$SHARED/redfish" ]; then
	echo joules-demo > "$STATE/bmc.pass"
	"$BIN/joules" sim redfish --tls --tls.ca-out "$STATE/bmc-ca.pem" --listen-address 127.0.0.1:18000 \
		--password-file "$STATE/bmc.pass" --endpoints-out "$STATE/bmcs" \
		--bmc "rack1-bmc=$SHARED/redfish/dmtf-public-rackmount1" \
		--bmc "giga-bmc=$SHARED/redfish/gigabyte-h262-z63" \
		--bmc "pdu-a=$SHARED/redfish/dmtf-public-pdu" >"$STATE/sim.log" 2>&1 & pids+=($!)
	for _ in $(seq 150); do [ -s "$STATE/bmcs" ] && break; sleep 0.1; done
	[ -s "$STATE/bmcs" ] || { echo "demo: the Redfish simulator did not start:"; cat "$STATE/sim.log"; exit 1; }
else
	echo "demo: no shared Redfish mockups at $SHARED/redfish: running without BMCs"
fi

{
	echo "labels: {site: demo-dc, hall: h1, rack: r1, host: demo-gpu-01}"
	echo "sources:"
	echo "  nvml: {simulate: dgxh200}"
	echo "  node: {collectors: [netdev, hwmon, rapl]}"
	if [ -s "$STATE/bmcs" ]; then
		echo "  redfish:"
		while read -r name url; do
			role=host; [ "$name" = pdu-a ] && role=pdu_output
			echo "    - {name: $name, endpoint: \"$url\", username: monitor, password_file: $STATE/bmc.pass, ca_file: $STATE/bmc-ca.pem, role: $role}"
		done < "$STATE/bmcs"
	fi
	echo "exporters:"
	echo "  stream: {url: \"http://127.0.0.1:9561\", token_file: $STATE/tokens, spool_dir: $STATE/agent-spool}"
} > "$STATE/agent.yml"
"$BIN/joules-agent" --config.file "$STATE/agent.yml" --web.listen-address 127.0.0.1:9560 >"$STATE/agent.log" 2>&1 & pids+=($!)

for _ in $(seq 100); do curl -sf http://127.0.0.1:9560/healthz >/dev/null && break; sleep 0.2; done
curl -sf http://127.0.0.1:9560/healthz >/dev/null || { echo "demo: the agent did not start:"; cat "$STATE/agent.log"; exit 1; }
cat <<MSG

joules demo — everything below is SIMULATED (GPUs and BMCs; samples say simulated="true" where they are):
  agent metrics      http://127.0.0.1:9560/metrics
  aggregator         http://127.0.0.1:9561/health   (metrics: /metrics)
  InfluxDB (Flux)    http://127.0.0.1:18086          bucket joules/autogen
  simulated BMCs     $( [ -s "$STATE/bmcs" ] && tr '\n' ' ' < "$STATE/bmcs" )
  logs and config    $STATE
Ctrl-C stops everything.
MSG

if [ -n "${DEMO_SECONDS:-}" ]; then
	sleep "$DEMO_SECONDS"
	n=$(curl -sf -XPOST http://127.0.0.1:18086/api/v2/query -H 'Content-Type: application/vnd.flux' -H 'Accept: application/csv' \
		--data 'from(bucket:"joules/autogen") |> range(start: -1h) |> filter(fn: (r) => r._measurement == "joules_gpu_power_watts") |> group() |> count()' | tr -d '\r' | grep -v -e '^#' -e '^$' | awk -F, 'NR==1 {for (i=1; i<=NF; i++) if ($i=="_value") c=i} NR==2 {print $c}')
	echo "demo: InfluxDB holds ${n:-0} GPU power points after ${DEMO_SECONDS}s"
	[ "${n:-0}" -gt 0 ]
else
	while true; do sleep 3600; done
fi
