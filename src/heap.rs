//! Hands the heap's free memory back to the kernel every ten seconds.
//!
//! glibc's malloc keeps most of what the program frees inside its heaps (one per thread
//! arena, and feedpub runs on many threads), returning to the kernel only what lies at the
//! top of a heap. Each regeneration allocates and frees megabytes of documents and their
//! compressed codings, and the free space kept between live blocks grew for as long as a
//! soak ran: in 12 minutes, resident memory rose from 200 to 258 MiB while SQLite's own
//! allocations were 75 to 78 MB (its caches full), and one `malloc_trim` then brought it
//! from 255 to 197 MiB (RELIABILITY.md, section 6). Trimming now and then keeps
//! resident memory at what the program holds plus what a few seconds of regeneration
//! churn. A trim walks the arenas' free lists (under a millisecond with a 200 MiB heap);
//! the pages it gives back that are soon used again cost a page fault each.

use std::time::Duration;
use tokio::sync::watch;

/// How often the free memory is handed back.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Trims the heap every [`TRIM_EVERY`] until `shutdown` turns true.
pub async fn trim_until(mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(TRIM_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        // It locks each arena in turn: off the runtime's workers.
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}

/// Gives the kernel back every whole free page of every arena; true when some were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() -> bool {
    // SAFETY: `malloc_trim` has no preconditions: it takes each arena's lock and releases
    // free pages that no allocation holds.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other allocators give memory back by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::trim;

    /// Free space between live blocks is what glibc keeps and `malloc_trim` hands back.
    #[test]
    fn trimming_hands_back_the_free_space_between_live_blocks() {
        // Blocks below glibc's mmap threshold, so they come from a heap; every other one
        // is freed, so the space they leave is not at the top of the heap.
        let mut blocks: Vec<Vec<u8>> = (0..512).map(|i| vec![i as u8; 60 << 10]).collect();
        let kept: Vec<Vec<u8>> = blocks
            .drain(..)
            .enumerate()
            .filter_map(|(i, block)| (i % 2 == 0).then_some(block))
            .collect();
        assert!(
            trim(),
            "15 MiB freed between live blocks, nothing handed back"
        );
        assert_eq!(kept.len(), 256);
        assert!(kept.iter().enumerate().all(|(i, b)| b[0] == (2 * i) as u8));
    }
}
