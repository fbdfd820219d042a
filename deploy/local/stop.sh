#!/usr/bin/env bash
# Stops the local cluster that deploy/local/start.sh started in DIR: each pid it recorded,
# only if that pid still runs the binary with the configuration it was started with.
#
#   deploy/local/stop.sh [--dir DIR=/tmp/p2pimg-local] [--wipe]   (--wipe also deletes DIR)
set -euo pipefail
DIR=/tmp/p2pimg-local; WIPE=0
while (($#)); do
  case $1 in
    --dir) DIR=$2; shift 2 ;;
    --wipe) WIPE=1; shift ;;
    -h|--help) sed -n 2,6p "$0"; exit 0 ;;
    *) echo "stop.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -f $DIR/pids ]] || { echo "stop.sh: no cluster recorded in $DIR"; exit 0; }
# Peers first (they tell the scheduler they leave), the scheduler last.
tac "$DIR/pids" | while read -r pid name config; do
  if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$config"; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "stopped $name (pid $pid)"
  else
    echo "$name (pid $pid) is not running"
  fi
done
rm -f "$DIR/pids"
((WIPE)) && rm -rf "$DIR" && echo "deleted $DIR"
exit 0
