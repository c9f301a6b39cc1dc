#!/usr/bin/env bash
# Milvus for the gateway's tests and local runs: a real Milvus 2.3.5 standalone from the PyPI
# package `milvus` ("embedded Milvus": the server binary and its libraries ship inside the
# wheel, with embedded etcd and local storage; nothing is downloaded at run time).
#
#   scripts/services/milvus.sh install|start|stop|status
#
# Installed into a venv at .run/venv; data and logs under .run/milvus/. The gRPC proxy port is
# ${MILVUS_PORT:-19530}. Milvus binds its gRPC and HTTP ports on ALL interfaces (Milvus 2.3
# has no listen-address setting); we set every component's advertised ip to 127.0.0.1 so the
# components talk to each other over loopback, and clients must use 127.0.0.1.
set -euo pipefail
SERVICE_NAME=milvus
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MILVUS_VERSION=2.3.5
MILVUS_PORT="${MILVUS_PORT:-19530}"
VENV="${RUN_DIR}/venv"
MILVUS_DIR="${RUN_DIR}/milvus"
DATA_DIR="${MILVUS_DIR}/data"
PIDFILE="${MILVUS_DIR}/milvus.pid"
METRICS_PORT_FILE="${MILVUS_DIR}/metrics.port"
LOGFILE="${MILVUS_DIR}/milvus.log"
START_TIMEOUT_S="${MILVUS_START_TIMEOUT_S:-300}"
# One start attempt's bound. A healthy start takes 3-40 s here; now and then (seen once in CI,
# restarted seconds after a stop) Milvus 2.3.5-lite opens every port but the proxy's and waits
# for good. Such an attempt is stopped and the start tried again, within START_TIMEOUT_S.
ATTEMPT_TIMEOUT_S="${MILVUS_ATTEMPT_TIMEOUT_S:-120}"
PYTHON="${PYTHON:-python3}"
# The wrapper is started with setsid, so its pid is also the process-group id; this marker
# in its command line tells our wrapper from any other process that got the pid later.
PID_MARKER="milvus-server --data ${DATA_DIR}"

installed() {
  [ -x "${VENV}/bin/milvus-server" ] &&
    [ "$("${VENV}/bin/python" -c 'import milvus; print(milvus.__version__)' 2>/dev/null)" = "$MILVUS_VERSION" ]
}

install() {
  if installed; then
    log "milvus ${MILVUS_VERSION} already installed in ${VENV}"
    return 0
  fi
  local t0
  t0="$(now_s)"
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 8), sys.version' ||
    die "need Python >= 3.8 as '$PYTHON'"
  [ -x "${VENV}/bin/python" ] || "$PYTHON" -m venv "$VENV"
  # MILVUS_WHEEL_DIR: optional folder holding a pre-downloaded wheel (offline installs).
  local find_links=()
  if [ -n "${MILVUS_WHEEL_DIR:-}" ]; then find_links=(--find-links "$MILVUS_WHEEL_DIR"); fi
  "${VENV}/bin/pip" install --quiet --disable-pip-version-check "${find_links[@]}" \
    "milvus==${MILVUS_VERSION}"
  installed || die "milvus ${MILVUS_VERSION} not importable from ${VENV} after pip install"
  log "installed milvus ${MILVUS_VERSION} into ${VENV} in $(elapsed_since "$t0")s"
}

wrapper_pid() {
  local pid=""
  [ -f "$PIDFILE" ] && pid="$(cat "$PIDFILE")"
  if pid_matches "$pid" "$PID_MARKER"; then echo "$pid"; fi
}

# Pids of every process still in the group we started (the Python wrapper and the milvus
# binary it runs), identified by the group id and by living under our data dir. Reads /proc
# directly: minimal Debian images have no `ps`.
group_pids() {
  local pgid="$1" dir pid stat rest pgrp
  for dir in /proc/[0-9]*; do
    pid="${dir#/proc/}"
    stat="$(cat "${dir}/stat" 2>/dev/null)" || continue
    # Fields after the command name, which is in parentheses and may hold spaces:
    # state ppid pgrp ...
    rest="${stat##*) }"
    read -r _ _ pgrp _ <<<"$rest"
    [ "$pgrp" = "$pgid" ] || continue
    if pid_matches "$pid" "$PID_MARKER" || pid_matches "$pid" "${DATA_DIR}/bin/milvus"; then
      echo "$pid"
    fi
  done
}

metrics_port() {
  if [ -f "$METRICS_PORT_FILE" ]; then cat "$METRICS_PORT_FILE"; else echo 9091; fi
}

# The venv's Python does the HTTP request: minimal Debian images have no curl.
healthy() {
  "${VENV}/bin/python" - "$(metrics_port)" <<'PY' 2>/dev/null && port_in_use "$MILVUS_PORT"
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=2) as r:
    sys.exit(0 if b"OK" in r.read() else 1)
PY
}

# The wrapper chooses the health (metrics) port itself: the first free port from 9091 up,
# handed to the milvus binary as METRICS_PORT. Read it back from the binary's environment.
record_metrics_port() {
  local pgid="$1" pid port
  for pid in $(group_pids "$pgid"); do
    if pid_matches "$pid" "${DATA_DIR}/bin/milvus"; then
      port="$(tr '\0' '\n' <"/proc/${pid}/environ" | sed -n 's/^METRICS_PORT=//p')"
      if [ -n "$port" ]; then
        echo "$port" >"$METRICS_PORT_FILE"
        return 0
      fi
    fi
  done
  return 1
}

min() { if [ "$1" -le "$2" ]; then echo "$1"; else echo "$2"; fi; }

START_FAILED=""
# One attempt: a fresh Milvus, healthy within $1 seconds. On failure START_FAILED says why
# ("exited" ends the start; "hung" is tried again) and the process is left for stop().
start_attempt() {
  local timeout="$1" pid ip_flags=() component
  rm -f "$METRICS_PORT_FILE"
  # Start from empty storage unless told otherwise: on a restart over old data Milvus 2.3
  # waits for the previous run's etcd sessions to expire ("node not match", ~40 s here), and
  # test data is disposable. The unpacked binaries in ${DATA_DIR}/bin are kept.
  if [ "${MILVUS_KEEP_DATA:-0}" != "1" ]; then rm -rf "${DATA_DIR}/data"; fi
  for component in rootCoord proxy queryCoord queryNode indexCoord indexNode dataCoord dataNode; do
    ip_flags+=(--extra-config "${component}.ip=127.0.0.1")
  done
  setsid "${VENV}/bin/python" "${VENV}/bin/milvus-server" --data "$DATA_DIR" \
    --proxy-port "$MILVUS_PORT" "${ip_flags[@]}" >"$LOGFILE" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PIDFILE"
  local until_s=$((SECONDS + timeout))
  until [ -f "$METRICS_PORT_FILE" ] && healthy; do
    [ -f "$METRICS_PORT_FILE" ] || record_metrics_port "$pid" || true
    if ! kill -0 "$pid" 2>/dev/null; then
      START_FAILED="exited"
      return 1
    fi
    if [ "$SECONDS" -ge "$until_s" ]; then
      START_FAILED="hung"
      return 1
    fi
    sleep 0.5
  done
}

start() {
  installed || die "milvus not installed: run '$0 install'"
  local pid
  pid="$(wrapper_pid)"
  if [ -n "$pid" ] && healthy; then
    log "already running (pid $pid) on 127.0.0.1:${MILVUS_PORT}"
    return 0
  fi
  # Leftovers of an earlier run (e.g. the launcher died, the server lives on) go first.
  if [ -f "$PIDFILE" ]; then stop; fi
  if port_in_use "$MILVUS_PORT"; then
    die "port ${MILVUS_PORT} is taken by a process this script did not start; stop it or set MILVUS_PORT"
  fi
  mkdir -p "$MILVUS_DIR"
  local t0 attempt=1 deadline=$((SECONDS + START_TIMEOUT_S))
  t0="$(now_s)"
  until start_attempt "$(min "$ATTEMPT_TIMEOUT_S" $((deadline - SECONDS)))"; do
    if [ "$SECONDS" -ge "$deadline" ] || [ "$START_FAILED" = "exited" ]; then
      tail -n 30 "$LOGFILE" "${DATA_DIR}/logs/milvus-stderr.log" >&2 2>/dev/null || true
      stop || true
      die "milvus did not become healthy within ${START_TIMEOUT_S}s (${START_FAILED}; logs: ${LOGFILE}, ${DATA_DIR}/logs/)"
    fi
    attempt=$((attempt + 1))
    log "not healthy after ${ATTEMPT_TIMEOUT_S}s (${START_FAILED}): stopped, starting again (attempt ${attempt})"
    stop || true
  done
  pid="$(cat "$PIDFILE")"
  log "up on 127.0.0.1:${MILVUS_PORT} (pid $pid, health port $(metrics_port)) after $(elapsed_since "$t0")s"
}

stop() {
  local pgid
  pgid="$(cat "$PIDFILE" 2>/dev/null || true)"
  if [ -z "$pgid" ] || [ -z "$(group_pids "$pgid")" ]; then
    log "not running"
    rm -f "$PIDFILE" "$METRICS_PORT_FILE"
    return 0
  fi
  # SIGTERM to each of our processes: the wrapper exits at once, the milvus binary shuts down
  # gracefully (flushes and closes its embedded etcd). SIGKILL whatever is left after 30 s.
  local pid
  for pid in $(group_pids "$pgid"); do kill -TERM "$pid" 2>/dev/null || true; done
  local deadline=$((SECONDS + 30))
  while [ -n "$(group_pids "$pgid")" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "still running 30s after SIGTERM; sending SIGKILL"
      for pid in $(group_pids "$pgid"); do kill -KILL "$pid" 2>/dev/null || true; done
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  rm -f "$PIDFILE" "$METRICS_PORT_FILE"
  log "stopped (process group $pgid)"
}

status() {
  local pid
  pid="$(wrapper_pid)"
  if [ -n "$pid" ] && healthy; then
    log "healthy: pid $pid, 127.0.0.1:${MILVUS_PORT}, health http://127.0.0.1:$(metrics_port)/healthz"
    return 0
  fi
  log "not healthy (pid: ${pid:-none}, port ${MILVUS_PORT})"
  return 1
}

dispatch "$@"
