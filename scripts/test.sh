#!/usr/bin/env bash
# The test command (README, CI). On a fresh machine it installs what is missing (npm packages,
# Redis, Milvus, Prometheus, the real Kong from shared/kong), builds, starts Redis and Milvus
# when they are not already up, and runs:
#   1. every test on the harness gateway (the fast loop);
#   2. the end-to-end, isolation and parity suites again on the real Kong 3.9.3
#      (GATEWAY=kong), when a Kong is installed; without one it says so.
# It stops what it started, and its last line is the truth: "tests: N passed, M failed".
#
#   npm test                          # everything
#   npm test -- test/unit/            # a subset on the harness (arguments go to ava)
#   GATEWAY=kong npm test -- test/plugins/tenant-auth.test.ts   # a subset on the real Kong
#   KEEP_SERVICES=1 npm test          # leave Redis/Milvus running afterwards (faster reruns)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=services/lib.sh
source scripts/services/lib.sh

fail() {
  echo "npm test: $*" >&2
  echo "tests: 0 passed, 1 failed"
  exit 1
}

[ -x node_modules/.bin/ava ] || npm ci --no-audit --no-fund || fail "npm ci failed"
npm run -s build || fail "the build failed"

scripts/services/all.sh install || fail "could not install Redis or Milvus (see above)"
# Prometheus and promtool (Debian's package): the monitoring test runs both itself.
scripts/services/prometheus.sh install || fail "could not install Prometheus (see above)"
# LuaJIT (Kong's Lua) runs the Lua snippets the project ships in kong.yml in their unit tests.
if ! command -v luajit >/dev/null 2>&1; then
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends luajit ||
    { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends luajit; } ||
    fail "could not install luajit"
fi
# The OpenAI Python SDK (test/sdk/openai-python.test.ts drives it) in its venv under .run/.
scripts/services/python-sdk.sh install || fail "could not install the OpenAI Python SDK (see above)"
# A real OTLP receiver (PyPI's opentelemetry-proto) in its venv under .run/: test/plugins/tracing.test.ts
# decodes what the real Kong's opentelemetry plugin exports with it.
scripts/services/otlp-receiver.sh install || fail "could not install the OTLP receiver (see above)"
kong_rc=0
scripts/services/kong.sh install || kong_rc=$?
if [ "$kong_rc" -ne 0 ] && [ "$kong_rc" -ne 3 ]; then fail "could not install Kong (see above)"; fi

started=""
scripts/services/all.sh status >/dev/null 2>&1 || started=yes
# A real 3-master Redis Cluster (Debian's redis-server in cluster mode): the cluster suites.
cluster_started=""
scripts/services/redis-cluster.sh status >/dev/null 2>&1 || cluster_started=yes
env_file="$(mktemp)"
scripts/services/all.sh start >"$env_file" || fail "a service did not start (see above)"
scripts/services/redis-cluster.sh start >>"$env_file" || fail "the Redis Cluster did not start (see above)"
# shellcheck disable=SC1090
. "$env_file"
rm -f "$env_file"
cleanup() {
  if [ -n "$started" ] && [ -z "${KEEP_SERVICES:-}" ]; then
    scripts/services/all.sh stop >/dev/null 2>&1 || true
  fi
  if [ -n "$cluster_started" ] && [ -z "${KEEP_SERVICES:-}" ]; then
    scripts/services/redis-cluster.sh stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

total_pass=0
total_fail=0
rc=0
# Runs ava with TAP output (its summary then always states passes and failures; the default
# reporter omits the pass count once a test fails) and adds the counts up.
run_ava() {
  local label="$1"
  shift
  echo "== tests on the ${label}"
  local log
  log="$(mktemp)"
  set +e
  npx ava --tap "$@" 2>&1 | tee "$log"
  local r=${PIPESTATUS[0]}
  set -e
  local pass fail skip todo
  pass=$(grep -Eo '^# pass [0-9]+' "$log" | tail -n1 | grep -Eo '[0-9]+' || echo 0)
  fail=$(grep -Eo '^# fail [0-9]+' "$log" | tail -n1 | grep -Eo '[0-9]+' || echo 0)
  skip=$(grep -Eo '^# skip [0-9]+' "$log" | tail -n1 | grep -Eo '[0-9]+' || echo 0)
  todo=$(grep -Eo '^# todo [0-9]+' "$log" | tail -n1 | grep -Eo '[0-9]+' || echo 0)
  rm -f "$log"
  if [ "$skip" -gt 0 ] || [ "$todo" -gt 0 ]; then
    echo "skipped or todo tests are failures in this project" >&2
    fail=$((fail + skip + todo))
  fi
  # A crash, an uncaught exception or a timed-out file fails the run even when no test
  # reported a failure.
  if [ "$r" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
  echo "${label}: ${pass} passed, ${fail} failed"
  total_pass=$((total_pass + pass))
  total_fail=$((total_fail + fail))
  if [ "$r" -ne 0 ] || [ "$fail" -gt 0 ]; then rc=1; fi
}

# The parity suite starts both gateways itself: it runs with the real-Kong suites.
KONG_SUITES=(test/plugins/ test/isolation/ test/sdk/)
[ -d test/parity ] && KONG_SUITES+=(test/parity/)
if [ "${GATEWAY:-}" = kong ]; then
  [ "$kong_rc" -eq 0 ] || fail "GATEWAY=kong, but no Kong 3.9 is installed"
  if [ "$#" -gt 0 ]; then run_ava "real Kong 3.9.3" "$@"; else run_ava "real Kong 3.9.3" "${KONG_SUITES[@]}"; fi
else
  if [ "$#" -gt 0 ]; then
    GATEWAY=harness run_ava harness "$@"
  else
    mapfile -t harness_files < <(find test -name '*.test.ts' -not -path 'test/parity/*' | sort)
    GATEWAY=harness run_ava harness "${harness_files[@]}"
  fi
  if [ "$#" -eq 0 ]; then
    if [ "$kong_rc" -eq 0 ]; then
      GATEWAY=kong run_ava "real Kong 3.9.3" "${KONG_SUITES[@]}"
    else
      echo "== no Kong 3.9 on this machine: the end-to-end suites ran on the harness only"
    fi
  fi
fi

echo "tests: ${total_pass} passed, ${total_fail} failed"
exit "$rc"
