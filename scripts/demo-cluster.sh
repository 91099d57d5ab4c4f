#!/usr/bin/env bash
# make demo-cluster: make demo (scripts/demo.sh, the same site, agents,
# checks and report) with the aggregator as a tier on NATS JetStream on
# this machine instead of one process: three NATS servers clustered on
# loopback with JetStream (Debian's nats-server, installed if missing),
# two ingest replicas and three workers that are roll-up candidates too.
# The agents stream to the ingest replicas, half to each (an agent
# streams to one URL). DEMO_SECONDS and DEMO_DIR work as for make demo.
#
# Run, this script runs demo.sh with DEMO_CLUSTER=1; demo.sh then sources
# it for start_tier (where it would start the aggregator) and check_tier
# (with the short run's checks).
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	set -euo pipefail
	cd "$(dirname "$0")/.."
	DEMO_CLUSTER=1 exec scripts/demo.sh "$@"
fi

export PATH="$PATH:/usr/sbin" # where Debian puts nats-server
if ! command -v nats-server >/dev/null 2>&1; then
	echo "demo: installing nats-server (apt-get install -y nats-server)"
	apt-get install -y -q nats-server || { apt-get update -q && apt-get install -y -q nats-server; } ||
		{ echo "demo: could not install nats-server: apt-get install -y nats-server (as root), then again"; exit 1; }
fi

# NATS server i (0, 1, 2) takes clients on NATS_PORT+i, its routes on
# NATS_PORT+2000+i and its monitoring (/healthz) on NATS_PORT+4000+i.
NATS_PORT=14222
NATS_URLS="nats://127.0.0.1:$NATS_PORT, nats://127.0.0.1:$((NATS_PORT + 1)), nats://127.0.0.1:$((NATS_PORT + 2))"
# The members: name, port of --web.listen-address, roles. The workers
# start first so that demo.sh, stopping in reverse, stops the ingest
# replicas first, then the workers (they checkpoint into JetStream and
# give their leases up), then the NATS servers. ingest-1 has the single
# aggregator's port.
TIER=(
	"w1       9568 worker, rollup"
	"w2       9569 worker, rollup"
	"w3       9570 worker, rollup"
	"ingest-1 9561 ingest"
	"ingest-2 9567 ingest"
)

# start_tier: the NATS servers, then the members, each with the demo's
# aggregator.yml (the same influx and accounting sections; its own spool
# and dead-letter file) and a cluster: section. accounting.state_file goes
# unused: the workers and the roll-up checkpoint into JetStream.
start_tier() {
	local i j routes name port roles up
	for i in 0 1 2; do
		routes=()
		for j in 0 1 2; do ((i == j)) || routes+=("nats-route://127.0.0.1:$((NATS_PORT + 2000 + j))"); done
		mkdir -p "$STATE/nats-$i"
		cat > "$STATE/nats-$i.conf" <<CONF
server_name: demo-nats-$i
listen: 127.0.0.1:$((NATS_PORT + i))
http: 127.0.0.1:$((NATS_PORT + 4000 + i))
max_payload: 8MB
jetstream {store_dir: "$STATE/nats-$i"}
cluster {
  name: joules-demo
  listen: 127.0.0.1:$((NATS_PORT + 2000 + i))
  routes: [${routes[0]}, ${routes[1]}]
}
CONF
		nats-server -c "$STATE/nats-$i.conf" >"$STATE/nats-$i.log" 2>&1 & pids+=($!)
	done
	# /healthz answers once the server's JetStream has a meta leader.
	for i in 0 1 2; do
		for _ in $(seq 150); do curl -sf "http://127.0.0.1:$((NATS_PORT + 4000 + i))/healthz" >/dev/null && break; sleep 0.2; done
		curl -sf "http://127.0.0.1:$((NATS_PORT + 4000 + i))/healthz" >/dev/null ||
			{ echo "demo: the NATS server demo-nats-$i did not start:"; tail -20 "$STATE/nats-$i.log"; exit 1; }
	done

	INGEST=()
	AGGREGATOR_LOGS=()
	AGGREGATOR_MSG="a tier on NATS JetStream ($NATS_URLS; monitoring :$((NATS_PORT + 4000))-$((NATS_PORT + 4002)))"
	for m in "${TIER[@]}"; do
		read -r name port roles <<<"$m"
		{
			sed -e "s|^  spool_dir: .*|  spool_dir: $STATE/aggregator-$name-spool|" \
				-e "s|^  dead_letter_file: .*|  dead_letter_file: $STATE/dead-letter-$name.lp|" "$STATE/aggregator.yml"
			cat <<CONF
cluster:
  urls: [$NATS_URLS]
  name: $name
  roles: [$roles]
  partitions: 64
  replicas: 3
  lease: 10s
CONF
		} > "$STATE/aggregator-$name.yml"
		grep -q "aggregator-$name-spool" "$STATE/aggregator-$name.yml" || { echo "demo: $name's configuration has no spool of its own"; exit 1; }
		"$BIN/joules-aggregator" --config.check --config.file "$STATE/aggregator-$name.yml" >"$STATE/aggregator-$name.log" 2>&1 ||
			{ echo "demo: $name's configuration is not valid:"; cat "$STATE/aggregator-$name.log"; exit 1; }
		"$BIN/joules-aggregator" --config.file "$STATE/aggregator-$name.yml" --web.listen-address "127.0.0.1:$port" >"$STATE/aggregator-$name.log" 2>&1 & pids+=($!)
		AGGREGATOR_LOGS+=("$STATE/aggregator-$name.log")
		[[ $roles != ingest ]] || INGEST+=("127.0.0.1:$port")
		AGGREGATOR_MSG+=$(printf '\n    %-15s http://127.0.0.1:%s/health  (%s)' "$name" "$port" "$roles")
	done
	# A member is up once it has set the streams and buckets up (it
	# retries for a minute while JetStream elects its leaders).
	for m in "${TIER[@]}"; do
		read -r name port _ <<<"$m"
		up=false
		for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && { up=true; break; }; sleep 0.2; done
		$up || { echo "demo: the aggregator $name did not start:"; tail -20 "$STATE/aggregator-$name.log"; exit 1; }
	done
}

# check_tier: the workers hold every partition between them, one of them
# is the roll-up, and both ingest replicas published what their agents sent.
check_tier() {
	local ok=true name port roles metrics owned leading published owned_all=0 leaders=0
	for m in "${TIER[@]}"; do
		read -r name port roles <<<"$m"
		metrics=$(curl -sf "http://127.0.0.1:$port/metrics") || { echo "demo: $name's /metrics does not answer"; ok=false; continue; }
		metric() { awk -v n="$1" '$1 == n {s += $2} END {print s + 0}' <<<"$metrics"; }
		if [[ $roles == ingest ]]; then
			published=$(metric joules_cluster_published_messages_total)
			echo "demo: tier: $name published $published messages to JetStream"
			[ "$published" -gt 0 ] || ok=false
		else
			owned=$(metric joules_cluster_partitions_owned)
			leading=$(metric joules_cluster_rollup_leading)
			echo "demo: tier: $name holds $owned partitions$( ((leading)) && echo ' and is the roll-up')"
			owned_all=$((owned_all + owned))
			leaders=$((leaders + leading))
		fi
	done
	((owned_all == 64)) || { echo "demo: the workers hold $owned_all partitions between them, not 64"; ok=false; }
	((leaders == 1)) || { echo "demo: $leaders members are the roll-up, not one"; ok=false; }
	$ok
}
