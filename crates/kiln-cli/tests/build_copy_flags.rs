//! COPY flags (`--link`, `--parents`, `--exclude`, `--chmod`, `--chown`) and named build
//! contexts (`--build-context NAME=DIR|docker-image://REF|oci-layout://DIR`), judged from
//! the exported rootfs (python's tarfile), `kiln inspect` and the progress events.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const PASSWD: &str = "root:x:0:0::/root:/bin/sh\napp:x:1234:2345::/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\ngrp:x:2345:\nother:x:3456:\n";

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn copy_link_layer_is_reused_unchanged_on_another_base() {
    let env = Env::new();
    let ctx = context(
        &env,
        "ctx",
        &[
            ("base-a.txt", "A\n"),
            ("base-b.txt", "B\n"),
            ("app/main", "main\n"),
            ("app/lib/x", "x\n"),
            (
                "a.Dockerfile",
                "FROM scratch\nCOPY base-a.txt /\nCOPY --link app/ /app/\n",
            ),
            (
                "b.Dockerfile",
                "FROM scratch\nCOPY base-b.txt /\nCOPY base-a.txt /again\nCOPY --link app/ /app/\n",
            ),
        ],
    );
    let file = |n: &str| ctx.join(n).to_str().unwrap().to_string();
    build_json(&env, &ctx, &["-f", &file("a.Dockerfile"), "-t", "a"]);
    let ev = build_json(&env, &ctx, &["-f", &file("b.Dockerfile"), "-t", "b"]);
    // The copy onto the new base is a cache hit: nothing was copied again.
    let cached = steps_with(&ev, "cached");
    assert!(
        cached.iter().any(|d| d.contains("COPY --link app/ /app/")),
        "COPY --link re-ran on another base; cached: {cached:?}"
    );
    // And its layer is the same blob, on top of a different stack.
    let a = env.layer_digests("a");
    let b = env.layer_digests("b");
    assert_eq!(a.len(), 2);
    assert_eq!(b.len(), 3);
    assert_eq!(a.last(), b.last(), "the --link layer differs between bases");
    assert_ne!(a[0], b[0]);
    // The layer holds only the copied files (no base content, nothing of the base's
    // directories).
    let names = tar_names(&env.blob_path(a.last().unwrap()));
    let mut names: Vec<String> = names
        .iter()
        .map(|n| n.trim_start_matches("./").trim_end_matches('/').to_string())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    assert_eq!(names, ["app", "app/lib", "app/lib/x", "app/main"]);
    // The image built on B sees both.
    let fs = build_rootfs_tar(&env, &ctx, "b.tar", &["-f", &file("b.Dockerfile")]);
    assert_eq!(entry_data(&fs, "base-b.txt"), "B\n");
    assert_eq!(entry_data(&fs, "app/lib/x"), "x\n");
    env.assert_store_clean();
}

#[test]
fn copy_parents_keeps_paths_below_the_pivot() {
    let env = Env::new();
    let ctx = context(
        &env,
        "ctx",
        &[
            ("a/b/c.txt", "c\n"),
            ("a/d/e.txt", "e\n"),
            ("a/d/f.md", "f\n"),
            ("x/y/z.txt", "z\n"),
            (
                "Dockerfile",
                "FROM scratch
COPY --parents a/b/c.txt /p1/
COPY --parents ./a/./b/c.txt /p2/
COPY --parents a/*/*.txt /p3/
COPY --parents x/./y /p4/
COPY --parents a/d /p5/
COPY a/b/c.txt a/d/e.txt /flat/
",
            ),
        ],
    );
    let fs = build_rootfs_tar(&env, &ctx, "out.tar", &[]);
    assert_eq!(entry_data(&fs, "p1/a/b/c.txt"), "c\n");
    // `/./` is the pivot: only what follows it is kept.
    assert_eq!(entry_data(&fs, "p2/b/c.txt"), "c\n");
    assert!(!fs.contains_key("p2/a"), "p2 kept the path above the pivot");
    // Wildcards in parent directories: each match keeps its own path.
    assert_eq!(entry_data(&fs, "p3/a/b/c.txt"), "c\n");
    assert_eq!(entry_data(&fs, "p3/a/d/e.txt"), "e\n");
    assert!(!fs.contains_key("p3/a/d/f.md"));
    // A directory after the pivot: itself, then its contents.
    assert_eq!(entry_data(&fs, "p4/y/z.txt"), "z\n");
    assert!(!fs.contains_key("p4/x"));
    assert_eq!(entry_data(&fs, "p5/a/d/e.txt"), "e\n");
    assert_eq!(entry_data(&fs, "p5/a/d/f.md"), "f\n");
    // Without --parents the same sources are flattened.
    assert_eq!(entry_data(&fs, "flat/c.txt"), "c\n");
    assert_eq!(entry_data(&fs, "flat/e.txt"), "e\n");
}

#[test]
fn copy_exclude_patterns_several_at_once() {
    let env = Env::new();
    let ctx = context(
        &env,
        "ctx",
        &[
            ("src/a.go", "a\n"),
            ("src/a_test.go", "t\n"),
            ("src/sub/b.go", "b\n"),
            ("src/sub/b_test.go", "t\n"),
            ("src/README.md", "r\n"),
            ("src/sub/NOTES.md", "n\n"),
            ("top.txt", "top\n"),
            ("top.md", "md\n"),
            (
                "Dockerfile",
                "FROM scratch
COPY --exclude=**/*_test.go --exclude=*.md src/ /e1/
COPY --exclude=**/*.md src /e2/
COPY --exclude=*.md top.* /e3/
ADD --exclude=**/*_test.go --exclude=sub src /e4/
",
            ),
        ],
    );
    let fs = build_rootfs_tar(&env, &ctx, "out.tar", &[]);
    let under = |p: &str| -> Vec<String> {
        fs.keys()
            .filter(|k| k.starts_with(p))
            .map(|k| k[p.len()..].to_string())
            .filter(|k| !k.is_empty())
            .collect()
    };
    // Patterns are relative to the source directory, `*` stays within one level.
    assert_eq!(under("e1/"), ["a.go", "sub", "sub/NOTES.md", "sub/b.go"]);
    assert_eq!(
        under("e2/"),
        ["a.go", "a_test.go", "sub", "sub/b.go", "sub/b_test.go"]
    );
    // With a wildcard source, an excluded match is skipped, not an error.
    assert_eq!(under("e3/"), ["top.txt"]);
    // ADD takes the same flag.
    assert_eq!(under("e4/"), ["README.md", "a.go"]);
}

#[test]
fn copy_chmod_octal_and_symbolic() {
    let env = Env::new();
    let ctx = context(
        &env,
        "ctx",
        &[
            ("f664", "f\n"),
            ("f755", "x\n"),
            ("d/plain", "p\n"),
            ("d/exec", "e\n"),
            (
                "Dockerfile",
                "FROM scratch
COPY --chmod=640 f664 /octal
COPY --chmod=u+x,go-w f664 /sym1
COPY --chmod=a-x,u+s f755 /sym2
COPY --chmod=go=u-w f755 /sym3
COPY --chmod=a+X d /capx/
COPY --chmod=0755 d /octdir/
COPY --chmod=0640 f664 /made/parent/a.txt
COPY --chmod=0700 d /made/dir/
",
            ),
        ],
    );
    chmod(&ctx.join("f664"), 0o664);
    chmod(&ctx.join("f755"), 0o755);
    chmod(&ctx.join("d"), 0o700);
    chmod(&ctx.join("d/plain"), 0o600);
    chmod(&ctx.join("d/exec"), 0o700);
    let fs = build_rootfs_tar(&env, &ctx, "out.tar", &[]);
    let mode = |n: &str| fs[n]["mode"].as_u64().unwrap() as u32;
    assert_eq!(mode("octal"), 0o640);
    assert_eq!(mode("sym1"), 0o744);
    assert_eq!(mode("sym2"), 0o4644);
    // `go=u-w`: g and o copy u's bits (rwx), then lose w.
    assert_eq!(mode("sym3"), 0o755);
    // `X`: execute for directories and for files already executable by someone.
    assert_eq!(mode("capx/plain"), 0o600);
    assert_eq!(mode("capx/exec"), 0o711);
    assert_eq!(mode("octdir/plain"), 0o755);
    assert_eq!(mode("octdir/exec"), 0o755);
    // Directories COPY creates (parents, a directory source's destination) are 0755 as in
    // BuildKit; --chmod applies only to what is copied.
    assert_eq!(mode("made"), 0o755);
    assert_eq!(mode("made/parent"), 0o755);
    assert_eq!(mode("made/parent/a.txt"), 0o640);
    assert_eq!(mode("made/dir"), 0o755);
    assert_eq!(mode("made/dir/plain"), 0o700);
}

#[test]
fn copy_chown_names_come_from_the_destination_image() {
    let env = Env::new();
    let ctx = context(
        &env,
        "ctx",
        &[
            ("passwd", PASSWD),
            ("group", GROUP),
            ("f", "f\n"),
            ("d/x", "x\n"),
            (
                "Dockerfile",
                "FROM scratch
COPY passwd /etc/passwd
COPY group /etc/group
COPY --chown=app:grp f /both
COPY --chown=app f /user-only
COPY --chown=app:other f /user-group
COPY --chown=1234:other f /id-name
COPY --chown=7:8 f /ids
COPY --chown=app d /dir/
",
            ),
        ],
    );
    let fs = build_rootfs_tar(&env, &ctx, "out.tar", &[]);
    let owner = |n: &str| {
        (
            fs[n]["uid"].as_u64().unwrap(),
            fs[n]["gid"].as_u64().unwrap(),
        )
    };
    assert_eq!(owner("both"), (1234, 2345));
    assert_eq!(
        owner("user-only"),
        (1234, 2345),
        "primary group from passwd"
    );
    assert_eq!(owner("user-group"), (1234, 3456));
    assert_eq!(owner("id-name"), (1234, 3456));
    assert_eq!(owner("ids"), (7, 8));
    assert_eq!(owner("dir/x"), (1234, 2345));
    // A name the destination image does not know fails, naming it.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY passwd /etc/passwd\nCOPY --chown=nobody f /f\n",
    )
    .unwrap();
    let (_, err) = env.fail(&["build", "--progress", "plain", ctx.to_str().unwrap()]);
    assert!(err.contains("nobody"), "{err}");
}

#[test]
fn named_build_contexts_dir_docker_image_and_oci_layout() {
    let env = Env::new();
    // docker-image:// names an image of the local store (imported here).
    let tiny = tiny_tar(&env, "tiny.tar", "from the store\n");
    env.ok(&["import", tiny.to_str().unwrap(), "-t", "tiny:1"]);
    // oci-layout:// reads a layout directory written by another store.
    let other = Env::new();
    let lctx = context(
        &other,
        "lctx",
        &[
            ("Dockerfile", "FROM scratch\nCOPY l.txt /l.txt\n"),
            ("l.txt", "from the layout\n"),
        ],
    );
    let layout = other.path("layout");
    let spec = format!("type=oci,dest={},tar=false", layout.display());
    build_json(&other, &lctx, &["-o", &spec, "-t", "lay:v1"]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    let dir = context(&env, "named-dir", &[("sub/f.txt", "from the dir\n")]);
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM dirctx AS d
FROM img AS i
FROM lay AS l
FROM scratch
COPY --from=d /sub/f.txt /stage-from-dir
COPY --from=dirctx sub/f.txt /copy-from-dir
COPY --from=i /etc/hello /stage-from-image
COPY --from=img /etc/hello /copy-from-image
COPY --from=l /l.txt /stage-from-layout
COPY --from=lay /l.txt /copy-from-layout
COPY --from=pinned /l.txt /copy-from-pinned
",
        )],
    );
    let contexts = [
        format!("dirctx={}", dir.display()),
        "img=docker-image://tiny:1".to_string(),
        format!("lay=oci-layout://{}", layout.display()),
        format!("pinned=oci-layout://{}@{digest}", layout.display()),
    ];
    let mut args = Vec::new();
    for c in &contexts {
        args.push("--build-context");
        args.push(c.as_str());
    }
    let fs = build_rootfs_tar(&env, &ctx, "out.tar", &args);
    for f in ["stage-from-dir", "copy-from-dir"] {
        assert_eq!(entry_data(&fs, f), "from the dir\n");
    }
    for f in ["stage-from-image", "copy-from-image"] {
        assert_eq!(entry_data(&fs, f), "from the store\n");
    }
    for f in ["stage-from-layout", "copy-from-layout", "copy-from-pinned"] {
        assert_eq!(entry_data(&fs, f), "from the layout\n");
    }
    // A directory used as a stage is a filesystem of its own: it can be built on.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM dirctx\nCOPY --from=img /etc/hello /hello\n",
    )
    .unwrap();
    let fs = build_rootfs_tar(&env, &ctx, "out2.tar", &args);
    assert_eq!(entry_data(&fs, "sub/f.txt"), "from the dir\n");
    assert_eq!(fs["sub/f.txt"]["uid"], 0);
    assert_eq!(entry_data(&fs, "hello"), "from the store\n");
    // Unknown tags and digests of a layout are named.
    let bad = format!("x=oci-layout://{}:nope", layout.display());
    let (_, err) = env.fail(&["build", "--build-context", &bad, ctx.to_str().unwrap()]);
    assert!(
        err.contains("\"nope\"") && err.contains("--build-context"),
        "{err}"
    );
    env.assert_store_clean();
}

/// `ADD --chown` of a local tar: BuildKit keeps the archive's owners for the extracted
/// entries; only the destination directory ADD creates gets --chown.
#[test]
fn add_chown_keeps_the_owners_of_an_extracted_tar() {
    let env = Env::new();
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM scratch\nADD --chown=1000:1000 arch.tar /x/\n",
        )],
    );
    py_tar(
        &ctx.join("arch.tar"),
        &[],
        "t.addfile(_ti('.', tarfile.DIRTYPE, 0o755))\n\
         ti = _ti('d', tarfile.DIRTYPE, 0o755); ti.uid = 7; ti.gid = 8; t.addfile(ti)\n\
         ti = _ti('d/f', tarfile.REGTYPE, 0o644); ti.size = 3; t.addfile(ti, io.BytesIO(b'in\\n'))\n",
    );
    let fs = build_rootfs_tar(&env, &ctx, "out.tar", &[]);
    let owner = |n: &str| {
        (
            fs[n]["uid"].as_u64().unwrap(),
            fs[n]["gid"].as_u64().unwrap(),
        )
    };
    assert_eq!(owner("x"), (1000, 1000));
    assert_eq!(owner("x/d"), (7, 8));
    assert_eq!(owner("x/d/f"), (0, 0));
    assert_eq!(entry_data(&fs, "x/d/f"), "in\n");
}

/// COPY onto an existing symlink to a file writes through it (BuildKit), and the link is
/// resolved confined to the image root: `..` past the root stays in it.
#[test]
fn copy_onto_a_symlink_writes_through_it_in_root() {
    let env = Env::new();
    let ctx = context(
        &env,
        "ctx",
        &[
            ("a.txt", "new\n"),
            ("target", "original\n"),
            ("target2", "original2\n"),
            (
                "Dockerfile",
                "FROM scratch\nCOPY target target2 /\nCOPY links/ /\n\
                 COPY a.txt /linkfile\nCOPY a.txt /esc\n",
            ),
        ],
    );
    std::fs::create_dir(ctx.join("links")).unwrap();
    std::os::unix::fs::symlink("/target", ctx.join("links/linkfile")).unwrap();
    std::os::unix::fs::symlink("../../../../../target2", ctx.join("links/esc")).unwrap();
    let fs = build_rootfs_tar(&env, &ctx, "out.tar", &[]);
    assert_eq!(fs["linkfile"]["link"], "/target", "{}", fs["linkfile"]);
    assert_eq!(entry_data(&fs, "target"), "new\n");
    assert_eq!(fs["esc"]["link"], "../../../../../target2", "{}", fs["esc"]);
    assert_eq!(entry_data(&fs, "target2"), "new\n");
}

/// ADD extracts local bzip2 and xz tarballs like gzip ones (BuildKit decides by content,
/// not by name), while a file that only looks like one by name is copied as it is.
#[test]
fn add_extracts_bzip2_and_xz_tarballs() {
    let env = Env::new();
    let ctx = context(
        &env,
        "ctx",
        &[
            ("src/d/f", "inside\n"),
            ("fake.tar.xz", "not an archive\n"),
            (
                "Dockerfile",
                "FROM scratch\nADD a.tar.bz2 /bz/\nADD a.tar.xz /xz/\nADD b.bin /named-by-content/\n\
                 ADD fake.tar.xz /fake/\n",
            ),
        ],
    );
    let tar = |flag: &str, out: &str| {
        sh_ok(
            std::process::Command::new("tar")
                .args([flag, "-cf", out, "-C", "src", "d"])
                .current_dir(&ctx),
        );
    };
    tar("-j", "a.tar.bz2");
    tar("-J", "a.tar.xz");
    std::fs::copy(ctx.join("a.tar.xz"), ctx.join("b.bin")).unwrap();
    let fs = build_rootfs_tar(&env, &ctx, "out.tar", &[]);
    for dir in ["bz", "xz", "named-by-content"] {
        assert_eq!(entry_data(&fs, &format!("{dir}/d/f")), "inside\n", "{dir}");
    }
    assert_eq!(entry_data(&fs, "fake/fake.tar.xz"), "not an archive\n");
}
