# Shared helpers for the service scripts (sourced, not run).
# Everything the scripts start lives under <repo>/.run/ (gitignored): data, logs, pidfiles.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUN_DIR="${REPO_ROOT}/.run"

log() { printf '[%s] %s\n' "${SERVICE_NAME:-services}" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# Root on CI; sudo elsewhere (apt needs it).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# A pid is ours only if it is alive and its command line contains the expected marker:
# a pidfile can outlive its process, and the kernel reuses pids.
pid_matches() {
  local pid="$1" marker="$2"
  [ -n "$pid" ] && [ -r "/proc/${pid}/cmdline" ] && tr '\0' ' ' <"/proc/${pid}/cmdline" | grep -qF -- "$marker"
}

port_in_use() {
  local port="$1"
  (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null
}

now_s() { date +%s.%N; }
elapsed_since() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }

# Runs the subcommand in $1 — install, start, stop or status, each a function of the
# sourcing script — or prints the usage.
dispatch() {
  case "${1:-}" in
    install | start | stop | status) "$1" ;;
    *)
      echo "usage: $0 {install|start|stop|status}" >&2
      exit 2
      ;;
  esac
}
