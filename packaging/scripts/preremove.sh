#!/bin/sh
# Stop the services on removal (not on upgrade).
set -e
case "$1" in
	remove|0)
		if [ -d /run/systemd/system ] && [ -z "${DPKG_ROOT:-}" ]; then
			systemctl disable --now joules-agent.service joules-aggregator.service >/dev/null 2>&1 || true
		fi
		;;
esac
exit 0
