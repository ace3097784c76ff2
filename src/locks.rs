//! Mutexes taken whatever a panic left behind.

use std::sync::{Mutex, MutexGuard};

/// The lock of `mutex`, even if a thread panicked holding it. The mutexes taken through it
/// guard maps, sets, queues and counters whose updates cannot panic part-way (nothing
/// between two related updates can fail but an allocation, which aborts); refusing the
/// lock instead would spread one panic to every task that takes it after (feeds no
/// longer regenerated, requests no longer answered). The archive pages' cache and the
/// PostgreSQL follower's handle give up on a poisoned lock instead (`if let Ok`): a cache
/// left off, not a panic.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_held_by_a_thread_that_panicked_is_still_taken() {
        let mutex = std::sync::Arc::new(Mutex::new(vec![1]));
        let held = mutex.clone();
        let panicked = std::thread::spawn(move || {
            let mut guard = held.lock().unwrap();
            guard.push(2);
            panic!("while holding the lock");
        })
        .join();
        assert!(panicked.is_err() && mutex.is_poisoned());
        lock(&mutex).push(3);
        assert_eq!(*lock(&mutex), [1, 2, 3]);
    }
}
