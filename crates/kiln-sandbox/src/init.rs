//! Supervision: wait for one child while forwarding every signal to it. The
//! sandbox's pid 1 uses it with `reap_all` (orphans re-parent to it and must
//! not linger as zombies); the helper outside the pid namespace uses it to
//! relay signals from kiln to that pid 1.

use crate::sys;
use crate::ExitStatus;
use rustix::process::{Pid, WaitOptions};

/// Runs until `child` exits; all signals must already be blocked
/// ([`sys::block_all_signals`]) so they queue here. Signals other than
/// SIGCHLD are sent on to `child`.
pub(crate) fn supervise(child: i32, reap_all: bool) -> ExitStatus {
    let child_pid = Pid::from_raw(child).expect("child pid is positive");
    loop {
        // A SIGCHLD that arrived before we got here is still pending, so
        // checking after each wakeup cannot miss an exit.
        let sig = sys::wait_signal();
        if sig != libc::SIGCHLD {
            sys::kill(child, sig);
            continue;
        }
        loop {
            let waited = if reap_all {
                // wait(2) = waitpid(-1): any child. rustix's `waitpid(None)` is waitpid(0),
                // children of pid 1's *process group* only, which misses a payload that
                // made its own group (an interactive shell doing job control) and hangs.
                rustix::process::wait(WaitOptions::NOHANG)
            } else {
                rustix::process::waitpid(Some(child_pid), WaitOptions::NOHANG)
            };
            match waited {
                Ok(Some((pid, status))) => {
                    if pid == child_pid {
                        return if let Some(sig) = status.terminating_signal() {
                            ExitStatus {
                                code: None,
                                signal: Some(sig),
                            }
                        } else {
                            ExitStatus {
                                code: Some(status.exit_status().unwrap_or(0)),
                                signal: None,
                            }
                        };
                    }
                    // An orphan reaped; keep going.
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// The exit code a supervisor itself exits with: the child's code, or
/// 128 + signal like a shell.
pub(crate) fn exit_code(status: &ExitStatus) -> i32 {
    match (status.code, status.signal) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 1,
    }
}
