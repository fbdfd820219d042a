#!/usr/bin/env bash
# netns_fanout.sh -- N "pods" in network namespaces pull the generated test image at once, either
# straight from the registry (direct) or each through its own peer daemon's registry mirror (p2p);
# reports wall time per pod and for all, registry egress bytes and CPU use.
#
# Layout (all addresses exist only inside namespaces this script creates; none has a default
# route, and nothing here ever talks to 198.18.x from the root namespace):
#   pf-sw        bridge br0 only
#   pf-reg       registry, 198.18.0.2:5000, link shaped to REG_RATE both ways
#   pf-infra     scheduler (grpc :8002, http :8000) + seed peer (p2p mode), 198.18.0.3, SEED_RATE
#   pf-seed2     a second seed peer when SEEDS=2, 198.18.0.4, SEED_RATE
#   pf-podI      pod I (1..PODS), 198.18.1.I, POD_RATE; its peerd mirror on 127.0.0.1:65001
# Shaping: tbf on eth0 in the host namespace (egress) and on its bridge port (ingress).
#
# Usage:  bench/netns_fanout.sh direct|p2p|both [CLIENT]     CLIENT: skopeo (default) | containerd
#         bench/netns_fanout.sh down                          remove leftovers of a killed run
# Env:    PODS=8 POD_RATE=100mbit REG_RATE=200mbit SEED_RATE=200mbit SEEDS=1 LAYERS_MIB=48,64,80
#         RUN_TIMEOUT_S=900 (per mode; clients are killed after it)  WORK=/tmp/p2pimg-fanout
#         BIN_DIR=$CARGO_TARGET_DIR/release (e2e-oci-push; peerd and scheduler for p2p)
#         PEER_EXTRA_TOML=FILE  appended to every peerd config (e.g. the mirror's registry allow list,
#                               or the [peer] table a scenario runs)
#         PEER_MIRROR_KEYS=FILE  lines added to the [mirror] table this script writes (keys only,
#                               e.g. tag_ttl_ms = 0: sim fidelity-plan's peer-mirror.toml)
#         PEER_LOG_FILTER=info  every peerd's log filter; `info,piece_trace=debug` logs each piece
#                               request, arrival and parent piece-map update (bench/piece_trace.py)
#         SCHEDULER_EXTRA_TOML=FILE  the scheduler's [scheduler] table (default: policy = "default")
#         MIRROR_CMD='...'      p2p without peerd: a stand-in mirror started in every pod instead
#                               ({UPSTREAM} = http://198.18.0.2:5000, {LOG} = a per-pod log path);
#                               it must listen on 127.0.0.1:65001
# Output: lines starting "fanout_pod" (one per pod) and "fanout_result" (one per mode), also
#         appended to $WORK/results.tsv. Needs root, iproute2, docker-registry, skopeo or
#         containerd (tests/setup.sh), and `cargo build --release -p e2e --bin e2e-oci-push`
#         (plus `-p peer -p sched` for p2p).
set -euo pipefail

PODS=${PODS:-8}; POD_RATE=${POD_RATE:-100mbit}; REG_RATE=${REG_RATE:-200mbit}; SEED_RATE=${SEED_RATE:-200mbit}
SEEDS=${SEEDS:-1}; LAYERS_MIB=${LAYERS_MIB:-48,64,80}; RUN_TIMEOUT_S=${RUN_TIMEOUT_S:-900}; WORK=${WORK:-/tmp/p2pimg-fanout}
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}/release}
REG_IP=198.18.0.2; INFRA_IP=198.18.0.3; SEED2_IP=198.18.0.4; REPO=bench/img
IMAGE_REF=$REG_IP:5000/$REPO:latest
NS_PREFIX=pf-
PIDS_FILE=$WORK/pids
SEED_PIDS=()     # the seed peers' peerd among them (their CPU is also reported apart)
DAEMON_PIDS=()   # daemons of the current mode (containerd per pod, peerd, scheduler): CPU counted, stopped after
REG_PID=

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
pod_ip() { echo "198.18.1.$1"; }

# --- processes: every one we start is recorded (pid + a cmdline marker) and stopped by pid ---
# bg NS NAME LOG CMD... : run CMD inside namespace NS, in the background, own session
bg() {
  local ns=$1 name=$2 logf=$3; shift 3
  ip netns exec "$ns" setsid "$@" >"$logf" 2>&1 </dev/null &
  local pid=$!
  echo "$pid $name $1" >>"$PIDS_FILE"
  echo "$pid"
}

stop_pid() {  # stop_pid PID MARKER: SIGTERM if its cmdline still has MARKER, SIGKILL after 5 s
  local pid=$1 marker=$2 i
  [[ -r /proc/$pid/cmdline ]] || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$marker" || return 0
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do [[ -d /proc/$pid ]] || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

stop_recorded() {  # stop_recorded PID: with the marker recorded when it was started
  local marker; marker=$(awk -v p="$1" '$1==p{print $3}' "$PIDS_FILE" | tail -1)
  [[ -z $marker ]] || stop_pid "$1" "$marker"
}

stop_all() {
  [[ -f $PIDS_FILE ]] || return 0
  local pid name marker
  # newest first: clients, then peers, then the registry
  tac "$PIDS_FILE" | while read -r pid name marker; do stop_pid "$pid" "$marker"; done
  rm -f "$PIDS_FILE"
}

net_down() {
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^${NS_PREFIX}(sw|reg|infra|seed2|pod[0-9]+)$" || true); do
    ip netns del "$ns"
  done
}

cleanup() {
  stop_all
  net_down
  rm -rf "$WORK"/pod*/out "$WORK"/pod*/ctrd/root "$WORK"/pod*/peer-store "$WORK"/infra/seed-store "$WORK"/seed2/seed-store
}

# --- network ---
burst_bytes() {  # >= 256 KiB and >= 2 ms at the rate
  local r=$1 n bps
  n=${r%%[kmg]bit}; n=${n%bit}
  case $r in *kbit) bps=$((n * 1000));; *mbit) bps=$((n * 1000000));; *gbit) bps=$((n * 1000000000));; *) bps=$n;; esac
  local b=$((bps / 8 / 500)); ((b > 262144)) || b=262144; echo "$b"
}

shape() {  # shape NS DEV RATE
  tc -n "$1" qdisc replace dev "$2" root handle 1: tbf rate "$3" burst "$(burst_bytes "$3")" latency 20ms
}

add_host() {  # add_host NS IP RATE SWITCH_PORT
  local ns=$1 addr=$2 rate=$3 port=$4
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip link add eth0 netns "$ns" type veth peer name "$port" netns "${NS_PREFIX}sw"
  ip -n "$ns" addr add "$addr/16" dev eth0
  ip -n "${NS_PREFIX}sw" link set "$port" master br0
  ip -n "$ns" link set eth0 up
  ip -n "${NS_PREFIX}sw" link set "$port" up
  shape "$ns" eth0 "$rate"
  shape "${NS_PREFIX}sw" "$port" "$rate"
}

net_up() {
  net_down
  ip netns add "${NS_PREFIX}sw"
  ip -n "${NS_PREFIX}sw" link set lo up
  ip netns exec "${NS_PREFIX}sw" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "${NS_PREFIX}sw" link add br0 type bridge
  ip -n "${NS_PREFIX}sw" link set br0 up
  add_host "${NS_PREFIX}reg" "$REG_IP" "$REG_RATE" s-reg
  add_host "${NS_PREFIX}infra" "$INFRA_IP" "$SEED_RATE" s-infra
  if (( SEEDS > 1 )); then add_host "${NS_PREFIX}seed2" "$SEED2_IP" "$SEED_RATE" s-seed2; fi
  local i; for i in $(seq 1 "$PODS"); do add_host "${NS_PREFIX}pod$i" "$(pod_ip "$i")" "$POD_RATE" "s-pod$i"; done
  log "network: registry $REG_IP ($REG_RATE), infra $INFRA_IP ($SEED_RATE)$( ((SEEDS > 1)) && echo ", seed2 $SEED2_IP ($SEED_RATE)"), $PODS pods ($POD_RATE), tbf both ways"
}

wait_http() {  # wait_http NS URL SECONDS [PID LOG]: any HTTP answer counts; fails at once if PID dies
  local i
  for i in $(seq 1 $(($3 * 10))); do
    ip netns exec "$1" curl -s -o /dev/null --max-time 1 "$2" && return 0
    if [[ -n ${4:-} && ! -d /proc/$4 ]]; then
      log "process $4 ended before $2 answered; last lines of $5:"; tail -n 5 "$5" >&2; return 1
    fi
    sleep 0.1
  done
  return 1
}

# --- registry ---
registry_up() {
  mkdir -p "$WORK/registry"
  cat >"$WORK/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $WORK/registry/data
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $REG_IP:5000
health:
  storagedriver:
    enabled: false
EOF
  REG_PID=$(bg "${NS_PREFIX}reg" registry "$WORK/registry/access.log" docker-registry serve "$WORK/registry/config.yml")
  wait_http "${NS_PREFIX}reg" "http://$REG_IP:5000/v2/" 20 || die "registry did not start: $WORK/registry/access.log"
  # pushed from inside the registry namespace: loopback, no shaping, not counted as egress
  ip netns exec "${NS_PREFIX}reg" "$BIN_DIR/e2e-oci-push" --registry "$REG_IP:5000" --repo "$REPO" \
    --layers-mib "$LAYERS_MIB" >"$WORK/image.json" || die "image push failed"
  IMAGE_BYTES=$(sed -E 's/.*"total_bytes":([0-9]+).*/\1/' "$WORK/image.json")
  log "image $IMAGE_REF: $IMAGE_BYTES bytes ($(sed -E 's/.*"manifest":"(sha256:.{12}).*/\1/' "$WORK/image.json")..)"
}

# --- p2p: scheduler + seed in pf-infra, one peerd (or stand-in mirror) per pod ---
peer_config() {  # peer_config FILE ID KIND IP STORE RATE [MIRROR_ADDR]
  cat >"$1" <<EOF
[host]
id = "$2"
kind = "$3"
advertise_ip = "$4"
upload_capacity_bytes_per_s = $(rate_bytes "$6")
download_capacity_bytes_per_s = $(rate_bytes "$6")

[listen]
data = "$4:65002"
local_api = "127.0.0.1:65000"
http = "127.0.0.1:65003"
${7:+mirror = \"$7\"}

[scheduler]
addresses = ["http://$INFRA_IP:8002"]
announce_interval_ms = 2000

[storage]
dir = "$5"

[log]
filter = "${PEER_LOG_FILTER:-info}"
EOF
  # A pod's mirror proxies the bench registry only (it is no open relay). skopeo names no
  # registry in its requests, hence default_registry; containerd's ?ns= matches the host.
  # Without this table every request got 403 and each client went straight to the registry.
  # A seed needs it too: its resolver (listen.resolver, 0.0.0.0:65004) answers the pods'
  # manifest requests for the registries its mirror proxies.
  # PEER_MIRROR_KEYS: more keys of that table (bench/fidelity.sh: the scenario's [mirror]).
  if [[ -n ${7:-} || $3 == seed ]] && ! grep -qs '^\[mirror\]' "${PEER_EXTRA_TOML:-/dev/null}"; then
    printf '\n[mirror]\ndefault_registry = "%s:5000"\n' "$REG_IP" >>"$1"
    if [[ -n ${PEER_MIRROR_KEYS:-} ]]; then cat "$PEER_MIRROR_KEYS" >>"$1"; fi
    printf '\n[[mirror.registries]]\nhost = "%s:5000"\nendpoint = "http://%s:5000"\n' "$REG_IP" "$REG_IP" >>"$1"
  fi
  if [[ -n ${PEER_EXTRA_TOML:-} ]]; then cat "$PEER_EXTRA_TOML" >>"$1"; fi
}

rate_bytes() {
  local r=$1 n
  n=${r%%[kmg]bit}
  case $r in *kbit) echo $((n * 125));; *mbit) echo $((n * 125000));; *gbit) echo $((n * 125000000));; *) echo $((n / 8));; esac
}

p2p_up() {
  local i d pid
  local pods_pid=()
  if [[ -n ${MIRROR_CMD:-} ]]; then
    for i in $(seq 1 "$PODS"); do
      d=$WORK/pod$i; mkdir -p "$d"
      local cmd=${MIRROR_CMD//\{UPSTREAM\}/http://$REG_IP:5000}; cmd=${cmd//\{LOG\}/$d/mirror.jsonl}
      # shellcheck disable=SC2086  # the template is split into words on purpose
      pid=$(bg "${NS_PREFIX}pod$i" "mirror$i" "$d/mirror.log" $cmd); DAEMON_PIDS+=("$pid"); pods_pid+=("$pid")
    done
  else
    [[ -x $BIN_DIR/peerd && -x $BIN_DIR/scheduler ]] || die "p2p needs $BIN_DIR/peerd and scheduler (cargo build --release -p peer -p sched)"
    mkdir -p "$WORK/infra"
    printf '[listen]\ngrpc = "%s:8002"\nhttp = "%s:8000"\n[log]\nfilter = "info"\n' "$INFRA_IP" "$INFRA_IP" >"$WORK/infra/scheduler.toml"
    if [[ -n ${SCHEDULER_EXTRA_TOML:-} ]]; then cat "$SCHEDULER_EXTRA_TOML"; else printf '[scheduler]\npolicy = "default"\n'; fi \
      >>"$WORK/infra/scheduler.toml"
    pid=$(bg "${NS_PREFIX}infra" scheduler "$WORK/infra/scheduler.log" "$BIN_DIR/scheduler" --config "$WORK/infra/scheduler.toml")
    DAEMON_PIDS+=("$pid")
    wait_http "${NS_PREFIX}infra" "http://$INFRA_IP:8000/healthz" 30 "$pid" "$WORK/infra/scheduler.log" || die "scheduler not healthy"
    peer_config "$WORK/infra/seed.toml" seed seed "$INFRA_IP" "$WORK/infra/seed-store" "$SEED_RATE"
    pid=$(bg "${NS_PREFIX}infra" seed "$WORK/infra/seed.log" "$BIN_DIR/peerd" --config "$WORK/infra/seed.toml")
    DAEMON_PIDS+=("$pid"); SEED_PIDS+=("$pid")
    wait_http "${NS_PREFIX}infra" "http://127.0.0.1:65003/healthz" 30 "$pid" "$WORK/infra/seed.log" || die "seed peer not healthy"
    if (( SEEDS > 1 )); then
      mkdir -p "$WORK/seed2"
      peer_config "$WORK/seed2/seed.toml" seed2 seed "$SEED2_IP" "$WORK/seed2/seed-store" "$SEED_RATE"
      pid=$(bg "${NS_PREFIX}seed2" seed2 "$WORK/seed2/seed.log" "$BIN_DIR/peerd" --config "$WORK/seed2/seed.toml")
      DAEMON_PIDS+=("$pid"); SEED_PIDS+=("$pid")
      wait_http "${NS_PREFIX}seed2" "http://127.0.0.1:65003/healthz" 30 "$pid" "$WORK/seed2/seed.log" || die "seed peer 2 not healthy"
    fi
    for i in $(seq 1 "$PODS"); do
      d=$WORK/pod$i; mkdir -p "$d"
      peer_config "$d/peerd.toml" "pod$i" normal "$(pod_ip "$i")" "$d/peer-store" "$POD_RATE" 127.0.0.1:65001
      pid=$(bg "${NS_PREFIX}pod$i" "peer$i" "$d/mirror.log" "$BIN_DIR/peerd" --config "$d/peerd.toml"); DAEMON_PIDS+=("$pid"); pods_pid+=("$pid")
    done
  fi
  for i in $(seq 1 "$PODS"); do
    wait_http "${NS_PREFIX}pod$i" "http://127.0.0.1:65001/v2/" 30 "${pods_pid[$((i - 1))]}" "$WORK/pod$i/mirror.log" \
      || die "pod$i: nothing answers on 127.0.0.1:65001 (listen.mirror); see $WORK/pod$i/"
  done
  log "p2p: $([[ -n ${MIRROR_CMD:-} ]] && echo "stand-in mirror" || echo "scheduler + seed in ${NS_PREFIX}infra, peerd") in every pod"
}

daemons_down() {
  local pid
  for pid in "${DAEMON_PIDS[@]}"; do stop_recorded "$pid"; done
  DAEMON_PIDS=()
}

metric_sum() {  # metric_sum SAMPLE NS...: sum of a Prometheus sample over the peerd (http 127.0.0.1:65003) in each NS
  local sample=$1 ns; shift
  for ns in "$@"; do
    ip netns exec "$ns" curl -s --max-time 2 http://127.0.0.1:65003/metrics 2>/dev/null | grep -F "$sample " || true
  done | awk '{s+=$NF} END{printf "%.1f", s/1e6}'
}

peer_traffic() {  # the peers' own view: MB from the origin and from parents, pods and seed apart
  local pods=() seeds=("${NS_PREFIX}infra") i
  for i in $(seq 1 "$PODS"); do pods+=("${NS_PREFIX}pod$i"); done
  if (( SEEDS > 1 )); then seeds+=("${NS_PREFIX}seed2"); fi
  echo "pods_origin_MB=$(metric_sum 'peer_download_bytes_total{source="origin"}' "${pods[@]}")" \
       "pods_parent_MB=$(metric_sum 'peer_download_bytes_total{source="parent"}' "${pods[@]}")" \
       "seed_origin_MB=$(metric_sum 'peer_download_bytes_total{source="origin"}' "${seeds[@]}")" \
       "pods_upload_MB=$(metric_sum 'peer_upload_bytes_total' "${pods[@]}")" \
       "seed_upload_MB=$(metric_sum 'peer_upload_bytes_total' "${seeds[@]}")"
}

cpu_seconds_of() {  # utime+stime (s) of a live pid and its waited-for children
  awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15+$16+$17)/hz}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# --- clients ---
client_prepare() {  # client_prepare CLIENT MODE POD: config files (+ containerd daemon) before timing
  local client=$1 mode=$2 i=$3 d=$WORK/pod$3 mirror=""
  [[ $mode == p2p ]] && mirror=127.0.0.1:65001
  rm -rf "$d/out"; mkdir -p "$d"
  if [[ $client == skopeo ]]; then
    { printf 'unqualified-search-registries = []\n[[registry]]\nprefix = "%s:5000"\nlocation = "%s:5000"\ninsecure = true\n' "$REG_IP" "$REG_IP"
      [[ -z $mirror ]] || printf '[[registry.mirror]]\nlocation = "%s"\ninsecure = true\n' "$mirror"; } >"$d/registries.conf"
  else
    mkdir -p "$d/hosts/$REG_IP:5000" "$d/ctrd/root" "$d/ctrd/state"
    if [[ -n $mirror ]]; then
      printf 'server = "http://%s:5000"\n\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' "$REG_IP" "$mirror"
    else
      printf 'server = "http://%s:5000"\n\n[host]\n' "$REG_IP"
    fi >"$d/hosts/$REG_IP:5000/hosts.toml"
    printf 'version = 2\nroot = "%s"\nstate = "%s"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "%s"\n' \
      "$d/ctrd/root" "$d/ctrd/state" "$d/ctrd/state/c.sock" >"$d/ctrd/config.toml"
    DAEMON_PIDS+=("$(bg "${NS_PREFIX}pod$i" "containerd$i" "$d/ctrd/log" containerd --config "$d/ctrd/config.toml")")
    local k; for k in $(seq 1 100); do ctr -a "$d/ctrd/state/c.sock" version >/dev/null 2>&1 && return 0; sleep 0.2; done
    die "pod$i: containerd did not start ($d/ctrd/log)"
  fi
}

client_cmd() {  # client_cmd CLIENT POD: the pull command line
  local d=$WORK/pod$2
  if [[ $1 == skopeo ]]; then
    echo skopeo --insecure-policy --registries-conf "$d/registries.conf" copy --quiet --src-tls-verify=false \
      "docker://$IMAGE_REF" "dir:$d/out"
  else
    echo ctr -a "$d/ctrd/state/c.sock" -n bench images pull --hosts-dir "$d/hosts" "$IMAGE_REF"
  fi
}

verify_pod() {  # verify_pod CLIENT POD -> "yes" if what the pod holds hashes to the image's digests
  local d=$WORK/pod$2 f n=0 want manifest
  # e2e-oci-push prints sorted keys: "blobs" (config + layers) first, then "manifest"
  want=$(sed -E 's/"generate_s".*//' "$WORK/image.json" | grep -o 'sha256:[0-9a-f]\{64\}' | sed 's/^sha256://')
  manifest=$(sed -E 's/.*"manifest":"sha256:([0-9a-f]{64})".*/\1/' "$WORK/image.json")
  if [[ $1 == skopeo ]]; then
    [[ -f $d/out/manifest.json && $(sha256sum <"$d/out/manifest.json" | cut -d' ' -f1) == "$manifest" ]] && n=$((n + 1))
    for f in $want; do
      [[ -f $d/out/$f && $(sha256sum <"$d/out/$f" | cut -d' ' -f1) == "$f" ]] && n=$((n + 1))
    done
  else
    for f in $manifest $want; do
      [[ $(ctr -a "$d/ctrd/state/c.sock" -n bench content get "sha256:$f" 2>/dev/null | sha256sum | cut -d' ' -f1) == "$f" ]] \
        && n=$((n + 1))
    done
  fi
  local total=$(( $(wc -w <<<"$want") + 1 ))
  if [[ $n == "$total" ]]; then echo yes; else echo "no($n/$total)"; fi
}

cpu_snap() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat; }

run_mode() {  # run_mode direct|p2p CLIENT
  local mode=$1 client=$2 i d t0 c0 tx0 log0 deadline alive
  local pids=()
  DAEMON_PIDS=()
  if [[ $mode == p2p ]]; then p2p_up; fi
  for i in $(seq 1 "$PODS"); do client_prepare "$client" "$mode" "$i"; done
  tx0=$(ip netns exec "${NS_PREFIX}reg" cat /sys/class/net/eth0/statistics/tx_bytes)
  log0=$(wc -l <"$WORK/registry/access.log")
  local reg_cpu0; reg_cpu0=$(cpu_seconds_of "$REG_PID")
  c0=$(cpu_snap); t0=$(now)
  log "$mode/$client: $PODS pods pull $IMAGE_REF"
  for i in $(seq 1 "$PODS"); do
    d=$WORK/pod$i; rm -f "$d/result"
    # per pod: start/end stamps and the client's own CPU (GNU time: user sys seconds)
    ( s=$(now)
      # shellcheck disable=SC2046  # the command line is split into words on purpose
      if ip netns exec "${NS_PREFIX}pod$i" /usr/bin/time -f '%U %S' -o "$d/cpu" \
          timeout -k 5 "$RUN_TIMEOUT_S" $(client_cmd "$client" "$i") >"$d/client.log" 2>&1
      then echo "ok $s $(now)" >"$d/result"; else echo "FAILED $s $(now)" >"$d/result"; fi ) &
    pids+=($!)
  done
  deadline=$(( $(date +%s) + RUN_TIMEOUT_S ))
  while (( $(date +%s) < deadline )); do
    alive=0; for i in "${pids[@]}"; do [[ -d /proc/$i ]] && alive=1; done
    (( alive )) || break
    sleep 0.2
  done
  # the clients run under `timeout` (same limit); this only ends the wrapper subshells
  for i in "${pids[@]}"; do if [[ -d /proc/$i ]]; then kill "$i" 2>/dev/null || true; fi; done
  wait "${pids[@]}" 2>/dev/null || true
  local t1 c1 tx1; t1=$(now); c1=$(cpu_snap)
  tx1=$(ip netns exec "${NS_PREFIX}reg" cat /sys/class/net/eth0/statistics/tx_bytes)
  sleep 0.3
  local daemon_cpu=0 pid
  for pid in "${DAEMON_PIDS[@]}"; do daemon_cpu=$(awk -v a="$daemon_cpu" -v b="$(cpu_seconds_of "$pid")" 'BEGIN{print a+b}'); done
  REG_CPU=$(awk -v a="$reg_cpu0" -v b="$(cpu_seconds_of "$REG_PID")" 'BEGIN{print b-a}')
  for i in $(seq 1 "$PODS"); do verify_pod "$client" "$i" >"$WORK/pod$i/verified"; done
  local extra=""
  if [[ $mode == p2p && -z ${MIRROR_CMD:-} ]]; then
    local seed_cpu=0
    for pid in "${SEED_PIDS[@]}"; do seed_cpu=$(awk -v a="$seed_cpu" -v b="$(cpu_seconds_of "$pid")" 'BEGIN{print a+b}'); done
    extra="$(peer_traffic) seed_cpu_s=$(awk -v c="$seed_cpu" 'BEGIN{printf "%.1f", c}')"
  fi
  SEED_PIDS=()
  report "$mode" "$client" "$t0" "$t1" "$c0" "$c1" "$tx0" "$tx1" "$log0" "$daemon_cpu" "$extra"
  daemons_down
  for i in $(seq 1 "$PODS"); do rm -rf "$WORK/pod$i/out" "$WORK/pod$i/ctrd/root" "$WORK/pod$i/ctrd/state" "$WORK/pod$i/peer-store"; done
  rm -rf "$WORK/infra/seed-store" "$WORK/seed2/seed-store"
  return 0
}

report() {  # mode client t0 t1 cpu0 cpu1 tx0 tx1 log_line0 daemon_cpu_s extra_fields
  local mode=$1 client=$2 t0=$3 t1=$4 c0=$5 c1=$6 tx0=$7 tx1=$8 l0=$9 daemon_cpu=${10} extra=${11} i
  local served
  served=$(tail -n +"$((l0 + 1))" "$WORK/registry/access.log" | grep -E '"GET [^"]*/blobs/sha256:' \
    | sed -E 's/.*HTTP\/1\.1" [0-9]+ ([0-9]+).*/\1/' | awk '{s+=$1} END{print s+0}')
  local manifests; manifests=$(tail -n +"$((l0 + 1))" "$WORK/registry/access.log" | grep -cE '"(GET|HEAD) [^"]*/manifests/' || true)
  for i in $(seq 1 "$PODS"); do
    read -r st s e <"$WORK/pod$i/result" || st=MISSING
    read -r u sy <"$WORK/pod$i/cpu" 2>/dev/null || { u=0; sy=0; }
    [[ $st != ok ]] || st="ok verified=$(cat "$WORK/pod$i/verified")"
    awk -v m="$mode" -v c="$client" -v i="$i" -v st="$st" -v s="${s:-0}" -v e="${e:-0}" -v t0="$t0" -v u="$u" -v sy="$sy" \
      'BEGIN{printf "fanout_pod mode=%s client=%s pod=%d status=%s secs=%.2f client_cpu_s=%.2f\n", m, c, i, st, e-t0, u+sy}'
  done | tee "$WORK/pods-$mode.txt"
  awk -v m="$mode" -v c="$client" -v n="$PODS" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v tx0="$tx0" -v tx1="$tx1" \
      -v served="$served" -v img="$IMAGE_BYTES" -v pc="$daemon_cpu" -v rc="$REG_CPU" -v man="$manifests" -v pr="$POD_RATE" -v rr="$REG_RATE" \
      -v f="$WORK/pods-$mode.txt" -v extra="$extra" 'BEGIN{
    split(c0, a, " "); split(c1, b, " "); busy=b[1]-a[1]; idle=b[2]-a[2];
    ok=0; cc=0; k=0; ver=0
    while ((getline line < f) > 0) {
      delete kv; nw=split(line, w, " "); for (j=2; j<=nw; j++) { eq=index(w[j], "="); kv[substr(w[j], 1, eq-1)]=substr(w[j], eq+1) }
      cc+=kv["client_cpu_s"]; if (kv["verified"]=="yes") ver++
      if (kv["status"]=="ok") { ok++; t[++k]=kv["secs"]+0 }
    }
    for (x=1; x<=k; x++) for (y=x+1; y<=k; y++) if (t[y]<t[x]) { z=t[x]; t[x]=t[y]; t[y]=z }
    first=(k?t[1]:0); med=(k?t[int((k+1)/2)]:0); last=(k?t[k]:0)
    printf "fanout_result mode=%s client=%s pods=%d ok=%d verified=%d wall_s=%.2f pod_first_s=%.2f pod_median_s=%.2f pod_last_s=%.2f image_MB=%.1f registry_blob_MB=%.1f registry_copies=%.3f registry_tx_MB=%.1f registry_manifest_requests=%d cpu_busy_pct=%.0f client_cpu_s=%.1f daemon_cpu_s=%.1f registry_cpu_s=%.1f pod_rate=%s reg_rate=%s%s\n",
      m, c, n, ok, ver, t1-t0, first, med, last, img/1e6, served/1e6, served/img, (tx1-tx0)/1e6, man, 100*busy/(busy+idle>0?busy+idle:1), cc, pc, rc, pr, rr, (extra == "" ? "" : " " extra)
  }' | tee -a "$WORK/results.tsv"
}

main() {
  local what=${1:-}; local client=${2:-skopeo}
  case $what in
    down) cleanup; log "fan-out leftovers removed"; return 0 ;;
    direct|p2p|both) ;;
    *) die "usage: $0 direct|p2p|both [skopeo|containerd] | down" ;;
  esac
  [[ $client == skopeo || $client == containerd ]] || die "client must be skopeo or containerd, not '$client'"
  (( EUID == 0 )) || die "needs root (namespaces, tc)"
  [[ $PODS =~ ^[0-9]+$ ]] && (( PODS >= 1 && PODS <= 200 )) || die "PODS must be 1..200, not '$PODS'"
  [[ $SEEDS == 1 || $SEEDS == 2 ]] || die "SEEDS must be 1 or 2, not '$SEEDS'"
  local t; for t in ip tc curl docker-registry /usr/bin/time "$client"; do command -v "$t" >/dev/null || die "$t is missing (tests/setup.sh)"; done
  [[ $client == containerd ]] && { command -v ctr >/dev/null || die "ctr is missing"; }
  [[ -x $BIN_DIR/e2e-oci-push ]] || die "$BIN_DIR/e2e-oci-push missing: cargo build --release -p e2e --bin e2e-oci-push"
  mkdir -p "$WORK"; : >"$PIDS_FILE"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  net_up
  registry_up
  if [[ $what == direct || $what == both ]]; then run_mode direct "$client"; fi
  if [[ $what == p2p || $what == both ]]; then run_mode p2p "$client"; fi
}

main "$@"
