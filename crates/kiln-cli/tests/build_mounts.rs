//! `kiln build`: `RUN --mount` of type cache, tmpfs and secret, judged from the exported
//! image and rootfs.

mod common;

use common::*;
use std::process::Command;

#[test]
fn cache_mount_persists_between_builds() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let dockerfile = "FROM busybox
COPY input.txt /input.txt
RUN --mount=type=cache,target=/cache \
    cat /cache/seen > /previous 2>/dev/null || echo none > /previous; \
    cat /input.txt >> /cache/seen; ls /cache > /listing
";
    let ctx = context(
        &env,
        "ctx",
        &[("Dockerfile", dockerfile), ("input.txt", "first\n")],
    );
    let fs = build_rootfs_tar(&env, &ctx, "one.tar", &[]);
    assert_eq!(entry_data(&fs, "previous"), "none\n");
    assert!(
        !fs.keys().any(|k| k.starts_with("cache/")),
        "cache content in the layer"
    );

    std::fs::write(ctx.join("input.txt"), "second\n").unwrap();
    let fs = build_rootfs_tar(&env, &ctx, "two.tar", &[]);
    assert_eq!(
        entry_data(&fs, "previous"),
        "first\n",
        "the cache mount kept the file"
    );
    assert!(
        !fs.keys().any(|k| k.starts_with("cache/")),
        "cache content in the layer"
    );
}

#[test]
fn tmpfs_mount_is_empty_writable_and_not_in_the_layer() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox
RUN mkdir -p /scratch && echo image > /scratch/from-image
RUN --mount=type=tmpfs,target=/scratch \
    ls -A /scratch > /seen && echo tmp > /scratch/tmpfile && cat /scratch/tmpfile > /wrote
",
        )],
    );
    let fs = build_rootfs_tar(&env, &ctx, "out.tar", &[]);
    assert_eq!(entry_data(&fs, "seen"), "", "tmpfs starts empty");
    assert_eq!(entry_data(&fs, "wrote"), "tmp\n");
    assert!(
        !fs.contains_key("scratch/tmpfile"),
        "tmpfs content leaked into the layer"
    );
    assert_eq!(entry_data(&fs, "scratch/from-image"), "image\n");
}

#[test]
fn secret_mount_is_readable_and_in_no_layer_or_config() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let value = "s3cr3t-VALUE-5e1f0c";
    let secret = env.path("secret.txt");
    std::fs::write(&secret, value).unwrap();
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox
RUN --mount=type=secret,id=s \
    sha256sum < /run/secrets/s > /file-sum
RUN --mount=type=secret,id=s,target=/etc/mysecret \
    wc -c < /etc/mysecret > /length
RUN --mount=type=secret,id=s,env=TOKEN \
    printf %s \"$TOKEN\" | sha256sum > /env-sum
",
        )],
    );
    let archive = env.path("img.tar");
    let out = format!("type=oci,dest={}", archive.display());
    let rootfs = env.path("rootfs.tar");
    let out2 = format!("type=tar,dest={}", rootfs.display());
    let spec = format!("id=s,src={}", secret.display());
    build_json(
        &env,
        &ctx,
        &["-t", "sec", "--secret", &spec, "-o", &out, "-o", &out2],
    );
    let fs = tar_entries(&rootfs);
    // The Dockerfile never spells the value: RUN proves it read it through its hash.
    let sum = sha256_file(&secret);
    let sum = sum.strip_prefix("sha256:").unwrap();
    assert_eq!(
        entry_data(&fs, "file-sum").split_whitespace().next(),
        Some(sum)
    );
    assert_eq!(
        entry_data(&fs, "env-sum").split_whitespace().next(),
        Some(sum)
    );
    assert_eq!(entry_data(&fs, "length").trim(), value.len().to_string());
    assert!(
        !fs.contains_key("run/secrets/s"),
        "secret file left in the layer"
    );
    let mysecret = fs.get("etc/mysecret");
    assert!(
        mysecret.is_none_or(|e| e["data"].as_str().unwrap_or("").is_empty()),
        "{mysecret:?}"
    );

    // Grep every blob of the archive, decompressed, for the value.
    let dir = env.path("unpacked");
    std::fs::create_dir_all(&dir).unwrap();
    sh_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&dir),
    );
    let found = py(
        r#"
import sys, os, gzip
needle = sys.argv[2].encode()
hits = []
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        p = os.path.join(root, f)
        data = open(p, 'rb').read()
        if data[:2] == b'\x1f\x8b':
            data = gzip.decompress(data)
        if needle in data:
            hits.append(p)
print('\n'.join(hits))
"#,
        &[dir.to_str().unwrap(), value],
    );
    assert!(found.trim().is_empty(), "secret value found in {found}");
    // Nor in the store (config, history, layers), nor in the build's cache records.
    let found = py(
        r#"
import sys, os, gzip
needle = sys.argv[2].encode()
hits = []
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        p = os.path.join(root, f)
        if os.path.islink(p) or not os.path.isfile(p):
            continue
        data = open(p, 'rb').read()
        if data[:2] == b'\x1f\x8b':
            try:
                data = gzip.decompress(data)
            except Exception:
                pass
        if needle in data:
            hits.append(p)
print('\n'.join(hits))
"#,
        &[env.root.to_str().unwrap(), value],
    );
    assert!(
        found.trim().is_empty(),
        "secret value found in the store: {found}"
    );
    let cfg = env.inspect("sec").to_string();
    assert!(!cfg.contains(value));
}

/// The hex sha256 of `s` (sha256sum, an independent tool).
fn sha256_hex(env: &Env, s: &str) -> String {
    let p = env.path("hash-input");
    std::fs::write(&p, s).unwrap();
    sha256_file(&p).strip_prefix("sha256:").unwrap().to_string()
}

#[test]
fn cache_mount_directory_is_named_by_a_hash_of_the_id_never_the_id() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let id = "my-cache-id.with/slash";
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nRUN --mount=type=cache,id={id},target=/c echo hi > /c/mark\n"),
        )],
    );
    build_json(&env, &ctx, &[]);
    let base = env.root.join("kiln/cache-mounts");
    let dir = base.join(sha256_hex(&env, id));
    assert_eq!(std::fs::read_to_string(dir.join("mark")).unwrap(), "hi\n");
    for e in std::fs::read_dir(&base).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains("my-cache"), "id text in the store: {name}");
    }
}

#[test]
fn cache_mount_uid_gid_mode_ro_and_seed_from_a_stage() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    // The seed is a two-layer stage: from= must see the merged view.
    let dockerfile = "FROM busybox AS seed
RUN mkdir /data && echo one > /data/one
RUN echo two > /data/two && rm /data/one && echo gone > /data/three
FROM busybox
RUN --mount=type=cache,id=owned,target=/c,uid=1000,gid=1001,mode=0750 \
    stat -c '%u %g %a' /c > /owned
RUN --mount=type=cache,id=ro,target=/r,ro \
    if touch /r/x 2>/dev/null; then echo rw; else echo ro; fi > /ro
RUN --mount=type=cache,id=seeded,target=/s,from=seed,source=/data \
    ls /s | tr '\\n' ' ' > /seeded; echo mine > /s/mine
RUN --mount=type=cache,id=seeded,target=/s,from=seed,source=/data \
    cat /s/mine > /second
";
    let ctx = context(&env, "ctx", &[("Dockerfile", dockerfile)]);
    let fs = build_rootfs_tar(&env, &ctx, "out.tar", &[]);
    assert_eq!(entry_data(&fs, "owned"), "1000 1001 750\n");
    assert_eq!(entry_data(&fs, "ro"), "ro\n");
    assert_eq!(entry_data(&fs, "seeded"), "three two ");
    assert_eq!(
        entry_data(&fs, "second"),
        "mine\n",
        "a seeded cache is seeded once, then kept"
    );
}

#[test]
fn cache_mount_sharing_locked_serialises_and_private_never_shares() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    // Each step claims the cache with mkdir (fails if taken) and holds it for a while: two
    // steps overlapping on one directory make the build fail.
    let step = |stage: &str, sharing: &str| {
        format!(
            "FROM busybox AS {stage}
RUN --mount=type=cache,id={sharing},target=/c,sharing={sharing} \
    mkdir /c/claim && sleep 1 && rmdir /c/claim && echo {stage} > /done
"
        )
    };
    let dockerfile = format!(
        "{}{}{}{}FROM busybox\nCOPY --from=l1 /done /l1\nCOPY --from=l2 /done /l2\nCOPY --from=p1 /done /p1\nCOPY --from=p2 /done /p2\n",
        step("l1", "locked"),
        step("l2", "locked"),
        step("p1", "private"),
        step("p2", "private")
    );
    let ctx = context(&env, "ctx", &[("Dockerfile", &dockerfile)]);
    let fs = build_rootfs_tar(&env, &ctx, "out.tar", &["--jobs", "4"]);
    assert_eq!(entry_data(&fs, "l2"), "l2\n");
    assert_eq!(entry_data(&fs, "p2"), "p2\n");
}

#[test]
fn bind_mount_from_multi_layer_stage_image_and_scratch() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let dockerfile = "FROM busybox AS multi
RUN mkdir /data && echo one > /data/one && echo old > /data/gone
RUN echo two > /data/two && rm /data/gone && ln -s /data /abs-link && ln -s ../data /rel-link
FROM scratch AS empty
FROM busybox
RUN --mount=type=bind,from=multi,source=/data,target=/m \
    ls /m | tr '\\n' ' ' > /multi
RUN --mount=type=bind,from=multi,source=/abs-link,target=/m \
    cat /m/two > /via-abs-link
RUN --mount=type=bind,from=multi,source=rel-link/two,target=/f \
    cat /f > /via-rel-link
RUN --mount=type=bind,from=empty,target=/e ls -A /e > /empty
RUN --mount=type=bind,from=busybox,source=/etc,target=/img ls /img > /from-image
RUN --mount=type=bind,from=multi,source=/data,target=/m,rw \
    echo x > /m/new && rm /m/one && ls /m | tr '\\n' ' ' > /rw-view
RUN --mount=type=bind,from=multi,source=/data,target=/m \
    ls /m | tr '\\n' ' ' > /after-rw
RUN --mount=type=bind,target=/ctx,rw touch /ctx/written && ls /ctx > /ctx-list
";
    let ctx = context(&env, "ctx", &[("Dockerfile", dockerfile)]);
    let fs = build_rootfs_tar(&env, &ctx, "out.tar", &[]);
    assert_eq!(entry_data(&fs, "multi"), "one two ");
    assert_eq!(entry_data(&fs, "via-abs-link"), "two\n");
    assert_eq!(entry_data(&fs, "via-rel-link"), "two\n");
    assert_eq!(entry_data(&fs, "empty"), "");
    assert!(entry_data(&fs, "from-image").contains("passwd"));
    assert_eq!(entry_data(&fs, "rw-view"), "new two ");
    assert_eq!(entry_data(&fs, "after-rw"), "one two ", "rw writes kept");
    assert!(entry_data(&fs, "ctx-list").contains("written"));
    assert!(
        !ctx.join("written").exists(),
        "rw bind wrote into the context"
    );
    for k in ["m", "f", "e", "img", "ctx"] {
        assert!(!fs.contains_key(k), "mount target {k} left in the image");
    }
}

#[test]
fn bind_mount_source_symlink_cannot_escape_the_context() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let victim = Victim::new(&env);
    let ctx = context(
        &env,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox
RUN --mount=type=bind,source=inside,target=/in cat /in/file > /inside
RUN --mount=type=bind,source=escape,target=/v ls /v > /escaped
",
            ),
            ("sub/file", "in the context\n"),
        ],
    );
    // Absolute: resolved inside the context root, so it names `sub`, not the host's /.
    std::os::unix::fs::symlink("/sub", ctx.join("inside")).unwrap();
    std::os::unix::fs::symlink(
        format!("../../../../../../..{}", victim.path()),
        ctx.join("escape"),
    )
    .unwrap();
    let dest = env.path("out.tar");
    let o = env.run(&[
        "build",
        "--progress",
        "plain",
        "-o",
        &format!("type=tar,dest={}", dest.display()),
        ctx.to_str().unwrap(),
    ]);
    let err = err_str(&o);
    assert!(
        !o.status.success(),
        "the escaping link must not resolve: {err}"
    );
    assert!(err.contains("escape"), "error names the source: {err}");
    assert!(!err.contains("do not touch"), "{err}");
    victim.assert_unchanged();
    // The same through a stage: a layer stack is mounted by the sandbox, which resolves
    // the source confined to the stack; the host path the link names is never read.
    let stage = context(
        &env,
        "stage",
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox AS evil
RUN ln -s {} /esc
RUN ln -s ../../../../../../..{}/secret /esc-rel
FROM busybox
RUN --mount=type=bind,from=evil,source=/esc/secret,target=/v cat /v > /leak
",
                victim.path(),
                victim.path()
            ),
        )],
    );
    let o = env.run(&["build", "--progress", "plain", stage.to_str().unwrap()]);
    let err = err_str(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("/esc/secret"), "error names the source: {err}");
    assert!(!err.contains("do not touch"), "{err}");
    std::fs::write(
        stage.join("Dockerfile"),
        std::fs::read_to_string(stage.join("Dockerfile"))
            .unwrap()
            .replace("source=/esc/secret", "source=/esc-rel"),
    )
    .unwrap();
    let o = env.run(&["build", "--progress", "plain", stage.to_str().unwrap()]);
    assert!(!o.status.success(), "{}", err_str(&o));
    victim.assert_unchanged();

    // The confined absolute link worked (first step ran before the failing one).
    let ok = context(
        &env,
        "ok",
        &[
            (
                "Dockerfile",
                "FROM busybox\nRUN --mount=type=bind,source=inside,target=/in cat /in/file > /inside\n",
            ),
            ("sub/file", "in the context\n"),
        ],
    );
    std::os::unix::fs::symlink("/sub", ok.join("inside")).unwrap();
    let fs = build_rootfs_tar(&env, &ok, "ok.tar", &[]);
    assert_eq!(entry_data(&fs, "inside"), "in the context\n");
}

#[test]
fn mount_targets_missing_from_the_image_leave_nothing_behind() {
    let env = Env::new();
    if busybox_image(&env).is_none() || !need("ssh-keygen") {
        return;
    }
    let key = env.path("id_ed25519");
    sh_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key),
    );
    let secret = env.path("secret");
    std::fs::write(&secret, "x").unwrap();
    // busybox has no /run: the default secret and ssh targets create it.
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox
RUN --mount=type=cache,target=/made/cache \
    --mount=type=tmpfs,target=/made/tmpfs \
    --mount=type=secret,id=s \
    --mount=type=secret,id=s,target=/made/secret/file \
    --mount=type=bind,target=/made/bind \
    --mount=type=ssh \
    --mount=type=ssh,target=/made/ssh/sock \
    test -f /run/secrets/s && test -S /run/buildkit/ssh_agent.0 && test -S /made/ssh/sock \
    && echo ran > /ran
",
        )],
    );
    let fs = build_rootfs_tar(
        &env,
        &ctx,
        "out.tar",
        &[
            "--secret",
            &format!("id=s,src={}", secret.display()),
            "--ssh",
            &format!("default={}", key.display()),
        ],
    );
    assert_eq!(entry_data(&fs, "ran"), "ran\n");
    let left: Vec<_> = fs
        .keys()
        .filter(|k| k.starts_with("made") || k.starts_with("run"))
        .collect();
    assert!(left.is_empty(), "mount targets left in the layer: {left:?}");
}

/// A shell command that runs the host's dynamically linked `tool` inside a step that has
/// `dir` bind-mounted at `/host`: the binary, its loader and libraries (from `ldd`) are
/// copied into `dir` and the loader runs it with `--library-path`. None without `ldd`.
fn host_tool(dir: &std::path::Path, tool: &str) -> Option<String> {
    let exe = std::fs::canonicalize(
        sh_ok(Command::new("sh").args(["-c", &format!("command -v {tool}")])).trim(),
    )
    .ok()?;
    let ldd = String::from_utf8(Command::new("ldd").arg(&exe).output().ok()?.stdout).ok()?;
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    let mut interp = None;
    for line in ldd.lines() {
        let linked = line.contains("=>");
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            continue;
        };
        let name = std::path::Path::new(path)
            .file_name()?
            .to_str()?
            .to_string();
        if linked {
            std::fs::copy(path, dir.join("lib").join(&name)).ok()?;
        } else {
            std::fs::copy(path, dir.join(&name)).ok()?;
            interp = Some(format!("/host/{name}"));
        }
    }
    std::fs::copy(&exe, dir.join(tool)).ok()?;
    Some(format!("{} --library-path /host/lib /host/{tool}", interp?))
}

/// Builds a step that lists the agent's keys with the host's `ssh-add -l` and signs a
/// message with `ssh-keygen -Y sign` through it; checks the signature on the host.
fn ssh_round_trip(env: &Env, name: &str, ssh_arg: &str, key: &std::path::Path) {
    let tools = env.path(&format!("{name}-tools"));
    let (Some(add), Some(keygen)) = (
        host_tool(&tools, "ssh-add"),
        host_tool(&tools, "ssh-keygen"),
    ) else {
        eprintln!("SKIPPED: cannot copy ssh-add/ssh-keygen with their libraries");
        return;
    };
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let ctx = context(
        env,
        name,
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM busybox
RUN --mount=type=ssh --mount=type=bind,from=tools,target=/host --mount=type=bind,target=/c \
    test \"$SSH_AUTH_SOCK\" = /run/buildkit/ssh_agent.0 \
    && {add} -l > /keys \
    && cp /c/msg /tmp/msg && {keygen} -Y sign -f /c/id.pub -n kiln-test /tmp/msg \
    && cp /tmp/msg.sig /msg.sig
"
                ),
            ),
            ("id.pub", &pubkey),
            ("msg", "signed through the agent\n"),
        ],
    );
    let fs = build_rootfs_tar(
        env,
        &ctx,
        &format!("{name}.tar"),
        &[
            "--ssh",
            ssh_arg,
            "--build-context",
            &format!("tools={}", tools.display()),
        ],
    );
    let fingerprint = sh_ok(Command::new("ssh-keygen").arg("-lf").arg(key));
    let fp = fingerprint.split_whitespace().nth(1).unwrap();
    assert!(
        entry_data(&fs, "keys").contains(fp),
        "{}",
        entry_data(&fs, "keys")
    );
    let sig = env.path(&format!("{name}.sig"));
    std::fs::write(&sig, entry_data(&fs, "msg.sig")).unwrap();
    let o = Command::new("ssh-keygen")
        .args(["-Y", "check-novalidate", "-n", "kiln-test", "-s"])
        .arg(&sig)
        .stdin(std::fs::File::open(ctx.join("msg")).unwrap())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "signature does not verify: {}",
        err_str(&o)
    );
}

fn ssh_key(env: &Env, kind: &str) -> Option<std::path::PathBuf> {
    if !need("ssh-keygen") {
        return None;
    }
    let key = env.path(&format!("id_{kind}"));
    sh_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-C", "kiln-test", "-f"])
            .arg(&key),
    );
    Some(key)
}

#[test]
fn ssh_mount_serves_an_ed25519_key_file() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let Some(key) = ssh_key(&env, "ed25519") else {
        return;
    };
    ssh_round_trip(&env, "keyfile", &format!("default={}", key.display()), &key);
}

#[test]
fn ssh_mount_forwards_the_callers_agent() {
    let env = Env::new();
    if busybox_image(&env).is_none() || !need("ssh-agent") || !need("ssh-add") {
        return;
    }
    let Some(key) = ssh_key(&env, "ed25519") else {
        return;
    };
    let sock = env.path("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    sh_ok(
        Command::new("ssh-add")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &sock),
    );
    // `--ssh default` alone takes the agent from SSH_AUTH_SOCK, as docker does.
    std::env::set_var("SSH_AUTH_SOCK", &sock);
    ssh_round_trip(&env, "agent", "default", &key);
    // The step could not add a key to the caller's agent.
    let listed = sh_ok(
        Command::new("ssh-add")
            .arg("-l")
            .env("SSH_AUTH_SOCK", &sock),
    );
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let _ = agent.kill();
    let _ = agent.wait();
}

#[test]
fn ssh_rsa_key_file_and_missing_required_ssh_are_clear_errors() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let Some(rsa) = ssh_key(&env, "rsa") else {
        return;
    };
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=ssh,id=git,required=true true\n",
        )],
    );
    let spec = format!("git={}", rsa.display());
    let (_, err) = env.fail(&["build", "--ssh", &spec, ctx.to_str().unwrap()]);
    assert!(err.contains(&format!("--ssh {spec}")), "{err}");
    assert!(err.contains("only ed25519"), "{err}");
    let (_, err) = env.fail(&["build", "--progress", "plain", ctx.to_str().unwrap()]);
    assert!(err.contains("--ssh git="), "{err}");
    assert!(err.contains("Dockerfile:2"), "names the line: {err}");
}

#[test]
fn bind_mount_of_the_context_hides_dockerignored_files() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let ctx = context(
        &env,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox
RUN --mount=type=bind,target=/ctx ls -A /ctx | tr '\\n' ' ' > /listing
RUN --mount=type=bind,source=sub,target=/sub ls -A /sub | tr '\\n' ' ' > /sub-listing
RUN --mount=type=bind,source=sub/kept,target=/kept cat /kept > /kept-file
RUN --mount=type=bind,target=/ctx,rw touch /ctx/new && rm /ctx/app.txt
",
            ),
            (".dockerignore", ".env\nsub/hidden\n"),
            (".env", "API_KEY=do-not-ship\n"),
            ("app.txt", "app\n"),
            ("sub/hidden", "h\n"),
            ("sub/kept", "k\n"),
        ],
    );
    let fs = build_rootfs_tar(&env, &ctx, "out.tar", &[]);
    assert_eq!(
        entry_data(&fs, "listing"),
        ".dockerignore Dockerfile app.txt sub "
    );
    assert_eq!(entry_data(&fs, "sub-listing"), "kept ");
    assert_eq!(entry_data(&fs, "kept-file"), "k\n");
    assert!(ctx.join("app.txt").exists() && !ctx.join("new").exists());
    // Naming an ignored file is an error, as in BuildKit (it is not in the context).
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN --mount=type=bind,source=.env,target=/e cat /e\n",
    )
    .unwrap();
    let (_, err) = env.fail(&["build", "--progress", "plain", ctx.to_str().unwrap()]);
    assert!(err.contains(".env"), "{err}");
    assert!(!err.contains("do-not-ship"), "{err}");
}
