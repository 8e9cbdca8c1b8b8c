//! `kiln build`: every Dockerfile instruction with its documented semantics, judged from
//! outside (the exported rootfs read by python's tarfile, `kiln inspect`, `skopeo inspect`,
//! `kiln run` output).

mod common;

use common::*;
use serde_json::Value;

const USERS: &str = "RUN echo 'app:x:1234:2345::/home/app:/bin/sh' >> /etc/passwd \
                     && echo 'grp:x:2345:' >> /etc/group";

#[test]
fn copy_and_add_semantics() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let dockerfile = format!(
        r#"FROM busybox
{USERS}
COPY *.txt /glob/
COPY dir /contents
COPY dir/ /contents-slash/
COPY a.txt /as-file
COPY a.txt /into-dir/
COPY a.txt b.txt /multi/
COPY --chown=app:grp a.txt /chown-name
COPY --chown=1234:2345 b.txt /chown-id
COPY --chown=app dir /chown-dir
COPY --chmod=0600 b.txt /chmod-file
COPY --chmod=751 dir /chmod-dir
ADD arch.tar /untar/
ADD a.txt /added
COPY <<EOF /heredoc.txt
hello heredoc
EOF
COPY <<ONE <<TWO /hd/
first
ONE
second
TWO
"#
    );
    let ctx = context(
        &env,
        "ctx",
        &[
            ("Dockerfile", &dockerfile),
            ("a.txt", "A\n"),
            ("b.txt", "B\n"),
            ("c.md", "C\n"),
            ("dir/x", "X\n"),
            ("dir/sub/y", "Y\n"),
        ],
    );
    py_tar(
        &ctx.join("arch.tar"),
        &[],
        "dir_('d')\nreg('d/t2', b'T2\\n')\nreg('t1', b'T1\\n', 0o640)\n",
    );
    let fs = build_rootfs_tar(&env, &ctx, "rootfs.tar", &[]);

    // Wildcards match only what they match.
    assert_eq!(entry_data(&fs, "glob/a.txt"), "A\n");
    assert_eq!(entry_data(&fs, "glob/b.txt"), "B\n");
    assert!(!fs.contains_key("glob/c.md"), "*.txt matched c.md");
    // A directory source copies its contents, not the directory itself.
    assert_eq!(entry_data(&fs, "contents/x"), "X\n");
    assert_eq!(entry_data(&fs, "contents/sub/y"), "Y\n");
    assert!(!fs.contains_key("contents/dir"));
    assert_eq!(entry_data(&fs, "contents-slash/sub/y"), "Y\n");
    // Destination without a trailing slash is the file; with one, a directory.
    assert_eq!(entry_data(&fs, "as-file"), "A\n");
    assert_eq!(fs["as-file"]["type"], "0");
    assert_eq!(fs["into-dir"]["type"], "5");
    assert_eq!(entry_data(&fs, "into-dir/a.txt"), "A\n");
    assert_eq!(entry_data(&fs, "multi/b.txt"), "B\n");
    // --chown by name (from the image's /etc/passwd and /etc/group) and by id.
    for f in ["chown-name", "chown-id"] {
        assert_eq!(fs[f]["uid"], 1234, "{f}: {}", fs[f]);
        assert_eq!(fs[f]["gid"], 2345, "{f}: {}", fs[f]);
    }
    // --chown=user alone: the user's primary group; the copied directory itself too.
    for f in [
        "chown-dir",
        "chown-dir/x",
        "chown-dir/sub",
        "chown-dir/sub/y",
    ] {
        assert_eq!(fs[f]["uid"], 1234, "{f}: {}", fs[f]);
        assert_eq!(fs[f]["gid"], 2345, "{f}: {}", fs[f]);
    }
    assert_eq!(fs["as-file"]["uid"], 0);
    // --chmod.
    assert_eq!(fs["chmod-file"]["mode"], 0o600);
    assert_eq!(fs["chmod-dir/x"]["mode"], 0o751);
    assert_eq!(fs["chmod-dir/sub"]["mode"], 0o751);
    // ADD of a local tar extracts it; ADD of a plain file copies it.
    assert_eq!(entry_data(&fs, "untar/t1"), "T1\n");
    assert_eq!(fs["untar/t1"]["mode"], 0o640);
    assert_eq!(entry_data(&fs, "untar/d/t2"), "T2\n");
    assert!(!fs.contains_key("untar/arch.tar"));
    assert_eq!(entry_data(&fs, "added"), "A\n");
    // COPY heredocs.
    assert_eq!(entry_data(&fs, "heredoc.txt"), "hello heredoc\n");
    assert_eq!(entry_data(&fs, "hd/ONE"), "first\n");
    assert_eq!(entry_data(&fs, "hd/TWO"), "second\n");
    env.assert_store_clean();
}

#[test]
fn run_shell_workdir_user_env_arg() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let dockerfile = format!(
        r#"FROM busybox
{USERS}
ARG A=default-a
ARG B
ENV E1=env1 E2="two words"
RUN echo "shell $A $B $E1 $E2" > /shell-form
RUN ["/bin/sh", "-c", "echo exec $E1 > /exec-form"]
RUN ["/bin/echo", "no shell: $E1"]
SHELL ["/bin/env", "VIA_SHELL=yes", "/bin/sh", "-c"]
RUN echo "shell=$VIA_SHELL" > /shell-instr
SHELL ["/bin/sh", "-c"]
RUN <<EOT
echo line1 > /heredoc-run
echo "line2 $E1" >> /heredoc-run
EOT
RUN <<'EOT' sh -s extra
echo "args: $1" > /heredoc-args
EOT
USER app:grp
WORKDIR /work/deep
RUN id -u > uid && id -g > gid && pwd > pwd && echo hi > mine
WORKDIR rel
USER root
RUN pwd > /rel-pwd
"#
    );
    let ctx = context(&env, "ctx", &[("Dockerfile", &dockerfile)]);
    let fs = build_rootfs_tar(&env, &ctx, "rootfs.tar", &["--build-arg", "B=from-cli"]);

    assert_eq!(
        entry_data(&fs, "shell-form"),
        "shell default-a from-cli env1 two words\n"
    );
    assert_eq!(entry_data(&fs, "exec-form"), "exec env1\n");
    assert_eq!(entry_data(&fs, "shell-instr"), "shell=yes\n");
    assert_eq!(entry_data(&fs, "heredoc-run"), "line1\nline2 env1\n");
    assert_eq!(entry_data(&fs, "heredoc-args"), "args: extra\n");
    // WORKDIR is created and owned by the USER in effect; RUN runs as that user there.
    for d in ["work", "work/deep"] {
        assert_eq!(fs[d]["type"], "5");
        assert_eq!(fs[d]["uid"], 1234, "{d}: {}", fs[d]);
        assert_eq!(fs[d]["gid"], 2345, "{d}: {}", fs[d]);
    }
    assert_eq!(entry_data(&fs, "work/deep/uid"), "1234\n");
    assert_eq!(entry_data(&fs, "work/deep/gid"), "2345\n");
    assert_eq!(entry_data(&fs, "work/deep/pwd"), "/work/deep\n");
    assert_eq!(fs["work/deep/mine"]["uid"], 1234);
    assert_eq!(entry_data(&fs, "rel-pwd"), "/work/deep/rel\n");
    env.assert_store_clean();
}

/// HOME like BuildKit (runc): from the image's /etc/passwd for the step's user, `/` for a
/// uid with no entry, an ENV HOME wins; only the process sees it, never the image config.
#[test]
fn run_home_from_passwd() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let dockerfile = format!(
        r#"FROM busybox
{USERS}
RUN echo "$HOME" > /tmp/root-home
USER app
RUN echo "$HOME" > /tmp/app-home
USER 4242
RUN echo "$HOME" > /tmp/unknown-home
USER root
ENV HOME=/custom
RUN echo "$HOME" > /tmp/env-home
"#
    );
    let ctx = context(&env, "ctx", &[("Dockerfile", &dockerfile)]);
    let fs = build_rootfs_tar(&env, &ctx, "rootfs.tar", &[]);
    assert_eq!(entry_data(&fs, "tmp/root-home"), "/root\n");
    assert_eq!(entry_data(&fs, "tmp/app-home"), "/home/app\n");
    assert_eq!(entry_data(&fs, "tmp/unknown-home"), "/\n");
    assert_eq!(entry_data(&fs, "tmp/env-home"), "/custom\n");

    let ctx = context(
        &env,
        "ctx2",
        &[("Dockerfile", "FROM busybox\nRUN echo \"$HOME\" > /h\n")],
    );
    build_tag(&env, &ctx, "home", &[]);
    let cfg = image_config(&env, "home");
    let envs = cfg["Env"].to_string();
    assert!(
        !envs.contains("HOME="),
        "HOME entered the image config: {envs}"
    );
    env.assert_store_clean();
}

#[test]
fn config_instructions_and_history() {
    let env = Env::new();
    if busybox_image(&env).is_none() || !need("skopeo") {
        return;
    }
    let dockerfile = format!(
        r#"FROM busybox
{USERS}
ARG VERSION=1.0
LABEL org.example.version=$VERSION other="two words"
ENV GREETING=hello
EXPOSE 8080 53/udp
VOLUME ["/data", "/cache"]
WORKDIR /srv
USER app:grp
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD ["/bin/true"]
STOPSIGNAL SIGUSR1
ENTRYPOINT ["/bin/echo", "ep"]
CMD ["default-arg"]
"#
    );
    let ctx = context(&env, "ctx", &[("Dockerfile", &dockerfile)]);
    let archive = env.path("img.tar");
    let spec = format!("type=docker,dest={}", archive.display());
    build_json(
        &env,
        &ctx,
        &["-t", "cfg", "--label", "from.cli=yes", "-o", &spec],
    );

    let cfg = image_config(&env, "cfg");
    assert_eq!(cfg["Labels"]["org.example.version"], "1.0");
    assert_eq!(cfg["Labels"]["other"], "two words");
    assert_eq!(cfg["Labels"]["from.cli"], "yes");
    let envs: Vec<&str> = cfg["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(envs.contains(&"GREETING=hello"), "{envs:?}");
    assert!(envs.iter().any(|e| e.starts_with("PATH=")), "{envs:?}");
    assert!(cfg["ExposedPorts"]["8080/tcp"].is_object(), "{cfg}");
    assert!(cfg["ExposedPorts"]["53/udp"].is_object(), "{cfg}");
    assert!(cfg["Volumes"]["/data"].is_object(), "{cfg}");
    assert!(cfg["Volumes"]["/cache"].is_object(), "{cfg}");
    assert_eq!(cfg["WorkingDir"], "/srv");
    assert_eq!(cfg["User"], "app:grp");
    assert_eq!(cfg["StopSignal"], "SIGUSR1");
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/echo", "ep"]));
    assert_eq!(cfg["Cmd"], serde_json::json!(["default-arg"]));
    let hc = &cfg["Healthcheck"];
    assert_eq!(hc["Test"], serde_json::json!(["CMD", "/bin/true"]), "{hc}");
    assert_eq!(hc["Interval"], 5_000_000_000u64, "{hc}");
    assert_eq!(hc["Timeout"], 2_000_000_000u64, "{hc}");
    assert_eq!(hc["Retries"], 4, "{hc}");

    // History: one entry per instruction after the base's; metadata-only steps are
    // empty_layer, and the layer count matches the non-empty entries (judged by skopeo).
    let skopeo_cfg: Value = serde_json::from_str(&sh_ok(
        std::process::Command::new("skopeo")
            .args(["inspect", "--config", "--raw"])
            .arg(format!("docker-archive:{}", archive.display())),
    ))
    .unwrap();
    assert_eq!(skopeo_cfg["config"], cfg, "skopeo sees the same config");
    let history = skopeo_cfg["history"].as_array().unwrap();
    let by: Vec<(String, bool)> = history
        .iter()
        .map(|h| {
            (
                h["created_by"].as_str().unwrap_or("").to_string(),
                h["empty_layer"] == Value::Bool(true),
            )
        })
        .collect();
    let find = |needle: &str| -> bool {
        by.iter()
            .find(|(c, _)| c.contains(needle))
            .unwrap_or_else(|| panic!("no history entry for {needle}: {by:#?}"))
            .1
    };
    assert!(!find("app:x:1234"), "RUN adds a layer: {by:#?}");
    for meta in [
        "LABEL",
        "ENV GREETING",
        "EXPOSE",
        "VOLUME",
        "USER",
        "HEALTHCHECK",
        "STOPSIGNAL",
        "ENTRYPOINT",
        "CMD",
    ] {
        assert!(find(meta), "{meta} must be empty_layer: {by:#?}");
    }
    let non_empty = by.iter().filter(|(_, e)| !e).count();
    let layers = skopeo_cfg["rootfs"]["diff_ids"].as_array().unwrap().len();
    assert_eq!(non_empty, layers, "history vs layers: {by:#?}");

    // Running it: ENTRYPOINT + CMD, and CMD replaced by run arguments.
    assert_eq!(env.ok(&["run", "--rm", "cfg"]), "ep default-arg\n");
    assert_eq!(env.ok(&["run", "--rm", "cfg", "other"]), "ep other\n");
    env.assert_store_clean();
}

#[test]
fn entrypoint_resets_inherited_cmd() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    // busybox has CMD ["sh"]: a new ENTRYPOINT drops it.
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nENTRYPOINT [\"/bin/echo\", \"ep\"]\n",
        )],
    );
    build_tag(&env, &ctx, "ep", &[]);
    let cfg = image_config(&env, "ep");
    assert!(cfg["Cmd"].is_null(), "inherited CMD kept: {cfg}");
    assert_eq!(env.ok(&["run", "--rm", "ep"]), "ep\n");

    // A CMD in the same stage after ENTRYPOINT stays; a CMD in a child stage without a new
    // ENTRYPOINT keeps the parent's ENTRYPOINT.
    let ctx2 = context(
        &env,
        "ctx2",
        &[("Dockerfile", "FROM ep\nCMD [\"child\"]\n")],
    );
    build_tag(&env, &ctx2, "child", &[]);
    assert_eq!(env.ok(&["run", "--rm", "child"]), "ep child\n");
    // Shell-form ENTRYPOINT ignores CMD and run arguments.
    let ctx3 = context(
        &env,
        "ctx3",
        &[("Dockerfile", "FROM child\nENTRYPOINT echo shell-ep\n")],
    );
    build_tag(&env, &ctx3, "shellep", &[]);
    let cfg = image_config(&env, "shellep");
    assert_eq!(
        cfg["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c", "echo shell-ep"])
    );
    assert!(cfg["Cmd"].is_null(), "inherited CMD kept: {cfg}");
    assert_eq!(env.ok(&["run", "--rm", "shellep"]), "shell-ep\n");
}

#[test]
fn onbuild_triggers_run_in_the_child() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let parent = context(
        &env,
        "parent",
        &[(
            "Dockerfile",
            "FROM busybox\nONBUILD RUN echo triggered > /onbuild-run\nONBUILD COPY trigger.txt /onbuild-copy\nRUN echo parent > /parent\n",
        )],
    );
    build_tag(&env, &parent, "parent", &[]);
    let pcfg = image_config(&env, "parent");
    assert_eq!(
        pcfg["OnBuild"],
        serde_json::json!([
            "RUN echo triggered > /onbuild-run",
            "COPY trigger.txt /onbuild-copy"
        ]),
        "{pcfg}"
    );
    // The parent itself did not run its triggers.
    let pfs = {
        let dest = env.path("parent.tar");
        let spec = format!("type=tar,dest={}", dest.display());
        build_json(&env, &parent, &["-o", &spec]);
        tar_entries(&dest)
    };
    assert!(!pfs.contains_key("onbuild-run"));

    let child = context(
        &env,
        "child",
        &[
            (
                "Dockerfile",
                "FROM parent\nRUN cat /onbuild-run /onbuild-copy > /child\n",
            ),
            ("trigger.txt", "from child context\n"),
        ],
    );
    let fs = build_rootfs_tar(&env, &child, "child.tar", &["-t", "child"]);
    assert_eq!(entry_data(&fs, "onbuild-run"), "triggered\n");
    assert_eq!(entry_data(&fs, "onbuild-copy"), "from child context\n");
    assert_eq!(entry_data(&fs, "child"), "triggered\nfrom child context\n");
    assert_eq!(entry_data(&fs, "parent"), "parent\n");
    // Triggers are consumed: the child's config has none.
    let ccfg = image_config(&env, "child");
    assert!(
        ccfg["OnBuild"].is_null() || ccfg["OnBuild"] == serde_json::json!([]),
        "{ccfg}"
    );
}
