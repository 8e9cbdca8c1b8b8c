//! Snapshot-style checks of the pure renderers: a scripted event sequence in, exact
//! text out.

use super::*;
use kiln_solver::{EventKind, Stream};
use std::time::{Duration, SystemTime};

fn ev(ms: u64, key: &str, kind: EventKind) -> Event<String> {
    let desc = match key {
        "base" => "[base 1/2] FROM busybox",
        "make" => "[build 2/4] RUN make",
        "copy" => "[build 3/4] COPY . .",
        _ => "[build 4/4] RUN false",
    };
    Event {
        time: SystemTime::UNIX_EPOCH,
        offset: Duration::from_millis(ms),
        key: key.to_string(),
        description: desc.into(),
        kind,
    }
}

fn log(ms: u64, key: &str, text: &str) -> Event<String> {
    ev(
        ms,
        key,
        EventKind::Log {
            stream: Stream::Stdout,
            data: text.as_bytes().to_vec(),
        },
    )
}

fn done(ms: u64, key: &str, dur_ms: u64, exec_ms: Option<u64>) -> Event<String> {
    ev(
        ms,
        key,
        EventKind::Done {
            duration: Duration::from_millis(dur_ms),
            exec_time: exec_ms.map(Duration::from_millis),
        },
    )
}

/// base (cached) → make (runs, prints, interleaved with copy) ; fail queued, not started.
fn script() -> Vec<Event<String>> {
    vec![
        ev(0, "base", EventKind::Queued),
        ev(0, "make", EventKind::Queued),
        ev(0, "copy", EventKind::Queued),
        ev(0, "fail", EventKind::Queued),
        ev(10, "base", EventKind::Started),
        ev(
            11,
            "base",
            EventKind::Cached {
                reason: Some("local".into()),
            },
        ),
        done(12, "base", 2, None),
        ev(20, "make", EventKind::Started),
        ev(21, "copy", EventKind::Started),
        log(532, "make", "cc -c main.c\ncc -o app"),
        log(700, "make", " main.o\n"),
        done(800, "copy", 779, None),
        done(1220, "make", 1200, Some(1000)),
    ]
}

fn plain_text(events: &[Event<String>]) -> String {
    let mut r = Renderer::new(ProgressMode::Plain);
    events.iter().map(|e| r.on_event(e)).collect()
}

#[test]
fn plain_output_is_buildkit_like() {
    let out = plain_text(&script());
    let want = "\
#1 [base 1/2] FROM busybox
#1 CACHED (local)

#2 [build 2/4] RUN make

#3 [build 3/4] COPY . .

#2 [build 2/4] RUN make
#2 0.512 cc -c main.c
#2 0.680 cc -o app main.o

#3 [build 3/4] COPY . .
#3 DONE 0.8s

#2 [build 2/4] RUN make
#2 DONE 1.2s
";
    assert_eq!(out, want);
}

#[test]
fn plain_failure_flushes_the_last_line_and_reports_the_error() {
    let events = vec![
        ev(0, "fail", EventKind::Queued),
        ev(0, "fail", EventKind::Started),
        log(100, "fail", "no newline at end"),
        ev(
            150,
            "fail",
            EventKind::Failed {
                error: "process \"/bin/sh -c false\" exited with code 1".into(),
            },
        ),
    ];
    assert_eq!(
        plain_text(&events),
        "#1 [build 4/4] RUN false\n#1 0.150 no newline at end\n\
         #1 ERROR: process \"/bin/sh -c false\" exited with code 1\n"
    );
}

#[test]
fn plain_cancelled_step() {
    let events = vec![
        ev(0, "make", EventKind::Started),
        ev(5, "make", EventKind::Cancelled),
    ];
    assert_eq!(
        plain_text(&events),
        "#1 [build 2/4] RUN make\n#1 CANCELED\n"
    );
}

/// The copy step (0.78 s, no process) and the RUN's 0.2 s outside its process are both
/// kiln overhead.
#[test]
fn plain_summary_counts_cached_and_overhead() {
    let mut r = Renderer::new(ProgressMode::Plain);
    for e in &script() {
        r.on_event(e);
    }
    assert_eq!(
        r.finish(Duration::from_millis(1300), 80, None),
        "\nBuilt 3/4 steps in 1.3s: 1 cached, 2 run (1.0s in RUN processes, 1.0s kiln overhead)\n"
    );
}

fn tty_board(events: &[Event<String>]) -> Board<String> {
    let mut b = Board::default();
    for e in events {
        b.apply(e);
    }
    b
}

#[test]
fn tty_frame_while_running() {
    // Stop the script while make still runs.
    let s = script();
    let b = tty_board(&s[..10]);
    let frame = tty::frame(&b, Duration::from_millis(3200), 50, 24, false);
    let want = [
        "[+] Building 3.2s (1/4)",
        " => CACHED [base 1/2] FROM busybox            0.0s",
        " => [build 2/4] RUN make                      3.2s",
        " => => # cc -c main.c",
        " => => # cc -o app",
        " => [build 3/4] COPY . .                      3.2s",
    ];
    assert_eq!(frame, want);
}

#[test]
fn tty_final_frame_collapses_finished_steps() {
    let b = tty_board(&script());
    let frame = tty::frame(&b, Duration::from_millis(1300), 50, 24, true);
    let want = [
        "[+] Building 1.3s (3/4) FINISHED",
        " => CACHED [base 1/2] FROM busybox            0.0s",
        " => [build 2/4] RUN make                      1.2s",
        " => [build 3/4] COPY . .                      0.8s",
    ];
    assert_eq!(frame, want);
}

#[test]
fn tty_short_terminal_drops_finished_steps_first_and_cuts_long_lines() {
    let s = script();
    let b = tty_board(&s[..10]);
    let frame = tty::frame(&b, Duration::from_millis(3200), 30, 5, false);
    let want = [
        "[+] Building 3.2s (1/4)",
        " => [build 2/4] RUN make  3.2s",
        " => => # cc -c main.c",
        " => => # cc -o app",
        " => [build 3/4] COPY . .  3.2s",
    ];
    assert_eq!(frame, want);
    assert!(frame.iter().all(|l| l.chars().count() <= 30));
}

#[test]
fn tty_shows_only_the_last_lines_of_output() {
    let mut events = vec![ev(0, "make", EventKind::Started)];
    for i in 0..20 {
        events.push(log(10 + i, "make", &format!("line {i}\n")));
    }
    let b = tty_board(&events);
    let frame = tty::frame(&b, Duration::from_secs(1), 80, 24, false);
    assert_eq!(frame.len(), 2 + tty::TAIL_LINES);
    assert_eq!(frame.last().unwrap(), " => => # line 19");
    assert_eq!(frame[2], " => => # line 14");
}

#[test]
fn redraw_moves_up_over_the_previous_frame() {
    let mut r = tty::Redraw::default();
    let first = r.render(&["a".into(), "b".into()]);
    assert_eq!(first, "a\x1b[K\nb\x1b[K\n\x1b[J");
    let second = r.render(&["c".into()]);
    assert_eq!(second, "\r\x1b[2Ac\x1b[K\n\x1b[J");
}

#[test]
fn failure_report_shows_output_source_and_exit_code() {
    let events = vec![
        ev(0, "fail", EventKind::Started),
        log(100, "fail", "checking...\nboom\n"),
        ev(
            200,
            "fail",
            EventKind::Failed {
                error: "process \"/bin/sh -c false\" did not complete successfully".into(),
            },
        ),
    ];
    let mut r = Renderer::new(ProgressMode::Tty);
    for e in &events {
        r.on_event(e);
    }
    let info = FailureInfo {
        key: "fail".to_string(),
        exit_code: Some(1),
        source_excerpt: Some("Dockerfile:7\n   7 | >>> RUN false\n".into()),
    };
    let out = r.finish(Duration::from_millis(300), 40, Some(&info));
    let want = "\
[+] Building 0.3s (0/1) FAILED\x1b[K
 => ERROR [build 4/4] RUN false     0.2s\x1b[K
\x1b[JFailed after 0/1 steps in 0.3s: 0 cached, 0 run
------
 > [build 4/4] RUN false:
0.100 checking...
0.100 boom
------
Dockerfile:7
   7 | >>> RUN false
ERROR: [build 4/4] RUN false: process \"/bin/sh -c false\" did not complete successfully (exit code: 1)
";
    assert_eq!(out, want);
}

#[test]
fn json_is_one_object_per_line() {
    let mut r = Renderer::new(ProgressMode::Json);
    let out: String = script().iter().map(|e| r.on_event(e)).collect();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), script().len());
    let v: serde_json::Value = serde_json::from_str(lines[9]).unwrap();
    assert_eq!(v["kind"], "log");
    assert_eq!(v["key"], "make");
    assert_eq!(v["data"], "cc -c main.c\ncc -o app");
    assert_eq!(r.finish(Duration::ZERO, 80, None), "");
}

#[test]
fn auto_mode_follows_the_terminal() {
    assert_eq!(ProgressMode::Auto.resolve(true), ProgressMode::Tty);
    assert_eq!(ProgressMode::Auto.resolve(false), ProgressMode::Plain);
    assert_eq!(ProgressMode::Json.resolve(true), ProgressMode::Json);
}

#[test]
fn the_driver_writes_everything_before_finish_returns() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let p = Progress::start_with(ProgressMode::Plain, Box::new(buf.clone()), || (80, 24)).unwrap();
    let sink = p.sink();
    for e in script() {
        sink(e);
    }
    p.finish(None).unwrap();
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(text.starts_with(&plain_text(&script())), "{text}");
    assert!(text.contains("\nBuilt 3/4 steps in "), "{text}");
}
