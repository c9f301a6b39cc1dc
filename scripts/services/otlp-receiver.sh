#!/usr/bin/env bash
# A real OTLP/HTTP trace receiver (scripts/services/otlp-receiver.py) in its own venv at
# .run/otlp-receiver/: the official OpenTelemetry protocol classes from PyPI
# (`opentelemetry-proto`, pinned, and the `protobuf` runtime it brings) decode what Kong's
# opentelemetry plugin exports. test/plugins/tracing.test.ts runs it; `run` starts one in the
# foreground to watch the spans of `npm start` (kong.yml's default endpoint is port 4318).
# Idempotent; needs nothing from the network but PyPI.
#
#   scripts/services/otlp-receiver.sh install|status
#   scripts/services/otlp-receiver.sh python       # prints the venv's python path (for the tests)
#   scripts/services/otlp-receiver.sh run [PORT]   # PORT default 4318; prints one JSON line per span
set -euo pipefail
SERVICE_NAME=otlp-receiver
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OTLP_PROTO_VERSION="1.45.2"
PROTOBUF_VERSION="7.36.2"
VENV="${RUN_DIR}/otlp-receiver"
PYTHON="${PYTHON:-python3}"

installed() {
  [ "$("${VENV}/bin/python" -c 'from importlib.metadata import version as v; print(v("opentelemetry-proto"), v("protobuf"))' 2>/dev/null)" = "${OTLP_PROTO_VERSION} ${PROTOBUF_VERSION}" ]
}

install() {
  if installed; then
    log "opentelemetry-proto ${OTLP_PROTO_VERSION} already installed in ${VENV}"
    return 0
  fi
  local t0
  t0="$(now_s)"
  command -v "$PYTHON" >/dev/null || die "no '$PYTHON' on PATH (apt-get install python3)"
  if [ ! -x "${VENV}/bin/pip" ]; then
    rm -rf "$VENV"
    if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
      rm -rf "$VENV"
      log "python3 -m venv failed: installing Debian's python3-venv"
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv ||
        { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv; } ||
        die "could not install python3-venv"
      "$PYTHON" -m venv "$VENV" || die "python3 -m venv ${VENV} failed even with python3-venv"
    fi
  fi
  "${VENV}/bin/pip" install --quiet --disable-pip-version-check \
    "opentelemetry-proto==${OTLP_PROTO_VERSION}" "protobuf==${PROTOBUF_VERSION}" ||
    die "pip install opentelemetry-proto==${OTLP_PROTO_VERSION} failed (PyPI reachable?)"
  installed || die "opentelemetry-proto ${OTLP_PROTO_VERSION} not importable from ${VENV} after pip install"
  log "installed opentelemetry-proto ${OTLP_PROTO_VERSION} into ${VENV} in $(elapsed_since "$t0")s"
}

status() {
  if installed; then
    log "opentelemetry-proto ${OTLP_PROTO_VERSION} in ${VENV}"
  else
    log "not installed: run '$0 install'"
    return 1
  fi
}

case "${1:-}" in
  install | status) "$1" ;;
  python) echo "${VENV}/bin/python" ;;
  run)
    install
    exec "${VENV}/bin/python" "$(dirname "${BASH_SOURCE[0]}")/otlp-receiver.py" --port "${2:-4318}" --print
    ;;
  *)
    echo "usage: $0 {install|status|python|run [PORT]}" >&2
    exit 2
    ;;
esac
