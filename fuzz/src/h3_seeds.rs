//! Seed corpora of the HTTP/3 targets: the golden vectors of the test modules of
//! `src/webtransport/*.rs` for the `webtransport` target (so they follow the tests), what
//! the layer's encoders write, and for `session_h3` short WebTransport exchanges built with
//! the encoders, one per kind of stream and capsule.

use std::io;
use std::path::{Path, PathBuf};

use moqring::webtransport::{capsule, headers, settings, stream, to_h3, H3Error, Protocol};
use moqring::wire::{ControlType, DataType, GroupHeader, Message, Setup, Subscribe, Version};

use crate::seeds::{golden_vectors, Seed};
use crate::session::{self, Answer, GroupAction, Op};
use crate::webtransport::selector;

/// The decoders each file's golden vectors are given to (`protocols`: its string literals).
const FILES: [(&str, &[&str]); 9] = [
    ("capsule.rs", &["capsules", "frame", "frames"]),
    ("datagram.rs", &["datagram"]),
    ("error.rs", &["error_code"]),
    ("frame.rs", &["frame", "frames"]),
    ("headers.rs", &["request", "response", "frame"]),
    ("protocols.rs", &["protocols"]),
    ("settings.rs", &["settings", "control_stream", "frames"]),
    ("stream.rs", &["uni", "bidi", "control_stream"]),
    ("mod.rs", &[]),
];

/// Files of the layer with no decoder of their own.
const NO_VECTORS: [&str; 2] = ["mod.rs", "testing.rs"];

fn layer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/webtransport")
}

/// The `webtransport` seeds: every file's golden vectors given to its decoders, and what
/// the encoders write.
pub fn decoders() -> io::Result<Vec<Seed>> {
    let dir = layer_dir();
    for entry in std::fs::read_dir(&dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !FILES.iter().any(|(file, _)| *file == name) && !NO_VECTORS.contains(&name.as_str()) {
            return Err(io::Error::other(format!(
                "{name}: a file of the HTTP/3 layer the webtransport target does not know"
            )));
        }
    }
    let mut seeds = Vec::new();
    let mut push = |decoder: &str, name: String, vector: &[u8]| {
        let mut bytes = vec![selector(decoder)];
        bytes.extend_from_slice(vector);
        seeds.push(Seed {
            target: "webtransport",
            name: format!("{decoder}-{name}"),
            bytes,
        });
    };
    for (file, decoders) in FILES {
        let source = std::fs::read_to_string(dir.join(file))?;
        let vectors = match file {
            "protocols.rs" => str_literals(&source),
            // Its vectors are 48-bit codes, not bytes: the codes of its tests' edges.
            "error.rs" => error_codes(),
            _ => golden_vectors(&source),
        };
        if vectors.is_empty() && !decoders.is_empty() {
            return Err(io::Error::other(format!("{file}: no golden vectors found")));
        }
        for (n, vector) in vectors.iter().enumerate() {
            for decoder in decoders {
                push(
                    decoder,
                    format!("{}-{n}", file.trim_end_matches(".rs")),
                    vector,
                );
            }
        }
    }
    for (n, vector) in encoded().iter().enumerate() {
        for decoder in ["frames", "control_stream", "frame"] {
            push(decoder, format!("encoded-{n}"), vector);
        }
        // A HEADERS frame's block alone, for the block decoders.
        let mut slice = &vector[..];
        if let Ok((1, block)) = moqring::webtransport::frame::decode(&mut slice, 1 << 16) {
            push("request", format!("encoded-{n}"), block);
            push("response", format!("encoded-{n}"), block);
        }
    }
    Ok(seeds)
}

/// `error_code` inputs: an HTTP/3 code and a WebTransport code (u64 LE each): the first,
/// last and a GREASE code of the mapped range, one past each end, and plain HTTP/3 codes.
fn error_codes() -> Vec<Vec<u8>> {
    let first = to_h3(0);
    let last = to_h3(u32::MAX);
    [
        (first, 0),
        (last, u32::MAX),
        (first + 0x1e, 0x1e),
        (first - 1, 0x1d),
        (last + 1, 1),
        (H3Error::RequestCancelled.code(), 77),
    ]
    .iter()
    .map(|&(code, n)| [code.to_le_bytes(), u64::from(n).to_le_bytes()].concat())
    .collect()
}

/// What the layer's encoders write: control streams, CONNECT requests and responses,
/// capsules, stream prefixes.
fn encoded() -> Vec<Vec<u8>> {
    let quoted = Protocol {
        name: "moq-lite-05".into(),
        quoted: true,
    };
    let token = Protocol {
        quoted: false,
        ..quoted.clone()
    };
    [
        settings::server_control_stream(),
        settings::client_control_stream(),
        headers::encode_request(
            "localhost:4443",
            "/anon?jwt=a.b",
            &["moq-lite-05", "moq-lite-04"],
        ),
        headers::encode_request("[::1]:4443", "/", &[]),
        headers::encode_response(200, Some(&quoted)),
        headers::encode_response(200, Some(&token)),
        headers::encode_response(403, None),
        capsule::close_frame(26, "lagged"),
        capsule::drain_frame(),
        stream::uni_prefix(0),
        stream::bidi_prefix(0x100),
    ]
    .iter()
    .map(|b| b.to_vec())
    .collect()
}

/// The string literals (`"..."` and `r#"..."#`) of the test module of `source`, as bytes;
/// those with escapes other than ASCII ones are left out.
pub fn str_literals(source: &str) -> Vec<Vec<u8>> {
    let Some(start) = source.find("#[cfg(test)]") else {
        return Vec::new();
    };
    let tests = &source[start..];
    let bytes = tests.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"r#\"") {
            let body = &bytes[i + 3..];
            let Some(end) = body.windows(2).position(|w| w == b"\"#") else {
                break;
            };
            out.push(body[..end].to_vec());
            i += 3 + end + 2;
            continue;
        }
        let quote = bytes[i] == b'"' && (i == 0 || !matches!(bytes[i - 1], b'\'' | b'\\'));
        if !quote {
            i += 1;
            continue;
        }
        // A byte string (`b"..."`) is skipped whole: the other decoders take those.
        let byte_string = i > 0 && bytes[i - 1] == b'b';
        // The closing quote: the next one not escaped.
        let mut end = i + 1;
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        if let Some(literal) = unescape(&bytes[i + 1..end.min(bytes.len())]) {
            if !byte_string {
                out.push(literal);
            }
        }
        i = end + 1;
    }
    out.sort();
    out.dedup();
    out
}

/// The bytes of a string literal's body with ASCII escapes; `None` for others.
fn unescape(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut chars = body.iter().copied();
    while let Some(c) = chars.next() {
        if c != b'\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'0' => 0,
            c @ (b'\\' | b'"' | b'\'') => c,
            _ => return None,
        });
    }
    Some(out)
}

fn write(stream: u8, data: Vec<u8>, fin: bool) -> Op {
    Op::Write { stream, fin, data }
}

/// The client's control stream (uni 2) and CONNECT (bidi 0) offering `v` at `/anon`, and on
/// lite-05 its SETUP on uni 6: what every `session_h3` scenario starts with.
fn open(v: Version) -> Vec<Op> {
    let bit = Version::ALL.iter().position(|x| *x == v).unwrap_or(0);
    let mut ops = vec![
        Op::Control { stream: 2 },
        Op::Connect {
            stream: 0,
            offer: 1 << bit,
            path: "/anon".into(),
        },
    ];
    if v == Version::Lite05 {
        ops.push(Op::Prefix {
            stream: 6,
            session: 0,
        });
        let mut setup = Vec::new();
        DataType::Setup.encode(&mut setup);
        Setup::default().encode(&mut setup, v);
        ops.push(write(6, setup, true));
    }
    ops
}

/// `session_h3` inputs: the WebTransport session opened, served and closed both ways, on
/// every version, and what a server must refuse.
pub fn sessions() -> Vec<Seed> {
    let mut seeds = Vec::new();
    for v in Version::ALL {
        let subscribe = Subscribe {
            id: 1,
            broadcast: "x".into(),
            track: "video".into(),
            priority: 3,
            ordered: true,
            max_latency: std::time::Duration::from_millis(100),
            start_group: Some(0),
            end_group: None,
        };
        let mut request = Vec::new();
        ControlType::Subscribe.encode(&mut request);
        subscribe.encode(&mut request, v);
        let accept = if v == Version::Lite05 {
            Answer::SubscribeStart
        } else {
            Answer::SubscribeOk
        };
        let answer = |answer: Answer, arg| Op::Answer {
            index: 0,
            action: answer.code(),
            arg,
        };
        let mut group = Vec::new();
        DataType::Group.encode(&mut group);
        GroupHeader {
            subscribe: 0,
            sequence: 0,
        }
        .encode(&mut group, v);
        group.extend_from_slice(&[5, b'h', b'e', b'l', b'l', b'o']);
        let scenarios: Vec<(&str, Vec<Op>)> = vec![
            (
                "serve",
                vec![
                    Op::Prefix {
                        stream: 4,
                        session: 0,
                    },
                    write(4, request, false),
                    answer(accept, 0),
                    answer(Answer::OpenGroup, 0),
                    Op::Group {
                        index: 0,
                        action: GroupAction::Frame.code(),
                        arg: 5,
                    },
                    Op::Read,
                    Op::Capsule {
                        stream: 0,
                        close: true,
                        code: 0,
                        reason: "bye".into(),
                    },
                ],
            ),
            (
                "publish",
                vec![
                    Op::Subscribe {
                        broadcast: "anon/x".into(),
                        track: "video".into(),
                        priority: 3,
                        start: 0,
                    },
                    Op::Prefix {
                        stream: 10,
                        session: 0,
                    },
                    write(10, group, true),
                    Op::Datagram {
                        data: vec![0, 1, 2, 3],
                    },
                    Op::Reset {
                        stream: 10,
                        code: moqring::webtransport::to_h3(3),
                    },
                ],
            ),
            (
                "drain",
                vec![
                    Op::GoAway { uri: String::new() },
                    Op::Capsule {
                        stream: 0,
                        close: false,
                        code: 0,
                        reason: String::new(),
                    },
                    Op::Close {
                        client: false,
                        code: 3,
                    },
                    Op::Read,
                    Op::Advance { ms: 300 },
                ],
            ),
            (
                "other_streams",
                vec![
                    Op::Prefix {
                        stream: 14,
                        session: 8,
                    },
                    write(14, b"junk".to_vec(), false),
                    Op::Connect {
                        stream: 8,
                        offer: 7,
                        path: "/again".into(),
                    },
                    write(18, vec![0x02, 0x00], false),
                    write(22, vec![0x01], false),
                    write(0, Vec::new(), true),
                ],
            ),
        ];
        for (name, ops) in scenarios {
            let mut all = open(v);
            all.extend(ops);
            seeds.push(seed(format!("{name}-{v}"), v, &all));
        }
    }
    let refused: [(&str, Vec<Op>); 3] = [
        (
            "no_version",
            vec![
                Op::Control { stream: 2 },
                Op::Connect {
                    stream: 0,
                    offer: 8,
                    path: "/anon".into(),
                },
            ],
        ),
        (
            "data_first",
            vec![
                write(2, vec![0x00, 0x00, 0x01, 0xff], false),
                write(0, capsule::close_frame(1, "x").to_vec(), true),
            ],
        ),
        (
            "bad_block",
            vec![
                Op::Control { stream: 2 },
                write(0, vec![0x01, 0x03, 0xff, 0xff, 0xff], false),
            ],
        ),
    ];
    for (name, ops) in refused {
        seeds.push(seed(name.to_string(), Version::Lite05, &ops));
    }
    seeds
}

fn seed(name: String, v: Version, ops: &[Op]) -> Seed {
    let bytes = session::script(v, ops);
    assert_eq!(
        session::read(&bytes),
        (v, ops.to_vec()),
        "{name}: ops read back differently"
    );
    Seed {
        target: "session_h3",
        name,
        bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Harness, Transport};

    #[test]
    fn session_seeds_open_a_webtransport_session_of_their_version_or_are_refused() {
        let refused = ["no_version", "data_first", "bad_block"];
        let seeds = sessions();
        assert_eq!(seeds.len(), 4 * Version::ALL.len() + refused.len());
        for seed in seeds {
            let (v, ops) = session::read(&seed.bytes);
            let mut harness = Harness::new(v, Transport::WebTransport);
            let mut version = None;
            for op in ops {
                harness.apply(op);
                if harness.is_ready() && version.is_none() {
                    version = harness.server().version();
                }
            }
            assert!(harness.server().is_webtransport(), "{}", seed.name);
            let expected = (!refused.contains(&seed.name.as_str())).then_some(v);
            assert_eq!(version, expected, "{}", seed.name);
        }
    }

    #[test]
    fn string_literals_of_a_test_module() {
        let source = concat!(
            "fn f() { \"not in tests\" }\n#[cfg(test)]\nmod tests { // café\n",
            "  let a = \"x\\\"y\"; let b = r#\"\"q\", t\"#; let c = '\"'; ",
            "let d = b\"bytes\"; let e = \"caf\\u{e9}\"; let f = \"z\";\n}\n"
        );
        let expected: Vec<Vec<u8>> = vec![b"\"q\", t".to_vec(), b"x\"y".to_vec(), b"z".to_vec()];
        assert_eq!(str_literals(source), expected);
    }
}
