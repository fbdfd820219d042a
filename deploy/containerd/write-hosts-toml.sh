#!/bin/sh
# Points containerd at the node's p2pimg peer (its registry mirror) for each registry named:
# writes CERTS_DIR/<registry>/hosts.toml with the mirror as a pull/resolve host and the
# registry itself as the fallback `server`. containerd reads these files on every pull (no
# restart) when its CRI registry `config_path` is CERTS_DIR. POSIX sh: it runs on the node
# (bare metal) and in the DaemonSet's busybox init container alike.
#
#   write-hosts-toml.sh [--certs-dir DIR] [--mirror URL] REGISTRY[=UPSTREAM]...
#   write-hosts-toml.sh [--certs-dir DIR] --remove REGISTRY...
#
#   --certs-dir DIR  containerd's hosts directory (default /etc/containerd/certs.d)
#   --mirror URL     the peer's mirror (default http://127.0.0.1:65001, peerd's listen.mirror)
#   --remove         delete the files this script wrote for REGISTRY (restores a backup)
#   REGISTRY         as images name it: docker.io, ghcr.io, registry.example.com:5000
#   UPSTREAM         where the registry really is (default https://REGISTRY, and
#                    https://registry-1.docker.io for docker.io); must match the upstream of
#                    that registry in peerd's [[mirror.registries]]
#
# A hosts.toml this script did not write is kept once as hosts.toml.before-p2pimg. Each file
# is written to a temporary file and renamed, so containerd never reads half a file.
# Exit codes: 0 done, 2 bad arguments (the message names the argument), 1 cannot write.
set -eu

MARK='# Written by p2pimg write-hosts-toml.sh'
CERTS_DIR=/etc/containerd/certs.d
MIRROR=http://127.0.0.1:65001
REMOVE=0

usage_error() {
  echo "write-hosts-toml.sh: $1" >&2
  echo "usage: write-hosts-toml.sh [--certs-dir DIR] [--mirror URL] [--remove] REGISTRY[=UPSTREAM]..." >&2
  exit 2
}

# A registry host as containerd names its directory: DNS name or IPv4, optional port.
valid_registry() {
  printf '%s\n' "$1" | grep -Eq '^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?$'
}

# An http(s) URL with a host and nothing after it but an optional port and path (no quotes,
# spaces or backslashes, which would break the TOML string).
valid_url() {
  printf '%s\n' "$1" | grep -Eq '^https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$'
}

default_upstream() {
  case $1 in
    docker.io) echo https://registry-1.docker.io ;;
    *) echo "https://$1" ;;
  esac
}

write_one() { # registry upstream
  dir=$CERTS_DIR/$1
  file=$dir/hosts.toml
  mkdir -p "$dir" || { echo "write-hosts-toml.sh: cannot create $dir" >&2; exit 1; }
  if [ -f "$file" ] && ! grep -qF "$MARK" "$file" && [ ! -e "$file.before-p2pimg" ]; then
    cp "$file" "$file.before-p2pimg" || { echo "write-hosts-toml.sh: cannot back up $file" >&2; exit 1; }
    echo "write-hosts-toml.sh: kept the previous $file as $file.before-p2pimg"
  fi
  tmp=$(mktemp "$dir/.hosts.toml.XXXXXX") || { echo "write-hosts-toml.sh: cannot write in $dir" >&2; exit 1; }
  # The [host."..."] table also keeps containerd <= 1.7 from rejecting the file: without
  # any [host] table it fails with "invalid `host` tree" and ignores the whole file.
  if ! cat >"$tmp" <<EOF
$MARK (deploy/containerd/), again at every peer start.
# Pulls of $1 go through the p2pimg peer on this node; when it fails or is down,
# containerd fetches from the server below itself.
server = "$2"

[host."$MIRROR"]
  capabilities = ["pull", "resolve"]
EOF
  then
    rm -f "$tmp"
    echo "write-hosts-toml.sh: cannot write $tmp" >&2
    exit 1
  fi
  chmod 0644 "$tmp"
  mv -f "$tmp" "$file" || { rm -f "$tmp"; echo "write-hosts-toml.sh: cannot replace $file" >&2; exit 1; }
  echo "write-hosts-toml.sh: $file: $1 through $MIRROR, fallback $2"
}

remove_one() { # registry
  file=$CERTS_DIR/$1/hosts.toml
  if [ -f "$file" ] && grep -qF "$MARK" "$file"; then
    if [ -f "$file.before-p2pimg" ]; then
      mv -f "$file.before-p2pimg" "$file"
      echo "write-hosts-toml.sh: $file: restored the previous file"
    else
      rm -f "$file"
      rmdir "$CERTS_DIR/$1" 2>/dev/null || true
      echo "write-hosts-toml.sh: $file: removed"
    fi
  else
    echo "write-hosts-toml.sh: $file: not written by p2pimg, left alone"
  fi
}

while [ $# -gt 0 ]; do
  case $1 in
    --certs-dir) [ $# -ge 2 ] || usage_error "--certs-dir needs a directory"; CERTS_DIR=$2; shift 2 ;;
    --mirror) [ $# -ge 2 ] || usage_error "--mirror needs a URL"; MIRROR=$2; shift 2 ;;
    --remove) REMOVE=1; shift ;;
    -h|--help) sed -n 2,21p "$0"; exit 0 ;;
    --) shift; break ;;
    -*) usage_error "unknown option $1" ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || usage_error "name at least one registry, e.g. docker.io"
[ -n "$CERTS_DIR" ] || usage_error "--certs-dir is empty"
valid_url "$MIRROR" || usage_error "--mirror $MIRROR: not an http(s) URL such as http://127.0.0.1:65001"

# Check every argument before writing anything: a typo must not leave half the registries done.
for arg in "$@"; do
  registry=${arg%%=*}
  valid_registry "$registry" || usage_error "$arg: \"$registry\" is not a registry host (e.g. docker.io, registry.example.com:5000)"
  if [ "$registry" != "$arg" ]; then
    [ "$REMOVE" = 0 ] || usage_error "$arg: --remove takes registry names only"
    upstream=${arg#*=}
    valid_url "$upstream" || usage_error "$arg: upstream \"$upstream\" is not an http(s) URL such as https://$registry"
  fi
done

for arg in "$@"; do
  registry=${arg%%=*}
  if [ "$REMOVE" = 1 ]; then
    remove_one "$registry"
  elif [ "$registry" = "$arg" ]; then
    write_one "$registry" "$(default_upstream "$registry")"
  else
    write_one "$registry" "${arg#*=}"
  fi
done
