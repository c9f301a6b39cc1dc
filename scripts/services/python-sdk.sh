#!/usr/bin/env bash
# The official OpenAI Python SDK (PyPI `openai`, pinned) in its own venv at .run/python-sdk/,
# for test/sdk/openai-python.test.ts: Python users' clients, driven against the front door.
# Idempotent (a venv already holding the pinned version is left alone); needs nothing from the
# network but PyPI. Without Debian's python3-venv (ensurepip missing), it installs it with apt.
#
#   scripts/services/python-sdk.sh install|status
#   scripts/services/python-sdk.sh python    # prints the venv's python path (for the tests)
set -euo pipefail
SERVICE_NAME=python-sdk
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OPENAI_PY_VERSION="3.51.0"
VENV="${RUN_DIR}/python-sdk"
PYTHON="${PYTHON:-python3}"

installed() {
  [ "$("${VENV}/bin/python" -c 'import openai; print(openai.__version__)' 2>/dev/null)" = "$OPENAI_PY_VERSION" ]
}

install() {
  if installed; then
    log "openai ${OPENAI_PY_VERSION} already installed in ${VENV}"
    return 0
  fi
  local t0
  t0="$(now_s)"
  command -v "$PYTHON" >/dev/null || die "no '$PYTHON' on PATH (apt-get install python3)"
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 9), sys.version' ||
    die "the OpenAI Python SDK needs Python >= 3.9 as '$PYTHON'"
  if [ ! -x "${VENV}/bin/pip" ]; then
    rm -rf "$VENV"
    if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
      # Debian splits venv's ensurepip into python3-venv (python3.X-venv on some releases).
      rm -rf "$VENV"
      log "python3 -m venv failed: installing Debian's python3-venv"
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv ||
        { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv; } ||
        die "could not install python3-venv"
      "$PYTHON" -m venv "$VENV" || die "python3 -m venv ${VENV} failed even with python3-venv"
    fi
  fi
  "${VENV}/bin/pip" install --quiet --disable-pip-version-check "openai==${OPENAI_PY_VERSION}" ||
    die "pip install openai==${OPENAI_PY_VERSION} failed (PyPI reachable?)"
  installed || die "openai ${OPENAI_PY_VERSION} not importable from ${VENV} after pip install"
  log "installed openai ${OPENAI_PY_VERSION} into ${VENV} in $(elapsed_since "$t0")s"
}

status() {
  if installed; then
    log "openai ${OPENAI_PY_VERSION} in ${VENV}"
  else
    log "not installed: run '$0 install'"
    return 1
  fi
}

case "${1:-}" in
  install | status) "$1" ;;
  python) echo "${VENV}/bin/python" ;;
  *)
    echo "usage: $0 {install|status|python}" >&2
    exit 2
    ;;
esac
