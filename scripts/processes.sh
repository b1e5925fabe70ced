# Ending processes, for scripts/ray_cluster.sh and scripts/slurm_cluster.sh (sourced by both).

# Whether a process runs. A zombie has ended: it only waits for its parent to collect it, which
# on some machines takes a while.
running() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $stat != Z* ]]
}

# The processes among "$@" that still run.
still_running() {
  local pid
  for pid in "$@"; do
    if running "$pid"; then echo "$pid"; fi
  done
}

# end_processes SECONDS PID...: SIGTERM to the processes, then SIGKILL to those still running
# after SECONDS (as `ray stop` and systemd do).
end_processes() {
  local seconds=$1
  shift
  [[ $# -eq 0 ]] && return
  kill -TERM "$@" 2>/dev/null || true
  for _ in $(seq $((seconds * 2))); do
    [[ -z $(still_running "$@") ]] && return
    sleep 0.5
  done
  kill -KILL $(still_running "$@") 2>/dev/null || true
}
