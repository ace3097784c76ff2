//! Raw HTTP/2 frames and HPACK blocks, written by hand so that an attack can send what no
//! well-behaved client library would (RFC 9113, RFC 7541; no Huffman coding).

use bytes::{Buf, BytesMut};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;

// Frame types, flags and the writing of frame headers and HPACK fields: the load
// generator's, one file for both.
#[allow(dead_code)]
#[path = "../../src/bin/feedpub-bench/http2.rs"]
mod http2;
pub use http2::{
    CONTINUATION, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PREFACE, RST_STREAM, SETTINGS,
    WINDOW_UPDATE,
};
use http2::{frame_header, hpack_indexed, hpack_literal, read_frame_header, read_u32};

/// RST_STREAM and GOAWAY codes.
pub const CANCEL: u32 = 0x8;

/// One frame: 9-byte header and payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + payload.len());
    frame_header(&mut out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
    out
}

/// The client preface and an empty SETTINGS frame.
pub fn client_start() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out
}

pub fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

pub fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

/// Indexed header field (static or dynamic table).
pub fn indexed(out: &mut Vec<u8>, index: usize) {
    hpack_indexed(out, index);
}

/// Literal field without indexing, name by static index.
pub fn literal_named(out: &mut Vec<u8>, index: usize, value: &[u8]) {
    hpack_literal(out, false, index, b"", value);
}

/// Literal field without indexing, new name.
pub fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    hpack_literal(out, false, 0, name, value);
}

/// Literal field with incremental indexing (added to the dynamic table), new name.
pub fn literal_indexing(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    hpack_literal(out, true, 0, name, value);
}

/// The header block of a gRPC call to `path`: `:method POST`, `:scheme http`, `:path`,
/// `:authority`, `content-type: application/grpc`, `te: trailers`.
pub fn grpc_request(path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    indexed(&mut out, 3); // :method POST
    indexed(&mut out, 6); // :scheme http
    literal_named(&mut out, 4, path.as_bytes());
    literal_named(&mut out, 1, b"localhost");
    literal_named(&mut out, 31, b"application/grpc");
    literal(&mut out, b"te", b"trailers");
    out
}

/// What the server did on one attacking connection, read until it closed or went quiet.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// The GOAWAY's error code and last stream id.
    pub goaway: Option<(u32, u32)>,
    pub resets: usize,
    pub headers: usize,
    /// The server closed the connection (end of stream or reset).
    pub closed: bool,
}

/// Reads frames until the server closes the connection, or nothing comes for `quiet`.
pub async fn read_until_closed(mut read: OwnedReadHalf, quiet: Duration) -> Seen {
    let mut seen = Seen::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        while let Some(h) = read_frame_header(&buf) {
            if buf.len() < 9 + h.len {
                break;
            }
            let payload = &buf[9..9 + h.len];
            match h.kind {
                GOAWAY => {
                    if let (Some(last), Some(code)) = (read_u32(payload, 0), read_u32(payload, 4)) {
                        seen.goaway = Some((code, last & 0x7fff_ffff));
                    }
                }
                RST_STREAM => seen.resets += 1,
                HEADERS => seen.headers += 1,
                _ => {}
            }
            buf.advance(9 + h.len);
        }
        match tokio::time::timeout(quiet, read.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                seen.closed = true;
                return seen;
            }
            Ok(Ok(_)) => {}
            Err(_) => return seen,
        }
    }
}
