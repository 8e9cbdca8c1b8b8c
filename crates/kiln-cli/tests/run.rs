//! End-to-end tests of `kiln run` with a busybox image imported from a rootfs tarball
//! (scripts/mk-busybox-rootfs.sh; needs /bin/busybox from busybox-static).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    scratch: PathBuf,
}

fn kiln(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.arg("--root").arg(root);
    c
}

fn setup() -> Option<Env> {
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: /bin/busybox missing (scripts/setup.sh installs busybox-static)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let tar = dir.path().join("busybox.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mk-busybox-rootfs.sh");
    let st = Command::new("bash").arg(script).arg(&tar).status().unwrap();
    assert!(st.success(), "mk-busybox-rootfs.sh failed");
    let out = kiln(&root)
        .args(["import", "-t", "busybox"])
        .arg(&tar)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(Env {
        _dir: dir,
        root,
        scratch,
    })
}

fn run(env: &Env, args: &[&str]) -> Output {
    kiln(&env.root).arg("run").args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "kiln run failed ({:?}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn active_dirs(env: &Env) -> usize {
    std::fs::read_dir(env.root.join("kiln/snapshots/active"))
        .map(|r| r.count())
        .unwrap_or(0)
}

#[test]
fn run_behaves_like_docker_run() {
    let Some(env) = setup() else { return };

    // Exit code passes through; signals map to 128+n.
    assert_eq!(
        run(&env, &["--rm", "busybox", "sh", "-c", "exit 3"])
            .status
            .code(),
        Some(3)
    );
    assert_eq!(
        run(&env, &["--rm", "busybox", "sh", "-c", "kill -9 $$"])
            .status
            .code(),
        Some(137)
    );

    // -e KEY=VAL and -e KEY (from kiln's environment).
    let o = kiln(&env.root)
        .env("KILN_TEST_B", "from-host")
        .args([
            "run",
            "--rm",
            "-e",
            "A=hello",
            "-e",
            "KILN_TEST_B",
            "busybox",
        ])
        .args(["sh", "-c", "echo $A $KILN_TEST_B"])
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "hello from-host");

    // -w, created when missing.
    assert_eq!(
        stdout(&run(&env, &["--rm", "-w", "/tmp/work", "busybox", "pwd"])),
        "/tmp/work"
    );

    // -u resolved from the image's /etc/passwd.
    assert_eq!(
        stdout(&run(&env, &["--rm", "-u", "nobody", "busybox", "id", "-u"])),
        "65534"
    );
    assert_eq!(
        stdout(&run(
            &env,
            &["--rm", "-u", "nobody:daemon", "busybox", "id", "-g"]
        )),
        "1"
    );
    assert!(!run(&env, &["--rm", "-u", "nosuchuser", "busybox", "true"])
        .status
        .success());

    // -v host:ctr and :ro.
    std::fs::write(env.scratch.join("greeting"), "hi from the host\n").unwrap();
    let vol = format!("{}:/data:ro", env.scratch.display());
    assert_eq!(
        stdout(&run(
            &env,
            &["--rm", "-v", &vol, "busybox", "cat", "/data/greeting"]
        )),
        "hi from the host"
    );
    assert!(
        !run(&env, &["--rm", "-v", &vol, "busybox", "touch", "/data/x"])
            .status
            .success()
    );

    // --rm leaves no active dir behind.
    assert_eq!(active_dirs(&env), 0);

    // Each run gets a fresh upper: a file written in one run is not visible in the next.
    let o = run(&env, &["busybox", "sh", "-c", "echo x > /tmp/marker"]);
    assert!(o.status.success());
    assert_eq!(
        active_dirs(&env),
        1,
        "without --rm the writable layer is kept"
    );
    let o = run(
        &env,
        &[
            "--rm",
            "busybox",
            "sh",
            "-c",
            "test -e /tmp/marker && echo seen || echo fresh",
        ],
    );
    assert_eq!(stdout(&o), "fresh");

    // --network none: only loopback.
    let o = run(
        &env,
        &[
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "ls /sys/class/net 2>/dev/null || cat /proc/net/dev",
        ],
    );
    assert!(!stdout(&o).contains("eth0"));
}
