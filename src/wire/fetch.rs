//! FETCH: one group of a track by sequence number, on its own bidi stream. The message
//! exists from lite-03 as in moq-net, but only lite-05 serves FETCH streams; the answer
//! is the group's frames ([`super::FrameHeader`] + payload, timestamps from 0), then FIN.

use bytes::BufMut;

use super::varint::{self, decode_path, decode_string, decode_u8, encode_path, encode_string};
use super::{decode_sized, encode_sized, DecodeError, Message, Version};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// Broadcast path (normalized).
    pub broadcast: String,
    pub track: String,
    pub priority: u8,
    /// The group sequence number.
    pub group: u64,
}

impl Message for Fetch {
    fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        encode_sized(buf, |body| {
            encode_path(&self.broadcast, body);
            encode_string(&self.track, body);
            body.put_u8(self.priority);
            varint::encode(self.group, body);
        })
    }

    fn decode(buf: &mut &[u8], _version: Version) -> Result<Self, DecodeError> {
        decode_sized(buf, |body| {
            Ok(Self {
                broadcast: decode_path(body)?,
                track: decode_string(body)?,
                priority: decode_u8(body)?,
                group: varint::decode(body)?,
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
        let fetch = Fetch {
            broadcast: "room".into(),
            track: "video".into(),
            priority: 3,
            group: 7,
        };
        for v in Version::ALL {
            assert_eq!(round_trip(&fetch, v), b"\x0d\x04room\x05video\x03\x07");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            fuzz::<Fetch>(&bytes);
        }

        #[test]
        fn fetches_round_trip(broadcast in PATH, track in ".{0,30}", priority: u8, group in 0..=varint::MAX) {
            let fetch = Fetch { broadcast, track, priority, group };
            for v in Version::ALL {
                round_trip(&fetch, v);
            }
        }
    }
}
