//! Behaviour of `solve` observed through results and the event stream. Timing claims are
//! checked from event order/offsets, never by asserting wall-clock totals.

use kiln_solver::{
    solve, CancelToken, Event, EventKind, Job, JobCtx, Options, SolveError, Stream, Worker,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
struct Spec {
    sleep_ms: u64,
    fail: bool,
    panic: bool,
    /// Run until cancelled (bounded by 30 s so a broken solver fails instead of hanging).
    until_cancelled: bool,
    cached: bool,
}

#[derive(Debug, thiserror::Error)]
enum TestError {
    #[error("step failed on purpose")]
    Boom,
    #[error("cancelled")]
    Cancelled,
}

#[derive(Default)]
struct TestWorker {
    runs: Mutex<HashMap<String, usize>>,
    saw_cancel: Mutex<Vec<String>>,
}

impl TestWorker {
    fn runs(&self, key: &str) -> usize {
        self.runs.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

impl Worker<String, Spec> for TestWorker {
    type Output = String;
    type Error = TestError;

    fn describe(&self, key: &String, _: &Spec) -> String {
        format!("step {key}")
    }

    fn execute(
        &self,
        ctx: &JobCtx<'_, String, Spec>,
        inputs: &[Arc<String>],
    ) -> Result<String, TestError> {
        *self
            .runs
            .lock()
            .unwrap()
            .entry(ctx.key().clone())
            .or_default() += 1;
        let spec = ctx.payload();
        if spec.cached {
            ctx.cached(Some("test cache"));
        }
        ctx.log(
            Stream::Stdout,
            format!("hello from {}\n", ctx.key()).as_bytes(),
        );
        if spec.until_cancelled {
            if ctx.cancel_token().wait_timeout(Duration::from_secs(30)) {
                self.saw_cancel.lock().unwrap().push(ctx.key().clone());
                return Err(TestError::Cancelled);
            }
            return Ok("timed out".into());
        }
        if spec.sleep_ms > 0 {
            std::thread::sleep(Duration::from_millis(spec.sleep_ms));
            ctx.add_exec_time(Duration::from_millis(spec.sleep_ms));
        }
        assert!(!spec.panic, "worker exploded");
        if spec.fail {
            return Err(TestError::Boom);
        }
        let ins: Vec<&str> = inputs.iter().map(|s| s.as_str()).collect();
        Ok(format!("{}({})", ctx.key(), ins.join(",")))
    }
}

fn job(key: &str, spec: Spec, deps: &[&str]) -> Job<String, Spec> {
    Job::new(
        key.to_string(),
        spec,
        deps.iter().map(|d| d.to_string()).collect(),
    )
}

fn plain(key: &str, deps: &[&str]) -> Job<String, Spec> {
    job(key, Spec::default(), deps)
}

fn sleepy(key: &str, ms: u64, deps: &[&str]) -> Job<String, Spec> {
    job(
        key,
        Spec {
            sleep_ms: ms,
            ..Spec::default()
        },
        deps,
    )
}

type Outcome = Result<kiln_solver::Solution<String, String>, SolveError<String, TestError>>;

fn run(
    jobs: Vec<Job<String, Spec>>,
    targets: &[&str],
    n: usize,
    worker: &TestWorker,
    cancel: CancelToken,
) -> (Outcome, Vec<Event<String>>) {
    let events = Mutex::new(Vec::new());
    let targets: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
    let opts = Options { jobs: n, cancel };
    let sink = |e: Event<String>| events.lock().unwrap().push(e);
    let r = solve(jobs, &targets, worker, &opts, &sink);
    (r, events.into_inner().unwrap())
}

/// Position in the event stream of `key`'s first event of the given kind.
fn pos(events: &[Event<String>], key: &str, kind: fn(&EventKind) -> bool) -> Option<usize> {
    events.iter().position(|e| e.key == key && kind(&e.kind))
}

fn started(k: &EventKind) -> bool {
    matches!(k, EventKind::Started)
}
fn done(k: &EventKind) -> bool {
    matches!(k, EventKind::Done { .. })
}
fn cancelled(k: &EventKind) -> bool {
    matches!(k, EventKind::Cancelled)
}
fn queued(k: &EventKind) -> bool {
    matches!(k, EventKind::Queued)
}

fn offset(events: &[Event<String>], key: &str, kind: fn(&EventKind) -> bool) -> Duration {
    events[pos(events, key, kind).unwrap()].offset
}

#[test]
fn independent_jobs_run_in_parallel() {
    let w = TestWorker::default();
    let jobs = vec![
        sleepy("a", 400, &[]),
        sleepy("b", 400, &[]),
        plain("t", &["a", "b"]),
    ];
    let (r, ev) = run(jobs, &["t"], 2, &w, CancelToken::new());
    assert_eq!(*r.unwrap().targets[0], "t(a(),b())");
    // Each started before the other finished: their execution intervals overlap.
    assert!(offset(&ev, "b", started) < offset(&ev, "a", done));
    assert!(offset(&ev, "a", started) < offset(&ev, "b", done));
}

#[test]
fn jobs_1_serializes() {
    let w = TestWorker::default();
    let jobs = vec![
        sleepy("a", 50, &[]),
        sleepy("b", 50, &[]),
        sleepy("c", 50, &[]),
    ];
    let (r, ev) = run(jobs, &["a", "b", "c"], 1, &w, CancelToken::new());
    r.unwrap();
    // The sink sees a job's Done before the next job's Started: no overlap at all.
    let mut spans: Vec<(usize, usize)> = ["a", "b", "c"]
        .iter()
        .map(|k| (pos(&ev, k, started).unwrap(), pos(&ev, k, done).unwrap()))
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 < pair[1].0, "{spans:?}");
    }
}

#[test]
fn equal_keys_execute_once_and_share_the_result() {
    let w = TestWorker::default();
    let jobs = vec![
        plain("base", &[]),
        plain("x", &["base"]),
        plain("base", &[]),
        plain("y", &["base"]),
        plain("t", &["x", "y"]),
    ];
    let (r, ev) = run(jobs, &["t"], 4, &w, CancelToken::new());
    let sol = r.unwrap();
    assert_eq!(w.runs("base"), 1);
    assert_eq!(*sol.targets[0], "t(x(base()),y(base()))");
    assert_eq!(sol.stats.total, 4);
    let queued_base = ev
        .iter()
        .filter(|e| e.key == "base" && queued(&e.kind))
        .count();
    assert_eq!(queued_base, 1);
}

#[test]
fn a_job_starts_only_after_all_its_inputs_are_done() {
    let w = TestWorker::default();
    let jobs = vec![
        sleepy("slow", 100, &[]),
        plain("fast", &[]),
        plain("top", &["fast", "slow"]),
    ];
    let (r, ev) = run(jobs, &["top"], 4, &w, CancelToken::new());
    assert_eq!(*r.unwrap().targets[0], "top(fast(),slow())");
    let top = pos(&ev, "top", started).unwrap();
    assert!(pos(&ev, "slow", done).unwrap() < top);
    assert!(pos(&ev, "fast", done).unwrap() < top);
    // Every job is queued before anything starts, so renderers know the total.
    let last_queued = ev.iter().rposition(|e| queued(&e.kind)).unwrap();
    let first_started = ev.iter().position(|e| started(&e.kind)).unwrap();
    assert!(last_queued < first_started);
}

#[test]
fn a_dependent_starts_without_waiting_for_unrelated_work() {
    // No level barriers: "b" (after quick "a") runs while unrelated "slow" still runs.
    let w = TestWorker::default();
    let jobs = vec![
        sleepy("slow", 300, &[]),
        plain("a", &[]),
        plain("b", &["a"]),
    ];
    let (r, ev) = run(jobs, &["slow", "b"], 2, &w, CancelToken::new());
    r.unwrap();
    assert!(pos(&ev, "b", done).unwrap() < pos(&ev, "slow", done).unwrap());
}

#[test]
fn diamond() {
    let w = TestWorker::default();
    let jobs = vec![
        plain("d", &["b", "c"]),
        sleepy("b", 20, &["a"]),
        plain("c", &["a"]),
        plain("a", &[]),
    ];
    let (r, _) = run(jobs, &["d"], 3, &w, CancelToken::new());
    let sol = r.unwrap();
    assert_eq!(*sol.targets[0], "d(b(a()),c(a()))");
    assert_eq!(w.runs("a"), 1);
    assert_eq!(sol.results.len(), 4);
}

#[test]
fn only_jobs_reachable_from_the_targets_run() {
    let w = TestWorker::default();
    let jobs = vec![plain("a", &[]), plain("b", &["a"]), plain("other", &[])];
    let (r, ev) = run(jobs, &["b"], 2, &w, CancelToken::new());
    assert_eq!(r.unwrap().stats.total, 2);
    assert_eq!(w.runs("other"), 0);
    assert!(ev.iter().all(|e| e.key != "other"));
}

#[test]
fn first_failure_stops_the_build() {
    let w = TestWorker::default();
    let jobs = vec![
        job(
            "long",
            Spec {
                until_cancelled: true,
                ..Spec::default()
            },
            &[],
        ),
        job(
            "bad",
            Spec {
                sleep_ms: 50,
                fail: true,
                ..Spec::default()
            },
            &[],
        ),
        plain("after-bad", &["bad"]),
        plain("waiting", &[]),
    ];
    let (r, ev) = run(
        jobs,
        &["long", "after-bad", "waiting"],
        2,
        &w,
        CancelToken::new(),
    );
    match r {
        Err(SolveError::Job { key, source, .. }) => {
            assert_eq!(key, "bad");
            assert!(matches!(source, TestError::Boom));
        }
        other => panic!("expected the failure of bad, got {other:?}"),
    }
    // The running long job was asked to cancel and saw it.
    assert_eq!(*w.saw_cancel.lock().unwrap(), vec!["long".to_string()]);
    assert!(pos(&ev, "long", cancelled).is_some());
    // Jobs that had not started never start.
    assert_eq!(w.runs("waiting"), 0);
    assert_eq!(w.runs("after-bad"), 0);
    assert!(pos(&ev, "waiting", started).is_none());
    let failed = ev
        .iter()
        .find(|e| matches!(e.kind, EventKind::Failed { .. }))
        .unwrap();
    assert_eq!(failed.key, "bad");
    assert_eq!(
        failed.kind,
        EventKind::Failed {
            error: "step failed on purpose".into()
        }
    );
    // solve returned only after the long job had returned: its terminal event is in.
    assert!(ev.iter().any(|e| e.key == "long" && e.kind.is_terminal()));
}

#[test]
fn cancellation_from_outside() {
    let w = TestWorker::default();
    let token = CancelToken::new();
    let jobs = vec![
        job(
            "long",
            Spec {
                until_cancelled: true,
                ..Spec::default()
            },
            &[],
        ),
        plain("next", &["long"]),
    ];
    let t2 = token.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        t2.cancel();
    });
    let (r, ev) = run(jobs, &["next"], 2, &w, token);
    canceller.join().unwrap();
    assert!(matches!(r, Err(SolveError::Cancelled)), "{r:?}");
    assert!(pos(&ev, "long", cancelled).is_some());
    assert_eq!(w.runs("next"), 0);
    assert!(!ev
        .iter()
        .any(|e| matches!(e.kind, EventKind::Failed { .. })));
}

#[test]
fn a_token_cancelled_before_the_solve_runs_nothing() {
    let w = TestWorker::default();
    let token = CancelToken::new();
    token.cancel();
    let (r, ev) = run(vec![plain("a", &[])], &["a"], 1, &w, token);
    assert!(matches!(r, Err(SolveError::Cancelled)));
    assert_eq!(w.runs("a"), 0);
    assert!(pos(&ev, "a", started).is_none());
}

#[test]
fn failure_does_not_cancel_the_callers_token() {
    let w = TestWorker::default();
    let token = CancelToken::new();
    let jobs = vec![job(
        "bad",
        Spec {
            fail: true,
            ..Spec::default()
        },
        &[],
    )];
    let (r, _) = run(jobs, &["bad"], 1, &w, token.clone());
    assert_eq!(r.unwrap_err().failed_key().map(String::as_str), Some("bad"));
    assert!(!token.is_cancelled());
}

#[test]
fn a_panicking_worker_fails_the_build() {
    let w = TestWorker::default();
    let jobs = vec![job(
        "p",
        Spec {
            panic: true,
            ..Spec::default()
        },
        &[],
    )];
    let (r, _) = run(jobs, &["p"], 1, &w, CancelToken::new());
    match r {
        Err(SolveError::Panicked { key, message, .. }) => {
            assert_eq!(key, "p");
            assert!(message.contains("worker exploded"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn chain_of_1000_jobs() {
    let w = TestWorker::default();
    let n = 1000;
    let mut jobs = vec![plain("0", &[])];
    for i in 1..n {
        let prev = (i - 1).to_string();
        jobs.push(plain(&i.to_string(), &[prev.as_str()]));
    }
    jobs.reverse(); // order in the input must not matter
    let (r, _) = run(jobs, &["999"], 2, &w, CancelToken::new());
    let sol = r.unwrap();
    assert_eq!(sol.stats.total, n);
    assert!(sol.targets[0].starts_with("999(998(997("));
    assert_eq!(sol.targets[0].matches('(').count(), n);
}

#[test]
fn results_are_deterministic() {
    let graph = || {
        let mut jobs = Vec::new();
        for i in 0..20 {
            let deps: Vec<String> = (0..i)
                .filter(|j| (i + j) % 3 == 0)
                .map(|j| j.to_string())
                .collect();
            let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
            jobs.push(sleepy(&i.to_string(), (i % 4) as u64, &deps));
        }
        jobs
    };
    let targets: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    let first = run(
        graph(),
        &targets,
        4,
        &TestWorker::default(),
        CancelToken::new(),
    )
    .0
    .unwrap();
    for jobs in [1, 2, 3, 8] {
        let again = run(
            graph(),
            &targets,
            jobs,
            &TestWorker::default(),
            CancelToken::new(),
        )
        .0
        .unwrap();
        assert_eq!(again.results, first.results);
        assert_eq!(again.targets, first.targets);
    }
}

#[test]
fn cached_and_exec_time_are_reported() {
    let w = TestWorker::default();
    let jobs = vec![
        job(
            "hit",
            Spec {
                cached: true,
                ..Spec::default()
            },
            &[],
        ),
        sleepy("run", 20, &["hit"]),
    ];
    let (r, ev) = run(jobs, &["run"], 2, &w, CancelToken::new());
    let stats = r.unwrap().stats;
    assert_eq!((stats.cached, stats.executed), (1, 1));
    assert!(ev.iter().any(|e| e.key == "hit"
        && e.kind
            == EventKind::Cached {
                reason: Some("test cache".into())
            }));
    let exec = ev.iter().find_map(|e| match e.kind {
        EventKind::Done {
            exec_time,
            duration,
        } if e.key == "run" => Some((exec_time, duration)),
        _ => None,
    });
    let (exec, duration) = exec.unwrap();
    assert_eq!(exec, Some(Duration::from_millis(20)));
    assert!(duration >= Duration::from_millis(20));
    assert!(ev.iter().any(|e| e.key == "run"
        && e.kind
            == EventKind::Log {
                stream: Stream::Stdout,
                data: b"hello from run\n".to_vec()
            }));
    assert!(ev
        .iter()
        .all(|e| e.description == format!("step {}", e.key).as_str().into()));
}

#[test]
fn graph_errors_are_reported_before_anything_runs() {
    let w = TestWorker::default();
    let (r, ev) = run(
        vec![plain("a", &["ghost"])],
        &["a"],
        1,
        &w,
        CancelToken::new(),
    );
    assert!(
        matches!(r, Err(SolveError::MissingDependency { ref job, ref dep }) if job == "a" && dep == "ghost")
    );
    assert!(ev.is_empty());
    let (r, _) = run(vec![plain("a", &[])], &["nope"], 1, &w, CancelToken::new());
    assert!(matches!(r, Err(SolveError::UnknownTarget(ref k)) if k == "nope"));
    let (r, _) = run(
        vec![plain("a", &["b"]), plain("b", &["a"]), plain("c", &["a"])],
        &["c"],
        1,
        &w,
        CancelToken::new(),
    );
    assert!(matches!(r, Err(SolveError::Cycle(_))), "{r:?}");
    assert_eq!(w.runs("a") + w.runs("b") + w.runs("c"), 0);
}

#[test]
fn no_targets_is_an_empty_success() {
    let w = TestWorker::default();
    let (r, ev) = run(vec![plain("a", &[])], &[], 1, &w, CancelToken::new());
    assert_eq!(r.unwrap().stats.total, 0);
    assert!(ev.is_empty());
}
