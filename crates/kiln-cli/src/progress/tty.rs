//! `--progress tty`: a live view redrawn in place. [`frame`] is pure (board + clock +
//! terminal size → lines); [`Redraw`] turns successive frames into ANSI output.

use super::board::{Board, StepState};
use super::fmt_secs;
use std::hash::Hash;
use std::time::Duration;

/// Output lines shown under a running step.
pub const TAIL_LINES: usize = 6;

/// The lines of the view at `now` (offset since the build started). Finished steps are
/// collapsed to one line; when the terminal is too short the oldest finished steps go
/// first, so running steps stay visible. No line is wider than `width` (a wrapped line
/// would break the cursor arithmetic of the redraw).
pub fn frame<K: Eq + Hash + Clone>(
    board: &Board<K>,
    now: Duration,
    width: usize,
    height: usize,
    finished: bool,
) -> Vec<String> {
    let width = if width == 0 { 80 } else { width };
    let failed = board
        .steps
        .iter()
        .any(|s| matches!(s.state, StepState::Failed(_)));
    let mut header = format!(
        "[+] Building {} ({}/{})",
        fmt_secs(now),
        board.completed(),
        board.total()
    );
    if finished {
        header.push_str(if failed { " FAILED" } else { " FINISHED" });
    }

    let mut started: Vec<_> = board.steps.iter().filter(|s| s.num.is_some()).collect();
    started.sort_by_key(|s| s.num);
    // (collapsible, lines) per step.
    let mut groups: Vec<(bool, Vec<String>)> = started
        .iter()
        .map(|s| {
            let prefix = match (&s.state, s.cached) {
                (StepState::Failed(_), _) => "ERROR ",
                (StepState::Cancelled, _) => "CANCELED ",
                (_, true) => "CACHED ",
                _ => "",
            };
            let mut lines = vec![fit(
                &format!(" => {prefix}{}", s.desc),
                &fmt_secs(s.elapsed(now)),
                width,
            )];
            if s.state == StepState::Running {
                if let Some(st) = &s.status {
                    lines.push(fit(&format!(" => => {st}"), "", width));
                }
                for l in s.tail.last(TAIL_LINES) {
                    lines.push(fit(&format!(" => => # {l}"), "", width));
                }
            }
            (s.is_finished(), lines)
        })
        .collect();

    let room = height.max(2) - 1;
    let count = |g: &[(bool, Vec<String>)]| g.iter().map(|(_, l)| l.len()).sum::<usize>();
    while count(&groups) > room {
        let Some(oldest) = groups.iter().position(|(done, _)| *done) else {
            break;
        };
        groups.remove(oldest);
    }
    let mut lines = vec![fit(&header, "", width)];
    let body: Vec<String> = groups.into_iter().flat_map(|(_, l)| l).collect();
    // Still too tall (many running steps): keep the newest lines.
    let skip = body.len().saturating_sub(room);
    lines.extend(body.into_iter().skip(skip));
    lines
}

/// `left` then `right` flush right, cut to `width` characters.
fn fit(left: &str, right: &str, width: usize) -> String {
    let rlen = right.chars().count();
    let avail = width.saturating_sub(if rlen > 0 { rlen + 1 } else { 0 });
    let mut l: String = left.chars().take(avail).collect();
    if rlen > 0 && rlen < width {
        let pad = avail - l.chars().count();
        l.push_str(&" ".repeat(pad + 1));
        l.push_str(right);
    }
    l
}

/// Draws frames over each other: moves up over the previous frame, rewrites each line
/// and clears what the previous, taller frame left below.
#[derive(Default)]
pub struct Redraw {
    prev_lines: usize,
}

impl Redraw {
    pub fn render(&mut self, lines: &[String]) -> String {
        let mut out = String::new();
        if self.prev_lines > 0 {
            out.push_str(&format!("\r\x1b[{}A", self.prev_lines));
        }
        for l in lines {
            out.push_str(l);
            out.push_str("\x1b[K\n");
        }
        out.push_str("\x1b[J");
        self.prev_lines = lines.len();
        out
    }

    /// Forget the last frame so the next one is drawn below text printed in between
    /// (the failure report, or a log line).
    pub fn detach(&mut self) {
        self.prev_lines = 0;
    }
}
