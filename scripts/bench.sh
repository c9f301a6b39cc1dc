#!/usr/bin/env bash
# `npm run bench`: builds, then runs every benchmark in bench/ (each writes its section of
# docs/benchmarks.md). Benchmarks that need Redis or Milvus start them through the same
# scripts the tests use.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/tsx ] || npm ci
npm run -s build
for b in bench/*.ts; do
  case "$b" in bench/report.ts) continue ;; esac
  echo "== $b"
  npx tsx "$b"
done
