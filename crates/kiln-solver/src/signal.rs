//! Ctrl-C and `SIGTERM` → [`CancelToken::cancel`]. The first signal asks the build to
//! stop cleanly (workers finish or abort their own temporary work, so the store stays
//! consistent); a second one terminates at once, as an impatient user expects.
//!
//! `signal-hook` does the async-signal-safe part (a self-pipe written from the handler);
//! the token is cancelled on an ordinary thread, where taking locks is allowed.

use crate::cancel::CancelToken;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};
use std::thread::JoinHandle;

/// Keeps the handlers installed; dropping it stops the listening thread and removes
/// kiln's handlers (signals then get no action from kiln, so keep the guard for the
/// whole command).
pub struct SignalGuard {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

/// Cancels `token` on the first `SIGINT`/`SIGTERM`; the second restores the default
/// action and re-delivers, which ends the process.
pub fn cancel_on_signals(token: CancelToken) -> std::io::Result<SignalGuard> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let handle = signals.handle();
    let thread = std::thread::Builder::new()
        .name("kiln-signals".into())
        .spawn(move || {
            let mut seen = false;
            for sig in signals.forever() {
                if seen {
                    let _ = signal_hook::low_level::emulate_default_handler(sig);
                }
                seen = true;
                token.cancel();
            }
        })?;
    Ok(SignalGuard {
        handle,
        thread: Some(thread),
    })
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sigterm_to_self_cancels_the_token() {
        let token = CancelToken::new();
        let guard = cancel_on_signals(token.clone()).unwrap();
        signal_hook::low_level::raise(SIGTERM).unwrap();
        assert!(token.wait_timeout(Duration::from_secs(10)));
        drop(guard);
    }
}
