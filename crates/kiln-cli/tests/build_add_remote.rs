//! `ADD <url>` and `ADD <git url>`: downloads and checkouts from a test HTTP server on
//! 127.0.0.1 (std `TcpListener`, in this file; git over its dumb HTTP protocol), judged
//! from the exported rootfs read by python's tarfile, the server's request counts and
//! the progress events.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// One canned answer of the test server.
#[derive(Clone)]
struct Route {
    status: u16,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    /// Send no Content-Length: the body ends when the connection closes, so only a
    /// streaming limit can stop it.
    no_length: bool,
}

impl Route {
    fn ok(body: &[u8]) -> Route {
        Route {
            status: 200,
            body: body.to_vec(),
            headers: Vec::new(),
            no_length: false,
        }
    }

    fn header(mut self, k: &str, v: &str) -> Route {
        self.headers.push((k.into(), v.into()));
        self
    }
}

#[derive(Default)]
struct ServerState {
    routes: HashMap<String, Route>,
    hits: HashMap<String, usize>,
    /// 200 answers with a body (not 304s).
    full: HashMap<String, usize>,
    /// Paths not in `routes` are served from here (the dumb HTTP git repositories).
    static_dir: Option<PathBuf>,
}

/// A minimal HTTP/1.1 server: one thread per connection, `Connection: close`.
struct Server {
    port: u16,
    state: Arc<Mutex<ServerState>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ServerState::default()));
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        Server { port, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn route(&self, path: &str, r: Route) {
        self.state.lock().unwrap().routes.insert(path.into(), r);
    }

    fn serve_dir(&self, dir: &Path) {
        self.state.lock().unwrap().static_dir = Some(dir.to_path_buf());
    }

    fn hits(&self, path: &str) -> usize {
        *self.state.lock().unwrap().hits.get(path).unwrap_or(&0)
    }

    fn full(&self, path: &str) -> usize {
        *self.state.lock().unwrap().full.get(path).unwrap_or(&0)
    }
}

fn serve(conn: TcpStream, state: &Mutex<ServerState>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let mut if_none_match = None;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("if-none-match") {
                        if_none_match = Some(v.trim().to_string());
                    }
                }
            }
        }
    }
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let path = path.split('?').next().unwrap_or("/").to_string();
    let route = {
        let mut st = state.lock().unwrap();
        *st.hits.entry(path.clone()).or_insert(0) += 1;
        match st.routes.get(&path) {
            Some(r) => Some(r.clone()),
            None => st.static_dir.as_ref().and_then(|d| {
                let rel = path.trim_start_matches('/');
                if rel.split('/').any(|c| c == "..") {
                    return None;
                }
                std::fs::read(d.join(rel)).ok().map(|b| Route::ok(&b))
            }),
        }
    };
    let mut r = route.unwrap_or(Route {
        status: 404,
        body: b"not found\n".to_vec(),
        headers: Vec::new(),
        no_length: false,
    });
    let etag = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("etag"))
        .map(|(_, v)| v.clone());
    if etag.is_some() && etag == if_none_match {
        r.status = 304;
        r.body.clear();
    } else if r.status == 200 {
        *state.lock().unwrap().full.entry(path.clone()).or_insert(0) += 1;
    }
    let mut out = conn;
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", r.status);
    if !r.no_length {
        head.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
    }
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(&r.body);
    let _ = out.flush();
}

/// Every entry of a tar with its mtime: name → {type, mode, uid, gid, mtime, data}.
fn entries(p: &Path) -> BTreeMap<String, Value> {
    let script = r#"
import sys, tarfile, json
out = {}
with tarfile.open(sys.argv[1]) as t:
    for m in t.getmembers():
        name = m.name
        while name.startswith('./'):
            name = name[2:]
        name = name.strip('/')
        e = {'type': m.type.decode(), 'mode': m.mode, 'uid': m.uid, 'gid': m.gid,
             'mtime': int(m.mtime), 'link': m.linkname}
        if m.isfile():
            e['data'] = t.extractfile(m).read().decode('utf-8', 'replace')
        out[name] = e
print(json.dumps(out))
"#;
    serde_json::from_str(&py(script, &[p.to_str().unwrap()])).expect("tar dump JSON")
}

/// Builds `ctx` to a rootfs tar; returns (entries, progress events).
fn build(
    env: &Env,
    ctx: &Path,
    out: &str,
    extra: &[&str],
) -> (BTreeMap<String, Value>, Vec<Value>) {
    let dest = env.path(out);
    let spec = format!("type=tar,dest={}", dest.display());
    let mut args = vec!["-o", spec.as_str()];
    args.extend_from_slice(extra);
    let ev = build_json(env, ctx, &args);
    (entries(&dest), ev)
}

fn build_fails(env: &Env, ctx: &Path, extra: &[&str]) -> String {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    env.fail(&args).1
}

fn cached_steps(ev: &[Value], needle: &str) -> usize {
    steps_with(ev, "cached")
        .iter()
        .filter(|d| d.contains(needle))
        .count()
}

fn write_dockerfile(ctx: &Path, text: &str) {
    std::fs::write(ctx.join("Dockerfile"), text).unwrap();
}

const PASSWD: &str = "root:x:0:0::/root:/bin/sh\napp:x:1234:2345::/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\ngrp:x:2345:\n";
/// 2020-01-02 03:04:05 UTC
const LAST_MODIFIED: (&str, i64) = ("Thu, 02 Jan 2020 03:04:05 GMT", 1577934245);

#[test]
fn add_url_names_modes_mtimes_owners_and_unpack() {
    let env = Env::new();
    let srv = Server::start();
    srv.route(
        "/files/data.txt",
        Route::ok(b"hello\n")
            .header("Last-Modified", LAST_MODIFIED.0)
            // BuildKit names the file from the URL path and ignores this header.
            .header(
                "Content-Disposition",
                "attachment; filename=\"fromheader.txt\"",
            ),
    );
    srv.route("/files/", Route::ok(b"listing\n"));
    let tar = env.path("arch.tar");
    py_tar(
        &tar,
        &[],
        "dir_('d')\nreg('d/t2', b'T2\\n')\nreg('t1', b'T1\\n', 0o640)\n",
    );
    srv.route("/dl/arch.tar", Route::ok(&std::fs::read(&tar).unwrap()));
    let u = |p: &str| srv.url(p);
    let dockerfile = format!(
        "FROM scratch
COPY passwd /etc/passwd
COPY group /etc/group
ADD {data} /named/
ADD {data} /asfile
ADD {dir} /unnamed/
ADD --chown=app:grp --chmod=0755 {data} /owned
ADD --chmod=u+x,g+r {data} /symbolic
ADD {tar} /tar-kept/
ADD --unpack=true {tar} /tar-unpacked/
",
        data = u("/files/data.txt"),
        dir = u("/files/"),
        tar = u("/dl/arch.tar"),
    );
    let ctx = context(
        &env,
        "ctx",
        &[
            ("Dockerfile", &dockerfile),
            ("passwd", PASSWD),
            ("group", GROUP),
        ],
    );
    let (fs, _) = build(&env, &ctx, "out.tar", &[]);

    // Name from the URL path; mode 0600; owner 0:0; mtime from Last-Modified.
    assert_eq!(entry_data(&fs, "named/data.txt"), "hello\n");
    assert!(
        !fs.contains_key("named/fromheader.txt"),
        "Content-Disposition was used"
    );
    for f in ["named/data.txt", "asfile"] {
        assert_eq!(fs[f]["mode"], 0o600, "{f}: {}", fs[f]);
        assert_eq!(fs[f]["uid"], 0, "{f}");
        assert_eq!(fs[f]["gid"], 0, "{f}");
        assert_eq!(fs[f]["mtime"], LAST_MODIFIED.1, "{f}");
    }
    assert_eq!(fs["asfile"]["type"], "0");
    // No path segment: BuildKit's `__unnamed__`; no Last-Modified: mtime 0.
    assert_eq!(entry_data(&fs, "unnamed/__unnamed__"), "listing\n");
    assert_eq!(fs["unnamed/__unnamed__"]["mtime"], 0);
    // --chown by name from the destination's passwd/group, --chmod octal and symbolic
    // (applied to the 0600 download).
    assert_eq!(fs["owned"]["uid"], 1234);
    assert_eq!(fs["owned"]["gid"], 2345);
    assert_eq!(fs["owned"]["mode"], 0o755);
    assert_eq!(fs["symbolic"]["mode"], 0o740);
    // A downloaded archive is a file unless --unpack=true.
    assert_eq!(fs["tar-kept/arch.tar"]["type"], "0");
    assert!(!fs.contains_key("tar-kept/t1"));
    assert_eq!(entry_data(&fs, "tar-unpacked/t1"), "T1\n");
    assert_eq!(fs["tar-unpacked/t1"]["mode"], 0o640);
    assert_eq!(entry_data(&fs, "tar-unpacked/d/t2"), "T2\n");
    assert!(!fs.contains_key("tar-unpacked/arch.tar"));
    env.assert_store_clean();
}

fn sha256_hex(data: &[u8]) -> String {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), data).unwrap();
    sha256_file(f.path())
}

#[test]
fn add_url_checksum_is_verified_and_a_pinned_url_hits_without_downloading() {
    let env = Env::new();
    let srv = Server::start();
    srv.route("/tool.bin", Route::ok(b"tool v1\n"));
    let good = sha256_hex(b"tool v1\n");
    let ctx = context(&env, "ctx", &[]);
    write_dockerfile(
        &ctx,
        &format!(
            "FROM scratch\nADD --checksum={good} {} /opt/\n",
            srv.url("/tool.bin")
        ),
    );
    let (fs, _) = build(&env, &ctx, "a.tar", &[]);
    assert_eq!(entry_data(&fs, "opt/tool.bin"), "tool v1\n");
    assert_eq!(srv.hits("/tool.bin"), 1);
    // The key is the checksum: a rebuild is a hit without a request.
    let (_, ev) = build(&env, &ctx, "b.tar", &[]);
    assert_eq!(
        cached_steps(&ev, "ADD "),
        1,
        "{:?}",
        steps_with(&ev, "cached")
    );
    assert_eq!(
        srv.hits("/tool.bin"),
        1,
        "a pinned URL was downloaded again"
    );

    // A wrong checksum fails before anything is committed, naming the URL, both digests
    // and the Dockerfile line.
    let bad = format!("sha256:{}", "0".repeat(64));
    write_dockerfile(
        &ctx,
        &format!(
            "FROM scratch\n\nADD --checksum={bad} {} /opt/\n",
            srv.url("/tool.bin")
        ),
    );
    let err = build_fails(&env, &ctx, &[]);
    for needle in [srv.url("/tool.bin").as_str(), &bad, &good, "Dockerfile:3"] {
        assert!(err.contains(needle), "error lacks {needle:?}:\n{err}");
    }
    // A malformed checksum names the flag.
    write_dockerfile(
        &ctx,
        &format!(
            "FROM scratch\nADD --checksum=md5:abc {} /opt/\n",
            srv.url("/tool.bin")
        ),
    );
    let err = build_fails(&env, &ctx, &[]);
    assert!(
        err.contains("--checksum") && err.contains("md5:abc"),
        "{err}"
    );
    // A checksum pins one remote source: on a local file it is refused at its line.
    std::fs::write(ctx.join("local.txt"), "l\n").unwrap();
    write_dockerfile(
        &ctx,
        &format!("FROM scratch\nADD --checksum={good} local.txt /x\n"),
    );
    let err = build_fails(&env, &ctx, &[]);
    assert!(
        err.contains("--checksum needs exactly one source") && err.contains(":2"),
        "{err}"
    );
    env.assert_store_clean();
}

#[test]
fn add_url_without_checksum_is_cached_by_content() {
    let env = Env::new();
    let srv = Server::start();
    srv.route("/f.txt", Route::ok(b"one\n"));
    let ctx = context(&env, "ctx", &[]);
    write_dockerfile(
        &ctx,
        &format!("FROM scratch\nADD {} /f.txt\n", srv.url("/f.txt")),
    );
    let (fs, ev) = build(&env, &ctx, "a.tar", &[]);
    assert_eq!(entry_data(&fs, "f.txt"), "one\n");
    assert_eq!(cached_steps(&ev, "ADD "), 0);
    // Same content: downloaded again (the URL is re-checked on every build), but a hit.
    let (_, ev) = build(&env, &ctx, "b.tar", &[]);
    assert_eq!(srv.hits("/f.txt"), 2);
    assert_eq!(
        cached_steps(&ev, "ADD "),
        1,
        "{:?}",
        steps_with(&ev, "cached")
    );
    // New content at the same URL: a miss, and the new bytes.
    srv.route("/f.txt", Route::ok(b"two\n"));
    let (fs, ev) = build(&env, &ctx, "c.tar", &[]);
    assert_eq!(cached_steps(&ev, "ADD "), 0);
    assert_eq!(entry_data(&fs, "f.txt"), "two\n");
    env.assert_store_clean();
}

#[test]
fn add_url_limits_and_http_errors_name_the_url_limit_and_flag() {
    let env = Env::new();
    let srv = Server::start();
    srv.route("/big", Route::ok(&[b'x'; 100]));
    let mut streamed = Route::ok(&[b'y'; 100]);
    streamed.no_length = true;
    srv.route("/stream", streamed);
    let ctx = context(&env, "ctx", &[]);
    for path in ["/big", "/stream"] {
        write_dockerfile(&ctx, &format!("FROM scratch\nADD {} /x\n", srv.url(path)));
        let err = build_fails(&env, &ctx, &["--max-download-size", "10"]);
        for needle in [srv.url(path).as_str(), "10 bytes", "--max-download-size"] {
            assert!(
                err.contains(needle),
                "{path}: error lacks {needle:?}:\n{err}"
            );
        }
        // Within the limit the same download works.
        let (fs, _) = build(&env, &ctx, "ok.tar", &["--max-download-size", "100"]);
        assert_eq!(fs["x"]["type"], "0", "{path}");
    }
    write_dockerfile(
        &ctx,
        &format!("FROM scratch\nADD {} /x\n", srv.url("/missing")),
    );
    let err = build_fails(&env, &ctx, &[]);
    assert!(
        err.contains(&srv.url("/missing")) && err.contains("404"),
        "{err}"
    );
    env.assert_store_clean();
}

fn git(dir: &Path, args: &[&str], date: &str) -> String {
    sh_ok(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .env("GIT_AUTHOR_DATE", date)
            .env("GIT_COMMITTER_DATE", date)
            .env("GIT_CONFIG_NOSYSTEM", "1"),
    )
}

/// A work repository and its bare copy under `srv/repo.git`, served over dumb HTTP.
struct Repo {
    work: PathBuf,
    bare: PathBuf,
}

impl Repo {
    fn publish(&self) {
        sh_ok(
            Command::new("git")
                .arg("-C")
                .arg(&self.work)
                .args(["push", "-q", "--tags", "-f"])
                .arg(&self.bare)
                .arg("main"),
        );
        git(&self.bare, &["update-server-info"], "2021-01-01T00:00:00Z");
    }
}

const T1: (&str, i64) = ("2021-05-06T07:08:09Z", 1620284889);
const T2: (&str, i64) = ("2022-01-01T00:00:00Z", 1640995200);

fn make_repo(env: &Env) -> Repo {
    let work = env.path("work");
    std::fs::create_dir_all(work.join("sub")).unwrap();
    sh_ok(
        Command::new("git")
            .args(["init", "-q", "-b", "main"])
            .arg(&work),
    );
    std::fs::write(work.join("a.txt"), "one\n").unwrap();
    std::fs::write(work.join("sub/s.sh"), "#!/bin/sh\n").unwrap();
    std::os::unix::fs::symlink("../a.txt", work.join("sub/link")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        work.join("sub/s.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    git(&work, &["add", "."], T1.0);
    git(&work, &["commit", "-q", "-m", "one"], T1.0);
    git(&work, &["tag", "-a", "-m", "v1", "v1"], T1.0);
    std::fs::write(work.join("a.txt"), "two\n").unwrap();
    git(&work, &["commit", "-q", "-am", "two"], T2.0);
    let bare = env.path("srv/repo.git");
    sh_ok(
        Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&bare),
    );
    let r = Repo { work, bare };
    r.publish();
    r
}

#[test]
fn add_git_ref_subdir_keep_git_dir_mtimes_and_cache_by_commit() {
    if !need("git") {
        return;
    }
    let env = Env::new();
    let repo = make_repo(&env);
    let srv = Server::start();
    srv.serve_dir(&env.path("srv"));
    let url = srv.url("/repo.git");
    let v1_commit = git(&repo.work, &["rev-parse", "v1^{commit}"], T1.0)
        .trim()
        .to_string();
    let dockerfile = format!(
        "FROM scratch
ADD {url}#v1 /v1/
ADD {url}#main:sub /sub
ADD --keep-git-dir {url} /kept/
ADD --checksum={v1_commit} {url}#v1 /pinned
ADD --exclude=*.txt {url}#v1 /excluded/
"
    );
    let ctx = context(&env, "ctx", &[("Dockerfile", &dockerfile)]);
    let (fs, _) = build(&env, &ctx, "a.tar", &[]);

    // A tag (annotated) gives that commit's tree, without .git.
    assert_eq!(entry_data(&fs, "v1/a.txt"), "one\n");
    assert!(!fs.keys().any(|k| k.starts_with("v1/.git")), "v1 kept .git");
    assert_eq!(entry_data(&fs, "pinned/a.txt"), "one\n");
    assert!(!fs.contains_key("excluded/a.txt"), "--exclude ignored");
    assert_eq!(entry_data(&fs, "excluded/sub/s.sh"), "#!/bin/sh\n");
    // `#ref:subdir` copies the subdirectory's contents; modes and symlinks are kept.
    assert_eq!(entry_data(&fs, "sub/s.sh"), "#!/bin/sh\n");
    assert_eq!(fs["sub/s.sh"]["mode"], 0o755);
    assert_eq!(fs["sub/link"]["type"], "2");
    assert_eq!(fs["sub/link"]["link"], "../a.txt");
    assert!(!fs.contains_key("sub/a.txt"));
    // No ref: HEAD (main); --keep-git-dir keeps a usable .git.
    assert_eq!(entry_data(&fs, "kept/a.txt"), "two\n");
    assert!(fs.contains_key("kept/.git/HEAD"), "no .git kept");
    // Owners 0:0 and every checked-out file at its commit's time.
    for (name, t) in [
        ("v1/a.txt", T1.1),
        ("v1/sub/s.sh", T1.1),
        ("sub/s.sh", T2.1),
        ("kept/a.txt", T2.1),
    ] {
        assert_eq!(fs[name]["mtime"], t, "{name}: {}", fs[name]);
        assert_eq!(fs[name]["uid"], 0, "{name}");
        assert_eq!(fs[name]["gid"], 0, "{name}");
    }

    // Cached by the resolved commit: nothing changed, every ADD is a hit.
    let (_, ev) = build(&env, &ctx, "b.tar", &[]);
    assert_eq!(
        cached_steps(&ev, "ADD "),
        5,
        "{:?}",
        steps_with(&ev, "cached")
    );
    // A new commit on main: the main/HEAD steps miss, the tag steps still hit.
    std::fs::write(repo.work.join("sub/new.txt"), "new\n").unwrap();
    git(&repo.work, &["add", "."], T2.0);
    git(&repo.work, &["commit", "-q", "-m", "three"], T2.0);
    repo.publish();
    let (fs, ev) = build(&env, &ctx, "c.tar", &[]);
    assert_eq!(entry_data(&fs, "sub/new.txt"), "new\n");
    assert_eq!(entry_data(&fs, "kept/sub/new.txt"), "new\n");
    let cached = steps_with(&ev, "cached");
    // (The pinned step comes after the changed ones, so its base changed: a miss.)
    assert_eq!(cached_steps(&ev, "#v1 /v1/"), 1, "{cached:?}");
    assert_eq!(cached_steps(&ev, "#main:sub"), 0, "{cached:?}");

    // A checksum that is not the commit fails, naming both.
    write_dockerfile(
        &ctx,
        &format!(
            "FROM scratch\nADD --checksum={} {url}#v1 /x/\n",
            "f".repeat(40)
        ),
    );
    let err = build_fails(&env, &ctx, &[]);
    assert!(
        err.contains(&v1_commit) && err.contains(&"f".repeat(40)) && err.contains(&url),
        "{err}"
    );
    // An unknown ref names the ref and the URL.
    write_dockerfile(&ctx, &format!("FROM scratch\nADD {url}#nope /x/\n"));
    let err = build_fails(&env, &ctx, &[]);
    assert!(err.contains("\"nope\"") && err.contains(&url), "{err}");
    env.assert_store_clean();
}

#[test]
fn add_git_ref_that_looks_like_an_option_is_refused() {
    if !need("git") {
        return;
    }
    let env = Env::new();
    let srv = Server::start();
    let marker = env.path("pwned");
    let ctx = context(&env, "ctx", &[]);
    write_dockerfile(
        &ctx,
        &format!(
            "FROM scratch\nADD {}#--upload-pack=touch${{IFS}}{} /x/\n",
            srv.url("/r.git"),
            marker.display()
        ),
    );
    let err = build_fails(&env, &ctx, &[]);
    assert!(err.contains("invalid ref"), "{err}");
    assert!(!marker.exists(), "git ran an option from the Dockerfile");
}

#[test]
fn add_git_subdir_symlink_cannot_leave_the_checkout() {
    if !need("git") {
        return;
    }
    let env = Env::new();
    let repo = make_repo(&env);
    // A subdir that is a symlink climbing out of the work tree, and one to an absolute
    // host path: both must resolve inside the checkout.
    std::os::unix::fs::symlink("../../../../../..", repo.work.join("up")).unwrap();
    std::os::unix::fs::symlink("/etc", repo.work.join("abs")).unwrap();
    git(&repo.work, &["add", "."], T2.0);
    git(&repo.work, &["commit", "-q", "-m", "links"], T2.0);
    repo.publish();
    let srv = Server::start();
    srv.serve_dir(&env.path("srv"));
    let url = srv.url("/repo.git");
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM scratch\nADD {url}#main:up /up/\n"),
        )],
    );
    // `up` clamps at the checkout's root: its own files, nothing from around it (the temp
    // dir beside the work tree holds kiln's `template/`).
    let (fs, _) = build(&env, &ctx, "up.tar", &[]);
    assert_eq!(entry_data(&fs, "up/a.txt"), "two\n");
    assert!(
        !fs.keys()
            .any(|k| k.contains("template") || k.starts_with("up/tmp")),
        "escaped the checkout: {:?}",
        fs.keys().collect::<Vec<_>>()
    );
    // `/etc` is looked up inside the checkout, where it does not exist.
    write_dockerfile(&ctx, &format!("FROM scratch\nADD {url}#main:abs /abs/\n"));
    let err = build_fails(&env, &ctx, &[]);
    assert!(
        err.contains("\"/abs\": not found in git repository"),
        "{err}"
    );

    // The checkout counts against --max-download-size, naming the flag.
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM scratch\nADD {url}#v1 /v1/\n"),
    )
    .unwrap();
    let err = build_fails(&env, &ctx, &["--max-download-size", "5"]);
    assert!(
        err.contains("--max-download-size") && err.contains("5 bytes") && err.contains(&url),
        "{err}"
    );
}

#[test]
fn add_url_with_an_etag_is_revalidated_not_downloaded_again() {
    let env = Env::new();
    let srv = Server::start();
    srv.route("/e.bin", Route::ok(b"v1\n").header("ETag", "\"one\""));
    let ctx = context(&env, "ctx", &[]);
    write_dockerfile(
        &ctx,
        &format!("FROM scratch\nADD {} /e.bin\n", srv.url("/e.bin")),
    );
    let (fs, _) = build(&env, &ctx, "a.tar", &[]);
    assert_eq!(entry_data(&fs, "e.bin"), "v1\n");
    assert_eq!((srv.hits("/e.bin"), srv.full("/e.bin")), (1, 1));
    // Re-checked with If-None-Match: a 304, no body, and a hit.
    let (_, ev) = build(&env, &ctx, "b.tar", &[]);
    assert_eq!((srv.hits("/e.bin"), srv.full("/e.bin")), (2, 1));
    assert_eq!(
        cached_steps(&ev, "ADD "),
        1,
        "{:?}",
        steps_with(&ev, "cached")
    );
    // A miss after a 304 (here --no-cache) downloads the bytes for real.
    let (fs, ev) = build(&env, &ctx, "c.tar", &["--no-cache"]);
    assert_eq!(cached_steps(&ev, "ADD "), 0);
    assert_eq!(entry_data(&fs, "e.bin"), "v1\n");
    assert_eq!((srv.hits("/e.bin"), srv.full("/e.bin")), (4, 2));
    // New content under a new ETag: downloaded, a miss, the new bytes.
    srv.route("/e.bin", Route::ok(b"v2\n").header("ETag", "\"two\""));
    let (fs, ev) = build(&env, &ctx, "d.tar", &[]);
    assert_eq!(cached_steps(&ev, "ADD "), 0);
    assert_eq!(entry_data(&fs, "e.bin"), "v2\n");
    // A server that keeps the ETag but changes the bytes is caught when they are
    // fetched for a miss, before anything is written.
    srv.route("/e.bin", Route::ok(b"v3\n").header("ETag", "\"two\""));
    let err = build_fails(&env, &ctx, &["--no-cache"]);
    assert!(
        err.contains("content changed during the build") && err.contains(&srv.url("/e.bin")),
        "{err}"
    );
    // ... and the next build downloads again instead of trusting that ETag.
    let (fs, _) = build(&env, &ctx, "e.tar", &[]);
    assert_eq!(entry_data(&fs, "e.bin"), "v3\n");
    env.assert_store_clean();
}
