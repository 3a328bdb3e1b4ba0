//! lite-05 TRACK stream: the TRACK request and its single TRACK_INFO answer, the track's
//! immutable properties (including the timescale of its frame timestamps).

use std::time::Duration;

use bytes::BufMut;

use super::varint::{
    self, decode_duration, decode_flag, decode_path, decode_string, decode_u8, encode_duration,
    encode_path, encode_string,
};
use super::{
    decode_sized, encode_sized, DecodeError, Message, Version, DEFAULT_MAX_LATENCY,
    DEFAULT_TIMESCALE,
};

/// moq-net's `lite::Track`: the subscriber asks for one track's properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRequest {
    /// Broadcast path (normalized).
    pub broadcast: String,
    pub track: String,
}

impl Message for TrackRequest {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        debug_assert!(version.has_track_stream(), "TRACK on {version}");
        encode_sized(buf, |body| {
            encode_path(&self.broadcast, body);
            encode_string(&self.track, body);
        })
    }

    fn decode(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_track_stream() {
            return Err(DecodeError::Version);
        }
        decode_sized(buf, |body| {
            Ok(Self {
                broadcast: decode_path(body)?,
                track: decode_string(body)?,
            })
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// The publisher's tie-break priority.
    pub priority: u8,
    /// Whether groups are prioritized in sequence order (else newest first).
    pub ordered: bool,
    /// How long the publisher caches a non-latest group after a newer one arrived.
    pub max_latency: Duration,
    /// Frame timestamp units per second; never 0.
    pub timescale: u64,
}

impl Default for TrackInfo {
    /// moq-net's `track::Info::default()`.
    fn default() -> Self {
        Self {
            priority: 0,
            ordered: false,
            max_latency: DEFAULT_MAX_LATENCY,
            timescale: DEFAULT_TIMESCALE,
        }
    }
}

impl Message for TrackInfo {
    /// A zero timescale is a caller bug: it asserts in debug builds and is sent as 1.
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        debug_assert!(version.has_track_stream(), "TRACK_INFO on {version}");
        debug_assert!(self.timescale != 0, "zero timescale");
        encode_sized(buf, |body| {
            body.put_u8(self.priority);
            body.put_u8(u8::from(self.ordered));
            encode_duration(self.max_latency, body);
            varint::encode(self.timescale.max(1), body);
        })
    }

    fn decode(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_track_stream() {
            return Err(DecodeError::Version);
        }
        decode_sized(buf, |body| {
            let priority = decode_u8(body)?;
            let ordered = decode_flag(body)?;
            let max_latency = decode_duration(body)?;
            let timescale = varint::decode(body)?;
            if timescale == 0 {
                return Err(DecodeError::Invalid("zero timescale"));
            }
            Ok(Self {
                priority,
                ordered,
                max_latency,
                timescale,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::{fuzz, round_trip, PATH};
    use proptest::prelude::*;

    #[test]
    fn golden_bytes() {
        let v = Version::Lite05;
        let req = TrackRequest {
            broadcast: "room".into(),
            track: "video".into(),
        };
        assert_eq!(round_trip(&req, v), b"\x0b\x04room\x05video");
        // moq-net's cross-language vector for the default track info.
        assert_eq!(
            round_trip(&TrackInfo::default(), v),
            [0x06, 0x00, 0x00, 0x53, 0x88, 0x43, 0xe8]
        );
        let info = TrackInfo {
            priority: 7,
            ordered: true,
            max_latency: Duration::from_millis(2000),
            timescale: 1_000_000,
        };
        assert_eq!(
            round_trip(&info, v),
            b"\x08\x07\x01\x47\xd0\x80\x0f\x42\x40"
        );
        assert_eq!(
            TrackInfo::decode(&mut &b"\x04\x00\x00\x00\x00"[..], v),
            Err(DecodeError::Invalid("zero timescale"))
        );
        for old in [Version::Lite03, Version::Lite04] {
            assert_eq!(
                TrackInfo::decode(&mut &b"\x04\x00\x00\x00\x01"[..], old),
                Err(DecodeError::Version)
            );
            assert_eq!(
                TrackRequest::decode(&mut &b"\x02\x00\x00"[..], old),
                Err(DecodeError::Version)
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            fuzz::<TrackRequest>(&bytes);
            fuzz::<TrackInfo>(&bytes);
        }

        #[test]
        fn messages_round_trip(
            broadcast in PATH,
            track in ".{0,30}",
            priority: u8,
            ordered: bool,
            ms in 0..=varint::MAX,
            timescale in 1..=varint::MAX,
        ) {
            let v = Version::Lite05;
            round_trip(&TrackRequest { broadcast, track }, v);
            let max_latency = Duration::from_millis(ms);
            round_trip(&TrackInfo { priority, ordered, max_latency, timescale }, v);
        }
    }
}
