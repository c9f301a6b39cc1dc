#!/bin/sh
# Prints the kong.conf environment for one plugin server per plugin (sourced by compose's
# entrypoint wrapper). Kept as a script so adding a plugin means adding one name below.
PLUGINS="tenant-auth circuit-breaker"
PS="node /opt/kta/node_modules/kong-pdk/bin/kong-js-pluginserver"
names=""
for p in $PLUGINS; do
  var=$(echo "$p" | tr 'a-z-' 'A-Z_')
  export "KONG_PLUGINSERVER_${var}_SOCKET=/usr/local/kong/${p}.sock"
  export "KONG_PLUGINSERVER_${var}_START_CMD=$PS -d /opt/kta/dist/pluginservers/$p --kong-prefix /usr/local/kong --sock-name ${p}.sock"
  export "KONG_PLUGINSERVER_${var}_QUERY_CMD=$PS -d /opt/kta/dist/pluginservers/$p --dump-all-plugins"
  names="${names:+$names,}$p"
done
export KONG_PLUGINSERVER_NAMES="$names"
export KONG_PLUGINS="bundled,$names"
