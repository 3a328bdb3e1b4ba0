//! The `webtransport` target: every decoder of `moqring::webtransport` (HTTP/3 frames,
//! SETTINGS, stream types and prefixes, the CONNECT request and response in QPACK,
//! `wt-available-protocols`, capsules, datagrams, error codes) on arbitrary bytes. The first
//! input byte picks the decoder; the rest is its input.
//!
//! Beyond "never panics", each decoder is held to the layer's contract: `Short` consumes
//! nothing, a decode only consumes from the front, and once a prefix of the input settles
//! (decodes or fails for good) every longer one gives the same answer. What decodes is
//! written again with the layer's encoder and must decode to the same value.

use std::fmt::Debug;

use moqring::webtransport::{
    self as wt, capsule, datagram, frame, from_h3, headers, settings, stream, to_h3, Error,
    Protocol, MAX_FRAME,
};
use moqring::wire::varint;

use crate::input::Input;

type Decoder = fn(&[u8]);

/// Every decoder, by name. The name is what the seed generator asks for.
pub const DECODERS: [(&str, Decoder); 12] = [
    ("frame", |b| {
        let whole = |b: &mut &[u8]| frame::decode(b, MAX_FRAME).map(|(t, p)| (t, p.to_vec()));
        if let Some((ty, payload)) = settled(b, whole) {
            frame_round_trip(ty, &payload);
        }
    }),
    ("frames", frames),
    ("settings", |b| {
        let _ = settings::decode(b);
    }),
    ("uni", |b| {
        if let Some(stream::UniStream::WebTransport { session }) = settled(b, stream::decode_uni) {
            let again = stream::decode_uni(&mut &stream::uni_prefix(session)[..]);
            assert_eq!(again, Ok(stream::UniStream::WebTransport { session }));
        }
    }),
    ("bidi", |b| {
        if let Some(stream::BidiStream::WebTransport { session }) = settled(b, stream::decode_bidi)
        {
            let again = stream::decode_bidi(&mut &stream::bidi_prefix(session)[..]);
            assert_eq!(again, Ok(stream::BidiStream::WebTransport { session }));
        }
    }),
    ("control_stream", |b| {
        let mut rest = b;
        if let Some(stream::UniStream::Control) = settled(rest, stream::decode_uni) {
            stream::decode_uni(&mut rest).expect("settled above");
            frames(rest);
        }
    }),
    ("request", request),
    ("response", response),
    ("capsules", capsules),
    ("protocols", |b| protocols(&String::from_utf8_lossy(b))),
    ("datagram", |b| {
        let mut input = Input::new(b);
        let session = input.u64();
        let bytes = input.rest();
        if let Some(payload) = datagram::strip(bytes, session) {
            assert!(bytes.ends_with(payload));
            let quarter = varint::decode(&mut &bytes[..]).expect("stripped");
            assert_eq!(quarter.checked_mul(4), Some(session));
        }
    }),
    ("error_code", |b| {
        let mut input = Input::new(b);
        let code = input.u64();
        if let Some(n) = from_h3(code) {
            assert_eq!(to_h3(n), code);
        }
        let n = input.u64() as u32;
        assert_eq!(from_h3(to_h3(n)), Some(n));
    }),
];

/// The first input byte that selects decoder `name`.
pub fn selector(name: &str) -> u8 {
    DECODERS
        .iter()
        .position(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no decoder {name}")) as u8
}

/// Runs the decoder the first byte selects on the rest of `data`.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let (_, decode) = DECODERS[usize::from(input.byte()) % DECODERS.len()];
    decode(input.rest());
}

/// Feeds `decode` every prefix of `bytes` (see the module doc); returns what the whole of
/// `bytes` decodes to, if anything.
fn settled<T: PartialEq + Debug>(
    bytes: &[u8],
    decode: impl Fn(&mut &[u8]) -> Result<T, Error>,
) -> Option<T> {
    let mut first: Option<(Result<T, Error>, usize)> = None;
    for n in 0..=bytes.len() {
        let mut slice = &bytes[..n];
        let result = decode(&mut slice);
        let used = n - slice.len();
        assert_eq!(
            slice,
            &bytes[used..n],
            "consumed from elsewhere than the front"
        );
        match (&result, &first) {
            (Err(Error::Short), None) => assert_eq!(used, 0, "a Short decode consumed"),
            (_, None) => {
                if result.is_err() {
                    assert_eq!(used, 0, "a failed decode consumed");
                }
                first = Some((result, used));
            }
            (_, Some((answer, answer_used))) => {
                assert_eq!(&result, answer, "{n} bytes changed the answer");
                assert_eq!(used, *answer_used, "{n} bytes consumed differently");
            }
        }
    }
    first.and_then(|(result, _)| result.ok())
}

fn frame_round_trip(ty: u64, payload: &[u8]) {
    let mut again = Vec::new();
    frame::encode_header(ty, payload.len() as u64, &mut again);
    again.extend_from_slice(payload);
    let mut slice = &again[..];
    assert_eq!(frame::decode(&mut slice, MAX_FRAME), Ok((ty, payload)));
    assert!(slice.is_empty());
}

/// A stream of HTTP/3 frames, each payload given to the decoder of its frame type, until
/// one does not decode.
fn frames(data: &[u8]) {
    let mut rest = data;
    while let Ok((ty, payload)) = frame::decode(&mut rest, MAX_FRAME) {
        match ty {
            frame::SETTINGS => {
                let _ = settings::decode(payload);
            }
            frame::HEADERS => {
                request(payload);
                response(payload);
            }
            frame::DATA => capsules(payload),
            _ => {}
        }
    }
}

/// The HEADERS frame carrying a header block (the frame the encoders write), decoded.
fn block_of(headers_frame: &[u8]) -> &[u8] {
    let mut slice = headers_frame;
    let (ty, block) = frame::decode(&mut slice, MAX_FRAME).expect("a whole frame");
    assert_eq!(ty, frame::HEADERS);
    assert!(slice.is_empty());
    block
}

/// A CONNECT request block; one that decodes is encoded again (the client's encoder, every
/// protocol quoted) and must come back the same but for `origin`, which it does not write.
fn request(block: &[u8]) {
    let Ok(request) = headers::decode_request(block) else {
        return;
    };
    let names: Vec<&str> = request.protocols.iter().map(|p| p.name.as_str()).collect();
    let again = headers::encode_request(&request.authority, &request.path, &names);
    let decoded = headers::decode_request(block_of(&again))
        .unwrap_or_else(|e| panic!("{request:?} encoded again: {e}"));
    let quoted: Vec<Protocol> = names
        .iter()
        .map(|name| Protocol {
            name: name.to_string(),
            quoted: true,
        })
        .collect();
    let expected = headers::ConnectRequest {
        origin: None,
        protocols: quoted,
        ..request
    };
    assert_eq!(decoded, expected);
}

/// A CONNECT response block; one that decodes is encoded again and must come back the same
/// (`wt-protocol` only with 200, as the server's encoder writes it).
fn response(block: &[u8]) {
    let Ok(response) = headers::decode_response(block) else {
        return;
    };
    let protocol = response
        .protocol
        .clone()
        .map(|name| Protocol { name, quoted: true });
    let again = headers::encode_response(response.status, protocol.as_ref());
    let decoded = headers::decode_response(block_of(&again))
        .unwrap_or_else(|e| panic!("{response:?} encoded again: {e}"));
    let expected = wt::ConnectResponse {
        protocol: response.protocol.filter(|_| response.status == 200),
        ..response
    };
    assert_eq!(decoded, expected);
}

/// Capsules, as the CONNECT stream's DATA payloads carry them, until one does not decode;
/// each one encoded again must decode the same.
fn capsules(data: &[u8]) {
    let mut rest = data;
    loop {
        let Some(capsule) = settled(rest, capsule::decode) else {
            return;
        };
        capsule::decode(&mut rest).expect("settled above");
        let again = match &capsule {
            capsule::Capsule::Close { code, reason } if reason.len() <= capsule::MAX_REASON => {
                capsule::close_frame(*code, reason)
            }
            capsule::Capsule::Drain => capsule::drain_frame(),
            _ => continue,
        };
        let mut slice = &again[..];
        let (ty, payload) = frame::decode(&mut slice, MAX_FRAME).expect("a whole frame");
        assert_eq!(ty, frame::DATA);
        assert_eq!(capsule::decode(&mut &payload[..]), Ok(capsule));
    }
}

/// `wt-available-protocols`; each entry, echoed as `wt-protocol` in its own syntax, must
/// read back as the same name.
fn protocols(value: &str) {
    for protocol in headers::parse_protocols(value) {
        let again = headers::encode_response(200, Some(&protocol));
        let decoded = headers::decode_response(block_of(&again))
            .unwrap_or_else(|e| panic!("{protocol:?} echoed: {e}"));
        assert_eq!(
            decoded.protocol.as_ref(),
            Some(&protocol.name),
            "{protocol:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_pick_each_decoder() {
        for (name, _) in DECODERS {
            assert_eq!(DECODERS[usize::from(selector(name))].0, name);
        }
    }

    #[test]
    fn what_the_encoders_write_passes_every_check() {
        let request = headers::encode_request("localhost:4443", "/anon?jwt=x", &["moq-lite-05"]);
        let mut input = vec![selector("request")];
        input.extend_from_slice(block_of(&request));
        run(&input);
        let mut stream = vec![selector("control_stream")];
        stream.extend_from_slice(&moqring::webtransport::settings::client_control_stream());
        stream.extend_from_slice(&request);
        stream.extend_from_slice(&capsule::close_frame(9, "bye"));
        run(&stream);
    }
}
