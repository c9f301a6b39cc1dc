#!/usr/bin/env bash
# The real Kong Gateway 3.9.3 for the end-to-end tests and `npm start`.
#
#   scripts/services/kong.sh install|status
#
# install: a Kong 3.9 already found (KONG_INSTALL_DIR, /opt/kong-3.9.3, or `kong` on PATH) is
# used as it is; else the tarball that ships beside the repository in shared/kong
# (KONG_TARBALL_DIR, default ../shared/kong) is checked against its SHA256SUMS and unpacked to
# /opt/kong-3.9.3 (the path it was built for). Without either, it says so and exits 3: the
# callers then fall back to the harness and say which gateway they run.
# There is no start/stop here: kong-runner/ starts one Kong per test suite (and one for
# `npm start`) with its own generated kong.conf and prefix, and stops it.
set -euo pipefail
SERVICE_NAME=kong
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INSTALL_DIR="${KONG_INSTALL_DIR:-/opt/kong-3.9.3}"
TARBALL_DIR="${KONG_TARBALL_DIR:-${REPO_ROOT}/../shared/kong}"
TARBALL_NAME="kong-3.9.3-debian12-amd64.tar.gz"

found() {
  local v
  if [ -x "${INSTALL_DIR}/bin/kong" ]; then
    v="$(bash -c ". '${INSTALL_DIR}/kong-env.sh' >/dev/null 2>&1; '${INSTALL_DIR}/bin/kong' version" 2>/dev/null || true)"
  elif command -v kong >/dev/null 2>&1; then
    v="$(env -u KONG_PREFIX kong version 2>/dev/null || true)"
  fi
  case "${v:-}" in 3.9.*) echo "$v" ;; *) return 1 ;; esac
}

install() {
  local v
  if v="$(found)"; then
    log "Kong ${v} already installed"
    return 0
  fi
  if [ ! -f "${TARBALL_DIR}/${TARBALL_NAME}" ]; then
    log "no Kong 3.9 on this machine and no ${TARBALL_NAME} in ${TARBALL_DIR}: the harness will stand in for Kong"
    exit 3
  fi
  [ "$INSTALL_DIR" = /opt/kong-3.9.3 ] ||
    die "the tarball unpacks to /opt/kong-3.9.3 only (KONG_INSTALL_DIR=${INSTALL_DIR})"
  log "checking ${TARBALL_NAME} against SHA256SUMS"
  (cd "$TARBALL_DIR" && grep " ${TARBALL_NAME}\$" SHA256SUMS | sha256sum -c --quiet -) ||
    die "${TARBALL_NAME} does not match SHA256SUMS: not installing it"
  local t0
  t0="$(now_s)"
  as_root tar -xzf "${TARBALL_DIR}/${TARBALL_NAME}" -C /
  v="$(found)" || die "unpacked, but 'kong version' does not answer 3.9.x"
  log "installed Kong ${v} in /opt/kong-3.9.3 after $(elapsed_since "$t0")s"
}

status() {
  local v
  if v="$(found)"; then
    log "Kong ${v} installed"
    return 0
  fi
  log "no Kong 3.9 installed"
  return 1
}

start() { die "kong-runner starts Kong per run (tests, npm start); nothing to start here"; }
stop() { start; }

dispatch "$@"
