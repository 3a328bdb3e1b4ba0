//! lite-05 SETUP: a parameter map sent once by each side on its own uni stream; the
//! client's carries the request path (raw QUIC has no URL of its own).

use std::collections::HashMap;

use super::varint::{self, decode_bytes, encode_bytes};
use super::{DecodeError, Message, Version};

const PROBE: u64 = 0x1;
const PATH: u64 = 0x2;
const ROLE: u64 = 0x3;
const COST: u64 = 0x4;
const ORIGIN: u64 = 0x5;
/// Parameters in one SETUP at most.
const MAX_PARAMS: u64 = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    pub path: Option<String>,
    pub role: Option<u64>,
    /// 0 none, 1 report, 2 increase.
    pub probe: u64,
    pub cost: Option<u64>,
    pub origin: Option<u64>,
}

fn varint_param(params: &HashMap<u64, &[u8]>, id: u64) -> Result<Option<u64>, DecodeError> {
    let Some(mut value) = params.get(&id).copied() else {
        return Ok(None);
    };
    let v = varint::decode(&mut value)?;
    if !value.is_empty() {
        return Err(DecodeError::Long);
    }
    Ok(Some(v))
}

impl Message for Setup {
    fn encode_body(&self, buf: &mut Vec<u8>, _version: Version) {
        let mut params: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut num = |id, v: u64| {
            let mut b = Vec::new();
            varint::encode(v, &mut b);
            params.push((id, b));
        };
        if self.probe != 0 {
            num(PROBE, self.probe);
        }
        if let Some(role) = self.role {
            num(ROLE, role);
        }
        if let Some(cost) = self.cost {
            num(COST, cost);
        }
        if let Some(origin) = self.origin {
            num(ORIGIN, origin);
        }
        if let Some(path) = &self.path {
            params.push((PATH, path.as_bytes().to_vec()));
        }
        varint::encode(params.len() as u64, buf);
        for (id, value) in params {
            varint::encode(id, buf);
            encode_bytes(&value, buf);
        }
    }

    fn decode_body(buf: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_setup_stream() {
            return Err(DecodeError::Version);
        }
        let count = varint::decode(buf)?;
        if count > MAX_PARAMS {
            return Err(DecodeError::Invalid("too many parameters"));
        }
        let mut params = HashMap::new();
        for _ in 0..count {
            let id = varint::decode(buf)?;
            let value = decode_bytes(buf)?;
            if params.insert(id, value).is_some() {
                return Err(DecodeError::Invalid("duplicate parameter"));
            }
        }
        let path = match params.get(&PATH) {
            Some(p) => Some(
                std::str::from_utf8(p)
                    .map_err(|_| DecodeError::Invalid("path is not UTF-8"))?
                    .to_string(),
            ),
            None => None,
        };
        Ok(Self {
            path,
            role: varint_param(&params, ROLE)?,
            probe: varint_param(&params, PROBE)?.unwrap_or(0),
            cost: varint_param(&params, COST)?,
            origin: varint_param(&params, ORIGIN)?.filter(|o| *o != 0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::round_trip;
    use proptest::prelude::*;

    #[test]
    fn golden_bytes() {
        let setup = Setup {
            path: Some("/anon".into()),
            ..Default::default()
        };
        assert_eq!(
            round_trip(&setup, Version::Lite05),
            b"\x08\x01\x02\x05/anon"
        );
        let setup = Setup {
            origin: Some(9),
            ..Default::default()
        };
        assert_eq!(round_trip(&setup, Version::Lite05), b"\x04\x01\x05\x01\x09");
        // Unknown parameters are ignored; duplicates refused.
        let mut slice = &b"\x06\x01\x40\x99\x02hi"[..];
        assert_eq!(
            Setup::decode(&mut slice, Version::Lite05).unwrap(),
            Setup::default()
        );
        let dup = b"\x07\x02\x05\x01\x01\x05\x01\x02";
        assert!(Setup::decode(&mut &dup[..], Version::Lite05).is_err());
        assert_eq!(
            Setup::decode(&mut &b"\x01\x00"[..], Version::Lite04),
            Err(DecodeError::Version)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Setup::decode(&mut &bytes[..], Version::Lite05);
        }

        #[test]
        fn setups_round_trip(path in proptest::option::of(".{0,40}"), origin in proptest::option::of(1..=varint::MAX)) {
            round_trip(&Setup { path, origin, ..Default::default() }, Version::Lite05);
        }
    }
}
