//! The renderer-independent state of a build: one [`Step`] per job, built from solver
//! events. Both the tty frame and the failure report read it; nothing here prints.

use kiln_solver::{Event, EventKind};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

/// Output lines kept per step: enough for the failure report; the tty shows fewer.
pub const KEEP_LINES: usize = 30;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepState {
    Queued,
    Running,
    Done,
    Failed(String),
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct Step {
    /// `#n`, given in start order like BuildKit; `None` until the step starts.
    pub num: Option<usize>,
    pub desc: Arc<str>,
    pub state: StepState,
    pub cached: bool,
    /// Offsets since the build started.
    pub started: Option<Duration>,
    pub finished: Option<Duration>,
    pub exec_time: Option<Duration>,
    pub status: Option<String>,
    pub tail: LogTail,
}

impl Step {
    /// Elapsed time shown for the step: final once finished, running otherwise.
    pub fn elapsed(&self, now: Duration) -> Duration {
        match (self.started, self.finished) {
            (Some(s), Some(f)) => f.saturating_sub(s),
            (Some(s), None) => now.saturating_sub(s),
            _ => Duration::ZERO,
        }
    }

    pub fn is_finished(&self) -> bool {
        !matches!(self.state, StepState::Queued | StepState::Running)
    }
}

/// The last complete lines of a step's output plus the unfinished one.
#[derive(Debug, Clone, Default)]
pub struct LogTail {
    /// (offset since the step started, line) — sanitised, without the newline.
    pub lines: std::collections::VecDeque<(Duration, String)>,
    partial: Vec<u8>,
}

impl LogTail {
    /// Adds a chunk; returns the lines it completed (for the plain renderer).
    pub fn push(&mut self, at: Duration, data: &[u8]) -> Vec<(Duration, String)> {
        let mut done = Vec::new();
        for &b in data {
            if b == b'\n' {
                let line = sanitize(&std::mem::take(&mut self.partial));
                done.push((at, line));
            } else {
                self.partial.push(b);
            }
        }
        for l in &done {
            self.keep(l.clone());
        }
        done
    }

    /// Completes the unfinished line, if any (the process ended without a newline).
    pub fn flush(&mut self, at: Duration) -> Option<(Duration, String)> {
        if self.partial.is_empty() {
            return None;
        }
        let l = (at, sanitize(&std::mem::take(&mut self.partial)));
        self.keep(l.clone());
        Some(l)
    }

    fn keep(&mut self, l: (Duration, String)) {
        if self.lines.len() == KEEP_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(l);
    }

    /// The last `n` lines, the unfinished one included (it is what a progress bar shows).
    pub fn last(&self, n: usize) -> Vec<String> {
        let mut v: Vec<String> = self.lines.iter().map(|(_, l)| l.clone()).collect();
        if !self.partial.is_empty() {
            v.push(sanitize(&self.partial));
        }
        let skip = v.len().saturating_sub(n);
        v.split_off(skip)
    }
}

/// Makes process output safe to draw: a `\r` restarts the line (progress bars), tabs
/// become spaces, and other control bytes (escape sequences included) are dropped so
/// user output cannot move our cursor.
pub fn sanitize(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let text = text.rsplit('\r').find(|s| !s.is_empty()).unwrap_or("");
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push_str("    "),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// All steps of one build, in queue order.
#[derive(Debug)]
pub struct Board<K> {
    index: HashMap<K, usize>,
    pub steps: Vec<Step>,
    next_num: usize,
}

impl<K: Eq + Hash + Clone> Default for Board<K> {
    fn default() -> Self {
        Board {
            index: HashMap::new(),
            steps: Vec::new(),
            next_num: 1,
        }
    }
}

impl<K: Eq + Hash + Clone> Board<K> {
    pub fn step(&self, key: &K) -> Option<&Step> {
        self.index.get(key).map(|&i| &self.steps[i])
    }

    /// Records an event; returns the index of the step it concerns and the output lines
    /// (offset in the step, text) that the event completed.
    pub fn apply(&mut self, e: &Event<K>) -> (usize, Vec<(Duration, String)>) {
        let i = match self.index.get(&e.key) {
            Some(&i) => i,
            None => {
                self.steps.push(Step {
                    num: None,
                    desc: e.description.clone(),
                    state: StepState::Queued,
                    cached: false,
                    started: None,
                    finished: None,
                    exec_time: None,
                    status: None,
                    tail: LogTail::default(),
                });
                self.index.insert(e.key.clone(), self.steps.len() - 1);
                self.steps.len() - 1
            }
        };
        let s = &mut self.steps[i];
        let mut lines = Vec::new();
        match &e.kind {
            EventKind::Queued => {}
            EventKind::Started => {
                if s.num.is_none() {
                    s.num = Some(self.next_num);
                    self.next_num += 1;
                }
                s.state = StepState::Running;
                s.started = Some(e.offset);
            }
            EventKind::Cached { .. } => s.cached = true,
            EventKind::Log { data, .. } => {
                let at = e.offset.saturating_sub(s.started.unwrap_or_default());
                lines = s.tail.push(at, data);
            }
            EventKind::Status { text } => s.status = Some(text.clone()),
            EventKind::Done { exec_time, .. } => {
                s.state = StepState::Done;
                s.exec_time = *exec_time;
            }
            EventKind::Failed { error } => s.state = StepState::Failed(error.clone()),
            EventKind::Cancelled => s.state = StepState::Cancelled,
        }
        if e.kind.is_terminal() {
            s.finished = Some(e.offset);
            let at = e.offset.saturating_sub(s.started.unwrap_or_default());
            lines.extend(s.tail.flush(at));
        }
        (i, lines)
    }

    pub fn total(&self) -> usize {
        self.steps.len()
    }

    /// Steps that finished successfully (cached ones included).
    pub fn completed(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.state == StepState::Done)
            .count()
    }

    /// Build statistics for the summary line.
    /// Whether the build was interrupted (a step ended cancelled).
    pub fn any_cancelled(&self) -> bool {
        self.steps.iter().any(|s| s.state == StepState::Cancelled)
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in &self.steps {
            if s.state != StepState::Done {
                continue;
            }
            if s.cached {
                t.cached += 1;
                continue;
            }
            t.executed += 1;
            // Every executed step's time outside user processes is kiln's: a COPY's all
            // of it, a RUN's what is not the process itself.
            let x = s.exec_time.unwrap_or_default();
            t.exec += x;
            t.overhead += s.elapsed(Duration::ZERO).saturating_sub(x);
        }
        t
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub executed: usize,
    pub cached: usize,
    /// Time spent inside user processes (RUN).
    pub exec: Duration,
    /// Time executed steps spent in kiln outside those processes (summed over steps, so
    /// parallel steps count twice; the wall time is in the summary line too).
    pub overhead: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_lines_and_carriage_returns() {
        let mut t = LogTail::default();
        assert!(t.push(Duration::ZERO, b"ab").is_empty());
        let done = t.push(Duration::from_secs(1), b"c\n10%\r50%\r100%\nx");
        let lines: Vec<&str> = done.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(lines, ["abc", "100%"]);
        assert_eq!(t.last(2), ["100%", "x"]);
        assert_eq!(t.flush(Duration::ZERO).unwrap().1, "x");
        assert_eq!(t.flush(Duration::ZERO), None);
    }

    #[test]
    fn escape_sequences_cannot_reach_the_terminal() {
        assert_eq!(sanitize(b"\x1b[2Jred\x1b[0m\tok"), "[2Jred[0m    ok");
    }

    #[test]
    fn the_tail_is_bounded() {
        let mut t = LogTail::default();
        for i in 0..100 {
            t.push(Duration::ZERO, format!("{i}\n").as_bytes());
        }
        assert_eq!(t.lines.len(), KEEP_LINES);
        assert_eq!(t.last(1), ["99"]);
    }
}
