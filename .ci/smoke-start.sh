#!/usr/bin/env bash
# `npm start` as a user runs it: wait for "front door ready", send a tenant's chat request and
# an unauthenticated one, check that the Prometheus the banner names scrapes every plugin server
# and sees the tenant's request, then Ctrl-C (SIGINT to the process group) and check that
# nothing it started is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
log="$(mktemp)"
setsid npm start >"$log" 2>&1 &
pgid=$!
deadline=$((SECONDS + 600))
until grep -q "front door ready" "$log"; do
  if ! kill -0 "$pgid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    cat "$log"
    echo "npm start did not become ready" >&2
    kill -INT -- "-$pgid" 2>/dev/null || true
    exit 1
  fi
  sleep 1
done
grep "front door ready" "$log"
ok=0
code=$(curl -s -o /tmp/smoke-chat.json -w '%{http_code}' localhost:8000/v1/chat/completions \
  -H 'apikey: acme-demo-key' -H 'content-type: application/json' \
  -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}')
echo "chat as acme: $code $(head -c 200 /tmp/smoke-chat.json)"
[ "$code" = 200 ] || ok=1
code=$(curl -s -o /dev/null -w '%{http_code}' localhost:8000/v1/models)
echo "no key: $code"
[ "$code" = 401 ] || ok=1
prom=$(grep -Eo 'prometheus http://127\.0\.0\.1:[0-9]+' "$log" | head -n1 | cut -d' ' -f2)
if [ -z "$prom" ]; then
  echo "the ready banner names no Prometheus" >&2
  ok=1
else
  seen=""
  for _ in $(seq 1 60); do
    up=$(curl -s "$prom/api/v1/query" --data-urlencode 'query=count(up{job="kong-tenant-plugins"} == 1)' |
      grep -Eo '"value":\[[0-9.]+,"[0-9]+"' | grep -Eo '"[0-9]+"$' | tr -d '"' || true)
    acme=$(curl -s "$prom/api/v1/query" --data-urlencode 'query=sum by (tenant) (tenant_auth_requests_total{tenant="acme"})' |
      grep -c '"tenant":"acme"' || true)
    if [ "${up:-0}" = 6 ] && [ "$acme" -ge 1 ]; then seen=yes; break; fi
    sleep 1
  done
  echo "prometheus $prom: plugin servers up ${up:-0}/6, acme's requests seen: ${seen:-no}"
  [ -n "$seen" ] || ok=1
fi
kill -INT -- "-$pgid"
for _ in $(seq 1 60); do kill -0 "$pgid" 2>/dev/null || break; sleep 1; done
if kill -0 "$pgid" 2>/dev/null; then
  echo "npm start did not stop on Ctrl-C" >&2
  ok=1
fi
left=$(pgrep -f "nginx: master process .*kta-kong-|kong-js-pluginserver .*dist/(pluginservers|chain)|prometheus --config.file=.*/\.run/prometheus/|prometheus-alertmanager --config.file=.*/\.run/alertmanager/" || true)
if [ -n "$left" ]; then
  echo "left running after Ctrl-C: $left" >&2
  ok=1
fi
tail -n 5 "$log"
rm -f "$log"
exit "$ok"
