#!/usr/bin/env python3
"""Writes the conformance base images as one OCI archive, independently of every peer.

usage: mkbase.py OUT.tar

The archive holds two images over the same single layer (Debian's busybox-static, one
symlink per applet, /etc/passwd and /etc/group with a few users):
  localhost/conf-base:latest  Env PATH, Cmd ["sh"]
  localhost/conf-rich:latest  the same plus Entrypoint, WorkingDir, User, ExposedPorts,
                              Volumes, Labels, StopSignal, Healthcheck, OnBuild (inheritance cases)
Deterministic: fixed mtimes, sorted entries, uncompressed layer.
"""
import hashlib, io, json, os, subprocess, sys, tarfile

out = sys.argv[1]
MTIME = 1700000000
BB = "/bin/busybox"

layer = io.BytesIO()
t = tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT)


def ti(name, typ, mode, uid=0, gid=0):
    i = tarfile.TarInfo(name)
    i.type, i.mode, i.mtime, i.uid, i.gid = typ, mode, MTIME, uid, gid
    return i


def d(name, mode=0o755, uid=0, gid=0):
    t.addfile(ti(name, tarfile.DIRTYPE, mode, uid, gid))


def f(name, data, mode=0o644, uid=0, gid=0):
    i = ti(name, tarfile.REGTYPE, mode, uid, gid)
    i.size = len(data)
    t.addfile(i, io.BytesIO(data))


def l(name, target):
    i = ti(name, tarfile.SYMTYPE, 0o777)
    i.linkname = target
    t.addfile(i)


entries = []
dirs = {"bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "home/app": 0o750,
        "proc": 0o555, "root": 0o700, "sbin": 0o755, "srv": 0o755, "sys": 0o555,
        "tmp": 0o1777, "usr": 0o755, "usr/bin": 0o755, "usr/local": 0o755,
        "usr/local/bin": 0o755, "usr/sbin": 0o755, "var": 0o755, "var/lib": 0o755}
applets = subprocess.run([BB, "--list"], check=True, capture_output=True, text=True).stdout.split()
with open(BB, "rb") as fh:
    busybox = fh.read()
files = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n"
                  b"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
                  b"app:x:1000:1000:app:/home/app:/bin/sh\n"
                  b"svc:x:1001:50:svc:/srv:/bin/false\n"
                  b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "etc/group": b"root:x:0:\ndaemon:x:1:\nstaff:x:50:app\napp:x:1000:\n"
                 b"nogroup:x:65534:\n",
    "etc/motd": b"conformance base\n",
}
names = sorted(set(dirs) | set(files) | {"bin/busybox"} | {"bin/" + a for a in applets if a != "busybox"})
for n in names:
    if n in dirs:
        d(n, dirs[n], *((1000, 1000) if n == "home/app" else (0, 0)))
    elif n in files:
        f(n, files[n])
    elif n == "bin/busybox":
        f(n, busybox, 0o755)
    else:
        l(n, "busybox")
t.close()
layer_bytes = layer.getvalue()

blobs = {}


def blob(data):
    h = hashlib.sha256(data).hexdigest()
    blobs[h] = data
    return "sha256:" + h


layer_digest = blob(layer_bytes)
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def image(cfg):
    config = {
        "created": "2023-11-14T22:13:20Z",
        "architecture": "amd64",
        "os": "linux",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "conformance mkbase.py"}],
    }
    cb = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": blob(cb), "size": len(cb)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": len(layer_bytes)}],
    }
    mb = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": blob(mb), "size": len(mb)}


base = image({"Env": [PATH], "Cmd": ["sh"]})
rich = image({
    "Env": [PATH, "RICH=1", "SHARED=from-base"],
    "Entrypoint": ["/bin/echo", "rich-entry"],
    "Cmd": ["rich-cmd"],
    "WorkingDir": "/srv",
    "User": "app",
    "ExposedPorts": {"8080/tcp": {}},
    "Volumes": {"/data": {}},
    "Labels": {"org.example.base": "rich", "shared": "base"},
    "StopSignal": "SIGQUIT",
    "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 30000000000},
    "OnBuild": ["LABEL onbuild.fired=yes", "RUN echo triggered > /tmp/onbuild-ran"],
})
base["annotations"] = {"org.opencontainers.image.ref.name": "localhost/conf-base:latest"}
rich["annotations"] = {"org.opencontainers.image.ref.name": "localhost/conf-rich:latest"}
index = json.dumps({"schemaVersion": 2, "manifests": [base, rich]}, sort_keys=True).encode()

with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as a:
    def add(name, data):
        i = tarfile.TarInfo(name)
        i.size, i.mtime, i.mode = len(data), MTIME, 0o644
        a.addfile(i, io.BytesIO(data))
    for name in ["blobs", "blobs/sha256"]:
        i = tarfile.TarInfo(name)
        i.type, i.mode, i.mtime = tarfile.DIRTYPE, 0o755, MTIME
        a.addfile(i)
    add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    add("index.json", index)
    for h in sorted(blobs):
        add("blobs/sha256/" + h, blobs[h])
