//! A cancellation flag that can be polled, waited on, chained to a parent and observed
//! through hooks (the scheduler uses a hook to wake its coordinator loop instead of
//! polling).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

type HookFn = dyn Fn() + Send + Sync;

/// A cheaply clonable cancellation flag. Clones share the flag; [`CancelToken::child`]
/// makes a token that is cancelled with its parent but can also be cancelled alone.
#[derive(Clone, Default)]
pub struct CancelToken(Arc<Inner>);

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Default)]
struct State {
    cancelled: bool,
    // Weak so that a dropped `CancelHook` unregisters itself without bookkeeping.
    hooks: Vec<Weak<HookFn>>,
    // Keeps the hook that links this token to its parent alive as long as the token is.
    _parent_link: Option<CancelHook>,
}

/// Keeps an [`CancelToken::on_cancel`] callback registered; dropping it unregisters it.
#[must_use = "the hook is unregistered when this guard is dropped"]
pub struct CancelHook {
    _hook: Arc<HookFn>,
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking hook must not make the flag unusable: the state stays consistent
        // because every critical section is a single assignment or list edit.
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the flag (idempotent), wakes every waiter and runs the registered hooks.
    pub fn cancel(&self) {
        let hooks = {
            let mut st = self.lock();
            if st.cancelled {
                return;
            }
            st.cancelled = true;
            std::mem::take(&mut st.hooks)
        };
        self.0.cv.notify_all();
        // Hooks run outside the lock: a hook may cancel a child or send on a channel.
        for hook in hooks.iter().filter_map(Weak::upgrade) {
            hook();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// Blocks until cancelled or `timeout` passes; returns whether the token is cancelled.
    /// Workers use it as an interruptible sleep, e.g. between polls of a child process.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        while !st.cancelled {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .0
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Blocks until the token is cancelled.
    pub fn wait(&self) {
        let mut st = self.lock();
        while !st.cancelled {
            st = self.0.cv.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Calls `f` once when the token is cancelled (at once if it already is). The call
    /// happens on the cancelling thread, so `f` must be quick and must not block.
    pub fn on_cancel(&self, f: impl Fn() + Send + Sync + 'static) -> CancelHook {
        let hook: Arc<HookFn> = Arc::new(f);
        let already = {
            let mut st = self.lock();
            if !st.cancelled {
                st.hooks.retain(|h| h.strong_count() > 0);
                st.hooks.push(Arc::downgrade(&hook));
            }
            st.cancelled
        };
        if already {
            hook();
        }
        CancelHook { _hook: hook }
    }

    /// A token cancelled whenever `self` is, which can also be cancelled on its own
    /// without affecting `self` (the solver cancels its child on the first failure so the
    /// caller's token keeps meaning "the user asked to stop").
    pub fn child(&self) -> CancelToken {
        let child = CancelToken::new();
        let weak = Arc::downgrade(&child.0);
        let link = self.on_cancel(move || {
            if let Some(inner) = weak.upgrade() {
                CancelToken(inner).cancel();
            }
        });
        child.lock()._parent_link = Some(link);
        child
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn cancel_wakes_a_waiter_on_another_thread() {
        let t = CancelToken::new();
        let t2 = t.clone();
        let h = std::thread::spawn(move || t2.wait_timeout(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        t.cancel();
        assert!(h.join().unwrap());
    }

    #[test]
    fn wait_timeout_returns_false_when_not_cancelled() {
        assert!(!CancelToken::new().wait_timeout(Duration::from_millis(5)));
    }

    #[test]
    fn child_follows_parent_but_not_the_reverse() {
        let parent = CancelToken::new();
        let child = parent.child();
        child.cancel();
        assert!(!parent.is_cancelled());
        let child2 = parent.child();
        parent.cancel();
        assert!(child2.is_cancelled());
    }

    #[test]
    fn hooks_run_once_and_dropped_hooks_do_not_run() {
        let n = Arc::new(AtomicUsize::new(0));
        let t = CancelToken::new();
        let n1 = n.clone();
        let _kept = t.on_cancel(move || {
            n1.fetch_add(1, Ordering::SeqCst);
        });
        let n2 = n.clone();
        drop(t.on_cancel(move || {
            n2.fetch_add(100, Ordering::SeqCst);
        }));
        t.cancel();
        t.cancel();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        // Registering on a cancelled token runs the hook immediately.
        let n3 = n.clone();
        let _late = t.on_cancel(move || {
            n3.fetch_add(10, Ordering::SeqCst);
        });
        assert_eq!(n.load(Ordering::SeqCst), 11);
    }
}
