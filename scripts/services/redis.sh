#!/usr/bin/env bash
# Redis for the gateway's tests and local runs: Debian's redis-server, our own instance
# (never the system service), bound to 127.0.0.1:${REDIS_PORT:-6379}, data in .run/redis/.
#
#   scripts/services/redis.sh install|start|stop|status
set -euo pipefail
SERVICE_NAME=redis
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REDIS_PORT="${REDIS_PORT:-6379}"
REDIS_DIR="${RUN_DIR}/redis"
PIDFILE="${REDIS_DIR}/redis-${REDIS_PORT}.pid"
LOGFILE="${REDIS_DIR}/redis-${REDIS_PORT}.log"
START_TIMEOUT_S="${REDIS_START_TIMEOUT_S:-20}"

install() {
  if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    log "redis-server already installed: $(redis-server --version | head -n1)"
    return 0
  fi
  log "installing Debian redis-server"
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
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      redis-server || rc=$?
  fi
  if [ "$added_policy" -eq 1 ]; then as_root rm -f "$policy"; fi
  [ "$rc" -eq 0 ] || die "apt-get failed (exit $rc)"
  log "installed: $(redis-server --version | head -n1)"
}

our_pid() {
  local pid=""
  [ -f "$PIDFILE" ] && pid="$(cat "$PIDFILE")"
  if pid_matches "$pid" "redis-server 127.0.0.1:${REDIS_PORT}"; then echo "$pid"; fi
}

healthy() {
  [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]
}

start() {
  command -v redis-server >/dev/null || die "redis-server not installed: run '$0 install'"
  if [ -n "$(our_pid)" ] && healthy; then
    log "already running (pid $(our_pid)) on 127.0.0.1:${REDIS_PORT}"
    return 0
  fi
  if port_in_use "$REDIS_PORT"; then
    die "127.0.0.1:${REDIS_PORT} is taken by a process this script did not start; stop it or set REDIS_PORT"
  fi
  mkdir -p "$REDIS_DIR"
  local t0
  t0="$(now_s)"
  # No persistence: the data is test and cache state; a restart starts empty on purpose.
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
    --daemonize yes --pidfile "$PIDFILE" --logfile "$LOGFILE" --dir "$REDIS_DIR" \
    --save '' --appendonly no
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until healthy; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 20 "$LOGFILE" >&2 || true
      die "no PONG from 127.0.0.1:${REDIS_PORT} within ${START_TIMEOUT_S}s (log: $LOGFILE)"
    fi
    sleep 0.1
  done
  log "up on 127.0.0.1:${REDIS_PORT} (pid $(our_pid)) after $(elapsed_since "$t0")s"
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
  local deadline=$((SECONDS + 10))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "pid $pid ignored SIGTERM for 10s; sending SIGKILL"
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
    log "healthy: pid $pid, 127.0.0.1:${REDIS_PORT}"
    return 0
  fi
  log "not healthy (pid: ${pid:-none}, port ${REDIS_PORT})"
  return 1
}

dispatch "$@"
