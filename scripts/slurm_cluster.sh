#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests that submit real jobs (pytest marker
# `slurm`) and for trying hydra/launcher=slurm before using a real cluster.
#
#   scripts/slurm_cluster.sh start    # install Debian's slurm-wlm and munge if missing, start it
#   scripts/slurm_cluster.sh status   # sinfo
#   scripts/slurm_cluster.sh stop     # stop slurmd, slurmctld and munged
#
# Needs root (it writes /etc/slurm/slurm.conf and starts the daemons as root). One node, this
# machine, with all its CPUs and memory, in one partition `debug`; no accounting database.
# It refuses to replace a /etc/slurm/slurm.conf that it did not write. State and daemon logs
# are in $SLURM_CLUSTER_DIR (default /var/tmp/resnet-cifar-slurm). $SLURM_CLUSTER_CPUS declares
# more CPUs than the machine has (the tests use 4 on 2 cores, so that a job waiting for its time
# limit does not hold the others back). Exits non-zero when the node is not idle within 60 s,
# printing the daemons' logs.
set -euo pipefail
if [[ $EUID -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "error: $0 needs root (it installs packages and starts SLURM's daemons); run it as root" >&2; exit 1; }
  exec sudo --preserve-env=SLURM_CLUSTER_DIR,SLURM_CLUSTER_CPUS "$0" "$@"
fi
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

start_munge() {
  if pgrep -x munged >/dev/null; then return; fi
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

stop() {
  for daemon in slurmd slurmctld; do
    local pidfile="$STATE/$daemon.pid"
    if [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      kill "$(cat "$pidfile")"
    fi
  done
  for _ in $(seq 20); do
    [[ -s $STATE/slurmctld.pid ]] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null || break
    sleep 0.5
  done
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
