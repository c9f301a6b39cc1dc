#!/usr/bin/env bash
# The test command (README, CI): installs what is missing, builds, starts the real Redis and
# Milvus when they are not already up, runs every test, and stops what it started.
#
#   npm test                      # everything
#   npm test -- test/unit/        # a subset (arguments go to ava)
#   KEEP_SERVICES=1 npm test      # leave Redis/Milvus running afterwards (faster reruns)
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x node_modules/.bin/ava ] || npm ci
npm run -s build

started=""
if ! scripts/services/all.sh status >/dev/null 2>&1; then
  started=yes
fi
eval "$(scripts/services/all.sh start)"
cleanup() {
  if [ -n "$started" ] && [ -z "${KEEP_SERVICES:-}" ]; then
    scripts/services/all.sh stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

log="$(mktemp)"
set +e
npx ava "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

# One plain closing line for any reader of the log: "tests: N passed, N failed".
count() { grep -Eo "[0-9]+ (tests? |)$1" "$log" | tail -n1 | grep -Eo '^[0-9]+' || echo 0; }
passed=$(count passed)
failed=$(count failed)
uncaught=$(count 'uncaught exceptions?')
skipped=$(count skipped)
todo=$(count todo)
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=$((uncaught > 0 ? uncaught : 1)); fi
if [ "$skipped" -gt 0 ] || [ "$todo" -gt 0 ]; then
  echo "skipped or todo tests are failures in this project" >&2
  failed=$((failed + skipped + todo))
  rc=1
fi
rm -f "$log"
echo "tests: ${passed} passed, ${failed} failed"
exit "$rc"
