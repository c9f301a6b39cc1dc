#!/bin/sh
# The one generator of Kong's plugin-server settings, used by the compose stack (sourced by its
# entrypoint) and by the project's real-Kong runner (kong-runner/, for tests and `npm start`).
# Kong 3.9 takes one plugin per pluginserver_<name> entry (kong/runloop/plugin_servers/
# process.lua takes the first plugin of the query command's dump), so every plugin gets its own
# trio KONG_PLUGINSERVER_<NAME>_{SOCKET,START_CMD,QUERY_CMD}; a '-' in the name becomes '_'.
#
# Two layouts (docs/operations.md, "Plugin servers: one process or six"):
# - chain (default): one kong-js-pluginserver process serves every plugin whose entry file is in
#   KTA_CHAIN_DIR. The first such plugin's entry has the start command; the others point at the
#   same socket and have none (Kong then treats them as externally managed, conf_loader). Each
#   entry's query command dumps that plugin alone as the chain serves it (KTA_CHAIN_QUERY_DIR/
#   <plugin>: the chain runs one log phase for several plugins, lib/pluginserver/chain-entry.ts).
# - per-plugin: one process per plugin, each serving its own directory.
# A plugin without an entry in KTA_CHAIN_DIR (a test fixture) always gets its own process.
#
# Inputs (environment; defaults are the compose image's layout):
#   KTA_PLUGINSERVER_DIRS  space-separated plugin-server directories (default: every directory
#                          under /opt/kta/dist/pluginservers); the plugin name is the basename
#   KTA_PLUGINSERVER_MODE  chain (default) or per-plugin
#   KTA_CHAIN_DIR          the co-hosted server's directory (default /opt/kta/dist/chain)
#   KTA_CHAIN_QUERY_DIR    its query directories (default: chain-query beside KTA_CHAIN_DIR)
#   KTA_PLUGINSERVER_CMD   how to run kong-js-pluginserver
#   KTA_SOCKET_DIR         where the sockets live (nginx workers must be able to write there)
#   KTA_PLUGINSERVER_ENV   space-separated variable names the plugin servers must see: nginx
#                          clears a worker's environment except what `env` directives name, and
#                          the workers spawn the plugin servers (KONG_NGINX_MAIN_ENV)
# Outputs: exported KONG_PLUGINSERVER_*, KONG_PLUGINSERVER_NAMES, KONG_PLUGINS,
# KONG_NGINX_MAIN_ENV.
: "${KTA_PLUGINSERVER_CMD:=node /opt/kta/node_modules/kong-pdk/bin/kong-js-pluginserver}"
: "${KTA_SOCKET_DIR:=/usr/local/kong}"
: "${KTA_PLUGINSERVER_ENV:=NODE_ENV}"
: "${KTA_PLUGINSERVER_MODE:=chain}"
: "${KTA_CHAIN_DIR:=/opt/kta/dist/chain}"
: "${KTA_CHAIN_QUERY_DIR:=$(dirname "$KTA_CHAIN_DIR")/chain-query}"
case "$KTA_PLUGINSERVER_MODE" in
  chain | per-plugin) ;;
  *)
    echo "kong-pluginservers.sh: KTA_PLUGINSERVER_MODE must be chain or per-plugin, got '$KTA_PLUGINSERVER_MODE'" >&2
    return 2 2>/dev/null || exit 2
    ;;
esac
if [ -z "${KTA_PLUGINSERVER_DIRS:-}" ]; then
  for d in /opt/kta/dist/pluginservers/*/; do
    [ -d "$d" ] && KTA_PLUGINSERVER_DIRS="${KTA_PLUGINSERVER_DIRS:+$KTA_PLUGINSERVER_DIRS }${d%/}"
  done
fi
names=""
chain_started=""
for dir in $KTA_PLUGINSERVER_DIRS; do
  p=$(basename "$dir")
  var=$(echo "$p" | tr 'a-z-' 'A-Z_')
  export "KONG_PLUGINSERVER_${var}_QUERY_CMD=${KTA_PLUGINSERVER_CMD} -d ${dir} --dump-all-plugins"
  if [ "$KTA_PLUGINSERVER_MODE" = chain ] && [ -f "${KTA_CHAIN_DIR}/${p}.js" ]; then
    export "KONG_PLUGINSERVER_${var}_QUERY_CMD=${KTA_PLUGINSERVER_CMD} -d ${KTA_CHAIN_QUERY_DIR}/${p} --dump-all-plugins"
    export "KONG_PLUGINSERVER_${var}_SOCKET=${KTA_SOCKET_DIR}/kta-chain.sock"
    if [ -z "$chain_started" ]; then
      export "KONG_PLUGINSERVER_${var}_START_CMD=${KTA_PLUGINSERVER_CMD} -d ${KTA_CHAIN_DIR} -p ${KTA_SOCKET_DIR} --sock-name kta-chain.sock"
      chain_started="$p"
    else
      unset "KONG_PLUGINSERVER_${var}_START_CMD"
    fi
  else
    export "KONG_PLUGINSERVER_${var}_SOCKET=${KTA_SOCKET_DIR}/${p}.sock"
    export "KONG_PLUGINSERVER_${var}_START_CMD=${KTA_PLUGINSERVER_CMD} -d ${dir} -p ${KTA_SOCKET_DIR} --sock-name ${p}.sock"
  fi
  names="${names:+$names,}$p"
done
# Which plugin's entry starts the co-hosted process (Kong's log prefixes its lines with it).
export KTA_CHAIN_STARTER="$chain_started"
export KONG_PLUGINSERVER_NAMES="$names"
export KONG_PLUGINS="bundled${names:+,$names}"
# One `env` directive per name: Kong injects nginx_main_env as `env <value>;`, so the names
# after the first ride in the same value ("A; env B").
main_env=""
for v in $KTA_PLUGINSERVER_ENV; do
  main_env="${main_env:+$main_env; env }$v"
done
export KONG_NGINX_MAIN_ENV="$main_env"
