#!/usr/bin/env bash
# Runs kiln-sandbox's tests as an ordinary user, to exercise the rootless path
# (user namespace, newuidmap/newgidmap with /etc/subuid ranges, overlay with
# userxattr). Must be started as root; idempotent.
#
#   crates/kiln-sandbox/tests/run-unprivileged.sh [test-name-filter...]
#
# Env: KILN_TEST_USER (default kilntest), CARGO_TARGET_DIR (default
# /work/target-sb), KILN_TEST_NO_SUBIDS=1 to skip adding subordinate ranges.
set -euo pipefail

user=${KILN_TEST_USER:-kilntest}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-sb}

if [ "$(id -u)" != 0 ]; then
    echo "run-unprivileged.sh: must run as root (it creates user $user)" >&2
    exit 1
fi
command -v busybox >/dev/null || apt-get install -y busybox-static

if ! id -u "$user" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/sh "$user"
fi

# A 65536-id subordinate range after every range already handed out.
add_range() { # file
    local file=$1
    touch "$file"
    grep -q "^$user:" "$file" && return 0
    local start
    start=$(awk -F: 'BEGIN{m=100000} {e=$2+$3; if (e>m) m=e} END{print m}' "$file")
    echo "$user:$start:65536" >>"$file"
}
if [ "${KILN_TEST_NO_SUBIDS:-0}" != 1 ]; then
    add_range /etc/subuid
    add_range /etc/subgid
fi

# Build as root, then copy the binaries somewhere the test user can read.
cd "$repo"
build_log=$(cargo test -p kiln-sandbox --no-run 2>&1) || { echo "$build_log" >&2; exit 1; }
mapfile -t tests < <(echo "$build_log" | sed -n 's/.*Executable .*(\(.*\))$/\1/p')
dir=$(mktemp -d /tmp/kiln-sandbox-unpriv.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"
cp "$CARGO_TARGET_DIR/debug/kiln-sandbox-test-init" "$dir/"
for t in "${tests[@]}"; do cp "$t" "$dir/"; done
chmod 755 "$dir"/*

# A second user without subordinate ids exercises the single-id fallback.
nosub=${user}-nosub
id -u "$nosub" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$nosub"
sed -i "/^$nosub:/d" /etc/subuid /etc/subgid

status=0
for u in "$user" "$nosub"; do
    install -d -o "$u" -m 700 "$dir/tmp-$u"
    for t in "${tests[@]}"; do
        name=$(basename "$t")
        echo "== $name as $u ($(id -u "$u"))"
        runuser -u "$u" -- env -i PATH=/usr/bin:/bin HOME="$dir/tmp-$u" TMPDIR="$dir/tmp-$u" \
            KILN_SANDBOX_TEST_INIT="$dir/kiln-sandbox-test-init" \
            "$dir/$name" "$@" || status=1
    done
done
exit $status
