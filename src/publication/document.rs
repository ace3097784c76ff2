//! A published feed document: its bytes in every content coding, with strong validators.

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::io::Write;

/// One content coding of a document: its bytes and their strong ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub bytes: Bytes,
    /// Strong entity tag, quoted; distinct for every coding of the same document.
    pub etag: String,
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
}

/// File-name suffixes of the precompressed siblings written beside each feed.
pub const GZIP_SUFFIX: &str = ".gz";
pub const BROTLI_SUFFIX: &str = ".br";

impl FeedFile {
    /// Compresses `bytes` both ways and computes every validator.
    pub fn new(
        bytes: Vec<u8>,
        content_type: &'static str,
        last_modified: DateTime<Utc>,
        max_age: u32,
    ) -> Self {
        let tag = hex::encode(&Sha256::digest(&bytes)[..16]);
        let gzip = gzip(&bytes);
        let brotli = brotli(&bytes);
        Self {
            etag: format!("\"{tag}\""),
            gzip: Encoded {
                bytes: gzip.into(),
                etag: format!("\"{tag}-gz\""),
            },
            brotli: Encoded {
                bytes: brotli.into(),
                etag: format!("\"{tag}-br\""),
            },
            bytes: bytes.into(),
            last_modified,
            content_type,
            max_age,
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

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 3 + 64),
        flate2::Compression::best(),
    );
    encoder
        .write_all(bytes)
        .expect("compressing into memory cannot fail");
    encoder
        .finish()
        .expect("compressing into memory cannot fail")
}

/// Quality 9 compresses feeds within a few percent of quality 11 at a fraction of the time.
fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() / 3 + 64);
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
        writer
            .write_all(bytes)
            .expect("compressing into memory cannot fail");
    }
    out
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
        let a = FeedFile::new(b"<rss/>".to_vec(), "x", DateTime::UNIX_EPOCH, 60);
        let b = FeedFile::new(b"<rss/>".to_vec(), "x", DateTime::UNIX_EPOCH, 60);
        assert_eq!(a, b);
    }
}
