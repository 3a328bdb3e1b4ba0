//! Capsules (RFC 9297 §3.2) on a WebTransport CONNECT stream, carried in DATA frames:
//! CLOSE_WEBTRANSPORT_SESSION and DRAIN_WEBTRANSPORT_SESSION (draft-ietf-webtrans-http3
//! §5); every other type is skipped.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{Error, H3Error};
use super::{frame, varint, MAX_FRAME};
use crate::wire::varint::{encode, size};

pub const CLOSE_SESSION: u64 = 0x2843;
pub const DRAIN_SESSION: u64 = 0x78ae;

/// Longest close reason (draft: 1024 bytes); longer is H3Error::Message.
pub const MAX_REASON: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capsule {
    /// The peer closes the session with an application error code and a reason.
    Close { code: u32, reason: String },
    /// The peer asks us to wind the session down.
    Drain,
    /// Another (unknown, GREASE) capsule type; its value was skipped.
    Other(u64),
}

/// One capsule (type varint, length varint, value). Short until whole. Unknown/GREASE types ->
/// Other (value skipped); a value longer than MAX_FRAME -> H3Error::ExcessiveLoad (said as
/// soon as the length is read); CLOSE shorter than 4 bytes or a reason over MAX_REASON ->
/// H3Error::Message; invalid UTF-8 in a reason is replaced (lossy), not an error.
pub fn decode(buf: &mut &[u8]) -> Result<Capsule, Error> {
    let mut rest = *buf;
    let ty = varint(&mut rest)?;
    let len = varint(&mut rest)?;
    if len > MAX_FRAME {
        return Err(Error::h3(H3Error::ExcessiveLoad, "capsule too long"));
    }
    let (value, rest) = rest.split_at_checked(len as usize).ok_or(Error::Short)?;
    let capsule = match ty {
        CLOSE_SESSION => {
            let (code, reason) = value.split_first_chunk::<4>().ok_or(Error::h3(
                H3Error::Message,
                "CLOSE capsule shorter than its code",
            ))?;
            if reason.len() > MAX_REASON {
                return Err(Error::h3(H3Error::Message, "close reason too long"));
            }
            Capsule::Close {
                code: u32::from_be_bytes(*code),
                reason: String::from_utf8_lossy(reason).into_owned(),
            }
        }
        DRAIN_SESSION => Capsule::Drain,
        other => Capsule::Other(other),
    };
    *buf = rest;
    Ok(capsule)
}

/// A DATA frame carrying one CLOSE_WEBTRANSPORT_SESSION capsule, ready to write on the CONNECT
/// stream; `reason` is truncated to MAX_REASON bytes at a char boundary.
pub fn close_frame(code: u32, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason[..end];
    let mut value = BytesMut::with_capacity(4 + reason.len());
    value.put_u32(code);
    value.put_slice(reason.as_bytes());
    data_frame(CLOSE_SESSION, &value)
}

/// A DATA frame carrying one DRAIN_WEBTRANSPORT_SESSION capsule.
pub fn drain_frame() -> Bytes {
    data_frame(DRAIN_SESSION, &[])
}

fn data_frame(ty: u64, value: &[u8]) -> Bytes {
    let capsule_len = size(ty) + size(value.len() as u64) + value.len();
    let mut out = BytesMut::with_capacity(capsule_len + 4);
    frame::encode_header(frame::DATA, capsule_len as u64, &mut out);
    encode(ty, &mut out);
    encode(value.len() as u64, &mut out);
    out.put_slice(value);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webtransport::testing::check_decoder;
    use proptest::prelude::*;

    /// The capsule inside a DATA frame from `close_frame` / `drain_frame`.
    fn unwrap_data(frame_bytes: &[u8]) -> &[u8] {
        let mut buf = frame_bytes;
        let (ty, payload) = frame::decode(&mut buf, MAX_FRAME).unwrap();
        assert_eq!(ty, frame::DATA);
        assert!(buf.is_empty());
        payload
    }

    #[test]
    fn close_round_trip() {
        let bytes = close_frame(0x1234_5678, "bye");
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0x00, 0x0a, // DATA, 10 bytes
            0x68, 0x43, 0x07, // CLOSE_WEBTRANSPORT_SESSION, 7 bytes
            0x12, 0x34, 0x56, 0x78, b'b', b'y', b'e',
        ];
        assert_eq!(&bytes[..], expected);
        let (got, used) = check_decoder(unwrap_data(&bytes), decode);
        assert_eq!(used, 10);
        let close = Capsule::Close {
            code: 0x1234_5678,
            reason: "bye".into(),
        };
        assert_eq!(got, Ok(close));
    }

    #[test]
    fn drain() {
        let bytes = drain_frame();
        assert_eq!(&bytes[..], [0x00, 0x05, 0x80, 0x00, 0x78, 0xae, 0x00]);
        assert_eq!(decode(&mut unwrap_data(&bytes)), Ok(Capsule::Drain));
    }

    #[test]
    fn long_reasons_are_cut_at_a_char_boundary() {
        // 1023 ASCII bytes then a 2-byte char straddling the limit: it goes whole.
        let reason = format!("{}é and more", "a".repeat(1023));
        let frame_bytes = close_frame(7, &reason);
        let Ok(Capsule::Close { code, reason: got }) = decode(&mut unwrap_data(&frame_bytes))
        else {
            panic!("not a close");
        };
        assert_eq!(code, 7);
        assert_eq!(got, "a".repeat(1023));
        let exact = "b".repeat(MAX_REASON);
        let frame_bytes = close_frame(7, &exact);
        let close = Capsule::Close {
            code: 7,
            reason: exact,
        };
        assert_eq!(decode(&mut unwrap_data(&frame_bytes)), Ok(close));
    }

    #[test]
    fn unknown_and_grease_capsules_are_skipped() {
        // A GREASE capsule (0x1f * 3 + 0x21 = 0x7e), an unknown one, then a CLOSE.
        let bytes = [
            0x40, 0x7e, 0x02, 0xde, 0xad, 0x3a, 0x00, 0x68, 0x43, 0x05, 0, 0, 0, 9, 0xff,
        ];
        let mut buf = &bytes[..];
        assert_eq!(decode(&mut buf), Ok(Capsule::Other(0x7e)));
        assert_eq!(decode(&mut buf), Ok(Capsule::Other(0x3a)));
        let close = Capsule::Close {
            code: 9,
            reason: "\u{fffd}".into(),
        };
        assert_eq!(decode(&mut buf), Ok(close));
        assert!(buf.is_empty());
    }

    #[test]
    fn split_capsule_is_short_then_whole() {
        let bytes = close_frame(3, "split here");
        let capsule = unwrap_data(&bytes);
        for at in 0..capsule.len() {
            let mut first = &capsule[..at];
            assert_eq!(decode(&mut first), Err(Error::Short), "at {at}");
            assert_eq!(first.len(), at);
        }
        let close = Capsule::Close {
            code: 3,
            reason: "split here".into(),
        };
        assert_eq!(decode(&mut &capsule[..]), Ok(close));
    }

    #[test]
    fn refused_capsules() {
        // A length over MAX_FRAME is refused from the header alone.
        let mut header = Vec::new();
        encode(CLOSE_SESSION, &mut header);
        encode(MAX_FRAME + 1, &mut header);
        let too_long = Err(Error::h3(H3Error::ExcessiveLoad, "capsule too long"));
        assert_eq!(decode(&mut &header[..]), too_long);
        let short = Err(Error::h3(
            H3Error::Message,
            "CLOSE capsule shorter than its code",
        ));
        assert_eq!(decode(&mut &[0x68, 0x43, 0x03, 0, 0, 0][..]), short);
        let mut long = Vec::new();
        encode(CLOSE_SESSION, &mut long);
        encode(4 + MAX_REASON as u64 + 1, &mut long);
        long.extend_from_slice(&[0, 0, 0, 0]);
        long.extend_from_slice(&[b'x'; MAX_REASON + 1]);
        let long_reason = Err(Error::h3(H3Error::Message, "close reason too long"));
        assert_eq!(decode(&mut &long[..]), long_reason);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = check_decoder(&bytes, decode);
        }

        #[test]
        fn closes_round_trip(code: u32, reason in ".{0,40}") {
            let bytes = close_frame(code, &reason);
            prop_assert_eq!(decode(&mut unwrap_data(&bytes)), Ok(Capsule::Close { code, reason }));
        }
    }
}
