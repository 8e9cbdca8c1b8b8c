//! Data-driven COPY / ADD cases: a context fixture, a destination fixture, the
//! instruction's sources/dest/options, and the expected destination tree or error.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use kiln_context::{copy_into, Chmod, Context, CopyOpts};
use kiln_fs::SafeRoot;

struct Case {
    name: &'static str,
    ctx: &'static [(&'static str, &'static str)],
    dst: &'static [(&'static str, &'static str)],
    src: &'static [&'static str],
    dest: &'static str,
    workdir: &'static str,
    opts: fn(&mut CopyOpts),
    /// `path=f:text`, `path=d`, `path=l:target`, `path#755` (mode), `path@uid:gid`,
    /// `path!` (absent), `written=path` (in the report), or `err:substring`.
    expect: &'static [&'static str],
}

fn none(_: &mut CopyOpts) {}

const BASIC: &[(&str, &str)] = &[
    ("a.txt", "f:A"),
    ("b.txt", "f:B"),
    ("c.md", "f:C"),
    ("dir/one", "f:1"),
    ("dir/sub/two", "f:2"),
    ("dir/sub/skip.log", "f:L"),
];

const CASES: &[Case] = &[
    Case {
        name: "file to file",
        ctx: BASIC,
        dst: &[],
        src: &["a.txt"],
        dest: "/out.txt",
        workdir: "/",
        opts: none,
        expect: &["out.txt=f:A", "written=out.txt"],
    },
    Case {
        name: "file to dir slash",
        ctx: BASIC,
        dst: &[],
        src: &["a.txt"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["app/a.txt=f:A", "app=d", "written=app", "written=app/a.txt"],
    },
    Case {
        name: "file to existing dir without slash",
        ctx: BASIC,
        dst: &[("app", "d")],
        src: &["a.txt"],
        dest: "/app",
        workdir: "/",
        opts: none,
        expect: &["app/a.txt=f:A"],
    },
    Case {
        name: "file to missing name without slash",
        ctx: BASIC,
        dst: &[],
        src: &["a.txt"],
        dest: "/app",
        workdir: "/",
        opts: none,
        expect: &["app=f:A"],
    },
    Case {
        name: "dir contents rule",
        ctx: BASIC,
        dst: &[],
        src: &["dir"],
        dest: "/app",
        workdir: "/",
        opts: none,
        expect: &["app/one=f:1", "app/sub/two=f:2", "app/dir!"],
    },
    Case {
        name: "dir contents to slash",
        ctx: BASIC,
        dst: &[],
        src: &["dir/"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["app/one=f:1", "app/sub/two=f:2"],
    },
    Case {
        name: "context root",
        ctx: BASIC,
        dst: &[],
        src: &["."],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["app/a.txt=f:A", "app/dir/sub/two=f:2"],
    },
    Case {
        name: "wildcard star",
        ctx: BASIC,
        dst: &[],
        src: &["*.txt"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["app/a.txt=f:A", "app/b.txt=f:B", "app/c.md!"],
    },
    Case {
        name: "wildcard dir star",
        ctx: BASIC,
        dst: &[],
        src: &["dir/*"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["app/one=f:1", "app/two=f:2", "app/sub!"],
    },
    Case {
        name: "wildcard question",
        ctx: BASIC,
        dst: &[],
        src: &["?.txt"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["app/a.txt=f:A", "app/b.txt=f:B"],
    },
    Case {
        name: "wildcard class",
        ctx: BASIC,
        dst: &[],
        src: &["[ab].*"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["app/a.txt=f:A", "app/b.txt=f:B", "app/c.md!"],
    },
    Case {
        name: "wildcard middle component",
        ctx: &[
            ("src/x/main.c", "f:X"),
            ("src/y/main.c", "f:Y"),
            ("src/y/other.c", "f:O"),
        ],
        dst: &[],
        src: &["src/*/main.c"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["app/main.c=f:Y", "app/other.c!"],
    },
    Case {
        name: "wildcard single match no slash",
        ctx: BASIC,
        dst: &[],
        src: &["c.*"],
        dest: "/notes",
        workdir: "/",
        opts: none,
        expect: &["notes=f:C"],
    },
    Case {
        name: "multiple sources to dir",
        ctx: BASIC,
        dst: &[],
        src: &["a.txt", "c.md"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["app/a.txt=f:A", "app/c.md=f:C"],
    },
    Case {
        name: "multiple sources without slash",
        ctx: BASIC,
        dst: &[],
        src: &["a.txt", "c.md"],
        dest: "/app",
        workdir: "/",
        opts: none,
        expect: &["err:must be a directory and end with a /"],
    },
    Case {
        name: "wildcard many without slash",
        ctx: BASIC,
        dst: &[],
        src: &["*.txt"],
        dest: "/app",
        workdir: "/",
        opts: none,
        expect: &["err:must be a directory and end with a /"],
    },
    Case {
        name: "relative dest joins workdir",
        ctx: BASIC,
        dst: &[],
        src: &["a.txt"],
        dest: "sub/",
        workdir: "/work",
        opts: none,
        expect: &["work/sub/a.txt=f:A"],
    },
    Case {
        name: "dot dest is workdir",
        ctx: BASIC,
        dst: &[],
        src: &["a.txt"],
        dest: ".",
        workdir: "/work",
        opts: none,
        expect: &["work/a.txt=f:A"],
    },
    Case {
        name: "dest dotdot clamped",
        ctx: BASIC,
        dst: &[],
        src: &["a.txt"],
        dest: "../../../x",
        workdir: "/w",
        opts: none,
        expect: &["x=f:A"],
    },
    Case {
        name: "default owner root and modes kept",
        ctx: &[("run.sh", "x:#!"), ("d/f", "f:F")],
        dst: &[],
        src: &["."],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["app/run.sh#755", "app/d/f#644", "app/run.sh@0:0"],
    },
    Case {
        name: "chown files and created parents",
        ctx: BASIC,
        dst: &[],
        src: &["dir"],
        dest: "/a/b/",
        workdir: "/",
        opts: |o| o.chown = Some((1000, 1001)),
        expect: &[
            "a@1000:1001",
            "a/b@1000:1001",
            "a/b/one@1000:1001",
            "a/b/sub@1000:1001",
            "a/b/sub/two@1000:1001",
        ],
    },
    Case {
        name: "chown leaves existing dirs",
        ctx: BASIC,
        dst: &[("app", "d")],
        src: &["a.txt"],
        dest: "/app/",
        workdir: "/",
        opts: |o| o.chown = Some((7, 7)),
        expect: &["app@0:0", "app/a.txt@7:7"],
    },
    Case {
        name: "chmod octal files and dirs",
        ctx: BASIC,
        dst: &[],
        src: &["dir"],
        dest: "/app/",
        workdir: "/",
        opts: |o| o.chmod = Some(Chmod::parse("751").unwrap()),
        expect: &["app/one#751", "app/sub#751", "app/sub/two#751", "app#755"],
    },
    Case {
        name: "chmod symbolic",
        ctx: &[("f", "f:x"), ("d/g", "f:y")],
        dst: &[],
        src: &["."],
        dest: "/app/",
        workdir: "/",
        opts: |o| o.chmod = Some(Chmod::parse("u+x,g-r,o=").unwrap()),
        expect: &["app/f#700", "app/d/g#700", "app/d#710", "app#755"],
    },
    Case {
        name: "chmod symbolic X",
        ctx: &[("f", "f:x"), ("d/g", "x:y")],
        dst: &[],
        src: &["."],
        dest: "/app/",
        workdir: "/",
        opts: |o| o.chmod = Some(Chmod::parse("a+X").unwrap()),
        expect: &["app/f#644", "app/d/g#755", "app/d#755"],
    },
    Case {
        name: "ADD plain tar extracts",
        ctx: &[("a.tar", "tar")],
        dst: &[],
        src: &["a.tar"],
        dest: "/opt/",
        workdir: "/",
        opts: |o| o.unpack_archives = true,
        expect: &[
            "opt/x/inner.txt=f:inner",
            "opt/a.tar!",
            "opt/x/inner.txt@42:0",
            "written=opt/x/inner.txt",
            "written=opt/x",
        ],
    },
    Case {
        name: "ADD gzip tar extracts",
        ctx: &[("a.tar.gz", "tgz")],
        dst: &[],
        src: &["a.tar.gz"],
        dest: "/opt",
        workdir: "/",
        opts: |o| o.unpack_archives = true,
        expect: &["opt/x/inner.txt=f:inner"],
    },
    Case {
        name: "ADD zstd tar extracts",
        ctx: &[("a.tzst", "tzst")],
        dst: &[],
        src: &["a.tzst"],
        dest: "/opt/",
        workdir: "/",
        opts: |o| o.unpack_archives = true,
        expect: &["opt/x/inner.txt=f:inner"],
    },
    Case {
        name: "ADD archive chown",
        ctx: &[("a.tar.gz", "tgz")],
        dst: &[],
        src: &["a.tar.gz"],
        dest: "/opt/",
        workdir: "/",
        opts: |o| {
            o.unpack_archives = true;
            o.chown = Some((5, 6))
        },
        // BuildKit: the archive's owners stay; --chown reaches only the dest dir ADD made.
        expect: &["opt/x/inner.txt@42:0", "opt/x@0:0", "opt@5:6"],
    },
    Case {
        name: "ADD non-archive copied",
        ctx: &[("notes.tar.gz", "f:not a tar")],
        dst: &[],
        src: &["notes.tar.gz"],
        dest: "/opt/",
        workdir: "/",
        opts: |o| o.unpack_archives = true,
        expect: &["opt/notes.tar.gz=f:not a tar"],
    },
    Case {
        name: "COPY of tar not extracted",
        ctx: &[("a.tar.gz", "tgz")],
        dst: &[],
        src: &["a.tar.gz"],
        dest: "/opt/",
        workdir: "/",
        opts: none,
        expect: &["opt/x!", "opt/a.tar.gz#644"],
    },
    Case {
        name: "exclude pattern",
        ctx: BASIC,
        dst: &[],
        src: &["dir"],
        dest: "/app/",
        workdir: "/",
        opts: |o| o.exclude = vec!["**/*.log".into()],
        expect: &["app/sub/two=f:2", "app/sub/skip.log!"],
    },
    Case {
        name: "exclude top-level wildcard match",
        ctx: BASIC,
        dst: &[],
        src: &["*"],
        dest: "/app/",
        workdir: "/",
        opts: |o| o.exclude = vec!["*.md".into()],
        expect: &["app/a.txt=f:A", "app/c.md!"],
    },
    Case {
        name: "exclude with exception",
        ctx: BASIC,
        dst: &[],
        src: &["dir"],
        dest: "/app/",
        workdir: "/",
        opts: |o| o.exclude = vec!["sub".into(), "!sub/two".into()],
        expect: &["app/sub/two=f:2", "app/sub/skip.log!", "app/one=f:1"],
    },
    Case {
        name: "parents with pivot",
        ctx: &[("a/b/c/f.txt", "f:F")],
        dst: &[],
        src: &["a/./b/c/f.txt"],
        dest: "/out/",
        workdir: "/",
        opts: |o| o.parents = true,
        expect: &["out/b/c/f.txt=f:F", "out/a!"],
    },
    Case {
        name: "parents without pivot",
        ctx: &[("a/b/f.txt", "f:F"), ("a/c/f.txt", "f:G")],
        dst: &[],
        src: &["a/*/f.txt"],
        dest: "/out/",
        workdir: "/",
        opts: |o| o.parents = true,
        expect: &["out/a/b/f.txt=f:F", "out/a/c/f.txt=f:G"],
    },
    Case {
        name: "empty wildcard error",
        ctx: BASIC,
        dst: &[],
        src: &["*.none"],
        dest: "/app/",
        workdir: "/",
        opts: |o| o.allow_empty_wildcard = false,
        expect: &["err:no files matched"],
    },
    Case {
        name: "empty wildcard allowed",
        ctx: BASIC,
        dst: &[],
        src: &["*.none"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["app!"],
    },
    Case {
        name: "missing source error",
        ctx: BASIC,
        dst: &[],
        src: &["nope.txt"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["err:\"nope.txt\": not found in build context"],
    },
    Case {
        name: "dockerignored source is missing",
        ctx: &[(".dockerignore", "f:secret*\n"), ("secret.key", "f:S")],
        dst: &[],
        src: &["secret.key"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["err:not found in build context"],
    },
    Case {
        name: "dockerignore filters dir copy",
        ctx: &[
            (".dockerignore", "f:*.log\n!keep.log"),
            ("a.log", "f:A"),
            ("keep.log", "f:K"),
            ("b", "f:B"),
        ],
        dst: &[],
        src: &["."],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["app/a.log!", "app/keep.log=f:K", "app/b=f:B"],
    },
    Case {
        name: "hostile symlink to /etc copied as symlink",
        ctx: &[("etc", "l:/etc"), ("ok", "f:1")],
        dst: &[],
        src: &["."],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["app/etc=l:/etc", "app/ok=f:1"],
    },
    Case {
        name: "hostile top-level symlink followed only in-root",
        ctx: &[("link", "l:/etc/passwd")],
        dst: &[],
        src: &["link"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["err:not found in build context"],
    },
    Case {
        name: "top-level symlink followed in-root",
        ctx: &[("link", "l:/real/f"), ("real/f", "f:R")],
        dst: &[],
        src: &["link"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["app/link=f:R"],
    },
    Case {
        name: "top-level symlink not followed",
        ctx: &[("link", "l:/etc/passwd")],
        dst: &[],
        src: &["link"],
        dest: "/app/",
        workdir: "/",
        opts: |o| o.follow_symlinks = false,
        expect: &["app/link=l:/etc/passwd"],
    },
    Case {
        name: "dotdot source confined",
        ctx: &[("a", "f:A")],
        dst: &[],
        src: &["../../etc/passwd"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["err:not found in build context"],
    },
    Case {
        name: "dotdot source clamps to context file",
        ctx: &[("etc/passwd", "f:mine")],
        dst: &[],
        src: &["../../etc/passwd"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["app/passwd=f:mine"],
    },
    Case {
        name: "source through symlinked dir stays in root",
        ctx: &[("ln", "l:/"), ("data/f", "f:D")],
        dst: &[],
        src: &["ln/data/f", "ln/../../etc/hostname"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["err:not found in build context"],
    },
    Case {
        name: "source through symlinked dir ok",
        ctx: &[("ln", "l:../data"), ("data/f", "f:D")],
        dst: &[],
        src: &["ln/f"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["app/f=f:D"],
    },
    Case {
        name: "dest through symlink stays in dest root",
        ctx: BASIC,
        dst: &[("app", "l:/etc"), ("etc", "d")],
        src: &["a.txt"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["etc/a.txt=f:A", "app=l:/etc", "written=etc/a.txt"],
    },
    Case {
        name: "dest dangling symlink dir created in root",
        ctx: BASIC,
        dst: &[("app", "l:/nowhere/deep")],
        src: &["a.txt"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["nowhere/deep/a.txt=f:A"],
    },
    Case {
        name: "dir merge into existing symlinked dir",
        ctx: &[("lib/x", "f:X")],
        dst: &[("lib", "l:usr/lib"), ("usr/lib/old", "f:O")],
        src: &["."],
        dest: "/",
        workdir: "/",
        opts: none,
        expect: &["usr/lib/x=f:X", "usr/lib/old=f:O", "lib=l:usr/lib"],
    },
    Case {
        name: "file replaces existing symlink",
        ctx: BASIC,
        dst: &[("etc", "d"), ("app/a.txt", "l:/etc/shadow")],
        src: &["a.txt"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["app/a.txt=f:A", "etc/shadow!"],
    },
    Case {
        name: "hardlinks preserved",
        ctx: &[("d/a", "f:same"), ("d/b", "h:d/a")],
        dst: &[],
        src: &["d"],
        dest: "/app/",
        workdir: "/",
        opts: none,
        expect: &["app/a=f:same", "app/b=f:same", "hardlinked=app/a,app/b"],
    },
    Case {
        name: "clamp mtime",
        ctx: &[("a", "f:A")],
        dst: &[],
        src: &["a"],
        dest: "/app/",
        workdir: "/",
        opts: |o| o.clamp_mtime = Some(1000),
        expect: &["mtime=app/a,1000"],
    },
];

fn check(case: &Case, dst: &Path, report: &kiln_context::CopyReport) {
    for e in case.expect {
        let n = case.name;
        if let Some(w) = e.strip_prefix("written=") {
            assert!(
                report.written.iter().any(|p| p == Path::new(w)),
                "{n}: {w} not in {:?}",
                report.written
            );
        } else if let Some(h) = e.strip_prefix("hardlinked=") {
            let (a, b) = h.split_once(',').unwrap();
            assert_eq!(
                fs::metadata(dst.join(a)).unwrap().ino(),
                fs::metadata(dst.join(b)).unwrap().ino(),
                "{n}"
            );
        } else if let Some(m) = e.strip_prefix("mtime=") {
            let (p, t) = m.split_once(',').unwrap();
            assert_eq!(
                fs::symlink_metadata(dst.join(p)).unwrap().mtime(),
                t.parse::<i64>().unwrap(),
                "{n}"
            );
        } else if let Some(p) = e.strip_suffix('!') {
            assert!(
                fs::symlink_metadata(dst.join(p)).is_err(),
                "{n}: {p} should not exist"
            );
        } else if let Some((p, mode)) = e.split_once('#') {
            let m =
                fs::symlink_metadata(dst.join(p)).unwrap_or_else(|_| panic!("{n}: {p} missing"));
            assert_eq!(
                format!("{:o}", m.permissions().mode() & 0o7777),
                mode,
                "{n}: mode of {p}"
            );
        } else if let Some((p, owner)) = e.split_once('@') {
            let m = fs::symlink_metadata(dst.join(p)).unwrap();
            assert_eq!(
                format!("{}:{}", m.uid(), m.gid()),
                owner,
                "{n}: owner of {p}"
            );
        } else if let Some((p, what)) = e.split_once('=') {
            let path = dst.join(p);
            let m = fs::symlink_metadata(&path).unwrap_or_else(|_| panic!("{n}: {p} missing"));
            let (kind, arg) = what.split_once(':').unwrap_or((what, ""));
            match kind {
                "f" => {
                    assert!(m.is_file(), "{n}: {p} not a file");
                    assert_eq!(
                        fs::read_to_string(&path).unwrap(),
                        arg,
                        "{n}: content of {p}"
                    );
                }
                "d" => assert!(m.is_dir(), "{n}: {p} not a dir"),
                "l" => assert_eq!(
                    fs::read_link(&path).unwrap(),
                    Path::new(arg),
                    "{n}: link {p}"
                ),
                _ => panic!("bad expectation {e}"),
            }
        } else {
            panic!("bad expectation {e}");
        }
    }
}

#[test]
fn copy_cases() {
    assert!(CASES.len() >= 40, "{} cases", CASES.len());
    let root = kiln_fs::running_as_root();
    for case in CASES {
        let needs_root = case.expect.iter().any(|e| e.contains('@'));
        if needs_root && !root {
            eprintln!("skipping {} (needs root for chown)", case.name);
            continue;
        }
        let ctx_dir = tempfile::tempdir().unwrap();
        let dst_dir = tempfile::tempdir().unwrap();
        common::build(ctx_dir.path(), case.ctx);
        common::build(dst_dir.path(), case.dst);
        let ctx = Context::open(ctx_dir.path(), "Dockerfile").unwrap();
        let dst = SafeRoot::open(dst_dir.path()).unwrap();
        let mut opts = CopyOpts {
            allow_empty_wildcard: true,
            ..CopyOpts::default()
        };
        (case.opts)(&mut opts);
        let sources: Vec<String> = case.src.iter().map(|s| s.to_string()).collect();
        let res = ctx.copy_into(&sources, &dst, case.dest, case.workdir, &opts);
        match case.expect.iter().find_map(|e| e.strip_prefix("err:")) {
            Some(want) => {
                let err = res
                    .err()
                    .unwrap_or_else(|| panic!("{}: expected error", case.name));
                let msg = err.to_string();
                assert!(
                    msg.contains(want),
                    "{}: error {msg:?} lacks {want:?}",
                    case.name
                );
            }
            None => {
                let report = res.unwrap_or_else(|e| panic!("{}: {e}", case.name));
                check(case, dst_dir.path(), &report);
            }
        }
    }
}

#[test]
fn missing_source_names_context_dir() {
    let ctx_dir = tempfile::tempdir().unwrap();
    let dst_dir = tempfile::tempdir().unwrap();
    let ctx = Context::open(ctx_dir.path(), "Dockerfile").unwrap();
    let dst = SafeRoot::open(dst_dir.path()).unwrap();
    let err = ctx
        .copy_into(&["x".into()], &dst, "/", "/", &CopyOpts::default())
        .unwrap_err()
        .to_string();
    let canon = ctx_dir.path().canonicalize().unwrap();
    assert!(err.contains(&canon.display().to_string()), "{err}");
}

#[test]
fn copy_from_stage_preserves_owner() {
    if !kiln_fs::running_as_root() {
        return;
    }
    let src_dir = tempfile::tempdir().unwrap();
    let dst_dir = tempfile::tempdir().unwrap();
    common::build(src_dir.path(), &[("usr/bin/tool", "x:bin")]);
    std::os::unix::fs::lchown(src_dir.path().join("usr/bin/tool"), Some(33), Some(44)).unwrap();
    let src = SafeRoot::open(src_dir.path()).unwrap();
    let dst = SafeRoot::open(dst_dir.path()).unwrap();
    let opts = CopyOpts {
        preserve_owner: true,
        source_name: "stage builder".into(),
        ..CopyOpts::default()
    };
    copy_into(&src, &["/usr/bin/tool".into()], &dst, "/bin/", "/", &opts).unwrap();
    let m = fs::metadata(dst_dir.path().join("bin/tool")).unwrap();
    assert_eq!((m.uid(), m.gid()), (33, 44));
    let err = copy_into(&src, &["/nope".into()], &dst, "/bin/", "/", &opts).unwrap_err();
    assert!(
        err.to_string().contains("not found in stage builder"),
        "{err}"
    );
}

#[test]
fn heredoc_and_workdir() {
    let dst_dir = tempfile::tempdir().unwrap();
    let dst = SafeRoot::open(dst_dir.path()).unwrap();
    let r = kiln_context::write_heredoc_file(
        &dst,
        "/etc/app/conf",
        b"k=v\n",
        0o640,
        Some((3, 4)),
        Some(5),
    )
    .unwrap();
    assert!(r.written.contains(&"etc/app/conf".into()));
    assert!(r.written.contains(&"etc".into()));
    let m = fs::metadata(dst_dir.path().join("etc/app/conf")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o640);
    assert_eq!(m.mtime(), 5);
    assert_eq!(
        fs::read(dst_dir.path().join("etc/app/conf")).unwrap(),
        b"k=v\n"
    );
    if kiln_fs::running_as_root() {
        assert_eq!((m.uid(), m.gid()), (3, 4));
    }
    let created = kiln_context::mkdir_p_owned(&dst, "/etc/app/x/y", 9, 9).unwrap();
    assert_eq!(
        created,
        vec![Path::new("etc/app/x").to_path_buf(), "etc/app/x/y".into()]
    );
    if kiln_fs::running_as_root() {
        assert_eq!(
            fs::metadata(dst_dir.path().join("etc/app/x/y"))
                .unwrap()
                .uid(),
            9
        );
        assert_eq!(
            fs::metadata(dst_dir.path().join("etc/app")).unwrap().uid(),
            3
        );
    }
}

/// A directory of many files is written on several threads as root; every file must
/// still get its content, mode (setuid kept after the owner change), owner and mtime, a
/// file in a directory that already existed is replaced, and the report counts them all.
#[test]
fn many_files_copy_keeps_every_attribute() {
    let src_dir = tempfile::tempdir().unwrap();
    let dst_dir = tempfile::tempdir().unwrap();
    let modes = [0o644, 0o755, 0o600, 0o4755, 0o2711];
    for i in 0..400u32 {
        let p = src_dir.path().join(format!("tree/d{}/f{i}", i % 9));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("content {i}")).unwrap();
        fs::set_permissions(
            &p,
            fs::Permissions::from_mode(modes[i as usize % modes.len()]),
        )
        .unwrap();
        let t = filetime_secs(1_600_000_000 + i64::from(i));
        rustix::fs::utimensat(rustix::fs::CWD, &p, &t, rustix::fs::AtFlags::empty()).unwrap();
    }
    // An existing destination directory with a file the copy replaces.
    fs::create_dir_all(dst_dir.path().join("out/d0")).unwrap();
    fs::write(dst_dir.path().join("out/d0/f0"), "old").unwrap();
    let ctx = Context::open(src_dir.path(), "Dockerfile").unwrap();
    let dst = SafeRoot::open(dst_dir.path()).unwrap();
    let opts = CopyOpts {
        chown: kiln_fs::running_as_root().then_some((1234, 5678)),
        ..CopyOpts::default()
    };
    let report = ctx
        .copy_into(&["tree".into()], &dst, "/out/", "/", &opts)
        .unwrap();
    assert_eq!(report.files, 400);
    for i in 0..400u32 {
        let rel = format!("d{}/f{i}", i % 9);
        let p = dst_dir.path().join("out").join(&rel);
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            format!("content {i}"),
            "{rel}"
        );
        let m = fs::symlink_metadata(&p).unwrap();
        assert_eq!(m.mode() & 0o7777, modes[i as usize % modes.len()], "{rel}");
        assert_eq!(m.mtime(), 1_600_000_000 + i64::from(i), "{rel}");
        if kiln_fs::running_as_root() {
            assert_eq!((m.uid(), m.gid()), (1234, 5678), "{rel}");
        }
        assert!(
            report.written.contains(&Path::new("out").join(&rel)),
            "{rel}"
        );
    }
}

fn filetime_secs(secs: i64) -> rustix::fs::Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    }
}
