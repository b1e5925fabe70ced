#!/usr/bin/env bash
# A two-node Ray cluster on this machine, for the tests that run real Ray jobs (pytest marker
# `ray`) and for trying hydra/launcher=ray_cluster before using a real cluster: a head node and a
# worker node, each a `ray start` of its own with RAY_CLUSTER_CPUS declared CPUs (default 2).
#
#   scripts/ray_cluster.sh start        # start the nodes that are not running; print the cluster
#   scripts/ray_cluster.sh status       # ray status
#   scripts/ray_cluster.sh address      # the head's address, for hydra.launcher.ray.init.address
#   scripts/ray_cluster.sh kill-worker  # SIGKILL the worker node's processes: a lost node (spot preemption)
#   scripts/ray_cluster.sh stop         # stop both nodes and remove what only they used
#
# Each node's processes run in a process group of their own (setsid), so that kill-worker and
# stop end this cluster's processes and no other Ray on the machine; `start` after kill-worker
# brings the worker node back. The head listens on 127.0.0.1:$RAY_CLUSTER_PORT (default 6390, not
# Ray's 6379, to leave a cluster of your own alone), its dashboard (which Ray's state API, and so
# the launcher's progress lines, need) on $RAY_CLUSTER_DASHBOARD_PORT (8266), its Ray client server
# (ray://<this machine's address>:...) on $RAY_CLUSTER_CLIENT_PORT (6392). Node logs and process
# group ids are in $RAY_CLUSTER_DIR (default /var/tmp/resnet-cifar-ray). Needs Ray:
# pip install -e '.[ray]'.
#
# `stop` ends the nodes as `ray stop` does (SIGTERM, then SIGKILL for what still runs 5 s later),
# with their jobs' processes, and removes the files only this cluster used: its files in
# $RAY_CLUSTER_DIR, the head's session folder in Ray's temp folder (/tmp/ray, or $RAY_TMPDIR/ray)
# and that folder's record of the head (ray_current_cluster; left there, it would make a plain
# ray.init() on this machine try to join the stopped head instead of starting a Ray of its own).
# Records and sessions of other Ray clusters stay.
set -euo pipefail
STATE=${RAY_CLUSTER_DIR:-/var/tmp/resnet-cifar-ray}
PORT=${RAY_CLUSTER_PORT:-6390}
DASHBOARD_PORT=${RAY_CLUSTER_DASHBOARD_PORT:-8266}
CPUS=${RAY_CLUSTER_CPUS:-2}
WORKER_NODE_MANAGER_PORT=${RAY_CLUSTER_WORKER_PORT:-6391}
CLIENT_PORT=${RAY_CLUSTER_CLIENT_PORT:-6392}
ADDRESS=127.0.0.1:$PORT
# A local test cluster on 127.0.0.1 without token authentication: where ~/.ray/auth_token exists
# (left by another Ray on the machine) Ray would otherwise enable it for the head alone, and the
# worker node could not join.
export RAY_AUTH_MODE=disabled
# Small object stores: jobs exchange only their configs and results.
OBJECT_STORE_BYTES=100000000
command -v ray >/dev/null || { echo "error: ray is not installed: pip install -e '.[ray]'" >&2; exit 1; }
source "$(dirname "$0")/processes.sh"

# The process group of a node, if its processes run: the head's GCS server or the worker's raylet.
group_of() {
  local pattern
  case "$1" in
    head) pattern="gcs_server.*--gcs_server_port=$PORT( |$)" ;;
    worker) pattern="raylet.*--node_manager_port=$WORKER_NODE_MANAGER_PORT( |$)" ;;
  esac
  local pid
  pid=$(pgrep -f -- "$pattern" | head -1 || true)
  if [[ -n $pid ]]; then
    ps -o pgid= -p "$pid" | tr -d ' ' || true
  fi
}

start_node() {
  local node=$1
  shift
  if [[ -n $(group_of "$node") ]]; then
    return
  fi
  echo "starting the $node node ($CPUS CPUs)"
  # setsid: the node's processes in a new process group, which kill-worker and stop end.
  if ! setsid ray start "$@" --node-ip-address=127.0.0.1 --num-cpus="$CPUS" --object-store-memory=$OBJECT_STORE_BYTES \
      --disable-usage-stats >"$STATE/$node.log" 2>&1; then
    echo "error: the $node node did not start; its log follows" >&2
    tail -n 30 "$STATE/$node.log" >&2
    exit 1
  fi
  group_of "$node" >"$STATE/$node.pgid"
}

# The value of --NAME=... in the arguments of the head's processes.
head_argument() {
  local group
  group=$(group_of head)
  [[ -z $group ]] && return
  pgrep -a -g "$group" | grep -o -m1 -- "--$1=[^ ]*" | cut -d= -f2- || true
}

# Where the head keeps its files (session-dir) and the address it records there for ray.init()
# (gcs-address): what `stop` removes, known even when the head has died before it.
remember_head() {
  local name
  for name in session-dir gcs-address; do
    head_argument "$name" >"$STATE/head.$name"
  done
}

# What remember_head recorded, or else (a head started by an earlier version of this script) the
# running head's argument.
head_record() {
  if [[ -s $STATE/head.$1 ]]; then
    cat "$STATE/head.$1"
  else
    head_argument "$1"
  fi
}

wait_for_nodes() {
  local active=0
  for _ in $(seq 60); do
    # `ray status` lists the live nodes under "Active:", one " 1 node_<id>" line each.
    active=$(ray status --address="$ADDRESS" 2>/dev/null | sed -n '/^Active:/,/^Pending:/p' | grep -c ' node_' || true)
    if [[ $active -ge 2 ]]; then
      ray status --address="$ADDRESS" | sed -n '/^Resources/,$p'
      return
    fi
    sleep 1
  done
  echo "error: the cluster at $ADDRESS shows $active live nodes, not 2, after 60 s; node logs follow" >&2
  tail -n 20 "$STATE"/*.log >&2
  exit 1
}

descendants() {
  local child
  for child in $(pgrep -P "$1" || true); do
    echo "$child"
    descendants "$child"
  done
}

# The node's process group: found by its processes, or else as start recorded it.
node_group() {
  local group
  group=$(group_of "$1")
  [[ -z $group ]] && group=$(cat "$STATE/$1.pgid" 2>/dev/null || true)
  echo "$group"
}

# The processes of a node's group ($1), those named $2 (pgrep -x) if given.
members() {
  local group
  group=$(node_group "$1")
  if [[ -n $group ]]; then pgrep -g "$group" ${2:+-x "$2"} || true; fi
}

# A node's task processes, which left its process group (Ray starts each in a session of its
# own), and their children (a DDP job's processes): everything below the node's raylet.
tasks() {
  local raylet
  for raylet in $(members "$1" raylet); do
    descendants "$raylet"
  done
}

# The files only the stopped cluster used. The head's session folder and the temp folder's
# pointers to it go only where they are this head's: ray_current_cluster names the address
# that another `ray start --head` may since have written there.
forget_cluster() {
  local session=$1 address=$2 temp
  if [[ $(basename -- "$session") == session_* && -d $session ]]; then
    temp=$(dirname -- "$session")
    rm -rf -- "$session"
    [[ $(readlink -- "$temp/session_latest" || true) == "$session" ]] && rm -f -- "$temp/session_latest"
    [[ -n $address && $(cat "$temp/ray_current_cluster" 2>/dev/null || true) == "$address" ]] \
      && rm -f -- "$temp/ray_current_cluster"
    # With no other session there, the head's list of metrics endpoints is the last of its files.
    if ! compgen -G "$temp/session_*" >/dev/null; then
      rm -f -- "$temp/prom_metrics_service_discovery.json"
      rmdir -- "$temp" 2>/dev/null || true
    fi
  fi
  rm -rf -- "$STATE/worker"
  rm -f -- "$STATE"/{head,worker}.{pgid,log} "$STATE"/head.{session-dir,gcs-address}
  rmdir -- "$STATE" 2>/dev/null || true
}

case "${1:-}" in
  start)
    mkdir -p "$STATE"
    start_node head --head --port="$PORT" --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD_PORT" \
      --ray-client-server-port="$CLIENT_PORT"
    remember_head
    # A temp directory of its own: each node's log monitor then forwards its own workers' output
    # to the sweep (sharing the head's, both would, and every line would show twice).
    start_node worker --address="$ADDRESS" --node-manager-port="$WORKER_NODE_MANAGER_PORT" --temp-dir="$STATE/worker"
    wait_for_nodes
    ;;
  status) ray status --address="$ADDRESS" ;;
  address) echo "$ADDRESS" ;;
  kill-worker)
    # What a reclaimed spot instance does to its processes: none of them gets to clean up.
    below=$(tasks worker)
    group=$(node_group worker)
    [[ -n $group ]] && kill -KILL -- "-$group" 2>/dev/null || true
    [[ -n $below ]] && kill -KILL $below 2>/dev/null || true
    ;;
  stop)
    session=$(head_record session-dir)
    address=$(head_record gcs-address)
    gcs=$(members head gcs_server)
    below="$(tasks worker) $(tasks head)"
    # In `ray stop`'s order: the raylets (which end their workers) first, the GCS server last.
    end_processes 5 $(members worker raylet) $(members head raylet)
    end_processes 5 $(members worker) $(members head | grep -vxF -- "$gcs" || true) $below
    end_processes 5 $gcs
    forget_cluster "$session" "$address"
    ;;
  *) echo "usage: $0 start|status|address|kill-worker|stop" >&2; exit 2 ;;
esac
