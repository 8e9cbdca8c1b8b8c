//! Independent work items on a few threads: each thread takes the next item from a shared
//! counter, results come back in item order, and the first failure stops the others
//! (the error of the earliest failing item is returned).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// `f` over `items` on up to `threads` threads, each with its own `init()` state (a read
/// buffer, say). One thread, or one item, runs on the calling thread.
pub(crate) fn try_map_with<I, S, T, E>(
    items: &[I],
    threads: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &I) -> Result<T, E> + Sync,
) -> Result<Vec<T>, E>
where
    I: Sync,
    T: Send,
    E: Send,
{
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        let mut state = init();
        return items.iter().map(|i| f(&mut state, i)).collect();
    }
    let next = AtomicUsize::new(0);
    let out: Vec<Mutex<Option<T>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let failed: Mutex<Option<(usize, E)>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut state = init();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    match f(&mut state, item) {
                        Ok(v) => *lock(&out[i]) = Some(v),
                        Err(e) => {
                            next.store(items.len(), Ordering::Relaxed);
                            let mut slot = lock(&failed);
                            if slot.as_ref().is_none_or(|(j, _)| i < *j) {
                                *slot = Some((i, e));
                            }
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some((_, e)) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(out
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("every item ran when none failed")
        })
        .collect())
}

/// [`try_map_with`] without per-thread state.
pub(crate) fn try_map<I, T, E>(
    items: &[I],
    threads: usize,
    f: impl Fn(&I) -> Result<T, E> + Sync,
) -> Result<Vec<T>, E>
where
    I: Sync,
    T: Send,
    E: Send,
{
    try_map_with(items, threads, || (), |_, i| f(i))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_item_order_on_any_thread_count() {
        let items: Vec<u32> = (0..500).collect();
        for threads in [1, 2, 4] {
            let got = try_map(&items, threads, |&i| Ok::<_, ()>(i * 2)).unwrap();
            assert_eq!(got, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_failure_is_returned_and_stops_the_rest() {
        let items: Vec<u32> = (0..10_000).collect();
        let ran = AtomicUsize::new(0);
        let err = try_map(&items, 2, |&i| {
            ran.fetch_add(1, Ordering::Relaxed);
            if i == 3 {
                Err(i)
            } else {
                Ok(i)
            }
        })
        .unwrap_err();
        assert_eq!(err, 3);
        assert!(ran.load(Ordering::Relaxed) < items.len());
    }
}
