//! The byte format of `session` and `session_h3` inputs: the version, then [`Op`]s, each
//! a tag byte and its fields ([`Op::decode`] never fails: see [`crate::input`]), and the
//! writer the seed generator uses.

use moqring::wire::Version;

use crate::input::{Input, Script};

/// One step of a session input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The client writes `data` on stream `stream` (any id; quiche refuses invalid ones).
    Write {
        stream: u8,
        fin: bool,
        data: Vec<u8>,
    },
    /// The client writes `count` copies of `byte` (bulk data from a short input).
    Fill {
        stream: u8,
        byte: u8,
        count: u16,
    },
    Reset {
        stream: u8,
        code: u64,
    },
    StopSending {
        stream: u8,
        code: u64,
    },
    /// The client sends a valid lite-05 SETUP (uni stream type, message, FIN).
    Setup {
        stream: u8,
        path: String,
    },
    /// The client reads everything the server sent (otherwise it leaves it unread).
    Read,
    /// Virtual time moves on; expired QUIC timers fire.
    Advance {
        ms: u16,
    },
    /// The server subscribes to a track of the client.
    Subscribe {
        broadcast: String,
        track: String,
        priority: u8,
        start: u8,
    },
    RequestAnnounces {
        prefix: String,
    },
    RequestTrack {
        broadcast: String,
        track: String,
    },
    /// The server ends one of its subscriptions (by index).
    Unsubscribe {
        index: u8,
    },
    /// The server answers one of the client's requests (by index) with [`Answer`] `action`.
    Answer {
        index: u8,
        action: u8,
        arg: u64,
    },
    /// The server acts on one of the group streams it opened: [`GroupAction`] `action`.
    Group {
        index: u8,
        action: u8,
        arg: u16,
    },
    GoAway {
        uri: String,
    },
    Close {
        client: bool,
        code: u64,
    },
    /// The client's HTTP/3 control stream (stream type, SETTINGS) on `stream`.
    Control {
        stream: u8,
    },
    /// An Extended CONNECT on `stream` offering the versions of bits 0-2 of `offer`
    /// ([`Version::ALL`] order; bit 3 first offers one nobody speaks, bit 4 reverses).
    Connect {
        stream: u8,
        offer: u8,
        path: String,
    },
    /// The WebTransport prefix of session `session` (uni or bidi, as `stream` is).
    Prefix {
        stream: u8,
        session: u8,
    },
    /// A CLOSE_WEBTRANSPORT_SESSION capsule (or, without `close`, DRAIN) in a DATA frame.
    Capsule {
        stream: u8,
        close: bool,
        code: u32,
        reason: String,
    },
    /// A QUIC datagram from the client.
    Datagram {
        data: Vec<u8>,
    },
}

/// What [`Op::Answer`] does with a request stream, by `action % 11`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    ReplyAnnounces,
    Announce,
    ReplyTrack,
    ReplyFetch,
    Reject,
    SubscribeOk,
    SubscribeStart,
    SubscribeEnd,
    EndSubscription,
    ResetSubscription,
    OpenGroup,
}

pub(crate) const ANSWERS: [Answer; 11] = [
    Answer::ReplyAnnounces,
    Answer::Announce,
    Answer::ReplyTrack,
    Answer::ReplyFetch,
    Answer::Reject,
    Answer::SubscribeOk,
    Answer::SubscribeStart,
    Answer::SubscribeEnd,
    Answer::EndSubscription,
    Answer::ResetSubscription,
    Answer::OpenGroup,
];

impl Answer {
    pub fn code(self) -> u8 {
        ANSWERS.iter().position(|a| *a == self).unwrap_or(0) as u8
    }
}

/// What [`Op::Group`] does with a group stream, by `action % 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupAction {
    /// A frame of `arg` bytes.
    Frame,
    Finish,
    Reset,
}

pub(crate) const GROUP_ACTIONS: [GroupAction; 3] =
    [GroupAction::Frame, GroupAction::Finish, GroupAction::Reset];

impl GroupAction {
    pub fn code(self) -> u8 {
        GROUP_ACTIONS.iter().position(|a| *a == self).unwrap_or(0) as u8
    }
}

/// Ops in [`Op::decode`]'s tag order.
const OPS: u8 = 20;

fn string(input: &mut Input) -> String {
    String::from_utf8_lossy(input.chunk()).into_owned()
}

impl Op {
    pub fn decode(input: &mut Input) -> Op {
        match input.byte() % OPS {
            0 => Op::Write {
                stream: input.byte(),
                fin: input.byte() & 1 == 1,
                data: input.chunk().to_vec(),
            },
            1 => Op::Fill {
                stream: input.byte(),
                byte: input.byte(),
                count: input.u16(),
            },
            2 => Op::Reset {
                stream: input.byte(),
                code: input.varint(),
            },
            3 => Op::StopSending {
                stream: input.byte(),
                code: input.varint(),
            },
            4 => Op::Setup {
                stream: input.byte(),
                path: string(input),
            },
            5 => Op::Read,
            6 => Op::Advance { ms: input.u16() },
            7 => Op::Subscribe {
                broadcast: string(input),
                track: string(input),
                priority: input.byte(),
                start: input.byte(),
            },
            8 => Op::RequestAnnounces {
                prefix: string(input),
            },
            9 => Op::RequestTrack {
                broadcast: string(input),
                track: string(input),
            },
            10 => Op::Unsubscribe {
                index: input.byte(),
            },
            11 => Op::Answer {
                index: input.byte(),
                action: input.byte(),
                arg: input.varint(),
            },
            12 => Op::Group {
                index: input.byte(),
                action: input.byte(),
                arg: input.u16(),
            },
            13 => Op::GoAway { uri: string(input) },
            14 => Op::Close {
                client: input.byte() & 1 == 1,
                code: input.varint(),
            },
            15 => Op::Control {
                stream: input.byte(),
            },
            16 => Op::Connect {
                stream: input.byte(),
                offer: input.byte(),
                path: string(input),
            },
            17 => Op::Prefix {
                stream: input.byte(),
                session: input.byte(),
            },
            18 => Op::Capsule {
                stream: input.byte(),
                close: input.byte() & 1 == 1,
                code: input.varint() as u32,
                reason: string(input),
            },
            _ => Op::Datagram {
                data: input.chunk().to_vec(),
            },
        }
    }

    pub fn encode(&self, out: &mut Script) {
        match self {
            Op::Write { stream, fin, data } => {
                out.byte(0).byte(*stream).byte(u8::from(*fin)).chunk(data)
            }
            Op::Fill {
                stream,
                byte,
                count,
            } => out.byte(1).byte(*stream).byte(*byte).u16(*count),
            Op::Reset { stream, code } => out.byte(2).byte(*stream).varint(*code),
            Op::StopSending { stream, code } => out.byte(3).byte(*stream).varint(*code),
            Op::Setup { stream, path } => out.byte(4).byte(*stream).chunk(path.as_bytes()),
            Op::Read => out.byte(5),
            Op::Advance { ms } => out.byte(6).u16(*ms),
            Op::Subscribe {
                broadcast,
                track,
                priority,
                start,
            } => out
                .byte(7)
                .chunk(broadcast.as_bytes())
                .chunk(track.as_bytes())
                .byte(*priority)
                .byte(*start),
            Op::RequestAnnounces { prefix } => out.byte(8).chunk(prefix.as_bytes()),
            Op::RequestTrack { broadcast, track } => out
                .byte(9)
                .chunk(broadcast.as_bytes())
                .chunk(track.as_bytes()),
            Op::Unsubscribe { index } => out.byte(10).byte(*index),
            Op::Answer { index, action, arg } => {
                out.byte(11).byte(*index).byte(*action).varint(*arg)
            }
            Op::Group { index, action, arg } => out.byte(12).byte(*index).byte(*action).u16(*arg),
            Op::GoAway { uri } => out.byte(13).chunk(uri.as_bytes()),
            Op::Close { client, code } => out.byte(14).byte(u8::from(*client)).varint(*code),
            Op::Control { stream } => out.byte(15).byte(*stream),
            Op::Connect {
                stream,
                offer,
                path,
            } => out
                .byte(16)
                .byte(*stream)
                .byte(*offer)
                .chunk(path.as_bytes()),
            Op::Prefix { stream, session } => out.byte(17).byte(*stream).byte(*session),
            Op::Capsule {
                stream,
                close,
                code,
                reason,
            } => out
                .byte(18)
                .byte(*stream)
                .byte(u8::from(*close))
                .varint(u64::from(*code))
                .chunk(reason.as_bytes()),
            Op::Datagram { data } => out.byte(19).chunk(data),
        };
    }
}

/// A whole session input: the version, then the ops.
pub fn script(version: Version, ops: &[Op]) -> Vec<u8> {
    let mut out = Script::default();
    out.byte(Version::ALL.iter().position(|v| *v == version).unwrap_or(0) as u8);
    for op in ops {
        op.encode(&mut out);
    }
    out.bytes
}

/// Reads a whole session input: the version, then the ops.
pub fn read(data: &[u8]) -> (Version, Vec<Op>) {
    let mut input = Input::new(data);
    let version = Version::ALL[usize::from(input.byte()) % Version::ALL.len()];
    let mut ops = Vec::new();
    while !input.is_empty() {
        ops.push(Op::decode(&mut input));
    }
    (version, ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_read_back_as_written() {
        let ops = vec![
            Op::Write {
                stream: 4,
                fin: true,
                data: b"\x02\x05hello".to_vec(),
            },
            Op::Fill {
                stream: 2,
                byte: 0xff,
                count: 1000,
            },
            Op::Reset {
                stream: 0,
                code: 77,
            },
            Op::StopSending { stream: 3, code: 1 },
            Op::Setup {
                stream: 2,
                path: "/anon".into(),
            },
            Op::Read,
            Op::Advance { ms: 250 },
            Op::Subscribe {
                broadcast: "anon/x".into(),
                track: "t".into(),
                priority: 3,
                start: 1,
            },
            Op::RequestAnnounces {
                prefix: "anon".into(),
            },
            Op::RequestTrack {
                broadcast: "anon/x".into(),
                track: "t".into(),
            },
            Op::Unsubscribe { index: 1 },
            Op::Answer {
                index: 0,
                action: Answer::OpenGroup.code(),
                arg: 300,
            },
            Op::Group {
                index: 0,
                action: GroupAction::Reset.code(),
                arg: 9,
            },
            Op::GoAway {
                uri: "https://b/".into(),
            },
            Op::Close {
                client: true,
                code: 5,
            },
            Op::Control { stream: 2 },
            Op::Connect {
                stream: 0,
                offer: 0b10101,
                path: "/anon?jwt=x".into(),
            },
            Op::Prefix {
                stream: 6,
                session: 0,
            },
            Op::Capsule {
                stream: 0,
                close: true,
                code: u32::MAX,
                reason: "bye".into(),
            },
            Op::Datagram {
                data: vec![0, 1, 2],
            },
        ];
        let bytes = script(Version::Lite04, &ops);
        assert_eq!(read(&bytes), (Version::Lite04, ops));
    }
}
