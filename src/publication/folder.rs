//! The feeds folder, held by one server while it writes it. Removed or replaced while the
//! server runs (an operator's `rm -rf feeds`, a link switched to another folder), it is
//! made and locked again, and every document served is written to it again (see
//! `Inner::keep_folder`): what serves or copies the folder itself (a static server, a
//! bucket sync) would otherwise miss every feed that has not changed since, and a second
//! server could take the folder. While another server holds the new folder, nothing is
//! written to it: every file is written through [`FeedsFolder::replace_all`], which checks
//! first.

use super::document::FileStamp;
use super::{FOLDER_CHECK, Inner, PublicationError, files};
use crate::domain::FeedScope;
use crate::health::Component;
use crate::locks::{lock, lock_folder};
use axum::body::Bytes;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, watch};

/// The feeds folder, locked by this process.
pub struct FeedsFolder {
    path: PathBuf,
    held: Mutex<Held>,
    /// Told when a write found the folder removed or replaced and locked it again: every
    /// document is to be written to it (see [`Inner::keep_folder`]).
    relocked: Notify,
    /// How many times the folder was made and locked again: a rewrite begun before the
    /// last one does not make the folder whole.
    relocks: AtomicU64,
}

/// Whether the folder is held.
enum Held {
    /// Locked: the folder, as opened, and whether it holds every document served (false
    /// from the time it is locked again until [`Inner::keep_folder`] has written them all).
    Locked { folder: std::fs::File, whole: bool },
    /// Not: another server holds the folder now at the path, or it cannot be made (the
    /// next check tries again).
    Unheld,
    /// Let go of for good (see [`FeedsFolder::release`]).
    Released,
}

/// Why nothing is written once the folder is let go of.
const RELEASED: &str = "the server has stopped writing feeds";

/// What [`FeedsFolder::check`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Check {
    /// The folder at the path is the one locked.
    Held,
    /// It was not (removed, replaced, or not held at the last check); it is now made and
    /// locked, and holds none of the documents served, or not all of them.
    Relocked,
    /// It is not held, for this reason: nothing may be written to it.
    Unheld(String),
}

impl FeedsFolder {
    /// The folder at `path` (made if missing), locked; `None` while another process holds
    /// it.
    pub fn lock(path: &Path) -> std::io::Result<Option<Self>> {
        std::fs::create_dir_all(path)?;
        Ok(lock_folder(path)?.map(|folder| Self {
            path: path.to_owned(),
            // The start writes every feed to it.
            held: Mutex::new(Held::Locked {
                folder,
                whole: true,
            }),
            relocks: AtomicU64::new(0),
            relocked: Notify::new(),
        }))
    }

    /// Whether the folder at the path is still the one locked. When it is not, the folder
    /// is made and locked again if it can be.
    pub(super) fn check(&self) -> Check {
        let mut held = lock(&self.held);
        match &*held {
            Held::Released => return Check::Unheld(RELEASED.to_owned()),
            Held::Locked { folder, .. } if is_at(folder, &self.path) => return Check::Held,
            Held::Locked { .. } | Held::Unheld => {}
        }
        let relocked = std::fs::create_dir_all(&self.path).and_then(|()| lock_folder(&self.path));
        // The old folder's lock goes with it: nothing writes there any more.
        let why = match relocked {
            Ok(Some(folder)) => {
                *held = Held::Locked {
                    folder,
                    whole: false,
                };
                self.relocks.fetch_add(1, Ordering::SeqCst);
                return Check::Relocked;
            }
            Ok(None) => "another feedpub serve holds the folder now at this path".to_owned(),
            Err(e) => format!("cannot make and lock it: {e}"),
        };
        *held = Held::Unheld;
        Check::Unheld(why)
    }

    /// True while the folder is held and holds every document served: not since it was
    /// found removed, replaced or not held, until it is written whole again.
    pub(super) fn is_whole(&self) -> bool {
        matches!(*lock(&self.held), Held::Locked { whole: true, .. })
    }

    /// How many times the folder has been locked again, for [`FeedsFolder::written_whole`].
    fn relocks(&self) -> u64 {
        self.relocks.load(Ordering::SeqCst)
    }

    /// Records that every document served was written to the folder, by a rewrite begun
    /// when it had been locked again `relocks` times: unless it has been locked again since.
    fn written_whole(&self, relocks: u64) {
        let mut held = lock(&self.held);
        if let Held::Locked { whole, .. } = &mut *held
            && self.relocks() == relocks
        {
            *whole = true;
        }
    }

    /// Replaces each `dir/name` with its bytes (see [`files::replace_all`]), `dir` being
    /// the folder or one under it: refused while the folder is not held; one found removed
    /// or replaced is locked again first, and [`Inner::keep_folder`] told to write every
    /// document to it.
    pub(super) fn replace_all<B: AsRef<[u8]>>(
        &self,
        dir: &Path,
        writes: &[(String, B)],
    ) -> Result<Vec<FileStamp>, PublicationError> {
        let unwritable = |error| PublicationError::Write {
            path: dir.to_owned(),
            error,
        };
        match self.check() {
            Check::Held => {}
            Check::Relocked => self.relocked.notify_one(),
            Check::Unheld(why) => return Err(unwritable(std::io::Error::other(why))),
        }
        files::replace_all(dir, writes).map_err(unwritable)
    }

    /// Lets go of the folder once the server has written its last feeds, for another
    /// server (the next start of this one, say) to take, and refuses every later write:
    /// what serves the feeds from memory may outlive the server's other parts.
    pub(super) fn release(&self) {
        *lock(&self.held) = Held::Released;
    }
}

impl Inner {
    /// Checks every [`FOLDER_CHECK`] that the feeds folder is still the one held, until
    /// `stop` turns true. When it was removed or replaced, writes every document served to
    /// the one made and locked again, and again at each check until that succeeds; while
    /// it cannot be held, or written whole, reports the feeds faulty.
    pub(super) async fn keep_folder(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let path = self.folder.path.display().to_string();
        let mut unheld = false;
        loop {
            let found = tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => return,
                () = self.folder.relocked.notified() => Check::Relocked,
                () = tokio::time::sleep(FOLDER_CHECK) => self.folder.check(),
            };
            match found {
                Check::Held if self.folder.is_whole() => continue,
                // The last rewrite failed part-way: tried again.
                Check::Held => {}
                Check::Relocked => {
                    unheld = false;
                    tracing::warn!(
                        folder = path,
                        "the feeds folder was removed or replaced: it is locked again, and \
                         every feed is written to it again"
                    );
                }
                Check::Unheld(why) => {
                    if !std::mem::replace(&mut unheld, true) {
                        tracing::error!(
                            folder = path,
                            reason = why,
                            "the feeds folder was removed or replaced, and cannot be held \
                             again: feeds are served from memory, not written, until it can"
                        );
                    }
                    self.health
                        .fault(Component::Feeds, format!("{path}: {why}"));
                    continue;
                }
            }
            let relocks = self.folder.relocks();
            match self.write_everything().await {
                Ok(files) => {
                    self.folder.written_whole(relocks);
                    tracing::info!(
                        folder = path,
                        files,
                        "every feed is written to the feeds folder again"
                    );
                    self.recover_if_clear(&lock(&self.failing));
                }
                Err(why) => self.health.fault(Component::Feeds, why),
            }
        }
    }

    /// Writes every document served to the feeds folder, a folder at a time (the
    /// stylesheet, `all` and the sections first), each in its latest version, under the
    /// finisher's lock: a file the finisher writes is never replaced by an older one.
    /// Stops when the folder is no longer held (made again meanwhile, it is written again
    /// from the start). Returns how many files were written, or why not all of them were.
    async fn write_everything(self: &Arc<Self>) -> Result<usize, String> {
        let mut folders: BTreeMap<(bool, String), Vec<String>> = BTreeMap::new();
        for key in self.snapshot.load().keys() {
            let folder = key.rsplit_once('/').map_or("", |(folder, _)| folder);
            let named = [FeedScope::AUTHORS, FeedScope::TAGS]
                .iter()
                .any(|names| folder.starts_with(&format!("{names}/")));
            folders
                .entry((named, folder.to_owned()))
                .or_default()
                .push(key.clone());
        }
        let mut written = 0;
        // The first folder that could not be written; the others are written all the same.
        let mut failed = None;
        for ((_, folder), keys) in folders {
            let _one_at_a_time = self.finishing.lock().await;
            let current = self.snapshot.load_full();
            let feeds = Arc::clone(&self.folder);
            let write = move || {
                let dir = feeds.path.join(&folder);
                let writes: Vec<(String, Bytes)> = keys
                    .iter()
                    .filter_map(|key| Some((key, current.get(key)?)))
                    .flat_map(|(key, file)| {
                        let name = key.rsplit_once('/').map_or(key.as_str(), |(_, name)| name);
                        file.files()
                            .into_iter()
                            .map(move |(suffix, bytes)| (format!("{name}{suffix}"), bytes))
                    })
                    .collect();
                feeds.replace_all(&dir, &writes).map(|_| writes.len())
            };
            match self.builders.spawn(write).await {
                Ok(Ok(files)) => written += files,
                Ok(Err(error)) => {
                    failed.get_or_insert(error.to_string());
                }
                Err(error) => {
                    failed.get_or_insert(format!("the task writing feeds again failed: {error}"));
                }
            }
        }
        failed.map_or(Ok(written), Err)
    }
}

/// True while `folder` is the folder at `path` (not removed, nor replaced by another).
fn is_at(folder: &std::fs::File, path: &Path) -> bool {
    match (rustix::fs::fstat(folder), rustix::fs::stat(path)) {
        (Ok(held), Ok(now)) => held.st_dev == now.st_dev && held.st_ino == now.st_ino,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Removed, the folder is made and locked again; replaced by one another process holds,
    /// it is not held, nor written, until that one lets it go.
    #[test]
    fn a_folder_removed_or_replaced_is_locked_again_when_it_can_be() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feeds");
        let folder = FeedsFolder::lock(&path).unwrap().unwrap();
        assert!(FeedsFolder::lock(&path).unwrap().is_none(), "locked twice");
        assert_eq!(folder.check(), Check::Held);
        assert!(folder.is_whole());

        std::fs::remove_dir(&path).unwrap();
        let relocks = folder.relocks();
        assert_eq!(folder.check(), Check::Relocked);
        assert!(path.is_dir());
        assert!(
            FeedsFolder::lock(&path).unwrap().is_none(),
            "the folder made again is not locked"
        );
        assert_eq!(folder.check(), Check::Held);
        assert!(!folder.is_whole(), "whole before it is written again");
        // A rewrite begun before the folder was locked again does not make it whole.
        folder.written_whole(relocks);
        assert!(
            !folder.is_whole(),
            "whole by a rewrite of the folder removed"
        );
        folder.written_whole(folder.relocks());
        assert!(folder.is_whole());

        // Replaced by a folder another server took meanwhile.
        std::fs::rename(&path, dir.path().join("old")).unwrap();
        let other = FeedsFolder::lock(&path).unwrap().unwrap();
        let Check::Unheld(why) = folder.check() else {
            panic!("a folder another server holds taken");
        };
        assert!(why.contains("another feedpub serve"), "{why}");
        assert!(!folder.is_whole());
        assert!(matches!(folder.check(), Check::Unheld(_)));
        drop(other);
        assert_eq!(folder.check(), Check::Relocked);
        assert_eq!(folder.check(), Check::Held);

        // A file where the folder was.
        std::fs::remove_dir(&path).unwrap();
        std::fs::write(&path, b"").unwrap();
        let Check::Unheld(why) = folder.check() else {
            panic!("a file taken for the folder");
        };
        assert!(why.contains("cannot make and lock it"), "{why}");

        // Released: another may take it, and it is not taken back.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(folder.check(), Check::Relocked);
        folder.release();
        let next = FeedsFolder::lock(&path).unwrap();
        assert!(next.is_some(), "the folder is still locked once released");
        drop(next);
        assert!(matches!(folder.check(), Check::Unheld(_)));
        assert!(FeedsFolder::lock(&path).unwrap().is_some(), "taken back");
    }
}
