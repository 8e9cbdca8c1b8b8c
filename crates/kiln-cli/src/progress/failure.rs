//! The report printed under the progress output when a step fails: which step, its exit
//! code, the last lines it printed, and the Dockerfile lines that produced it (rendered
//! by the caller, which owns the source map).

use super::board::Board;
use std::fmt::Write as _;
use std::hash::Hash;

/// Output lines of the failing step repeated in the report.
pub const FAILURE_LINES: usize = 10;

/// What the caller knows about a failure beyond the event stream.
#[derive(Debug, Clone)]
pub struct FailureInfo<K> {
    pub key: K,
    /// The exit code of the step's process, when it was a process that failed.
    pub exit_code: Option<i32>,
    /// Already formatted source lines (`Dockerfile:12` + numbered lines).
    pub source_excerpt: Option<String>,
}

pub fn report<K: Eq + Hash + Clone>(board: &Board<K>, info: &FailureInfo<K>) -> String {
    let mut out = String::new();
    let Some(step) = board.step(&info.key) else {
        return out;
    };
    let error = match &step.state {
        super::board::StepState::Failed(e) => e.as_str(),
        _ => "failed",
    };
    let lines: Vec<_> = step.tail.lines.iter().collect();
    let shown = &lines[lines.len().saturating_sub(FAILURE_LINES)..];
    if !shown.is_empty() {
        out.push_str("------\n");
        let _ = writeln!(out, " > {}:", step.desc);
        for (t, l) in shown {
            let _ = writeln!(out, "{:.3} {l}", t.as_secs_f64());
        }
        out.push_str("------\n");
    }
    if let Some(src) = &info.source_excerpt {
        out.push_str(src.trim_end_matches('\n'));
        out.push('\n');
    }
    let _ = write!(out, "ERROR: {}: {error}", step.desc);
    if let Some(code) = info.exit_code {
        let _ = write!(out, " (exit code: {code})");
    }
    out.push('\n');
    out
}
