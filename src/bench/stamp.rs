//! What a bench frame carries and what a subscriber learns from it: the publisher's send
//! time and the frame's index in its track, and from those latency and lost frames.
//!
//! Pure data handling, no clock and no I/O: the caller passes the times in.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of a frame taken by the stamp; frames are at least this long.
pub const STAMP_LEN: usize = 16;

/// The first bytes of every bench frame: when it was sent and which frame of its track
/// it is. Both little-endian `u64`: nanoseconds since the UNIX epoch, then the index
/// (0, 1, 2, ... in publishing order, across groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub sent_ns: u64,
    pub index: u64,
}

impl Stamp {
    /// A payload of `size` bytes (at least [`STAMP_LEN`]) starting with this stamp,
    /// zeros after it.
    pub fn payload(&self, size: usize) -> Bytes {
        let mut buf = BytesMut::with_capacity(size.max(STAMP_LEN));
        buf.put_u64_le(self.sent_ns);
        buf.put_u64_le(self.index);
        buf.resize(size.max(STAMP_LEN), 0);
        buf.freeze()
    }

    /// The stamp at the start of `payload`, if it is long enough to carry one.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let sent = payload.get(..8)?;
        let index = payload.get(8..16)?;
        Some(Self {
            sent_ns: u64::from_le_bytes(sent.try_into().ok()?),
            index: u64::from_le_bytes(index.try_into().ok()?),
        })
    }

    /// Microseconds from sending to `now_ns` (0 if the clock went backwards).
    pub fn latency_us(&self, now_ns: u64) -> u64 {
        now_ns.saturating_sub(self.sent_ns) / 1000
    }
}

/// One subscriber's view of its track's frame indices, for counting lost frames.
///
/// A subscriber joins at some group and expects every frame from the first one it sees
/// on. Groups travel on parallel streams, so indices may arrive out of order across
/// groups; the lowest and highest seen bound what was expected, and whatever in that
/// range (or up to the last published frame, at the end) did not arrive is lost. QUIC
/// streams deliver each frame at most once, so no index is counted twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracker {
    lowest: Option<u64>,
    highest: u64,
    received: u64,
}

impl Tracker {
    pub fn record(&mut self, index: u64) {
        self.lowest = Some(self.lowest.map_or(index, |l| l.min(index)));
        self.highest = self.highest.max(index);
        self.received += 1;
    }

    /// Frames received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Frames expected but not received, given the last index the publisher sent
    /// (`None`: count only gaps between frames seen). A subscriber that saw nothing has
    /// no known start and counts nothing.
    pub fn lost(&self, last_published: Option<u64>) -> u64 {
        let Some(lowest) = self.lowest else {
            return 0;
        };
        let last = last_published.map_or(self.highest, |p| p.max(self.highest));
        (last - lowest + 1).saturating_sub(self.received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_at_the_front_of_the_payload() {
        let stamp = Stamp {
            sent_ns: 1_764_000_000_123_456_789,
            index: 42,
        };
        let payload = stamp.payload(5000);
        assert_eq!(payload.len(), 5000);
        assert_eq!(Stamp::parse(&payload), Some(stamp));
        assert!(payload[STAMP_LEN..].iter().all(|&b| b == 0));
        assert_eq!(&payload[8..16], &42u64.to_le_bytes());
    }

    #[test]
    fn short_payloads_are_padded_or_refused() {
        let stamp = Stamp {
            sent_ns: 7,
            index: 1,
        };
        assert_eq!(stamp.payload(3).len(), STAMP_LEN);
        assert_eq!(Stamp::parse(&[0u8; 15]), None);
    }

    #[test]
    fn latency_is_in_microseconds_and_never_negative() {
        let stamp = Stamp {
            sent_ns: 10_000_000,
            index: 0,
        };
        assert_eq!(stamp.latency_us(12_500_000), 2500);
        assert_eq!(stamp.latency_us(9_000_000), 0);
    }

    #[test]
    fn in_order_frames_lose_nothing() {
        let mut t = Tracker::default();
        for i in 100..200 {
            t.record(i);
        }
        assert_eq!(t.received(), 100);
        assert_eq!(t.lost(None), 0);
        assert_eq!(t.lost(Some(199)), 0);
    }

    #[test]
    fn groups_out_of_order_are_not_gaps() {
        let mut t = Tracker::default();
        // Group 2 (frames 4..6) shows up before group 1 (frames 2..4).
        for i in [4, 5, 2, 3, 6, 7] {
            t.record(i);
        }
        assert_eq!(t.lost(Some(7)), 0);
    }

    #[test]
    fn missing_frames_and_a_missing_tail_are_lost() {
        let mut t = Tracker::default();
        for i in [10, 11, 14, 15] {
            t.record(i);
        }
        assert_eq!(t.lost(None), 2, "12 and 13");
        assert_eq!(
            t.lost(Some(18)),
            5,
            "and 16..=18, published but never delivered"
        );
        // The publisher's last index may lag what we saw (read before our last frame).
        assert_eq!(t.lost(Some(12)), 2);
    }

    #[test]
    fn a_subscriber_that_saw_nothing_counts_nothing() {
        assert_eq!(Tracker::default().lost(Some(100)), 0);
    }
}
