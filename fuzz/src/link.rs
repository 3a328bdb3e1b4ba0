//! The `link` target: shard 0 of a three-shard relay (its `Core`: connection table, links
//! and relay) fed arbitrary mail from the other shards: relay messages on the links, and
//! datagrams forwarded to its connection table.
//!
//! The input is a list of [`LinkOp`]s. Messages and datagrams collect into a mail that
//! [`LinkOp::Deliver`] hands over as from one shard; [`LinkOp::Turn`] runs one loop turn
//! (dispatch, flush and send, post with the other mailboxes full or not). Broadcast and
//! track names come from small tables, so the messages of one input meet on the same
//! tracks and on the owner shard's hash.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moqring::net::gso::SendBatch;
use moqring::net::quic;
use moqring::relay::{EagerRule, RelayConfig, Topology};
use moqring::session::{Frame, SessionConfig};
use moqring::shard::link::{Forwarded, Mail, Message};
use moqring::shard::{Admission, Core};
use moqring::wire::{ErrorCode, Fetch, Subscribe, TrackInfo, Version};

use crate::input::{Input, Script};

pub const BROADCASTS: [&str; 4] = ["live/cam", "b", "", "x/y/z"];
pub const TRACKS: [&str; 4] = ["video", "audio", "t", ""];

/// Shards of the relay under test; it is shard 0.
const SHARDS: usize = 3;

/// A relay message with its names as table indices (see [`BROADCASTS`], [`TRACKS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    RequestAnnounces {
        stream: u64,
    },
    Announces {
        stream: u64,
        broadcasts: Vec<u8>,
    },
    Announce {
        stream: u64,
        broadcast: u8,
        hop: u64,
        active: bool,
    },
    Subscribe {
        stream: u64,
        broadcast: u8,
        track: u8,
        start: u64,
        end: u64,
    },
    Cancel {
        stream: u64,
    },
    TrackRequest {
        stream: u64,
        broadcast: u8,
        track: u8,
    },
    TrackInfo {
        stream: u64,
        timescale: u64,
    },
    Fetch {
        stream: u64,
        broadcast: u8,
        track: u8,
        group: u64,
    },
    Fetched {
        stream: u64,
        frames: u8,
        size: u16,
    },
    Reject {
        stream: u64,
        code: u8,
    },
    SubscribeOk {
        stream: u64,
    },
    SubscribeStart {
        stream: u64,
        group: u64,
    },
    SubscribeEnd {
        stream: u64,
        group: u64,
    },
    EndSubscription {
        stream: u64,
        error: u64,
    },
    Group {
        stream: u64,
        sequence: u64,
    },
    Frame {
        stream: u64,
        sequence: u64,
        payload: Vec<u8>,
        timestamp: u64,
    },
    GroupEnd {
        stream: u64,
        sequence: u64,
        error: u64,
    },
}

/// One step of a link input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOp {
    /// Adds a message to the mail being written.
    Message(Msg),
    /// Adds a datagram for this shard's connections to the mail being written.
    Datagram(Vec<u8>),
    /// Hands the mail written so far to the shard as from shard `from` (0 is the shard
    /// itself and 3 is no shard: both must be ignored).
    Deliver {
        from: u8,
    },
    /// One loop turn; the other shards' mailboxes take its mail when `accept`.
    Turn {
        accept: bool,
    },
    Advance {
        ms: u16,
    },
}

fn name(table: &[&'static str; 4], index: u8) -> &'static str {
    table[usize::from(index) % table.len()]
}

/// An optional value as the link carries it: 0 is none, else the value + 1.
fn optional(v: u64) -> Option<u64> {
    v.checked_sub(1)
}

impl Msg {
    fn decode(input: &mut Input) -> Msg {
        let stream = input.varint();
        match input.byte() % 17 {
            0 => Msg::RequestAnnounces { stream },
            1 => Msg::Announces {
                stream,
                broadcasts: input.chunk().iter().take(8).copied().collect(),
            },
            2 => Msg::Announce {
                stream,
                broadcast: input.byte(),
                hop: input.varint(),
                active: input.byte() & 1 == 1,
            },
            3 => Msg::Subscribe {
                stream,
                broadcast: input.byte(),
                track: input.byte(),
                start: input.varint(),
                end: input.varint(),
            },
            4 => Msg::Cancel { stream },
            5 => Msg::TrackRequest {
                stream,
                broadcast: input.byte(),
                track: input.byte(),
            },
            6 => Msg::TrackInfo {
                stream,
                timescale: input.varint(),
            },
            7 => Msg::Fetch {
                stream,
                broadcast: input.byte(),
                track: input.byte(),
                group: input.varint(),
            },
            8 => Msg::Fetched {
                stream,
                frames: input.byte(),
                size: input.u16(),
            },
            9 => Msg::Reject {
                stream,
                code: input.byte(),
            },
            10 => Msg::SubscribeOk { stream },
            11 => Msg::SubscribeStart {
                stream,
                group: input.varint(),
            },
            12 => Msg::SubscribeEnd {
                stream,
                group: input.varint(),
            },
            13 => Msg::EndSubscription {
                stream,
                error: input.varint(),
            },
            14 => Msg::Group {
                stream,
                sequence: input.varint(),
            },
            15 => Msg::Frame {
                stream,
                sequence: input.varint(),
                payload: input.chunk().to_vec(),
                timestamp: input.varint(),
            },
            _ => Msg::GroupEnd {
                stream,
                sequence: input.varint(),
                error: input.varint(),
            },
        }
    }

    fn encode(&self, out: &mut Script) {
        match self {
            Msg::RequestAnnounces { stream } => out.varint(*stream).byte(0),
            Msg::Announces { stream, broadcasts } => out.varint(*stream).byte(1).chunk(broadcasts),
            Msg::Announce {
                stream,
                broadcast,
                hop,
                active,
            } => out
                .varint(*stream)
                .byte(2)
                .byte(*broadcast)
                .varint(*hop)
                .byte(u8::from(*active)),
            Msg::Subscribe {
                stream,
                broadcast,
                track,
                start,
                end,
            } => out
                .varint(*stream)
                .byte(3)
                .byte(*broadcast)
                .byte(*track)
                .varint(*start)
                .varint(*end),
            Msg::Cancel { stream } => out.varint(*stream).byte(4),
            Msg::TrackRequest {
                stream,
                broadcast,
                track,
            } => out.varint(*stream).byte(5).byte(*broadcast).byte(*track),
            Msg::TrackInfo { stream, timescale } => out.varint(*stream).byte(6).varint(*timescale),
            Msg::Fetch {
                stream,
                broadcast,
                track,
                group,
            } => out
                .varint(*stream)
                .byte(7)
                .byte(*broadcast)
                .byte(*track)
                .varint(*group),
            Msg::Fetched {
                stream,
                frames,
                size,
            } => out.varint(*stream).byte(8).byte(*frames).u16(*size),
            Msg::Reject { stream, code } => out.varint(*stream).byte(9).byte(*code),
            Msg::SubscribeOk { stream } => out.varint(*stream).byte(10),
            Msg::SubscribeStart { stream, group } => out.varint(*stream).byte(11).varint(*group),
            Msg::SubscribeEnd { stream, group } => out.varint(*stream).byte(12).varint(*group),
            Msg::EndSubscription { stream, error } => out.varint(*stream).byte(13).varint(*error),
            Msg::Group { stream, sequence } => out.varint(*stream).byte(14).varint(*sequence),
            Msg::Frame {
                stream,
                sequence,
                payload,
                timestamp,
            } => out
                .varint(*stream)
                .byte(15)
                .varint(*sequence)
                .chunk(payload)
                .varint(*timestamp),
            Msg::GroupEnd {
                stream,
                sequence,
                error,
            } => out
                .varint(*stream)
                .byte(16)
                .varint(*sequence)
                .varint(*error),
        };
    }

    /// The relay message, and the bytes of payload it carries.
    fn build(self) -> (Message, usize) {
        let message = match self {
            Msg::RequestAnnounces { stream } => Message::RequestAnnounces { stream },
            Msg::Announces { stream, broadcasts } => Message::Announces {
                stream,
                initial: broadcasts
                    .iter()
                    .map(|b| (name(&BROADCASTS, *b).to_string(), vec![2]))
                    .collect(),
            },
            Msg::Announce {
                stream,
                broadcast,
                hop,
                active,
            } => Message::Announce {
                stream,
                broadcast: name(&BROADCASTS, broadcast).to_string(),
                hops: vec![hop],
                active,
            },
            Msg::Subscribe {
                stream,
                broadcast,
                track,
                start,
                end,
            } => Message::Subscribe {
                stream,
                request: Subscribe {
                    id: stream,
                    broadcast: name(&BROADCASTS, broadcast).to_string(),
                    track: name(&TRACKS, track).to_string(),
                    priority: track,
                    ordered: broadcast & 0x80 != 0,
                    max_latency: Duration::from_millis(start % 5000),
                    start_group: optional(start),
                    end_group: optional(end),
                },
            },
            Msg::Cancel { stream } => Message::Cancel { stream },
            Msg::TrackRequest {
                stream,
                broadcast,
                track,
            } => Message::TrackRequest {
                stream,
                broadcast: name(&BROADCASTS, broadcast).to_string(),
                track: name(&TRACKS, track).to_string(),
            },
            Msg::TrackInfo { stream, timescale } => Message::TrackInfo {
                stream,
                info: TrackInfo {
                    timescale: timescale.max(1),
                    ..TrackInfo::default()
                },
            },
            Msg::Fetch {
                stream,
                broadcast,
                track,
                group,
            } => Message::Fetch {
                stream,
                request: Fetch {
                    broadcast: name(&BROADCASTS, broadcast).to_string(),
                    track: name(&TRACKS, track).to_string(),
                    priority: 0,
                    group,
                },
            },
            Msg::Fetched {
                stream,
                frames,
                size,
            } => {
                let frames = (0..frames % 4)
                    .map(|i| frame(vec![i; usize::from(size)], u64::from(i)))
                    .collect::<Vec<_>>();
                let fed = frames.len() * usize::from(size);
                return (Message::Fetched { stream, frames }, fed);
            }
            Msg::Reject { stream, code } => Message::Reject {
                stream,
                code: ErrorCode::ALL[usize::from(code) % ErrorCode::ALL.len()],
            },
            Msg::SubscribeOk { stream } => Message::SubscribeOk { stream },
            Msg::SubscribeStart { stream, group } => Message::SubscribeStart { stream, group },
            Msg::SubscribeEnd { stream, group } => Message::SubscribeEnd { stream, group },
            Msg::EndSubscription { stream, error } => Message::EndSubscription {
                stream,
                error: optional(error),
            },
            Msg::Group { stream, sequence } => Message::Group { stream, sequence },
            Msg::Frame {
                stream,
                sequence,
                payload,
                timestamp,
            } => {
                let fed = payload.len();
                let frame = frame(payload, timestamp);
                return (
                    Message::Frame {
                        stream,
                        sequence,
                        frame,
                    },
                    fed,
                );
            }
            Msg::GroupEnd {
                stream,
                sequence,
                error,
            } => Message::GroupEnd {
                stream,
                sequence,
                error: optional(error),
            },
        };
        (message, 64)
    }
}

/// A frame as a publisher's session would have parsed it (timestamps stay in varint range).
fn frame(payload: Vec<u8>, timestamp: u64) -> Frame {
    Frame::new(Bytes::from(payload), timestamp % (1 << 40), 0)
}

impl LinkOp {
    pub fn decode(input: &mut Input) -> LinkOp {
        match input.byte() % 5 {
            0 => LinkOp::Message(Msg::decode(input)),
            1 => LinkOp::Datagram(input.chunk().to_vec()),
            2 => LinkOp::Deliver { from: input.byte() },
            3 => LinkOp::Turn {
                accept: input.byte() & 1 == 0,
            },
            _ => LinkOp::Advance { ms: input.u16() },
        }
    }

    pub fn encode(&self, out: &mut Script) {
        match self {
            LinkOp::Message(msg) => {
                out.byte(0);
                msg.encode(out);
            }
            LinkOp::Datagram(data) => {
                out.byte(1).chunk(data);
            }
            LinkOp::Deliver { from } => {
                out.byte(2).byte(*from);
            }
            LinkOp::Turn { accept } => {
                out.byte(3).byte(u8::from(!*accept));
            }
            LinkOp::Advance { ms } => {
                out.byte(4).u16(*ms);
            }
        }
    }
}

/// A whole link input.
pub fn script(ops: &[LinkOp]) -> Vec<u8> {
    let mut out = Script::default();
    for op in ops {
        op.encode(&mut out);
    }
    out.bytes
}

thread_local! {
    static IDENTITY: RefCell<Option<moqring::tls::Identity>> = const { RefCell::new(None) };
}

/// The QUIC settings of a fresh core (quiche's `Config` is not `Clone`; the certificate
/// is made once).
fn quic_config() -> quiche::Config {
    IDENTITY.with(|cell| {
        let mut cell = cell.borrow_mut();
        let identity =
            cell.get_or_insert_with(|| moqring::tls::self_signed().expect("certificate"));
        quic::server_config(
            &identity.cert.to_string_lossy(),
            &identity.key.to_string_lossy(),
            &Version::ALL,
            30_000,
        )
        .expect("server config")
    })
}

fn relay_config() -> RelayConfig {
    RelayConfig {
        cache_bytes: 64 << 10,
        max_queued_bytes: 256 << 10,
        eager: vec![EagerRule {
            pattern: "live/*".into(),
            tracks: vec!["video".into()],
        }],
        ..RelayConfig::default()
    }
}

/// The shard under test and the mail being written to it.
pub struct Harness {
    core: Core,
    now: Instant,
    messages: Vec<Message>,
    datagrams: Vec<Forwarded>,
    batch: SendBatch,
    pub fed: usize,
}

impl Harness {
    pub fn new() -> Self {
        let core = Core::sharded(
            quic_config(),
            SessionConfig::default(),
            relay_config(),
            Admission::new(16),
            Topology::new(0, SHARDS),
        );
        Self {
            core,
            now: Instant::now(),
            messages: Vec::new(),
            datagrams: Vec::new(),
            batch: SendBatch::new(64 << 10, None),
            fed: 0,
        }
    }

    pub fn apply(&mut self, op: LinkOp) {
        match op {
            LinkOp::Message(msg) => {
                let (message, fed) = msg.build();
                self.fed += fed;
                self.messages.push(message);
            }
            LinkOp::Datagram(data) => {
                self.fed += data.len();
                let from: SocketAddr = "10.0.0.2:5000".parse().expect("address");
                let to: SocketAddr = "10.0.0.1:4443".parse().expect("address");
                self.datagrams.push(Forwarded { data, from, to });
            }
            LinkOp::Deliver { from } => {
                let mail = Mail {
                    from: usize::from(from % 4),
                    datagrams: std::mem::take(&mut self.datagrams),
                    messages: std::mem::take(&mut self.messages),
                };
                self.core.on_mail(mail, |_, _| {});
            }
            LinkOp::Turn { accept } => {
                self.core.dispatch(self.now);
                self.core.transmit(self.now, &mut self.batch, |_| {});
                self.core
                    .post(|_, mail| if accept { Ok(()) } else { Err(mail) });
            }
            LinkOp::Advance { ms } => {
                self.now += Duration::from_millis(ms.into());
            }
        }
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads a whole link input.
pub fn read(data: &[u8]) -> Vec<LinkOp> {
    let mut input = Input::new(data);
    let mut ops = Vec::new();
    while !input.is_empty() {
        ops.push(LinkOp::decode(&mut input));
    }
    ops
}

/// Runs one link input; `held` reports the bytes the process holds, checked after every
/// op against what the input fed.
pub fn run(data: &[u8], held: impl Fn() -> usize) {
    let mut harness = Harness::new();
    let baseline = held();
    for (n, op) in read(data).into_iter().enumerate() {
        harness.apply(op);
        crate::check_held(held(), baseline, harness.fed, n + 1);
    }
    // A last turn with everything delivered.
    harness.apply(LinkOp::Deliver { from: 1 });
    harness.apply(LinkOp::Turn { accept: true });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_read_back_as_written() {
        let ops = vec![
            LinkOp::Message(Msg::Announces {
                stream: 2,
                broadcasts: vec![0, 1],
            }),
            LinkOp::Message(Msg::Subscribe {
                stream: 300,
                broadcast: 0,
                track: 1,
                start: 0,
                end: 5,
            }),
            LinkOp::Message(Msg::Frame {
                stream: 1,
                sequence: 9,
                payload: b"frame".to_vec(),
                timestamp: 1000,
            }),
            LinkOp::Message(Msg::GroupEnd {
                stream: 1,
                sequence: 9,
                error: 0,
            }),
            LinkOp::Datagram(vec![0xc0; 30]),
            LinkOp::Deliver { from: 2 },
            LinkOp::Turn { accept: false },
            LinkOp::Advance { ms: 2500 },
        ];
        assert_eq!(read(&script(&ops)), ops);
    }
}
