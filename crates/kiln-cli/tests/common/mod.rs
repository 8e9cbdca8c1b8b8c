//! Helpers for the end-to-end tests: run the real `kiln` binary against a temporary store and
//! judge the results with independent tools (tar, skopeo, umoci, podman, python's tarfile).
//!
//! Every test makes its own [`Env`] (a temp dir holding its own `KILN_ROOT`), so tests are
//! independent and may run in parallel.

#![allow(dead_code)]

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// The workspace root (two levels above this crate's manifest).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Is an external tool available? Missing tools fail the test under CI (where
/// scripts/setup.sh must have run) and skip it with a message elsewhere.
pub fn need(tool: &str) -> bool {
    let found = if tool.starts_with('/') {
        Path::new(tool).exists()
    } else {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if found {
        return true;
    }
    let msg = format!("{tool} is missing: run scripts/setup.sh (as root) to install it");
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

pub fn out_str(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn err_str(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs an external command, panicking with its output when it fails.
pub fn sh_ok(cmd: &mut Command) -> String {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        out_str(&o),
        err_str(&o)
    );
    out_str(&o)
}

/// One test's world: a temp dir with a store at `root` (empty until kiln creates it).
pub struct Env {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("kiln-e2e-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().join("store");
        Env { dir, root }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `kiln` with this env's store in `KILN_ROOT`, run from the temp dir.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(KILN);
        c.args(args)
            .env("KILN_ROOT", &self.root)
            .env_remove("KILN_LOG")
            .current_dir(self.dir.path());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run kiln {args:?}: {e}"))
    }

    /// Runs kiln, asserts exit 0, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "kiln {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            o.status,
            out_str(&o),
            err_str(&o)
        );
        out_str(&o)
    }

    /// Runs kiln, asserts a non-zero exit, returns (code, stderr).
    pub fn fail(&self, args: &[&str]) -> (i32, String) {
        let o = self.run(args);
        assert!(
            !o.status.success(),
            "kiln {args:?} unexpectedly succeeded:\nstdout: {}\nstderr: {}",
            out_str(&o),
            err_str(&o)
        );
        (o.status.code().unwrap_or(-1), err_str(&o))
    }

    pub fn images(&self) -> Vec<Value> {
        let v: Value = serde_json::from_str(&self.ok(&["images", "--format", "json"]))
            .expect("images --format json is JSON");
        v.as_array().expect("images JSON is an array").clone()
    }

    /// The full references (`docker.io/library/x:latest`) of all images.
    pub fn references(&self) -> BTreeSet<String> {
        self.images()
            .iter()
            .filter_map(|i| i["reference"].as_str().map(str::to_string))
            .collect()
    }

    pub fn inspect(&self, r: &str) -> Value {
        let v: Value =
            serde_json::from_str(&self.ok(&["inspect", r])).expect("inspect prints JSON");
        v[0].clone()
    }

    pub fn layer_digests(&self, r: &str) -> Vec<String> {
        self.inspect(r)["Manifest"]["layers"]
            .as_array()
            .expect("manifest layers")
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.root.join("blobs/sha256").join(hex)
    }

    /// Blob file names present in the store.
    pub fn blobs(&self) -> BTreeSet<String> {
        let dir = self.root.join("blobs/sha256");
        match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
                .collect(),
            Err(_) => BTreeSet::new(),
        }
    }

    /// Digests reachable from index.json, read with serde_json (not with kiln).
    pub fn reachable(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let index = match std::fs::read(self.root.join("index.json")) {
            Ok(b) => b,
            Err(_) => return out,
        };
        let index: Value = serde_json::from_slice(&index).expect("index.json is JSON");
        let mut todo: Vec<Value> = index["manifests"].as_array().cloned().unwrap_or_default();
        while let Some(desc) = todo.pop() {
            let d = desc["digest"]
                .as_str()
                .expect("descriptor digest")
                .to_string();
            if !out.insert(d.clone()) {
                continue;
            }
            let mt = desc["mediaType"].as_str().unwrap_or("");
            if mt.contains("manifest") || mt.contains("index") {
                let bytes = std::fs::read(self.blob_path(&d))
                    .unwrap_or_else(|e| panic!("manifest blob {d} missing: {e}"));
                let m: Value = serde_json::from_slice(&bytes).expect("manifest JSON");
                if let Some(ms) = m["manifests"].as_array() {
                    todo.extend(ms.iter().cloned());
                }
                if m["config"].is_object() {
                    out.insert(m["config"]["digest"].as_str().unwrap().to_string());
                }
                for l in m["layers"].as_array().into_iter().flatten() {
                    out.insert(l["digest"].as_str().unwrap().to_string());
                }
            }
        }
        out
    }

    /// After `kiln prune`: every blob is reachable from index.json, every reachable blob
    /// exists, `kiln/tmp` is empty, `kiln fsck` is clean.
    pub fn assert_store_clean(&self) {
        if !self.root.exists() {
            return;
        }
        self.ok(&["prune"]);
        let blobs = self.blobs();
        let reachable = self.reachable();
        let stray: Vec<_> = blobs.difference(&reachable).collect();
        assert!(
            stray.is_empty(),
            "blobs not reachable from index.json after prune: {stray:?}"
        );
        let missing: Vec<_> = reachable.difference(&blobs).collect();
        assert!(missing.is_empty(), "referenced blobs missing: {missing:?}");
        let tmp = self.root.join("kiln/tmp");
        if tmp.exists() {
            let left: Vec<_> = std::fs::read_dir(&tmp)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert!(left.is_empty(), "kiln/tmp not empty after prune: {left:?}");
        }
        self.assert_fsck_clean();
    }

    pub fn assert_fsck_clean(&self) {
        let o = self.run(&["fsck", "--format", "json"]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "fsck --format json is not JSON ({e}): {}{}",
                out_str(&o),
                err_str(&o)
            )
        });
        assert!(
            o.status.success() && v["clean"] == Value::Bool(true),
            "fsck not clean: {v:#}\n{}",
            err_str(&o)
        );
    }
}

/// Writes the busybox rootfs tarball with scripts/mk-busybox-rootfs.sh. `None` (after a
/// message) when busybox-static is missing outside CI; a panic under CI.
pub fn busybox_tar(env: &Env) -> Option<PathBuf> {
    if !need("/bin/busybox") {
        return None;
    }
    let out = env.path("busybox-rootfs.tar");
    if !out.exists() {
        sh_ok(
            Command::new("bash")
                .arg(workspace().join("scripts/mk-busybox-rootfs.sh"))
                .arg(&out),
        );
    }
    Some(out)
}

/// The base image later tests build on: busybox-static's rootfs imported as `busybox` with
/// `CMD ["sh"]`. Returns the rootfs tarball it came from.
pub fn busybox_image(env: &Env) -> Option<PathBuf> {
    let tar = busybox_tar(env)?;
    let id = env.ok(&[
        "import",
        tar.to_str().unwrap(),
        "-t",
        "busybox",
        "--change",
        r#"CMD ["sh"]"#,
    ]);
    assert!(
        id.trim().starts_with("sha256:"),
        "import prints the id: {id}"
    );
    Some(tar)
}

/// A tiny rootfs tarball (a directory, a file, a symlink), made with python's tarfile.
pub fn tiny_tar(env: &Env, name: &str, content: &str) -> PathBuf {
    let out = env.path(name);
    py_tar(
        &out,
        &[],
        &format!("dir_('etc')\nreg('etc/hello', {content:?}.encode())\nsym('etc/link', 'hello')\n"),
    );
    out
}

/// Python prelude for crafting tar archives with exactly the names given (tarfile does not
/// clean names passed through `TarInfo`). `out` is argv[1]; further args follow.
const PY_PRELUDE: &str = r#"
import io, sys, tarfile, gzip, json, hashlib, os
out = sys.argv[1]
args = sys.argv[2:]
t = tarfile.open(out, 'w', format=tarfile.PAX_FORMAT)
def _ti(name, typ, mode):
    ti = tarfile.TarInfo(name)
    ti.type = typ
    ti.mode = mode
    ti.mtime = 1700000000
    return ti
def reg(name, data=b'x', mode=0o644):
    ti = _ti(name, tarfile.REGTYPE, mode)
    ti.size = len(data)
    t.addfile(ti, io.BytesIO(data))
def dir_(name, mode=0o755):
    t.addfile(_ti(name, tarfile.DIRTYPE, mode))
def sym(name, target):
    ti = _ti(name, tarfile.SYMTYPE, 0o777)
    ti.linkname = target
    t.addfile(ti)
def hard(name, target):
    ti = _ti(name, tarfile.LNKTYPE, 0o644)
    ti.linkname = target
    t.addfile(ti)
def copy_from(path, rename=None, alter=None, skip=None):
    # copy every member of another tar; rename(name)->name, alter(name, bytes)->bytes,
    # skip(name)->bool drops a member
    with tarfile.open(path) as src:
        for m in src.getmembers():
            if skip and skip(m.name):
                continue
            data = src.extractfile(m).read() if m.isfile() else None
            if rename:
                m.name = rename(m.name)
            if data is not None:
                if alter:
                    data = alter(m.name, data)
                m.size = len(data)
                t.addfile(m, io.BytesIO(data))
            else:
                t.addfile(m)
"#;

/// Runs python3 with [`PY_PRELUDE`] and `body`, writing a tar at `out`; `t` is closed after
/// `body` runs.
pub fn py_tar(out: &Path, args: &[&str], body: &str) {
    assert!(need("python3"), "python3 is needed to craft test archives");
    let script = format!("{PY_PRELUDE}\n{body}\nt.close()\n");
    sh_ok(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(out)
            .args(args),
    );
}

/// Runs a python snippet (no tar prelude) with args.
pub fn py(script: &str, args: &[&str]) -> String {
    assert!(need("python3"), "python3 is needed");
    sh_ok(Command::new("python3").arg("-c").arg(script).args(args))
}

/// What a tree holds: relative path → (kind, permission bits, content or link target).
pub type Snapshot = BTreeMap<String, (char, u32, Vec<u8>)>;

pub fn snapshot(dir: &Path) -> Snapshot {
    fn walk(base: &Path, dir: &Path, out: &mut Snapshot) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let mode = md.permissions().mode() & 0o7777;
            let ft = md.file_type();
            if ft.is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.insert(rel, ('l', 0, t.as_os_str().as_encoded_bytes().to_vec()));
            } else if ft.is_dir() {
                out.insert(rel, ('d', mode, Vec::new()));
                walk(base, &p, out);
            } else if ft.is_file() {
                out.insert(rel, ('f', mode, std::fs::read(&p).unwrap()));
            } else {
                out.insert(rel, ('?', mode, md.rdev().to_le_bytes().to_vec()));
            }
        }
    }
    let mut out = Snapshot::new();
    walk(dir, dir, &mut out);
    out
}

/// Compares two snapshots, reporting the first few differences by path.
pub fn assert_same_tree(expected: &Snapshot, actual: &Snapshot, what: &str) {
    let mut diffs = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => diffs.push(format!("missing {k}")),
            Some(a) if a != v => diffs.push(format!(
                "{k}: expected {} {:o} ({} bytes), got {} {:o} ({} bytes)",
                v.0,
                v.1,
                v.2.len(),
                a.0,
                a.1,
                a.2.len()
            )),
            _ => {}
        }
    }
    for k in actual.keys() {
        if !expected.contains_key(k) {
            diffs.push(format!("extra {k}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{what}: {} differences, first: {:#?}",
        diffs.len(),
        &diffs[..diffs.len().min(20)]
    );
}

/// A victim directory outside any target, with a file, a subdir and a symlink.
pub struct Victim {
    pub dir: PathBuf,
    before: Snapshot,
}

impl Victim {
    pub fn new(env: &Env) -> Victim {
        let dir = env.path("victim");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("secret"), b"do not touch\n").unwrap();
        std::fs::write(dir.join("sub/file"), b"nested\n").unwrap();
        std::os::unix::fs::symlink("secret", dir.join("link")).unwrap();
        let before = snapshot(&dir);
        Victim { dir, before }
    }

    pub fn path(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    pub fn assert_unchanged(&self) {
        assert_same_tree(
            &self.before,
            &snapshot(&self.dir),
            "victim directory changed",
        );
    }
}

/// sha256 of a file by `sha256sum` (an independent tool).
pub fn sha256_file(p: &Path) -> String {
    let out = sh_ok(Command::new("sha256sum").arg(p));
    format!("sha256:{}", out.split_whitespace().next().unwrap())
}

/// `tar tvf` of a file (compression detected by GNU tar), one line per entry.
pub fn tar_list(p: &Path) -> Vec<String> {
    sh_ok(Command::new("tar").arg("-tvf").arg(p))
        .lines()
        .map(str::to_string)
        .collect()
}

/// `tar tf` names.
pub fn tar_names(p: &Path) -> Vec<String> {
    sh_ok(Command::new("tar").arg("-tf").arg(p))
        .lines()
        .map(str::to_string)
        .collect()
}

/// Writes a build context under the env's temp dir: `files` are (relative path, content);
/// parent directories are created. Returns the context directory.
pub fn context(env: &Env, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = env.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (rel, content) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }
    dir
}

/// `kiln build --progress json` of `ctx` with extra args; asserts success and returns the
/// progress events (one JSON object per stderr line).
pub fn build_json(env: &Env, ctx: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["build", "--progress", "json"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let o = env.run(&args);
    assert!(
        o.status.success(),
        "kiln {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        out_str(&o),
        err_str(&o)
    );
    events(&err_str(&o))
}

/// Parses a `--progress json` stream (stderr; non-JSON lines are ignored).
pub fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.is_object())
        .collect()
}

/// Step descriptions with an event of `kind` (e.g. "cached", "started").
pub fn steps_with(events: &[Value], kind: &str) -> BTreeSet<String> {
    events
        .iter()
        .filter(|e| e["kind"] == kind)
        .filter_map(|e| e["description"].as_str().map(str::to_string))
        .collect()
}

/// Imports busybox as `busybox` with a fixed SOURCE_DATE_EPOCH, so two stores ("machines")
/// get byte-identical base images. None when busybox-static is missing.
pub fn import_reproducible_busybox(env: &Env, epoch: &str) -> Option<()> {
    let tar = busybox_tar(env)?;
    // Relative: the history's created_by names the tarball as given.
    let name = tar.file_name().unwrap().to_str().unwrap();
    let o = env
        .cmd(&["import", name, "-t", "busybox", "--change", r#"CMD ["sh"]"#])
        .env("SOURCE_DATE_EPOCH", epoch)
        .output()
        .unwrap();
    assert!(o.status.success(), "import: {}", err_str(&o));
    Some(())
}

/// The record of a shared-cache config whose step description contains `needle`.
pub fn cache_record<'a>(config: &'a Value, needle: &str) -> &'a Value {
    config["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["description"].as_str().unwrap().contains(needle))
        .unwrap_or_else(|| panic!("no record for {needle}: {config:#}"))
}

/// The step descriptions of a shared-cache config's records.
pub fn record_descriptions(config: &Value) -> BTreeSet<String> {
    config["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["description"].as_str().unwrap().to_string())
        .collect()
}

/// The steps a build started, without FROM and kiln's internal ones.
pub fn steps_after_from(events: &[Value]) -> BTreeSet<String> {
    steps_with(events, "started")
        .into_iter()
        .filter(|d| !d.starts_with("[internal]") && !d.contains("FROM"))
        .collect()
}

/// Steps reported cached with the given reason (e.g. "from cache DIR").
pub fn cached_from(events: &[Value], reason: &str) -> BTreeSet<String> {
    events
        .iter()
        .filter(|e| e["kind"] == "cached" && e["reason"].as_str() == Some(reason))
        .filter_map(|e| e["description"].as_str().map(str::to_string))
        .collect()
}

/// Builds `ctx` and exports the target's rootfs with `--output type=local`; returns the dir.
pub fn build_rootfs(env: &Env, ctx: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let dest = env.path(name);
    let spec = format!("type=local,dest={}", dest.display());
    let mut args = vec!["-o", spec.as_str()];
    args.extend_from_slice(extra);
    build_json(env, ctx, &args);
    dest
}

/// `kiln build -q -t TAG ctx extra…`: the image id printed.
pub fn build_tag(env: &Env, ctx: &Path, tag: &str, extra: &[&str]) -> String {
    let mut args = vec!["build", "-q", "-t", tag];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    env.ok(&args).trim().to_string()
}

/// The image config (`Config.config`) of a stored image.
pub fn image_config(env: &Env, r: &str) -> Value {
    env.inspect(r)["Config"]["config"].clone()
}

/// Every entry of a (possibly compressed) tar read by python's tarfile: normalised name
/// (no leading `./` or `/`) → {type, mode, uid, gid, data (utf-8 lossy), link}.
pub fn tar_entries(p: &Path) -> BTreeMap<String, Value> {
    let script = r#"
import sys, tarfile, json
out = {}
with tarfile.open(sys.argv[1]) as t:
    for m in t.getmembers():
        name = m.name
        while name.startswith('./'):
            name = name[2:]
        name = name.lstrip('/').rstrip('/')
        e = {'type': m.type.decode(), 'mode': m.mode, 'uid': m.uid, 'gid': m.gid,
             'link': m.linkname}
        if m.isfile():
            e['data'] = t.extractfile(m).read().decode('utf-8', 'replace')
        out[name] = e
print(json.dumps(out))
"#;
    let s = py(script, &[p.to_str().unwrap()]);
    serde_json::from_str(&s).expect("tar dump JSON")
}

/// Builds `ctx` with `--output type=tar` and returns the rootfs entries.
pub fn build_rootfs_tar(
    env: &Env,
    ctx: &Path,
    name: &str,
    extra: &[&str],
) -> BTreeMap<String, Value> {
    let dest = env.path(name);
    let spec = format!("type=tar,dest={}", dest.display());
    let mut args = vec!["-o", spec.as_str()];
    args.extend_from_slice(extra);
    build_json(env, ctx, &args);
    tar_entries(&dest)
}

/// The content of a regular file entry of [`tar_entries`].
pub fn entry_data<'a>(entries: &'a BTreeMap<String, Value>, name: &str) -> &'a str {
    entries.get(name).unwrap_or_else(|| {
        panic!(
            "{name} missing from the rootfs; have {:?}",
            entries
                .keys()
                .filter(|k| !k.starts_with("bin/") && !k.starts_with("usr/"))
                .collect::<Vec<_>>()
        )
    })["data"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} is not a regular file: {}", entries[name]))
}
