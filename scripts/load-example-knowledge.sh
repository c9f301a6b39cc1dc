#!/usr/bin/env bash
# Loads the example knowledge of the example tenants (examples/knowledge/<tenant>/) into the
# shared knowledge collection, through the embeddings endpoint of the running mock upstream
# (:9000 unless KTA_EMBEDDINGS_URL says otherwise). Run after `npm run build`, with Milvus,
# Redis and the mock upstream up (i.e. from `npm start`, once they are).
#
# The operator secret: KTA_KNOWLEDGE_SECRET if set, else the file .run/knowledge.secret
# (created on first use). The retrieval-injector plugin server must get the same value in
# its KTA_KNOWLEDGE_SECRET environment variable (kong.yml: encryption.secret_env).
set -euo pipefail
cd "$(dirname "$0")/.."
secret_file="${KTA_KNOWLEDGE_SECRET_FILE:-.run/knowledge.secret}"
if [ -z "${KTA_KNOWLEDGE_SECRET:-}" ]; then
  if [ ! -s "$secret_file" ]; then
    mkdir -p "$(dirname "$secret_file")"
    (umask 077 && node -e "process.stdout.write(require('crypto').randomBytes(32).toString('hex'))" >"$secret_file")
  fi
  KTA_KNOWLEDGE_SECRET="$(cat "$secret_file")"
  export KTA_KNOWLEDGE_SECRET
fi
for tenant in acme globex; do
  node dist/scripts/ingest.js --tenant "$tenant" examples/knowledge/"$tenant"/*.md
done
