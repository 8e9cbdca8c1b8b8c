//! `kiln build` as the unprivileged user `kilntest` (created by scripts/setup.sh): the
//! rootless paths (user namespace sandbox, file operations without an overlay mount).

mod common;

use common::*;
use std::process::Command;

/// A kiln command run as `kilntest` against this env's store; None when not root or the
/// user is missing (a message says why).
fn as_kilntest(env: &Env, args: &[&str]) -> Option<std::process::Output> {
    if !rustix::process::geteuid().is_root() || !need("runuser") {
        return None;
    }
    if !Command::new("id")
        .arg("kilntest")
        .output()
        .ok()?
        .status
        .success()
    {
        eprintln!("SKIPPED: user kilntest missing: run scripts/setup.sh");
        return None;
    }
    sh_ok(
        Command::new("chown")
            .args(["-R", "kilntest"])
            .arg(env.dir.path()),
    );
    Some(
        Command::new("runuser")
            .args(["-u", "kilntest", "--", "env"])
            .arg(format!("KILN_ROOT={}", env.root.display()))
            .arg(KILN)
            .args(args)
            .current_dir(env.dir.path())
            .output()
            .unwrap(),
    )
}

fn ok(env: &Env, args: &[&str]) -> Option<String> {
    let o = as_kilntest(env, args)?;
    assert!(
        o.status.success(),
        "kiln {args:?} as kilntest: {}",
        err_str(&o)
    );
    Some(out_str(&o))
}

fn fixture(env: &Env) -> Option<std::path::PathBuf> {
    let tar = busybox_tar(env)?;
    let ctx = context(
        env,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox AS two
RUN echo 1 > /one
RUN echo 2 > /two
FROM busybox
RUN echo 'app:x:1234:2345::/home/app:/bin/sh' >> /etc/passwd && echo 'grp:x:2345:' >> /etc/group
COPY --chown=app:grp f.txt /f.txt
USER app
RUN id -u > /tmp/uid
",
            ),
            ("f.txt", "f\n"),
        ],
    );
    ok(env, &["import", tar.to_str().unwrap(), "-t", "busybox"])?;
    Some(ctx)
}

#[test]
fn rootless_copy_chown_by_name_sees_the_images_passwd() {
    let env = Env::new();
    let Some(ctx) = fixture(&env) else { return };
    let dest = env.path("out.tar");
    let spec = format!("type=tar,dest={}", dest.display());
    ok(
        &env,
        &[
            "build",
            "--progress",
            "plain",
            "-o",
            &spec,
            ctx.to_str().unwrap(),
        ],
    );
    let fs = tar_entries(&dest);
    assert_eq!(entry_data(&fs, "f.txt"), "f\n");
    assert_eq!(entry_data(&fs, "tmp/uid"), "1234\n");
}

/// A rootless build's layers record container ids (0/0 and the --chown owner), not the
/// host ids (kilntest's uid) the files have on disk.
#[test]
fn rootless_layers_record_container_ids() {
    let env = Env::new();
    let Some(ctx) = fixture(&env) else { return };
    let dest = env.path("out.tar");
    let spec = format!("type=tar,dest={}", dest.display());
    ok(
        &env,
        &[
            "build",
            "--progress",
            "plain",
            "-o",
            &spec,
            ctx.to_str().unwrap(),
        ],
    );
    let fs = tar_entries(&dest);
    assert_eq!(fs["etc/passwd"]["uid"], 0, "{}", fs["etc/passwd"]);
    assert_eq!(fs["f.txt"]["uid"], 1234, "{}", fs["f.txt"]);
    assert_eq!(fs["f.txt"]["gid"], 2345, "{}", fs["f.txt"]);
}

/// Without root, COPY --from a stage of several layers reads a materialised copy of it.
#[test]
fn rootless_copy_from_multi_layer_stage() {
    let env = Env::new();
    let Some(ctx) = fixture(&env) else { return };
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox AS two\nRUN echo 1 > /one\nRUN echo 2 > /two\nFROM busybox\nCOPY --from=two /one /two /\n",
    )
    .unwrap();
    ok(
        &env,
        &["build", "--progress", "plain", ctx.to_str().unwrap()],
    );
}

/// Without root, RUN mounts work too: a bind of a layer stack (the sandbox mounts the
/// overlay in its user namespace), a secret file, an ssh key served by kiln, a cache seeded
/// from a one-layer image; mount targets leave nothing in the layer.
#[test]
fn rootless_run_mounts() {
    let env = Env::new();
    let Some(ctx) = fixture(&env) else { return };
    if !need("ssh-keygen") {
        return;
    }
    let key = env.path("id_ed25519");
    sh_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key),
    );
    let secret = env.path("secret");
    std::fs::write(&secret, "rootless-secret").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox AS two
RUN mkdir /d && echo 1 > /d/one
RUN echo 2 > /d/two
FROM busybox
RUN --mount=type=bind,from=two,source=/d,target=/m \
    --mount=type=bind,from=two,source=/d,target=/w,rw \
    --mount=type=secret,id=s \
    --mount=type=ssh \
    --mount=type=cache,target=/c,from=busybox,source=/etc \
    cat /m/one /m/two > /bound && echo x > /w/x && cat /run/secrets/s > /secret-len \
    && test -S \"$SSH_AUTH_SOCK\" && test -f /c/passwd && echo ok > /ok
",
    )
    .unwrap();
    let dest = env.path("out.tar");
    let spec = format!("type=tar,dest={}", dest.display());
    let secret_spec = format!("id=s,src={}", secret.display());
    let ssh_spec = format!("default={}", key.display());
    if ok(
        &env,
        &[
            "build",
            "--progress",
            "plain",
            "-o",
            &spec,
            "--secret",
            &secret_spec,
            "--ssh",
            &ssh_spec,
            ctx.to_str().unwrap(),
        ],
    )
    .is_none()
    {
        return;
    }
    let fs = tar_entries(&dest);
    assert_eq!(entry_data(&fs, "bound"), "1\n2\n");
    assert_eq!(entry_data(&fs, "secret-len"), "rootless-secret");
    assert_eq!(entry_data(&fs, "ok"), "ok\n");
    let left: Vec<_> = fs
        .keys()
        .filter(|k| {
            ["m", "w", "c", "run"]
                .iter()
                .any(|t| k == t || k.starts_with(&format!("{t}/")))
        })
        .collect();
    assert!(left.is_empty(), "mount targets left in the layer: {left:?}");
}
