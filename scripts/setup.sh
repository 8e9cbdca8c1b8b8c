#!/usr/bin/env bash
# Installs and starts everything kiln's build, demo and tests need, idempotently.
# Debian 12, as root. Safe to run any number of times.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== %s\n' "$*" >&2; }

# Packages the tests use as independent judges (skopeo, umoci, buildah), as base-image sources
# (busybox-static, mmdebstrap), as the real registry (docker-registry), and podman (whose
# `podman save` archives the e2e tests load), and git (`ADD <git url>` runs the git binary).
PKGS="busybox-static skopeo umoci jq uidmap docker-registry buildah mmdebstrap openssl curl ca-certificates podman git"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  log "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing
fi

if ! command -v cargo >/dev/null 2>&1; then
  for d in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
    [ -x "$d/cargo" ] && export PATH="$d:$PATH"
  done
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found. kiln needs Rust >= 1.85 (rustup toolchain); Debian 12's rustc is too old." >&2
  exit 1
fi

# An unprivileged user for the rootless tests, with subordinate id ranges for newuidmap.
if ! id kilntest >/dev/null 2>&1; then
  log "creating user kilntest"
  useradd --create-home --shell /bin/bash kilntest
fi
kuid=$(id -u kilntest)
grep -q '^kilntest:' /etc/subuid 2>/dev/null || echo "kilntest:200000:65536" >> /etc/subuid
grep -q '^kilntest:' /etc/subgid 2>/dev/null || echo "kilntest:200000:65536" >> /etc/subgid
: "$kuid"
# The test registries (docker-registry on 127.0.0.1:5100 plain, :5101 TLS + basic auth,
# :5102 token auth; see registry.sh).
"$(dirname "$0")/registry.sh" >/dev/null
log "setup done"
