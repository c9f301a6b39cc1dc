#!/usr/bin/env bash
# `npm start`: the front door on a fresh machine. Installs what is missing (npm packages,
# Redis, Milvus, Prometheus, the real Kong from shared/kong), builds, starts Redis, Milvus and
# Prometheus (scraping every plugin server's metrics port of kong.yml, with the repo's alert
# rules), then the mock upstream, one plugin server per plugin and the gateway on :8000 with the
# repo's kong.yml: the real Kong 3.9.3 when installed, else the harness (it says which). Ctrl-C
# stops everything it started; a second `npm start` while one runs says so and changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=services/lib.sh
source scripts/services/lib.sh
SERVICE_NAME=start

GATEWAY_PORT="${GATEWAY_PORT:-8000}"
UPSTREAM_PORT="${UPSTREAM_PORT:-9000}"
PIDFILE="${RUN_DIR}/frontdoor.pid"
mkdir -p "$RUN_DIR"

running_pid="$(cat "$PIDFILE" 2>/dev/null || true)"
if [ "$running_pid" != "$$" ] && pid_matches "$running_pid" "scripts/start.sh"; then
  log "the front door already runs (pid ${running_pid}) on http://127.0.0.1:${GATEWAY_PORT}; nothing to do"
  exit 0
fi
for p in "$GATEWAY_PORT" "$UPSTREAM_PORT"; do
  port_in_use "$p" && die "port ${p} is taken by another process: stop it, or set GATEWAY_PORT / UPSTREAM_PORT"
done
# Claimed before the slow steps, so that a second `npm start` meanwhile sees this one.
echo "$$" >"$PIDFILE"
release() { [ "$(cat "$PIDFILE" 2>/dev/null)" = "$$" ] && rm -f "$PIDFILE"; return 0; }
trap release EXIT

[ -x node_modules/.bin/kong-js-pluginserver ] || npm ci --no-audit --no-fund || die "npm ci failed"
npm run -s build || die "the build failed"
scripts/services/all.sh install || die "could not install Redis or Milvus (see above)"
scripts/services/prometheus.sh install || die "could not install Prometheus (see above)"
kong_rc=0
scripts/services/kong.sh install || kong_rc=$?
if [ "$kong_rc" -ne 0 ] && [ "$kong_rc" -ne 3 ]; then die "could not install Kong (see above)"; fi

started=""
scripts/services/all.sh status >/dev/null 2>&1 || started=yes
env_file="$(mktemp)"
if ! scripts/services/all.sh start >"$env_file"; then
  rm -f "$env_file"
  if [ -n "$started" ]; then scripts/services/all.sh stop >/dev/null 2>&1 || true; fi
  die "a service did not start (see above): the front door is not running"
fi
# shellcheck disable=SC1090
. "$env_file"
rm -f "$env_file"

child=""
prom_started=""
stop_all() {
  if [ -n "$child" ]; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  release
  if [ -n "$prom_started" ]; then scripts/services/prometheus.sh stop >/dev/null 2>&1 || true; fi
  if [ -n "$started" ]; then scripts/services/all.sh stop >/dev/null 2>&1 || true; fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# Prometheus: scrapes every plugin server's metrics port (from kong.yml) with the alert rules
# of docker/prometheus/rules/; the targets come up as the gateway starts the plugin servers.
PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
scripts/services/prometheus.sh status >/dev/null 2>&1 || prom_started=yes
PROMETHEUS_PORT="$PROMETHEUS_PORT" scripts/services/prometheus.sh start ||
  die "Prometheus did not start (see above): the front door is not running"

PROMETHEUS_URL="http://127.0.0.1:${PROMETHEUS_PORT}" \
  GATEWAY_PORT="$GATEWAY_PORT" UPSTREAM_PORT="$UPSTREAM_PORT" node dist/scripts/frontdoor.js &
child=$!
set +e
wait "$child"
rc=$?
set -e
child=""
exit "$rc"
