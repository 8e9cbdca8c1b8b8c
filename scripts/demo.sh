#!/usr/bin/env bash
# The README's first command: install what is needed, build kiln, and run its main job end
# to end on a fresh machine. Idempotent: uses its own store under ./tmp/demo-root.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$KILN_REPO"

"$KILN_REPO/scripts/setup.sh"

step() { printf '\n== %s\n' "$*"; }
step "cargo build --release"
cargo build --release --locked -p kiln-cli
kiln="$CARGO_TARGET_DIR/release/kiln"

export KILN_ROOT="$KILN_REPO/tmp/demo-root"
mkdir -p "$KILN_REPO/tmp"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "busybox root filesystem from Debian's busybox-static"
./scripts/mk-busybox-rootfs.sh "$work/busybox-rootfs.tar"

step "kiln import → busybox:latest"
"$kiln" import "$work/busybox-rootfs.tar" -t busybox:latest \
  --change 'CMD ["sh"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

step "kiln images"
"$kiln" images

step "kiln inspect busybox"
"$kiln" inspect busybox

step "kiln save (docker-archive and oci-archive), checked by skopeo"
"$kiln" save -o "$work/busybox-docker.tar" busybox
"$kiln" save --format oci -o "$work/busybox-oci.tar" busybox
skopeo inspect "docker-archive:$work/busybox-docker.tar" | jq '{Digest, Layers, Os, Architecture}'
skopeo inspect "oci-archive:$work/busybox-oci.tar" | jq '{Digest, Layers}'

step "kiln build examples/hello (a two-stage Dockerfile) → hello:latest"
"$kiln" build -t hello --progress plain "$KILN_REPO/examples/hello"

step "kiln run hello (its ENTRYPOINT and CMD), then with arguments"
"$kiln" run --rm hello
"$kiln" run --rm hello kiln

step "rebuild with nothing changed: every step is cached"
"$kiln" build -t hello --progress plain "$KILN_REPO/examples/hello" 2>&1 | tail -n 3

step "kiln fsck"
"$kiln" fsck
echo
echo "demo done: store at $KILN_ROOT"
