#!/usr/bin/env bash
# `npm start`: the front door on a fresh machine. Installs what is missing, builds, starts
# Redis and Milvus, then the mock upstream, one plugin server per plugin and the harness
# gateway on :8000 with the repo's kong.yml. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x node_modules/.bin/kong-js-pluginserver ] || npm ci --no-audit --no-fund
npm run -s build

started=""
scripts/services/all.sh status >/dev/null 2>&1 || started=yes
eval "$(scripts/services/all.sh start)"
stop_services() {
  if [ -n "$started" ]; then scripts/services/all.sh stop >/dev/null 2>&1 || true; fi
}
trap stop_services EXIT
trap 'exit 130' INT TERM

node dist/scripts/frontdoor.js &
child=$!
trap 'kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 130' INT TERM
wait "$child"
