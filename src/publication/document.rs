//! A published feed document: its bytes in every content coding, with strong validators.

use axum::body::Bytes;
use axum::http::HeaderValue;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::io::Write;

/// One content coding of a document: its bytes and their strong ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub bytes: Bytes,
    /// Strong entity tag, quoted; distinct for every coding of the same document.
    pub etag: String,
    /// `etag`, ready to send.
    pub etag_header: HeaderValue,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedFile {
    /// The document itself (identity coding).
    pub bytes: Bytes,
    /// Strong entity tag of `bytes`, quoted: changes exactly when the bytes change.
    pub etag: String,
    /// `bytes` compressed with gzip.
    pub gzip: Encoded,
    /// `bytes` compressed with brotli.
    pub brotli: Encoded,
    /// When the feed's content last changed, to the second.
    pub last_modified: DateTime<Utc>,
    /// Media type with charset.
    pub content_type: &'static str,
    /// How long clients and caches may reuse it, in seconds.
    pub max_age: u32,
    /// The headers of every response for it.
    pub headers: ResponseHeaders,
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
        let (gzip, brotli) = (gzip(&bytes), brotli(&bytes));
        Self::with_codings(
            bytes,
            gzip,
            brotli,
            content_type,
            last_modified,
            max_age,
            links,
        )
    }

    /// The document from its bytes and their compressions (made by [`gzip`] and
    /// [`brotli`], perhaps on other threads), with every validator and header.
    pub(super) fn with_codings(
        bytes: Vec<u8>,
        gzip: Vec<u8>,
        brotli: Vec<u8>,
        content_type: &'static str,
        last_modified: DateTime<Utc>,
        max_age: u32,
        links: &Links,
    ) -> Self {
        let tag = hex::encode(&Sha256::digest(&bytes)[..16]);
        let encoded = |bytes: Vec<u8>, etag: String| Encoded {
            bytes: bytes.into(),
            etag_header: header(&etag),
            etag,
        };
        let etag = format!("\"{tag}\"");
        Self {
            gzip: encoded(gzip, format!("\"{tag}-gz\"")),
            brotli: encoded(brotli, format!("\"{tag}-br\"")),
            headers: ResponseHeaders::new(content_type, &etag, last_modified, max_age, links),
            etag,
            bytes: bytes.into(),
            last_modified,
            content_type,
            max_age,
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

    /// The files that represent this document on disk: `(suffix, bytes)`.
    pub fn files(&self) -> [(&'static str, &Bytes); 3] {
        [
            ("", &self.bytes),
            (GZIP_SUFFIX, &self.gzip.bytes),
            (BROTLI_SUFFIX, &self.brotli.bytes),
        ]
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

/// A header value from text feedpub made itself (ASCII URLs, dates, hex tags).
fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// IMF-fixdate, e.g. `Wed, 07 Jun 2023 00:00:00 GMT`.
pub fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// `bytes` compressed with gzip, level 6.
pub(super) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 3 + 64),
        // Level 6 (zlib's default): within a few percent of level 9's size at half the time;
        // compression is on the path from a publish to the feed being served.
        flate2::Compression::default(),
    );
    encoder
        .write_all(bytes)
        .expect("compressing into memory cannot fail");
    encoder
        .finish()
        .expect("compressing into memory cannot fail")
}

/// `bytes` compressed with brotli. Quality 5 compresses feeds close to quality 9 in a
/// fraction of the time (it is paid on every regeneration, on the way from a publish to the
/// feed being served).
pub(super) fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() / 3 + 64);
    {
        let mut writer =
            brotli::CompressorWriter::new(&mut out, 4096, 5, brotli_window(bytes.len()));
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
        flate2::read::GzDecoder::new(&file.gzip.bytes[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, text);
        let mut unbrotlied = Vec::new();
        brotli::Decompressor::new(&file.brotli.bytes[..], 4096)
            .read_to_end(&mut unbrotlied)
            .unwrap();
        assert_eq!(unbrotlied, text);
        let tags = [&file.etag, &file.gzip.etag, &file.brotli.etag];
        assert_eq!(
            tags.iter().collect::<std::collections::HashSet<_>>().len(),
            3
        );
        assert!(file.gzip.bytes.len() < text.len() / 4);
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

    fn links() -> Links {
        Links {
            self_url: "http://x/feeds/all/rss.xml".into(),
            hub_url: "http://x/websub".into(),
        }
    }
}
