//! The HTTP/3 SETTINGS frame (RFC 9114 §7.2.4) with the settings WebTransport needs, and the
//! opening bytes of the control streams we send (server and client).

use bytes::{Bytes, BytesMut};

use super::error::{Error, H3Error};
use super::frame;
use super::stream::UNI_CONTROL;
use super::varint;
use crate::wire::varint::{encode, size};

/// RFC 9220: Extended CONNECT.
pub const ENABLE_CONNECT_PROTOCOL: u64 = 0x08;
/// RFC 9297: HTTP datagrams.
pub const H3_DATAGRAM: u64 = 0x33;
/// draft-ietf-webtrans-http3-02 ENABLE_WEBTRANSPORT (what Chromium requires).
pub const WEBTRANSPORT_DRAFT02: u64 = 0x2b60_3742;
/// draft-ietf-webtrans-http3-07 WEBTRANSPORT_MAX_SESSIONS.
pub const WT_MAX_SESSIONS_DRAFT07: u64 = 0xc671_706a;
/// draft-ietf-webtrans-http3-13/14 WT_MAX_SESSIONS.
pub const WT_MAX_SESSIONS: u64 = 0x14e9_cd29;
/// draft-ietf-webtrans-http3-15 WT_ENABLED: understood when a peer sends it, never sent by us
/// (it comes with stream flow-control settings we do not implement).
pub const WT_ENABLED: u64 = 0x2c7c_f000;
/// draft-ietf-masque-h3-datagram-04 H3_DATAGRAM.
pub const H3_DATAGRAM_DRAFT04: u64 = 0xff_d277;

/// What a peer's SETTINGS told us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// ENABLE_CONNECT_PROTOCOL = 1.
    pub connect_protocol: bool,
    /// H3_DATAGRAM (or its draft-04 id) = 1.
    pub datagram: bool,
    /// Any WebTransport enable / max-sessions id with a non-zero value.
    pub webtransport: bool,
}

/// The SETTINGS frame payload (no frame header); duplicates and HTTP/2 ids (0x02..=0x05) are
/// H3Error::Settings; unknown and GREASE ids are ignored; a value that is not 0/1 for a
/// boolean setting is H3Error::Settings; a payload that ends inside a setting is
/// H3Error::Frame.
pub fn decode(payload: &[u8]) -> Result<Settings, Error> {
    let mut buf = payload;
    let mut seen = Vec::new();
    let mut settings = Settings::default();
    while !buf.is_empty() {
        let truncated = |_| Error::h3(H3Error::Frame, "SETTINGS payload ends inside a setting");
        let id = varint(&mut buf).map_err(truncated)?;
        let value = varint(&mut buf).map_err(truncated)?;
        if seen.contains(&id) {
            return Err(Error::h3(H3Error::Settings, "duplicate setting"));
        }
        seen.push(id);
        match id {
            0x02..=0x05 => return Err(Error::h3(H3Error::Settings, "HTTP/2 setting")),
            ENABLE_CONNECT_PROTOCOL => settings.connect_protocol = boolean(value)?,
            H3_DATAGRAM | H3_DATAGRAM_DRAFT04 => settings.datagram |= boolean(value)?,
            WEBTRANSPORT_DRAFT02 => settings.webtransport |= boolean(value)?,
            WT_MAX_SESSIONS_DRAFT07 | WT_MAX_SESSIONS | WT_ENABLED => {
                settings.webtransport |= value != 0
            }
            // QPACK and field-section limits, GREASE and unknown ids: we need none of them.
            _ => {}
        }
    }
    Ok(settings)
}

fn boolean(value: u64) -> Result<bool, Error> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::h3(H3Error::Settings, "boolean setting not 0 or 1")),
    }
}

/// The whole server control stream opening: stream type 0x00, then a SETTINGS frame with
/// ENABLE_CONNECT_PROTOCOL=1, H3_DATAGRAM=1, H3_DATAGRAM_DRAFT04=1, WEBTRANSPORT_DRAFT02=1,
/// WT_MAX_SESSIONS_DRAFT07=1, WT_MAX_SESSIONS=1 (not WT_ENABLED: see WEBTRANSPORT.md).
pub fn server_control_stream() -> Bytes {
    control_stream(&[
        (ENABLE_CONNECT_PROTOCOL, 1),
        (H3_DATAGRAM, 1),
        (H3_DATAGRAM_DRAFT04, 1),
        (WEBTRANSPORT_DRAFT02, 1),
        (WT_MAX_SESSIONS_DRAFT07, 1),
        (WT_MAX_SESSIONS, 1),
    ])
}

/// A client's: stream type 0x00, SETTINGS with H3_DATAGRAM=1, WEBTRANSPORT_DRAFT02=1 (what a
/// client needs to open a session with our server and with moq-relay).
pub fn client_control_stream() -> Bytes {
    control_stream(&[(H3_DATAGRAM, 1), (WEBTRANSPORT_DRAFT02, 1)])
}

fn control_stream(settings: &[(u64, u64)]) -> Bytes {
    let len: usize = settings.iter().map(|&(id, v)| size(id) + size(v)).sum();
    let mut out = BytesMut::with_capacity(len + 4);
    encode(UNI_CONTROL, &mut out);
    frame::encode_header(frame::SETTINGS, len as u64, &mut out);
    for &(id, value) in settings {
        encode(id, &mut out);
        encode(value, &mut out);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Frame type, then the SETTINGS frame, checked and returned as its payload.
    fn payload(stream: &[u8]) -> &[u8] {
        let mut buf = stream;
        assert_eq!(
            crate::webtransport::stream::decode_uni(&mut buf),
            Ok(crate::webtransport::UniStream::Control)
        );
        let (ty, payload) = frame::decode(&mut buf, crate::webtransport::MAX_FRAME).unwrap();
        assert_eq!(ty, frame::SETTINGS);
        assert!(buf.is_empty());
        payload
    }

    #[test]
    fn server_control_stream_bytes() {
        let stream = server_control_stream();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0x00, // control stream
            0x04, 0x1c, // SETTINGS, 28 bytes
            0x08, 0x01, // ENABLE_CONNECT_PROTOCOL
            0x33, 0x01, // H3_DATAGRAM
            0x80, 0xff, 0xd2, 0x77, 0x01, // H3_DATAGRAM draft-04
            0xab, 0x60, 0x37, 0x42, 0x01, // ENABLE_WEBTRANSPORT draft-02
            0xc0, 0x00, 0x00, 0x00, 0xc6, 0x71, 0x70, 0x6a, 0x01, // WT max sessions draft-07
            0x94, 0xe9, 0xcd, 0x29, 0x01, // WT_MAX_SESSIONS
        ];
        assert_eq!(&stream[..], expected);
        let all = Settings {
            connect_protocol: true,
            datagram: true,
            webtransport: true,
        };
        assert_eq!(decode(payload(&stream)), Ok(all));
    }

    #[test]
    fn client_control_stream_bytes() {
        let stream = client_control_stream();
        assert_eq!(
            &stream[..],
            [0x00, 0x04, 0x07, 0x33, 0x01, 0xab, 0x60, 0x37, 0x42, 0x01]
        );
        let client = Settings {
            connect_protocol: false,
            datagram: true,
            webtransport: true,
        };
        assert_eq!(decode(payload(&stream)), Ok(client));
    }

    /// A SETTINGS payload shaped like Chromium's as a WebTransport client.
    fn chromium() -> Vec<u8> {
        let mut p = Vec::new();
        for (id, value) in [
            (0x01, 0),     // QPACK_MAX_TABLE_CAPACITY
            (0x06, 16384), // MAX_FIELD_SECTION_SIZE
            (0x07, 0),     // QPACK_BLOCKED_STREAMS
            (H3_DATAGRAM, 1),
            (WEBTRANSPORT_DRAFT02, 1),
            (WT_MAX_SESSIONS_DRAFT07, 1),
            (0x1f * 7 + 0x21, 0x2a6b_1c04), // GREASE with a random value
        ] {
            encode(id, &mut p);
            encode(value, &mut p);
        }
        p
    }

    #[test]
    fn chromium_settings_with_grease() {
        let expected = Settings {
            connect_protocol: false,
            datagram: true,
            webtransport: true,
        };
        assert_eq!(decode(&chromium()), Ok(expected));
    }

    #[test]
    fn refused_settings() {
        let dup = Err(Error::h3(H3Error::Settings, "duplicate setting"));
        let mut p = chromium();
        p.extend_from_slice(&[0x33, 0x01]);
        assert_eq!(decode(&p), dup);
        // Duplicates of ids we otherwise ignore too (RFC 9114 §7.2.4).
        assert_eq!(decode(&[0x01, 0x00, 0x01, 0x00]), dup);
        for id in 0x02..=0x05 {
            let http2 = Err(Error::h3(H3Error::Settings, "HTTP/2 setting"));
            assert_eq!(decode(&[0x33, 0x01, id, 0x00]), http2, "{id}");
        }
        let not_bool = Err(Error::h3(H3Error::Settings, "boolean setting not 0 or 1"));
        assert_eq!(decode(&[0x08, 0x02]), not_bool);
        assert_eq!(
            decode(&[0x33, 0x40, 0x01]),
            Ok(Settings {
                datagram: true,
                ..Settings::default()
            })
        );
        assert_eq!(decode(&[0xab, 0x60, 0x37, 0x42, 0x05]), not_bool);
        let truncated = Err(Error::h3(
            H3Error::Frame,
            "SETTINGS payload ends inside a setting",
        ));
        assert_eq!(decode(&[0x33]), truncated);
        assert_eq!(decode(&[0x33, 0x40]), truncated);
    }

    #[test]
    fn values_and_other_webtransport_ids() {
        assert_eq!(decode(&[]), Ok(Settings::default()));
        // Zero values leave a feature off; any non-zero session count turns WebTransport on.
        assert_eq!(decode(&[0x08, 0x00, 0x33, 0x00]), Ok(Settings::default()));
        for id in [WT_MAX_SESSIONS_DRAFT07, WT_MAX_SESSIONS, WT_ENABLED] {
            let mut p = Vec::new();
            encode(id, &mut p);
            encode(0, &mut p);
            assert_eq!(decode(&p), Ok(Settings::default()));
            p.clear();
            encode(id, &mut p);
            encode(100, &mut p);
            assert!(decode(&p).unwrap().webtransport, "{id:#x}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn arbitrary_payloads(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            // The payload is whole: never Short, never a panic.
            prop_assert_ne!(decode(&bytes), Err(Error::Short));
        }

        #[test]
        fn settings_decode_as_modelled(
            ids in proptest::collection::btree_set(
                prop_oneof![Just(0x08u64), Just(0x33), Just(WEBTRANSPORT_DRAFT02), Just(WT_MAX_SESSIONS), 0x06u64..0x200, 0u64..1 << 62],
                0..8,
            ),
            values in proptest::collection::vec(prop_oneof![0u64..2, 0u64..1 << 62], 8),
        ) {
            let mut p = Vec::new();
            let mut model = Ok(Settings::default());
            for (&id, &value) in ids.iter().zip(&values) {
                encode(id, &mut p);
                encode(value, &mut p);
                let Ok(m) = model.as_mut() else { continue };
                match id {
                    0x02..=0x05 => model = Err(H3Error::Settings),
                    0x08 | 0x33 | WEBTRANSPORT_DRAFT02 | H3_DATAGRAM_DRAFT04 if value > 1 => {
                        model = Err(H3Error::Settings)
                    }
                    0x08 => m.connect_protocol = value == 1,
                    0x33 | H3_DATAGRAM_DRAFT04 => m.datagram |= value == 1,
                    WEBTRANSPORT_DRAFT02 | WT_MAX_SESSIONS | WT_MAX_SESSIONS_DRAFT07 | WT_ENABLED => {
                        m.webtransport |= value != 0
                    }
                    _ => {}
                }
            }
            let got = decode(&p).map_err(|e| match e {
                Error::H3 { code, .. } => code,
                Error::Short => H3Error::Internal,
            });
            prop_assert_eq!(got, model);
        }
    }
}
