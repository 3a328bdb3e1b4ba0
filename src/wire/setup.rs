//! lite-05 SETUP: the one message on each side's SETUP uni stream, a parameter map
//! (`count | (id | len | value)*`) carrying capabilities and, from a client on raw QUIC,
//! the request path.

use bytes::BufMut;

use super::varint::{self, decode_bytes, encode_bytes};
use super::{decode_sized, encode_sized, DecodeError, Message, Version};

const PARAM_PROBE: u64 = 0x1;
const PARAM_PATH: u64 = 0x2;
const PARAM_ROLE: u64 = 0x3;
const PARAM_COST: u64 = 0x4;
const PARAM_ORIGIN: u64 = 0x5;

/// Parameters in one SETUP at most (moq-net's limit).
pub const MAX_PARAMS: u64 = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    /// The request path (client only, `?query` appended if any); `Some("")` means the root
    /// just like `None`.
    pub path: Option<String>,
    /// The single direction the client intends: [`Setup::ROLE_PUBLISHER`] or
    /// [`Setup::ROLE_SUBSCRIBER`]; `None` is both. Other wire values decode as `None`.
    pub role: Option<u64>,
    /// Probe capability: [`Setup::PROBE_NONE`], `PROBE_REPORT` or `PROBE_INCREASE`; larger
    /// wire values decode as `PROBE_INCREASE`.
    pub probe: u64,
    /// What subscribing from the sender costs (lite-06 routing; carried but unused on 05).
    pub cost: Option<u64>,
    /// The sender's origin (hop) id; a wire 0 decodes as `None`.
    pub origin: Option<u64>,
}

impl Setup {
    pub const ROLE_PUBLISHER: u64 = 1;
    pub const ROLE_SUBSCRIBER: u64 = 2;
    pub const PROBE_NONE: u64 = 0;
    pub const PROBE_REPORT: u64 = 1;
    pub const PROBE_INCREASE: u64 = 2;

    /// The request path, empty when none was sent.
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or("")
    }
}

fn put_varint_param(body: &mut Vec<u8>, id: u64, value: u64) {
    varint::encode(id, body);
    varint::encode(varint::size(value) as u64, body);
    varint::encode(value, body);
}

/// A parameter value that must be exactly one varint.
fn varint_param(value: Option<&[u8]>) -> Result<Option<u64>, DecodeError> {
    let Some(mut value) = value else {
        return Ok(None);
    };
    let v = varint::decode(&mut value)
        .map_err(|_| DecodeError::Invalid("parameter is not a varint"))?;
    if !value.is_empty() {
        return Err(DecodeError::Long);
    }
    Ok(Some(v))
}

impl Message for Setup {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) {
        debug_assert!(version.has_setup_stream(), "SETUP on {version}");
        // moq-net writes its map in hash order; we write ids in ascending order.
        encode_sized(buf, |body| {
            let count = u64::from(self.probe != Self::PROBE_NONE)
                + u64::from(self.path.is_some())
                + u64::from(self.role.is_some())
                + u64::from(self.cost.is_some())
                + u64::from(self.origin.is_some());
            varint::encode(count, body);
            if self.probe != Self::PROBE_NONE {
                put_varint_param(body, PARAM_PROBE, self.probe);
            }
            if let Some(path) = &self.path {
                varint::encode(PARAM_PATH, body);
                encode_bytes(path.as_bytes(), body);
            }
            if let Some(role) = self.role {
                put_varint_param(body, PARAM_ROLE, role);
            }
            if let Some(cost) = self.cost {
                put_varint_param(body, PARAM_COST, cost);
            }
            if let Some(origin) = self.origin {
                put_varint_param(body, PARAM_ORIGIN, origin);
            }
        })
    }

    fn decode(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_setup_stream() {
            return Err(DecodeError::Version);
        }
        decode_sized(buf, |body| {
            let count = varint::decode(body)?;
            if count > MAX_PARAMS {
                return Err(DecodeError::Invalid("too many parameters"));
            }
            // Each parameter takes at least two bytes: never reserve more than that allows.
            let mut params: Vec<(u64, &[u8])> =
                Vec::with_capacity((count as usize).min(body.len() / 2));
            for _ in 0..count {
                let id = varint::decode(body)?;
                if params.iter().any(|(seen, _)| *seen == id) {
                    return Err(DecodeError::Invalid("duplicate parameter"));
                }
                params.push((id, decode_bytes(body)?));
            }
            // Unknown parameters are ignored.
            let get = |id| params.iter().find(|(seen, _)| *seen == id).map(|(_, v)| *v);

            let path = match get(PARAM_PATH) {
                Some(bytes) => Some(
                    std::str::from_utf8(bytes)
                        .map_err(|_| DecodeError::Invalid("path is not UTF-8"))?
                        .to_owned(),
                ),
                None => None,
            };
            let probe = varint_param(get(PARAM_PROBE))?
                .map_or(Self::PROBE_NONE, |p| p.min(Self::PROBE_INCREASE));
            let role = varint_param(get(PARAM_ROLE))?
                .filter(|r| matches!(*r, Self::ROLE_PUBLISHER | Self::ROLE_SUBSCRIBER));
            let cost = varint_param(get(PARAM_COST))?;
            let origin = varint_param(get(PARAM_ORIGIN))?.filter(|o| *o != 0);
            Ok(Self {
                path,
                role,
                probe,
                cost,
                origin,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::{fuzz, round_trip};
    use proptest::prelude::*;

    #[test]
    fn golden_bytes() {
        let v = Version::Lite05;
        assert_eq!(round_trip(&Setup::default(), v), b"\x01\x00");
        let setup = Setup {
            path: Some("/anon".into()),
            ..Default::default()
        };
        assert_eq!(round_trip(&setup, v), b"\x08\x01\x02\x05/anon");
        let setup = Setup {
            probe: Setup::PROBE_REPORT,
            role: Some(Setup::ROLE_SUBSCRIBER),
            origin: Some(1000),
            ..Default::default()
        };
        assert_eq!(
            round_trip(&setup, v),
            b"\x0b\x03\x01\x01\x01\x03\x01\x02\x05\x02\x43\xe8"
        );
        assert_eq!(setup.path(), "");
    }

    #[test]
    fn decodes_like_moq_net() {
        let v = Version::Lite05;
        // Unknown parameters (0x4099 here) are ignored, in any order.
        let mut slice = &b"\x09\x02\x40\x99\x02hi\x05\x01\x09"[..];
        let setup = Setup::decode(&mut slice, v).unwrap();
        assert_eq!(setup.origin, Some(9));
        assert!(slice.is_empty());
        // Duplicates are refused.
        let dup = b"\x07\x02\x05\x01\x01\x05\x01\x02";
        assert!(matches!(
            Setup::decode(&mut &dup[..], v),
            Err(DecodeError::Invalid(_))
        ));
        // Probe saturates, unknown roles and origin 0 mean "not declared".
        let odd = b"\x0a\x03\x01\x01\x07\x03\x01\x09\x05\x01\x00";
        let setup = Setup::decode(&mut &odd[..], v).unwrap();
        assert_eq!(setup.probe, Setup::PROBE_INCREASE);
        assert_eq!(setup.role, None);
        assert_eq!(setup.origin, None);
        // A varint parameter with trailing bytes.
        assert_eq!(
            Setup::decode(&mut &b"\x05\x01\x05\x02\x01\x00"[..], v),
            Err(DecodeError::Long)
        );
        // Too many parameters.
        assert!(matches!(
            Setup::decode(&mut &b"\x02\x40\x41"[..], v),
            Err(DecodeError::Invalid(_))
        ));
        assert_eq!(
            Setup::decode(&mut &b"\x01\x00"[..], Version::Lite04),
            Err(DecodeError::Version)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            fuzz::<Setup>(&bytes);
        }

        #[test]
        fn setups_round_trip(
            path in proptest::option::of(".{0,40}"),
            role in proptest::option::of(1..=2u64),
            probe in 0..=2u64,
            cost in proptest::option::of(0..=varint::MAX),
            origin in proptest::option::of(1..=varint::MAX),
        ) {
            round_trip(&Setup { path, role, probe, cost, origin }, Version::Lite05);
        }
    }
}
