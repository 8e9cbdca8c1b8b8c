//! `kiln build` against hostile Dockerfiles, contexts and base images. Each test is named
//! after the attack and checks that nothing outside the build changed.

mod common;

use common::*;

#[test]
fn workdir_proc_self_fd_is_confined_or_refused() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let victim = Victim::new(&env);
    for (i, wd) in ["/proc/self/fd/3", "/proc/self/cwd", "/proc/1/root"]
        .iter()
        .enumerate()
    {
        let ctx = context(
            &env,
            &format!("ctx{i}"),
            &[(
                "Dockerfile",
                &format!(
                    "FROM busybox\nWORKDIR {wd}\nRUN echo pwned > f; echo pwned > {v}/secret; pwd\n",
                    v = victim.path()
                ),
            )],
        );
        let dest = env.path(&format!("out{i}.tar"));
        let spec = format!("type=tar,dest={}", dest.display());
        let o = env.run(&[
            "build",
            "--progress",
            "plain",
            "-o",
            &spec,
            ctx.to_str().unwrap(),
        ]);
        if o.status.success() {
            // Confined: whatever was written is inside the image.
            let fs = tar_entries(&dest);
            let written: Vec<_> = fs.keys().filter(|k| k.ends_with("/f")).collect();
            assert!(!written.is_empty(), "{wd}: RUN wrote nowhere in the image");
        } else {
            let err = err_str(&o);
            assert!(
                err.contains(wd),
                "{wd}: the error names the directory: {err}"
            );
        }
        victim.assert_unchanged();
    }
    env.assert_store_clean();
}

#[test]
fn run_overwriting_proc_self_exe_leaves_the_host_binary_intact() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let kiln = std::path::Path::new(KILN).canonicalize().unwrap();
    let before = sha256_file(&kiln);
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox
RUN echo pwned > /proc/self/exe; echo pwned > /proc/1/exe; \
    cp /bin/sh /proc/1/exe; for p in /proc/[0-9]*; do echo pwned > $p/exe; done; \
    exec 3<>/proc/1/exe && echo pwned >&3; true
RUN echo pwned | dd of=/proc/1/exe conv=notrunc 2>/dev/null; true
",
        )],
    );
    let _ = env.run(&["build", "--progress", "plain", ctx.to_str().unwrap()]);
    assert_eq!(sha256_file(&kiln), before, "the host kiln binary changed");
    // kiln still works.
    env.ok(&["images"]);
}

#[test]
fn base_image_with_proc_and_dev_symlinked_to_host_dirs() {
    let env = Env::new();
    let Some(bb) = busybox_tar(&env) else { return };
    let victim = Victim::new(&env);
    let vp = victim.dir.join("sub");
    let evil = env.path("evil.tar");
    py_tar(
        &evil,
        &[bb.to_str().unwrap(), victim.path(), vp.to_str().unwrap()],
        r#"
def drop(n):
    n = n.lstrip('./')
    return n in ('proc', 'dev') or n.startswith('proc/') or n.startswith('dev/')
copy_from(args[0], skip=drop)
sym('proc', args[2])
sym('dev', args[1])
"#,
    );
    env.ok(&["import", evil.to_str().unwrap(), "-t", "evil"]);
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM evil
RUN echo pwned > /dev/secret; echo pwned > /dev/new; echo pwned > /proc/file; \
    rm -rf /dev/sub /proc/*; ls /proc/self/ >/dev/null && echo proc-ok; true
RUN echo second > /second
",
        )],
    );
    let dest = env.path("out.tar");
    let spec = format!("type=tar,dest={}", dest.display());
    let o = env.run(&[
        "build",
        "--progress",
        "plain",
        "-o",
        &spec,
        ctx.to_str().unwrap(),
    ]);
    victim.assert_unchanged();
    if o.status.success() {
        let fs = tar_entries(&dest);
        assert_eq!(entry_data(&fs, "second"), "second\n");
        // The symlinks are still symlinks in the image; nothing of the host was captured.
        assert_eq!(fs["proc"]["type"], "2", "{}", fs["proc"]);
        assert_eq!(fs["dev"]["type"], "2", "{}", fs["dev"]);
        assert!(
            !fs.values()
                .any(|e| e["data"] == "do not touch\n" || e["data"] == "nested\n"),
            "host file content captured in the image"
        );
    } else {
        let err = err_str(&o);
        assert!(err.contains("proc") || err.contains("dev"), "{err}");
    }
    env.assert_store_clean();
}

#[test]
fn copy_of_context_symlink_pointing_outside_the_context() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let victim = Victim::new(&env);
    let ctx = context(&env, "ctx", &[]);
    std::os::unix::fs::symlink(victim.dir.join("secret"), ctx.join("link")).unwrap();
    std::os::unix::fs::symlink(&victim.dir, ctx.join("dirlink")).unwrap();
    std::os::unix::fs::symlink("../victim/secret", ctx.join("rel")).unwrap();
    let host_content = |fs: &std::collections::BTreeMap<String, serde_json::Value>| -> Vec<String> {
        fs.iter()
            .filter(|(_, e)| e["data"] == "do not touch\n" || e["data"] == "nested\n")
            .map(|(k, _)| k.clone())
            .collect()
    };
    for (i, (copy, name)) in [
        ("COPY link /x", "link"),
        ("COPY rel /x", "rel"),
        ("COPY dirlink /x/", "dirlink"),
        ("COPY dirlink/secret /x", "dirlink/secret"),
        ("COPY dirlink/sub/ /x/", "dirlink/sub"),
        ("COPY *link /x/", "link"),
        ("COPY . /x/", "link"),
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(ctx.join("Dockerfile"), format!("FROM busybox\n{copy}\n")).unwrap();
        let dest = env.path(&format!("out{i}.tar"));
        let spec = format!("type=tar,dest={}", dest.display());
        let o = env.run(&[
            "build",
            "--progress",
            "plain",
            "-o",
            &spec,
            ctx.to_str().unwrap(),
        ]);
        if o.status.success() {
            let fs = tar_entries(&dest);
            let leaked = host_content(&fs);
            assert!(
                leaked.is_empty(),
                "{copy}: host file content copied to {leaked:?}"
            );
        } else {
            let err = err_str(&o);
            assert!(
                err.contains(name),
                "{copy}: the error names the path: {err}"
            );
        }
        victim.assert_unchanged();
    }
    // The whole context copies its symlinks as symlinks.
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY . /all/\n").unwrap();
    let fs = build_rootfs_tar(&env, &ctx, "all.tar", &[]);
    for l in ["all/link", "all/rel", "all/dirlink"] {
        assert_eq!(fs[l]["type"], "2", "{l} is kept as a symlink: {}", fs[l]);
    }
}

#[test]
fn dockerignored_files_are_not_copied() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let ctx = context(
        &env,
        "ctx",
        &[
            ("Dockerfile", "FROM busybox\nCOPY . /app/\n"),
            (".dockerignore", "secrets/\n*.key\n!keep.key\n**/*.log\n"),
            ("secrets/token", "tok\n"),
            ("a.key", "k\n"),
            ("keep.key", "kept\n"),
            ("src/main.rs", "fn main(){}\n"),
            ("src/debug.log", "log\n"),
        ],
    );
    let fs = build_rootfs_tar(&env, &ctx, "out.tar", &[]);
    assert_eq!(entry_data(&fs, "app/src/main.rs"), "fn main(){}\n");
    assert_eq!(entry_data(&fs, "app/keep.key"), "kept\n");
    for gone in [
        "app/secrets/token",
        "app/secrets",
        "app/a.key",
        "app/src/debug.log",
    ] {
        assert!(
            !fs.contains_key(gone),
            "{gone} was copied despite .dockerignore"
        );
    }
    // An explicit COPY of an ignored file fails, naming it.
    let ctx2 = context(
        &env,
        "ctx2",
        &[
            ("Dockerfile", "FROM busybox\nCOPY a.key /a.key\n"),
            (".dockerignore", "*.key\n"),
            ("a.key", "k\n"),
        ],
    );
    let (_, err) = env.fail(&["build", "--progress", "plain", ctx2.to_str().unwrap()]);
    assert!(err.contains("a.key"), "{err}");
}
