#!/usr/bin/env bash
# Writes a busybox rootfs tarball built from Debian's busybox-static: /bin/busybox, one
# symlink per applet, /tmp (1777), minimal /etc/passwd and /etc/group. Deterministic: fixed
# mtimes and sorted entries, so the same busybox package gives the same tarball.
# usage: mk-busybox-rootfs.sh OUT.tar
set -euo pipefail
out=${1:?usage: mk-busybox-rootfs.sh OUT.tar}
bb=/bin/busybox
[ -x "$bb" ] || { echo "mk-busybox-rootfs: $bb missing (apt-get install busybox-static)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
r=$work/rootfs
mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/root" "$r/home" "$r/usr/bin" "$r/usr/sbin" "$r/sbin" "$r/var" "$r/proc" "$r/dev" "$r/sys"
chmod 1777 "$r/tmp"
chmod 700 "$r/root"
cp "$bb" "$r/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] && continue
  ln -sf busybox "$r/bin/$applet"
done
cat > "$r/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$r/etc/group" <<'G'
root:x:0:
daemon:x:1:
nogroup:x:65534:
G
find "$r" -exec touch -h -d @1700000000 {} +
tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@1700000000 --format=pax \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$r" -cf "$out" .
