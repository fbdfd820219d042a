#!/usr/bin/env bash
# Starts a local cluster on 127.0.0.1: one scheduler, one seed peer and N peers, each with
# its own ports, configuration and store under DIR. Prints how to use each. Stop it with
# deploy/local/stop.sh (same DIR): it stops exactly the processes started here, by pid.
#
#   deploy/local/start.sh [N=3] [--dir DIR=/tmp/p2pimg-local] [--base-port P=18000] [--tls]
#
# Ports: scheduler gRPC P, scheduler HTTP P+1; peer i (the seed is i=0) data P+10+4i,
# local API P+11+4i, HTTP P+12+4i, registry mirror P+13+4i. Binaries come from
# target/release (built if missing). --tls: mutual TLS as in the Kubernetes manifests, a CA
# and certificates made in DIR/tls (deploy/kubernetes/tls/make-secrets.sh, needs openssl)
# and [tls] in every configuration; the local APIs stay plain on loopback (dfget as without).
set -euo pipefail
N=3; DIR=/tmp/p2pimg-local; BASE=18000; TLS=0
SERVER_NAME=p2pimg.p2pimg.svc   # the DNS name in every certificate, tls.server_name
while (($#)); do
  case $1 in
    --dir) DIR=$2; shift 2 ;;
    --base-port) BASE=$2; shift 2 ;;
    --tls) TLS=1; shift ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) [[ $1 =~ ^[0-9]+$ ]] || { echo "start.sh: unknown argument $1" >&2; exit 2; }; N=$1; shift ;;
  esac
done
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/target/release
if [[ ! -x $BIN/scheduler || ! -x $BIN/peerd || ! -x $BIN/dfget ]]; then
  (cd "$ROOT" && cargo build --release -p sched -p peer --bins)
fi
if [[ -s $DIR/pids ]]; then
  echo "start.sh: $DIR/pids exists: a cluster may be running; run deploy/local/stop.sh --dir $DIR first" >&2
  exit 1
fi
mkdir -p "$DIR"
: >"$DIR/pids"

SCHEME=http
tls_table() { :; }
if ((TLS)); then
  "$ROOT/deploy/kubernetes/tls/make-secrets.sh" --out "$DIR/tls" --server-name "$SERVER_NAME" \
    >/dev/null 2>"$DIR/tls.log" || { cat "$DIR/tls.log" >&2; exit 1; }
  SCHEME=https
  tls_table() { # component: scheduler, seed or peer
    cat <<TOML
[tls]
cert_file = "$DIR/tls/$1.crt"
key_file = "$DIR/tls/$1.key"
ca_file = "$DIR/tls/ca.crt"
server_name = "$SERVER_NAME"
TOML
  }
fi

wait_ready() { # name, log, pattern
  for _ in $(seq 1 100); do
    grep -q "$3" "$2" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "start.sh: $1 did not start; see $2" >&2
  tail -5 "$2" >&2
  exit 1
}

cat >"$DIR/scheduler.toml" <<TOML
[listen]
grpc = "127.0.0.1:$BASE"
http = "127.0.0.1:$((BASE + 1))"
$(tls_table scheduler)
TOML
"$BIN/scheduler" --config "$DIR/scheduler.toml" >"$DIR/scheduler.log" 2>&1 &
echo "$! scheduler $DIR/scheduler.toml" >>"$DIR/pids"
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$((BASE + 1))/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

for i in $(seq 0 "$N"); do
  if ((i == 0)); then name=seed; kind=seed; cert=seed; else name=peer$i; kind=normal; cert=peer; fi
  p=$((BASE + 10 + 4 * i))
  cat >"$DIR/$name.toml" <<TOML
[host]
id = "$name"
kind = "$kind"
[listen]
data = "127.0.0.1:$p"
local_api = "127.0.0.1:$((p + 1))"
http = "127.0.0.1:$((p + 2))"
mirror = "127.0.0.1:$((p + 3))"
$( ((i == 0)) && echo "resolver = \"127.0.0.1:$((BASE + 2))\"")
[scheduler]
addresses = ["$SCHEME://127.0.0.1:$BASE"]
[storage]
dir = "$DIR/$name-store"
quota_bytes = 21474836480
# A local cluster fetches from origins on this machine: allow loopback (refused by default).
[origin]
allowed_networks = ["127.0.0.0/8"]
$(tls_table "$cert")
TOML
  "$BIN/peerd" --config "$DIR/$name.toml" >"$DIR/$name.out" 2>"$DIR/$name.log" &
  echo "$! $name $DIR/$name.toml" >>"$DIR/pids"
  wait_ready "$name" "$DIR/$name.out" "peerd ready"
done

echo "local cluster in $DIR (logs *.log, configs *.toml):"
echo "  scheduler  gRPC 127.0.0.1:$BASE   metrics http://127.0.0.1:$((BASE + 1))/metrics"
((TLS)) && echo "  mutual TLS on gRPC and the data ports: CA and certificates in $DIR/tls (DNS:$SERVER_NAME)"
for i in $(seq 0 "$N"); do
  if ((i == 0)); then name=seed; else name=peer$i; fi
  p=$((BASE + 10 + 4 * i))
  echo "  $name  data 127.0.0.1:$p  metrics http://127.0.0.1:$((p + 2))/metrics  registry mirror http://127.0.0.1:$((p + 3))"
  ((i > 0)) && echo "      $BIN/dfget URL -O FILE --daemon 127.0.0.1:$((p + 1))"
done
echo "stop: deploy/local/stop.sh --dir $DIR"
