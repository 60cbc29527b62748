#!/usr/bin/env bash
# A one-node SLURM cluster on 127.0.0.1 for the tests (tests/cluster/) and for trying the cluster
# path on one machine: munged, slurmctld and slurmd from Debian's packages, partition `debug`,
# a few CPU slots, no accounting daemon. Idempotent: run it again at any time; when the cluster
# is already up it only checks it (about 0.1 s); a changed configuration restarts the daemons.
# Needs root and Debian/Ubuntu (apt-get).
#
#   scripts/cluster/up.sh          # install when missing, configure, start, wait for the node
#   scripts/cluster/down.sh        # stop the daemons (the configuration and packages stay)
#
# Settings (environment):
#   EMOEXP_SLURM_CPUS   CPU slots of the node (default 4; more than the machine has is fine:
#                       the jobs of the tests are tiny and one-thread)
#   EMOEXP_SLURM_WAIT_S how long to wait for the node to be idle (default 60)
set -euo pipefail

CPUS="${EMOEXP_SLURM_CPUS:-4}"
CONF=/etc/slurm/slurm.conf  # where sinfo, sbatch and the daemons look for it
NODE="$(hostname -s)"
# memory the jobs may ask for (--mem): 90% of the machine's, in MB
MEM_MB="$(awk '/^MemTotal:/ {print int($2 * 0.9 / 1024)}' /proc/meminfo)"
LOGS=/var/log/slurm
WAIT_S="${EMOEXP_SLURM_WAIT_S:-60}"
CHANGED=0

say() { echo "cluster/up: $*"; }
die() { echo "cluster/up: error: $*" >&2; exit 1; }

node_state() { sinfo --noheader --nodes="$NODE" --format=%t 2>/dev/null | head -n1 | tr -d '*~#' || true; }

install_packages() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurmctld)
  command -v slurmd >/dev/null || missing+=(slurmd)
  command -v sbatch >/dev/null || missing+=(slurm-client)
  command -v munged >/dev/null || missing+=(munge)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  command -v apt-get >/dev/null || die "slurm is not installed and apt-get is missing: install ${missing[*]}"
  say "installing ${missing[*]} (apt-get)"
  # Debian's maintainer scripts would start the daemons with the default configuration: not now.
  local policy=/usr/sbin/policy-rc.d created=0
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  local status=$?
  [[ $created == 1 ]] && rm -f "$policy"
  return $status
}

config_text() {
  cat <<EOF
# written by emoexp scripts/cluster/up.sh: one node on 127.0.0.1, no accounting
ClusterName=emoexp
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=${LOGS}/slurmctld.log
SlurmdLogFile=${LOGS}/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=60
KillWait=30
MinJobAge=600
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

write_config() {
  mkdir -p "$(dirname "$CONF")" /var/spool/slurmctld /var/spool/slurmd "$LOGS"
  local wanted
  wanted="$(config_text)"
  if [[ ! -f "$CONF" ]] || [[ "$(cat "$CONF")" != "$wanted" ]]; then
    say "writing $CONF (node $NODE, $CPUS CPU slots, partition debug)"
    printf '%s\n' "$wanted" >"$CONF"
    CHANGED=1
  fi
}

start_munge() {
  if [[ ! -s /etc/munge/munge.key ]]; then
    say "generating /etc/munge/munge.key"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then mungekey --create --force >/dev/null
    else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none; fi
  fi
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  chmod 0400 /etc/munge/munge.key
  if ! munge -n >/dev/null 2>&1; then
    say "starting munged"
    if id munge >/dev/null 2>&1; then
      su -s /bin/sh munge -c "munged --force" 9>&- || munged --force 9>&-
    else
      munged --force 9>&-
    fi
    munge -n >/dev/null 2>&1 || die "munged does not answer (see /var/log/munge/munged.log)"
  fi
}

start_daemon() {  # name, pid file
  local name=$1 pidfile=$2
  if [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    [[ $CHANGED == 0 ]] && return 0
    say "restarting $name (new configuration)"
    local pid waited=0
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((waited++ < 30)); do sleep 1; done
  fi
  say "starting $name"
  "$name" -f "$CONF" 9>&- || die "$name did not start (see $LOGS/$name.log)"
}

if command -v sinfo >/dev/null && [[ -f "$CONF" ]] && [[ "$(cat "$CONF")" == "$(config_text)" ]] \
  && [[ "$(node_state)" =~ ^(idle|mix|alloc)$ ]]; then
  say "already up: node $NODE is $(node_state) in partition debug"
  exit 0
fi
[[ "$(id -u)" == 0 ]] || die "must run as root (installs packages, starts daemons); run it with sudo"
# one bring-up at a time (two test sessions starting together must not start two controllers)
exec 9>/run/emoexp-cluster-up.lock
flock --timeout 900 9 || die "another scripts/cluster/up.sh holds /run/emoexp-cluster-up.lock"

install_packages || die "apt-get could not install the slurm packages"
write_config
start_munge
start_daemon slurmctld /run/slurmctld.pid
start_daemon slurmd /run/slurmd.pid

deadline=$((SECONDS + WAIT_S))
while ((SECONDS < deadline)); do
  state="$(node_state)"
  case "$state" in
    idle|mix|alloc) say "up: node $NODE is $state in partition debug ($CPUS CPU slots)"; exit 0 ;;
    down|drain|drng|fail) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 1
done
tail -n 20 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 || true
die "node $NODE is not idle after ${WAIT_S} s (state: ${state:-none})"
