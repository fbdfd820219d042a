#!/usr/bin/env bash
# Assembles an OCI image of one already built binary, without Docker and without a base image:
#
#   deploy/image/build.sh NAME [--binary PATH] [--tag T] (--layout DIR | --push REGISTRY/REPO [--insecure])
#
# One layer: the binary at /usr/local/bin/NAME, every shared library `ldd` lists (at the path
# it lists, the dynamic loader included), /etc/passwd and /etc/group with `nonroot` (65532),
# /etc/nsswitch.conf, the host's CA bundle at /etc/ssl/certs/ca-certificates.crt (peerd
# fetches from HTTPS registries) and /tmp. The image runs as 65532:65532 with the binary as
# its entrypoint, like the Dockerfile's distroless stages. Reproducible: fixed owners, modes
# and mtimes, `gzip -n`; the same binary and host files give the same digest.
# Prints the manifest digest (sha256:...) on stdout; what it does goes to stderr.
set -euo pipefail

usage() {
  echo "usage: deploy/image/build.sh NAME [--binary PATH] [--tag T] (--layout DIR | --push REGISTRY/REPO [--insecure])" >&2
  exit 2
}
die() {
  echo "build.sh: $*" >&2
  exit 1
}

root=$(cd "$(dirname "$0")/../.." && pwd)
[[ $# -ge 1 && $1 != -* ]] || usage
name=$1
shift
binary="" tag="" layout="" push="" insecure=0
while (($#)); do
  case $1 in
    --binary) binary=${2:?--binary needs a PATH}; shift 2 ;;
    --tag) tag=${2:?--tag needs a value}; shift 2 ;;
    --layout) layout=${2:?--layout needs a DIR}; shift 2 ;;
    --push) push=${2:?--push needs REGISTRY/REPO}; shift 2 ;;
    --insecure) insecure=1; shift ;;
    *) echo "build.sh: unknown argument $1" >&2; usage ;;
  esac
done
[[ -n $layout || -n $push ]] || { echo "build.sh: say where the image goes: --layout DIR or --push REGISTRY/REPO" >&2; usage; }
[[ -z $layout || -z $push ]] || { echo "build.sh: --layout and --push exclude each other" >&2; usage; }
[[ $name =~ ^[a-z0-9][a-z0-9_-]*$ ]] || die "NAME $name: letters, digits, - and _ only (peerd, scheduler, p2pctl, sim)"
# The default tag is the workspace version ([workspace.package] version in Cargo.toml).
[[ -n $tag ]] || tag=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n1)
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "tag '$tag' is not a valid OCI tag"

for tool in tar gzip sha256sum ldd stat; do
  command -v "$tool" >/dev/null || die "$tool is not installed (tar: GNU tar; ldd: libc-bin)"
done
tar --version | grep -q 'GNU tar' || die "tar is not GNU tar (needed for --sort=name); install the tar package"

if [[ -z $binary ]]; then
  binary=${CARGO_TARGET_DIR:-$root/target}/release/$name
  case $name in
    peerd | dfget) package=peer ;;
    scheduler | p2pctl) package=sched ;;
    sim) package=sim ;;
    *) package="<the package of $name>" ;;
  esac
  [[ -f $binary ]] || die "$binary not found: build it first: cargo build --release --locked -p $package"
fi
[[ -f $binary && -x $binary ]] || die "$binary is not an executable file"
certs=/etc/ssl/certs/ca-certificates.crt
[[ -s $certs ]] || die "$certs is missing: install ca-certificates (apt-get install ca-certificates)"
if [[ -n $push ]]; then
  command -v skopeo >/dev/null || die "skopeo is not installed; run tests/setup.sh (apt-get install skopeo)"
fi
case $(uname -m) in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) die "unknown machine $(uname -m): add its OCI architecture name to build.sh" ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/p2pimg-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
fs=$work/rootfs
mkdir -p "$fs/usr/local/bin" "$fs/etc/ssl/certs" "$fs/tmp"
install -m 0755 "$binary" "$fs/usr/local/bin/$name"
install -m 0644 "$certs" "$fs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >"$fs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$fs/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$fs/etc/nsswitch.conf"
chmod 0644 "$fs/etc/passwd" "$fs/etc/group" "$fs/etc/nsswitch.conf"

# Shared libraries: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and the loader
# "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file. A static binary has none.
libs=$(ldd "$binary" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u) || true
if ldd "$binary" 2>&1 | grep -q 'not found'; then
  die "ldd $binary: a library is missing on this machine: $(ldd "$binary" | grep 'not found' | tr -s ' \t' ' ')"
fi
for lib in $libs; do
  mkdir -p "$fs$(dirname "$lib")"
  install -m 0755 "$(readlink -f "$lib")" "$fs$lib"
done
find "$fs" -type d -exec chmod 0755 {} +
chmod 1777 "$fs/tmp"

# The layer: sorted names, owner root, mtime 0, no pax times, gzip without name or time.
(cd "$fs" && LC_ALL=C tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
  --format=gnu -cf "$work/layer.tar" $(LC_ALL=C ls -A))
gzip -n <"$work/layer.tar" >"$work/layer.tar.gz"
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
diff_id=$(sha "$work/layer.tar")
layer=$(sha "$work/layer.tar.gz")

out=${layout:-$work/layout}
if [[ -e $out ]]; then
  [[ -d $out ]] || die "$out exists and is not a directory"
  if [[ -n $(ls -A "$out") ]]; then
    [[ -f $out/oci-layout ]] || die "$out is neither empty nor an OCI layout: refusing to write into it"
    rm -rf "$out/blobs" "$out/index.json" "$out/oci-layout"
  fi
fi
mkdir -p "$out/blobs/sha256"
blobs=$out/blobs/sha256
mv "$work/layer.tar.gz" "$blobs/$layer"

printf '{"architecture":"%s","os":"linux","created":"1970-01-01T00:00:00Z","config":{"User":"65532:65532","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],"Entrypoint":["/usr/local/bin/%s"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"deploy/image/build.sh %s"}]}' \
  "$arch" "$name" "$diff_id" "$name" >"$work/config.json"
config=$(sha "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
  "$config" "$(size "$work/config.json")" "$layer" "$(size "$blobs/$layer")" >"$work/manifest.json"
manifest=$(sha "$work/manifest.json")
manifest_size=$(size "$work/manifest.json")
mv "$work/config.json" "$blobs/$config"
mv "$work/manifest.json" "$blobs/$manifest"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"platform":{"architecture":"%s","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest" "$manifest_size" "$arch" "$tag" >"$out/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"

echo "build.sh: $name:$tag linux/$arch, layer $(size "$blobs/$layer") bytes gzip ($(size "$work/layer.tar") tar), files: $(cd "$fs" && find . -type f | sed 's/^\.//' | LC_ALL=C sort | tr '\n' ' ')" >&2
if [[ -n $push ]]; then
  tls=()
  ((insecure)) && tls=(--dest-tls-verify=false)
  echo "build.sh: skopeo copy oci:$out:$tag docker://$push:$tag" >&2
  # --insecure-policy: the source is the layout just built here, not an image to vet.
  skopeo --insecure-policy copy --quiet --preserve-digests "${tls[@]}" "oci:$out:$tag" "docker://$push:$tag" >&2 \
    || die "skopeo copy to docker://$push:$tag failed (above)$( ((insecure)) || echo '; a plain-http registry needs --insecure')"
else
  echo "build.sh: OCI layout in $out (tag $tag)" >&2
fi
echo "sha256:$manifest"
