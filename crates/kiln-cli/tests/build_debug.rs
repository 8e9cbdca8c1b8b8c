//! `kiln build --on-error shell`, `RUN --network`, `RUN --security` and `--platform`.

mod common;

use common::*;
use std::io::Write;
use std::process::Stdio;

#[test]
fn on_error_shell_runs_piped_commands_in_the_failed_step() {
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
ENV STEP_VAR=from-env
WORKDIR /work
RUN --mount=type=cache,id=dbg,target=/cache \
    echo cached > /cache/c && echo marker > /work/marker && exit 7
",
        )],
    );
    let mut child = env
        .cmd(&[
            "build",
            "--progress",
            "plain",
            "--on-error",
            "shell",
            ctx.to_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo \"pwd=$(pwd) var=$STEP_VAR marker=$(cat marker) cache=$(cat /cache/c) id=$(id -u)\"\nexit\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let (out, err) = (out_str(&o), err_str(&o));
    assert_eq!(o.status.code(), Some(1), "the build still fails: {err}");
    assert!(err.contains("exit code: 7"), "{err}");
    assert!(err.contains("stdin is not a terminal"), "the note: {err}");
    assert!(
        out.contains("pwd=/work var=from-env marker=marker cache=cached id=0"),
        "the shell ran in the failed step's filesystem, env, workdir and mounts:\n{out}\n{err}"
    );
    // Nothing of the failed step survives.
    let actives = env.root.join("kiln/snapshots/active");
    if actives.exists() {
        assert_eq!(std::fs::read_dir(&actives).unwrap().count(), 0);
    }
}

#[test]
fn on_error_shell_on_a_terminal_is_interactive() {
    let env = Env::new();
    if busybox_image(&env).is_none() || !need("script") {
        return;
    }
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo t > /tty-marker && false\n",
        )],
    );
    // `script` gives kiln a pseudo-terminal as stdin: the shell is interactive (it does
    // job control, which once left pid 1 waiting forever for it).
    let cmd = format!(
        "{KILN} build --progress plain --on-error shell {}",
        ctx.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("KILN_ROOT", &env.root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"echo IN-TTY-$((40+2)) $(cat /tty-marker)\nexit\n")
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let o = match rx.recv_timeout(std::time::Duration::from_secs(90)) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!("kiln did not return after the shell exited");
        }
    };
    drop(stdin);
    let text = format!("{}{}", out_str(&o), err_str(&o));
    assert!(text.contains("opening /bin/sh"), "{text}");
    assert!(text.contains("IN-TTY-42 t"), "{text}");
    assert!(text.contains("shell exited with code 0"), "{text}");
}

#[test]
fn on_error_shell_is_in_build_help() {
    let env = Env::new();
    let help = env.ok(&["build", "--help"]);
    assert!(help.contains("--on-error"), "{help}");
    assert!(help.contains("--ssh"), "{help}");
}

#[test]
fn run_network_none_has_only_loopback_and_host_shares_the_host() {
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
RUN --network=none ls /sys/class/net 2>/dev/null | sort | tr '\\n' ' ' > /none; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' ' > /none-dev
RUN --network=host cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' ' > /host-dev
RUN --network=default cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' ' > /default-dev
",
        )],
    );
    let fs = build_rootfs_tar(&env, &ctx, "out.tar", &[]);
    assert_eq!(entry_data(&fs, "none-dev"), "lo ");
    let host: String = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|n| format!("{n} "))
        .collect();
    assert_eq!(entry_data(&fs, "host-dev"), host);
    assert_eq!(
        entry_data(&fs, "default-dev"),
        host,
        "kiln's default is the host network"
    );
}

/// CapBnd of /proc/self/status as a number.
fn capbnd(text: &str) -> u64 {
    u64::from_str_radix(text.trim(), 16).unwrap()
}

#[test]
fn security_insecure_is_refused_without_the_entitlement_and_full_with_it() {
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
RUN --security=sandbox grep CapBnd /proc/self/status | cut -f2 > /sandbox
RUN --security=insecure grep CapBnd /proc/self/status | cut -f2 > /insecure
",
        )],
    );
    let (_, err) = env.fail(&["build", "--progress", "plain", ctx.to_str().unwrap()]);
    assert!(
        err.contains("--allow security.insecure"),
        "names the flag: {err}"
    );
    assert!(err.contains("Dockerfile:3"), "names the line: {err}");
    let fs = build_rootfs_tar(&env, &ctx, "out.tar", &["--allow", "security.insecure"]);
    let sandbox = capbnd(entry_data(&fs, "sandbox"));
    let insecure = capbnd(entry_data(&fs, "insecure"));
    // CAP_SYS_ADMIN (21) only with insecure; Docker's default set in the sandbox.
    assert_eq!(
        sandbox & (1 << 21),
        0,
        "sandbox keeps CAP_SYS_ADMIN: {sandbox:x}"
    );
    assert_eq!(sandbox, 0xa80425fb, "Docker's default bounding set");
    assert_ne!(
        insecure & (1 << 21),
        0,
        "insecure lacks CAP_SYS_ADMIN: {insecure:x}"
    );
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let host = host
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(capbnd)
        .unwrap();
    assert_eq!(insecure, host, "insecure keeps the full bounding set");
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[test]
fn platform_host_sets_the_platform_args() {
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
ARG TARGETPLATFORM
ARG TARGETOS
ARG TARGETARCH
ARG BUILDPLATFORM
RUN echo \"$TARGETPLATFORM $TARGETOS $TARGETARCH $BUILDPLATFORM\" > /platform
",
        )],
    );
    let platform = format!("linux/{}", host_arch());
    let fs = build_rootfs_tar(&env, &ctx, "out.tar", &["--platform", &platform]);
    assert_eq!(
        entry_data(&fs, "platform"),
        format!("{platform} linux {} {platform}\n", host_arch())
    );
}

/// Whether any enabled binfmt_misc handler exists for `elf_machine`.
fn binfmt_handler(elf_machine: &str) -> bool {
    std::fs::read_dir("/proc/sys/fs/binfmt_misc")
        .map(|d| {
            d.flatten().any(|e| {
                let t = std::fs::read_to_string(e.path()).unwrap_or_default();
                t.starts_with("enabled") && t.contains(elf_machine)
            })
        })
        .unwrap_or(false)
}

#[test]
fn foreign_platform_without_binfmt_is_a_clear_error() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let (foreign, machine) = if host_arch() == "amd64" {
        ("linux/s390x", "0016")
    } else {
        ("linux/amd64", "3e00")
    };
    if binfmt_handler(machine) {
        eprintln!("SKIPPED: a binfmt handler for {foreign} is registered");
        return;
    }
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM busybox\nRUN true\n")]);
    let (_, err) = env.fail(&[
        "build",
        "--progress",
        "plain",
        "--platform",
        foreign,
        ctx.to_str().unwrap(),
    ]);
    assert!(err.contains(&format!("--platform {foreign}")), "{err}");
    assert!(err.contains("binfmt_misc"), "{err}");
}
