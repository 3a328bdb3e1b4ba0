//! The announce stream: ANNOUNCE_REQUEST (interest in a prefix), ANNOUNCE_OK (lite-05) and
//! the per-broadcast ANNOUNCE updates (moq-net's `AnnounceBroadcast`).

use bytes::BufMut;

use super::varint::{self, decode_path, decode_u8, encode_path};
use super::{decode_sized, encode_sized, DecodeError, Message, Version};

/// Hops in one announcement at most (moq-net's `MAX_HOPS`).
pub const MAX_HOPS: usize = 32;

const STATUS_ENDED: u8 = 0;
const STATUS_ACTIVE: u8 = 1;
/// Accepted on lite-05 as a restart (an `Active` for a path already announced); never sent.
const STATUS_RESTART: u8 = 2;

/// Sent by the side that wants announcements, first on the announce stream it opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// Broadcast path prefix (normalized: no leading, trailing or doubled slashes).
    pub prefix: String,
    /// The requester's own origin id (04, 05; 0 when absent): the publisher skips
    /// broadcasts whose hop chain already contains it.
    pub exclude_hop: u64,
}

impl Message for AnnounceRequest {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        encode_sized(buf, |body| {
            encode_path(&self.prefix, body);
            if version.has_exclude_hop() {
                varint::encode(self.exclude_hop, body);
            }
        })
    }

    fn decode(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        decode_sized(buf, |body| {
            let prefix = decode_path(body)?;
            let exclude_hop = match version.has_exclude_hop() {
                true => varint::decode(body)?,
                false => 0,
            };
            Ok(Self {
                prefix,
                exclude_hop,
            })
        })
    }
}

/// lite-05: the publisher's first message on an announce stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceOk {
    /// The publisher's origin id, which the receiver appends to every hop chain on this
    /// stream (0 is legal: no identity).
    pub origin: u64,
    /// How many `Active` announcements (the initial set) follow immediately.
    pub active: u64,
}

impl Message for AnnounceOk {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        debug_assert!(version.has_announce_ok(), "ANNOUNCE_OK on {version}");
        encode_sized(buf, |body| {
            varint::encode(self.origin, body);
            varint::encode(self.active, body);
        })
    }

    fn decode(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_announce_ok() {
            return Err(DecodeError::Version);
        }
        decode_sized(buf, |body| {
            Ok(Self {
                origin: varint::decode(body)?,
                active: varint::decode(body)?,
            })
        })
    }
}

/// One broadcast under the requested prefix becoming available or going away.
///
/// `hops` is the origin chain, oldest (the original publisher) first. On lite-03 only
/// the count is on the wire, so it decodes as that many zeros. On 03/04 the sender has
/// already appended its own origin; on 05 it has not (see [`AnnounceOk::origin`]).
/// moq-net sends `Ended` with no hops. On lite-05 an `Active` for a path that is already
/// active is a restart: the route (hop chain) replaces the old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announce {
    Active { suffix: String, hops: Vec<u64> },
    Ended { suffix: String, hops: Vec<u64> },
}

impl Announce {
    /// The broadcast path relative to the requested prefix.
    pub fn suffix(&self) -> &str {
        match self {
            Announce::Active { suffix, .. } | Announce::Ended { suffix, .. } => suffix,
        }
    }

    pub fn hops(&self) -> &[u64] {
        match self {
            Announce::Active { hops, .. } | Announce::Ended { hops, .. } => hops,
        }
    }

    pub fn is_active(&self) -> bool {
        matches!(self, Announce::Active { .. })
    }
}

impl Message for Announce {
    /// At most [`MAX_HOPS`] hops (the oldest) are written; longer chains are a caller bug.
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        let status = match self {
            Announce::Active { .. } => STATUS_ACTIVE,
            Announce::Ended { .. } => STATUS_ENDED,
        };
        let hops = self.hops();
        debug_assert!(hops.len() <= MAX_HOPS, "{} hops", hops.len());
        let hops = &hops[..hops.len().min(MAX_HOPS)];
        encode_sized(buf, |body| {
            body.put_u8(status);
            encode_path(self.suffix(), body);
            varint::encode(hops.len() as u64, body);
            if version != Version::Lite03 {
                for hop in hops {
                    varint::encode(*hop, body);
                }
            }
        })
    }

    fn decode(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        decode_sized(buf, |body| {
            let active = match decode_u8(body)? {
                STATUS_ACTIVE => true,
                STATUS_ENDED => false,
                STATUS_RESTART if version.has_announce_ok() => true,
                _ => return Err(DecodeError::Invalid("announce status")),
            };
            let suffix = decode_path(body)?;
            let count = varint::decode(body)?;
            if count > MAX_HOPS as u64 {
                return Err(DecodeError::Invalid("too many hops"));
            }
            let hops = if version == Version::Lite03 {
                vec![0; count as usize]
            } else {
                let mut hops = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    hops.push(varint::decode(body)?);
                }
                hops
            };
            Ok(match active {
                true => Announce::Active { suffix, hops },
                false => Announce::Ended { suffix, hops },
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
    fn request_golden() {
        let req = AnnounceRequest {
            prefix: "room".into(),
            exclude_hop: 0,
        };
        assert_eq!(round_trip(&req, Version::Lite03), b"\x05\x04room");
        let req = AnnounceRequest {
            prefix: "room".into(),
            exclude_hop: 42,
        };
        assert_eq!(round_trip(&req, Version::Lite04), b"\x06\x04room\x2a");
        assert_eq!(round_trip(&req, Version::Lite05), b"\x06\x04room\x2a");
        // lite-03 has no exclude_hop on the wire.
        let mut buf = Vec::new();
        req.encode(&mut buf, Version::Lite03);
        assert_eq!(buf, b"\x05\x04room");
        // Paths are normalized both ways.
        let req = AnnounceRequest {
            prefix: "/".into(),
            exclude_hop: 1,
        };
        let mut buf = Vec::new();
        req.encode(&mut buf, Version::Lite05);
        assert_eq!(buf, b"\x02\x00\x01");
        let got = AnnounceRequest::decode(&mut &b"\x03\x01/\x01"[..], Version::Lite05);
        assert_eq!(got.unwrap().prefix, "");
    }

    #[test]
    fn announce_golden() {
        let active = Announce::Active {
            suffix: "cam".into(),
            hops: vec![7, 9],
        };
        // lite-03: the hop count only.
        let mut buf = Vec::new();
        active.encode(&mut buf, Version::Lite03);
        assert_eq!(buf, b"\x06\x01\x03cam\x02");
        let zeros = Announce::Active {
            suffix: "cam".into(),
            hops: vec![0, 0],
        };
        assert_eq!(round_trip(&zeros, Version::Lite03), buf);
        // lite-04/05: the origin ids.
        assert_eq!(
            round_trip(&active, Version::Lite04),
            b"\x08\x01\x03cam\x02\x07\x09"
        );
        assert_eq!(
            round_trip(&active, Version::Lite05),
            b"\x08\x01\x03cam\x02\x07\x09"
        );
        let ended = Announce::Ended {
            suffix: "cam".into(),
            hops: vec![],
        };
        for v in Version::ALL {
            assert_eq!(round_trip(&ended, v), b"\x06\x00\x03cam\x00");
        }
    }

    #[test]
    fn announce_ok_golden() {
        let ok = AnnounceOk {
            origin: 42,
            active: 3,
        };
        assert_eq!(round_trip(&ok, Version::Lite05), b"\x02\x2a\x03");
        for v in [Version::Lite03, Version::Lite04] {
            assert_eq!(
                AnnounceOk::decode(&mut &b"\x02\x2a\x03"[..], v),
                Err(DecodeError::Version)
            );
        }
    }

    #[test]
    fn restart_status_and_limits() {
        // Status 2 (restart) is an Active on lite-05 and invalid before.
        let restart = b"\x06\x02\x03cam\x00";
        assert_eq!(
            Announce::decode(&mut &restart[..], Version::Lite05),
            Ok(Announce::Active {
                suffix: "cam".into(),
                hops: vec![]
            })
        );
        assert!(matches!(
            Announce::decode(&mut &restart[..], Version::Lite04),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(
            Announce::decode(&mut &b"\x06\x03\x03cam\x00"[..], Version::Lite05),
            Err(DecodeError::Invalid(_))
        ));
        // 33 hops are refused on every version, even as a bare lite-03 count.
        for v in Version::ALL {
            let mut body = vec![STATUS_ENDED, 0, 33];
            if v != Version::Lite03 {
                body.extend([1u8; 33]);
            }
            let mut buf = Vec::new();
            varint::encode_bytes(&body, &mut buf);
            assert_eq!(
                Announce::decode(&mut &buf[..], v),
                Err(DecodeError::Invalid("too many hops"))
            );
        }
        let at_limit = Announce::Active {
            suffix: String::new(),
            hops: vec![5; MAX_HOPS],
        };
        for v in Version::ALL {
            let mut buf = Vec::new();
            at_limit.encode(&mut buf, v);
            let got = Announce::decode(&mut &buf[..], v).unwrap();
            assert_eq!(got.hops().len(), MAX_HOPS);
            assert!(got.is_active());
        }
    }

    fn hops_for(version: Version, hops: Vec<u64>) -> Vec<u64> {
        match version {
            Version::Lite03 => vec![0; hops.len()],
            _ => hops,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            fuzz::<AnnounceRequest>(&bytes);
            fuzz::<AnnounceOk>(&bytes);
            fuzz::<Announce>(&bytes);
        }

        #[test]
        fn messages_round_trip(
            path in PATH,
            hop in 0..=varint::MAX,
            hops in proptest::collection::vec(0..=varint::MAX, 0..=MAX_HOPS),
            active in 0..=varint::MAX,
            live: bool,
        ) {
            for v in Version::ALL {
                let exclude_hop = if v.has_exclude_hop() { hop } else { 0 };
                round_trip(&AnnounceRequest { prefix: path.clone(), exclude_hop }, v);
                let hops = hops_for(v, hops.clone());
                let suffix = path.clone();
                let msg = match live {
                    true => Announce::Active { suffix, hops },
                    false => Announce::Ended { suffix, hops },
                };
                round_trip(&msg, v);
            }
            round_trip(&AnnounceOk { origin: hop, active }, Version::Lite05);
        }
    }
}
