python3 - <<'PY'
import io, tarfile
t = tarfile.open("owned.tar", "w")
def add(name, typ, mode, uid, gid, data=b""):
    i = tarfile.TarInfo(name); i.type = typ; i.mode = mode; i.uid = uid; i.gid = gid; i.mtime = 1700000000
    if typ == tarfile.REGTYPE: i.size = len(data)
    t.addfile(i, io.BytesIO(data) if data else None)
add("d", tarfile.DIRTYPE, 0o750, 1000, 1000)
add("d/f", tarfile.REGTYPE, 0o640, 1001, 50, b"owned\n")
add("g", tarfile.REGTYPE, 0o4755, 0, 0, b"setuid\n")
t.close()
PY
