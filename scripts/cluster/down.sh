#!/usr/bin/env bash
# Stop the one-node test cluster that scripts/cluster/up.sh started (slurmd, slurmctld, munged).
# Packages, configuration and the munge key stay, so the next up.sh is quick. Jobs still queued
# or running are lost. Safe to run when nothing is running.
set -euo pipefail

say() { echo "cluster/down: $*"; }

stop() {  # name, pid file
  local name=$1 pidfile=$2 pid waited=0
  [[ -s $pidfile ]] || return 0
  pid="$(cat "$pidfile")"
  if kill "$pid" 2>/dev/null; then
    say "stopping $name (pid $pid)"
    while kill -0 "$pid" 2>/dev/null && ((waited++ < 30)); do sleep 1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
for pidfile in /run/munge/munged.pid /var/run/munge/munged.pid; do
  [[ -e $pidfile ]] && { stop munged "$pidfile"; break; }
done
say "stopped"
