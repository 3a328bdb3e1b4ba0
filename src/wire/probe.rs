//! PROBE: the publisher's periodic bandwidth (and, from lite-04, RTT) reports on a probe
//! stream the subscriber opened. On the wire 0 means unknown.

use bytes::BufMut;

use super::{decode_sized, encode_sized, varint, DecodeError, Message, Version};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Estimated send rate in bits per second. `Some(0)` is sent as 1.
    pub bitrate: Option<u64>,
    /// Round-trip time in milliseconds (04, 05; `None` on 03). `Some(0)` is sent as 1.
    pub rtt: Option<u64>,
}

fn encode_known<B: BufMut>(v: Option<u64>, buf: &mut B) {
    varint::encode(v.map_or(0, |v| v.max(1)), buf)
}

fn decode_known(buf: &mut &[u8]) -> Result<Option<u64>, DecodeError> {
    Ok(Some(varint::decode(buf)?).filter(|v| *v != 0))
}

impl Message for Probe {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        encode_sized(buf, |body| {
            encode_known(self.bitrate, body);
            if version.has_probe_rtt() {
                encode_known(self.rtt, body);
            }
        })
    }

    fn decode(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        decode_sized(buf, |body| {
            let bitrate = decode_known(body)?;
            let rtt = match version.has_probe_rtt() {
                true => decode_known(body)?,
                false => None,
            };
            Ok(Self { bitrate, rtt })
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
        let probe = Probe {
            bitrate: Some(1000),
            rtt: Some(40),
        };
        // lite-03 carries the bitrate alone.
        let mut buf = Vec::new();
        probe.encode(&mut buf, Version::Lite03);
        assert_eq!(buf, b"\x02\x43\xe8");
        let bitrate_only = Probe {
            bitrate: Some(1000),
            rtt: None,
        };
        assert_eq!(round_trip(&bitrate_only, Version::Lite03), buf);
        for v in [Version::Lite04, Version::Lite05] {
            assert_eq!(round_trip(&probe, v), b"\x03\x43\xe8\x28");
        }
        let unknown = Probe {
            bitrate: None,
            rtt: Some(40),
        };
        assert_eq!(round_trip(&unknown, Version::Lite05), b"\x02\x00\x28");
        // A measured zero reads as a measurement, not as unknown.
        let zero = Probe {
            bitrate: Some(0),
            rtt: Some(0),
        };
        let mut buf = Vec::new();
        zero.encode(&mut buf, Version::Lite05);
        assert_eq!(buf, b"\x02\x01\x01");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            fuzz::<Probe>(&bytes);
        }

        #[test]
        fn probes_round_trip(
            bitrate in proptest::option::of(1..=varint::MAX),
            rtt in proptest::option::of(1..=varint::MAX),
        ) {
            for v in Version::ALL {
                let rtt = if v.has_probe_rtt() { rtt } else { None };
                round_trip(&Probe { bitrate, rtt }, v);
            }
        }
    }
}
