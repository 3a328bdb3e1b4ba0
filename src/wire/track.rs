//! lite-05 TRACK request and its TRACK_INFO answer (a track's fixed properties).

use std::time::Duration;

use super::varint::{
    self, decode_duration, decode_string, decode_u8, encode_duration, encode_string,
};
use super::{DecodeError, Message, Version};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRequest {
    pub broadcast: String,
    pub track: String,
}

impl Message for TrackRequest {
    fn encode_body(&self, buf: &mut Vec<u8>, _version: Version) {
        encode_string(&self.broadcast, buf);
        encode_string(&self.track, buf);
    }

    fn decode_body(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_track_stream() {
            return Err(DecodeError::Version);
        }
        Ok(Self {
            broadcast: decode_string(buf)?,
            track: decode_string(buf)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub priority: u8,
    pub ordered: bool,
    pub max_latency: Duration,
    /// Frame timestamp units per second.
    pub timescale: u64,
}

impl Message for TrackInfo {
    fn encode_body(&self, buf: &mut Vec<u8>, _version: Version) {
        buf.push(self.priority);
        buf.push(self.ordered as u8);
        encode_duration(self.max_latency, buf);
        varint::encode(self.timescale, buf);
    }

    fn decode_body(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_track_stream() {
            return Err(DecodeError::Version);
        }
        let priority = decode_u8(buf)?;
        let ordered = decode_u8(buf)? != 0;
        let max_latency = decode_duration(buf)?;
        let timescale = varint::decode(buf)?;
        if timescale == 0 {
            return Err(DecodeError::Invalid("zero timescale"));
        }
        Ok(Self {
            priority,
            ordered,
            max_latency,
            timescale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::round_trip;
    use proptest::prelude::*;

    #[test]
    fn golden_bytes() {
        let req = TrackRequest {
            broadcast: "b".into(),
            track: "t".into(),
        };
        assert_eq!(round_trip(&req, Version::Lite05), b"\x04\x01b\x01t");
        let info = TrackInfo {
            priority: 2,
            ordered: true,
            max_latency: Duration::from_millis(100),
            timescale: 1000,
        };
        assert_eq!(
            round_trip(&info, Version::Lite05),
            b"\x06\x02\x01\x40\x64\x43\xe8"
        );
        assert_eq!(
            TrackInfo::decode(&mut &b"\x06\x02\x01\x40\x64\x43\xe8"[..], Version::Lite04),
            Err(DecodeError::Version)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            for v in Version::ALL {
                let _ = TrackRequest::decode(&mut &bytes[..], v);
                let _ = TrackInfo::decode(&mut &bytes[..], v);
            }
        }
    }
}
