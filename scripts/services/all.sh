#!/usr/bin/env bash
# Redis and Milvus together: what the integration tests need.
#
#   scripts/services/all.sh install|start|stop|status
#
# After start/status it prints the environment the tests read, ready for `eval`:
#   eval "$(scripts/services/all.sh start)"
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

print_env() {
  echo "export REDIS_URL=redis://127.0.0.1:${REDIS_PORT:-6379}"
  echo "export MILVUS_ADDRESS=127.0.0.1:${MILVUS_PORT:-19530}"
}

case "${1:-}" in
  install | start)
    "$here/redis.sh" "$1"
    "$here/milvus.sh" "$1"
    if [ "$1" = start ]; then print_env; fi
    ;;
  stop)
    rc=0
    "$here/milvus.sh" stop || rc=$?
    "$here/redis.sh" stop || rc=$?
    exit "$rc"
    ;;
  status)
    rc=0
    "$here/redis.sh" status || rc=$?
    "$here/milvus.sh" status || rc=$?
    if [ "$rc" -eq 0 ]; then print_env; fi
    exit "$rc"
    ;;
  *)
    echo "usage: $0 {install|start|stop|status}" >&2
    exit 2
    ;;
esac
