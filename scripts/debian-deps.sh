#!/usr/bin/env bash
# Installs the Debian packages a make target runs against, only those missing:
#   debian-deps.sh demo     the demo: mosquitto (its broker) and dbus-daemon (the fake BlueZ's bus)
#   debian-deps.sh test     the tests: those, and mosquitto-clients, systemd-analyze, tmux,
#                           promtool/prometheus, openssl, nodejs, chromium, PostgreSQL,
#                           nats-server (the 3-node MQTT cluster of the tests marked `cluster`)
#   debian-deps.sh --list TARGET   print TARGET's packages, installed or not; install nothing
set -euo pipefail
list=0
if [ "${1:-}" = "--list" ]; then list=1; shift; fi
target="${1:-test}"
# package:command that tells it is there (a path when the command is not on root's PATH)
demo=(mosquitto:mosquitto dbus-daemon:dbus-daemon)
test=("${demo[@]}" mosquitto-clients:mosquitto_sub systemd:systemd-analyze tmux:tmux
      prometheus:promtool openssl:openssl
      nodejs:node                          # the second, independent command signer (tests/signers)
      chromium:chromium chromium-driver:chromedriver     # the relay's suite: a real browser...
      "postgresql:/usr/lib/postgresql/*/bin/initdb"      # ...and a real PostgreSQL
      nats-server:nats-server)             # a clustered MQTT broker (tests marked cluster)
case "$target" in
  demo) wanted=("${demo[@]}") ;;
  test) wanted=("${test[@]}") ;;
  *) echo "usage: $0 [--list] demo|test" >&2; exit 2 ;;
esac
need=()
for item in "${wanted[@]}"; do
  pkg="${item%%:*}" cmd="${item#*:}"
  if [ "$list" = 1 ]; then need+=("$pkg"); continue; fi
  if [[ "$cmd" == /* ]]; then  # a path (a glob): not on root's PATH
    compgen -G "$cmd" >/dev/null || need+=("$pkg")
  else
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
  fi
done
if [ "$list" = 1 ]; then echo "${need[*]}"; exit 0; fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${need[@]}" >/dev/null
fi
