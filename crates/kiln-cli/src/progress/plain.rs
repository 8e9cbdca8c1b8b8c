//! `--progress plain`: append-only CI logs in BuildKit's plain style. Each event turns
//! into zero or more whole lines; output of concurrent steps is re-headed whenever the
//! log switches from one step to another, so every block says whose lines follow.

use super::board::{Board, StepState};
use super::fmt_secs;
use kiln_solver::{Event, EventKind};
use std::fmt::Write as _;
use std::hash::Hash;

pub struct Plain<K> {
    board: Board<K>,
    /// Step whose block the log is currently in.
    current: Option<usize>,
}

impl<K: Eq + Hash + Clone> Default for Plain<K> {
    fn default() -> Self {
        Plain {
            board: Board::default(),
            current: None,
        }
    }
}

impl<K: Eq + Hash + Clone> Plain<K> {
    pub fn board(&self) -> &Board<K> {
        &self.board
    }

    /// The text (whole lines) to append for `e`.
    pub fn on_event(&mut self, e: &Event<K>) -> String {
        let (i, lines) = self.board.apply(e);
        let step = &self.board.steps[i];
        let Some(num) = step.num else {
            return String::new(); // queued only: nothing to say yet
        };
        let mut out = String::new();
        // Lines this event adds to the step's block.
        let mut body: Vec<String> = Vec::new();
        match &e.kind {
            EventKind::Queued => {}
            EventKind::Started => {}
            // A hit from an imported cache names it: "CACHED (from cache /srv/cache)".
            EventKind::Cached { reason } => body.push(match reason {
                Some(r) => format!("CACHED ({r})"),
                None => "CACHED".into(),
            }),
            EventKind::Log { .. }
            | EventKind::Status { .. }
            | EventKind::Done { .. }
            | EventKind::Failed { .. }
            | EventKind::Cancelled => {
                if let EventKind::Status { text } = &e.kind {
                    body.push(text.clone());
                }
                // Output lines completed by this event (or flushed as the step ended),
                // stamped with seconds since the step started.
                body.extend(
                    lines
                        .iter()
                        .map(|(t, l)| format!("{:.3} {l}", t.as_secs_f64())),
                );
                match &step.state {
                    StepState::Done if !step.cached => {
                        body.push(format!("DONE {}", fmt_secs(step.elapsed(e.offset))))
                    }
                    StepState::Failed(err) if e.kind.is_terminal() => {
                        body.push(format!("ERROR: {err}"))
                    }
                    StepState::Cancelled => body.push("CANCELED".into()),
                    _ => {}
                }
            }
        }
        let header = matches!(e.kind, EventKind::Started);
        if header || (!body.is_empty() && self.current != Some(i)) {
            if self.current.is_some() {
                out.push('\n');
            }
            let _ = writeln!(out, "#{num} {}", step.desc);
            self.current = Some(i);
        }
        for line in body {
            let _ = writeln!(out, "#{num} {line}");
        }
        out
    }
}
