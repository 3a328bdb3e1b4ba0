//! The case tables of the malformed-input matrix: what is sent, on which stream kind, for
//! which versions, and what the relay must do. Whole families are generated: every
//! size-prefixed message the relay reads gets the same four defects.

use moqring::wire::varint;
use moqring::wire::{
    Announce, AnnounceOk, AnnounceRequest, ControlType, DataType, Fetch, FrameHeader, Message,
    Setup, SubscribeDrop, SubscribeOptions, TrackInfo, TrackRequest, Version,
};
use std::time::Duration;

use crate::peer::{frames_bytes, group_head, subscribe_bytes, Outcome};

pub const ALL: &[Version] = &[Version::Lite03, Version::Lite04, Version::Lite05];
pub const V05: &[Version] = &[Version::Lite05];
pub const OLD: &[Version] = &[Version::Lite03, Version::Lite04];

/// moq-lite codes (src/wire/error.rs).
pub const CANCEL: u64 = 0;
pub const DECODE: u64 = 5;
pub const UNEXPECTED_STREAM: u64 = 10;
pub const BOUNDS_EXCEEDED: u64 = 11;
pub const NOT_FOUND: u64 = 13;
pub const UNEXPECTED_MESSAGE: u64 = 16;
pub const UNSUPPORTED: u64 = 17;
pub const FRAME_TOO_LARGE: u64 = 27;

/// The relay of the publisher-side run is started with this `--max-frame-size`.
pub const MAX_FRAME: usize = 65536;

/// The honest track, as a raw session rooted at "" names it.
pub const HONEST: &str = "anon/honest";

/// Where a case's bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// A new bidi stream of a ready session.
    Bidi,
    /// A new uni stream of a ready session.
    Uni,
    /// A new uni stream of a lite-05 connection that sent no SETUP yet.
    UniBeforeSetup,
    /// A bidi stream opened before the lite-05 SETUP, which follows after a quiet period.
    BidiBeforeSetup,
    /// The subscribe stream of a SUBSCRIBE to the honest track, after the relay answered.
    AfterSubscribe,
    /// A new bidi stream, after a SUBSCRIBE (id 0) to the honest track on another one.
    BidiAfterSubscribe,
    /// A publisher's answer on the relay's announce request stream.
    AnnounceReply,
    /// A publisher's answer on the relay's subscribe stream.
    SubscribeReply,
    /// A publisher's answer to the relay's TRACK request (lite-05).
    TrackReply,
    /// A publisher's group stream for the relay's subscription (the bytes start with the
    /// stream type), after SUBSCRIBE_OK / SUBSCRIBE_START.
    Group,
    /// The same, before the publisher accepted the subscription.
    GroupBeforeOk,
    /// A new uni stream of an `h3` connection, before any CONNECT.
    H3Uni,
    /// A new bidi stream (a request) of an `h3` connection, before any CONNECT.
    H3Bidi,
    /// A new uni HTTP/3 stream (no WebTransport prefix) beside a live WebTransport session.
    H3UniInSession,
    /// A new bidi stream of a lite-05 WebTransport session (the prefix is added).
    WtBidi,
    /// A new uni stream of a lite-05 WebTransport session (the prefix is added).
    WtUni,
}

/// What the subscriber of a publisher case sees of the case's group 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Down {
    /// Not checked (not a group case).
    Skip,
    /// No stream for it at all.
    NoGroup,
    /// Its stream reset with this code.
    Reset(u64),
    /// Delivered whole with these frames.
    Delivered(Vec<Vec<u8>>),
}

pub type Bytes = Box<dyn Fn(Version, u64) -> Vec<u8> + Send + Sync>;

pub struct Case {
    pub name: String,
    pub versions: &'static [Version],
    pub on: On,
    /// The bytes for a version; the number is the relay's subscribe id (group cases).
    pub bytes: Bytes,
    /// FIN after the bytes.
    pub fin: bool,
    pub expect: Outcome,
    pub down: Down,
}

fn case(
    name: impl Into<String>,
    versions: &'static [Version],
    on: On,
    bytes: impl Fn(Version, u64) -> Vec<u8> + Send + Sync + 'static,
    expect: Outcome,
) -> Case {
    Case {
        name: name.into(),
        versions,
        on,
        bytes: Box::new(bytes),
        fin: false,
        expect,
        down: Down::Skip,
    }
}

impl Case {
    fn fin(mut self) -> Self {
        self.fin = true;
        self
    }

    fn down(mut self, down: Down) -> Self {
        self.down = down;
        self
    }
}

fn closed(code: u64) -> Outcome {
    Outcome::Closed(code)
}

fn reset(code: u64) -> Outcome {
    Outcome::Reset(code)
}

fn enc(v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint::encode(v, &mut out);
    out
}

fn msg<M: Message>(m: &M, v: Version) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out, v);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn control(ty: ControlType) -> Vec<u8> {
    let mut out = Vec::new();
    ty.encode(&mut out);
    out
}

// ---------------------------------------------------------------------------------------
// The four defects of a size-prefixed message
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
pub enum Defect {
    /// The body cut in half by FIN.
    Truncated,
    /// A size one byte short: the last field runs past the message's end.
    Overrun,
    /// A size one byte long, and that byte sent: trailing bytes in the message.
    Trailing,
    /// A size over 64 KiB.
    Oversized,
}

impl Defect {
    const ALL: [Defect; 4] = [
        Defect::Truncated,
        Defect::Overrun,
        Defect::Trailing,
        Defect::Oversized,
    ];

    fn name(self) -> &'static str {
        match self {
            Defect::Truncated => "truncated by FIN",
            Defect::Overrun => "last field past the size",
            Defect::Trailing => "trailing byte inside the size",
            Defect::Oversized => "size over 64 KiB",
        }
    }

    /// Rewrites `sized` (`size | body`, a valid encoding).
    fn apply(self, sized: &[u8]) -> Vec<u8> {
        let mut body = sized;
        let size = varint::decode(&mut body).expect("a size prefix") as usize;
        assert_eq!(size, body.len(), "one whole message");
        match self {
            Defect::Truncated => cat(&[&enc(size as u64), &body[..size / 2]]),
            Defect::Overrun => cat(&[&enc(size as u64 - 1), &body[..size - 1]]),
            Defect::Trailing => cat(&[&enc(size as u64 + 1), body, &[0]]),
            Defect::Oversized => cat(&[&enc(65537), body]),
        }
    }

    /// What the relay documents for a control message with this defect.
    fn control_outcome(self) -> Outcome {
        match self {
            Defect::Oversized => closed(BOUNDS_EXCEEDED),
            _ => closed(DECODE),
        }
    }
}

/// One message the relay reads: the bytes before it on its stream, and its encoding.
struct Family {
    name: &'static str,
    versions: &'static [Version],
    on: On,
    head: fn(Version, u64) -> Vec<u8>,
    sized: fn(Version, u64) -> Vec<u8>,
}

/// Every message the relay reads from a peer, with the stream it arrives on.
fn families() -> Vec<Family> {
    vec![
        Family {
            name: "ANNOUNCE_REQUEST",
            versions: ALL,
            on: On::Bidi,
            head: |_, _| control(ControlType::Announce),
            sized: |v, _| {
                let req = AnnounceRequest {
                    prefix: "some/prefix".into(),
                    exclude_hop: 9,
                };
                msg(&req, v)
            },
        },
        Family {
            name: "SUBSCRIBE",
            versions: ALL,
            on: On::Bidi,
            head: |_, _| control(ControlType::Subscribe),
            sized: |v, _| subscribe_bytes(v, 3, "no/such", "video")[1..].to_vec(),
        },
        Family {
            name: "SUBSCRIBE_UPDATE",
            versions: ALL,
            on: On::AfterSubscribe,
            head: |_, _| Vec::new(),
            sized: |v, _| msg(&options(), v),
        },
        Family {
            name: "TRACK",
            versions: V05,
            on: On::Bidi,
            head: |_, _| control(ControlType::Track),
            sized: |v, _| {
                let req = TrackRequest {
                    broadcast: "no/such".into(),
                    track: "video".into(),
                };
                msg(&req, v)
            },
        },
        Family {
            name: "FETCH",
            versions: V05,
            on: On::Bidi,
            head: |_, _| control(ControlType::Fetch),
            sized: |v, _| {
                let fetch = Fetch {
                    broadcast: "no/such".into(),
                    track: "video".into(),
                    priority: 1,
                    group: 300,
                };
                msg(&fetch, v)
            },
        },
        Family {
            name: "SETUP",
            versions: V05,
            on: On::UniBeforeSetup,
            head: |_, _| {
                let mut out = Vec::new();
                DataType::Setup.encode(&mut out);
                out
            },
            sized: |v, _| {
                let setup = Setup {
                    path: Some("/".into()),
                    origin: Some(44),
                    ..Setup::default()
                };
                msg(&setup, v)
            },
        },
        Family {
            name: "ANNOUNCE_OK",
            versions: V05,
            on: On::AnnounceReply,
            head: |_, _| Vec::new(),
            sized: |v, _| {
                let ok = AnnounceOk {
                    origin: 7,
                    active: 1,
                };
                msg(&ok, v)
            },
        },
        Family {
            name: "ANNOUNCE",
            versions: ALL,
            on: On::AnnounceReply,
            head: announce_ok_first,
            sized: |v, _| {
                let active = Announce::Active {
                    suffix: "raw/announced".into(),
                    hops: vec![5, 6],
                };
                msg(&active, v)
            },
        },
        Family {
            name: "SUBSCRIBE_OK",
            versions: OLD,
            on: On::SubscribeReply,
            head: |_, _| enc(0),
            sized: |v, _| msg(&options(), v),
        },
        Family {
            name: "SUBSCRIBE_START",
            versions: V05,
            on: On::SubscribeReply,
            head: |_, _| enc(0),
            sized: |_, _| cat(&[&enc(2), &enc(300)]),
        },
        Family {
            name: "SUBSCRIBE_END",
            versions: V05,
            on: On::SubscribeReply,
            head: |_, _| enc(1),
            sized: |_, _| cat(&[&enc(2), &enc(300)]),
        },
        Family {
            name: "SUBSCRIBE_DROP",
            versions: ALL,
            on: On::SubscribeReply,
            head: |v, _| enc(if v.has_track_stream() { 2 } else { 1 }),
            sized: |v, _| {
                let drop = SubscribeDrop {
                    start: 1,
                    end: 300,
                    error: 0,
                };
                msg(&drop, v)
            },
        },
        Family {
            name: "TRACK_INFO",
            versions: V05,
            on: On::TrackReply,
            head: |_, _| Vec::new(),
            sized: |v, _| msg(&TrackInfo::default(), v),
        },
        Family {
            name: "GROUP header",
            versions: ALL,
            on: On::Group,
            head: |_, _| {
                let mut out = Vec::new();
                DataType::Group.encode(&mut out);
                out
            },
            sized: |v, sub| group_head(v, sub, 0)[1..].to_vec(),
        },
    ]
}

fn options() -> SubscribeOptions {
    SubscribeOptions {
        priority: 3,
        ordered: true,
        max_latency: Duration::from_millis(700),
        start_group: Some(2),
        end_group: None,
    }
}

/// On lite-05 announcements follow an ANNOUNCE_OK.
fn announce_ok_first(v: Version, _: u64) -> Vec<u8> {
    if !v.has_announce_ok() {
        return Vec::new();
    }
    let ok = AnnounceOk {
        origin: 7,
        active: 1,
    };
    msg(&ok, v)
}

/// The four defects of every family.
fn defects() -> Vec<Case> {
    let mut cases = Vec::new();
    for family in families() {
        for defect in Defect::ALL {
            let (head, sized) = (family.head, family.sized);
            let bytes = move |v, sub| cat(&[&head(v, sub), &defect.apply(&sized(v, sub))]);
            let name = format!("{}: {}", family.name, defect.name());
            let mut c = case(
                name,
                family.versions,
                family.on,
                bytes,
                defect.control_outcome(),
            );
            if matches!(defect, Defect::Truncated) {
                c = c.fin();
            }
            if family.on == On::Group {
                // A group header is not a control message: its stream alone fails.
                c = match defect {
                    Defect::Truncated => {
                        // Ended by the publisher itself: nothing to reset.
                        c.expect = Outcome::Quiet;
                        c.down(Down::NoGroup)
                    }
                    _ => {
                        c.expect = reset(DECODE);
                        c.down(Down::NoGroup)
                    }
                };
            }
            cases.push(c);
        }
    }
    cases
}

// ---------------------------------------------------------------------------------------
// Requests, stream types, SETUP, order and ids (a client of the relay)
// ---------------------------------------------------------------------------------------

/// Everything a subscribing or requesting peer can get wrong, but the message defects.
pub fn requester_cases() -> Vec<Case> {
    let sub = |v| subscribe_bytes(v, 1, "no/such", "video");
    let mut cases = vec![
        case(
            "unknown control stream type 7",
            ALL,
            On::Bidi,
            |_, _| enc(7),
            closed(UNEXPECTED_MESSAGE),
        ),
        case(
            "unknown control stream type 2^30 (8-byte varint)",
            ALL,
            On::Bidi,
            |_, _| enc(1 << 30),
            closed(UNEXPECTED_MESSAGE),
        ),
        case(
            "control stream type 0 (lite-01/02 session stream)",
            ALL,
            On::Bidi,
            |_, _| enc(0),
            closed(UNEXPECTED_STREAM),
        ),
        case(
            "TRACK stream before lite-05",
            OLD,
            On::Bidi,
            |_, _| control(ControlType::Track),
            closed(UNEXPECTED_STREAM),
        ),
        case(
            "FETCH stream before lite-05",
            OLD,
            On::Bidi,
            |_, _| control(ControlType::Fetch),
            reset(UNSUPPORTED),
        ),
        case(
            "PROBE stream",
            ALL,
            On::Bidi,
            |_, _| control(ControlType::Probe),
            reset(UNSUPPORTED),
        ),
        case(
            "GOAWAY stream from a client",
            ALL,
            On::Bidi,
            |_, _| control(ControlType::Goaway),
            reset(UNSUPPORTED),
        ),
        case(
            "control stream type varint cut by FIN",
            ALL,
            On::Bidi,
            |_, _| vec![0x40],
            closed(DECODE),
        )
        .fin(),
        case(
            "unknown data stream type 7",
            ALL,
            On::Uni,
            |_, _| enc(7),
            reset(UNEXPECTED_STREAM),
        ),
        case(
            "data stream type varint cut by FIN",
            ALL,
            On::Uni,
            |_, _| vec![0x80, 0x00],
            closed(DECODE),
        )
        .fin(),
        case(
            "SETUP stream before lite-05",
            OLD,
            On::Uni,
            |_, _| {
                let mut out = Vec::new();
                DataType::Setup.encode(&mut out);
                out
            },
            reset(UNEXPECTED_STREAM),
        ),
        case(
            "group for a subscription the relay never made",
            ALL,
            On::Uni,
            |v, _| cat(&[&group_head(v, 77, 0), &frames_bytes(v, &[b"stray"])]),
            reset(CANCEL),
        ),
        case(
            "SUBSCRIBE path of 33 parts",
            ALL,
            On::Bidi,
            |v, _| subscribe_bytes(v, 1, &vec!["p"; 33].join("/"), "t"),
            closed(DECODE),
        ),
        case(
            "SUBSCRIBE track name not UTF-8",
            ALL,
            On::Bidi,
            |_, _| {
                cat(&[
                    &control(ControlType::Subscribe),
                    &[11, 1, 1, b'x', 2, 0xc3, 0x28, 0, 0, 0, 0, 0],
                ])
            },
            closed(DECODE),
        ),
        case(
            "SUBSCRIBE field length over 64 KiB in a small message",
            ALL,
            On::Bidi,
            |_, _| cat(&[&control(ControlType::Subscribe), &[6, 1, 0], &enc(70_000)]),
            closed(BOUNDS_EXCEEDED),
        ),
        case(
            "ANNOUNCE_REQUEST followed by more bytes",
            ALL,
            On::Bidi,
            |v, _| {
                let req = AnnounceRequest {
                    prefix: String::new(),
                    exclude_hop: 0,
                };
                cat(&[&control(ControlType::Announce), &msg(&req, v), &[1, 2, 3]])
            },
            closed(UNEXPECTED_MESSAGE),
        ),
        case(
            "out of order: SUBSCRIBE_UPDATE first on a subscribe stream",
            ALL,
            On::Bidi,
            |v, _| cat(&[&control(ControlType::Subscribe), &msg(&options(), v)]),
            closed(DECODE),
        ),
        case(
            "out of order: a request before SETUP (answered once SETUP arrives)",
            V05,
            On::BidiBeforeSetup,
            move |v, _| sub(v),
            reset(NOT_FOUND),
        ),
        case(
            "SETUP parameter given twice",
            V05,
            On::UniBeforeSetup,
            |_, _| cat(&[&[1], &[7, 2, 2, 1, b'a', 2, 1, b'b']]),
            closed(DECODE),
        ),
        case(
            "SETUP with 65 parameters",
            V05,
            On::UniBeforeSetup,
            |_, _| {
                let mut body = enc(65);
                for id in 0..65u64 {
                    body.extend(enc(0x40 + id));
                    body.push(0);
                }
                cat(&[&[1], &enc(body.len() as u64), &body])
            },
            closed(DECODE),
        ),
        case(
            "SETUP path not UTF-8",
            V05,
            On::UniBeforeSetup,
            |_, _| cat(&[&[1], &[5, 1, 2, 2, 0xc3, 0x28]]),
            closed(DECODE),
        ),
        case(
            "duplicate: a second SETUP stream (ignored)",
            V05,
            On::Uni,
            |_, _| crate::peer::setup_bytes(),
            Outcome::Quiet,
        ),
        case(
            "duplicate: a second SUBSCRIBE with the same id (served, told apart by stream)",
            ALL,
            On::BidiAfterSubscribe,
            |v, _| subscribe_bytes(v, 0, HONEST, "t"),
            Outcome::Quiet,
        ),
    ];
    cases.extend(defects().into_iter().filter(|c| is_requester(c.on)));
    cases
}

fn is_requester(on: On) -> bool {
    matches!(
        on,
        On::Bidi
            | On::Uni
            | On::UniBeforeSetup
            | On::BidiBeforeSetup
            | On::AfterSubscribe
            | On::BidiAfterSubscribe
    )
}

// ---------------------------------------------------------------------------------------
// A publisher's answers, groups and frames
// ---------------------------------------------------------------------------------------

/// Everything a publishing peer can get wrong.
pub fn publisher_cases() -> Vec<Case> {
    let group = |v: Version, sub: u64, rest: &[u8]| cat(&[&group_head(v, sub, 0), rest]);
    let mut cases = vec![
        case(
            "ANNOUNCE status byte 9",
            ALL,
            On::AnnounceReply,
            |v, sub| cat(&[&announce_ok_first(v, sub), &[4, 9, 1, b'x', 0]]),
            closed(DECODE),
        ),
        case(
            "ANNOUNCE with 33 hops",
            ALL,
            On::AnnounceReply,
            |v, sub| {
                let mut body = vec![1, 1, b'x', 33];
                if v != Version::Lite03 {
                    body.extend([1; 33]);
                }
                cat(&[&announce_ok_first(v, sub), &enc(body.len() as u64), &body])
            },
            closed(DECODE),
        ),
        case(
            "ANNOUNCE path not UTF-8",
            ALL,
            On::AnnounceReply,
            |v, sub| cat(&[&announce_ok_first(v, sub), &[5, 1, 2, 0xc3, 0x28, 0]]),
            closed(DECODE),
        ),
        case(
            "out of order: ANNOUNCE before ANNOUNCE_OK",
            V05,
            On::AnnounceReply,
            |v, _| {
                let active = Announce::Active {
                    suffix: "raw/early".into(),
                    hops: vec![],
                };
                msg(&active, v)
            },
            closed(DECODE),
        ),
        case(
            "unknown subscribe response type 9",
            ALL,
            On::SubscribeReply,
            |_, _| vec![9, 1, 0],
            closed(UNEXPECTED_MESSAGE),
        ),
        case(
            "TRACK_INFO timescale 0",
            V05,
            On::TrackReply,
            |_, _| vec![4, 0, 0, 0, 0],
            closed(DECODE),
        ),
        case(
            "FRAME over --max-frame-size",
            ALL,
            On::Group,
            move |v, sub| {
                let mut rest = Vec::new();
                FrameHeader {
                    timestamp: 0,
                    size: MAX_FRAME as u64 + 1,
                }
                .encode(&mut rest, v, 0);
                rest.extend_from_slice(&[0xab; 100]);
                group(v, sub, &rest)
            },
            reset(FRAME_TOO_LARGE),
        )
        .down(Down::Reset(FRAME_TOO_LARGE)),
        case(
            "FRAME payload cut by FIN",
            ALL,
            On::Group,
            move |v, sub| {
                let mut rest = frames_bytes(v, &[&[0xcd; 100]]);
                rest.truncate(rest.len() - 50);
                group(v, sub, &rest)
            },
            Outcome::Quiet,
        )
        .fin()
        .down(Down::Reset(DECODE)),
        case(
            "FRAME size varint cut by FIN",
            ALL,
            On::Group,
            move |v, sub| {
                let whole = frames_bytes(v, &[b"first"]);
                let ts: &[u8] = if v.has_track_stream() { &[0] } else { &[] };
                group(v, sub, &cat(&[&whole, ts, &[0x80, 0x01]]))
            },
            Outcome::Quiet,
        )
        .fin()
        .down(Down::Reset(DECODE)),
        case(
            "FRAME timestamp below zero",
            V05,
            On::Group,
            move |v, sub| {
                let mut rest = Vec::new();
                varint::encode_zigzag(-1, &mut rest);
                rest.extend([3, 1, 2, 3]);
                group(v, sub, &rest)
            },
            reset(DECODE),
        )
        .down(Down::Reset(DECODE)),
        case(
            "group for a subscribe id the relay never used",
            ALL,
            On::Group,
            |v, sub| cat(&[&group_head(v, sub + 1000, 0), &frames_bytes(v, &[b"stray"])]),
            reset(CANCEL),
        )
        .down(Down::NoGroup),
        case(
            "out of order: a group before SUBSCRIBE_OK / SUBSCRIBE_START (delivered)",
            ALL,
            On::GroupBeforeOk,
            move |v, sub| group(v, sub, &frames_bytes(v, &[b"early", b"bird"])),
            Outcome::Quiet,
        )
        .fin()
        .down(Down::Delivered(vec![b"early".to_vec(), b"bird".to_vec()])),
        case(
            "duplicate: the same broadcast announced twice",
            ALL,
            On::AnnounceReply,
            |v, sub| {
                let active = Announce::Active {
                    suffix: "raw/twice".into(),
                    hops: vec![],
                };
                cat(&[
                    &announce_ok_first(v, sub),
                    &msg(&active, v),
                    &msg(&active, v),
                ])
            },
            Outcome::Quiet,
        ),
    ];
    cases.extend(defects().into_iter().filter(|c| !is_requester(c.on)));
    cases
}

// ---------------------------------------------------------------------------------------
// HTTP/3 and WebTransport
// ---------------------------------------------------------------------------------------

/// HTTP/3 codes (RFC 9114 §8.1) and WT_BUFFERED_STREAM_REJECTED.
pub const H3_STREAM_CREATION_ERROR: u64 = 0x103;
pub const H3_CLOSED_CRITICAL_STREAM: u64 = 0x104;
pub const H3_FRAME_UNEXPECTED: u64 = 0x105;
pub const H3_EXCESSIVE_LOAD: u64 = 0x107;
pub const H3_SETTINGS_ERROR: u64 = 0x109;
pub const H3_MISSING_SETTINGS: u64 = 0x10a;
pub const H3_MESSAGE_ERROR: u64 = 0x10e;
pub const WT_BUFFERED_STREAM_REJECTED: u64 = 0x3994_bd84;

/// The HTTP/3 layer under WebTransport, and moq-lite inside a WebTransport session (the
/// versions column is moot for the HTTP/3 cases: the session inside is lite-05).
pub fn webtransport_cases() -> Vec<Case> {
    use crate::h3::{client_control_stream, control_stream, frame, uni_prefix, HEADERS};
    vec![
        case(
            "HTTP/3 control stream not opening with SETTINGS",
            V05,
            On::H3Uni,
            |_, _| cat(&[&[0x00], &frame(0x07, &[0])]),
            closed(H3_MISSING_SETTINGS),
        ),
        case(
            "HTTP/3 control stream closed",
            V05,
            On::H3Uni,
            |_, _| client_control_stream(),
            closed(H3_CLOSED_CRITICAL_STREAM),
        )
        .fin(),
        case(
            "DATA frame on the HTTP/3 control stream",
            V05,
            On::H3Uni,
            |_, _| cat(&[&client_control_stream(), &frame(0x00, &[1])]),
            closed(H3_FRAME_UNEXPECTED),
        ),
        case(
            "SETTINGS with a setting twice",
            V05,
            On::H3Uni,
            |_, _| control_stream(&[(0x33, 1), (0x33, 1)]),
            closed(H3_SETTINGS_ERROR),
        ),
        case(
            "SETTINGS frame over 64 KiB",
            V05,
            On::H3Uni,
            |_, _| cat(&[&[0x00, 0x04], &enc(65537)]),
            closed(H3_EXCESSIVE_LOAD),
        ),
        case(
            "unknown HTTP/3 stream type",
            V05,
            On::H3Uni,
            |_, _| enc(0x1234),
            reset(H3_STREAM_CREATION_ERROR),
        ),
        case(
            "WebTransport stream of a session that does not exist",
            V05,
            On::H3Uni,
            |_, _| cat(&[&uni_prefix(16), &[1, 2, 3]]),
            reset(WT_BUFFERED_STREAM_REJECTED),
        ),
        case(
            "a second HTTP/3 control stream",
            V05,
            On::H3UniInSession,
            |_, _| client_control_stream(),
            closed(H3_STREAM_CREATION_ERROR),
        ),
        case(
            "CONNECT HEADERS frame over 64 KiB",
            V05,
            On::H3Bidi,
            |_, _| cat(&[&enc(HEADERS), &enc(65537), &[0; 100]]),
            closed(H3_EXCESSIVE_LOAD),
        ),
        case(
            "CONNECT with garbage QPACK",
            V05,
            On::H3Bidi,
            |_, _| frame(HEADERS, &[0x00, 0x00, 0xff, 0xff, 0xff, 0xff]),
            closed(H3_MESSAGE_ERROR),
        ),
        case(
            "CONNECT referencing the QPACK dynamic table",
            V05,
            On::H3Bidi,
            |_, _| frame(HEADERS, &[0x02, 0x00, 0x80]),
            closed(H3_MESSAGE_ERROR),
        ),
        case(
            "HTTP/2 frame type on a request stream",
            V05,
            On::H3Bidi,
            |_, _| vec![0x02, 0x00],
            closed(H3_FRAME_UNEXPECTED),
        ),
        case(
            "DATA before HEADERS on a request stream",
            V05,
            On::H3Bidi,
            |_, _| frame(0x00, &[1]),
            closed(H3_FRAME_UNEXPECTED),
        ),
        case(
            "in a session: SUBSCRIBE with a field past its size",
            V05,
            On::WtBidi,
            |_, _| vec![0x02, 0x03, 0x01, 0x09, b'a'],
            Outcome::SessionClosed(DECODE),
        ),
        case(
            "in a session: SUBSCRIBE size over 64 KiB",
            V05,
            On::WtBidi,
            |_, _| cat(&[&control(ControlType::Subscribe), &enc(65537)]),
            Outcome::SessionClosed(BOUNDS_EXCEEDED),
        ),
        case(
            "in a session: unknown control stream type",
            V05,
            On::WtBidi,
            |_, _| enc(7),
            Outcome::SessionClosed(UNEXPECTED_MESSAGE),
        ),
        case(
            "in a session: PROBE stream",
            V05,
            On::WtBidi,
            |_, _| control(ControlType::Probe),
            reset(UNSUPPORTED),
        ),
        case(
            "in a session: unknown data stream type",
            V05,
            On::WtUni,
            |_, _| enc(7),
            reset(UNEXPECTED_STREAM),
        ),
    ]
}
