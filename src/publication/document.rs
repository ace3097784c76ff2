//! A published feed document: its bytes in every content coding, with strong validators.

use axum::body::Bytes;
use axum::http::HeaderValue;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// One content coding of a document: its bytes and their strong ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub bytes: Bytes,
    /// Strong entity tag, quoted; distinct for every coding of the same document.
    pub etag: String,
    /// `etag`, ready to send.
    pub etag_header: HeaderValue,
    /// The file in `feeds/` holding `bytes`, once a server has asked for it.
    pub disk: DiskFile,
}

/// Where a document lives and which hub pushes it, for its `Link` header.
#[derive(Debug, Clone)]
pub struct Links {
    /// Absolute URL of the document.
    pub self_url: String,
    /// Absolute URL of the WebSub hub.
    pub hub_url: String,
}

/// Headers every response for a document carries, made once per regeneration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHeaders {
    pub content_type: HeaderValue,
    /// ETag of the identity coding.
    pub etag: HeaderValue,
    pub last_modified: HeaderValue,
    pub cache_control: HeaderValue,
    /// `<hub>; rel="hub", <self>; rel="self"` (WebSub discovery).
    pub link: HeaderValue,
}

/// One published feed document, as served: made once per regeneration, never per request.
///
/// A document goes into the snapshot as soon as it is rendered, before it is compressed
/// (compression takes most of a regeneration's time), and again with its gzip and brotli
/// codings once they are made and its files are written. Until then it is served in the
/// identity coding to every client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedFile {
    /// The document itself (identity coding).
    pub bytes: Bytes,
    /// The file in `feeds/` holding `bytes`, once a server has asked for it.
    pub disk: DiskFile,
    /// Strong entity tag of `bytes`, quoted: changes exactly when the bytes change.
    pub etag: String,
    /// `bytes` compressed with gzip and brotli; `None` until they are made.
    pub codings: Option<Codings>,
    /// When the feed's content last changed, to the second.
    pub last_modified: DateTime<Utc>,
    /// Media type with charset.
    pub content_type: &'static str,
    /// How long clients and caches may reuse it, in seconds.
    pub max_age: u32,
    /// The headers of every response for it.
    pub headers: ResponseHeaders,
}

/// A document's compressed codings, made apart from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codings {
    /// The document compressed with gzip.
    pub gzip: Encoded,
    /// The document compressed with brotli.
    pub brotli: Encoded,
    /// How hard both were compressed.
    pub compression: Compression,
}

/// How hard a document's gzip and brotli codings are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip level 6, brotli quality 5: the codings every feed settles on.
    Full,
    /// gzip level 1, brotli quality 1: while publishes arrive faster than feeds can be
    /// regenerated with [`Compression::Full`]. Each such document is compressed again with
    /// the full levels once the burst is over.
    Fast,
}

impl Compression {
    fn gzip_level(self) -> u32 {
        match self {
            // Level 6 (zlib's default): within a few percent of level 9's size at half the
            // time; compression is on the path from a publish to the feed being served.
            Self::Full => 6,
            Self::Fast => 1,
        }
    }

    /// Quality 5 compresses feeds close to quality 9 in a fraction of the time.
    fn brotli_quality(self) -> u32 {
        match self {
            Self::Full => 5,
            Self::Fast => 1,
        }
    }

    /// Added to the codings' ETags, so that the same identity bytes compressed another way
    /// never share a strong validator.
    fn etag_suffix(self) -> &'static str {
        match self {
            Self::Full => "",
            Self::Fast => "1",
        }
    }
}

/// True when `etag` is a gzip or brotli coding's ETag at the full levels, i.e. the coding
/// a feed settles on (one compressed fast during a burst carries its level in the tag).
pub fn compressed_in_full(etag: &str) -> bool {
    let level = Compression::Full.etag_suffix();
    [format!("-gz{level}\""), format!("-br{level}\"")]
        .iter()
        .any(|end| etag.ends_with(end.as_str()))
}

/// File-name suffixes of the precompressed siblings written beside each feed.
pub const GZIP_SUFFIX: &str = ".gz";
pub const BROTLI_SUFFIX: &str = ".br";

impl FeedFile {
    /// Compresses `bytes` both ways and computes every validator and header.
    pub fn new(
        bytes: Vec<u8>,
        content_type: &'static str,
        last_modified: DateTime<Utc>,
        max_age: u32,
        links: &Links,
    ) -> Self {
        let file = Self::uncompressed(bytes, content_type, last_modified, max_age, links);
        let codings = file.compress(Compression::Full);
        file.with_codings(codings)
    }

    /// The document in the identity coding only, with every validator and header: cheap
    /// next to [`FeedFile::compress`].
    pub fn uncompressed(
        bytes: Vec<u8>,
        content_type: &'static str,
        last_modified: DateTime<Utc>,
        max_age: u32,
        links: &Links,
    ) -> Self {
        let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&bytes)[..16]));
        Self {
            headers: ResponseHeaders::new(content_type, &etag, last_modified, max_age, links),
            etag,
            bytes: bytes.into(),
            disk: DiskFile::default(),
            codings: None,
            last_modified,
            content_type,
            max_age,
        }
    }

    /// The document's gzip and brotli codings, as hard as `compression` says, each with a
    /// strong ETag of its own: most of a regeneration's time.
    pub fn compress(&self, compression: Compression) -> Codings {
        let tag = self.etag.trim_matches('"');
        let level = compression.etag_suffix();
        // Held for as long as the document is served: without the spare capacity the
        // output buffers were sized with (about 80 MB of heap at 206 author and tag feeds).
        let encoded = |mut bytes: Vec<u8>, etag: String| Encoded {
            bytes: {
                bytes.shrink_to_fit();
                bytes.into()
            },
            etag_header: header(&etag),
            etag,
            disk: DiskFile::default(),
        };
        Codings {
            gzip: encoded(
                gzip(&self.bytes, compression),
                format!("\"{tag}-gz{level}\""),
            ),
            brotli: encoded(
                brotli(&self.bytes, compression),
                format!("\"{tag}-br{level}\""),
            ),
            compression,
        }
    }

    /// The same document with these codings, for files just written: every coding looks
    /// for its file in `feeds/` afresh.
    pub fn with_codings(&self, codings: Codings) -> Self {
        Self {
            disk: DiskFile::default(),
            codings: Some(codings),
            ..self.clone()
        }
    }

    /// The same document with another date and cache lifetime.
    pub fn redated(&self, last_modified: DateTime<Utc>, max_age: u32, links: &Links) -> Self {
        Self {
            headers: ResponseHeaders::new(
                self.content_type,
                &self.etag,
                last_modified,
                max_age,
                links,
            ),
            last_modified,
            max_age,
            ..self.clone()
        }
    }

    /// The files that represent this document on disk, `(suffix, bytes)`: the identity
    /// coding, and the compressed ones once made.
    pub fn files(&self) -> Vec<(&'static str, &Bytes)> {
        let mut files = vec![("", &self.bytes)];
        if let Some(codings) = &self.codings {
            files.push((GZIP_SUFFIX, &codings.gzip.bytes));
            files.push((BROTLI_SUFFIX, &codings.brotli.bytes));
        }
        files
    }

    /// Bytes it holds in memory, in all its codings.
    pub fn held_bytes(&self) -> usize {
        self.files().iter().map(|(_, b)| b.len()).sum()
    }
}

impl ResponseHeaders {
    fn new(
        content_type: &'static str,
        etag: &str,
        last_modified: DateTime<Utc>,
        max_age: u32,
        links: &Links,
    ) -> Self {
        Self {
            content_type: HeaderValue::from_static(content_type),
            etag: header(etag),
            last_modified: header(&http_date(last_modified)),
            cache_control: header(&format!("public, max-age={max_age}")),
            link: header(&format!(
                "<{}>; rel=\"hub\", <{}>; rel=\"self\"",
                links.hub_url, links.self_url
            )),
        }
    }
}

/// How many documents' files may be held open at once: each holds a file descriptor, and
/// those are needed for connections and the store too.
const MAX_OPEN_FILES: usize = 256;

static OPEN_FILES: AtomicUsize = AtomicUsize::new(0);

/// A representation's own file in `feeds/`, held open once a server has asked for it and
/// shared by every clone of the document. Sending from it with `sendfile(2)` spares copying
/// the bytes from user space into each socket, and the page cache holds them once for
/// feedpub and any other reader. An open file stays valid when a newer version is renamed
/// over its path, so a response never mixes two versions.
#[derive(Clone, Default)]
pub struct DiskFile(Arc<OnceLock<Option<CheckedFile>>>);

/// A file found to hold exactly a representation's bytes, with what its inode said then.
struct CheckedFile {
    file: std::fs::File,
    /// What `fstat` said when the file was found to hold the bytes: its size and
    /// modification time, which any write moves on (a rename over its path changes only
    /// the inode's change time).
    found: rustix::fs::Stat,
    _slot: OpenSlot,
}

/// One of the [`MAX_OPEN_FILES`], taken while a file is open.
struct OpenSlot;

impl OpenSlot {
    fn take() -> Option<Self> {
        if OPEN_FILES.fetch_add(1, Ordering::Relaxed) < MAX_OPEN_FILES {
            Some(Self)
        } else {
            OPEN_FILES.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        OPEN_FILES.fetch_sub(1, Ordering::Relaxed);
    }
}

impl DiskFile {
    /// The file at `path` open for reading, when it holds exactly `bytes` (the bytes this
    /// handle stands for). It is opened and compared on first call; later calls only check
    /// that nothing has written to it since. `None` when there is no such file, when it
    /// differs or has changed (feedpub never writes to a file it has published, but someone
    /// else might), or when too many files are open: the caller then sends from memory.
    pub fn get(&self, path: impl FnOnce() -> PathBuf, bytes: &[u8]) -> Option<BorrowedFd<'_>> {
        let checked = match self.0.get() {
            Some(checked) => checked.as_ref()?,
            None => {
                // Not remembered when none is free: another time, fewer may be open.
                let slot = OpenSlot::take()?;
                let checked = CheckedFile::open(&path(), bytes, slot).unwrap_or_else(|e| {
                    tracing::debug!(error = %e, "a document is sent from memory");
                    None
                });
                // Two first requests at once may both open it; the loser's copy is closed.
                let _ = self.0.set(checked);
                self.0.get()?.as_ref()?
            }
        };
        checked.unchanged().then(|| checked.file.as_fd())
    }
}

impl CheckedFile {
    /// The file at `path` if it holds `bytes`; `Ok(None)` if it holds something else.
    fn open(path: &Path, bytes: &[u8], slot: OpenSlot) -> std::io::Result<Option<Self>> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::open(path)?;
        let found = rustix::fs::fstat(&file)?;
        let checked = Self {
            file,
            found,
            _slot: slot,
        };
        let regular = rustix::fs::FileType::from_raw_mode(found.st_mode).is_file();
        if !regular || u64::try_from(found.st_size).ok() != Some(bytes.len() as u64) {
            return Ok(None);
        }
        let mut buf = vec![0; 64 * 1024];
        let mut offset = 0;
        while offset < bytes.len() {
            let n = checked.file.read_at(&mut buf, offset as u64)?;
            let expected = &bytes[offset..bytes.len().min(offset + n)];
            if n == 0 || buf[..n] != *expected {
                return Ok(None);
            }
            offset += n;
        }
        Ok(checked.unchanged().then_some(checked))
    }

    /// True while the file is as it was when found to hold the bytes (one `fstat`).
    fn unchanged(&self) -> bool {
        rustix::fs::fstat(&self.file).is_ok_and(|now| {
            let then = &self.found;
            (now.st_size, now.st_mtime, now.st_mtime_nsec)
                == (then.st_size, then.st_mtime, then.st_mtime_nsec)
        })
    }
}

/// Open files are a cache of the bytes beside them: they never make two documents differ.
impl PartialEq for DiskFile {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for DiskFile {}

impl std::fmt::Debug for DiskFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0.get() {
            Some(Some(_)) => "DiskFile(open)",
            Some(None) => "DiskFile(unusable)",
            None => "DiskFile(not opened)",
        })
    }
}

/// A header value from text feedpub made itself (ASCII URLs, dates, hex tags).
fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// IMF-fixdate, e.g. `Wed, 07 Jun 2023 00:00:00 GMT`.
pub fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// `bytes` compressed with gzip.
fn gzip(bytes: &[u8], compression: Compression) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 3 + 64),
        flate2::Compression::new(compression.gzip_level()),
    );
    encoder
        .write_all(bytes)
        .expect("compressing into memory cannot fail");
    encoder
        .finish()
        .expect("compressing into memory cannot fail")
}

/// `bytes` compressed with brotli (paid on every regeneration, on the way from a publish to
/// the feed being served).
fn brotli(bytes: &[u8], compression: Compression) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() / 3 + 64);
    {
        let mut writer = brotli::CompressorWriter::new(
            &mut out,
            4096,
            compression.brotli_quality(),
            brotli_window(bytes.len()),
        );
        writer
            .write_all(bytes)
            .expect("compressing into memory cannot fail");
    }
    out
}

/// The smallest brotli window (log2 of its size, 10 to 22) that holds a document of `len`
/// bytes, as brotli's own encoder picks it when told the size: a larger window finds no
/// more matches in a document it already holds whole, but its ring buffer and hash tables
/// must be set up, which took 40 % of the time for a 200 KB feed with the fixed maximum.
fn brotli_window(len: usize) -> u32 {
    // Brotli keeps 16 bytes of the window for itself.
    (10..22)
        .find(|bits| (1usize << bits) - 16 >= len)
        .unwrap_or(22)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn every_coding_decodes_to_the_same_bytes_and_has_its_own_etag() {
        let text = "朔州日报 ]]> & <p>".repeat(200).into_bytes();
        let file = FeedFile::new(
            text.clone(),
            "application/rss+xml",
            DateTime::UNIX_EPOCH,
            60,
            &links(),
        );
        let mut unzipped = Vec::new();
        let codings = file.codings.as_ref().expect("compressed");
        flate2::read::GzDecoder::new(&codings.gzip.bytes[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, text);
        let mut unbrotlied = Vec::new();
        brotli::Decompressor::new(&codings.brotli.bytes[..], 4096)
            .read_to_end(&mut unbrotlied)
            .unwrap();
        assert_eq!(unbrotlied, text);
        let tags = [&file.etag, &codings.gzip.etag, &codings.brotli.etag];
        assert_eq!(
            tags.iter().collect::<std::collections::HashSet<_>>().len(),
            3
        );
        assert!(codings.gzip.bytes.len() < text.len() / 4);
    }

    #[test]
    fn fast_codings_decode_to_the_same_bytes_under_their_own_etags() {
        let text = "朔州日报 ]]> & <p>".repeat(200).into_bytes();
        let file = FeedFile::uncompressed(
            text.clone(),
            "application/rss+xml",
            DateTime::UNIX_EPOCH,
            60,
            &links(),
        );
        assert!(file.codings.is_none());
        assert_eq!(file.files().len(), 1, "only the identity coding so far");
        let (fast, full) = (
            file.compress(Compression::Fast),
            file.compress(Compression::Full),
        );
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&fast.gzip.bytes[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, text);
        let mut unbrotlied = Vec::new();
        brotli::Decompressor::new(&fast.brotli.bytes[..], 4096)
            .read_to_end(&mut unbrotlied)
            .unwrap();
        assert_eq!(unbrotlied, text);
        // The identity coding is the same document; its compressions are other bytes.
        assert_ne!(fast.gzip.etag, full.gzip.etag);
        assert!(compressed_in_full(&full.gzip.etag) && compressed_in_full(&full.brotli.etag));
        assert!(!compressed_in_full(&fast.gzip.etag) && !compressed_in_full(&fast.brotli.etag));
        assert!(
            !compressed_in_full(&file.etag),
            "the identity coding is not compressed"
        );
        assert_ne!(fast.brotli.etag, full.brotli.etag);
        let fast = file.with_codings(fast);
        assert_eq!(fast.etag, file.etag);
        assert_eq!(
            fast.codings.as_ref().map(|c| c.compression),
            Some(Compression::Fast)
        );
        assert_eq!(fast.files().len(), 3);
        assert_eq!(
            FeedFile::new(
                text,
                "application/rss+xml",
                DateTime::UNIX_EPOCH,
                60,
                &links()
            ),
            file.with_codings(full)
        );
    }

    #[test]
    fn the_same_bytes_always_give_the_same_documents() {
        let a = FeedFile::new(b"<rss/>".to_vec(), "x", DateTime::UNIX_EPOCH, 60, &links());
        let b = FeedFile::new(b"<rss/>".to_vec(), "x", DateTime::UNIX_EPOCH, 60, &links());
        assert_eq!(a, b);
    }

    #[test]
    fn headers_are_ready_to_send() {
        let file = FeedFile::new(
            b"<rss/>".to_vec(),
            "application/rss+xml",
            DateTime::UNIX_EPOCH,
            300,
            &links(),
        );
        assert_eq!(file.headers.last_modified, "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(file.headers.cache_control, "public, max-age=300");
        assert_eq!(
            file.headers.link,
            "<http://x/websub>; rel=\"hub\", <http://x/feeds/all/rss.xml>; rel=\"self\""
        );
        assert_eq!(file.headers.etag, file.etag.as_str());
        let later = file.redated(
            DateTime::UNIX_EPOCH + chrono::Duration::days(1),
            60,
            &links(),
        );
        assert_eq!(later.headers.last_modified, "Fri, 02 Jan 1970 00:00:00 GMT");
        assert_eq!(later.bytes, file.bytes);
    }

    /// `bytes` as a file at `dir/name`, replacing whatever was there by a rename, as
    /// publication does.
    fn publish(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let temp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&temp, bytes).unwrap();
        std::fs::rename(&temp, dir.join(name)).unwrap();
        dir.join(name)
    }

    fn read_fd(fd: BorrowedFd<'_>) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::from(fd.try_clone_to_owned().unwrap());
        let mut out = vec![0; 1 << 20];
        let n = file.read_at(&mut out, 0).unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn a_disk_file_is_used_only_when_it_holds_exactly_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let old = "朔州日报 ".repeat(20_000).into_bytes();
        let path = publish(dir.path(), "rss.xml", &old);
        let same = DiskFile::default();
        let fd = same
            .get(|| path.clone(), &old)
            .expect("the file holds the bytes");
        assert_eq!(read_fd(fd), old);

        let mut other = old.clone();
        other[70_000] ^= 1;
        assert!(DiskFile::default().get(|| path.clone(), &other).is_none());
        assert!(
            DiskFile::default()
                .get(|| path.clone(), &old[1..])
                .is_none()
        );
        let missing = dir.path().join("atom.xml");
        assert!(DiskFile::default().get(|| missing, &old).is_none());
    }

    #[test]
    fn an_open_disk_file_keeps_its_bytes_when_a_new_version_replaces_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let old = "<rss>old</rss>".repeat(5_000).into_bytes();
        let path = publish(dir.path(), "rss.xml", &old);
        let disk = DiskFile::default();
        assert!(disk.get(|| path.clone(), &old).is_some());

        let new = "<rss>new, longer</rss>".repeat(5_000).into_bytes();
        publish(dir.path(), "rss.xml", &new);
        // The old document still sends its own bytes; the path is not looked at again.
        let fd = disk
            .get(|| unreachable!("opened once"), &old)
            .expect("still open");
        assert_eq!(read_fd(fd), old);
        assert_eq!(std::fs::read(&path).unwrap(), new);
        // A clone (a redated document) shares the open file.
        assert!(disk.clone().get(|| unreachable!(), &old).is_some());
    }

    #[test]
    fn a_disk_file_written_in_place_is_no_longer_used() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let bytes = "<feed/>".repeat(10_000).into_bytes();
        let path = publish(dir.path(), "atom.xml", &bytes);
        let disk = DiskFile::default();
        assert!(disk.get(|| path.clone(), &bytes).is_some());
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        // Modification times have a clock tick's resolution: write until the change shows.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while disk.get(|| unreachable!(), &bytes).is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the write went unnoticed"
            );
            file.write_at(b"X", 100).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn links() -> Links {
        Links {
            self_url: "http://x/feeds/all/rss.xml".into(),
            hub_url: "http://x/websub".into(),
        }
    }
}
