//! The header of a group (uni) stream and the header in front of each frame payload.

use bytes::BufMut;

use super::{varint, DecodeError, Message, Version};

/// Largest encoded frame header: timestamp delta and size varints.
pub const MAX_FRAME_HEADER: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupHeader {
    /// The subscription id the group belongs to.
    pub subscribe: u64,
    pub sequence: u64,
}

impl Message for GroupHeader {
    fn encode_body(&self, buf: &mut Vec<u8>, _version: Version) {
        varint::encode(self.subscribe, buf);
        varint::encode(self.sequence, buf);
    }

    fn decode_body(buf: &mut &[u8], _version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            subscribe: varint::decode(buf)?,
            sequence: varint::decode(buf)?,
        })
    }
}

/// lite-05: zigzag timestamp delta against the previous frame of the group, then the size;
/// lite-03/04: the size alone (timestamp 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub timestamp: u64,
    pub size: u64,
}

impl FrameHeader {
    pub fn encode<B: BufMut>(&self, buf: &mut B, version: Version, prev_timestamp: u64) {
        if version.has_track_stream() {
            let delta = (i128::from(self.timestamp) - i128::from(prev_timestamp))
                .clamp(-(1 << 61), (1 << 61) - 1) as i64;
            varint::encode_zigzag(delta, buf);
        }
        varint::encode(self.size, buf);
    }

    pub fn decode(
        buf: &mut &[u8],
        version: Version,
        prev_timestamp: u64,
    ) -> Result<Self, DecodeError> {
        let mut slice = *buf;
        let timestamp = if version.has_track_stream() {
            let delta = varint::decode_zigzag(&mut slice)?;
            let ts = i128::from(prev_timestamp) + i128::from(delta);
            u64::try_from(ts)
                .ok()
                .filter(|t| *t <= varint::MAX)
                .ok_or(DecodeError::Invalid("frame timestamp out of range"))?
        } else {
            0
        };
        let size = varint::decode(&mut slice)?;
        *buf = slice;
        Ok(Self { timestamp, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::round_trip;
    use proptest::prelude::*;

    #[test]
    fn golden_bytes() {
        let head = GroupHeader {
            subscribe: 3,
            sequence: 300,
        };
        assert_eq!(round_trip(&head, Version::Lite04), b"\x03\x03\x41\x2c");
        let frame = FrameHeader {
            timestamp: 40,
            size: 5,
        };
        let mut buf = Vec::new();
        frame.encode(&mut buf, Version::Lite05, 42);
        assert_eq!(buf, b"\x03\x05"); // delta -2 -> zigzag 3
        assert_eq!(
            FrameHeader::decode(&mut &buf[..], Version::Lite05, 42).unwrap(),
            frame
        );
        let mut buf = Vec::new();
        frame.encode(&mut buf, Version::Lite03, 42);
        assert_eq!(buf, b"\x05");
        assert_eq!(
            FrameHeader::decode(&mut &b""[..], Version::Lite05, 0),
            Err(DecodeError::Short)
        );
        assert_eq!(
            FrameHeader::decode(&mut &b"\x02"[..], Version::Lite05, 0),
            Err(DecodeError::Short)
        );
        // A delta below zero from timestamp 0 is invalid, not a panic.
        assert!(matches!(
            FrameHeader::decode(&mut &b"\x03\x05"[..], Version::Lite05, 0),
            Err(DecodeError::Invalid(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), prev in any::<u64>()) {
            for v in Version::ALL {
                let _ = FrameHeader::decode(&mut &bytes[..], v, prev);
                let _ = GroupHeader::decode(&mut &bytes[..], v);
            }
        }

        #[test]
        fn frame_headers_round_trip(ts in 0..=varint::MAX, prev in 0..=varint::MAX, size in 0..=varint::MAX) {
            prop_assume!((i128::from(ts) - i128::from(prev)).abs() < (1 << 61));
            let h = FrameHeader { timestamp: ts, size };
            let mut buf = Vec::new();
            h.encode(&mut buf, Version::Lite05, prev);
            prop_assert!(buf.len() <= MAX_FRAME_HEADER);
            prop_assert_eq!(FrameHeader::decode(&mut &buf[..], Version::Lite05, prev).unwrap(), h);
        }
    }
}
