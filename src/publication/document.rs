//! A published feed document: its bytes in every content coding, with strong validators.

use axum::body::Bytes;
use axum::http::HeaderValue;
use chrono::{DateTime, Utc};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// Absolute URL of the WebSub hub, for documents it pushes (feeds, not the stylesheet).
    pub hub_url: Option<String>,
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
///
/// Once its file is written, the identity coding is no longer held in memory (it is most
/// of a document's bytes: a 200 KB feed gzips to 30 KB): it is sent from the file with
/// `sendfile(2)`, and whoever needs the bytes themselves (a TLS connection, a WebSub
/// delivery, a file someone removed) gets them decompressed from the gzip coding, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedFile {
    /// The document itself (identity coding): see [`FeedFile::bytes`].
    identity: Identity,
    /// The file in `feeds/` holding the identity coding, once a server has asked for it.
    pub disk: DiskFile,
    /// Strong entity tag of the identity coding, quoted: changes exactly when the bytes
    /// change.
    pub etag: String,
    /// `bytes` compressed with gzip and brotli; `None` until they are made.
    pub codings: Option<Codings>,
    /// When the feed's content last changed, to the second: also the date the document
    /// itself carries (Atom `updated`, RSS `lastBuildDate`).
    pub last_modified: DateTime<Utc>,
    /// The stored change the document was rendered from, to the nanosecond, when known:
    /// tells a later change within the same second from none.
    pub changed: Option<DateTime<Utc>>,
    /// A digest of the versions of the articles the document shows, when rendered in this
    /// process: tells new bytes a stored change explains (an article's new version, stored
    /// by another writer with an earlier time than the latest change shown) from new bytes
    /// of the same articles (a new configuration).
    pub shown: Option<u64>,
    /// Another version of the document was served with the same `last_modified` (two
    /// changes within one second): a client's `If-Modified-Since` of that date may be the
    /// other version's, so it cannot show the client's copy current.
    pub shares_its_second: bool,
    /// Media type with charset.
    pub content_type: &'static str,
    /// How long clients and caches may reuse it, in seconds.
    pub max_age: u32,
    /// The first `expire_time` of the articles the document shows: no client or cache is
    /// told to keep it past then (see [`FeedFile::cache_control`]).
    pub expires: Option<DateTime<Utc>>,
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
#[cfg(test)]
fn compressed_in_full(etag: &str) -> bool {
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
        let etag = etag_of(&bytes);
        Self::tagged(bytes, etag, content_type, last_modified, max_age, links)
    }

    /// [`FeedFile::uncompressed`], its ETag already computed with [`etag_of`].
    pub(super) fn tagged(
        bytes: Vec<u8>,
        etag: String,
        content_type: &'static str,
        last_modified: DateTime<Utc>,
        max_age: u32,
        links: &Links,
    ) -> Self {
        debug_assert_eq!(etag, etag_of(&bytes));
        Self {
            headers: ResponseHeaders::new(content_type, &etag, last_modified, max_age, links),
            etag,
            identity: Identity::held(bytes.into()),
            disk: DiskFile::identity(),
            codings: None,
            last_modified,
            changed: None,
            shown: None,
            shares_its_second: false,
            content_type,
            max_age,
            expires: None,
        }
    }

    /// How long, from `now`, the document may be reused: [`FeedFile::max_age`], cut, when
    /// it [`expires`](FeedFile::expires) sooner, to end then (0 once it has), so that no
    /// cache keeps showing an article past its `expire_time`.
    pub fn max_age_at(&self, now: DateTime<Utc>) -> u32 {
        self.expires
            .map(|expires| u32::try_from((expires - now).num_seconds().max(0)).unwrap_or(u32::MAX))
            .map_or(self.max_age, |left| left.min(self.max_age))
    }

    /// The `Cache-Control` of an answer sent at `now`, its `max-age` [counting
    /// down](FeedFile::max_age_at) to the document's expiry.
    pub fn cache_control(&self, now: DateTime<Utc>) -> HeaderValue {
        match self.max_age_at(now) {
            left if left < self.max_age => header(&format!("public, max-age={left}")),
            _ => self.headers.cache_control.clone(),
        }
    }

    /// The document's gzip and brotli codings, as hard as `compression` says, each with a
    /// strong ETag of its own: most of a regeneration's time.
    pub fn compress(&self, compression: Compression) -> Codings {
        let bytes = self.bytes();
        self.codings(
            gzip(&bytes, compression),
            brotli(&bytes, compression),
            compression,
        )
    }

    /// The document's codings at the full levels, read from the gzip and brotli files
    /// beside its identity file `file_name` in `dir`, when both decode to exactly its bytes
    /// and the gzip file's header says it was made at a middle level, as
    /// [`Compression::Full`] makes it (a fast one says so in its header): a restart takes
    /// the files the last run wrote rather than compress every document again. Files are
    /// replaced brotli first and gzip last (`write_files`), so a gzip file at the full level
    /// vouches for the brotli file beside it.
    pub fn codings_on_disk(&self, dir: &Path, file_name: &str) -> Option<Codings> {
        let read = |suffix: &str| std::fs::read(dir.join(format!("{file_name}{suffix}"))).ok();
        let bytes = self.bytes();
        let gzip = read(GZIP_SUFFIX)?;
        // The header's XFL byte: 0 between the fastest level (4) and the best (2).
        if gzip.get(8) != Some(&0) || !decodes_to(flate2::read::GzDecoder::new(&gzip[..]), &bytes) {
            return None;
        }
        let brotli = read(BROTLI_SUFFIX)?;
        if !decodes_to(brotli::Decompressor::new(&brotli[..], 4096), &bytes) {
            return None;
        }
        Some(self.codings(gzip, brotli, Compression::Full))
    }

    /// The codings made of these compressed bytes, at `compression`'s levels.
    fn codings(&self, gzip: Vec<u8>, brotli: Vec<u8>, compression: Compression) -> Codings {
        let level = compression.etag_suffix();
        // Held for as long as the document is served: without the spare capacity the
        // output buffers were sized with (about 80 MB of heap at 206 author and tag feeds).
        let encoded = |mut bytes: Vec<u8>, coding: &str| {
            let (etag, etag_header) = variant_etag(&self.etag, &format!("-{coding}{level}"));
            Encoded {
                bytes: {
                    bytes.shrink_to_fit();
                    bytes.into()
                },
                etag_header,
                etag,
                disk: DiskFile::compressed(),
            }
        };
        Codings {
            gzip: encoded(gzip, "gz"),
            brotli: encoded(brotli, "br"),
            compression,
        }
    }

    /// The same document with these codings, its files not written (or not known to hold
    /// it): every coding looks for its file in `feeds/` afresh, and the identity coding
    /// stays in memory.
    pub fn with_codings(&self, codings: Codings) -> Self {
        Self {
            disk: DiskFile::identity(),
            codings: Some(codings),
            ..self.clone()
        }
    }

    /// The same document with these codings, its identity coding in the file `stamp`
    /// describes (written or found holding exactly its bytes): from then on the identity
    /// coding is sent from that file and no longer held in memory.
    pub fn on_disk(&self, codings: Codings, stamp: FileStamp) -> Self {
        Self {
            identity: Identity::cold(self.identity.len),
            disk: DiskFile::identity_stamped(stamp),
            codings: Some(codings),
            ..self.clone()
        }
    }

    /// The same document finished: with these codings, and with its identity coding let go
    /// of when `stamp` says its file holds it ([`Self::on_disk`]).
    pub fn finished(&self, codings: Codings, stamp: Option<FileStamp>) -> Self {
        match stamp {
            Some(stamp) => self.on_disk(codings, stamp),
            None => self.with_codings(codings),
        }
    }

    /// The document itself, in the identity coding. Held in memory until its file is
    /// written; after that decompressed from the gzip coding when asked for, and held again
    /// for as long as the document is served while every document held so restored comes
    /// to at most [`MAX_RESTORED_BYTES`] (past that, decompressed on each call), so that a
    /// crawler asking for every feed in turn does not bring them all back into memory.
    pub fn bytes(&self) -> Bytes {
        self.restored_within(MAX_RESTORED_BYTES)
    }

    /// [`Self::bytes`], holding restored bytes only while all of them come to at most
    /// `budget`.
    fn restored_within(&self, budget: usize) -> Bytes {
        let held = &self.identity.bytes;
        if let Some(bytes) = held.once.get() {
            return bytes.clone();
        }
        let len = self.identity.len;
        let restored: Bytes = match (self.codings.as_ref()).map(|c| gunzip(&c.gzip.bytes, len)) {
            Some(Ok(bytes)) if bytes.len() == len => bytes.into(),
            // Never the case: a document is only let go of with its gzip coding.
            _ => {
                tracing::error!(etag = %self.etag, "a feed document cannot be restored from its gzip coding");
                return Bytes::new();
            }
        };
        if RESTORED_BYTES.fetch_add(len, Ordering::Relaxed) + len <= budget
            && held.once.set(restored.clone()).is_ok()
        {
            held.counted.store(true, Ordering::Relaxed);
        } else {
            RESTORED_BYTES.fetch_sub(len, Ordering::Relaxed);
        }
        restored
    }

    /// Length of the identity coding, known without its bytes.
    pub fn len(&self) -> usize {
        self.identity.len
    }

    /// True for a document of no bytes.
    pub fn is_empty(&self) -> bool {
        self.identity.len == 0
    }

    /// The stamp of the identity coding's file, when it was written or found holding it.
    pub fn stamp(&self) -> Option<FileStamp> {
        self.disk.stamp
    }

    /// True while the identity coding is held in memory.
    pub fn holds_identity(&self) -> bool {
        self.identity.bytes.once.get().is_some()
    }

    /// This document in place of one with other bytes dated `previous` (when it replaces
    /// one): dated with the same second, it [shares it](Self::shares_its_second).
    pub fn in_place_of(mut self, previous: Option<DateTime<Utc>>) -> Self {
        self.shares_its_second = previous == Some(self.last_modified);
        self
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
            // Moved to a later second, it is the only version dated with it.
            shares_its_second: self.shares_its_second && last_modified == self.last_modified,
            ..self.clone()
        }
    }

    /// The files that represent this document on disk, `(suffix, bytes)`: the identity
    /// coding, and the compressed ones once made.
    pub fn files(&self) -> Vec<(&'static str, Bytes)> {
        let mut files = vec![("", self.bytes())];
        if let Some(codings) = &self.codings {
            files.push((GZIP_SUFFIX, codings.gzip.bytes.clone()));
            files.push((BROTLI_SUFFIX, codings.brotli.bytes.clone()));
        }
        files
    }

    /// Bytes it holds in memory, in all its codings.
    pub fn held_bytes(&self) -> usize {
        let identity = self.identity.bytes.once.get().map_or(0, Bytes::len);
        let codings = self
            .codings
            .as_ref()
            .map_or(0, |c| c.gzip.bytes.len() + c.brotli.bytes.len());
        identity + codings
    }
}

/// At most this many bytes of identity codings restored from their gzip coding are held
/// (see [`FeedFile::bytes`]).
pub const MAX_RESTORED_BYTES: usize = 32 * 1024 * 1024;

/// Bytes of identity codings restored and held now.
static RESTORED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The identity coding of a document: its length, and its bytes while held.
#[derive(Debug, Clone)]
struct Identity {
    len: usize,
    /// Shared by every copy of the document (a redated one, say), so that bytes restored
    /// from the gzip coding are restored once.
    bytes: Arc<Held>,
}

/// The bytes of an identity coding, when held.
#[derive(Debug, Default)]
struct Held {
    once: OnceLock<Bytes>,
    /// Restored from the gzip coding, so counted in [`RESTORED_BYTES`] until dropped.
    counted: AtomicBool,
}

impl Drop for Held {
    fn drop(&mut self) {
        if *self.counted.get_mut()
            && let Some(bytes) = self.once.get()
        {
            RESTORED_BYTES.fetch_sub(bytes.len(), Ordering::Relaxed);
        }
    }
}

impl Identity {
    fn held(bytes: Bytes) -> Self {
        Self {
            len: bytes.len(),
            bytes: Arc::new(Held {
                once: OnceLock::from(bytes),
                counted: AtomicBool::new(false),
            }),
        }
    }

    fn cold(len: usize) -> Self {
        Self {
            len,
            bytes: Arc::default(),
        }
    }
}

/// The ETag (equal exactly when the bytes are) says whether two documents are the same.
impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
    }
}

impl Eq for Identity {}

/// The strong entity tag of a document's identity coding, quoted: 128 bits of its BLAKE3
/// digest. A cryptographic digest, so that no article a partner writes can make two
/// different documents share a tag; BLAKE3 because every regeneration digests every
/// changed document, and it digests them about three times as fast as SHA-256 did (see
/// BENCHMARKS.md).
pub fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&blake3::hash(bytes).as_bytes()[..16]))
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
            link: header(&match &links.hub_url {
                Some(hub) => format!("<{hub}>; rel=\"hub\", <{}>; rel=\"self\"", links.self_url),
                None => format!("<{}>; rel=\"self\"", links.self_url),
            }),
        }
    }
}

/// Files held open for documents' representations, at most so many at once: each holds a
/// file descriptor, and those are needed for connections and the store too.
struct OpenFiles {
    open: AtomicUsize,
    max: usize,
}

impl OpenFiles {
    const fn new(max: usize) -> Self {
        Self {
            open: AtomicUsize::new(0),
            max,
        }
    }

    /// One of the files, unless all are taken.
    fn take(&'static self) -> Option<OpenSlot> {
        if self.open.fetch_add(1, Ordering::Relaxed) < self.max {
            Some(OpenSlot(self))
        } else {
            self.open.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }
}

/// Identity codings' files: without its file, an identity coding that is no longer held
/// in memory is decompressed from gzip for every response.
static IDENTITY_FILES: OpenFiles = OpenFiles::new(MAX_IDENTITY_FILES);
const MAX_IDENTITY_FILES: usize = 256;

/// Compressed codings' files. Those codings are held in memory as well, so a file only
/// spares copying them into each socket: they have files of their own to take, and never
/// take the ones the identity codings need (BENCHMARKS.md, "Serve gzip from files").
static COMPRESSED_FILES: OpenFiles = OpenFiles::new(MAX_COMPRESSED_FILES);
const MAX_COMPRESSED_FILES: usize = 256;

/// The most files documents hold open at once, all representations together.
pub(crate) const MAX_DOCUMENT_FILES: usize = MAX_IDENTITY_FILES + MAX_COMPRESSED_FILES;

/// A representation's own file in `feeds/`, held open once a server has asked for it and
/// shared by every clone of the document. Sending from it with `sendfile(2)` spares copying
/// the bytes from user space into each socket, and the page cache holds them once for
/// feedpub and any other reader. An open file stays valid when a newer version is renamed
/// over its path, so a response never mixes two versions.
#[derive(Clone)]
pub struct DiskFile {
    opened: Arc<OnceLock<Option<CheckedFile>>>,
    /// The file as it was when written with the bytes (or found holding them): the file at
    /// the path is then known by this alone, without reading it.
    stamp: Option<FileStamp>,
    /// Whose files it takes one of.
    files: &'static OpenFiles,
}

/// What `fstat` says of a file: which file it is, its size and when it was last written.
/// A write to the file or another file renamed over its path changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: i64,
    mtime_nsec: u64,
}

impl FileStamp {
    /// The stamp of an open file.
    pub fn of(file: &std::fs::File) -> std::io::Result<Self> {
        Ok(Self::from(&rustix::fs::fstat(file)?))
    }
}

impl From<&rustix::fs::Stat> for FileStamp {
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    fn from(stat: &rustix::fs::Stat) -> Self {
        Self {
            dev: stat.st_dev as u64,
            ino: stat.st_ino as u64,
            size: stat.st_size as i64,
            mtime: stat.st_mtime as i64,
            mtime_nsec: stat.st_mtime_nsec as u64,
        }
    }
}

/// A file found to hold exactly a representation's bytes, with what its inode said then.
struct CheckedFile {
    file: std::fs::File,
    /// What `fstat` said when the file was found to hold the bytes; any write moves its
    /// size or modification time on (a rename over its path changes only the inode's
    /// change time).
    found: FileStamp,
    _slot: OpenSlot,
}

/// One of an [`OpenFiles`]' files, taken while a file is open.
struct OpenSlot(&'static OpenFiles);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl DiskFile {
    /// An identity coding's file, not opened yet.
    pub fn identity() -> Self {
        Self {
            opened: Arc::default(),
            stamp: None,
            files: &IDENTITY_FILES,
        }
    }

    /// The file of a coding that is held in memory as well (gzip, brotli), not opened yet.
    pub fn compressed() -> Self {
        Self {
            files: &COMPRESSED_FILES,
            ..Self::identity()
        }
    }

    /// The identity coding's file written with its bytes, as `stamp` describes it.
    pub fn identity_stamped(stamp: FileStamp) -> Self {
        Self {
            stamp: Some(stamp),
            ..Self::identity()
        }
    }

    /// The file at `path` open for reading, when it holds exactly `bytes` (the bytes this
    /// handle stands for; asked for only when the file is not stamped). It is opened and
    /// checked on first call: by its stamp, or else by comparing its content; later calls
    /// only check that nothing has written to it since. `None` when there is no such file,
    /// when it differs or has changed (feedpub never writes to a file it has published, but
    /// someone else might), or when too many files are open: the caller then sends from
    /// memory.
    pub fn get<B: AsRef<[u8]>>(
        &self,
        path: impl FnOnce() -> PathBuf,
        bytes: impl FnOnce() -> B,
    ) -> Option<BorrowedFd<'_>> {
        let checked = match self.opened.get() {
            Some(checked) => checked.as_ref()?,
            None => {
                // Not remembered when none is free: another time, fewer may be open.
                let slot = self.files.take()?;
                let checked =
                    CheckedFile::open(&path(), self.stamp, bytes, slot).unwrap_or_else(|e| {
                        tracing::debug!(error = %e, "a document is sent from memory");
                        None
                    });
                // Two first requests at once may both open it; the loser's copy is closed.
                let _ = self.opened.set(checked);
                self.opened.get()?.as_ref()?
            }
        };
        checked.unchanged().then(|| checked.file.as_fd())
    }
}

impl CheckedFile {
    /// The file at `path` if it is the one `stamp` describes or, without a stamp, if it
    /// holds `bytes`; `Ok(None)` if it is another or holds something else.
    fn open<B: AsRef<[u8]>>(
        path: &Path,
        stamp: Option<FileStamp>,
        bytes: impl FnOnce() -> B,
        slot: OpenSlot,
    ) -> std::io::Result<Option<Self>> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::open(path)?;
        let stat = rustix::fs::fstat(&file)?;
        let checked = Self {
            file,
            found: FileStamp::from(&stat),
            _slot: slot,
        };
        if let Some(stamp) = stamp {
            return Ok((checked.found == stamp).then_some(checked));
        }
        let bytes = bytes();
        let bytes = bytes.as_ref();
        let regular = rustix::fs::FileType::from_raw_mode(stat.st_mode).is_file();
        if !regular || u64::try_from(stat.st_size).ok() != Some(bytes.len() as u64) {
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
        FileStamp::of(&self.file).is_ok_and(|now| now == self.found)
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
        f.write_str(match self.opened.get() {
            Some(Some(_)) => "DiskFile(open)",
            Some(None) => "DiskFile(unusable)",
            None => "DiskFile(not opened)",
        })
    }
}

/// A header value from text feedpub made itself (ASCII URLs, dates, hex tags).
/// The strong ETag of another representation of what `etag` (quoted) tags, such as a coding
/// of it: `suffix` added inside the quotes. With its header value.
pub fn variant_etag(etag: &str, suffix: &str) -> (String, HeaderValue) {
    let tag = format!("\"{}{suffix}\"", etag.trim_matches('"'));
    let value = header(&tag);
    (tag, value)
}

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

/// `bytes` decompressed from gzip.
fn gunzip(bytes: &[u8], len: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::with_capacity(len);
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out)
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

/// Whether `decoder` gives exactly `expected` and then ends without error (a gzip stream's
/// checksum and length are checked at its end); it decodes at most one byte more.
fn decodes_to(decoder: impl std::io::Read, expected: &[u8]) -> bool {
    use std::io::Read;
    let mut decoded = Vec::with_capacity(expected.len());
    let limit = u64::try_from(expected.len()).map_or(u64::MAX, |len| len.saturating_add(1));
    decoder.take(limit).read_to_end(&mut decoded).is_ok() && decoded == expected
}

/// The smallest brotli window (log2 of its size, 18 to 22) that holds a document of `len`
/// bytes: a larger window finds no more matches in a document it already holds whole, but
/// its ring buffer and hash tables must be set up, which took 40 % of the time for a 200 KB
/// feed with the fixed maximum. Never below 18: at the full quality a window of 16 bits or
/// less makes the encoder set up a 32 MiB hash table for each document, which took 2 ms to
/// compress 1 KB and 20 ms for 30 KB, against 0.06 ms and 0.8 ms with 18 bits, for the
/// same size within a percent (most author and tag feeds are that small).
fn brotli_window(len: usize) -> u32 {
    // Brotli keeps 16 bytes of the window for itself.
    (18..22)
        .find(|bits| (1usize << bits) - 16 >= len)
        .unwrap_or(22)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_brotli_window_holds_the_document_and_is_never_below_18_bits() {
        // Below 18 bits the encoder's hash table for the full quality is 32 MiB.
        for (len, bits) in [
            (0, 18),
            (1_000, 18),
            (262_128, 18),
            (262_129, 19),
            (1_000_000, 20),
            (4_194_288, 22),
            (50_000_000, 22),
        ] {
            assert_eq!(brotli_window(len), bits, "{len} bytes");
        }
    }

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
    fn a_document_is_cached_no_longer_than_until_its_first_article_expires() {
        let now = Utc::now();
        let in_seconds = |s: i64| Some(now + chrono::TimeDelta::seconds(s));
        let mut file = FeedFile::new(b"<rss/>".to_vec(), "x", DateTime::UNIX_EPOCH, 600, &links());
        assert_eq!(file.max_age_at(now), 600);
        assert_eq!(file.cache_control(now), "public, max-age=600");
        file.expires = in_seconds(28);
        assert_eq!(file.max_age_at(now), 28);
        assert_eq!(file.cache_control(now), "public, max-age=28");
        // Counting down, to the second it expires and past it.
        let later = now + chrono::TimeDelta::milliseconds(27_500);
        assert_eq!(file.cache_control(later), "public, max-age=0");
        assert_eq!(file.max_age_at(now + chrono::TimeDelta::days(1)), 0);
        file.expires = in_seconds(601);
        assert_eq!(file.max_age_at(now), 600);
        assert_eq!(file.cache_control(now), "public, max-age=600");
        file.expires = Some(DateTime::<Utc>::MAX_UTC);
        assert_eq!(file.max_age_at(now), 600);
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
        assert_eq!(later.bytes(), file.bytes());
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
        let same = DiskFile::identity();
        let fd = same
            .get(|| path.clone(), || &old)
            .expect("the file holds the bytes");
        assert_eq!(read_fd(fd), old);

        let mut other = old.clone();
        other[70_000] ^= 1;
        assert!(
            DiskFile::identity()
                .get(|| path.clone(), || &other)
                .is_none()
        );
        assert!(
            DiskFile::identity()
                .get(|| path.clone(), || &old[1..])
                .is_none()
        );
        let missing = dir.path().join("atom.xml");
        assert!(DiskFile::identity().get(|| missing, || &old).is_none());
    }

    #[test]
    fn an_open_disk_file_keeps_its_bytes_when_a_new_version_replaces_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let old = "<rss>old</rss>".repeat(5_000).into_bytes();
        let path = publish(dir.path(), "rss.xml", &old);
        let disk = DiskFile::identity();
        assert!(disk.get(|| path.clone(), || &old).is_some());

        let new = "<rss>new, longer</rss>".repeat(5_000).into_bytes();
        publish(dir.path(), "rss.xml", &new);
        // The old document still sends its own bytes; the path is not looked at again.
        let fd = disk
            .get(|| unreachable!("opened once"), || &old)
            .expect("still open");
        assert_eq!(read_fd(fd), old);
        assert_eq!(std::fs::read(&path).unwrap(), new);
        // A clone (a redated document) shares the open file.
        assert!(disk.clone().get(|| unreachable!(), || &old).is_some());
    }

    #[test]
    fn a_disk_file_written_in_place_is_no_longer_used() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let bytes = "<feed/>".repeat(10_000).into_bytes();
        let path = publish(dir.path(), "atom.xml", &bytes);
        let disk = DiskFile::identity();
        assert!(disk.get(|| path.clone(), || &bytes).is_some());
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        // Modification times have a clock tick's resolution: write until the change shows.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while disk.get(|| unreachable!(), || &bytes).is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the write went unnoticed"
            );
            file.write_at(b"X", 100).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn a_document_on_disk_is_sent_from_its_file_and_restored_from_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let text = "朔州日报 <p>".repeat(20_000).into_bytes();
        let file = FeedFile::new(text.clone(), "x", DateTime::UNIX_EPOCH, 60, &links());
        let path = dir.path().join("rss.xml");
        let stamps =
            super::super::files::replace_all(dir.path(), &[("rss.xml".into(), &text)]).unwrap();
        let codings = file.codings.clone().unwrap();
        let cold = file.on_disk(codings.clone(), stamps[0]);
        assert!(!cold.holds_identity());
        assert_eq!((cold.len(), &cold.etag), (text.len(), &file.etag));
        // Known by its stamp: the bytes are not needed to find it.
        let fd = cold
            .disk
            .get(|| path.clone(), || -> &[u8] { unreachable!("stamped") })
            .expect("the file written");
        assert_eq!(read_fd(fd), text);
        assert!(!cold.holds_identity());
        assert_eq!(cold.bytes()[..], text[..], "restored from the gzip coding");
        assert!(cold.holds_identity());

        // The same bytes in another file at the path: not the file written.
        let other = file.on_disk(codings, stamps[0]);
        publish(dir.path(), "rss.xml", &text);
        assert!(other.disk.get(|| path.clone(), || &text).is_none());
        assert_eq!(other.bytes()[..], text[..]);
    }

    #[test]
    fn compressed_codings_never_take_the_identity_codings_files() {
        let dir = tempfile::tempdir().unwrap();
        let text = "朔州日报 <p>".repeat(5_000).into_bytes();
        let file = FeedFile::new(text.clone(), "x", DateTime::UNIX_EPOCH, 60, &links());
        let codings = file.codings.clone().unwrap();
        let identity = publish(dir.path(), "rss.xml", &text);
        let gzip = publish(dir.path(), "rss.xml.gz", &codings.gzip.bytes);
        assert!(std::ptr::eq(codings.brotli.disk.files, &COMPRESSED_FILES));
        let stamps =
            super::super::files::replace_all(dir.path(), &[("atom.xml".into(), &text)]).unwrap();
        let on_disk = file.on_disk(codings.clone(), stamps[0]);
        assert!(std::ptr::eq(on_disk.disk.files, &IDENTITY_FILES));

        // Every compressed coding's file taken (no other test in this process sends one).
        let taken: Vec<OpenSlot> = std::iter::from_fn(|| COMPRESSED_FILES.take()).collect();
        assert!(!taken.is_empty());
        let gzip_file = || {
            codings
                .gzip
                .disk
                .get(|| gzip.clone(), || &codings.gzip.bytes)
        };
        assert!(
            gzip_file().is_none(),
            "a compressed coding's file past the cap"
        );
        let fd = file.disk.get(|| identity.clone(), || &text);
        assert_eq!(read_fd(fd.expect("the identity coding's file opens")), text);
        drop(taken);
        // Not remembered as unusable: once one is free, the file opens.
        assert_eq!(read_fd(gzip_file().unwrap())[..], codings.gzip.bytes[..]);
    }

    /// Restored identity codings are held only within their budget; past it each call
    /// restores the bytes again, and nothing is held.
    #[test]
    fn restored_bytes_are_held_only_within_their_budget() {
        let dir = tempfile::tempdir().unwrap();
        let text = "朔州日报 <p>".repeat(5_000).into_bytes();
        let file = FeedFile::new(text.clone(), "x", DateTime::UNIX_EPOCH, 60, &links());
        let stamps =
            super::super::files::replace_all(dir.path(), &[("rss.xml".into(), &text)]).unwrap();
        let codings = file.codings.clone().unwrap();
        let over = file.on_disk(codings.clone(), stamps[0]);
        for _ in 0..2 {
            assert_eq!(over.restored_within(text.len() - 1)[..], text[..]);
            assert!(!over.holds_identity(), "over the budget");
        }
        let within = file.on_disk(codings, stamps[0]);
        assert_eq!(within.restored_within(usize::MAX)[..], text[..]);
        assert!(within.holds_identity());
        assert_eq!(within.held_bytes(), file.held_bytes());
    }

    fn links() -> Links {
        Links {
            self_url: "http://x/feeds/all/rss.xml".into(),
            hub_url: Some("http://x/websub".into()),
        }
    }
}
