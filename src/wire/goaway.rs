//! GOAWAY (lite-04, lite-05): a graceful shutdown with an optional redirect URI, on a
//! GOAWAY control stream. moq-net 0.2.13 accepts such a stream and ignores it.

use bytes::BufMut;

use super::varint::{decode_string, encode_string};
use super::{decode_sized, encode_sized, DecodeError, Message, Version};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goaway {
    /// Where to reconnect; empty for none.
    pub uri: String,
}

impl Message for Goaway {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        debug_assert!(version.has_goaway(), "GOAWAY on {version}");
        encode_sized(buf, |body| encode_string(&self.uri, body))
    }

    fn decode(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_goaway() {
            return Err(DecodeError::Version);
        }
        decode_sized(buf, |body| {
            Ok(Self {
                uri: decode_string(body)?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::{fuzz, round_trip};
    use proptest::prelude::*;

    #[test]
    fn golden_bytes() {
        let goaway = Goaway {
            uri: "https://b/".into(),
        };
        for v in [Version::Lite04, Version::Lite05] {
            assert_eq!(round_trip(&goaway, v), b"\x0b\x0ahttps://b/");
        }
        assert_eq!(
            Goaway::decode(&mut &b"\x01\x00"[..], Version::Lite03),
            Err(DecodeError::Version)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            fuzz::<Goaway>(&bytes);
        }

        #[test]
        fn goaways_round_trip(uri in ".{0,60}") {
            for v in [Version::Lite04, Version::Lite05] {
                round_trip(&Goaway { uri: uri.clone() }, v);
            }
        }
    }
}
