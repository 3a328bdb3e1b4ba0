//! The subscribe stream: SUBSCRIBE and SUBSCRIBE_UPDATE from the subscriber; SUBSCRIBE_OK
//! (03/04), SUBSCRIBE_START/END (05) and SUBSCRIBE_DROP from the publisher, each behind a
//! type varint.

use std::time::Duration;

use bytes::BufMut;

use super::varint::{
    self, decode_duration, decode_flag, decode_option, decode_path, decode_string, decode_u8,
    encode_duration, encode_option, encode_path, encode_string,
};
use super::{decode_sized, encode_sized, DecodeError, Message, Version};

/// Sent first on a subscribe stream. Identical on 03, 04 and 05.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Chosen by the subscriber; group streams carry it.
    pub id: u64,
    /// Broadcast path (normalized).
    pub broadcast: String,
    pub track: String,
    pub priority: u8,
    pub ordered: bool,
    pub max_latency: Duration,
    /// First group wanted; `None` starts at the latest group.
    pub start_group: Option<u64>,
    /// Last group to serve (a cap the subscriber may raise later); `None` is unbounded.
    pub end_group: Option<u64>,
}

/// The fields SUBSCRIBE, SUBSCRIBE_OK and SUBSCRIBE_UPDATE share, in wire order. As a
/// message of its own it is SUBSCRIBE_OK (03/04 acceptance: moq-net sends the subscriber's
/// priority, `ordered: false`, zero latency and no groups, and waits for it before accepting
/// groups) or SUBSCRIBE_UPDATE (new preferences for a live subscription, sent by the
/// subscriber after SUBSCRIBE; moq-net re-sends all fields, varying the group range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOptions {
    pub priority: u8,
    pub ordered: bool,
    pub max_latency: Duration,
    pub start_group: Option<u64>,
    pub end_group: Option<u64>,
}

/// 03/04 acceptance of a subscription.
pub type SubscribeOk = SubscribeOptions;
/// New preferences for a live subscription.
pub type SubscribeUpdate = SubscribeOptions;

impl Message for SubscribeOptions {
    fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        encode_sized(buf, |body| self.encode_fields(body))
    }

    fn decode(buf: &mut &[u8], _version: Version) -> Result<Self, DecodeError> {
        decode_sized(buf, Self::decode_fields)
    }
}

impl SubscribeOptions {
    fn encode_fields(&self, body: &mut Vec<u8>) {
        body.put_u8(self.priority);
        body.put_u8(u8::from(self.ordered));
        encode_duration(self.max_latency, body);
        encode_option(self.start_group, body);
        encode_option(self.end_group, body);
    }

    fn decode_fields(body: &mut &[u8]) -> Result<Self, DecodeError> {
        Ok(Self {
            priority: decode_u8(body)?,
            ordered: decode_flag(body)?,
            max_latency: decode_duration(body)?,
            start_group: decode_option(body)?,
            end_group: decode_option(body)?,
        })
    }
}

impl Message for Subscribe {
    fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        encode_sized(buf, |body| {
            varint::encode(self.id, body);
            encode_path(&self.broadcast, body);
            encode_string(&self.track, body);
            SubscribeOptions {
                priority: self.priority,
                ordered: self.ordered,
                max_latency: self.max_latency,
                start_group: self.start_group,
                end_group: self.end_group,
            }
            .encode_fields(body);
        })
    }

    fn decode(buf: &mut &[u8], _version: Version) -> Result<Self, DecodeError> {
        decode_sized(buf, |body| {
            let id = varint::decode(body)?;
            let broadcast = decode_path(body)?;
            let track = decode_string(body)?;
            let p = SubscribeOptions::decode_fields(body)?;
            Ok(Self {
                id,
                broadcast,
                track,
                priority: p.priority,
                ordered: p.ordered,
                max_latency: p.max_latency,
                start_group: p.start_group,
                end_group: p.end_group,
            })
        })
    }
}

/// Groups `start..=end` (inclusive) will not be delivered; `error` 0 means simply
/// unavailable. moq-net 0.2.13 decodes it but never sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeDrop {
    pub start: u64,
    pub end: u64,
    pub error: u64,
}

impl Message for SubscribeDrop {
    fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        encode_sized(buf, |body| {
            varint::encode(self.start, body);
            varint::encode(self.end, body);
            varint::encode(self.error, body);
        })
    }

    fn decode(buf: &mut &[u8], _version: Version) -> Result<Self, DecodeError> {
        decode_sized(buf, |body| {
            Ok(Self {
                start: varint::decode(body)?,
                end: varint::decode(body)?,
                error: varint::decode(body)?,
            })
        })
    }
}

/// A message on the publisher's half of a subscribe stream: `type | size | body`.
///
/// Types: 03/04: 0 OK, 1 DROP. 05: 0 START, 1 END, 2 DROP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeResponse {
    /// 03/04: sent once, first.
    Ok(SubscribeOk),
    /// 05: the first group that will be delivered, sent before its group stream.
    Start {
        group: u64,
    },
    /// 05: the exclusive end: no group at or after `group` will be produced.
    End {
        group: u64,
    },
    Drop(SubscribeDrop),
}

impl SubscribeResponse {
    /// The type varint, or `None` if the response does not exist in `version`.
    pub fn type_code(&self, version: Version) -> Option<u64> {
        match (self, version.has_track_stream()) {
            (Self::Ok(_), false) => Some(0),
            (Self::Drop(_), false) => Some(1),
            (Self::Start { .. }, true) => Some(0),
            (Self::End { .. }, true) => Some(1),
            (Self::Drop(_), true) => Some(2),
            (Self::Ok(_), true) | (Self::Start { .. } | Self::End { .. }, false) => None,
        }
    }
}

impl Message for SubscribeResponse {
    /// Writes nothing (and asserts in debug builds) if the response does not exist in
    /// `version`.
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        let Some(typ) = self.type_code(version) else {
            debug_assert!(false, "{self:?} does not exist in {version}");
            return;
        };
        varint::encode(typ, buf);
        match self {
            Self::Ok(ok) => ok.encode(buf, version),
            Self::Start { group } | Self::End { group } => {
                encode_sized(buf, |body| varint::encode(*group, body))
            }
            Self::Drop(drop) => drop.encode(buf, version),
        }
    }

    fn decode(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let mut rest = *buf;
        let typ = varint::decode(&mut rest)?;
        let msg = match (typ, version.has_track_stream()) {
            (0, false) => Self::Ok(SubscribeOk::decode(&mut rest, version)?),
            (1, false) | (2, true) => Self::Drop(SubscribeDrop::decode(&mut rest, version)?),
            (0, true) => Self::Start {
                group: decode_sized(&mut rest, varint::decode)?,
            },
            (1, true) => Self::End {
                group: decode_sized(&mut rest, varint::decode)?,
            },
            _ => return Err(DecodeError::UnknownType(typ)),
        };
        *buf = rest;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::{fuzz, round_trip, PATH};
    use proptest::prelude::*;

    fn sample() -> Subscribe {
        Subscribe {
            id: 1,
            broadcast: "room".into(),
            track: "video".into(),
            priority: 3,
            ordered: true,
            max_latency: Duration::from_millis(100),
            start_group: Some(0),
            end_group: None,
        }
    }

    #[test]
    fn subscribe_golden() {
        // The same bytes on every version.
        let expect = b"\x12\x01\x04room\x05video\x03\x01\x40\x64\x01\x00";
        for v in Version::ALL {
            assert_eq!(round_trip(&sample(), v), expect);
        }
        // Any non-zero `ordered` byte is true; the broadcast path is normalized.
        let odd = b"\x13\x01\x05/room\x05video\x03\x09\x40\x64\x01\x00";
        assert_eq!(
            Subscribe::decode(&mut &odd[..], Version::Lite05),
            Ok(sample())
        );
    }

    #[test]
    fn responses_golden() {
        let ok = SubscribeResponse::Ok(SubscribeOk {
            priority: 3,
            ordered: false,
            max_latency: Duration::ZERO,
            start_group: None,
            end_group: None,
        });
        let drop = SubscribeResponse::Drop(SubscribeDrop {
            start: 1,
            end: 2,
            error: 13,
        });
        for v in [Version::Lite03, Version::Lite04] {
            assert_eq!(round_trip(&ok, v), b"\x00\x05\x03\x00\x00\x00\x00");
            assert_eq!(round_trip(&drop, v), b"\x01\x03\x01\x02\x0d");
            assert_eq!(
                SubscribeResponse::decode(&mut &b"\x02\x01\x05"[..], v),
                Err(DecodeError::UnknownType(2))
            );
        }
        let v = Version::Lite05;
        let start = SubscribeResponse::Start { group: 5 };
        assert_eq!(round_trip(&start, v), b"\x00\x01\x05");
        let end = SubscribeResponse::End { group: 300 };
        assert_eq!(round_trip(&end, v), b"\x01\x02\x41\x2c");
        assert_eq!(round_trip(&drop, v), b"\x02\x03\x01\x02\x0d");
        assert_eq!(
            SubscribeResponse::decode(&mut &b"\x03\x00"[..], v),
            Err(DecodeError::UnknownType(3))
        );
        assert_eq!(ok.type_code(v), None);
        assert_eq!(start.type_code(Version::Lite04), None);
    }

    #[test]
    fn update_golden() {
        let update = SubscribeUpdate {
            priority: 1,
            ordered: false,
            max_latency: Duration::from_secs(5),
            start_group: Some(5),
            end_group: None,
        };
        for v in Version::ALL {
            assert_eq!(round_trip(&update, v), b"\x06\x01\x00\x53\x88\x06\x00");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            fuzz::<Subscribe>(&bytes);
            fuzz::<SubscribeOk>(&bytes);
            fuzz::<SubscribeDrop>(&bytes);
            fuzz::<SubscribeResponse>(&bytes);
            fuzz::<SubscribeUpdate>(&bytes);
            // A response type followed by a well-sized body reaches the body decoders.
            for typ in 0u8..3 {
                let mut typed = vec![typ];
                varint::encode_bytes(&bytes, &mut typed);
                fuzz::<SubscribeResponse>(&typed);
            }
        }

        #[test]
        fn messages_round_trip(
            id in 0..=varint::MAX,
            broadcast in PATH,
            track in ".{0,30}",
            priority: u8,
            ordered: bool,
            ms in 0..=varint::MAX,
            start in proptest::option::of(0..varint::MAX),
            end in proptest::option::of(0..varint::MAX),
            group in 0..=varint::MAX,
            error in 0..=varint::MAX,
        ) {
            let max_latency = Duration::from_millis(ms);
            let sub = Subscribe {
                id, broadcast, track, priority, ordered, max_latency,
                start_group: start, end_group: end,
            };
            let ok = SubscribeOk { priority, ordered, max_latency, start_group: start, end_group: end };
            let update = SubscribeUpdate {
                priority, ordered, max_latency, start_group: start, end_group: end,
            };
            let drop = SubscribeDrop { start: id, end: group, error };
            for v in Version::ALL {
                round_trip(&sub, v);
                round_trip(&ok, v);
                round_trip(&update, v);
                round_trip(&drop, v);
                round_trip(&SubscribeResponse::Drop(drop.clone()), v);
                if v.has_track_stream() {
                    round_trip(&SubscribeResponse::Start { group }, v);
                    round_trip(&SubscribeResponse::End { group }, v);
                } else {
                    round_trip(&SubscribeResponse::Ok(ok.clone()), v);
                }
            }
        }
    }
}
