//! The bytes of HTTP/2 frames and HPACK header blocks (RFC 9113, RFC 7541; no Huffman
//! coding), written by hand: by the load generator, and by the tests that send a server
//! what no client library would (`tests/hostile_network/frames.rs` includes this file).

/// What a client sends first.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types.
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

/// Frame flags.
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY: u8 = 0x20;

/// Settings.
pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

/// What a peer assumes until the other's SETTINGS say otherwise (RFC 9113, 6.5.2; RFC
/// 7541, 4.2): a window of 65,535 bytes, frames of 16,384, a header table of 4,096.
pub const DEFAULT_WINDOW: u32 = 65_535;
pub const DEFAULT_MAX_FRAME: usize = 16_384;
pub const DEFAULT_TABLE_SIZE: usize = 4_096;

/// A frame's 9-byte header, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The payload's length.
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

/// The header of the frame `bytes` starts with, if they hold one.
pub fn read_frame_header(bytes: &[u8]) -> Option<FrameHeader> {
    let h = bytes.get(..9)?;
    Some(FrameHeader {
        len: u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize,
        kind: h[3],
        flags: h[4],
        stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
    })
}

/// The big-endian 32-bit word at `at` in a payload, if it has one.
pub fn read_u32(payload: &[u8], at: usize) -> Option<u32> {
    let w = payload.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
}

/// Appends a frame's 9-byte header.
pub fn frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = u32::try_from(len).expect("a frame's length fits");
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
}

/// Appends an HPACK integer with a `prefix`-bit prefix, the first byte's high bits `high`
/// (RFC 7541, 5.1).
pub fn hpack_int(out: &mut Vec<u8>, high: u8, prefix: u32, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// Appends an HPACK string literal, not Huffman-coded.
pub fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// Appends an indexed field (RFC 7541, 6.1): entry `index` of the static or dynamic table.
pub fn hpack_indexed(out: &mut Vec<u8>, index: usize) {
    hpack_int(out, 0x80, 7, index);
}

/// Appends a literal field (RFC 7541, 6.2), added to the peer's table when `indexing`
/// (6.2.1) or not (6.2.2); its name is entry `name_index` of the table, or `name` when that
/// is 0.
pub fn hpack_literal(
    out: &mut Vec<u8>,
    indexing: bool,
    name_index: usize,
    name: &[u8],
    value: &[u8],
) {
    let (high, prefix) = if indexing { (0x40, 6) } else { (0x00, 4) };
    hpack_int(out, high, prefix, name_index);
    if name_index == 0 {
        hpack_string(out, name);
    }
    hpack_string(out, value);
}
