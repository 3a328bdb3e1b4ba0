//! HTTP/3 error codes (RFC 9114 §8.1), this layer's error type, and the mapping between
//! WebTransport application error codes and the HTTP/3 codes carried in RESET_STREAM and
//! STOP_SENDING (draft-ietf-webtrans-http3 §4.4).

use super::frame::is_grease;

/// HTTP/3 error codes, as sent in CONNECTION_CLOSE, RESET_STREAM and STOP_SENDING.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H3Error {
    NoError = 0x100,
    GeneralProtocol = 0x101,
    Internal = 0x102,
    StreamCreation = 0x103,
    ClosedCriticalStream = 0x104,
    FrameUnexpected = 0x105,
    Frame = 0x106,
    ExcessiveLoad = 0x107,
    Id = 0x108,
    Settings = 0x109,
    MissingSettings = 0x10a,
    RequestRejected = 0x10b,
    RequestCancelled = 0x10c,
    RequestIncomplete = 0x10d,
    Message = 0x10e,
    Connect = 0x10f,
    VersionFallback = 0x110,
}

impl H3Error {
    /// The code on the wire.
    pub fn code(self) -> u64 {
        self as u64
    }
}

/// What a decoder of this layer can say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not enough bytes yet: nothing was consumed; retry from the same start with more.
    #[error("need more bytes")]
    Short,
    /// The peer broke HTTP/3: close (the connection or the stream) with `code`.
    #[error("{reason} ({code:?})")]
    H3 { code: H3Error, reason: &'static str },
}

impl Error {
    pub(crate) fn h3(code: H3Error, reason: &'static str) -> Self {
        Error::H3 { code, reason }
    }
}

/// The HTTP/3 code of WebTransport application error 0.
const FIRST: u64 = 0x52e4_a40f_a8db;
/// The HTTP/3 code of WebTransport application error `u32::MAX`.
const LAST: u64 = 0x52e5_ac98_3162;

/// WebTransport application error code (u32) -> the HTTP/3 code on RESET_STREAM/STOP_SENDING:
/// 0x52e4a40fa8db + n + n / 0x1e (draft-ietf-webtrans-http3 "first"/"last" range, skipping
/// GREASE values).
pub fn to_h3(code: u32) -> u64 {
    let n = u64::from(code);
    FIRST + n + n / 0x1e
}

/// The reverse of [`to_h3`]; `None` for a code outside the range or on a reserved (GREASE,
/// 0x1f * N + 0x21) value.
pub fn from_h3(code: u64) -> Option<u32> {
    if !(FIRST..=LAST).contains(&code) || is_grease(code) {
        return None;
    }
    let shifted = code - FIRST;
    u32::try_from(shifted - shifted / 0x1f).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn h3_codes_are_stable() {
        use H3Error::*;
        let all = [
            NoError,
            GeneralProtocol,
            Internal,
            StreamCreation,
            ClosedCriticalStream,
            FrameUnexpected,
            Frame,
            ExcessiveLoad,
            Id,
            Settings,
            MissingSettings,
            RequestRejected,
            RequestCancelled,
            RequestIncomplete,
            Message,
            Connect,
            VersionFallback,
        ];
        let codes: Vec<u64> = all.iter().map(|e| e.code()).collect();
        assert_eq!(codes, (0x100..=0x110).collect::<Vec<u64>>());
    }

    #[test]
    fn application_code_vectors() {
        assert_eq!(to_h3(0), 0x52e4a40fa8db);
        assert_eq!(to_h3(1), 0x52e4a40fa8dc);
        assert_eq!(to_h3(0x1d), 0x52e4a40fa8f8);
        // 0x52e4a40fa8f9 is a GREASE value: error 0x1e skips it.
        assert_eq!(to_h3(0x1e), 0x52e4a40fa8fa);
        assert_eq!(to_h3(0x1f), 0x52e4a40fa8fb);
        assert_eq!(to_h3(u32::MAX), 0x52e5ac983162);

        assert_eq!(from_h3(0x52e4a40fa8db), Some(0));
        assert_eq!(from_h3(0x52e4a40fa8f8), Some(0x1d));
        assert_eq!(from_h3(0x52e4a40fa8f9), None);
        assert_eq!(from_h3(0x52e4a40fa8fa), Some(0x1e));
        assert_eq!(from_h3(0x52e5ac983162), Some(u32::MAX));
        assert_eq!(from_h3(0x52e4a40fa8da), None);
        assert_eq!(from_h3(0x52e5ac983163), None);
        assert_eq!(from_h3(0), None);
        assert_eq!(from_h3(H3Error::RequestCancelled.code()), None);
    }

    #[test]
    fn grease_codes_inside_the_range_map_to_none() {
        // The first GREASE value at or above FIRST, then every 0x1f after it.
        let first_grease = (FIRST..FIRST + 0x1f).find(|&c| is_grease(c)).unwrap();
        assert_eq!(first_grease, 0x52e4a40fa8f9);
        let mut greases = 0u64;
        for c in (first_grease..=LAST).step_by(0x1f).take(100_000) {
            assert!(is_grease(c));
            assert_eq!(from_h3(c), None, "{c:#x}");
            greases += 1;
        }
        assert_eq!(greases, 100_000);
        // And around the top of the range.
        for c in LAST - 0x40..=LAST {
            assert_eq!(from_h3(c).is_none(), is_grease(c), "{c:#x}");
        }
    }

    proptest! {
        #[test]
        fn application_codes_round_trip(n: u32) {
            let code = to_h3(n);
            prop_assert!(!is_grease(code));
            prop_assert_eq!(from_h3(code), Some(n));
        }

        #[test]
        fn every_h3_code_maps_back_or_not(code in FIRST - 100..LAST + 100) {
            match from_h3(code) {
                Some(n) => prop_assert_eq!(to_h3(n), code),
                None => prop_assert!(is_grease(code) || !(FIRST..=LAST).contains(&code)),
            }
        }
    }
}
