//! QUIC variable-length integers (RFC 9000 §16) and the primitives moq-lite builds on them:
//! strings, optional integers (0 = none, else value + 1), millisecond durations, zigzag.

use bytes::BufMut;
use std::time::Duration;

use super::DecodeError;

/// Largest value a varint holds.
pub const MAX: u64 = (1 << 62) - 1;

pub fn size(v: u64) -> usize {
    match v {
        0..=63 => 1,
        64..=16383 => 2,
        16384..=1_073_741_823 => 4,
        _ => 8,
    }
}

/// Appends `v` (values above [`MAX`] are clamped).
pub fn encode<B: BufMut>(v: u64, buf: &mut B) {
    let v = v.min(MAX);
    match size(v) {
        1 => buf.put_u8(v as u8),
        2 => buf.put_u16(0x4000 | v as u16),
        4 => buf.put_u32(0x8000_0000 | v as u32),
        _ => buf.put_u64(0xc000_0000_0000_0000 | v),
    }
}

pub fn decode(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    let first = *buf.first().ok_or(DecodeError::Short)?;
    let len = 1usize << (first >> 6);
    if buf.len() < len {
        return Err(DecodeError::Short);
    }
    let mut v = u64::from(first & 0x3f);
    for b in &buf[1..len] {
        v = (v << 8) | u64::from(*b);
    }
    *buf = &buf[len..];
    Ok(v)
}

pub fn encode_zigzag<B: BufMut>(v: i64, buf: &mut B) {
    encode(((v << 1) ^ (v >> 63)) as u64, buf)
}

pub fn decode_zigzag(buf: &mut &[u8]) -> Result<i64, DecodeError> {
    let v = decode(buf)?;
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

pub fn decode_u8(buf: &mut &[u8]) -> Result<u8, DecodeError> {
    let (&b, rest) = buf.split_first().ok_or(DecodeError::Short)?;
    *buf = rest;
    Ok(b)
}

pub fn encode_bytes<B: BufMut>(v: &[u8], buf: &mut B) {
    encode(v.len() as u64, buf);
    buf.put_slice(v);
}

pub fn decode_bytes<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let len = decode(buf)?;
    if len > buf.len() as u64 {
        return Err(DecodeError::Short);
    }
    let (v, rest) = buf.split_at(len as usize);
    *buf = rest;
    Ok(v)
}

pub fn encode_string<B: BufMut>(v: &str, buf: &mut B) {
    encode_bytes(v.as_bytes(), buf)
}

pub fn decode_string(buf: &mut &[u8]) -> Result<String, DecodeError> {
    let bytes = decode_bytes(buf)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Invalid("string is not UTF-8"))
}

pub fn encode_option<B: BufMut>(v: Option<u64>, buf: &mut B) {
    encode(v.map_or(0, |v| v.saturating_add(1)), buf)
}

pub fn decode_option(buf: &mut &[u8]) -> Result<Option<u64>, DecodeError> {
    Ok(decode(buf)?.checked_sub(1))
}

pub fn encode_duration<B: BufMut>(v: Duration, buf: &mut B) {
    encode(u64::try_from(v.as_millis()).unwrap_or(MAX), buf)
}

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
            let mut slice = bytes;
            assert_eq!(decode(&mut slice).unwrap(), v);
        }
    }

    #[test]
    fn zigzag_small_values() {
        for (v, code) in [(0i64, 0u8), (-1, 1), (1, 2), (-2, 3)] {
            let mut buf = Vec::new();
            encode_zigzag(v, &mut buf);
            assert_eq!(buf, [code]);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn varints_round_trip(v in 0..=MAX) {
            let mut buf = Vec::new();
            encode(v, &mut buf);
            prop_assert_eq!(buf.len(), size(v));
            let mut slice = &buf[..];
            prop_assert_eq!(decode(&mut slice).unwrap(), v);
        }

        #[test]
        fn zigzag_round_trips(v in -(1i64 << 60)..(1i64 << 60)) {
            let mut buf = Vec::new();
            encode_zigzag(v, &mut buf);
            prop_assert_eq!(decode_zigzag(&mut &buf[..]).unwrap(), v);
        }
    }
}
