//! End-to-end tests: a busybox rootfs in a temp dir, run through the real
//! re-exec path (`kiln-sandbox-test-init`). They run as root and, through
//! `tests/run-unprivileged.sh`, as an ordinary user.

use kiln_sandbox::{
    Error, EtcFile, IdMapPolicy, Mount, Network, Output, RootFs, Sandbox, Spec, Stdio, INIT_ARG,
};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("busybox not found: apt-get install -y busybox-static");
}

fn helper() -> PathBuf {
    std::env::var_os("KILN_SANDBOX_TEST_INIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_kiln-sandbox-test-init").into())
}

fn sandbox() -> Sandbox {
    Sandbox::new(helper())
}

/// A fresh temp dir the sandbox (and, rootless, the test user) can use.
fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kiln-sb-test")
        .tempdir()
        .unwrap()
}

/// `<dir>/rootfs` with busybox and a symlink per applet in /bin.
fn rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(busybox(), root.join("bin/busybox")).unwrap();
    let list = std::process::Command::new(busybox())
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            let _ = symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    root
}

fn sh(root: &Path, script: &str) -> Spec {
    let mut spec = Spec::new(
        RootFs::Dir(root.into()),
        vec!["sh".into(), "-c".into(), script.into()],
    );
    spec.env = vec!["PATH=/bin".into(), "HOME=/root".into()];
    spec
}

fn run(spec: &Spec) -> Output {
    sandbox()
        .output(spec)
        .unwrap_or_else(|e| panic!("sandbox failed: {e}"))
}

fn stdout(spec: &Spec) -> String {
    let out = run(spec);
    assert!(
        out.outcome.status.success(),
        "status {:?}, stderr: {}",
        out.outcome.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Contents of a host directory tree (names and file bytes), to show a
/// victim is unchanged.
fn snapshot(p: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let data = std::fs::read(e.path()).unwrap_or_default();
        out.push((e.path(), data));
    }
    out.sort();
    out
}

#[test]
fn exit_codes_pass_through() {
    let t = tmp();
    let root = rootfs(t.path());
    let out = run(&sh(&root, "exit 42"));
    assert_eq!(out.outcome.status.code, Some(42));
    let out = run(&sh(&root, "kill -TERM $$; sleep 5"));
    assert_eq!(out.outcome.status.signal, Some(libc::SIGTERM));
    assert_eq!(out.outcome.status.code, None);
    assert!(run(&sh(&root, "true")).outcome.status.success());
}

#[test]
fn env_is_exactly_the_spec() {
    let t = tmp();
    let root = rootfs(t.path());
    let mut spec = sh(&root, "env");
    spec.args = vec!["env".into()];
    spec.env = vec!["PATH=/bin".into(), "FOO=bar baz".into(), "EMPTY=".into()];
    let mut lines: Vec<String> = stdout(&spec).lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(lines, ["EMPTY=", "FOO=bar baz", "PATH=/bin"]);
}

#[test]
fn pid1_is_init_and_payload_is_pid2() {
    let t = tmp();
    let root = rootfs(t.path());
    let out = stdout(&sh(&root, "echo $$; tr '\\0' ' ' < /proc/1/cmdline"));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("2"));
    assert!(lines.next().unwrap().contains(INIT_ARG), "{out}");
}

#[test]
fn orphans_are_reaped() {
    let t = tmp();
    let root = rootfs(t.path());
    // The subshell exits at once, so `sleep 0.2` is re-parented to pid 1,
    // which must reap it when it exits.
    let out = stdout(&sh(&root, "(sleep 0.2 &); sleep 1; cat /proc/[0-9]*/stat"));
    assert!(out.lines().count() >= 2, "{out}");
    for line in out.lines() {
        let state = line.rsplit_once(") ").unwrap().1.split(' ').next().unwrap();
        assert_ne!(state, "Z", "zombie left: {line}");
    }
}

#[test]
fn payload_in_its_own_process_group_is_still_reaped() {
    let t = tmp();
    let root = rootfs(t.path());
    // An interactive shell moves itself into a new process group (job control); so does
    // `setsid`. pid 1 must still see it exit instead of waiting forever.
    let spec = sh(&root, "exec setsid sh -c 'exit 5'");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run(&spec).outcome.status);
    });
    let status = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("pid 1 did not notice the payload's exit");
    assert_eq!(status.code, Some(5));
}

#[test]
fn proc_and_dev_are_fresh_and_minimal() {
    let t = tmp();
    let root = rootfs(t.path());
    let out = stdout(&sh(
        &root,
        "ls /dev; echo ---; ls /proc | grep -c '^[0-9]'; echo x > /dev/null && echo null-ok; \
         head -c 4 /dev/zero | wc -c; test -e /dev/pts/ptmx && echo ptmx-ok; \
         echo s > /dev/shm/f && echo shm-ok",
    ));
    let (dev, rest) = out.split_once("---\n").unwrap();
    let mut dev: Vec<&str> = dev.lines().collect();
    dev.sort();
    assert_eq!(
        dev,
        [
            "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout",
            "tty", "urandom", "zero"
        ]
    );
    let rest: Vec<&str> = rest.lines().collect();
    // Only our own processes: pid 1, sh, ls... (a fresh pid namespace).
    assert!(rest[0].parse::<u32>().unwrap() <= 5, "{out}");
    assert_eq!(&rest[1..], ["null-ok", "4", "ptmx-ok", "shm-ok"]);
}

#[test]
fn hostname_and_etc_files() {
    let t = tmp();
    let root = rootfs(t.path());
    std::fs::write(root.join("etc/hosts"), "image hosts\n").unwrap();
    let mut spec = sh(
        &root,
        "hostname; cat /etc/hostname; cat /etc/hosts; echo x > /etc/hosts || echo ro",
    );
    spec.hostname = "buildbox".into();
    let out = stdout(&spec);
    assert!(out.starts_with("buildbox\nbuildbox\n"), "{out}");
    assert!(
        out.contains("127.0.0.1\tlocalhost") && out.contains("buildbox"),
        "{out}"
    );
    assert!(out.ends_with("ro\n"), "{out}");
    // The image's file is untouched (the bind covered it).
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hosts")).unwrap(),
        "image hosts\n"
    );
    let mut keep = sh(&root, "cat /etc/hosts");
    keep.etc_files.hosts = EtcFile::Keep;
    assert_eq!(stdout(&keep), "image hosts\n");
}

#[test]
fn cwd_is_created_and_verified() {
    let t = tmp();
    let root = rootfs(t.path());
    let mut spec = sh(&root, "pwd");
    spec.cwd = "/work/deep/dir".into();
    match sandbox().output(&spec) {
        Err(Error::Setup(e)) => assert!(e.to_string().contains("/work/deep/dir"), "{e}"),
        other => panic!("missing cwd must fail: {other:?}"),
    }
    spec.create_cwd = true;
    assert_eq!(stdout(&spec), "/work/deep/dir\n");
    assert!(root.join("work/deep/dir").is_dir());
}

#[test]
fn network_none_has_only_lo_up() {
    let t = tmp();
    let root = rootfs(t.path());
    let mut spec = sh(
        &root,
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; ifconfig lo | grep -c UP",
    );
    spec.network = Network::None;
    assert_eq!(stdout(&spec), "lo\n1\n");
}

#[test]
fn no_file_descriptors_leak() {
    let t = tmp();
    let root = rootfs(t.path());
    // A descriptor without CLOEXEC in the caller, as a sloppy library might leave.
    let f = std::fs::File::open("/etc/hostname").unwrap();
    let leaked = rustix::io::dup(&f).unwrap();
    // `; true` keeps ash from exec-ing ls in place (ls has its own dir fd).
    let out = stdout(&sh(&root, "ls /proc/$$/fd; true"));
    drop(leaked);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["0", "1", "2"]);
}

#[test]
fn setup_errors_are_typed() {
    let t = tmp();
    let root = rootfs(t.path());
    let mut spec = sh(&root, "");
    spec.args = vec!["no-such-program".into()];
    match sandbox().output(&spec) {
        Err(Error::Setup(e)) => {
            assert_eq!(e.step, "exec");
            assert!(e.to_string().contains("not found in PATH"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    let mut spec = sh(&root, "true");
    spec.rootfs = RootFs::Dir(t.path().join("missing"));
    match sandbox().output(&spec) {
        Err(Error::Setup(e)) => assert!(e.to_string().contains("missing"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn readonly_rootfs_and_extra_mounts() {
    let t = tmp();
    let root = rootfs(t.path());
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("file"), "from host\n").unwrap();
    let mut spec = sh(
        &root,
        "cat /src/file; echo x > /src/new || echo bind-ro; echo y > /rw/new && echo bind-rw; \
         echo z > /scratch/f && echo tmpfs-ok; touch /x || echo root-ro",
    );
    spec.readonly_rootfs = true;
    // Mountpoints are created before the root becomes read-only.
    spec.mounts = vec![
        Mount::Bind {
            source: src.clone(),
            target: "/src".into(),
            readonly: true,
        },
        Mount::Bind {
            source: t.path().join("src"),
            target: "/rw".into(),
            readonly: false,
        },
        Mount::Tmpfs {
            target: "/scratch".into(),
            size: Some(1 << 20),
        },
    ];
    let out = stdout(&spec);
    assert_eq!(out, "from host\nbind-ro\nbind-rw\ntmpfs-ok\nroot-ro\n");
    assert!(src.join("new").exists());
}

#[test]
fn overlay_rootfs_writes_go_to_upper() {
    let t = tmp();
    let lower = rootfs(t.path());
    let (upper, work) = (t.path().join("upper"), t.path().join("work"));
    std::fs::create_dir(&upper).unwrap();
    std::fs::create_dir(&work).unwrap();
    let mut spec = sh(&lower, "echo new > /newfile; rm /etc/group; cat /newfile");
    spec.rootfs = RootFs::Overlay {
        lowers: vec![lower.clone()],
        upper: upper.clone(),
        work,
    };
    assert_eq!(stdout(&spec), "new\n");
    assert_eq!(
        std::fs::read_to_string(upper.join("newfile")).unwrap(),
        "new\n"
    );
    assert!(lower.join("etc/group").exists());
    assert!(!lower.join("newfile").exists());
}

#[test]
fn user_and_capabilities() {
    let t = tmp();
    let root = rootfs(t.path());
    // Docker's default bounding set.
    let bits: u64 = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31]
        .iter()
        .map(|b| 1u64 << b)
        .sum();
    let out = stdout(&sh(&root, "grep CapBnd /proc/self/status; id -u"));
    assert_eq!(out, format!("CapBnd:\t{bits:016x}\n0\n"));
    let mut spec = sh(&root, "id -u; id -g; grep CapEff /proc/self/status");
    spec.user = (1000, 1000, vec![]);
    match sandbox().output(&spec) {
        Ok(out) if out.outcome.status.success() => {
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                "1000\n1000\nCapEff:\t0000000000000000\n"
            )
        }
        // Rootless without subordinate ids only uid 0 exists.
        Err(Error::Setup(e)) if !is_root() => assert!(e.to_string().contains("not mapped"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn signals_are_forwarded_and_kill_stops_everything() {
    let t = tmp();
    let root = rootfs(t.path());
    let stdio = || Stdio {
        stdin: std::process::Stdio::null(),
        ..Stdio::inherit()
    };
    let child = sandbox()
        .spawn(&sh(&root, "exec sleep 100"), stdio())
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    child.signal(libc::SIGTERM).unwrap();
    let outcome = child.wait().unwrap();
    assert_eq!(outcome.status.signal, Some(libc::SIGTERM));
    let start = std::time::Instant::now();
    let mut child = sandbox()
        .spawn(&sh(&root, "sleep 100 & sleep 100"), stdio())
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(start.elapsed().as_secs() < 10);
}

#[test]
fn single_id_map_policy() {
    let t = tmp();
    let root = rootfs(t.path());
    let mut spec = sh(&root, "id -u; cat /proc/self/uid_map");
    spec.id_map = IdMapPolicy::Single;
    let out = stdout(&spec);
    let me = rustix::process::geteuid().as_raw();
    let fields: Vec<String> = out.split_whitespace().map(str::to_owned).collect();
    assert_eq!(fields, ["0", "0", &me.to_string(), "1"]);
}

// ---- hostile rootfs: each attack its own test; the host victim must not change.

#[test]
fn attack_proc_symlink_to_host_dir() {
    let t = tmp();
    let root = rootfs(t.path());
    let victim = t.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("marker"), "host").unwrap();
    let before = snapshot(&victim);
    symlink(&victim, root.join("proc")).unwrap();
    let result = sandbox().output(&sh(
        &root,
        "ls /proc/1 >/dev/null && echo proc-ok; ls /proc/ | grep -c marker",
    ));
    match result {
        // Confined: proc landed on <root>/<victim path>, inside the rootfs.
        Ok(out) => assert_eq!(String::from_utf8_lossy(&out.stdout), "proc-ok\n0\n"),
        Err(Error::Setup(e)) => assert!(e.to_string().contains("proc"), "{e}"),
        Err(e) => panic!("{e}"),
    }
    assert_eq!(snapshot(&victim), before);
    assert!(root.join(victim.strip_prefix("/").unwrap()).is_dir());
}

#[test]
fn attack_dev_symlink_to_host_dir() {
    let t = tmp();
    let root = rootfs(t.path());
    let victim = t.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("null"), "host file").unwrap();
    let before = snapshot(&victim);
    symlink(&victim, root.join("dev")).unwrap();
    let out = sandbox()
        .output(&sh(&root, "echo x > /dev/null && ls /dev/ | grep -c tty"))
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    assert_eq!(snapshot(&victim), before);
}

#[test]
fn attack_etc_hosts_symlink_to_host_file() {
    let t = tmp();
    let root = rootfs(t.path());
    let victim = t.path().join("victim-hosts");
    std::fs::write(&victim, "host hosts file\n").unwrap();
    symlink(&victim, root.join("etc/hosts")).unwrap();
    // Also a relative escape for resolv.conf.
    let victim2 = t.path().join("victim-resolv");
    std::fs::write(&victim2, "host resolv\n").unwrap();
    let dots = "../".repeat(root.components().count() + 2);
    symlink(
        format!("{dots}{}", victim2.display()),
        root.join("etc/resolv.conf"),
    )
    .unwrap();
    let out = sandbox()
        .output(&sh(
            &root,
            "cat /etc/hosts; echo pwned > /etc/hosts; echo pwned > /etc/resolv.conf; true",
        ))
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("localhost"));
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "host hosts file\n"
    );
    assert_eq!(std::fs::read_to_string(&victim2).unwrap(), "host resolv\n");
}

#[test]
fn attack_cwd_proc_self_fd() {
    let t = tmp();
    let root = rootfs(t.path());
    for n in 0..8 {
        let mut spec = sh(&root, "pwd; ls");
        spec.cwd = format!("/proc/self/fd/{n}");
        match sandbox().output(&spec) {
            Err(Error::Setup(e)) => assert!(e.to_string().contains("working directory"), "{e}"),
            Ok(out) => panic!(
                "cwd {} accepted: {}",
                spec.cwd,
                String::from_utf8_lossy(&out.stdout)
            ),
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn attack_cwd_dotdot() {
    let t = tmp();
    let root = rootfs(t.path());
    std::fs::write(t.path().join("host-marker"), "").unwrap();
    let mut spec = sh(&root, "pwd; ls");
    spec.cwd = "../../../../..".into();
    let out = stdout(&spec);
    assert!(
        out.starts_with("/\n") && out.contains("bin") && !out.contains("host-marker"),
        "{out}"
    );
}

#[test]
fn attack_cwd_symlink_to_outside() {
    let t = tmp();
    let root = rootfs(t.path());
    let victim = t.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("marker"), "host").unwrap();
    let before = snapshot(&victim);
    symlink(&victim, root.join("abs")).unwrap();
    symlink(
        "../../../../../../../..".to_owned() + victim.to_str().unwrap(),
        root.join("rel"),
    )
    .unwrap();
    for link in ["/abs", "/rel"] {
        let mut spec = sh(&root, "ls; touch created-here");
        spec.cwd = link.into();
        spec.create_cwd = true;
        let out = stdout(&spec);
        assert!(!out.contains("marker"), "{link}: {out}");
    }
    assert_eq!(snapshot(&victim), before);
}

#[test]
fn attack_overwrite_proc_self_exe() {
    let t = tmp();
    let root = rootfs(t.path());
    let before = std::fs::read(helper()).unwrap();
    let out = run(&sh(
        &root,
        "echo pwned > /proc/self/exe; echo pwned > /proc/1/exe; cp /bin/busybox /proc/1/exe; \
         exec 3</proc/1/exe && echo opened-pid1-exe; true",
    ));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("opened-pid1-exe"));
    assert_eq!(
        std::fs::read(helper()).unwrap(),
        before,
        "host helper binary modified"
    );
}

#[test]
fn created_mountpoints_are_reported() {
    let t = tmp();
    let root = rootfs(t.path());
    let mut spec = sh(&root, "true");
    spec.mounts = vec![Mount::Tmpfs {
        target: "/cache/a".into(),
        size: None,
    }];
    let out = run(&spec);
    assert_eq!(
        out.outcome.created_mountpoints,
        [
            "/proc",
            "/dev",
            "/etc/hosts",
            "/etc/hostname",
            "/etc/resolv.conf",
            "/cache",
            "/cache/a"
        ]
    );
    // Second run: they exist now, nothing new.
    assert!(run(&spec).outcome.created_mountpoints.is_empty());
}

#[test]
fn rootless_id_map_matches_host_setup() {
    if is_root() {
        return; // ids are the host's; covered by single_id_map_policy.
    }
    let t = tmp();
    let root = rootfs(t.path());
    let out = run(&sh(&root, "cat /proc/self/uid_map /proc/self/gid_map"));
    let lines = String::from_utf8(out.stdout).unwrap().lines().count();
    let me = rustix::process::geteuid().as_raw();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let name = passwd
        .lines()
        .find(|l| l.split(':').nth(2) == Some(&me.to_string()))
        .unwrap()
        .split(':')
        .next()
        .unwrap();
    let has_range = std::fs::read_to_string("/etc/subuid")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with(&format!("{name}:")));
    if has_range {
        assert_eq!(lines, 4, "0→me plus the subordinate range, for uid and gid");
        assert!(
            out.outcome.warnings.is_empty(),
            "{:?}",
            out.outcome.warnings
        );
    } else {
        assert_eq!(lines, 2);
        assert!(
            out.outcome.warnings[0].contains("maps only container uid/gid 0"),
            "{:?}",
            out.outcome.warnings
        );
    }
}

#[test]
fn host_proc_knobs_are_read_only_or_masked() {
    let t = tmp();
    let root = rootfs(t.path());
    let out = stdout(&sh(
        &root,
        "echo '|/tmp/x' > /proc/sys/kernel/core_pattern || echo sys-ro; \
         echo h > /proc/sysrq-trigger || echo sysrq-ro; wc -c < /proc/timer_list; cat /proc/sys/kernel/ostype",
    ));
    assert_eq!(out, "sys-ro\nsysrq-ro\n0\nLinux\n");
}
