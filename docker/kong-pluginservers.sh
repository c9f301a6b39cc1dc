#!/bin/sh
# The one generator of Kong's plugin-server settings, used by the compose stack (sourced by its
# entrypoint) and by the project's real-Kong runner (kong-runner/, for tests and `npm start`).
# Kong 3.9 runs one plugin per plugin server (kong/runloop/plugin_servers/process.lua takes the
# first plugin of --dump-all-plugins), so every plugin-server directory gets its own trio
# KONG_PLUGINSERVER_<NAME>_{SOCKET,START_CMD,QUERY_CMD}; a '-' in the name becomes '_'.
#
# Inputs (environment; defaults are the compose image's layout):
#   KTA_PLUGINSERVER_DIRS  space-separated plugin-server directories (default: every directory
#                          under /opt/kta/dist/pluginservers); the plugin name is the basename
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
if [ -z "${KTA_PLUGINSERVER_DIRS:-}" ]; then
  for d in /opt/kta/dist/pluginservers/*/; do
    [ -d "$d" ] && KTA_PLUGINSERVER_DIRS="${KTA_PLUGINSERVER_DIRS:+$KTA_PLUGINSERVER_DIRS }${d%/}"
  done
fi
names=""
for dir in $KTA_PLUGINSERVER_DIRS; do
  p=$(basename "$dir")
  var=$(echo "$p" | tr 'a-z-' 'A-Z_')
  export "KONG_PLUGINSERVER_${var}_SOCKET=${KTA_SOCKET_DIR}/${p}.sock"
  export "KONG_PLUGINSERVER_${var}_START_CMD=${KTA_PLUGINSERVER_CMD} -d ${dir} -p ${KTA_SOCKET_DIR} --sock-name ${p}.sock"
  export "KONG_PLUGINSERVER_${var}_QUERY_CMD=${KTA_PLUGINSERVER_CMD} -d ${dir} --dump-all-plugins"
  names="${names:+$names,}$p"
done
export KONG_PLUGINSERVER_NAMES="$names"
export KONG_PLUGINS="bundled${names:+,$names}"
# One `env` directive per name: Kong injects nginx_main_env as `env <value>;`, so the names
# after the first ride in the same value ("A; env B").
main_env=""
for v in $KTA_PLUGINSERVER_ENV; do
  main_env="${main_env:+$main_env; env }$v"
done
export KONG_NGINX_MAIN_ENV="$main_env"
