#!/bin/sh
# Create the system user the services run as. Nothing is started here.
set -e
# Installing into another root (dpkg --root): leave its users alone.
if [ -n "${DPKG_ROOT:-}" ] && [ "$DPKG_ROOT" != "/" ]; then exit 0; fi
if ! getent passwd joules >/dev/null 2>&1; then
	useradd --system --user-group --no-create-home --home-dir /var/lib/joules --shell /usr/sbin/nologin joules
fi
# NVML's device nodes belong to the video group on most distributions.
if getent group video >/dev/null 2>&1; then usermod -a -G video joules || true; fi
exit 0
