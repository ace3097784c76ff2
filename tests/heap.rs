//! malloc's arenas under `heap::cap_arenas`, in a test binary of its own: arenas made
//! before the cap stay, and glibc fixes its limit once it has made eight, so this process
//! must not have run anything else first.

/// `feedpub serve` caps the arenas first thing in `main`; done here first thing too, then
/// sixteen threads allocating at once share at most two arenas per core (or the operator's
/// `MALLOC_ARENA_MAX`, which rules). glibc's own limit, eight per core, would give each
/// thread its own: sixteen or more on any machine of up to two cores.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn threads_share_the_capped_arenas() {
    feedpub::heap::cap_arenas();
    let threads = 16;
    let barrier = std::sync::Barrier::new(threads);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let held = vec![1u8; 1 << 16];
                barrier.wait();
                std::hint::black_box(held);
            });
        }
    });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let allowed = std::env::var("MALLOC_ARENA_MAX")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(2 * cores);
    let arenas = arenas();
    assert!(
        (1..=allowed).contains(&arenas),
        "{arenas} arenas for {threads} threads on {cores} cores"
    );
}

/// How many arenas malloc reports (`malloc_info`'s `<heap>` elements).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn arenas() -> usize {
    let report = tempfile::NamedTempFile::new().unwrap();
    let path = std::ffi::CString::new(report.path().as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a file opened for writing, written by `malloc_info` and closed once.
    unsafe {
        let file = libc::fopen(path.as_ptr(), c"w".as_ptr());
        assert!(!file.is_null(), "the report file opens");
        assert_eq!(libc::malloc_info(0, file), 0);
        libc::fclose(file);
    }
    std::fs::read_to_string(report.path())
        .unwrap()
        .matches("<heap nr=")
        .count()
}
