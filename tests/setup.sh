#!/usr/bin/env bash
# Installs what the end-to-end suites need when it is missing: the Debian docker-registry
# (the real OCI registry the registry suite pulls from), curl, and the Kubernetes schema
# validator of the manifest suite (pip kubernetes-validate). Run as root (CI is).
set -euo pipefail
missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v curl >/dev/null 2>&1 || missing+=(curl)
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
    || echo "setup: kubernetes-validate could not be installed; deploy_manifests skips the schema check"
fi
