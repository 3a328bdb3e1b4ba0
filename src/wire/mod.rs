//! The moq-lite codec (versions 03, 04 and 05, as spoken by moq-net 0.2.13): sans-IO.
//!
//! Every message decodes from a byte slice and encodes into a `BufMut`; the negotiated
//! version is a parameter, so version differences stay here. Decoding never panics and
//! never allocates from an unchecked length: a length prefix above [`MAX_MESSAGE_SIZE`]
//! is refused as soon as it is read. `DecodeError::Short` means "wait for more bytes".

mod announce;
mod error;
mod group;
mod setup;
mod stream;
mod subscribe;
mod track;
pub mod varint;
mod version;

pub use announce::{Announce, AnnounceOk, AnnounceRequest};
pub use error::ErrorCode;
pub use group::{FrameHeader, GroupHeader, MAX_FRAME_HEADER};
pub use setup::Setup;
pub use stream::{ControlType, DataType};
pub use subscribe::{Subscribe, SubscribeDrop, SubscribeOk, SubscribeResponse, SubscribeUpdate};
pub use track::{TrackInfo, TrackRequest};
pub use version::Version;

/// Largest control message we accept.
pub const MAX_MESSAGE_SIZE: usize = 65536;

/// Timescale (units per second) of tracks whose publisher's version carries none.
pub const DEFAULT_TIMESCALE: u64 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("need more bytes")]
    Short,
    #[error("message too large")]
    TooLarge,
    #[error("invalid value: {0}")]
    Invalid(&'static str),
    #[error("trailing bytes in message")]
    Long,
    #[error("message not defined in this version")]
    Version,
    #[error("unknown message type {0}")]
    UnknownType(u64),
}

/// A control message with a size prefix.
pub trait Message: Sized {
    /// Appends the body (without the size prefix).
    fn encode_body(&self, buf: &mut Vec<u8>, version: Version);
    /// Decodes the body; `buf` holds exactly the body.
    fn decode_body(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError>;

    /// Appends the size-prefixed message. Precondition: it exists in `version`.
    fn encode<B: bytes::BufMut>(&self, buf: &mut B, version: Version) {
        let mut body = Vec::new();
        self.encode_body(&mut body, version);
        varint::encode(body.len() as u64, buf);
        buf.put_slice(&body);
    }

    /// Decodes one size-prefixed message from the front of `buf`, advancing past it.
    fn decode(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let mut body = sized(buf)?;
        // The body is complete: running out of it inside is a malformed message.
        let msg = Self::decode_body(&mut body, version).map_err(|e| match e {
            DecodeError::Short => DecodeError::Invalid("message shorter than its fields"),
            e => e,
        })?;
        if !body.is_empty() {
            return Err(DecodeError::Long);
        }
        Ok(msg)
    }
}

/// Splits a size-prefixed body off the front of `buf`.
pub(crate) fn sized<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let mut peek = *buf;
    let size = varint::decode(&mut peek)?;
    if size > MAX_MESSAGE_SIZE as u64 {
        return Err(DecodeError::TooLarge);
    }
    let size = size as usize;
    if peek.len() < size {
        return Err(DecodeError::Short);
    }
    let (body, rest) = peek.split_at(size);
    *buf = rest;
    Ok(body)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Encodes, checks the exact decode, and checks every strict prefix is `Short`.
    pub fn round_trip<M: Message + PartialEq + std::fmt::Debug>(
        msg: &M,
        version: Version,
    ) -> Vec<u8> {
        let mut buf = Vec::new();
        msg.encode(&mut buf, version);
        let mut slice = &buf[..];
        assert_eq!(&M::decode(&mut slice, version).unwrap(), msg);
        assert!(slice.is_empty());
        for n in 0..buf.len() {
            let mut part = &buf[..n];
            assert_eq!(
                M::decode(&mut part, version).unwrap_err(),
                DecodeError::Short,
                "prefix {n}"
            );
        }
        buf
    }
}
