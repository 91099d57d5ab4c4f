#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ -z "${DPKG_ROOT:-}" ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
exit 0
