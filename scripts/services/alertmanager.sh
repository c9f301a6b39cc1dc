#!/usr/bin/env bash
# Alertmanager for local runs (`npm start`, through scripts/services/prometheus.sh) and the
# alert test: Debian's `prometheus-alertmanager` package (binaries prometheus-alertmanager and
# amtool), our own instance (never the packaged service), bound to
# 127.0.0.1:${ALERTMANAGER_PORT:-9093} with clustering off, data and config in .run/alertmanager/.
#
#   scripts/services/alertmanager.sh install|start|stop|status
#
# `start` writes .run/alertmanager/alertmanager.yml from docker/alertmanager/alertmanager.yml
# (scripts/monitoring/alertmanager-config.ts; ALERTMANAGER_WEBHOOK_URL, when set, replaces the
# webhook receiver's URL) and amtool checks it before Alertmanager starts. Needs `npm run build`.
set -euo pipefail
SERVICE_NAME=alertmanager
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALERTMANAGER_PORT="${ALERTMANAGER_PORT:-9093}"
AM_DIR="${RUN_DIR}/alertmanager"
CONFIG="${AM_DIR}/alertmanager.yml"
DATA_DIR="${AM_DIR}/data"
PIDFILE="${AM_DIR}/alertmanager.pid"
LOGFILE="${AM_DIR}/alertmanager.log"
START_TIMEOUT_S="${ALERTMANAGER_START_TIMEOUT_S:-30}"
# Debian names the binary after its package; upstream's tarball calls it alertmanager.
BIN="${ALERTMANAGER_BIN:-$(command -v prometheus-alertmanager || command -v alertmanager || echo prometheus-alertmanager)}"
PID_MARKER="--config.file=${CONFIG}"

install() {
  if command -v "$BIN" >/dev/null && command -v amtool >/dev/null; then
    log "alertmanager already installed: $("$BIN" --version 2>&1 | head -n1)"
    return 0
  fi
  log "installing Debian prometheus-alertmanager (alertmanager and amtool)"
  # As for prometheus: a policy-rc.d answering 101 keeps the packaged service from starting.
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
    added_policy=1
  fi
  local rc=0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    prometheus-alertmanager || {
    rc=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
    if [ "$rc" -eq 0 ]; then
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        prometheus-alertmanager || rc=$?
    fi
  }
  if [ "$added_policy" -eq 1 ]; then as_root rm -f "$policy"; fi
  [ "$rc" -eq 0 ] || die "apt-get failed (exit $rc)"
  BIN="$(command -v prometheus-alertmanager || command -v alertmanager || true)"
  [ -n "$BIN" ] || die "no alertmanager binary after installing prometheus-alertmanager"
  log "installed: $("$BIN" --version 2>&1 | head -n1)"
}

our_pid() {
  local pid=""
  [ -f "$PIDFILE" ] && pid="$(cat "$PIDFILE")"
  if pid_matches "$pid" "$PID_MARKER"; then echo "$pid"; fi
}

healthy() {
  curl -fsS --max-time 2 "http://127.0.0.1:${ALERTMANAGER_PORT}/-/ready" >/dev/null 2>&1
}

write_config() {
  local generator="${REPO_ROOT}/dist/scripts/monitoring/alertmanager-config.js"
  [ -f "$generator" ] || die "${generator} is missing: run 'npm run build' first"
  mkdir -p "$AM_DIR"
  local args=(--out "$CONFIG")
  if [ -n "${ALERTMANAGER_WEBHOOK_URL:-}" ]; then args+=(--webhook-url "$ALERTMANAGER_WEBHOOK_URL"); fi
  node "$generator" "${args[@]}" || die "could not write ${CONFIG}"
  amtool check-config "$CONFIG" >"${AM_DIR}/amtool.log" 2>&1 || {
    cat "${AM_DIR}/amtool.log" >&2
    die "amtool rejects ${CONFIG}"
  }
}

start() {
  command -v "$BIN" >/dev/null || die "alertmanager not installed: run '$0 install'"
  if [ -n "$(our_pid)" ] && healthy; then
    log "already running (pid $(our_pid)) on http://127.0.0.1:${ALERTMANAGER_PORT}"
    return 0
  fi
  if port_in_use "$ALERTMANAGER_PORT"; then
    die "127.0.0.1:${ALERTMANAGER_PORT} is taken by a process this script did not start; stop it or set ALERTMANAGER_PORT"
  fi
  write_config
  mkdir -p "$DATA_DIR"
  local t0
  t0="$(now_s)"
  # --cluster.listen-address= : no gossip port (the default binds 0.0.0.0:9094); one instance.
  # setsid: its own session, so a Ctrl-C meant for `npm start` reaches it only through `stop`.
  setsid "$BIN" --config.file="$CONFIG" \
    --web.listen-address="127.0.0.1:${ALERTMANAGER_PORT}" \
    --cluster.listen-address= \
    --storage.path="$DATA_DIR" --data.retention=120h \
    >"$LOGFILE" 2>&1 </dev/null &
  echo "$!" >"$PIDFILE"
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until healthy; do
    if [ -z "$(our_pid)" ] || [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 20 "$LOGFILE" >&2 || true
      stop >/dev/null 2>&1 || true
      die "not ready on 127.0.0.1:${ALERTMANAGER_PORT} within ${START_TIMEOUT_S}s (log: $LOGFILE)"
    fi
    sleep 0.2
  done
  log "up on http://127.0.0.1:${ALERTMANAGER_PORT} (pid $(our_pid)) after $(elapsed_since "$t0")s"
}

stop() {
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
    log "healthy: pid $pid, http://127.0.0.1:${ALERTMANAGER_PORT}"
    return 0
  fi
  log "not healthy (pid: ${pid:-none}, port ${ALERTMANAGER_PORT})"
  return 1
}

dispatch "$@"
