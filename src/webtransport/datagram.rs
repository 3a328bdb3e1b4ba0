//! HTTP datagrams (RFC 9297 §2.1): a quarter-stream-id varint naming the CONNECT stream, then
//! the WebTransport payload.

use super::varint;

/// An HTTP datagram's payload if its quarter-stream-id names session `session` (its CONNECT
/// stream id / 4), else None; Short/garbage -> None.
pub fn strip(datagram: &[u8], session: u64) -> Option<&[u8]> {
    let mut rest = datagram;
    let quarter = varint(&mut rest).ok()?;
    (quarter.checked_mul(4) == Some(session)).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strips_its_own_session_only() {
        assert_eq!(strip(&[0x00, 1, 2, 3], 0), Some(&[1, 2, 3][..]));
        assert_eq!(strip(&[0x00], 0), Some(&[][..]));
        assert_eq!(strip(&[0x01, 1], 4), Some(&[1][..]));
        assert_eq!(strip(&[0x40, 0x01, 1], 4), Some(&[1][..]));
        assert_eq!(strip(&[0x01, 1], 0), None);
        assert_eq!(strip(&[0x00, 1], 4), None);
        // Not a client bidi stream id: nothing can name it.
        assert_eq!(strip(&[0x00, 1], 1), None);
        assert_eq!(strip(&[], 0), None);
        assert_eq!(strip(&[0x40], 0), None);
    }

    proptest! {
        #[test]
        fn arbitrary_datagrams(bytes in proptest::collection::vec(any::<u8>(), 0..32), session: u64) {
            if let Some(payload) = strip(&bytes, session) {
                prop_assert!(bytes.ends_with(payload));
                prop_assert_eq!(session % 4, 0);
            }
        }
    }
}
