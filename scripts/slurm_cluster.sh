#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests that submit real jobs (pytest marker
# `slurm`) and for trying hydra/launcher=slurm before using a real cluster.
#
#   scripts/slurm_cluster.sh start    # install Debian's slurm-wlm and munge if missing, start it
#   scripts/slurm_cluster.sh status   # sinfo
#   scripts/slurm_cluster.sh stop     # cancel its jobs, stop what start started, remove its files
#
# Needs root (it writes /etc/slurm/slurm.conf and starts the daemons as root). One node, this
# machine, with all its CPUs and memory, in one partition `debug`; no accounting database.
# It refuses to replace a /etc/slurm/slurm.conf that it did not write. State and daemon logs
# are in $SLURM_CLUSTER_DIR (default /var/tmp/resnet-cifar-slurm). $SLURM_CLUSTER_CPUS declares
# more CPUs than the machine has (the tests use 4 on 2 cores, so that a job waiting for its time
# limit does not hold the others back). Exits non-zero when the node is not idle within 60 s,
# printing the daemons' logs.
#
# `stop` cancels the cluster's jobs (their processes would outlive slurmd), ends slurmd and
# slurmctld, and munged where `start` started it (a munged that already ran stays), each with
# SIGTERM and then SIGKILL if it still runs 10 s later; then it removes the slurm.conf it wrote
# and its files in $SLURM_CLUSTER_DIR. The packages it installed stay installed.
set -euo pipefail
if [[ $EUID -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "error: $0 needs root (it installs packages and starts SLURM's daemons); run it as root" >&2; exit 1; }
  exec sudo --preserve-env=SLURM_CLUSTER_DIR,SLURM_CLUSTER_CPUS "$0" "$@"
fi
source "$(dirname "$0")/processes.sh"
STATE=${SLURM_CLUSTER_DIR:-/var/tmp/resnet-cifar-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by resnet-cifar scripts/slurm_cluster.sh"

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    return
  fi
  echo "installing slurm-wlm and munge (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_conf() {
  if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
    echo "error: $CONF exists and was not written by this script; it may be a real cluster's: stop it or remove the file" >&2
    exit 1
  fi
  local host cpus memory_mb
  host=$(hostname -s)
  cpus=${SLURM_CLUSTER_CPUS:-$(nproc)}
  memory_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d"
  cat >"$CONF" <<CONF
$MARK
ClusterName=resnet-cifar-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
# The node is what this file says (SLURM_CLUSTER_CPUS may declare more CPUs than there are).
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Finished jobs stay visible to squeue/scontrol for 5 minutes; cancelled or timed-out jobs
# get 5 s between SIGTERM and SIGKILL.
MinJobAge=300
KillWait=5
SchedulerParameters=sched_interval=2
NodeName=$host CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

# A process's pid and start time: which process it is (a pid alone may since name another).
identity() {
  echo "$1 $(ps -o lstart= -p "$1" 2>/dev/null)"
}

start_munge() {
  if pgrep -x munged >/dev/null; then return; fi  # the machine's own munged, which stop leaves alone
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  [[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null \
    || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  chmod 0400 /etc/munge/munge.key
  if id munge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
  else
    /usr/sbin/munged --force
  fi
  local pid
  pid=$(pgrep -x -n munged || true)
  if [[ -n $pid ]]; then identity "$pid" >"$STATE/munged.started"; fi
}

wait_idle() {
  local state=""
  for _ in $(seq 60); do
    state=$(sinfo -h -N -o %t 2>/dev/null | head -1 || true)
    if [[ $state == idle ]]; then
      sinfo
      return 0
    fi
    sleep 1
  done
  echo "error: the SLURM node is not idle after 60 s (state: '${state:-no answer}'); daemon logs follow" >&2
  tail -n 20 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 || true
  return 1
}

# The daemon whose pid file is $STATE/$1.pid, if it runs.
daemon_pid() {
  local pid
  pid=$(cat "$STATE/$1.pid" 2>/dev/null || true)
  if [[ -n $pid && $(ps -o comm= -p "$pid" 2>/dev/null) == "$1" ]]; then echo "$pid"; fi
}

# The running jobs' processes (slurmstepd and what it started) are not slurmd's children and
# would run on without it: cancel every job and wait until the controller has seen them end.
cancel_jobs() {
  local jobs
  [[ -z $(daemon_pid slurmctld) ]] && return
  jobs=$(squeue --noheader --format=%A 2>/dev/null || true)
  [[ -z $jobs ]] && return
  scancel $jobs 2>/dev/null || true
  for _ in $(seq 60); do
    [[ -z $(squeue --noheader --format=%A 2>/dev/null || true) ]] && return
    sleep 0.5
  done
}

stop() {
  cancel_jobs
  end_processes 10 $(daemon_pid slurmd) $(daemon_pid slurmctld)
  local started
  started=$(cat "$STATE/munged.started" 2>/dev/null || true)
  if [[ -n $started && $(identity "${started%% *}") == "$started" ]]; then
    end_processes 10 "${started%% *}"
  fi
  if [[ -f $CONF ]] && grep -qF "$MARK" "$CONF"; then rm -f "$CONF"; fi
  rm -rf "$STATE/ctld" "$STATE/d"
  rm -f "$STATE"/{slurmctld,slurmd}.{pid,log} "$STATE/munged.started"
  rmdir "$STATE" 2>/dev/null || true
}

case "${1:-}" in
  start)
    install_packages
    write_conf
    start_munge
    if scontrol ping 2>/dev/null | grep -q UP; then
      scontrol reconfigure  # this slurm.conf, also for daemons started earlier
    else
      # -c: a fresh controller state (no jobs left from an earlier session)
      slurmctld -c
    fi
    if ! { [[ -s $STATE/slurmd.pid ]] && kill -0 "$(cat "$STATE/slurmd.pid")" 2>/dev/null; }; then
      slurmd
    fi
    wait_idle
    ;;
  stop) stop ;;
  status) sinfo ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
