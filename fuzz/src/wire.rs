//! The `wire` target: every decoder of `moqring::wire` on arbitrary bytes, on every
//! version. The first input byte picks the decoder and the version; the rest is its input.
//!
//! Beyond "never panics", each decode that succeeds is checked the way the session relies
//! on it: the same value decodes from exactly the bytes it consumed, every shorter prefix
//! is `Short` (a message split across packets waits, it is never refused), a `Short` never
//! advances the input, and the value re-encodes to bytes that decode to it again.

use std::fmt::Debug;

use moqring::wire::{
    varint, Announce, AnnounceOk, AnnounceRequest, ControlType, DataType, DecodeError, ErrorCode,
    Fetch, FrameHeader, Goaway, GroupHeader, Message, Probe, Setup, Subscribe, SubscribeDrop,
    SubscribeOptions, SubscribeResponse, TrackInfo, TrackRequest, Version,
};

use crate::input::Input;

type Decoder = fn(&[u8], Version);

/// Every decoder, by name. The name is what the seed generator asks for.
pub const DECODERS: [(&str, Decoder); 28] = [
    ("control_type", |b, _| {
        primitive(b, ControlType::decode, |t, out| t.encode(out))
    }),
    ("data_type", |b, _| {
        primitive(b, DataType::decode, |t, out| t.encode(out))
    }),
    ("varint", |b, _| {
        primitive(b, varint::decode, |v, out| varint::encode(*v, out))
    }),
    ("zigzag", |b, _| {
        primitive(b, varint::decode_zigzag, |v, out| {
            varint::encode_zigzag(*v, out)
        })
    }),
    ("u8", |b, _| {
        primitive(b, varint::decode_u8, |v, out| out.push(*v))
    }),
    ("flag", |b, _| {
        primitive(b, varint::decode_flag, |v, out| out.push(u8::from(*v)))
    }),
    ("bytes", |b, _| {
        primitive(
            b,
            |b| varint::decode_bytes(b).map(<[u8]>::to_vec),
            |v, out| varint::encode_bytes(v, out),
        )
    }),
    ("string", |b, _| {
        primitive(b, varint::decode_string, |v, out| {
            varint::encode_string(v, out)
        })
    }),
    ("path", |b, _| {
        primitive(b, varint::decode_path, |v, out| varint::encode_path(v, out))
    }),
    ("option", |b, _| {
        primitive(b, varint::decode_option, |v, out| {
            varint::encode_option(*v, out)
        })
    }),
    ("duration", |b, _| {
        primitive(b, varint::decode_duration, |v, out| {
            varint::encode_duration(*v, out)
        })
    }),
    ("setup", message::<Setup>),
    ("announce_request", message::<AnnounceRequest>),
    ("announce_ok", message::<AnnounceOk>),
    ("announce", message::<Announce>),
    ("subscribe", message::<Subscribe>),
    ("subscribe_options", message::<SubscribeOptions>),
    ("subscribe_drop", message::<SubscribeDrop>),
    ("subscribe_response", message::<SubscribeResponse>),
    ("track_request", message::<TrackRequest>),
    ("track_info", message::<TrackInfo>),
    ("fetch", message::<Fetch>),
    ("probe", message::<Probe>),
    ("goaway", message::<Goaway>),
    ("group_header", message::<GroupHeader>),
    ("frames", frames),
    ("alpn", |b, _| {
        if let Some(v) = Version::from_alpn(b) {
            assert_eq!(v.alpn(), b);
        }
    }),
    ("error_code", |b, _| {
        let Ok(code) = varint::decode(&mut &b[..]) else {
            return;
        };
        if let Some(e) = ErrorCode::from_code(code) {
            assert_eq!(e.code(), code);
        }
    }),
];

/// The first input byte that selects decoder `name` on `version`.
pub fn selector(name: &str, version: Version) -> u8 {
    let decoder = DECODERS
        .iter()
        .position(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no decoder {name}"));
    let v = Version::ALL.iter().position(|x| *x == version).unwrap_or(0);
    (v * DECODERS.len() + decoder) as u8
}

/// Runs the decoder the first byte selects on the rest of `data`.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let pick = usize::from(input.byte());
    let (_, decode) = DECODERS[pick % DECODERS.len()];
    let version = Version::ALL[pick / DECODERS.len() % Version::ALL.len()];
    decode(input.rest(), version);
}

/// Checks one decode of `data` (see the module doc); returns the bytes it consumed.
fn check<T: PartialEq + Debug>(
    data: &[u8],
    decode: impl Fn(&mut &[u8]) -> Result<T, DecodeError>,
    encode: impl Fn(&T, &mut Vec<u8>),
) -> Option<usize> {
    let mut slice = data;
    let value = match decode(&mut slice) {
        Ok(value) => value,
        Err(DecodeError::Short) => {
            assert_eq!(slice.len(), data.len(), "a Short decode advanced");
            return None;
        }
        Err(_) => return None,
    };
    let used = data.len() - slice.len();
    let mut exact = &data[..used];
    assert_eq!(
        decode(&mut exact).as_ref(),
        Ok(&value),
        "decoded differently"
    );
    assert!(exact.is_empty());
    for n in 0..used {
        assert_eq!(
            decode(&mut &data[..n]),
            Err(DecodeError::Short),
            "{value:?}: prefix of {n} of {used} bytes"
        );
    }
    let mut again = Vec::new();
    encode(&value, &mut again);
    let mut slice = &again[..];
    assert_eq!(
        decode(&mut slice).as_ref(),
        Ok(&value),
        "re-encoding changed it"
    );
    assert!(slice.is_empty(), "{value:?}: re-encoding left bytes over");
    Some(used)
}

fn primitive<T: PartialEq + Debug>(
    data: &[u8],
    decode: fn(&mut &[u8]) -> Result<T, DecodeError>,
    encode: fn(&T, &mut Vec<u8>),
) {
    check(data, decode, encode);
}

fn message<M: Message + PartialEq + Debug>(data: &[u8], version: Version) {
    check(
        data,
        |b| M::decode(b, version),
        |m, out| m.encode(out, version),
    );
}

/// A group stream's body after its header: the previous timestamp (8 bytes), then frame
/// headers and payloads until one does not decode.
fn frames(data: &[u8], version: Version) {
    let mut input = Input::new(data);
    let mut prev = input.u64();
    let mut rest = input.rest();
    loop {
        let checked = check(
            rest,
            |b| FrameHeader::decode(b, version, prev),
            |h, out| h.encode(out, version, prev),
        );
        if checked.is_none() {
            return;
        }
        let head = FrameHeader::decode(&mut rest, version, prev).expect("checked above");
        prev = head.timestamp;
        let size = usize::try_from(head.size).unwrap_or(usize::MAX);
        rest = &rest[size.min(rest.len())..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_pick_each_decoder_on_each_version() {
        let mut seen = std::collections::HashSet::new();
        for (name, _) in DECODERS {
            for v in Version::ALL {
                let pick = usize::from(selector(name, v));
                assert_eq!(DECODERS[pick % DECODERS.len()].0, name);
                assert_eq!(Version::ALL[pick / DECODERS.len() % 3], v);
                assert!(seen.insert(pick));
            }
        }
    }
}
