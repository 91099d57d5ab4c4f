#!/bin/sh
# Slurm epilog (slurmctld's EpilogSlurmctld, which runs once per job): put
# the finished job's energy, as joules accounted it, into the job's
# comment, where sacct shows it (sacct -o jobid,comment%80).
#
#   slurm.conf:  EpilogSlurmctld=/usr/share/joules/slurm/epilog-joules.sh
#
# It needs the aggregator's InfluxDB: JOULES_INFLUX_URL, JOULES_INFLUX_BUCKET
# and JOULES_INFLUX_TOKEN in the environment, or JOULES_CONFIG naming an
# aggregator configuration. The accounting writes a window a grace period
# after it ends: the job's last window is in InfluxDB a window (1m by
# default) and the grace (30s) after the job ends, so the epilog waits
# JOULES_EPILOG_WAIT seconds (100) first. It always exits 0: a job's energy is
# not worth failing its epilog for; what went wrong goes to slurmctld's log.
set -u
job=${SLURM_JOB_ID:?epilog-joules: no SLURM_JOB_ID: run it as EpilogSlurmctld}
sleep "${JOULES_EPILOG_WAIT:-100}"
set -- --format comment --from=-30d
[ -n "${JOULES_CONFIG:-}" ] && set -- "$@" --config.file "$JOULES_CONFIG"
if energy=$(joules job-energy "$job" "$@" 2>&1); then
	old=$(sacct -n -X -P -j "$job" -o Comment 2>/dev/null | head -n 1)
	case "$old" in ""|"(null)") new=$energy ;; *) new="$old,$energy" ;; esac
	scontrol update job="$job" comment="$new" || echo "epilog-joules: job $job: scontrol update failed" >&2
else
	echo "epilog-joules: job $job: $energy" >&2
fi
exit 0
