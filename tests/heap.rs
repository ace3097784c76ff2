//! `heap::trim` gives the kernel back the free space glibc keeps between live blocks. Alone
//! in its test binary, so that no other test allocates while it reads its resident size.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use feedpub::heap::{status_kib, trim};

/// The process's resident size.
fn resident_kib() -> u64 {
    status_kib(std::process::id(), "VmRSS").expect("a VmRSS line in /proc/self/status")
}

#[test]
fn trimming_hands_back_the_free_space_between_live_blocks() {
    const BLOCKS: usize = 512;
    const BLOCK: usize = 60 << 10; // below glibc's mmap threshold: from a heap
    // Every block written, so that its pages are resident; every other one then freed, so
    // the space freed (15 MiB) lies between live blocks, not at the top of a heap.
    let mut blocks: Vec<Vec<u8>> = (0..BLOCKS).map(|i| vec![i as u8 | 1; BLOCK]).collect();
    let kept: Vec<Vec<u8>> = blocks
        .drain(..)
        .enumerate()
        .filter_map(|(i, block)| (i % 2 == 0).then_some(block))
        .collect();
    let before = resident_kib();
    assert!(trim(), "nothing handed back");
    let after = resident_kib();
    let freed_kib = (BLOCKS / 2 * BLOCK / 1024) as u64;
    assert!(
        before.saturating_sub(after) >= freed_kib / 2,
        "resident {before} kB before the trim and {after} kB after, with {freed_kib} kB free"
    );
    // The live blocks are untouched.
    assert!(
        kept.iter()
            .enumerate()
            .all(|(i, b)| b.len() == BLOCK && b.iter().all(|&x| x == (2 * i) as u8 | 1))
    );
}
