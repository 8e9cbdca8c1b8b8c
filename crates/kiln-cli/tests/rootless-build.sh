#!/usr/bin/env bash
# End to end: `kiln build` as an unprivileged user must write layers with *container*
# owners (the RUN sandbox maps container 0 to the user and 1..N to its /etc/subuid range,
# so the upper dir holds host ids). Imports busybox, builds a Dockerfile that creates a
# root-owned file and a file chowned to 1234, exports the rootfs tar and checks owners
# with `tar --numeric-owner`. With the user's subordinate range, base layers are unpacked
# inside a user namespace (real owners): a RUN sees the image's owners, and `kiln prune` as
# the user removes what RUN steps left owned by subordinate ids. The same Dockerfile built
# as root and rootless (with and without the namespace helper) gives the same image id.
# Must be started as root; idempotent.
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
# RUN that looks at them, copies them up, chowns one back to root and removes one: with a
# subordinate range the base layer is unpacked inside the user namespace, so the RUN sees
# the image's owners and its layer records what it did (root-mode semantics).
mkdir -p "$dir/combined"
tar -C "$dir/combined" -xf "$dir/busybox.tar"
mkdir -p "$dir/combined/srv"
echo data >"$dir/combined/srv/data"
echo other >"$dir/combined/srv/other"
echo gone >"$dir/combined/srv/gone"
chown -R 4321:4321 "$dir/combined/srv"
tar --numeric-owner -C "$dir/combined" -cf "$dir/combined.tar" .
mkdir -p "$dir/ctx3"
cat >"$dir/ctx3/Dockerfile" <<'EOF'
FROM owned
RUN stat -c %u:%g /srv/data > /seen-owner && echo more >> /srv/data && touch /srv/new \
    && chown 0:0 /srv/other && rm /srv/gone && stat -c %u:%g /srv/other > /seen-chowned
EOF
chown -R "$user" "$dir/ctx3" "$dir/combined.tar"
file_of() { # tarfile path → content
    tar -xOf "$1" "./$2" 2>/dev/null || tar -xOf "$1" "$2"
}
subuid_start=$(grep "^$user:" /etc/subuid | head -1 | cut -d: -f2)
if as_user "$dir/kiln" import "$dir/combined.tar" -t owned >/dev/null &&
    as_user "$dir/kiln" build --progress plain --no-cache \
        --output "type=tar,dest=$dir/out-owned.tar" "$dir/ctx3"; then
    check "base owner after copy-up /srv/data" 4321/4321 "$(owner_of "$dir/out-owned.tar" srv/data)"
    check "base owner of /srv" 4321/4321 "$(owner_of "$dir/out-owned.tar" srv)"
    check "new file in base dir /srv/new" 0/0 "$(owner_of "$dir/out-owned.tar" srv/new)"
    check "base owner seen inside RUN" 4321:4321 "$(file_of "$dir/out-owned.tar" seen-owner)"
    check "chown to 0:0 inside RUN, seen" 0:0 "$(file_of "$dir/out-owned.tar" seen-chowned)"
    check "chown to 0:0 inside RUN, recorded" 0/0 "$(owner_of "$dir/out-owned.tar" srv/other)"
    check "rm of a base file in a 4321-owned dir" absent \
        "$(tar -tf "$dir/out-owned.tar" | grep -q 'srv/gone$' && echo present || echo absent)"
    check "base snapshot holds the real subordinate owner" "$((subuid_start + 4320))" \
        "$(find "$dir/store/kiln/snapshots" -path '*/fs/srv/gone' -type f -printf '%U\n' | head -1)"
else
    echo "FAIL: import/build of the 4321-owned image"
    failed=$((failed + 1))
fi

# The same image whoever builds it, from the same base (saved once, loaded everywhere):
# as root and rootless (namespace unpack) for the RUN above, which looks at owners; and
# also rootless with the owner override xattr (KILN_USERNS_HELPER=0: what a single-id map
# gets) for a RUN that does not — there a RUN sees base files as root-owned, so a step that
# prints or chowns them cannot give the same layer.
mkdir -p "$dir/ctx5"
cat >"$dir/ctx5/Dockerfile" <<'EOF'
FROM owned
RUN echo more >> /srv/data && touch /srv/new && rm /srv/gone && mkdir -p /home/app \
    && chown 1234:1234 /home/app && touch /home/app/f && chown 1234:1234 /home/app/f
EOF
chown -R "$user" "$dir/ctx5"
reproducible_id() { # store context [runner...] → image id of a reproducible build
    local store=$1 ctx=$2
    shift 2
    "$@" env KILN_ROOT="$store" SOURCE_DATE_EPOCH=1700000000 "$dir/kiln" build --quiet \
        --reproducible --no-cache "$ctx"
}
as_user "$dir/kiln" save -o "$dir/owned-image.tar" owned
KILN_ROOT="$dir/rootstore" "$dir/kiln" load -q -i "$dir/owned-image.tar" >/dev/null
as_user env KILN_ROOT="$dir/store-xattr" "$dir/kiln" load -q -i "$dir/owned-image.tar" >/dev/null
for c in ctx3 ctx5; do
    id_root=$(reproducible_id "$dir/rootstore" "$dir/$c" || echo root-build-failed)
    id_user=$(reproducible_id "$dir/store" "$dir/$c" as_user || echo rootless-build-failed)
    check "$c: same image id as root and rootless" "$id_root" "$id_user"
done
id_xattr=$(reproducible_id "$dir/store-xattr" "$dir/ctx5" as_user env KILN_USERNS_HELPER=0 ||
    echo xattr-build-failed)
check "ctx5: same image id rootless with the owner override xattr" "$id_root" "$id_xattr"
check "xattr store: base files owned by the user" "$(id -u "$user")" \
    "$(find "$dir/store-xattr/kiln/snapshots" -path '*/fs/srv/gone' -type f -printf '%U\n' | head -1)"
rm -rf "$dir/rootstore"

# RUN steps that leave files owned by subordinate ids in directories the user cannot read
# or write (a 0700 one: the layer is written inside the user namespace; the copy
# snapshotter diffs as the user, so it gets a 0555 one), and a failing RUN that leaves a
# 0700 one in its active dir: once no image needs them, `kiln prune` as the user removes
# every snapshot and every file of another owner, and frees the space.
mkdir -p "$dir/ctx4" "$dir/ctx4c" "$dir/ctx6"
cat >"$dir/ctx4/Dockerfile" <<'EOF'
FROM owned
RUN mkdir -p /priv/sub && echo x > /priv/sub/f && chown -R 1234:1234 /priv && chmod 700 /priv/sub /priv
EOF
cat >"$dir/ctx4c/Dockerfile" <<'EOF'
FROM owned
RUN mkdir -p /priv/sub && echo x > /priv/sub/f && chown -R 1234:1234 /priv && chmod 555 /priv/sub
EOF
cat >"$dir/ctx6/Dockerfile" <<'EOF'
FROM owned
RUN mkdir -p /priv/sub && echo x > /priv/sub/f && chown -R 1234:1234 /priv && chmod 700 /priv/sub /priv && false
EOF
chown -R "$user" "$dir/ctx4" "$dir/ctx4c" "$dir/ctx6"
if as_user "$dir/kiln" build --progress plain --no-cache -t priv \
    --output "type=tar,dest=$dir/out-priv.tar" "$dir/ctx4" >/dev/null 2>&1 &&
    as_user env KILN_SNAPSHOTTER=copy "$dir/kiln" build --progress plain --no-cache \
        -t priv-copy "$dir/ctx4c" >/dev/null 2>&1; then
    check "0700 dir of a subordinate id in the layer" "drwx------ 1234/1234" \
        "$(tar --numeric-owner -tvf "$dir/out-priv.tar" | awk '$6 ~ /^(\.\/)?priv\/?$/ {print $1, $2}')"
    check "file below it" 1234/1234 "$(owner_of "$dir/out-priv.tar" priv/sub/f)"
    check "a failing RUN fails" failed \
        "$(as_user "$dir/kiln" build --progress plain --no-cache "$dir/ctx6" >/dev/null 2>&1 && echo built || echo failed)"
    check "its active dir is gone" 0 "$(find "$dir/store/kiln/snapshots/active" -mindepth 1 -maxdepth 1 | wc -l)"
    before=$(du -sk "$dir/store/kiln/snapshots" | cut -f1)
    check "the builds left files of other owners" yes \
        "$(find "$dir/store" ! -user "$user" -print -quit | grep -q . && echo yes || echo no)"
    for img in priv priv-copy owned busybox $(as_user "$dir/kiln" images -q --no-trunc | sort -u); do
        as_user "$dir/kiln" rmi "$img" >/dev/null 2>&1 || true
    done
    check "no image left" 0 "$(as_user "$dir/kiln" images -q | wc -l)"
    # Age everything past the grace period that protects fresh snapshots.
    find "$dir/store/kiln/snapshots" -mindepth 1 -maxdepth 2 -exec touch -h -d '1 hour ago' {} +
    if as_user "$dir/kiln" prune >"$dir/prune.out" 2>&1; then
        check "prune as the user" ok ok
    else
        check "prune as the user" ok "$(tail -1 "$dir/prune.out")"
    fi
    after=$(du -sk "$dir/store/kiln/snapshots" | cut -f1)
    check "prune left no snapshot" 0 "$(find "$dir/store/kiln/snapshots" -mindepth 1 -maxdepth 1 \
        -regextype egrep -regex '.*/[0-9a-f]{64}' | wc -l)"
    check "prune left no file of another owner" none \
        "$(find "$dir/store" ! -user "$user" | head -3 | grep . || echo none)"
    check "prune freed space" yes \
        "$([ "$after" -lt "$before" ] && echo yes || echo "no ($before -> $after KiB)")"
else
    echo "FAIL: builds of the subordinate-owned directory"
    failed=$((failed + 1))
fi

echo "rootless: $passed passed, $failed failed"
[ "$failed" = 0 ]
