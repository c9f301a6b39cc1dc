#!/usr/bin/env bash
# A real Redis Cluster for the scale-out tests: Debian's redis-server in cluster mode, six of
# our own processes (never the system service) on 127.0.0.1 — three masters, each with one
# replica — on ports REDIS_CLUSTER_PORT .. REDIS_CLUSTER_PORT+5 (default 7100-7105; each node
# also listens on its cluster bus, port + 10000). Data, logs and pidfiles in
# .run/redis-cluster/<first port>/.
#
#   scripts/services/redis-cluster.sh install|start|stop|status
#
# `start` is idempotent: it (re)starts the nodes that are not running (a node killed by a test
# rejoins with its nodes.conf, as a replica when its replica has taken over), creates the
# cluster when the nodes have never met, waits until every node reports cluster_state:ok with
# all 16384 slots served and every master has an in-sync replica, and prints the URL the plugins and tests take, ready for `eval`:
#   eval "$(scripts/services/redis-cluster.sh start)"   # export REDIS_CLUSTER_URL=...
# `stop` stops the six nodes and removes their state: a cluster keeps no data worth keeping
# (no persistence, like scripts/services/redis.sh), and the next start creates a fresh one.
set -euo pipefail
SERVICE_NAME=redis-cluster
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

FIRST_PORT="${REDIS_CLUSTER_PORT:-7100}"
NODES=6
# How long a master may be unreachable before the others mark it failed and its replica
# takes over. Shorter fails over sooner but risks false failovers on a loaded machine.
NODE_TIMEOUT_MS="${REDIS_CLUSTER_NODE_TIMEOUT_MS:-2000}"
START_TIMEOUT_S="${REDIS_CLUSTER_START_TIMEOUT_S:-60}"
CLUSTER_DIR="${RUN_DIR}/redis-cluster/${FIRST_PORT}"

ports() { seq "$FIRST_PORT" $((FIRST_PORT + NODES - 1)); }
node_dir() { echo "${CLUSTER_DIR}/node-$1"; }
cli() {
  local port="$1"
  shift
  redis-cli -h 127.0.0.1 -p "$port" "$@"
}

install() {
  # Debian's redis-server package brings redis-cli (and its --cluster commands) too.
  "$here/redis.sh" install
}

# The trailing space: redis-server's process title is "redis-server 127.0.0.1:<port> [cluster]",
# so port 710 never matches the node on 7100.
node_pid() {
  local port="$1" pid=""
  [ -f "$(node_dir "$port")/redis.pid" ] && pid="$(cat "$(node_dir "$port")/redis.pid")"
  if pid_matches "$pid" "redis-server 127.0.0.1:${port} "; then echo "$pid"; fi
}

node_up() { [ -n "$(node_pid "$1")" ] && [ "$(cli "$1" ping 2>/dev/null)" = "PONG" ]; }

start_node() {
  local port="$1" dir
  dir="$(node_dir "$port")"
  if port_in_use "$port" || port_in_use $((port + 10000)); then
    die "127.0.0.1:${port} or its bus port $((port + 10000)) is taken by a process this script did not start; stop it or set REDIS_CLUSTER_PORT"
  fi
  mkdir -p "$dir"
  # No persistence (test and cache state); nodes.conf (the node's identity and its view of
  # the cluster) is always written, so a restarted node rejoins the same cluster.
  # cluster-require-full-coverage no: while one master is down and not yet replaced, the
  # other masters go on serving their own slots (their tenants are not the failed one's).
  redis-server --bind 127.0.0.1 --port "$port" --protected-mode yes \
    --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout "$NODE_TIMEOUT_MS" --cluster-require-full-coverage no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" \
    --save '' --appendonly no
}

# True once the node answers CLUSTER INFO with state ok and every slot served.
cluster_ok_on() {
  local info
  info="$(cli "$1" cluster info 2>/dev/null | tr -d '\r')" || return 1
  grep -qx 'cluster_state:ok' <<<"$info" && grep -qx 'cluster_slots_ok:16384' <<<"$info"
}

# True once the node sees three replicas and no failed node, and, if it is a replica itself,
# is in sync with its master (only an in-sync replica may take over from a failed master).
replicas_ready_on() {
  local nodes repl
  nodes="$(cli "$1" cluster nodes 2>/dev/null)" || return 1
  # Field 3 holds the flags: "master", "myself,slave", "master,fail?", ...
  [ "$(awk '$3 ~ /slave/' <<<"$nodes" | wc -l)" -eq $((NODES / 2)) ] || return 1
  [ -z "$(awk '$3 ~ /fail|handshake|noaddr/' <<<"$nodes")" ] || return 1
  repl="$(cli "$1" info replication 2>/dev/null | tr -d '\r')" || return 1
  grep -qx 'role:master' <<<"$repl" || grep -qx 'master_link_status:up' <<<"$repl"
}

all_ok() {
  local port
  for port in $(ports); do
    cluster_ok_on "$port" && replicas_ready_on "$port" || return 1
  done
}

# Every node knows all the others (a fresh node knows only itself).
nodes_met() {
  local port known
  for port in $(ports); do
    known="$(cli "$port" cluster info 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')"
    [ "${known:-0}" -ge "$NODES" ] || return 1
  done
}

print_env() {
  local p0=$FIRST_PORT
  # One seed node in the URL's host, the others as `nodes`: the client discovers the rest
  # from whichever seed answers first (docs/operations.md, "Redis Cluster").
  echo "export REDIS_CLUSTER_URL='redis://127.0.0.1:${p0}?cluster=1&nodes=127.0.0.1:$((p0 + 1)),127.0.0.1:$((p0 + 2))'"
}

start() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    die "redis-server not installed: run '$0 install'"
  local t0 port deadline
  t0="$(now_s)"
  for port in $(ports); do
    if node_up "$port"; then continue; fi
    start_node "$port"
  done
  deadline=$((SECONDS + START_TIMEOUT_S))
  for port in $(ports); do
    until node_up "$port"; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        tail -n 20 "$(node_dir "$port")/redis.log" >&2 || true
        die "node 127.0.0.1:${port} did not answer PING within ${START_TIMEOUT_S}s"
      fi
      sleep 0.1
    done
  done
  if ! nodes_met; then
    local fresh=1
    for port in $(ports); do
      [ "$(cli "$port" dbsize)" = "0" ] || fresh=0
      [ "$(cli "$port" cluster info | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')" = "1" ] || fresh=0
    done
    if [ "$fresh" -eq 1 ]; then
      local addrs=()
      for port in $(ports); do addrs+=("127.0.0.1:${port}"); done
      log "creating the cluster: 3 masters, 1 replica each"
      # Replicas on the same host as their master draw a warning: expected on one machine.
      redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"${CLUSTER_DIR}/create.log" 2>&1 ||
        { cat "${CLUSTER_DIR}/create.log" >&2; die "redis-cli --cluster create failed"; }
    fi
  fi
  until all_ok; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      for port in $(ports); do cli "$port" cluster info 2>/dev/null | grep -E 'cluster_state|slots_ok|known' >&2 || true; done
      die "cluster not ok within ${START_TIMEOUT_S}s (logs: ${CLUSTER_DIR}/node-*/redis.log; '$0 stop' starts over)"
    fi
    sleep 0.2
  done
  log "up on 127.0.0.1:${FIRST_PORT}-$((FIRST_PORT + NODES - 1)) after $(elapsed_since "$t0")s"
  print_env
}

stop() {
  local port pid pids=()
  for port in $(ports); do
    pid="$(node_pid "$port")"
    if [ -n "$pid" ]; then
      kill -TERM "$pid"
      pids+=("$pid")
    fi
  done
  local deadline=$((SECONDS + 10))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        log "pid $pid ignored SIGTERM for 10s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
  done
  rm -rf "$CLUSTER_DIR"
  log "stopped (${#pids[@]} nodes) and removed ${CLUSTER_DIR}"
}

status() {
  local port down=0
  for port in $(ports); do node_up "$port" || down=$((down + 1)); done
  if [ "$down" -eq 0 ] && all_ok; then
    log "healthy: 6 nodes on 127.0.0.1:${FIRST_PORT}-$((FIRST_PORT + NODES - 1)), cluster_state ok"
    print_env
    return 0
  fi
  log "not healthy (${down} of ${NODES} nodes down, or cluster_state not ok)"
  return 1
}

dispatch "$@"
