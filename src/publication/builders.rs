//! The threads that regenerate feeds. Rendering, compressing and writing the documents of
//! a regeneration run on a blocking pool of their own, whose threads run `[feeds]
//! build_nice` steps (10 unless configured) below the thread that starts them, a runtime
//! worker at the process's priority. Archive pages (built when first asked for) and the
//! stylesheet (at start-up) are not among them. With cores to spare this changes nothing:
//! the builders get every idle cycle. On a busy machine, and on two cores a steady stream of
//! publishes is one, the threads that take publishes (the gRPC handlers, the SQLite writer)
//! and answer readers get a core first, while the builders still get a share of each core
//! they contend for and every cycle nobody else wants. Coalescing keeps a feed that is
//! built less often whole: each build covers every change since the last.
//!
//! A build still makes progress: at nice 10 a builder gets about a tenth of a core it
//! contends for (the kernel's weights: 110 against 1,024), not the leftovers only (at nice
//! 19 and with `SCHED_IDLE`, feeds fell so far behind 1,000 publishes/s that articles went
//! unshown; see BENCHMARKS.md, "Where the time goes").

use tokio::runtime::{Builder, Handle, Runtime};

/// The feed builders' pool.
pub(super) struct Builders {
    /// A runtime only for its blocking pool: nothing is spawned on it but blocking work, so
    /// it needs no thread of its own to drive it. `None` at the process's priority, or when
    /// it could not be made: the builders then share the caller's pool.
    pool: Option<Runtime>,
}

impl Builders {
    /// Builders `nice` steps below the process (the kernel caps the result at 19).
    pub(super) fn new(nice: i32) -> Self {
        if nice == 0 {
            return Self { pool: None };
        }
        let pool = Builder::new_current_thread()
            .thread_name("feedpub-feeds")
            .on_thread_start(move || lower_priority(nice))
            .build()
            .inspect_err(|error| {
                tracing::warn!(%error, "feeds are built at the priority of the process");
            })
            .ok();
        Self { pool }
    }

    /// The runtime whose blocking pool builds feeds.
    pub(super) fn handle(&self) -> Handle {
        self.pool
            .as_ref()
            .map_or_else(Handle::current, |pool| pool.handle().clone())
    }

    /// Runs `build` on a builder thread. Nothing drives the pool's runtime, so `build` must
    /// not spawn tasks or use tokio's timers: it is plain blocking work.
    pub(super) fn spawn<F, R>(&self, build: F) -> tokio::task::JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.handle().spawn_blocking(build)
    }
}

impl Drop for Builders {
    /// Lets go of the pool without waiting for it, as dropping a runtime inside another
    /// must: every build is awaited by a task that holds the builders, so none is under way.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.shutdown_background();
        }
    }
}

/// Lowers the calling thread's priority by `nice`. Raising a thread's nice value needs no
/// privilege; should it fail all the same, the thread keeps the process's priority.
fn lower_priority(nice: i32) {
    use rustix::process::{getpriority_process, setpriority_process};
    let thread = rustix::thread::gettid();
    let lowered = getpriority_process(Some(thread))
        .and_then(|now| setpriority_process(Some(thread), now + nice));
    if let Err(error) = lowered {
        tracing::debug!(%error, "a feed builder keeps the process's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_niceness() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[tokio::test]
    async fn builders_run_as_many_steps_below_the_caller_as_configured() {
        let caller = own_niceness();
        for nice in [10, 3, 0] {
            let builders = Builders::new(nice);
            let builder = builders.spawn(own_niceness).await.unwrap();
            assert_eq!(
                builder,
                (caller + nice).min(19),
                "nice {nice}, caller at {caller}"
            );
        }
    }
}
