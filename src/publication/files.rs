//! Atomic replacement of feed files: a reader of `feeds/` sees the old file or the new one,
//! never a torn one.

use super::document::FileStamp;
use std::io::Write;
use std::path::Path;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);
/// A random number of this process, in every temporary file's name: the names a process
/// will take cannot be foretold from its id (1 in every container) and a counter.
static TEMP_NONCE: LazyLock<u64> = LazyLock::new(|| {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
});
/// Every temporary file ends so; its name also starts with a dot.
const TEMP_SUFFIX: &str = ".tmp";

/// Removes the temporary files a killed process left anywhere under `dir` (they are never
/// served, but a full disk would keep them forever), and links at such names (never
/// followed: the link goes, not what it points at). Failures are logged and skipped.
pub fn remove_temporary_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => remove_temporary_files(&path),
            Ok(kind)
                if (kind.is_file() || kind.is_symlink())
                    && name.starts_with('.')
                    && name.ends_with(TEMP_SUFFIX) =>
            {
                if let Err(error) = std::fs::remove_file(&path) {
                    tracing::warn!(file = %path.display(), %error, "cannot remove a temporary file");
                }
            }
            _ => {}
        }
    }
}

/// Replaces each `dir/name` with its bytes: every temp file is written in `dir` and fsynced,
/// then renamed over its target, then the folder is fsynced once for all the renames.
/// Returns the stamp of each file as written (a rename keeps it). On failure, temp files
/// are removed and each target holds either its old or its new content, whole.
/// Feeds are written through [`super::FeedsFolder::replace_all`], which checks the folder
/// is still held first.
pub(super) fn replace_all<B: AsRef<[u8]>>(
    dir: &Path,
    files: &[(String, B)],
) -> std::io::Result<Vec<FileStamp>> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir)?;
    let mut temps = Vec::with_capacity(files.len());
    let result = (|| {
        let mut stamps = Vec::with_capacity(files.len());
        for (name, bytes) in files {
            let (temp, mut file) = create_temp(dir, name)?;
            temps.push(temp);
            file.write_all(bytes.as_ref())?;
            file.sync_data()?;
            stamps.push(FileStamp::of(&file)?);
        }
        for ((name, _), temp) in files.iter().zip(&temps) {
            std::fs::rename(temp, dir.join(name))?;
        }
        std::fs::File::open(dir)?.sync_all()?;
        Ok(stamps)
    })();
    if result.is_err() {
        for temp in &temps {
            let _ = std::fs::remove_file(temp);
        }
    }
    result
}

/// Most names [`create_temp`] tries before it gives up.
const TEMP_TRIES: usize = 8;

/// Creates a new temporary file for `dir/name` in `dir`, with a name no other file has:
/// never opened through what is already there (a link planted at the name would have the
/// feed's bytes written wherever it points, a file of another process's truncated), which
/// is passed over for the next name.
fn create_temp(dir: &Path, name: &str) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    create_temp_numbered(dir, name, || TEMP_COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The temporary file of `dir/name` numbered `n`.
fn temp_path(dir: &Path, name: &str, n: u64) -> std::path::PathBuf {
    dir.join(format!(
        ".{name}.{}.{:x}.{n}{TEMP_SUFFIX}",
        std::process::id(),
        *TEMP_NONCE
    ))
}

/// [`create_temp`], with the numbers `next` gives.
fn create_temp_numbered(
    dir: &Path,
    name: &str,
    mut next: impl FnMut() -> u64,
) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    let mut tries = 0;
    loop {
        let temp = temp_path(dir, name, next());
        // O_CREAT | O_EXCL: fails on any file or link (even a dangling one) at the name.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries + 1 < TEMP_TRIES => {
                tracing::warn!(file = %temp.display(), "a temporary file's name is taken; trying the next");
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link planted at the names the next temporary files would take is passed over,
    /// never written through; with a link at every name tried, the write fails.
    #[test]
    fn a_link_at_a_temporary_files_name_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, b"kept").unwrap();
        let feeds = dir.path().join("politics");
        std::fs::create_dir(&feeds).unwrap();
        let planted = TEMP_TRIES as u64 / 2;
        for n in 0..planted {
            std::os::unix::fs::symlink(&victim, temp_path(&feeds, "rss.xml", n)).unwrap();
        }
        let mut numbers = 0..;
        let (temp, mut file) =
            create_temp_numbered(&feeds, "rss.xml", || numbers.next().unwrap()).unwrap();
        assert_eq!(temp, temp_path(&feeds, "rss.xml", planted));
        file.write_all(b"<rss/>").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"kept");
        assert!(!temp.is_symlink());
        let mut numbers = 0..;
        assert!(create_temp_numbered(&feeds, "rss.xml", || numbers.next().unwrap() % 2).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"kept");
    }

    #[test]
    fn files_are_replaced_and_no_temp_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rss.xml"), b"old").unwrap();
        let stamps = replace_all(
            dir.path(),
            &[
                ("rss.xml".into(), &b"new"[..]),
                ("rss.xml.gz".into(), &b"gz"[..]),
            ],
        )
        .unwrap();
        for (name, stamp) in ["rss.xml", "rss.xml.gz"].iter().zip(&stamps) {
            let file = std::fs::File::open(dir.path().join(name)).unwrap();
            assert_eq!(FileStamp::of(&file).unwrap(), *stamp, "{name}");
        }
        assert_ne!(stamps[0], stamps[1]);
        assert_eq!(std::fs::read(dir.path().join("rss.xml")).unwrap(), b"new");
        assert_eq!(std::fs::read(dir.path().join("rss.xml.gz")).unwrap(), b"gz");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn temporary_files_left_by_a_killed_process_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("authors/liu-lei-6aca6b");
        std::fs::create_dir_all(&nested).unwrap();
        for file in [".rss.xml.41.7.tmp", "rss.xml", ".gitignore", "notes.tmp"] {
            std::fs::write(dir.path().join(file), b"x").unwrap();
        }
        std::fs::write(nested.join(".atom.xml.gz.41.9.tmp"), b"torn").unwrap();
        std::fs::write(nested.join("atom.xml.gz"), b"whole").unwrap();
        // A link at a temporary file's name goes; what it points at stays.
        std::os::unix::fs::symlink(
            dir.path().join("rss.xml"),
            nested.join(".feed.json.41.8.tmp"),
        )
        .unwrap();
        remove_temporary_files(dir.path());
        let mut left: Vec<String> = walk(dir.path());
        left.sort();
        assert_eq!(
            left,
            [
                ".gitignore",
                "authors/liu-lei-6aca6b/atom.xml.gz",
                "notes.tmp",
                "rss.xml"
            ]
        );
    }

    fn walk(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                found.extend(
                    walk(&entry.path())
                        .into_iter()
                        .map(|f| format!("{name}/{f}")),
                );
            } else {
                found.push(name);
            }
        }
        found
    }

    #[test]
    fn a_failed_replacement_leaves_whole_files_and_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rss.xml"), b"old").unwrap();
        // A folder where a file should go makes the rename fail.
        std::fs::create_dir(dir.path().join("atom.xml")).unwrap();
        std::fs::write(dir.path().join("atom.xml/x"), b"").unwrap();
        let result = replace_all(
            dir.path(),
            &[("rss.xml".into(), b"new"), ("atom.xml".into(), b"new")],
        );
        assert!(result.is_err());
        let rss = std::fs::read(dir.path().join("rss.xml")).unwrap();
        assert!(rss == b"old" || rss == b"new");
        let temps = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count();
        assert_eq!(temps, 0);
    }
}
