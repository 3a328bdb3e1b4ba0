//! The moq-lite versions we speak, their ALPNs, and which features each one has.

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

    /// The ALPN that negotiates this version.
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

    /// Each side opens one SETUP uni stream (05).
    pub fn has_setup_stream(self) -> bool {
        self == Version::Lite05
    }

    /// TRACK streams with TRACK_INFO, SUBSCRIBE_START/END instead of SUBSCRIBE_OK, FETCH
    /// streams, and a zigzag timestamp delta in front of every frame (05).
    pub fn has_track_stream(self) -> bool {
        self == Version::Lite05
    }

    /// An announce stream opens with ANNOUNCE_OK, and the sender leaves its own origin
    /// off the hop chains (the receiver appends ANNOUNCE_OK's origin instead) (05).
    pub fn has_announce_ok(self) -> bool {
        self == Version::Lite05
    }

    /// ANNOUNCE_REQUEST carries the requester's origin to exclude (04, 05).
    pub fn has_exclude_hop(self) -> bool {
        matches!(self, Version::Lite04 | Version::Lite05)
    }

    /// PROBE streams exist (every version here; on 05 only toward a peer whose SETUP
    /// advertised a probe level of at least 1).
    pub fn has_probe(self) -> bool {
        matches!(self, Version::Lite03 | Version::Lite04 | Version::Lite05)
    }

    /// PROBE carries an RTT after the bitrate (04, 05).
    pub fn has_probe_rtt(self) -> bool {
        matches!(self, Version::Lite04 | Version::Lite05)
    }

    /// GOAWAY exists (04, 05).
    pub fn has_goaway(self) -> bool {
        matches!(self, Version::Lite04 | Version::Lite05)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::Lite03 => "moq-lite-03",
            Version::Lite04 => "moq-lite-04",
            Version::Lite05 => "moq-lite-05",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpns_round_trip() {
        for v in Version::ALL {
            assert_eq!(Version::from_alpn(v.alpn()), Some(v));
            assert_eq!(v.to_string().as_bytes(), v.alpn());
        }
        assert_eq!(Version::from_alpn(b"moql"), None);
        assert_eq!(Version::from_alpn(b"moq-lite-06"), None);
        assert_eq!(Version::Lite04.to_string(), "moq-lite-04");
    }

    #[test]
    fn features_per_version() {
        use Version::*;
        let table = [
            // setup, track, announce_ok, exclude_hop, probe, probe_rtt, goaway
            (Lite03, [false, false, false, false, true, false, false]),
            (Lite04, [false, false, false, true, true, true, true]),
            (Lite05, [true, true, true, true, true, true, true]),
        ];
        for (v, expect) in table {
            let got = [
                v.has_setup_stream(),
                v.has_track_stream(),
                v.has_announce_ok(),
                v.has_exclude_hop(),
                v.has_probe(),
                v.has_probe_rtt(),
                v.has_goaway(),
            ];
            assert_eq!(got, expect, "{v}");
        }
    }
}
