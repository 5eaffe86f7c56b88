#!/usr/bin/env bash
# Installs Mosquitto, the MQTT broker the forwarder's tests, example and benchmark run against,
# from Debian's packages (`mosquitto`, `mosquitto-clients`) when it is missing. Nothing is
# started here: the test harness (src/mosquitto.rs) starts a broker of its own on 127.0.0.1 on a
# free port for each test and stops it after.
#
#   scripts/mosquitto.sh           install when missing, then print the broker's version
#   scripts/mosquitto.sh --check   exit 0 when installed, 1 when not (installs nothing)
set -euo pipefail

found() {
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]
}

if [ "${1:-}" = --check ]; then
  found
  exit $?
fi

if ! found; then
  echo "== apt-get install mosquitto mosquitto-clients (the MQTT broker of the forwarder's tests)"
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  # The package's service is not wanted (the tests start their own brokers): policy-rc.d says
  # "do not start" where invoke-rc.d is used; without systemd nothing starts anyway.
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
    apt-get install -y -q --no-install-recommends mosquitto mosquitto-clients
fi
bin=$(command -v mosquitto 2>/dev/null || echo /usr/sbin/mosquitto)
"$bin" -h 2>/dev/null | head -1 || true
