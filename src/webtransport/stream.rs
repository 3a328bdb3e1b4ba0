//! The first bytes of an HTTP/3 stream: a peer uni stream's type (RFC 9114 §6.2), the
//! WebTransport signal values with their session id (draft-ietf-webtrans-http3 §4.2, §4.3),
//! and the prefixes we write on streams we open in a session.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::Error;
use super::varint;
use crate::wire::varint::{encode, size};

pub const UNI_CONTROL: u64 = 0x00;
pub const UNI_PUSH: u64 = 0x01;
pub const UNI_QPACK_ENCODER: u64 = 0x02;
pub const UNI_QPACK_DECODER: u64 = 0x03;
pub const UNI_WEBTRANSPORT: u64 = 0x54;
pub const BIDI_WEBTRANSPORT: u64 = 0x41;

/// What a peer's uni stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniStream {
    Control,
    QpackEncoder,
    QpackDecoder,
    /// A WebTransport stream of the session whose CONNECT stream id is `session`; the rest of
    /// the stream is the application's.
    WebTransport {
        session: u64,
    },
    /// Push (0x01), GREASE or unknown: to be refused with STOP_SENDING (or read and dropped).
    Other(u64),
}

/// Reads a peer uni stream's type (and for 0x54 the session id). Short until complete.
pub fn decode_uni(buf: &mut &[u8]) -> Result<UniStream, Error> {
    let mut rest = *buf;
    let stream = match varint(&mut rest)? {
        UNI_CONTROL => UniStream::Control,
        UNI_QPACK_ENCODER => UniStream::QpackEncoder,
        UNI_QPACK_DECODER => UniStream::QpackDecoder,
        UNI_WEBTRANSPORT => UniStream::WebTransport {
            session: varint(&mut rest)?,
        },
        other => UniStream::Other(other),
    };
    *buf = rest;
    Ok(stream)
}

/// What a peer's bidi stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BidiStream {
    /// A WebTransport stream of session `session`; the rest of the stream is the application's.
    WebTransport { session: u64 },
    /// An HTTP/3 request stream: frames start at the first byte.
    Request,
}

/// Peeks a peer bidi stream's first varint: 0x41 -> consumes it and the session id;
/// anything else -> `Request`, consuming nothing (the HTTP/3 frames start there).
pub fn decode_bidi(buf: &mut &[u8]) -> Result<BidiStream, Error> {
    let mut rest = *buf;
    if varint(&mut rest)? != BIDI_WEBTRANSPORT {
        return Ok(BidiStream::Request);
    }
    let session = varint(&mut rest)?;
    *buf = rest;
    Ok(BidiStream::WebTransport { session })
}

/// The bytes we write first on a uni stream we open in session `session`: 0x54 (as the
/// two-byte varint 0x40 0x54, as Chromium and moq-dev write it) + varint(session).
pub fn uni_prefix(session: u64) -> Bytes {
    prefix(UNI_WEBTRANSPORT, session)
}

/// Likewise for a bidi stream: 0x40 0x41 + varint(session).
pub fn bidi_prefix(session: u64) -> Bytes {
    prefix(BIDI_WEBTRANSPORT, session)
}

fn prefix(signal: u64, session: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(2 + size(session));
    out.put_u16(0x4000 | signal as u16);
    encode(session, &mut out);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webtransport::testing::check_decoder;
    use proptest::prelude::*;

    #[test]
    fn prefixes() {
        assert_eq!(&uni_prefix(0)[..], [0x40, 0x54, 0x00]);
        assert_eq!(&bidi_prefix(0)[..], [0x40, 0x41, 0x00]);
        assert_eq!(&uni_prefix(4)[..], [0x40, 0x54, 0x04]);
        assert_eq!(&bidi_prefix(0x100)[..], [0x40, 0x41, 0x41, 0x00]);
    }

    #[test]
    fn uni_types() {
        let cases: [(&[u8], UniStream); 7] = [
            (&[0x00], UniStream::Control),
            (&[0x02], UniStream::QpackEncoder),
            (&[0x03], UniStream::QpackDecoder),
            (&[0x01], UniStream::Other(UNI_PUSH)),
            (&[0x40, 0x21], UniStream::Other(0x21)),
            (&[0x40, 0x00], UniStream::Control),
            (&[0x80, 0x00, 0x00, 0x03], UniStream::QpackDecoder),
        ];
        for (bytes, expected) in cases {
            let mut buf = bytes;
            assert_eq!(decode_uni(&mut buf), Ok(expected), "{bytes:x?}");
            assert!(buf.is_empty());
        }
    }

    /// Every split point of `bytes` followed by moq bytes: Short before `at`, then `expected`,
    /// leaving exactly the moq bytes.
    fn split_everywhere<T: PartialEq + std::fmt::Debug>(
        prefix: &[u8],
        expected: T,
        decode: impl Fn(&mut &[u8]) -> Result<T, Error>,
    ) {
        let mut stream = prefix.to_vec();
        stream.extend_from_slice(b"\x05moq!");
        for n in 0..prefix.len() {
            let mut part = &stream[..n];
            assert_eq!(decode(&mut part), Err(Error::Short), "{prefix:x?} at {n}");
            assert_eq!(part.len(), n);
        }
        for n in prefix.len()..=stream.len() {
            let mut buf = &stream[..n];
            assert_eq!(decode(&mut buf).as_ref(), Ok(&expected));
            assert_eq!(buf, &stream[prefix.len()..n]);
        }
    }

    #[test]
    fn webtransport_streams_split_across_packets() {
        let session = UniStream::WebTransport { session: 0x1234 };
        // 0x54 and 0x41 are above 0x3f: their shortest varint is two bytes (Chromium, moq-dev);
        // a peer may also spend four. Session ids in one, two and four bytes.
        split_everywhere(&[0x40, 0x54, 0x52, 0x34], session, decode_uni);
        split_everywhere(&[0x80, 0x00, 0x00, 0x54, 0x52, 0x34], session, decode_uni);
        let bidi = BidiStream::WebTransport { session: 0 };
        split_everywhere(&[0x40, 0x41, 0x00], bidi, decode_bidi);
        split_everywhere(&[0x80, 0x00, 0x00, 0x41, 0x40, 0x00], bidi, decode_bidi);
    }

    #[test]
    fn requests_consume_nothing() {
        // HEADERS, GREASE frame, a bare 0x41 byte (= two-byte varint 0x0100): HTTP/3 frames.
        for bytes in [&[0x01, 0x10][..], &[0x40, 0x21, 0x00], &[0x41, 0x00]] {
            let mut buf = bytes;
            assert_eq!(decode_bidi(&mut buf), Ok(BidiStream::Request));
            assert_eq!(buf, bytes);
        }
        assert_eq!(decode_bidi(&mut &[0x40][..]), Err(Error::Short));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            let _ = check_decoder(&bytes, decode_uni);
            let _ = check_decoder(&bytes, decode_bidi);
        }

        #[test]
        fn prefixes_round_trip(session in 0u64..1 << 62, tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut uni = uni_prefix(session).to_vec();
            uni.extend_from_slice(&tail);
            let (got, used) = check_decoder(&uni, decode_uni);
            prop_assert_eq!(got, Ok(UniStream::WebTransport { session }));
            prop_assert_eq!(used, uni.len() - tail.len());
            let mut bidi = bidi_prefix(session).to_vec();
            bidi.extend_from_slice(&tail);
            let (got, used) = check_decoder(&bidi, decode_bidi);
            prop_assert_eq!(got, Ok(BidiStream::WebTransport { session }));
            prop_assert_eq!(used, bidi.len() - tail.len());
        }
    }
}
