//! SUBSCRIBE, its responses (lite-03/04: OK or DROP; lite-05: START, END or DROP) and
//! SUBSCRIBE_UPDATE.

use std::time::Duration;

use bytes::BufMut;

use super::varint::{
    self, decode_duration, decode_option, decode_string, decode_u8, encode_duration, encode_option,
    encode_string,
};
use super::{sized, DecodeError, Message, Version};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub id: u64,
    pub broadcast: String,
    pub track: String,
    pub priority: u8,
    pub ordered: bool,
    pub max_latency: Duration,
    pub start_group: Option<u64>,
    pub end_group: Option<u64>,
}

impl Message for Subscribe {
    fn encode_body(&self, buf: &mut Vec<u8>, _version: Version) {
        varint::encode(self.id, buf);
        encode_string(&self.broadcast, buf);
        encode_string(&self.track, buf);
        buf.push(self.priority);
        buf.push(self.ordered as u8);
        encode_duration(self.max_latency, buf);
        encode_option(self.start_group, buf);
        encode_option(self.end_group, buf);
    }

    fn decode_body(buf: &mut &[u8], _version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            id: varint::decode(buf)?,
            broadcast: decode_string(buf)?,
            track: decode_string(buf)?,
            priority: decode_u8(buf)?,
            ordered: decode_u8(buf)? != 0,
            max_latency: decode_duration(buf)?,
            start_group: decode_option(buf)?,
            end_group: decode_option(buf)?,
        })
    }
}

/// lite-03/04 acceptance of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOk {
    pub priority: u8,
    pub ordered: bool,
    pub max_latency: Duration,
    pub start_group: Option<u64>,
    pub end_group: Option<u64>,
}

impl Message for SubscribeOk {
    fn encode_body(&self, buf: &mut Vec<u8>, _version: Version) {
        buf.push(self.priority);
        buf.push(self.ordered as u8);
        encode_duration(self.max_latency, buf);
        encode_option(self.start_group, buf);
        encode_option(self.end_group, buf);
    }

    fn decode_body(buf: &mut &[u8], _version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            priority: decode_u8(buf)?,
            ordered: decode_u8(buf)? != 0,
            max_latency: decode_duration(buf)?,
            start_group: decode_option(buf)?,
            end_group: decode_option(buf)?,
        })
    }
}

/// Groups `start..=end` will not be delivered, with an error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeDrop {
    pub start: u64,
    pub end: u64,
    pub error: u64,
}

impl Message for SubscribeDrop {
    fn encode_body(&self, buf: &mut Vec<u8>, _version: Version) {
        varint::encode(self.start, buf);
        varint::encode(self.end, buf);
        varint::encode(self.error, buf);
    }

    fn decode_body(buf: &mut &[u8], _version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            start: varint::decode(buf)?,
            end: varint::decode(buf)?,
            error: varint::decode(buf)?,
        })
    }
}

/// A group number as a one-field message (START and END).
struct GroupNumber(u64);

impl Message for GroupNumber {
    fn encode_body(&self, buf: &mut Vec<u8>, _version: Version) {
        varint::encode(self.0, buf);
    }

    fn decode_body(buf: &mut &[u8], _version: Version) -> Result<Self, DecodeError> {
        Ok(Self(varint::decode(buf)?))
    }
}

/// A message on the publisher's half of a subscribe stream: a type, then a sized body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeResponse {
    /// lite-03/04.
    Ok(SubscribeOk),
    /// lite-05: the first group of the subscription.
    Start {
        group: u64,
    },
    /// lite-05: the subscription ends before this group.
    End {
        group: u64,
    },
    Drop(SubscribeDrop),
}

impl SubscribeResponse {
    fn type_code(&self, version: Version) -> u64 {
        match (self, version.has_track_stream()) {
            (Self::Ok(_), _) | (Self::Start { .. }, _) => 0,
            (Self::Drop(_), false) | (Self::End { .. }, _) => 1,
            (Self::Drop(_), true) => 2,
        }
    }
}

impl SubscribeResponse {
    pub fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        varint::encode(self.type_code(version), buf);
        match self {
            Self::Ok(ok) => ok.encode(buf, version),
            Self::Start { group } | Self::End { group } => GroupNumber(*group).encode(buf, version),
            Self::Drop(drop) => drop.encode(buf, version),
        }
    }

    pub fn decode(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let mut slice = *buf;
        let typ = varint::decode(&mut slice)?;
        let msg = match (typ, version.has_track_stream()) {
            (0, false) => Self::Ok(SubscribeOk::decode(&mut slice, version)?),
            (1, false) | (2, true) => Self::Drop(SubscribeDrop::decode(&mut slice, version)?),
            (0, true) => Self::Start {
                group: GroupNumber::decode(&mut slice, version)?.0,
            },
            (1, true) => Self::End {
                group: GroupNumber::decode(&mut slice, version)?.0,
            },
            _ => {
                // Still refuse oversized bodies before reporting the type.
                sized(&mut slice)?;
                return Err(DecodeError::UnknownType(typ));
            }
        };
        *buf = slice;
        Ok(msg)
    }
}

/// Changes to a subscription, sent by the subscriber on its half of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeUpdate {
    pub priority: u8,
    pub ordered: bool,
    pub max_latency: Duration,
    pub start_group: Option<u64>,
    pub end_group: Option<u64>,
}

impl Message for SubscribeUpdate {
    fn encode_body(&self, buf: &mut Vec<u8>, _version: Version) {
        buf.push(self.priority);
        buf.push(self.ordered as u8);
        encode_duration(self.max_latency, buf);
        encode_option(self.start_group, buf);
        encode_option(self.end_group, buf);
    }

    fn decode_body(buf: &mut &[u8], _version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            priority: decode_u8(buf)?,
            ordered: decode_u8(buf)? != 0,
            max_latency: decode_duration(buf)?,
            start_group: decode_option(buf)?,
            end_group: decode_option(buf)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::round_trip;
    use proptest::prelude::*;

    fn response_round_trip(msg: &SubscribeResponse, version: Version) -> Vec<u8> {
        let mut buf = Vec::new();
        msg.encode(&mut buf, version);
        assert_eq!(
            &SubscribeResponse::decode(&mut &buf[..], version).unwrap(),
            msg
        );
        for n in 0..buf.len() {
            assert_eq!(
                SubscribeResponse::decode(&mut &buf[..n], version),
                Err(DecodeError::Short)
            );
        }
        buf
    }

    #[test]
    fn golden_bytes() {
        let sub = Subscribe {
            id: 1,
            broadcast: "b".into(),
            track: "t".into(),
            priority: 3,
            ordered: false,
            max_latency: Duration::ZERO,
            start_group: Some(0),
            end_group: None,
        };
        assert_eq!(
            round_trip(&sub, Version::Lite03),
            b"\x0a\x01\x01b\x01t\x03\x00\x00\x01\x00"
        );
        let ok = SubscribeResponse::Ok(SubscribeOk {
            priority: 3,
            ordered: false,
            max_latency: Duration::ZERO,
            start_group: None,
            end_group: None,
        });
        assert_eq!(
            response_round_trip(&ok, Version::Lite04),
            b"\x00\x05\x03\x00\x00\x00\x00"
        );
        let start = SubscribeResponse::Start { group: 5 };
        assert_eq!(
            response_round_trip(&start, Version::Lite05),
            b"\x00\x01\x05"
        );
        let end = SubscribeResponse::End { group: 6 };
        assert_eq!(response_round_trip(&end, Version::Lite05), b"\x01\x01\x06");
        let drop = SubscribeResponse::Drop(SubscribeDrop {
            start: 1,
            end: 2,
            error: 3,
        });
        assert_eq!(
            response_round_trip(&drop, Version::Lite04),
            b"\x01\x03\x01\x02\x03"
        );
        assert_eq!(
            response_round_trip(&drop, Version::Lite05),
            b"\x02\x03\x01\x02\x03"
        );
        assert_eq!(
            SubscribeResponse::decode(&mut &b"\x03\x00"[..], Version::Lite05),
            Err(DecodeError::UnknownType(3))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            for v in Version::ALL {
                let _ = Subscribe::decode(&mut &bytes[..], v);
                let _ = SubscribeResponse::decode(&mut &bytes[..], v);
                let _ = SubscribeUpdate::decode(&mut &bytes[..], v);
            }
        }

        #[test]
        fn subscribes_round_trip(id in 0..=varint::MAX, b in ".{0,30}", t in ".{0,30}", priority: u8, ordered: bool,
                                 ms in 0..=varint::MAX, start in proptest::option::of(0..varint::MAX), end in proptest::option::of(0..varint::MAX)) {
            let sub = Subscribe { id, broadcast: b, track: t, priority, ordered, max_latency: Duration::from_millis(ms), start_group: start, end_group: end };
            for v in Version::ALL {
                round_trip(&sub, v);
            }
        }
    }
}
