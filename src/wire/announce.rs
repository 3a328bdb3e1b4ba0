//! ANNOUNCE_REQUEST (interest in a prefix), ANNOUNCE_OK (lite-05) and the per-broadcast
//! ANNOUNCE updates sent on an announce stream.

use super::varint::{self, decode_string, decode_u8, encode_string};
use super::{DecodeError, Message, Version};

/// Hops carried in one announcement at most.
pub const MAX_HOPS: u64 = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub prefix: String,
    /// The requester's origin: announcements that went through it are not wanted (04, 05).
    pub exclude_hop: u64,
}

impl Message for AnnounceRequest {
    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) {
        encode_string(&self.prefix, buf);
        if version.has_exclude_hop() {
            varint::encode(self.exclude_hop, buf);
        }
    }

    fn decode_body(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let prefix = decode_string(buf)?;
        let exclude_hop = if version.has_exclude_hop() {
            varint::decode(buf)?
        } else {
            0
        };
        Ok(Self {
            prefix,
            exclude_hop,
        })
    }
}

/// lite-05: first reply on an announce stream; `active` announcements follow at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceOk {
    pub origin: u64,
    pub active: u64,
}

impl Message for AnnounceOk {
    fn encode_body(&self, buf: &mut Vec<u8>, _version: Version) {
        varint::encode(self.origin, buf);
        varint::encode(self.active, buf);
    }

    fn decode_body(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_announce_ok() {
            return Err(DecodeError::Version);
        }
        Ok(Self {
            origin: varint::decode(buf)?,
            active: varint::decode(buf)?,
        })
    }
}

/// One broadcast becoming active or ending, relative to the requested prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announce {
    Active { suffix: String, hops: Vec<u64> },
    Ended { suffix: String, hops: Vec<u64> },
}

const ENDED: u8 = 0;
const ACTIVE: u8 = 1;

impl Message for Announce {
    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) {
        let (status, suffix, hops) = match self {
            Announce::Active { suffix, hops } => (ACTIVE, suffix, hops),
            Announce::Ended { suffix, hops } => (ENDED, suffix, hops),
        };
        buf.push(status);
        encode_string(suffix, buf);
        let hops = &hops[..hops.len().min(MAX_HOPS as usize)];
        varint::encode(hops.len() as u64, buf);
        // lite-03 carries only the hop count.
        if version != Version::Lite03 {
            for hop in hops {
                varint::encode(*hop, buf);
            }
        }
    }

    fn decode_body(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let status = decode_u8(buf)?;
        let suffix = decode_string(buf)?;
        let count = varint::decode(buf)?;
        if count > MAX_HOPS {
            return Err(DecodeError::Invalid("too many hops"));
        }
        let mut hops = Vec::with_capacity(count as usize);
        for _ in 0..count {
            hops.push(if version == Version::Lite03 {
                0
            } else {
                varint::decode(buf)?
            });
        }
        match status {
            ACTIVE => Ok(Announce::Active { suffix, hops }),
            ENDED => Ok(Announce::Ended { suffix, hops }),
            _ => Err(DecodeError::Invalid("announce status")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::round_trip;
    use proptest::prelude::*;

    #[test]
    fn golden_bytes() {
        let req = AnnounceRequest {
            prefix: "anon".into(),
            exclude_hop: 0,
        };
        assert_eq!(round_trip(&req, Version::Lite03), b"\x05\x04anon");
        let req = AnnounceRequest {
            prefix: "anon".into(),
            exclude_hop: 7,
        };
        assert_eq!(round_trip(&req, Version::Lite05), b"\x06\x04anon\x07");
        let active = Announce::Active {
            suffix: "x".into(),
            hops: vec![0, 0],
        };
        assert_eq!(round_trip(&active, Version::Lite03), b"\x04\x01\x01x\x02");
        let active = Announce::Active {
            suffix: "x".into(),
            hops: vec![9],
        };
        assert_eq!(
            round_trip(&active, Version::Lite04),
            b"\x05\x01\x01x\x01\x09"
        );
        let ended = Announce::Ended {
            suffix: "x".into(),
            hops: vec![],
        };
        assert_eq!(round_trip(&ended, Version::Lite05), b"\x04\x00\x01x\x00");
        let ok = AnnounceOk {
            origin: 5,
            active: 1,
        };
        assert_eq!(round_trip(&ok, Version::Lite05), b"\x02\x05\x01");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            for v in Version::ALL {
                let _ = Announce::decode(&mut &bytes[..], v);
                let _ = AnnounceRequest::decode(&mut &bytes[..], v);
                let _ = AnnounceOk::decode(&mut &bytes[..], v);
            }
        }

        #[test]
        fn announces_round_trip(suffix in ".{0,40}", hops in proptest::collection::vec(0..=varint::MAX, 0..8), active: bool) {
            for v in [Version::Lite04, Version::Lite05] {
                let msg = if active {
                    Announce::Active { suffix: suffix.clone(), hops: hops.clone() }
                } else {
                    Announce::Ended { suffix: suffix.clone(), hops: hops.clone() }
                };
                round_trip(&msg, v);
            }
        }
    }
}
