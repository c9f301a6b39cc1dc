#!/bin/sh
# Sourced by the compose stack's Kong entrypoint before docker/kong-pluginservers.sh: reads the
# secrets compose mounts under /run/secrets (files in docker/secrets/, never in kong.yml or
# docker-compose.yml) into the variables kong.yml names (tenant-cache `master_key_env`,
# retrieval-injector `encryption.secret_env`, tenant-auth `upstream_auth` `env:NAME`,
# token-meter `capture.secret_env`). An absent
# or empty file sets nothing: the plugin that needs it then refuses with plugin_misconfigured
# (or, for tenant-cache with ephemeral_key_when_missing, uses a per-process key).
#
# Inputs: KTA_SECRETS_DIR (default /run/secrets). Outputs: the exported variables below.
: "${KTA_SECRETS_DIR:=/run/secrets}"
for pair in cache_master_key:KTA_CACHE_MASTER_KEY knowledge_secret:KTA_KNOWLEDGE_SECRET \
  provider_api_key:KTA_PROVIDER_API_KEY capture_secret:KTA_CAPTURE_SECRET; do
  file="${KTA_SECRETS_DIR}/${pair%%:*}"
  var="${pair#*:}"
  if [ -s "$file" ]; then
    value=$(tr -d '\r\n' <"$file")
    export "${var}=${value}"
  fi
done
unset pair file var value
