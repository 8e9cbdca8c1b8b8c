#!/usr/bin/env python3
"""Helpers of the differential conformance runner (run.sh); no part of kiln is used here.

  conform.py describe LAYOUT CONFIG OUT
      Unpacks the single image of the OCI layout LAYOUT with umoci (outside kiln) and writes
      OUT: one line per rootfs entry and per compared config field, "KEY<TAB>VALUE", sorted.
      CONFIG is the raw image config JSON (read with skopeo, which keeps Docker-only fields
      such as Healthcheck and OnBuild that an OCI conversion drops); "-" reads it from LAYOUT.
  conform.py compare CASE PEER KILN_DESC PEER_DESC KNOWN
      Prints the differences between kiln's and the peer's description, marking those
      listed in the known-differences file KNOWN; exit 0 when every difference is known,
      1 otherwise.
"""
import fnmatch, hashlib, json, os, shutil, stat, subprocess, sys, tempfile

FIELDS = ["Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes",
          "Labels", "StopSignal", "Healthcheck", "OnBuild"]


def blob(layout, digest):
    algo, hexd = digest.split(":", 1)
    with open(os.path.join(layout, "blobs", algo, hexd), "rb") as fh:
        return fh.read()


def describe(layout, config_path, out):
    with open(os.path.join(layout, "index.json")) as fh:
        index = json.load(fh)
    manifests = index.get("manifests", [])
    if len(manifests) != 1:
        sys.exit(f"{layout}: expected one manifest, found {len(manifests)}")
    # umoci finds images by tag; name the one manifest "conf" (kiln's layout has no tag)
    manifests[0].setdefault("annotations", {})["org.opencontainers.image.ref.name"] = "conf"
    with open(os.path.join(layout, "index.json"), "w") as fh:
        json.dump(index, fh)
    if config_path == "-":
        manifest = json.loads(blob(layout, manifests[0]["digest"]))
        config = json.loads(blob(layout, manifest["config"]["digest"]))
    else:
        with open(config_path) as fh:
            config = json.load(fh)
    lines = []
    cfg = config.get("config") or {}
    for field in FIELDS:
        v = cfg.get(field)
        if field == "Labels":
            for k in sorted(v or {}):
                lines.append((f"config.Labels.{k}", json.dumps(v[k])))
            continue
        if field in ("ExposedPorts", "Volumes"):
            v = sorted(v) if v else None
        if field in ("Cmd", "Entrypoint", "OnBuild", "Env") and v == []:
            v = None
        if field in ("WorkingDir", "User", "StopSignal") and v == "":
            v = None
        if v is not None:
            lines.append((f"config.{field}", json.dumps(v, sort_keys=True)))
    tmp = tempfile.mkdtemp(prefix="conf-unpack-", dir=os.path.dirname(os.path.abspath(out)))
    try:
        bundle = os.path.join(tmp, "bundle")
        r = subprocess.run(["umoci", "unpack", "--image", f"{layout}:conf", bundle],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"umoci unpack {layout} failed: {r.stderr}")
        root = os.path.join(bundle, "rootfs")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                p = os.path.join(dirpath, name)
                rel = "/" + os.path.relpath(p, root)
                st = os.lstat(p)
                mode = stat.S_IMODE(st.st_mode)
                own = f"{st.st_uid}:{st.st_gid}"
                if stat.S_ISLNK(st.st_mode):
                    v = f"symlink {own} -> {os.readlink(p)}"
                elif stat.S_ISDIR(st.st_mode):
                    v = f"dir {mode:04o} {own}"
                elif stat.S_ISREG(st.st_mode):
                    h = hashlib.sha256()
                    with open(p, "rb") as fh:
                        for chunk in iter(lambda: fh.read(1 << 20), b""):
                            h.update(chunk)
                    v = f"file {mode:04o} {own} size={st.st_size} sha256={h.hexdigest()[:16]}"
                elif stat.S_ISFIFO(st.st_mode):
                    v = f"fifo {mode:04o} {own}"
                elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    kind = "chr" if stat.S_ISCHR(st.st_mode) else "blk"
                    v = f"{kind} {mode:04o} {own} {os.major(st.st_rdev)},{os.minor(st.st_rdev)}"
                else:
                    v = f"other {mode:04o} {own}"
                lines.append((rel, v))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines.sort()
    with open(out, "w") as fh:
        for k, v in lines:
            fh.write(f"{k}\t{v}\n")


def load_desc(path):
    d = {}
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        for line in fh:
            k, _, v = line.rstrip("\n").partition("\t")
            d[k] = v
    return d


def load_known(path):
    rules = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            parts = s.split(None, 3)
            if len(parts) < 4:
                sys.exit(f"{path}:{n}: want 'CASE PEER FIELD REASON': {s}")
            rules.append((parts[0], parts[1], parts[2], parts[3], n))
    return rules


def known(rules, case, peer, key):
    for c, p, f, reason, n in rules:
        if fnmatch.fnmatchcase(case, c) and fnmatch.fnmatchcase(peer, p) and \
                fnmatch.fnmatchcase(key, f):
            return reason, n
    return None


def compare(case, peer, kiln_path, peer_path, known_path):
    rules = load_known(known_path)
    a, b = load_desc(kiln_path), load_desc(peer_path)
    diffs = []
    if a is None or b is None:
        # one side (or both) did not build: the "build" field
        ka = "failed" if a is None else "ok"
        kb = "failed" if b is None else "ok"
        if ka != kb or a is None:
            diffs.append(("build", f"kiln {ka}", f"{peer} {kb}"))
    else:
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                diffs.append((k, a.get(k, "(absent)"), b.get(k, "(absent)")))
    unexpected = 0
    out = []
    for k, va, vb in diffs:
        kn = known(rules, case, peer, k)
        if kn:
            out.append(f"  known  {k}: kiln: {va} | {peer}: {vb}  [{kn[0]}]")
        else:
            unexpected += 1
            out.append(f"  DIFF   {k}: kiln: {va} | {peer}: {vb}")
    if unexpected:
        print(f"FAIL {case} vs {peer}: {unexpected} unexpected difference(s)")
        print("\n".join(out))
    elif diffs and os.environ.get("CONF_VERBOSE"):
        print(f"ok   {case} vs {peer} ({len(diffs)} known difference(s))")
        print("\n".join(out))
    return 1 if unexpected else 0


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "describe" and len(sys.argv) == 5:
        describe(*sys.argv[2:5])
    elif cmd == "compare" and len(sys.argv) == 7:
        sys.exit(compare(*sys.argv[2:7]))
    else:
        sys.exit(__doc__)
