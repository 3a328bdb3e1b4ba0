//! Seed corpora: the codec tests' golden vectors for the `wire` target (read from the test
//! modules of `src/wire/*.rs`, so they follow the tests), and for `session` and `link`
//! short exchanges built with the codec, one per kind of stream and message. The seeds of
//! the HTTP/3 targets are in [`crate::h3_seeds`].

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use moqring::wire::{
    Announce, AnnounceOk, AnnounceRequest, ControlType, DataType, ErrorCode, Fetch, FrameHeader,
    GroupHeader, Message, Subscribe, SubscribeResponse, TrackInfo, TrackRequest, Version,
};

use crate::link::{self, LinkOp, Msg};
use crate::session::{self, Answer, GroupAction, Op};

/// One seed input of one target.
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The decoders each codec file's golden vectors are given to.
const WIRE_FILES: [(&str, &[&str]); 13] = [
    (
        "announce.rs",
        &["announce_request", "announce_ok", "announce"],
    ),
    ("fetch.rs", &["fetch"]),
    ("goaway.rs", &["goaway"]),
    ("group.rs", &["group_header", "frames"]),
    ("mod.rs", &["varint", "bytes", "subscribe_response"]),
    ("probe.rs", &["probe"]),
    ("setup.rs", &["setup"]),
    ("stream.rs", &["control_type", "data_type"]),
    (
        "subscribe.rs",
        &[
            "subscribe",
            "subscribe_options",
            "subscribe_drop",
            "subscribe_response",
        ],
    ),
    ("track.rs", &["track_request", "track_info"]),
    (
        "varint.rs",
        &[
            "varint", "zigzag", "string", "path", "option", "duration", "bytes", "flag",
        ],
    ),
    ("version.rs", &["alpn"]),
    ("error.rs", &["error_code"]),
];

/// The codec's source folder, whose test modules hold the golden vectors.
fn wire_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/wire")
}

/// The seeds of `target` (`wire`, `webtransport`, `session`, `session_h3` or `link`).
pub fn of(target: &str) -> io::Result<Vec<Seed>> {
    Ok(match target {
        "wire" => wire(&wire_dir())?,
        "session" => sessions(),
        "link" => links(),
        "webtransport" => crate::h3_seeds::decoders()?,
        "session_h3" => crate::h3_seeds::sessions(),
        _ => Vec::new(),
    })
}

/// Writes the seeds of `target` into `dir` (one file each); returns how many.
pub fn write(target: &str, dir: &Path) -> io::Result<usize> {
    let seeds = of(target)?;
    std::fs::create_dir_all(dir)?;
    for seed in &seeds {
        std::fs::write(dir.join(&seed.name), &seed.bytes)?;
    }
    Ok(seeds.len())
}

/// The golden vectors of the codec tests, each given to the decoders of its file on every
/// version; ALPNs and error codes too.
pub fn wire(dir: &Path) -> io::Result<Vec<Seed>> {
    // A codec file this table does not know has decoders the target may not know either.
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !WIRE_FILES.iter().any(|(file, _)| *file == name) {
            return Err(io::Error::other(format!(
                "{name}: a codec file the wire target does not know"
            )));
        }
    }
    let mut seeds = Vec::new();
    for (file, decoders) in WIRE_FILES {
        let source = std::fs::read_to_string(dir.join(file))?;
        let mut vectors = golden_vectors(&source);
        if vectors.is_empty() && file != "error.rs" {
            return Err(io::Error::other(format!("{file}: no golden vectors found")));
        }
        match file {
            "version.rs" => vectors.extend(Version::ALL.map(|v| v.alpn().to_vec())),
            "error.rs" => vectors.extend(ErrorCode::ALL.map(|e| {
                let mut buf = Vec::new();
                moqring::wire::varint::encode(e.code(), &mut buf);
                buf
            })),
            _ => {}
        }
        for (n, vector) in vectors.iter().enumerate() {
            for decoder in decoders.iter() {
                for version in Version::ALL {
                    let mut bytes = vec![crate::wire::selector(decoder, version)];
                    if *decoder == "frames" {
                        bytes.extend_from_slice(&0u64.to_le_bytes());
                    }
                    bytes.extend_from_slice(vector);
                    seeds.push(Seed {
                        target: "wire",
                        name: format!("{decoder}-{version}-{}-{n}", file.trim_end_matches(".rs")),
                        bytes,
                    });
                }
            }
        }
    }
    Ok(seeds)
}

/// The byte strings (`b"..."`) and byte arrays (`[0x06, 0x00, ...]`) written in the test
/// module of a codec source file.
pub fn golden_vectors(source: &str) -> Vec<Vec<u8>> {
    let Some(start) = source.find("#[cfg(test)]") else {
        return Vec::new();
    };
    let tests = &source[start..];
    let mut vectors = Vec::new();
    let bytes = tests.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let after_ident = i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if bytes[i] == b'b' && bytes.get(i + 1) == Some(&b'"') && !after_ident {
            if let Some((vector, end)) = byte_string(&tests[i + 2..]) {
                vectors.push(vector);
                i += 2 + end;
                continue;
            }
        }
        if bytes[i] == b'[' {
            if let Some(vector) = byte_array(&tests[i + 1..]) {
                vectors.push(vector);
            }
        }
        i += 1;
    }
    vectors.sort();
    vectors.dedup();
    vectors
}

/// Parses the body of a byte string literal up to its closing quote: the bytes and the
/// length of the body with its quote.
fn byte_string(s: &str) -> Option<(Vec<u8>, usize)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        match *b.get(i)? {
            b'"' => return Some((out, i + 1)),
            b'\\' => {
                let (byte, len) = match *b.get(i + 1)? {
                    b'x' => (u8::from_str_radix(s.get(i + 2..i + 4)?, 16).ok()?, 4),
                    b'n' => (b'\n', 2),
                    b'r' => (b'\r', 2),
                    b't' => (b'\t', 2),
                    b'0' => (0, 2),
                    c @ (b'\\' | b'"' | b'\'') => (c, 2),
                    _ => return None,
                };
                out.push(byte);
                i += len;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
}

/// Parses `0x06, 0x00, ...]` (after the `[`): a list of at least two byte literals, one of
/// them hexadecimal.
fn byte_array(s: &str) -> Option<Vec<u8>> {
    let body = &s[..s.find(']')?];
    let items: Vec<&str> = body
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if items.len() < 2 || !items.iter().any(|t| t.starts_with("0x")) {
        return None;
    }
    items
        .iter()
        .map(|t| {
            let t = t.trim_end_matches("u8");
            match t.strip_prefix("0x") {
                Some(hex) => u8::from_str_radix(hex, 16).ok(),
                None => t.parse().ok(),
            }
        })
        .collect()
}

fn control<M: Message>(t: ControlType, msg: &M, v: Version) -> Vec<u8> {
    let mut buf = Vec::new();
    t.encode(&mut buf);
    msg.encode(&mut buf, v);
    buf
}

fn encoded<M: Message>(msg: &M, v: Version) -> Vec<u8> {
    let mut buf = Vec::new();
    msg.encode(&mut buf, v);
    buf
}

fn client_write(stream: u8, data: Vec<u8>, fin: bool) -> Op {
    Op::Write { stream, fin, data }
}

fn answer(index: u8, answer: Answer, arg: u64) -> Op {
    Op::Answer {
        index,
        action: answer.code(),
        arg,
    }
}

/// The frames of the codec's golden group, headers and payloads.
fn golden_frames(v: Version) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut prev = 0;
    for (timestamp, payload) in [(1000, &b"hello"[..]), (990, &[7u8; 300][..]), (990, b"")] {
        let head = FrameHeader {
            timestamp,
            size: payload.len() as u64,
        };
        head.encode(&mut buf, v, prev);
        buf.extend_from_slice(payload);
        prev = timestamp;
    }
    buf
}

/// Session inputs: each kind of request in both directions, on every version.
pub fn sessions() -> Vec<Seed> {
    let mut seeds = Vec::new();
    for v in Version::ALL {
        let lite05 = v == Version::Lite05;
        // lite-05 clients send SETUP first (uni stream 2) with the path; the root is "anon".
        let setup: Vec<Op> = if lite05 {
            vec![Op::Setup {
                stream: 2,
                path: "/anon".into(),
            }]
        } else {
            Vec::new()
        };
        let broadcast = if lite05 { "x" } else { "anon/x" };
        let subscribe = Subscribe {
            id: 1,
            broadcast: broadcast.into(),
            track: "video".into(),
            priority: 3,
            ordered: true,
            max_latency: std::time::Duration::from_millis(100),
            start_group: Some(0),
            end_group: None,
        };
        let accept = if lite05 {
            answer(0, Answer::SubscribeStart, 0)
        } else {
            answer(0, Answer::SubscribeOk, 3)
        };
        // The server's first group stream: uni 3 is its SETUP on lite-05.
        let (group_stream, data_stream) = if lite05 { (7, 6) } else { (3, 2) };
        let mut scenarios: Vec<(&str, Vec<Op>)> = vec![
            (
                "serve",
                vec![
                    client_write(0, control(ControlType::Subscribe, &subscribe, v), false),
                    accept.clone(),
                    answer(0, Answer::OpenGroup, 0),
                    Op::Group {
                        index: 0,
                        action: GroupAction::Frame.code(),
                        arg: 5,
                    },
                    Op::Group {
                        index: 0,
                        action: GroupAction::Finish.code(),
                        arg: 0,
                    },
                    answer(0, Answer::SubscribeEnd, 1),
                    answer(0, Answer::EndSubscription, 0),
                    Op::Read,
                    Op::Advance { ms: 200 },
                    Op::Read,
                ],
            ),
            (
                "announce",
                vec![
                    client_write(
                        4,
                        control(
                            ControlType::Announce,
                            &AnnounceRequest {
                                prefix: String::new(),
                                exclude_hop: 9,
                            },
                            v,
                        ),
                        false,
                    ),
                    answer(0, Answer::ReplyAnnounces, 1),
                    answer(0, Answer::Announce, 2),
                    Op::Read,
                    client_write(4, Vec::new(), true),
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
                    client_write(
                        1,
                        encoded(
                            &if lite05 {
                                SubscribeResponse::Start { group: 0 }
                            } else {
                                SubscribeResponse::Ok(moqring::wire::SubscribeOk {
                                    priority: 3,
                                    ordered: false,
                                    max_latency: std::time::Duration::ZERO,
                                    start_group: None,
                                    end_group: None,
                                })
                            },
                            v,
                        ),
                        false,
                    ),
                    client_write(data_stream, group_stream_bytes(v), true),
                    client_write(1, Vec::new(), true),
                    Op::Unsubscribe { index: 0 },
                ],
            ),
            (
                "announced",
                vec![
                    Op::RequestAnnounces {
                        prefix: "anon".into(),
                    },
                    client_write(1, announces(v), false),
                    Op::Reset { stream: 1, code: 0 },
                ],
            ),
            (
                "reset",
                vec![
                    client_write(0, control(ControlType::Subscribe, &subscribe, v), false),
                    answer(0, Answer::OpenGroup, 4),
                    Op::Group {
                        index: 0,
                        action: GroupAction::Frame.code(),
                        arg: 1000,
                    },
                    Op::StopSending {
                        stream: group_stream,
                        code: 2,
                    },
                    Op::Reset { stream: 0, code: 0 },
                    Op::Read,
                ],
            ),
            (
                "close",
                vec![
                    Op::GoAway {
                        uri: "https://b/".into(),
                    },
                    Op::Read,
                    Op::Close {
                        client: true,
                        code: 0,
                    },
                ],
            ),
        ];
        if lite05 {
            scenarios.push(("track", track_ops()));
            // Streams before the SETUP: the server reads only uni streams until it came.
            scenarios.push((
                "before_setup",
                vec![
                    client_write(0, control(ControlType::Subscribe, &subscribe, v), false),
                    client_write(6, group_stream_bytes(v), true),
                ],
            ));
        }
        for (name, ops) in scenarios {
            let mut all = setup.clone();
            all.extend(ops);
            if name == "before_setup" {
                all.rotate_left(1);
            }
            let bytes = session::script(v, &all);
            assert_eq!(
                session::read(&bytes),
                (v, all),
                "{name}: ops read back differently"
            );
            seeds.push(Seed {
                target: "session",
                name: format!("{name}-{v}"),
                bytes,
            });
        }
    }
    seeds
}

/// A group stream of subscription 0: type, header, the golden frames.
fn group_stream_bytes(v: Version) -> Vec<u8> {
    let mut buf = Vec::new();
    DataType::Group.encode(&mut buf);
    GroupHeader {
        subscribe: 0,
        sequence: 0,
    }
    .encode(&mut buf, v);
    buf.extend(golden_frames(v));
    buf
}

/// Announcements on the server's announce request: ANNOUNCE_OK on lite-05, an active
/// broadcast, then its end.
fn announces(v: Version) -> Vec<u8> {
    let mut buf = Vec::new();
    if v.has_announce_ok() {
        AnnounceOk {
            origin: 5,
            active: 1,
        }
        .encode(&mut buf, v);
    }
    let hops = if v == Version::Lite03 {
        vec![0]
    } else {
        vec![5]
    };
    Announce::Active {
        suffix: "x".into(),
        hops,
    }
    .encode(&mut buf, v);
    Announce::Ended {
        suffix: "x".into(),
        hops: Vec::new(),
    }
    .encode(&mut buf, v);
    buf
}

/// lite-05 TRACK and FETCH requests both ways.
fn track_ops() -> Vec<Op> {
    let v = Version::Lite05;
    let request = TrackRequest {
        broadcast: "x".into(),
        track: "video".into(),
    };
    let fetch = Fetch {
        broadcast: "x".into(),
        track: "video".into(),
        priority: 3,
        group: 7,
    };
    vec![
        client_write(0, control(ControlType::Track, &request, v), true),
        answer(0, Answer::ReplyTrack, 1000),
        client_write(4, control(ControlType::Fetch, &fetch, v), true),
        answer(1, Answer::ReplyFetch, 2),
        Op::RequestTrack {
            broadcast: "anon/x".into(),
            track: "video".into(),
        },
        client_write(1, encoded(&TrackInfo::default(), v), true),
        Op::Read,
    ]
}

/// Link inputs: a track published on shard 1 and subscribed from shard 2 through this
/// shard, track and fetch requests, and forwarded datagrams (a real QUIC Initial).
pub fn links() -> Vec<Seed> {
    let deliver = |from| LinkOp::Deliver { from };
    let turn = LinkOp::Turn { accept: true };
    let mut scenarios = Vec::new();
    for track in 0..2u8 {
        scenarios.push((
            format!("relay-{}", link::TRACKS[usize::from(track)]),
            vec![
                LinkOp::Message(Msg::Announces {
                    stream: 1,
                    broadcasts: vec![0, 1],
                }),
                deliver(1),
                turn.clone(),
                LinkOp::Message(Msg::Subscribe {
                    stream: 0,
                    broadcast: 1,
                    track,
                    start: 0,
                    end: 0,
                }),
                deliver(2),
                turn.clone(),
                LinkOp::Message(Msg::SubscribeStart {
                    stream: 3,
                    group: 0,
                }),
                LinkOp::Message(Msg::Group {
                    stream: 3,
                    sequence: 0,
                }),
                LinkOp::Message(Msg::Frame {
                    stream: 3,
                    sequence: 0,
                    payload: b"hello".to_vec(),
                    timestamp: 1000,
                }),
                LinkOp::Message(Msg::GroupEnd {
                    stream: 3,
                    sequence: 0,
                    error: 0,
                }),
                LinkOp::Message(Msg::EndSubscription {
                    stream: 3,
                    error: 0,
                }),
                deliver(1),
                turn.clone(),
                LinkOp::Advance { ms: 3000 },
                turn.clone(),
            ],
        ));
    }
    scenarios.push((
        "requests".into(),
        vec![
            LinkOp::Message(Msg::RequestAnnounces { stream: 0 }),
            LinkOp::Message(Msg::TrackRequest {
                stream: 2,
                broadcast: 0,
                track: 0,
            }),
            LinkOp::Message(Msg::Fetch {
                stream: 4,
                broadcast: 0,
                track: 0,
                group: 0,
            }),
            deliver(2),
            LinkOp::Turn { accept: false },
            LinkOp::Message(Msg::TrackInfo {
                stream: 3,
                timescale: 1000,
            }),
            LinkOp::Message(Msg::Fetched {
                stream: 5,
                frames: 2,
                size: 10,
            }),
            LinkOp::Message(Msg::Reject { stream: 7, code: 9 }),
            LinkOp::Message(Msg::Cancel { stream: 0 }),
            deliver(1),
            turn.clone(),
        ],
    ));
    scenarios.push((
        "datagrams".into(),
        vec![
            LinkOp::Datagram(initial_packet()),
            LinkOp::Datagram(vec![0x40, 1, 2, 3]),
            deliver(1),
            turn.clone(),
            LinkOp::Advance { ms: 20_000 },
            turn,
        ],
    ));
    scenarios
        .into_iter()
        .map(|(name, ops)| {
            let bytes = link::script(&ops);
            assert_eq!(link::read(&bytes), ops, "{name}: ops read back differently");
            Seed {
                target: "link",
                name,
                bytes,
            }
        })
        .collect()
}

/// The first datagram of a QUIC client offering every moq-lite version.
fn initial_packet() -> Vec<u8> {
    let mut config =
        moqring::net::quic::client_config(&Version::ALL, false, false).expect("client config");
    let scid = quiche::ConnectionId::from_ref(&[9; quiche::MAX_CONN_ID_LEN]);
    let local: SocketAddr = "10.0.0.2:5000".parse().expect("address");
    let peer: SocketAddr = "10.0.0.1:4443".parse().expect("address");
    let mut conn =
        quiche::connect(Some("localhost"), &scid, local, peer, &mut config).expect("connect");
    let mut buf = vec![0u8; 1500];
    let (n, _) = conn.send(&mut buf).expect("initial");
    buf.truncate(n);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_vectors_are_read_from_test_modules() {
        let source = r#"
            const NOT_A_TEST: &[u8] = b"skipped";
            #[cfg(test)]
            mod tests {
                fn golden() {
                    assert_eq!(x, b"\x08\x01\x02\x05/anon");
                    assert_eq!(y, [0x06, 0x00, 0x53, 200]);
                    let z = &b"a\\\"\n"[..];
                    let not_bytes = [code];
                    let also_not = [1, 2];
                    let tagged = rb"x";
                }
            }
        "#;
        let vectors = golden_vectors(source);
        assert_eq!(
            vectors,
            vec![
                vec![0x06, 0x00, 0x53, 200],
                b"\x08\x01\x02\x05/anon".to_vec(),
                b"a\\\"\n".to_vec(),
            ]
        );
    }
}
