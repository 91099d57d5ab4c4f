#!/bin/sh
# Make systemd see the units. Nothing is enabled or started: the agent and
# the aggregator need a configuration first (see /etc/joules/).
set -e
if [ -d /run/systemd/system ] && [ -z "${DPKG_ROOT:-}" ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
cat <<MSG
joules installed. Edit /etc/joules/agent.yml (and aggregator.yml on the
aggregator host), check it with joules-agent --config.check --config.file
/etc/joules/agent.yml, then: systemctl enable --now joules-agent
MSG
exit 0
