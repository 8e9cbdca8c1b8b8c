#!/usr/bin/env bash
# End to end: `kiln build` as an unprivileged user must write layers with *container*
# owners (the RUN sandbox maps container 0 to the user and 1..N to its /etc/subuid range,
# so the upper dir holds host ids). Imports busybox, builds a Dockerfile that creates a
# root-owned file and a file chowned to 1234, exports the rootfs tar and checks owners
# with `tar --numeric-owner`. Must be started as root; idempotent.
#
#   crates/kiln-cli/tests/rootless-build.sh
#
# Env: KILN_TEST_USER (default kilntest), CARGO_TARGET_DIR (default /work/target),
# KILN (a prebuilt kiln binary; default: cargo build -p kiln-cli). Prints
# "rootless: N passed, M failed" and exits non-zero when anything failed.
set -euo pipefail

user=${KILN_TEST_USER:-kilntest}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target}

if [ "$(id -u)" != 0 ]; then
    echo "rootless-build.sh: must run as root (it switches to $user)" >&2
    exit 1
fi
command -v busybox >/dev/null || apt-get install -y busybox-static
if ! id -u "$user" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/sh "$user"
fi
for f in /etc/subuid /etc/subgid; do
    grep -q "^$user:" "$f" 2>/dev/null || {
        echo "rootless-build.sh: no $f range for $user (run scripts/setup.sh)" >&2
        exit 1
    }
done

cd "$repo"
if [ -z "${KILN:-}" ]; then
    build_log=$(cargo build -p kiln-cli 2>&1) || { echo "$build_log" >&2; exit 1; }
    KILN=$CARGO_TARGET_DIR/debug/kiln
fi

dir=$(mktemp -d /tmp/kiln-rootless-build.XXXXXX)
cleanup() {
    rm -rf "$dir"
}
trap cleanup EXIT
chmod 755 "$dir"
cp "$KILN" "$dir/kiln"
chmod 755 "$dir/kiln"
"$repo/scripts/mk-busybox-rootfs.sh" "$dir/busybox.tar"
mkdir -p "$dir/ctx"
cat >"$dir/ctx/Dockerfile" <<'EOF'
FROM busybox
RUN touch /root-file && adduser -D -u 1234 app 2>/dev/null || true && touch /x && chown 1234:1234 /x
EOF
# The copy snapshotter materialises the root in the store, and the user cannot delete what
# sits in a directory owned by a subordinate id afterwards: only the overlay case chowns one.
cp -r "$dir/ctx" "$dir/ctx-copy"
echo 'RUN mkdir -p /home/app && chown 1234:1234 /home/app && touch /home/app/owned && chown 1234:1234 /home/app/owned' \
    >>"$dir/ctx/Dockerfile"
echo 'RUN mkdir -p /home/app && touch /home/app/owned && chown 1234:1234 /home/app/owned' \
    >>"$dir/ctx-copy/Dockerfile"
chown -R "$user" "$dir"

as_user() {
    runuser -u "$user" -- env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME="$dir" TMPDIR="$dir" \
        KILN_ROOT="$dir/store" "$@"
}

passed=0
failed=0
check() { # name expected actual
    if [ "$2" = "$3" ]; then
        echo "ok: $1 ($3)"
        passed=$((passed + 1))
    else
        echo "FAIL: $1: expected $2, got $3"
        failed=$((failed + 1))
    fi
}
owner_of() { # tarfile path → uid/gid as tar prints it
    tar --numeric-owner -tvf "$1" |
        awk -v p="$2" '{n = $6; sub(/^\.\//, "", n); sub(/\/$/, "", n)} n == p {print $2; exit}'
}

run_case() { # name snapshotter context
    local name=$1 snap=$2 ctx=$3 out="$dir/out-$1.tar"
    echo "== $name (KILN_SNAPSHOTTER=${snap:-auto}) as $user ($(id -u "$user"))"
    if ! as_user env ${snap:+KILN_SNAPSHOTTER=$snap} "$dir/kiln" build --progress plain \
        --no-cache --output "type=tar,dest=$out" "$ctx"; then
        echo "FAIL: $name: kiln build"
        failed=$((failed + 1))
        return
    fi
    check "$name /root-file" 0/0 "$(owner_of "$out" root-file)"
    check "$name /x" 1234/1234 "$(owner_of "$out" x)"
    check "$name /home/app/owned" 1234/1234 "$(owner_of "$out" home/app/owned)"
    # Base-layer content keeps the image's owners (root in busybox).
    check "$name /bin/busybox" 0/0 "$(owner_of "$out" bin/busybox)"
    check "$name /tmp" 0/0 "$(owner_of "$out" tmp)"
}

if as_user "$dir/kiln" import "$dir/busybox.tar" -t busybox >/dev/null; then
    run_case overlay "" "$dir/ctx"
    run_case copy copy "$dir/ctx-copy"
else
    echo "FAIL: kiln import as $user"
    failed=$((failed + 1))
fi

# An image whose files belong to a non-root user (busybox plus a 4321-owned /srv), then a
# RUN that copies them up: the base owner must survive the rootless unpack (owner override
# xattr) and the commit.
mkdir -p "$dir/combined"
tar -C "$dir/combined" -xf "$dir/busybox.tar"
mkdir -p "$dir/combined/srv"
echo data >"$dir/combined/srv/data"
chown -R 4321:4321 "$dir/combined/srv"
tar --numeric-owner -C "$dir/combined" -cf "$dir/combined.tar" .
mkdir -p "$dir/ctx3"
cat >"$dir/ctx3/Dockerfile" <<'EOF'
FROM owned
RUN echo more >> /srv/data && touch /srv/new
EOF
chown -R "$user" "$dir/ctx3" "$dir/combined.tar"
if as_user "$dir/kiln" import "$dir/combined.tar" -t owned >/dev/null &&
    as_user "$dir/kiln" build --progress plain --no-cache \
        --output "type=tar,dest=$dir/out-owned.tar" "$dir/ctx3"; then
    check "base owner after copy-up /srv/data" 4321/4321 "$(owner_of "$dir/out-owned.tar" srv/data)"
    check "base owner of /srv" 4321/4321 "$(owner_of "$dir/out-owned.tar" srv)"
    check "new file in base dir /srv/new" 0/0 "$(owner_of "$dir/out-owned.tar" srv/new)"
else
    echo "FAIL: import/build of the 4321-owned image"
    failed=$((failed + 1))
fi

echo "rootless: $passed passed, $failed failed"
[ "$failed" = 0 ]
