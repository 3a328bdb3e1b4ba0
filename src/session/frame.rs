//! A frame as it travels through the relay: its wire header and its payload, both shared `Bytes`.
//!
//! The header is kept in its lite-05 form (timestamp delta, then size). Older versions carry
//! no timestamp, so they are sent the header's tail; a lite-05 subscriber of a lite-03/04
//! publisher gets a static zero delta in front. No version needs a copy of anything.

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::{FrameHeader, Version};

/// A zigzag-encoded timestamp delta of zero: one varint byte.
static ZERO_DELTA: &[u8] = &[0];

/// One frame of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Encoded header: `[timestamp delta]` (only when `ts_len > 0`) then the size varint.
    header: Bytes,
    /// Bytes of `header` taken by the timestamp delta (0 when the source version has none).
    ts_len: u8,
    payload: Bytes,
}

impl Frame {
    /// Assembles a frame from its parsed parts (`header` as received, `ts_len` bytes of it
    /// being the timestamp delta).
    pub fn from_parts(header: Bytes, ts_len: u8, payload: Bytes) -> Self {
        Self {
            header,
            ts_len,
            payload,
        }
    }

    /// Builds a frame to publish with the given timestamp delta (lite-05 form).
    pub fn new(payload: Bytes, timestamp: u64, prev_timestamp: u64) -> Self {
        let mut buf = BytesMut::with_capacity(16);
        let header = FrameHeader {
            timestamp,
            size: payload.len() as u64,
        };
        header.encode(&mut buf, Version::Lite05, prev_timestamp);
        let size_len = crate::wire::varint::size(payload.len() as u64);
        let ts_len = (buf.len() - size_len) as u8;
        Self {
            header: buf.freeze(),
            ts_len,
            payload,
        }
    }

    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Bytes this frame occupies on the wire (header and payload).
    pub fn wire_len(&self) -> usize {
        self.header.len() + self.payload.len()
    }

    /// Memory a received frame keeps alive: its bytes, and at least the smallest receive
    /// buffer it can have been cut from (a 100-byte frame alone on its group stream holds
    /// a whole read buffer). What a cache budget counts.
    pub fn memory_cost(&self) -> usize {
        self.wire_len().max(super::recv::MIN_READ)
    }

    /// Appends the frame's wire form for `version` to `out`, as shared handles.
    pub fn write_to(&self, version: Version, out: &mut impl Extend<Bytes>) {
        if version.has_track_stream() {
            if self.ts_len == 0 {
                out.extend([Bytes::from_static(ZERO_DELTA)]);
            }
            out.extend([self.header.clone(), self.payload.clone()]);
        } else {
            out.extend([
                self.header.slice(self.ts_len as usize..),
                self.payload.clone(),
            ]);
        }
    }

    /// The frame's wire form for `version` as one contiguous buffer (tests and tools).
    pub fn to_wire(&self, version: Version) -> Vec<u8> {
        let mut parts: Vec<Bytes> = Vec::new();
        self.write_to(version, &mut parts);
        let mut out = Vec::new();
        for p in parts {
            out.put_slice(&p);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_share_the_payload() {
        let payload = Bytes::from_static(b"hello");
        let frame = Frame::new(payload.clone(), 0, 0);
        assert_eq!(frame.to_wire(Version::Lite05), b"\x00\x05hello");
        assert_eq!(frame.to_wire(Version::Lite04), b"\x05hello");
        let mut parts = Vec::new();
        frame.write_to(Version::Lite03, &mut parts);
        assert_eq!(parts[1].as_ptr(), payload.as_ptr());
    }

    #[test]
    fn timestampless_source_gets_a_zero_delta() {
        let frame = Frame::from_parts(Bytes::from_static(b"\x03"), 0, Bytes::from_static(b"abc"));
        assert_eq!(frame.to_wire(Version::Lite05), b"\x00\x03abc");
        assert_eq!(frame.to_wire(Version::Lite03), b"\x03abc");
    }
}
