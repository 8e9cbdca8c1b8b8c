//! Ctrl-C during a build: kiln stops the running step, leaves no sandbox process and no
//! half-written state behind, and the store stays fsck-clean.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn sigint_during_run_stops_cleanly() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    // A unique sleep length identifies this test's sandbox process among others.
    let marker = "31.4159";
    let ctx = context(
        &env,
        "cancel",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nRUN echo started && sleep {marker}\nRUN echo never\n"),
        )],
    );
    let mut child = env
        .cmd(&["build", "--progress", "plain", ctx.to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    // Wait until the step's process has printed, so the signal lands mid-RUN.
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("started") && !line.contains("RUN") {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("started")),
        "the RUN never started: {seen:#?}"
    );
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let t = Instant::now();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "kiln took {:?} to stop after SIGINT",
        t.elapsed()
    );
    assert!(!status.success(), "a cancelled build must fail: {rest:#?}");
    assert!(
        !rest.iter().any(|l| l.contains("never")),
        "a step after the cancelled one ran: {rest:#?}"
    );
    // No sandbox process of this build survives.
    let procs = std::process::Command::new("pgrep")
        .args(["-f", &format!("sleep {marker}")])
        .output()
        .unwrap();
    assert!(
        procs.stdout.is_empty(),
        "sandbox process left running: {}",
        String::from_utf8_lossy(&procs.stdout)
    );
    env.assert_fsck_clean();
    let active = env.root.join("kiln/snapshots/active");
    let left: Vec<_> = std::fs::read_dir(&active)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "active step directories left: {left:?}");
}
