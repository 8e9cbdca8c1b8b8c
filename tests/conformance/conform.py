#!/usr/bin/env python3
"""Helpers of the differential conformance runner (run.sh); no part of kiln is used here.

  conform.py describe LAYOUT CONFIG OUT
      Applies the layers of the single image of the OCI layout LAYOUT in order (python's
      tarfile, OCI whiteout rules; CONF_UNPACK=umoci unpacks with umoci instead) and writes
      OUT: one line per rootfs entry and per compared config field, "KEY<TAB>VALUE", sorted.
      CONFIG is the raw image config JSON (read with skopeo, which keeps Docker-only fields
      such as Healthcheck and OnBuild that an OCI conversion drops); "-" reads it from LAYOUT.
  conform.py compare CASE PEER KILN_DESC PEER_DESC KNOWN
      Prints the differences between kiln's and the peer's description, marking those
      listed in the known-differences file KNOWN; exit 0 when every difference is known,
      1 otherwise.
"""
import fnmatch, hashlib, json, os, shutil, stat, subprocess, sys, tarfile, tempfile

FIELDS = ["Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes",
          "Labels", "StopSignal", "Healthcheck", "OnBuild"]


def blob(layout, digest):
    algo, hexd = digest.split(":", 1)
    with open(os.path.join(layout, "blobs", algo, hexd), "rb") as fh:
        return fh.read()


def manifest_of(layout, desc):
    return json.loads(blob(layout, desc["digest"]))


def entry_value(kind, mode, uid, gid, size=0, digest="", link="", rdev=""):
    own = f"{uid}:{gid}"
    if kind == "symlink":
        return f"symlink {own} -> {link}"
    if kind == "dir":
        return f"dir {mode:04o} {own}"
    if kind == "file":
        return f"file {mode:04o} {own} size={size} sha256={digest[:16]}"
    if kind in ("chr", "blk"):
        return f"{kind} {mode:04o} {own} {rdev}"
    return f"{kind} {mode:04o} {own}"


def norm(name):
    while name.startswith("./"):
        name = name[2:]
    return "/" + name.strip("/")


def layer_entries(layout, digest):
    """[(op, path, value)] of one layer blob, in tar order: op "add", "whiteout" (path
    removed), "opaque" (the directory's lower content removed) or "hardlink" (value is the
    target path). Cached by blob digest under $CONF_LAYER_CACHE (layers shared by many
    cases, such as the base, are read once)."""
    cache_dir = os.environ.get("CONF_LAYER_CACHE")
    cache = os.path.join(cache_dir, digest.replace(":", "-") + ".json") if cache_dir else None
    if cache and os.path.exists(cache):
        with open(cache) as fh:
            return json.load(fh)
    algo, hexd = digest.split(":", 1)
    out = []
    with tarfile.open(os.path.join(layout, "blobs", algo, hexd), "r:*") as t:
        for m in t:
            name = norm(m.name)
            if name == "/":
                continue
            parent, base = name.rsplit("/", 1)
            if base == ".wh..wh..opq":
                out.append(("opaque", parent or "/", ""))
                continue
            if base.startswith(".wh."):
                out.append(("whiteout", (parent or "") + "/" + base[4:], ""))
                continue
            mode = m.mode & 0o7777
            if m.islnk():
                out.append(("hardlink", name, norm(m.linkname)))
            elif m.issym():
                out.append(("add", name, entry_value("symlink", mode, m.uid, m.gid, link=m.linkname)))
            elif m.isdir():
                out.append(("add", name, entry_value("dir", mode, m.uid, m.gid)))
            elif m.isreg():
                h = hashlib.sha256()
                fh = t.extractfile(m)
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
                out.append(("add", name, entry_value("file", mode, m.uid, m.gid, m.size, h.hexdigest())))
            elif m.isfifo():
                out.append(("add", name, entry_value("fifo", mode, m.uid, m.gid)))
            elif m.ischr() or m.isblk():
                kind = "chr" if m.ischr() else "blk"
                out.append(("add", name, entry_value(kind, mode, m.uid, m.gid,
                                                     rdev=f"{m.devmajor},{m.devminor}")))
            else:
                out.append(("add", name, entry_value("other", mode, m.uid, m.gid)))
    if cache:
        tmp = cache + f".{os.getpid()}"
        with open(tmp, "w") as fh:
            json.dump(out, fh)
        os.replace(tmp, cache)
    return out


def apply_layer(tree, entries):
    """Applies one layer's entries to tree (path -> value) with OCI layer semantics:
    whiteouts and opaque directories remove only what lower layers had; a non-directory
    replaces whatever was at its path (a directory with all it held); a directory entry
    over a directory changes only its metadata."""
    lower = set(tree)
    def drop(path, only_lower):
        prefix = path.rstrip("/") + "/"
        for k in [k for k in tree if k.startswith(prefix) or k == path]:
            if not only_lower or k in lower:
                del tree[k]
    for op, path, value in entries:
        if op == "whiteout":
            drop(path, True)
        elif op == "opaque":
            prefix = path.rstrip("/") + "/"
            for k in [k for k in tree if k.startswith(prefix) and k in lower]:
                del tree[k]
        else:
            if op == "hardlink":
                value = tree.get(value, f"hardlink to missing {value}")
            old = tree.get(path)
            if old is not None and not (old.startswith("dir ") and value.startswith("dir ")):
                drop(path, False)
            tree[path] = value
            lower.discard(path)


def walk_umoci(layout, out):
    """The rootfs entries as umoci unpacks them (CONF_UNPACK=umoci; a cross-check of the
    in-process layer reader, slower)."""
    lines = []
    tmp = tempfile.mkdtemp(prefix="conf-unpack-", dir=os.path.dirname(os.path.abspath(out)))
    try:
        bundle = os.path.join(tmp, "bundle")
        r = subprocess.run(["umoci", "unpack", "--image", f"{layout}:conf", bundle],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"umoci unpack {layout} failed: {r.stderr}")
        root = os.path.join(bundle, "rootfs")
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                rel = "/" + os.path.relpath(p, root)
                st = os.lstat(p)
                mode = stat.S_IMODE(st.st_mode)
                if stat.S_ISLNK(st.st_mode):
                    v = entry_value("symlink", mode, st.st_uid, st.st_gid, link=os.readlink(p))
                elif stat.S_ISDIR(st.st_mode):
                    v = entry_value("dir", mode, st.st_uid, st.st_gid)
                elif stat.S_ISREG(st.st_mode):
                    h = hashlib.sha256()
                    with open(p, "rb") as fh:
                        for chunk in iter(lambda: fh.read(1 << 20), b""):
                            h.update(chunk)
                    v = entry_value("file", mode, st.st_uid, st.st_gid, st.st_size, h.hexdigest())
                elif stat.S_ISFIFO(st.st_mode):
                    v = entry_value("fifo", mode, st.st_uid, st.st_gid)
                elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    kind = "chr" if stat.S_ISCHR(st.st_mode) else "blk"
                    v = entry_value(kind, mode, st.st_uid, st.st_gid,
                                    rdev=f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}")
                else:
                    v = entry_value("other", mode, st.st_uid, st.st_gid)
                lines.append((rel, v))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return lines


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
    if os.environ.get("CONF_UNPACK") == "umoci":
        lines.extend(walk_umoci(layout, out))
    else:
        tree = {}
        for layer in manifest_of(layout, manifests[0])["layers"]:
            apply_layer(tree, layer_entries(layout, layer["digest"]))
        lines.extend(tree.items())
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


def unused(known_path, used_path, peers):
    """Prints the rules no difference of this run needed (for peers that ran)."""
    used = set()
    if os.path.exists(used_path):
        with open(used_path) as fh:
            used = set(fh.read().splitlines())
    peers = peers.split()
    for c, p, f, reason, n in load_known(known_path):
        if f"{c} {p} {f}" not in used and any(fnmatch.fnmatchcase(x, p) for x in peers):
            print(f"conformance: note: known-differences.txt:{n} matched nothing: {c} {p} {f}")


def known(rules, case, peer, key):
    for c, p, f, reason, n in rules:
        if fnmatch.fnmatchcase(case, c) and fnmatch.fnmatchcase(peer, p) and \
                fnmatch.fnmatchcase(key, f):
            return reason, f"{c} {p} {f}"
    return None


def compare(case, peer, kiln_path, peer_path, known_path):
    rules = load_known(known_path)
    a, b = load_desc(kiln_path), load_desc(peer_path)
    diffs = []
    expect_fail = bool(os.environ.get("CONF_EXPECT_FAIL"))
    if expect_fail or a is None or b is None:
        # one side (or both) did not build: the "build" field. A case with an expect-fail
        # file passes only when every builder refuses it.
        ka = "failed" if a is None else "ok"
        kb = "failed" if b is None else "ok"
        if expect_fail:
            if a is not None or b is not None:
                diffs.append(("build", f"kiln {ka}", f"{peer} {kb} (both should fail)"))
        elif ka != kb or a is None:
            diffs.append(("build", f"kiln {ka}", f"{peer} {kb}"))
    else:
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                diffs.append((k, a.get(k, "(absent)"), b.get(k, "(absent)")))
    unexpected = 0
    out = []
    used = set()
    for k, va, vb in diffs:
        kn = known(rules, case, peer, k)
        if kn:
            used.add(kn[1])
            out.append(f"  known  {k}: kiln: {va} | {peer}: {vb}  [{kn[0]}]")
        else:
            unexpected += 1
            out.append(f"  DIFF   {k}: kiln: {va} | {peer}: {vb}")
    if os.environ.get("CONF_USED"):
        with open(os.environ["CONF_USED"], "a") as fh:
            fh.writelines(f"{n}\n" for n in sorted(used))
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
    elif cmd == "unused" and len(sys.argv) == 5:
        unused(*sys.argv[2:5])
    elif cmd == "compare" and len(sys.argv) == 7:
        sys.exit(compare(*sys.argv[2:7]))
    else:
        sys.exit(__doc__)
