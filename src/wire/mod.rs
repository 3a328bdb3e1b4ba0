//! The moq-lite wire codec (lite-03, lite-04 and lite-05, byte for byte as moq-net 0.2.13).
//!
//! sans-IO: every message decodes from the front of a byte slice and encodes into a
//! `BufMut`, with the negotiated [`Version`] as a parameter so that version differences
//! stay in this module. Decoding never panics and never allocates from an unchecked
//! length; a size prefix above [`MAX_MESSAGE_SIZE`] is refused as soon as it is read.
//!
//! Streams (first varint [`ControlType`] on a bidi stream, [`DataType`] on a uni stream):
//! - ANNOUNCE (1): [`AnnounceRequest`] →; ← [`AnnounceOk`] (05) then [`Announce`] updates.
//! - SUBSCRIBE (2): [`Subscribe`], then [`SubscribeUpdate`]s →;
//!   ← [`SubscribeResponse`]s (03/04: OK first, 05: START/END; DROP on all).
//! - FETCH (3, served on 05): [`Fetch`] →; ← bare frames ([`FrameHeader`] + payload), FIN.
//! - PROBE (4): nothing →; ← [`Probe`] reports.
//! - TRACK (6, 05): [`TrackRequest`] →; ← one [`TrackInfo`], FIN.
//! - GROUP uni (0): [`GroupHeader`], then frames until FIN. SETUP uni (1, 05): one [`Setup`].

mod announce;
mod error;
mod fetch;
mod goaway;
mod group;
mod probe;
mod setup;
mod stream;
mod subscribe;
mod track;
pub mod varint;
mod version;

use std::time::Duration;

use bytes::BufMut;

pub use announce::{Announce, AnnounceOk, AnnounceRequest, MAX_HOPS};
pub use error::ErrorCode;
pub use fetch::Fetch;
pub use goaway::Goaway;
pub use group::{FrameHeader, GroupHeader, MAX_FRAME_HEADER};
pub use probe::Probe;
pub use setup::Setup;
pub use stream::{ControlType, DataType};
pub use subscribe::{
    Subscribe, SubscribeDrop, SubscribeOk, SubscribeOptions, SubscribeResponse, SubscribeUpdate,
};
pub use track::{TrackInfo, TrackRequest};
pub use version::Version;

/// Largest size-prefixed message (body) we accept.
pub const MAX_MESSAGE_SIZE: usize = 65536;

/// Frame timestamp units per second when nothing says otherwise (moq-net's `Timescale::MILLI`):
/// the default TRACK_INFO timescale, and the scale to assume for tracks from lite-03/04 peers.
pub const DEFAULT_TIMESCALE: u64 = 1000;

/// moq-net's default publisher max latency (its `track::DEFAULT_LATENCY_MAX`): what a track
/// gets when its publisher's version carries no TRACK_INFO.
pub const DEFAULT_MAX_LATENCY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Need more bytes: retry from the same start once more bytes arrived.
    #[error("need more bytes")]
    Short,
    #[error("message too large")]
    TooLarge,
    #[error("invalid value: {0}")]
    Invalid(&'static str),
    /// The declared size is larger than the fields consumed.
    #[error("trailing bytes in message")]
    Long,
    #[error("message not defined in this version")]
    Version,
    #[error("unknown message type {0}")]
    UnknownType(u64),
}

/// A size-prefixed (or otherwise framed) control message.
pub trait Message: Sized {
    /// Appends the encoding. Precondition: the message exists in `version` (callers check the
    /// version predicates); fields the version lacks are omitted. Must not panic in release.
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version);

    /// Decodes one message from the front of `buf`, advancing it past the message on Ok.
    /// On Err(Short) the caller discards the state of `buf` and retries later from the same
    /// start with more bytes.
    fn decode(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError>;
}

/// Writes `size | body`, where `body` is whatever `fill` appends.
///
/// The body is staged in a scratch buffer: control messages are small and rare.
pub fn encode_sized<B: BufMut>(buf: &mut B, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    fill(&mut body);
    varint::encode(body.len() as u64, buf);
    buf.put_slice(&body);
}

/// Reads `size | body` from the front of `buf` and decodes the body with `parse`, which must
/// consume it exactly. `buf` advances only on success.
///
/// A size above [`MAX_MESSAGE_SIZE`] is `TooLarge` at once; a body that is complete but
/// ends inside a field is `Invalid` (more bytes cannot help); leftover body bytes are `Long`.
pub fn decode_sized<T>(
    buf: &mut &[u8],
    parse: impl FnOnce(&mut &[u8]) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let mut rest = *buf;
    let size = varint::decode(&mut rest)?;
    if size > MAX_MESSAGE_SIZE as u64 {
        return Err(DecodeError::TooLarge);
    }
    let (mut body, rest) = rest
        .split_at_checked(size as usize)
        .ok_or(DecodeError::Short)?;
    let msg = parse(&mut body).map_err(|err| match err {
        DecodeError::Short => DecodeError::Invalid("field runs past the message end"),
        err => err,
    })?;
    if !body.is_empty() {
        return Err(DecodeError::Long);
    }
    *buf = rest;
    Ok(msg)
}

#[cfg(test)]
pub(crate) mod testing {
    use std::fmt::Debug;

    use super::*;

    /// Encodes `msg`, checks that it decodes back exactly (also with bytes following it)
    /// and that every strict prefix is `Short`. Returns the encoding.
    pub fn round_trip<M: Message + PartialEq + Debug>(msg: &M, version: Version) -> Vec<u8> {
        let mut buf = Vec::new();
        msg.encode(&mut buf, version);

        let mut slice = &buf[..];
        assert_eq!(&M::decode(&mut slice, version).unwrap(), msg, "{version}");
        assert!(slice.is_empty(), "{version}: {} bytes left", slice.len());

        let mut followed = buf.clone();
        followed.extend_from_slice(b"\x00\x3f\xff");
        let mut slice = &followed[..];
        assert_eq!(&M::decode(&mut slice, version).unwrap(), msg);
        assert_eq!(slice, b"\x00\x3f\xff");

        for n in 0..buf.len() {
            let mut part = &buf[..n];
            assert_eq!(
                M::decode(&mut part, version),
                Err(DecodeError::Short),
                "{version}: prefix of {n} bytes"
            );
            assert_eq!(part.len(), n, "a failed decode must not advance");
        }
        buf
    }

    /// Decodes arbitrary bytes (as given, and behind a matching size prefix) on every
    /// version. Must not panic; whatever decodes must re-encode to the same message.
    pub fn fuzz<M: Message + PartialEq + Debug>(bytes: &[u8]) {
        let mut sized = Vec::new();
        varint::encode(bytes.len() as u64, &mut sized);
        sized.extend_from_slice(bytes);
        for input in [bytes, &sized[..]] {
            for version in Version::ALL {
                let mut slice = input;
                if let Ok(msg) = M::decode(&mut slice, version) {
                    let mut again = Vec::new();
                    msg.encode(&mut again, version);
                    assert_eq!(M::decode(&mut &again[..], version), Ok(msg));
                }
            }
        }
    }

    /// Lowercase path parts, joined by single slashes: already normalized.
    pub const PATH: &str = "([a-z0-9_.-]{1,6}(/[a-z0-9_.-]{1,6}){0,5})?";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_bodies_are_bounded() {
        // A size prefix above the limit is refused before the body arrives.
        let mut big = Vec::new();
        varint::encode(MAX_MESSAGE_SIZE as u64 + 1, &mut big);
        let err = decode_sized(&mut &big[..], |_| Ok(()));
        assert_eq!(err, Err(DecodeError::TooLarge));

        // A body that ends inside a field is malformed, not short.
        let err = decode_sized(&mut &b"\x01\x40"[..], varint::decode);
        assert!(matches!(err, Err(DecodeError::Invalid(_))));

        // Unconsumed body bytes are Long.
        let err = decode_sized(&mut &b"\x02\x01\x02"[..], varint::decode);
        assert_eq!(err, Err(DecodeError::Long));

        let mut buf = Vec::new();
        encode_sized(&mut buf, |body| varint::encode(300, body));
        assert_eq!(buf, b"\x02\x41\x2c");
        let mut slice = &buf[..];
        assert_eq!(decode_sized(&mut slice, varint::decode), Ok(300));
        assert!(slice.is_empty());
    }
}
