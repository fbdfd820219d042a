#!/usr/bin/env bash
# Installs what the end-to-end suites need when it is missing, from Debian packages: the real
# OCI registry (docker-registry), curl, and the real OCI clients the oci_clients suite and
# bench/netns_fanout.sh drive: containerd (+ctr), runc, skopeo, and busybox-static, whose
# /bin/busybox goes into the first layer of the generated test image; iproute2 for the
# namespace bench; chromium, the headless browser sim/tests/html_browser.rs opens the HTML
# reports in; and the Kubernetes schema validator of the manifest suite (pip
# kubernetes-validate). Idempotent and silent when everything is present. Run as root (CI is).
set -euo pipefail
missing=()
have() { command -v "$1" >/dev/null 2>&1; }
have docker-registry || missing+=(docker-registry)
have curl || missing+=(curl)
have containerd && have ctr || missing+=(containerd)
have runc || missing+=(runc)
have skopeo || missing+=(skopeo)
have tc && have ip || missing+=(iproute2)
have chromium || have chromium-browser || missing+=(chromium)
# busybox-static puts a statically linked /bin/busybox; the dynamic `busybox` package would not
# run inside the image, which has no libc.
if ! { [[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1; }; then missing+=(busybox-static); fi
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
fi
# The Kubernetes schema validator the manifest suite runs when present (tests/deploy_manifests.rs):
# PyPI kubernetes-validate ships the schemas inside the package, so it works offline afterwards.
if command -v python3 >/dev/null 2>&1 && ! python3 -m kubernetes_validate --version >/dev/null 2>&1; then
  echo "setup: installing kubernetes-validate (pip)"
  python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate >/dev/null 2>&1 \
    || { echo "setup: kubernetes-validate could not be installed (pip install kubernetes-validate); the manifest suites need it for their schema checks" >&2; exit 1; }
fi
