//! QUIC variable-length integers (RFC 9000 §16) and the moq-lite primitives built on them:
//! zigzag integers, length-prefixed bytes and UTF-8 strings, broadcast paths, optional
//! integers (0 = none, else value + 1) and millisecond durations.

use std::time::Duration;

use bytes::BufMut;

use super::{DecodeError, MAX_MESSAGE_SIZE};

/// Largest value a varint holds.
pub const MAX: u64 = (1 << 62) - 1;

/// Longest encoding of one varint.
pub const MAX_SIZE: usize = 8;

/// Most `/`-separated parts in a broadcast path (moq-net's `Path::MAX_PARTS`).
pub const MAX_PATH_PARTS: usize = 32;

/// Zigzag values must lie in `-ZIGZAG_LIMIT..ZIGZAG_LIMIT` to fit a varint.
const ZIGZAG_LIMIT: i64 = 1 << 61;

/// Bytes the shortest encoding of `v` takes (values above [`MAX`] count as [`MAX`]).
pub fn size(v: u64) -> usize {
    match v {
        0..=0x3f => 1,
        0x40..=0x3fff => 2,
        0x4000..=0x3fff_ffff => 4,
        _ => 8,
    }
}

/// Appends the shortest encoding of `v`. A value above [`MAX`] is a caller bug: it asserts
/// in debug builds and is clamped to [`MAX`] in release.
pub fn encode<B: BufMut>(v: u64, buf: &mut B) {
    debug_assert!(v <= MAX, "varint {v} out of range");
    let v = v.min(MAX);
    match size(v) {
        1 => buf.put_u8(v as u8),
        2 => buf.put_u16(0x4000 | v as u16),
        4 => buf.put_u32(0x8000_0000 | v as u32),
        _ => buf.put_u64(0xc000_0000_0000_0000 | v),
    }
}

/// Bytes the varint whose first byte is `first` takes on the wire: its two high bits say,
/// whatever the value (a peer may write a small value in 2, 4 or 8 bytes, so this can be
/// more than [`size`] of the value).
pub fn encoded_len(first: u8) -> usize {
    1 << (first >> 6)
}

/// Reads one varint (any encoding length, as QUIC allows).
pub fn decode(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    let first = *buf.first().ok_or(DecodeError::Short)?;
    let (bytes, rest) = buf
        .split_at_checked(encoded_len(first))
        .ok_or(DecodeError::Short)?;
    let v = bytes
        .iter()
        .skip(1)
        .fold(u64::from(first & 0x3f), |v, b| (v << 8) | u64::from(*b));
    *buf = rest;
    Ok(v)
}

/// Appends `v` zigzag-mapped (0, -1, 1, -2 → 0, 1, 2, 3). `v` must lie in
/// `-2^61..2^61`; outside it asserts in debug builds and is clamped in release.
pub fn encode_zigzag<B: BufMut>(v: i64, buf: &mut B) {
    debug_assert!(
        (-ZIGZAG_LIMIT..ZIGZAG_LIMIT).contains(&v),
        "zigzag {v} out of range"
    );
    let v = v.clamp(-ZIGZAG_LIMIT, ZIGZAG_LIMIT - 1);
    encode(((v << 1) ^ (v >> 63)) as u64, buf)
}

/// Reads a zigzag-mapped varint; the result always lies in `-2^61..2^61`.
pub fn decode_zigzag(buf: &mut &[u8]) -> Result<i64, DecodeError> {
    let v = decode(buf)?;
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

/// Reads one raw byte.
pub fn decode_u8(buf: &mut &[u8]) -> Result<u8, DecodeError> {
    let (&b, rest) = buf.split_first().ok_or(DecodeError::Short)?;
    *buf = rest;
    Ok(b)
}

/// Reads a one-byte flag the way moq-net does: any non-zero value is true.
pub fn decode_flag(buf: &mut &[u8]) -> Result<bool, DecodeError> {
    Ok(decode_u8(buf)? != 0)
}

/// Appends `len | bytes`.
pub fn encode_bytes<B: BufMut>(v: &[u8], buf: &mut B) {
    encode(v.len() as u64, buf);
    buf.put_slice(v);
}

/// Reads `len | bytes`, borrowing them. A length above [`MAX_MESSAGE_SIZE`] is `TooLarge`.
pub fn decode_bytes<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let mut rest = *buf;
    let len = decode(&mut rest)?;
    if len > MAX_MESSAGE_SIZE as u64 {
        return Err(DecodeError::TooLarge);
    }
    let (v, rest) = rest
        .split_at_checked(len as usize)
        .ok_or(DecodeError::Short)?;
    *buf = rest;
    Ok(v)
}

/// Appends a length-prefixed UTF-8 string.
pub fn encode_string<B: BufMut>(v: &str, buf: &mut B) {
    encode_bytes(v.as_bytes(), buf)
}

/// Reads a length-prefixed string; invalid UTF-8 is `Invalid`.
pub fn decode_string(buf: &mut &[u8]) -> Result<String, DecodeError> {
    let mut rest = *buf;
    let bytes = decode_bytes(&mut rest)?;
    let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::Invalid("string is not UTF-8"))?;
    *buf = rest;
    Ok(s.to_owned())
}

/// A broadcast path as moq-net's `Path` holds it: no leading, trailing or repeated slashes.
pub fn normalize_path(path: &str) -> String {
    path.split('/')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

fn is_normalized(path: &str) -> bool {
    !path.starts_with('/') && !path.ends_with('/') && !path.contains("//")
}

/// Appends a broadcast path (a string on the wire), normalized first if needed. A path of
/// more than [`MAX_PATH_PARTS`] parts is still written; moq-net peers refuse it.
pub fn encode_path<B: BufMut>(path: &str, buf: &mut B) {
    if is_normalized(path) {
        encode_string(path, buf)
    } else {
        encode_string(&normalize_path(path), buf)
    }
}

/// Reads a broadcast path and normalizes it, as moq-net does; more than
/// [`MAX_PATH_PARTS`] parts is `Invalid`.
pub fn decode_path(buf: &mut &[u8]) -> Result<String, DecodeError> {
    let mut rest = *buf;
    let path = decode_string(&mut rest)?;
    let parts = path.split('/').filter(|part| !part.is_empty()).count();
    if parts > MAX_PATH_PARTS {
        return Err(DecodeError::Invalid("path has too many parts"));
    }
    *buf = rest;
    Ok(if is_normalized(&path) {
        path
    } else {
        normalize_path(&path)
    })
}

/// Appends an optional integer: 0 for none, else the value + 1 (capped so it still fits).
pub fn encode_option<B: BufMut>(v: Option<u64>, buf: &mut B) {
    encode(v.map_or(0, |v| v.min(MAX - 1) + 1), buf)
}

/// Reads an optional integer: 0 is none, else the value - 1.
pub fn decode_option(buf: &mut &[u8]) -> Result<Option<u64>, DecodeError> {
    Ok(decode(buf)?.checked_sub(1))
}

/// Appends a duration as whole milliseconds (saturating at [`MAX`]).
pub fn encode_duration<B: BufMut>(v: Duration, buf: &mut B) {
    encode(u64::try_from(v.as_millis()).unwrap_or(MAX).min(MAX), buf)
}

/// Reads a duration in milliseconds.
pub fn decode_duration(buf: &mut &[u8]) -> Result<Duration, DecodeError> {
    Ok(Duration::from_millis(decode(buf)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc9000_examples() {
        let cases: [(u64, &[u8]); 4] = [
            (
                151_288_809_941_952_652,
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
            ),
            (494_878_333, &[0x9d, 0x7f, 0x3e, 0x7d]),
            (15_293, &[0x7b, 0xbd]),
            (37, &[0x25]),
        ];
        for (v, bytes) in cases {
            let mut buf = Vec::new();
            encode(v, &mut buf);
            assert_eq!(buf, bytes);
            assert_eq!(size(v), bytes.len());
            let mut slice = bytes;
            assert_eq!(decode(&mut slice), Ok(v));
            assert!(slice.is_empty());
            for n in 0..bytes.len() {
                assert_eq!(decode(&mut &bytes[..n]), Err(DecodeError::Short));
            }
        }
        // Non-minimal encodings are legal.
        assert_eq!(decode(&mut &[0x40, 0x25][..]), Ok(37));
        assert_eq!(size(MAX), 8);
    }

    #[test]
    fn encoded_len_is_the_length_as_written() {
        for (bytes, v) in [
            (&[0x25][..], 37u64),
            (&[0x7b, 0xbd], 15_293),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c], 151_288_809_941_952_652),
        ] {
            assert_eq!(encoded_len(bytes[0]), bytes.len());
            assert_eq!(encoded_len(bytes[0]), size(v));
        }
        // Found by fuzzing: a frame size of 300 written in 4 bytes is 4 bytes long, not
        // size(300) = 2; the session took the difference for part of the timestamp.
        let wide = [0x80, 0x00, 0x01, 0x2c];
        assert_eq!(decode(&mut &wide[..]), Ok(300));
        assert_eq!(encoded_len(wide[0]), 4);
        assert_eq!(size(300), 2);
    }

    #[test]
    fn zigzag_golden() {
        for (v, code) in [(0i64, 0u8), (-1, 1), (1, 2), (-2, 3), (-10, 19)] {
            let mut buf = Vec::new();
            encode_zigzag(v, &mut buf);
            assert_eq!(buf, [code]);
            assert_eq!(decode_zigzag(&mut &buf[..]), Ok(v));
        }
        let mut buf = Vec::new();
        encode_zigzag(ZIGZAG_LIMIT - 1, &mut buf);
        encode_zigzag(-ZIGZAG_LIMIT, &mut buf);
        let mut slice = &buf[..];
        assert_eq!(decode(&mut slice), Ok(MAX - 1));
        assert_eq!(decode(&mut slice), Ok(MAX));
        assert_eq!(decode_zigzag(&mut &buf[8..]), Ok(-ZIGZAG_LIMIT));
    }

    #[test]
    fn primitives_golden() {
        let mut buf = Vec::new();
        encode_string("hé", &mut buf);
        encode_option(None, &mut buf);
        encode_option(Some(0), &mut buf);
        encode_duration(Duration::from_millis(5000), &mut buf);
        assert_eq!(buf, b"\x03h\xc3\xa9\x00\x01\x53\x88");
        let mut slice = &buf[..];
        assert_eq!(decode_string(&mut slice).unwrap(), "hé");
        assert_eq!(decode_option(&mut slice), Ok(None));
        assert_eq!(decode_option(&mut slice), Ok(Some(0)));
        assert_eq!(decode_duration(&mut slice), Ok(Duration::from_secs(5)));
        assert!(slice.is_empty());

        assert_eq!(
            decode_string(&mut &b"\x01\xff"[..]),
            Err(DecodeError::Invalid("string is not UTF-8"))
        );
        assert_eq!(
            decode_bytes(&mut &b"\x80\x01\x00\x01"[..]),
            Err(DecodeError::TooLarge)
        );
        assert_eq!(decode_bytes(&mut &b"\x03ab"[..]), Err(DecodeError::Short));
        assert_eq!(decode_flag(&mut &b"\x07"[..]), Ok(true));
    }

    #[test]
    fn paths_normalize_like_moq_net() {
        for (raw, norm) in [
            ("", ""),
            ("/", ""),
            ("/room/cam/", "room/cam"),
            ("room//cam", "room/cam"),
            ("a", "a"),
        ] {
            assert_eq!(normalize_path(raw), norm);
            let mut buf = Vec::new();
            encode_path(raw, &mut buf);
            let mut expect = Vec::new();
            encode_string(norm, &mut expect);
            assert_eq!(buf, expect);
            let mut raw_wire = Vec::new();
            encode_string(raw, &mut raw_wire);
            assert_eq!(decode_path(&mut &raw_wire[..]).unwrap(), norm);
        }
        let deep = vec!["x"; MAX_PATH_PARTS + 1].join("/");
        let mut buf = Vec::new();
        encode_string(&deep, &mut buf);
        assert!(matches!(
            decode_path(&mut &buf[..]),
            Err(DecodeError::Invalid(_))
        ));
        let ok = vec!["x"; MAX_PATH_PARTS].join("/");
        let mut buf = Vec::new();
        encode_string(&ok, &mut buf);
        assert_eq!(decode_path(&mut &buf[..]).unwrap(), ok);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn varints_round_trip(v in 0..=MAX) {
            let mut buf = Vec::new();
            encode(v, &mut buf);
            prop_assert_eq!(buf.len(), size(v));
            let mut slice = &buf[..];
            prop_assert_eq!(decode(&mut slice), Ok(v));
            prop_assert!(slice.is_empty());
        }

        #[test]
        fn zigzag_round_trips(v in -ZIGZAG_LIMIT..ZIGZAG_LIMIT) {
            let mut buf = Vec::new();
            encode_zigzag(v, &mut buf);
            prop_assert_eq!(decode_zigzag(&mut &buf[..]), Ok(v));
        }

        #[test]
        fn options_and_strings_round_trip(v in proptest::option::of(0..MAX), s in ".{0,40}", ms in 0..=MAX) {
            let mut buf = Vec::new();
            encode_option(v, &mut buf);
            encode_string(&s, &mut buf);
            encode_duration(Duration::from_millis(ms), &mut buf);
            let mut slice = &buf[..];
            prop_assert_eq!(decode_option(&mut slice), Ok(v));
            prop_assert_eq!(decode_string(&mut slice), Ok(s));
            prop_assert_eq!(decode_duration(&mut slice), Ok(Duration::from_millis(ms)));
            prop_assert!(slice.is_empty());
        }

        #[test]
        fn any_path_decodes_to_its_normal_form(s in "[a/]{0,40}") {
            let mut buf = Vec::new();
            encode_string(&s, &mut buf);
            prop_assert_eq!(decode_path(&mut &buf[..]), Ok(normalize_path(&s)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let decoders: [fn(&mut &[u8]) -> bool; 6] = [
                |b| decode(b).is_ok(),
                |b| decode_zigzag(b).is_ok(),
                |b| decode_string(b).is_ok(),
                |b| decode_path(b).is_ok(),
                |b| decode_option(b).is_ok(),
                |b| decode_duration(b).is_ok(),
            ];
            for decoder in decoders {
                let mut slice = &bytes[..];
                let ok = decoder(&mut slice);
                prop_assert!(ok || slice.len() == bytes.len(), "failed decodes do not advance");
            }
        }
    }
}
