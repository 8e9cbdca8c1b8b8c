//! Rendering solver events for `--progress auto|tty|plain|json`.
//!
//! Formatting is pure ([`Renderer`]: events in, text out) so it is tested without a
//! terminal; [`Progress`] is the thin driver that runs a renderer on its own thread and
//! writes to stderr, so a slow terminal never stalls a worker.

// The build command is wired separately; until then parts of this API have no caller.
#![allow(dead_code)]

mod board;
mod failure;
mod plain;
mod tty;

pub use failure::FailureInfo;

use board::Board;
use kiln_solver::Event;
use serde::Serialize;
use std::hash::Hash;
use std::io::{IsTerminal, Write};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the live view is redrawn at most (and at least, while steps run).
const TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProgressMode {
    /// `tty` when stderr is a terminal, else `plain`.
    #[default]
    Auto,
    Tty,
    Plain,
    Json,
}

impl ProgressMode {
    pub fn resolve(self, stderr_is_terminal: bool) -> ProgressMode {
        match self {
            ProgressMode::Auto if stderr_is_terminal => ProgressMode::Tty,
            ProgressMode::Auto => ProgressMode::Plain,
            m => m,
        }
    }
}

/// `1.2s`, the precision BuildKit shows.
pub(crate) fn fmt_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Events in, text out. `now` is the time since the build started.
pub enum Renderer<K> {
    Tty {
        board: Board<K>,
        redraw: tty::Redraw,
    },
    Plain(plain::Plain<K>),
    Json(Board<K>),
}

impl<K: Eq + Hash + Clone + Serialize> Renderer<K> {
    /// `mode` must be resolved (not `Auto`; treated as plain).
    pub fn new(mode: ProgressMode) -> Self {
        match mode {
            ProgressMode::Tty => Renderer::Tty {
                board: Board::default(),
                redraw: tty::Redraw::default(),
            },
            ProgressMode::Json => Renderer::Json(Board::default()),
            ProgressMode::Plain | ProgressMode::Auto => Renderer::Plain(plain::Plain::default()),
        }
    }

    fn board(&self) -> &Board<K> {
        match self {
            Renderer::Tty { board, .. } | Renderer::Json(board) => board,
            Renderer::Plain(p) => p.board(),
        }
    }

    /// Text to write for one event (the tty view draws on [`Renderer::tick`] instead).
    pub fn on_event(&mut self, e: &Event<K>) -> String {
        match self {
            Renderer::Tty { board, .. } => {
                board.apply(e);
                String::new()
            }
            Renderer::Plain(p) => p.on_event(e),
            Renderer::Json(board) => {
                board.apply(e);
                // An event always serialises (string keys, finite numbers); a failure
                // would be a bug, and dropping one progress line is the right reaction.
                serde_json::to_string(e)
                    .map(|s| s + "\n")
                    .unwrap_or_default()
            }
        }
    }

    /// A redraw of the live view; nothing for the append-only modes.
    pub fn tick(&mut self, now: Duration, width: usize, height: usize) -> String {
        match self {
            Renderer::Tty { board, redraw } => {
                redraw.render(&tty::frame(board, now, width, height, false))
            }
            _ => String::new(),
        }
    }

    /// The final text: last frame, summary line and, on failure, the failure report.
    pub fn finish(
        &mut self,
        now: Duration,
        width: usize,
        failure: Option<&FailureInfo<K>>,
    ) -> String {
        let mut out = match self {
            Renderer::Tty { board, redraw } => {
                // Final frame: every step visible, not cut to the terminal height.
                redraw.render(&tty::frame(board, now, width, usize::MAX, true))
            }
            Renderer::Plain(_) => String::new(),
            Renderer::Json(_) => return String::new(), // machine output: events only
        };
        if let Renderer::Plain(_) = self {
            out.push('\n');
        }
        out.push_str(&summary(self.board(), now, failure.is_none()));
        if let Some(f) = failure {
            out.push_str(&failure::report(self.board(), f));
        }
        out
    }
}

/// `Built 9 steps in 3.2s: 3 cached, 6 run (2.1s in RUN processes, 0.4s kiln overhead)`.
fn summary<K: Eq + Hash + Clone>(board: &Board<K>, now: Duration, ok: bool) -> String {
    let t = board.totals();
    let verb = if !ok {
        "Failed after"
    } else if board.any_cancelled() {
        "Cancelled after"
    } else {
        "Built"
    };
    let mut s = format!(
        "{verb} {}/{} steps in {}: {} cached, {} run",
        board.completed(),
        board.total(),
        fmt_secs(now),
        t.cached,
        t.executed
    );
    if t.executed > 0 {
        s.push_str(&format!(
            " ({} in RUN processes, {} kiln overhead)",
            fmt_secs(t.exec),
            fmt_secs(t.overhead)
        ));
    }
    s.push('\n');
    s
}

enum Msg<K> {
    Event(Event<K>),
    Finish(Option<FailureInfo<K>>),
}

/// Runs a [`Renderer`] on its own thread, writing to stderr.
pub struct Progress<K> {
    tx: Sender<Msg<K>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl<K: Eq + Hash + Clone + Serialize + Send + 'static> Progress<K> {
    /// Starts rendering to stderr; `Auto` picks by whether stderr is a terminal.
    pub fn start(mode: ProgressMode) -> std::io::Result<Self> {
        let mode = mode.resolve(std::io::stderr().is_terminal());
        Self::start_with(mode, Box::new(std::io::stderr()), terminal_size)
    }

    /// Starts rendering to `out`; `size` is asked for (width, height) before each redraw
    /// so a resized terminal is followed.
    pub fn start_with(
        mode: ProgressMode,
        mut out: Box<dyn Write + Send>,
        size: fn() -> (usize, usize),
    ) -> std::io::Result<Self> {
        let (tx, rx) = channel::<Msg<K>>();
        let thread = std::thread::Builder::new()
            .name("kiln-progress".into())
            .spawn(move || {
                let started = Instant::now();
                let mut r = Renderer::new(mode);
                let live = matches!(r, Renderer::Tty { .. });
                let mut last_draw: Option<Instant> = None;
                loop {
                    let msg = if live {
                        rx.recv_timeout(TICK)
                    } else {
                        rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
                    };
                    match msg {
                        Ok(Msg::Event(e)) => out.write_all(r.on_event(&e).as_bytes())?,
                        Ok(Msg::Finish(f)) => {
                            let (w, _) = size();
                            out.write_all(r.finish(started.elapsed(), w, f.as_ref()).as_bytes())?;
                            return out.flush();
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return out.flush(),
                    }
                    if live && last_draw.is_none_or(|t| t.elapsed() >= TICK) {
                        let (w, h) = size();
                        out.write_all(r.tick(started.elapsed(), w, h).as_bytes())?;
                        out.flush()?;
                        last_draw = Some(Instant::now());
                    }
                }
            })?;
        Ok(Progress {
            tx,
            thread: Some(thread),
        })
    }

    /// The event sink to hand to `kiln_solver::solve`.
    pub fn sink(&self) -> impl Fn(Event<K>) + Send + Sync + 'static {
        let tx = self.tx.clone();
        move |e| {
            let _ = tx.send(Msg::Event(e));
        }
    }

    /// Draws the final state, the summary and the failure report, and waits for the
    /// output to be written.
    pub fn finish(mut self, failure: Option<FailureInfo<K>>) -> std::io::Result<()> {
        let _ = self.tx.send(Msg::Finish(failure));
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("the progress renderer panicked")),
            None => Ok(()),
        }
    }
}

/// Width and height of the terminal on stderr; 80×24 when it is not one.
fn terminal_size() -> (usize, usize) {
    match rustix::termios::tcgetwinsize(std::io::stderr()) {
        Ok(ws) if ws.ws_col > 0 && ws.ws_row > 0 => (ws.ws_col.into(), ws.ws_row.into()),
        _ => (80, 24),
    }
}

#[cfg(test)]
mod tests;
