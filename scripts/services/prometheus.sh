#!/usr/bin/env bash
# Prometheus for local runs (`npm start`) and the monitoring tests: Debian's `prometheus`
# package (prometheus and promtool), our own instance (never the packaged service), bound to
# 127.0.0.1:${PROMETHEUS_PORT:-9090}, data and config in .run/prometheus/.
#
#   scripts/services/prometheus.sh install|start|stop|status
#
# `start` writes .run/prometheus/prometheus.yml from kong.yml (one target per plugin server's
# `metrics_port`, the alert rules of docker/prometheus/rules/) with the same generator as the
# compose stack's docker/prometheus/prometheus.yml (scripts/monitoring/prometheus-config.ts),
# so the two cannot drift; promtool checks it before Prometheus starts. Needs `npm run build`.
#
# Alertmanager goes with it (scripts/services/alertmanager.sh, on ALERTMANAGER_PORT, 9093 by
# default): `install`, `start`, `stop` and `status` act on both, and the config sends the alerts
# there, so `npm start` (scripts/start.sh calls this script) runs the two side by side.
# WITH_ALERTMANAGER=0 leaves Alertmanager out.
set -euo pipefail
SERVICE_NAME=prometheus
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
PROM_DIR="${RUN_DIR}/prometheus"
CONFIG="${PROM_DIR}/prometheus.yml"
DATA_DIR="${PROM_DIR}/data"
PIDFILE="${PROM_DIR}/prometheus.pid"
LOGFILE="${PROM_DIR}/prometheus.log"
START_TIMEOUT_S="${PROMETHEUS_START_TIMEOUT_S:-60}"
# How often the local instance scrapes (the compose stack keeps 15s).
SCRAPE_INTERVAL="${PROMETHEUS_SCRAPE_INTERVAL:-5s}"
PID_MARKER="prometheus --config.file=${CONFIG}"
WITH_ALERTMANAGER="${WITH_ALERTMANAGER:-1}"
ALERTMANAGER_PORT="${ALERTMANAGER_PORT:-9093}"
ALERTMANAGER_SH="$(dirname "${BASH_SOURCE[0]}")/alertmanager.sh"

alertmanager() {
  [ "$WITH_ALERTMANAGER" = 1 ] || return 0
  ALERTMANAGER_PORT="$ALERTMANAGER_PORT" "$ALERTMANAGER_SH" "$1"
}

install() {
  install_prometheus
  alertmanager install
}

install_prometheus() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    log "prometheus already installed: $(prometheus --version 2>&1 | head -n1)"
    return 0
  fi
  log "installing Debian prometheus (prometheus and promtool)"
  # Debian's postinst starts the packaged service through invoke-rc.d; a policy-rc.d that
  # answers 101 ("action forbidden") keeps it from starting: we run our own instance only.
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
    added_policy=1
  fi
  local rc=0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
  if [ "$rc" -eq 0 ]; then
    # No recommends: prometheus-node-exporter would watch the host, not the front door.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      prometheus || rc=$?
  fi
  if [ "$added_policy" -eq 1 ]; then as_root rm -f "$policy"; fi
  [ "$rc" -eq 0 ] || die "apt-get failed (exit $rc)"
  command -v promtool >/dev/null || die "promtool missing after installing prometheus"
  log "installed: $(prometheus --version 2>&1 | head -n1)"
}

our_pid() {
  local pid=""
  [ -f "$PIDFILE" ] && pid="$(cat "$PIDFILE")"
  if pid_matches "$pid" "$PID_MARKER"; then echo "$pid"; fi
}

healthy() {
  curl -fsS --max-time 2 "http://127.0.0.1:${PROMETHEUS_PORT}/-/ready" >/dev/null 2>&1
}

write_config() {
  local generator="${REPO_ROOT}/dist/scripts/monitoring/prometheus-config.js"
  [ -f "$generator" ] || die "${generator} is missing: run 'npm run build' first"
  mkdir -p "$PROM_DIR"
  local am=()
  if [ "$WITH_ALERTMANAGER" = 1 ]; then am=(--alertmanager "127.0.0.1:${ALERTMANAGER_PORT}"); fi
  node "$generator" --kong-yml "${REPO_ROOT}/kong.yml" \
    --rules "${REPO_ROOT}/docker/prometheus/rules/*.yml" \
    --scrape-interval "$SCRAPE_INTERVAL" "${am[@]}" --out "$CONFIG" ||
    die "could not write ${CONFIG} from kong.yml"
  promtool check config "$CONFIG" >"${PROM_DIR}/promtool.log" 2>&1 || {
    cat "${PROM_DIR}/promtool.log" >&2
    die "promtool rejects ${CONFIG}"
  }
}

start() {
  command -v prometheus >/dev/null || die "prometheus not installed: run '$0 install'"
  # First, so that Prometheus's first alerts find it.
  alertmanager start
  if [ -n "$(our_pid)" ] && healthy; then
    log "already running (pid $(our_pid)) on http://127.0.0.1:${PROMETHEUS_PORT}"
    return 0
  fi
  if port_in_use "$PROMETHEUS_PORT"; then
    die "127.0.0.1:${PROMETHEUS_PORT} is taken by a process this script did not start; stop it or set PROMETHEUS_PORT"
  fi
  write_config
  mkdir -p "$DATA_DIR"
  local t0
  t0="$(now_s)"
  # setsid: its own session, so a Ctrl-C meant for `npm start` reaches it only through `stop`.
  setsid prometheus --config.file="$CONFIG" \
    --web.listen-address="127.0.0.1:${PROMETHEUS_PORT}" \
    --storage.tsdb.path="$DATA_DIR" --storage.tsdb.retention.time=7d \
    --web.enable-lifecycle >"$LOGFILE" 2>&1 </dev/null &
  echo "$!" >"$PIDFILE"
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until healthy; do
    if [ -z "$(our_pid)" ] || [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 20 "$LOGFILE" >&2 || true
      stop >/dev/null 2>&1 || true
      die "not ready on 127.0.0.1:${PROMETHEUS_PORT} within ${START_TIMEOUT_S}s (log: $LOGFILE)"
    fi
    sleep 0.2
  done
  log "up on http://127.0.0.1:${PROMETHEUS_PORT} (pid $(our_pid)) after $(elapsed_since "$t0")s"
}

stop() {
  local rc=0
  stop_prometheus || rc=$?
  alertmanager stop || rc=$?
  return "$rc"
}

stop_prometheus() {
  local pid
  pid="$(our_pid)"
  if [ -z "$pid" ]; then
    log "not running (no live pid in $PIDFILE)"
    rm -f "$PIDFILE"
    return 0
  fi
  kill -TERM "$pid"
  local deadline=$((SECONDS + 15))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "pid $pid ignored SIGTERM for 15s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  rm -f "$PIDFILE"
  log "stopped (pid $pid)"
}

status() {
  local pid
  pid="$(our_pid)"
  if [ -n "$pid" ] && healthy; then
    log "healthy: pid $pid, http://127.0.0.1:${PROMETHEUS_PORT}"
    alertmanager status
    return $?
  fi
  log "not healthy (pid: ${pid:-none}, port ${PROMETHEUS_PORT})"
  return 1
}

dispatch "$@"
