//! Group (uni) streams: the header after `DataType::Group`, and the header in front of
//! each frame payload (lite-05 adds a zigzag timestamp delta).

use bytes::BufMut;

use super::{decode_sized, varint, DecodeError, Message, Version};

/// Largest encoded [`FrameHeader`]: a timestamp delta and a size, one varint each.
pub const MAX_FRAME_HEADER: usize = 2 * varint::MAX_SIZE;

/// Size-prefixed, the same on every version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupHeader {
    /// The id of the SUBSCRIBE this group answers.
    pub subscribe: u64,
    pub sequence: u64,
}

impl Message for GroupHeader {
    fn encode<B: BufMut>(&self, buf: &mut B, _version: Version) {
        // Per group, so written in place rather than staged.
        let size = varint::size(self.subscribe) + varint::size(self.sequence);
        varint::encode(size as u64, buf);
        varint::encode(self.subscribe, buf);
        varint::encode(self.sequence, buf);
    }

    fn decode(buf: &mut &[u8], _version: Version) -> Result<Self, DecodeError> {
        decode_sized(buf, |body| {
            Ok(Self {
                subscribe: varint::decode(body)?,
                sequence: varint::decode(body)?,
            })
        })
    }
}

/// What precedes each frame payload on a group or fetch stream (not size-prefixed).
///
/// lite-05: the timestamp as a zigzag delta against the previous frame's (0 before the
/// first frame of a stream), then the payload size. lite-03/04: the size only; timestamps
/// decode as 0. A stream that ends (FIN) where a header would start has no more frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// In the track's timescale (see `TrackInfo`).
    pub timestamp: u64,
    /// Payload bytes that follow.
    pub size: u64,
}

impl FrameHeader {
    /// Appends the header. On lite-05 a delta outside `-2^61..2^61` cannot be expressed and
    /// is clamped (moq-net refuses to send such a frame).
    pub fn encode<B: BufMut>(&self, buf: &mut B, version: Version, prev_timestamp: u64) {
        if version.has_track_stream() {
            let limit = 1i128 << 61;
            let delta =
                (i128::from(self.timestamp) - i128::from(prev_timestamp)).clamp(-limit, limit - 1);
            varint::encode_zigzag(delta as i64, buf);
        }
        varint::encode(self.size, buf);
    }

    /// Reads a header, advancing `buf` only on success. A timestamp that leaves
    /// `0..=varint::MAX` is `Invalid`.
    pub fn decode(
        buf: &mut &[u8],
        version: Version,
        prev_timestamp: u64,
    ) -> Result<FrameHeader, DecodeError> {
        let mut rest = *buf;
        let timestamp = if version.has_track_stream() {
            let delta = varint::decode_zigzag(&mut rest)?;
            let timestamp = i128::from(prev_timestamp) + i128::from(delta);
            u64::try_from(timestamp)
                .ok()
                .filter(|t| *t <= varint::MAX)
                .ok_or(DecodeError::Invalid("frame timestamp out of range"))?
        } else {
            0
        };
        let size = varint::decode(&mut rest)?;
        *buf = rest;
        Ok(Self { timestamp, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::{fuzz, round_trip};
    use proptest::prelude::*;

    fn frame_bytes(frames: &[FrameHeader], version: Version) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut prev = 0;
        for frame in frames {
            frame.encode(&mut buf, version, prev);
            prev = frame.timestamp;
        }
        buf
    }

    #[test]
    fn group_header_golden() {
        let head = GroupHeader {
            subscribe: 3,
            sequence: 300,
        };
        for v in Version::ALL {
            assert_eq!(round_trip(&head, v), b"\x03\x03\x41\x2c");
        }
    }

    #[test]
    fn frame_header_golden() {
        let frames = [
            FrameHeader {
                timestamp: 1000,
                size: 5,
            },
            FrameHeader {
                timestamp: 990,
                size: 300,
            },
            FrameHeader {
                timestamp: 990,
                size: 0,
            },
        ];
        // lite-05: zigzag(1000) = 2000, zigzag(-10) = 19, zigzag(0) = 0.
        let wire = frame_bytes(&frames, Version::Lite05);
        assert_eq!(wire, b"\x47\xd0\x05\x13\x41\x2c\x00\x00");
        let mut slice = &wire[..];
        let mut prev = 0;
        for frame in frames {
            let got = FrameHeader::decode(&mut slice, Version::Lite05, prev).unwrap();
            assert_eq!(got, frame);
            prev = got.timestamp;
        }
        assert!(slice.is_empty());
        // lite-03/04: sizes only, timestamps read as 0.
        for v in [Version::Lite03, Version::Lite04] {
            let wire = frame_bytes(&frames, v);
            assert_eq!(wire, b"\x05\x41\x2c\x00");
            let got = FrameHeader::decode(&mut &wire[..], v, 77).unwrap();
            assert_eq!(
                got,
                FrameHeader {
                    timestamp: 0,
                    size: 5
                }
            );
        }
    }

    #[test]
    fn frame_header_short_and_invalid() {
        for (bytes, v) in [
            (&b""[..], Version::Lite05),
            (b"\x02", Version::Lite05),
            (b"\x47\xd0", Version::Lite05),
            (b"\x47\xd0\x41", Version::Lite05),
            (b"", Version::Lite04),
            (b"\x80\x00", Version::Lite03),
        ] {
            let mut slice = bytes;
            assert_eq!(
                FrameHeader::decode(&mut slice, v, 0),
                Err(DecodeError::Short)
            );
            assert_eq!(slice.len(), bytes.len());
        }
        // Below zero or above varint::MAX is invalid, never a panic.
        assert!(matches!(
            FrameHeader::decode(&mut &b"\x03\x05"[..], Version::Lite05, 0),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(
            FrameHeader::decode(&mut &b"\x02\x05"[..], Version::Lite05, varint::MAX),
            Err(DecodeError::Invalid(_))
        ));
        let mut buf = Vec::new();
        FrameHeader {
            timestamp: varint::MAX,
            size: varint::MAX,
        }
        .encode(&mut buf, Version::Lite05, 0);
        assert!(buf.len() <= MAX_FRAME_HEADER);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            prev in any::<u64>(),
        ) {
            fuzz::<GroupHeader>(&bytes);
            for v in Version::ALL {
                let mut slice = &bytes[..];
                // A whole group stream body: headers and payloads until an error.
                let mut prev = prev;
                while let Ok(head) = FrameHeader::decode(&mut slice, v, prev) {
                    prev = head.timestamp;
                    let Some(rest) = usize::try_from(head.size).ok().and_then(|n| slice.get(n..)) else {
                        break;
                    };
                    slice = rest;
                }
            }
        }

        #[test]
        fn frame_headers_round_trip(
            prev in 0..=varint::MAX,
            delta in -(1i64 << 61)..(1i64 << 61),
            size in 0..=varint::MAX,
            subscribe in 0..=varint::MAX,
            sequence in 0..=varint::MAX,
        ) {
            for v in Version::ALL {
                round_trip(&GroupHeader { subscribe, sequence }, v);
            }
            // Any timestamp within 2^61 of the previous one, staying in 0..=MAX.
            let ts = prev.saturating_add_signed(delta).min(varint::MAX);
            let head = FrameHeader { timestamp: ts, size };
            let mut buf = Vec::new();
            head.encode(&mut buf, Version::Lite05, prev);
            prop_assert!(buf.len() <= MAX_FRAME_HEADER);
            let mut slice = &buf[..];
            prop_assert_eq!(FrameHeader::decode(&mut slice, Version::Lite05, prev), Ok(head));
            prop_assert!(slice.is_empty());
            for n in 0..buf.len() {
                prop_assert_eq!(
                    FrameHeader::decode(&mut &buf[..n], Version::Lite05, prev),
                    Err(DecodeError::Short)
                );
            }
        }
    }
}
