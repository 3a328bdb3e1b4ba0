//! The moq-lite versions we speak, their ALPNs, and what each one has.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    Lite03,
    Lite04,
    Lite05,
}

impl Version {
    /// Preference order, newest first.
    pub const ALL: [Version; 3] = [Version::Lite05, Version::Lite04, Version::Lite03];

    pub fn alpn(self) -> &'static [u8] {
        match self {
            Version::Lite03 => b"moq-lite-03",
            Version::Lite04 => b"moq-lite-04",
            Version::Lite05 => b"moq-lite-05",
        }
    }

    pub fn from_alpn(alpn: &[u8]) -> Option<Version> {
        Self::ALL.into_iter().find(|v| v.alpn() == alpn)
    }

    /// SETUP uni streams (with the request path).
    pub fn has_setup_stream(self) -> bool {
        self == Version::Lite05
    }

    /// TRACK/TRACK_INFO, SUBSCRIBE_START/END instead of SUBSCRIBE_OK, frame timestamps.
    pub fn has_track_stream(self) -> bool {
        self == Version::Lite05
    }

    /// ANNOUNCE_OK before the first announcements.
    pub fn has_announce_ok(self) -> bool {
        self == Version::Lite05
    }

    /// ANNOUNCE_REQUEST carries the requester's origin to exclude.
    pub fn has_exclude_hop(self) -> bool {
        matches!(self, Version::Lite04 | Version::Lite05)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(self.alpn()).unwrap_or("moq-lite"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpns_round_trip() {
        for v in Version::ALL {
            assert_eq!(Version::from_alpn(v.alpn()), Some(v));
        }
        assert_eq!(Version::from_alpn(b"moql"), None);
        assert_eq!(Version::Lite04.to_string(), "moq-lite-04");
    }
}
