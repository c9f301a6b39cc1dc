#!/usr/bin/env bash
# `npm run bench`: builds, installs and starts what the benchmarks need (Redis, Milvus, the
# real Kong from shared/kong, as `npm test` does), then runs every benchmark in bench/ (each
# writes its section of docs/benchmarks.md), or only those named: `npm run bench -- chain`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/tsx ] || npm ci --no-audit --no-fund
npm run -s build
scripts/services/all.sh install
kong_rc=0
scripts/services/kong.sh install || kong_rc=$?
if [ "$kong_rc" -ne 0 ] && [ "$kong_rc" -ne 3 ]; then exit "$kong_rc"; fi
started=""
scripts/services/all.sh status >/dev/null 2>&1 || started=yes
env_file="$(mktemp)"
scripts/services/all.sh start >"$env_file"
# shellcheck disable=SC1090
. "$env_file"
rm -f "$env_file"
cleanup() {
  if [ -n "$started" ] && [ -z "${KEEP_SERVICES:-}" ]; then
    scripts/services/all.sh stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
if [ "$#" -gt 0 ]; then
  benches=()
  for n in "$@"; do benches+=("bench/${n%.ts}.ts"); done
else
  benches=(bench/*.ts)
fi
for b in "${benches[@]}"; do
  # The soak (about 20 minutes) runs only when named: `npm run soak`.
  case "$b" in bench/report.ts) continue ;; bench/soak.ts) [ "$#" -gt 0 ] || continue ;; esac
  echo "== $b"
  npx tsx "$b"
done
