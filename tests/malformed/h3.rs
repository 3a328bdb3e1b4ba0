//! HTTP/3 and WebTransport bytes for the matrix, written here by hand from RFC 9114,
//! RFC 9204 (QPACK, static table only) and draft-ietf-webtrans-http3, independently of
//! the relay's own codec: a client control stream, an Extended CONNECT, the stream
//! prefixes, the CLOSE_WEBTRANSPORT_SESSION capsule, and the stream error code mapping.

use moqring::wire::varint;

/// H3_NO_ERROR: how the relay closes a connection after a WebTransport session ended.
pub const NO_ERROR: u64 = 0x100;

pub const HEADERS: u64 = 0x01;
const DATA: u64 = 0x00;
const SETTINGS: u64 = 0x04;
const CLOSE_SESSION: u64 = 0x2843;

/// The WebTransport code range of RESET_STREAM / STOP_SENDING (draft-ietf-webtrans-http3 §4.4).
const FIRST: u64 = 0x52e4_a40f_a8db;
const LAST: u64 = 0x52e5_ac98_3162;

fn put(v: u64, out: &mut Vec<u8>) {
    varint::encode(v, out);
}

/// A frame: type, length, payload.
pub fn frame(ty: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put(ty, &mut out);
    put(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

/// The control stream's type (0x00) and a SETTINGS frame of `settings`.
pub fn control_stream(settings: &[(u64, u64)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for &(id, value) in settings {
        put(id, &mut payload);
        put(value, &mut payload);
    }
    [vec![0x00], frame(SETTINGS, &payload)].concat()
}

/// What a WebTransport client sends first: H3_DATAGRAM=1 and ENABLE_WEBTRANSPORT (draft 02)=1.
pub fn client_control_stream() -> Vec<u8> {
    control_stream(&[(0x33, 1), (0x2b60_3742, 1)])
}

/// A QPACK prefixed integer: `flags` in the bits above an `n`-bit prefix (RFC 9204 §4.1.1).
fn qpack_int(flags: u8, n: u32, v: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = v - max;
    while rest >= 128 {
        out.push(0x80 | (rest % 128) as u8);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A literal field line with a literal name, no Huffman (RFC 9204 §4.5.6).
fn literal(name: &str, value: &str, out: &mut Vec<u8>) {
    qpack_int(0x20, 3, name.len(), out);
    out.extend_from_slice(name.as_bytes());
    qpack_int(0x00, 7, value.len(), out);
    out.extend_from_slice(value.as_bytes());
}

/// The HEADERS frame of an Extended CONNECT to `path` at `localhost` offering `protocol`.
pub fn connect_request(path: &str, protocol: &str) -> Vec<u8> {
    // Required Insert Count 0, Base 0; static :method CONNECT (15), :scheme https (23).
    let mut block = vec![0x00, 0x00, 0xc0 | 15, 0xc0 | 23];
    // :authority by static name reference (0), with a literal value.
    block.push(0x50);
    qpack_int(0x00, 7, "localhost".len(), &mut block);
    block.extend_from_slice(b"localhost");
    literal(":path", path, &mut block);
    literal(":protocol", "webtransport", &mut block);
    literal(
        "wt-available-protocols",
        &format!("\"{protocol}\""),
        &mut block,
    );
    frame(HEADERS, &block)
}

/// Whether `bytes` open with a whole HEADERS frame whose first field line is the static
/// `:status 200` (RFC 9204 Appendix A, index 25).
pub fn is_ok_response(bytes: &[u8]) -> bool {
    next_frame(bytes)
        .is_some_and(|(ty, payload, _)| ty == HEADERS && payload.get(2) == Some(&(0xc0 | 25)))
}

fn next_frame(bytes: &[u8]) -> Option<(u64, &[u8], &[u8])> {
    let mut rest = bytes;
    let ty = varint::decode(&mut rest).ok()?;
    let len = varint::decode(&mut rest).ok()? as usize;
    let (payload, rest) = rest.split_at_checked(len)?;
    Some((ty, payload, rest))
}

/// The code of a CLOSE_WEBTRANSPORT_SESSION capsule in the DATA frames of `bytes` (the
/// CONNECT stream as received), if one arrived whole.
pub fn close_capsule(bytes: &[u8]) -> Option<u64> {
    let mut rest = bytes;
    while let Some((ty, payload, tail)) = next_frame(rest) {
        rest = tail;
        if ty != DATA {
            continue;
        }
        let mut capsule = payload;
        let kind = varint::decode(&mut capsule).ok()?;
        let len = varint::decode(&mut capsule).ok()? as usize;
        if kind == CLOSE_SESSION && len >= 4 && capsule.len() >= 4 {
            return Some(u64::from(u32::from_be_bytes(capsule[..4].try_into().ok()?)));
        }
    }
    None
}

/// The moq-lite code a WebTransport stream error code carries, if it is in the range.
pub fn moq_code(code: u64) -> Option<u64> {
    if !(FIRST..=LAST).contains(&code) || (code >= 0x21 && (code - 0x21).is_multiple_of(0x1f)) {
        return None;
    }
    let n = code - FIRST;
    Some(n - n / 0x1f)
}

/// A WebTransport bidi stream's prefix: the signal value 0x41 and the session id.
pub fn bidi_prefix(session: u64) -> Vec<u8> {
    let mut out = vec![0x40, 0x41];
    put(session, &mut out);
    out
}

/// A WebTransport uni stream's prefix: the stream type 0x54 and the session id.
pub fn uni_prefix(session: u64) -> Vec<u8> {
    let mut out = vec![0x40, 0x54];
    put(session, &mut out);
    out
}
