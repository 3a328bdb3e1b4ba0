//! HTTP/3 frames (RFC 9114 §7.1): a type varint, a length varint, the payload. Only the
//! framing: what a frame means is up to the stream it arrived on.

use bytes::BufMut;

use super::error::{Error, H3Error};
use super::varint;
use crate::wire::varint::encode;

pub const DATA: u64 = 0x00;
pub const HEADERS: u64 = 0x01;
pub const SETTINGS: u64 = 0x04;
pub const GOAWAY: u64 = 0x07;

/// One whole frame: its type and payload (borrowed from `buf`). Short until the whole payload
/// is there. A payload over `max_len` is H3Error::ExcessiveLoad (said as soon as the length is
/// read); frame types reserved from HTTP/2 (0x02, 0x06, 0x08, 0x09) are
/// H3Error::FrameUnexpected (RFC 9114 §7.2.8).
pub fn decode<'a>(buf: &mut &'a [u8], max_len: u64) -> Result<(u64, &'a [u8]), Error> {
    let mut rest = *buf;
    let ty = varint(&mut rest)?;
    if matches!(ty, 0x02 | 0x06 | 0x08 | 0x09) {
        return Err(Error::h3(H3Error::FrameUnexpected, "HTTP/2 frame type"));
    }
    let len = varint(&mut rest)?;
    if len > max_len {
        return Err(Error::h3(H3Error::ExcessiveLoad, "frame too long"));
    }
    let len = usize::try_from(len).map_err(|_| Error::Short)?;
    let (payload, rest) = rest.split_at_checked(len).ok_or(Error::Short)?;
    *buf = rest;
    Ok((ty, payload))
}

/// Appends a frame header: `len` payload bytes of type `ty` follow.
pub fn encode_header(ty: u64, len: u64, out: &mut impl BufMut) {
    encode(ty, out);
    encode(len, out);
}

/// GREASE frame/stream/setting ids: 0x1f * N + 0x21 (RFC 9114 §7.2.8, §6.2.3, §7.2.4.1).
pub fn is_grease(id: u64) -> bool {
    id >= 0x21 && (id - 0x21) % 0x1f == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webtransport::testing::check_decoder;
    use proptest::prelude::*;

    #[test]
    fn frames_decode_whole_and_leave_the_rest() {
        let bytes = [0x01, 0x03, 0xaa, 0xbb, 0xcc, 0x00, 0x00, 0x99];
        let mut buf = &bytes[..];
        assert_eq!(decode(&mut buf, 16), Ok((HEADERS, &bytes[2..5])));
        assert_eq!(decode(&mut buf, 16), Ok((DATA, &[][..])));
        assert_eq!(buf, [0x99]);
        for n in 0..5 {
            let mut part = &bytes[..n];
            assert_eq!(decode(&mut part, 16), Err(Error::Short), "{n} bytes");
            assert_eq!(part.len(), n);
        }
    }

    #[test]
    fn long_and_http2_frames_are_refused_early() {
        // Only the header is there: the length alone is enough to refuse.
        let mut buf = &[0x00, 0x40, 0x11][..];
        assert_eq!(
            decode(&mut buf, 0x10),
            Err(Error::h3(H3Error::ExcessiveLoad, "frame too long"))
        );
        assert_eq!(decode(&mut &[0x00, 0x10][..], 0x10), Err(Error::Short));
        for ty in [0x02, 0x06, 0x08, 0x09] {
            let err = decode(&mut &[ty][..], 16).unwrap_err();
            assert_eq!(
                err,
                Error::h3(H3Error::FrameUnexpected, "HTTP/2 frame type")
            );
        }
        // GREASE and unknown types are frames like any other.
        assert_eq!(
            decode(&mut &[0x21, 0x01, 0x07][..], 16),
            Ok((0x21, &[7][..]))
        );
    }

    #[test]
    fn headers_encode() {
        let mut out = Vec::new();
        encode_header(SETTINGS, 0x1c, &mut out);
        encode_header(0x2c7cf000, 300, &mut out);
        assert_eq!(out, [0x04, 0x1c, 0xac, 0x7c, 0xf0, 0x00, 0x41, 0x2c]);
    }

    #[test]
    fn grease_ids() {
        assert!(is_grease(0x21));
        assert!(is_grease(0x40));
        assert!(is_grease(0x1f * 7 + 0x21));
        assert!(is_grease(0x1f * 0x1_0000_0000 + 0x21));
        for id in [0, 0x20, 0x22, 0x3f, 0x41, 0x54] {
            assert!(!is_grease(id), "{id:#x}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64), max in 0u64..40) {
            let _ = check_decoder(&bytes, |b| decode(b, max).map(|(t, p)| (t, p.to_vec())));
        }

        #[test]
        fn frames_round_trip(ty in 0u64..1 << 62, payload in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assume!(!matches!(ty, 0x02 | 0x06 | 0x08 | 0x09));
            let mut out = Vec::new();
            encode_header(ty, payload.len() as u64, &mut out);
            out.extend_from_slice(&payload);
            let mut buf = &out[..];
            prop_assert_eq!(decode(&mut buf, 100), Ok((ty, &payload[..])));
            prop_assert!(buf.is_empty());
        }
    }
}
