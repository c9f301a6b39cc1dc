#!/usr/bin/env bash
# `npm run eval`: the per-tenant eval sets (evals/) through the chain, gated per tenant
# against evals/baseline.json. On a fresh clone it does what `npm test` does first: installs
# what is missing (npm packages, Redis, Milvus, the real Kong from shared/kong), builds, and
# starts Redis and Milvus when they are not up, stopping what it started at the end (unless
# KEEP_SERVICES). With REDIS_URL and MILVUS_ADDRESS both set, those are used as they are and
# nothing is installed or started. Arguments go to scripts/eval.ts (see evals/README.md):
#
#   npm run eval
#   npm run eval -- --record-baseline
#   EVAL_BASE_URL=https://api.openai.com/v1 EVAL_API_KEY=sk-... npm run eval
#
# Exit codes: 0 the gate passed, 1 a tenant is below its baseline, 2 a bad case file or
# argument, 3 the stack did not start.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=services/lib.sh
source scripts/services/lib.sh
SERVICE_NAME=eval

[ -x node_modules/.bin/kong-js-pluginserver ] || npm ci --no-audit --no-fund || die "npm ci failed"
# Build unless dist/ is newer than every source (CI has just built it for the test command:
# a second tsc run would be a third of the eval's time).
if [ ! -f dist/scripts/eval.js ] || [ ! -d dist/pluginservers ] ||
  [ -n "$(find lib plugins harness kong-runner mock-upstream scripts \( -name '*.ts' -o -name '*.lua' -o -name '*.js' \) -newer dist/scripts/eval.js -print -quit)" ]; then
  npm run -s build >/dev/null || die "the build failed"
fi

started=""
if [ -z "${EVAL_FRONTDOOR_URL:-}" ] && { [ -z "${REDIS_URL:-}" ] || [ -z "${MILVUS_ADDRESS:-}" ]; }; then
  scripts/services/all.sh install || die "could not install Redis or Milvus (see above)"
  scripts/services/all.sh status >/dev/null 2>&1 || started=yes
  env_file="$(mktemp)"
  scripts/services/all.sh start >"$env_file" || die "a service did not start (see above)"
  # shellcheck disable=SC1090
  . "$env_file"
  rm -f "$env_file"
fi
cleanup() {
  if [ -n "$started" ] && [ -z "${KEEP_SERVICES:-}" ]; then
    scripts/services/all.sh stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

if [ -z "${EVAL_FRONTDOOR_URL:-}" ] && [ "${EVAL_GATEWAY:-${GATEWAY:-}}" != harness ]; then
  kong_rc=0
  scripts/services/kong.sh install || kong_rc=$?
  if [ "$kong_rc" -ne 0 ] && [ "$kong_rc" -ne 3 ]; then die "could not install Kong (see above)"; fi
fi

set +e
node dist/scripts/eval.js "$@"
rc=$?
set -e
exit "$rc"
