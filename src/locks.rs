//! Mutexes taken whatever a panic left behind, and folders locked for one process.

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

/// The folder at `path`, locked by this process until it drops it or ends; `None` while
/// another holds it (another process, or another handle of this one). The lock is on the
/// folder itself, which no file operation in it can remove, and the kernel releases it
/// when the process ends, however it ends.
pub fn lock_folder(path: &std::path::Path) -> std::io::Result<Option<std::fs::File>> {
    let folder = std::fs::File::open(path)?;
    match rustix::fs::flock(
        &folder,
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    ) {
        Ok(()) => Ok(Some(folder)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(errno) => Err(errno.into()),
    }
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
