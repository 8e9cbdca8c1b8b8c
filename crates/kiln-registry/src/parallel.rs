//! A small worker pool on scoped threads: blobs move in parallel, the first failure stops
//! the others from starting new work (running transfers finish or fail on their own).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

pub(crate) fn for_each<T: Send, E: Send>(
    items: Vec<T>,
    jobs: usize,
    f: impl Fn(T) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let jobs = jobs.clamp(1, items.len().max(1));
    let queue = Mutex::new(items.into_iter().rev().collect::<Vec<T>>());
    let failed = AtomicBool::new(false);
    let first_err: Mutex<Option<E>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let Some(item) = queue.lock().unwrap().pop() else {
                    return;
                };
                if let Err(e) = f(item) {
                    failed.store(true, Ordering::Relaxed);
                    first_err.lock().unwrap().get_or_insert(e);
                    return;
                }
            });
        }
    });
    match first_err.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn runs_all_or_stops_at_failure() {
        let n = AtomicUsize::new(0);
        for_each((0..20).collect(), 4, |_| -> Result<(), ()> {
            n.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        assert_eq!(n.load(Ordering::Relaxed), 20);
        let e = for_each(
            (0..20).collect(),
            1,
            |i| if i == 3 { Err(i) } else { Ok(()) },
        );
        assert_eq!(e, Err(3));
    }
}
