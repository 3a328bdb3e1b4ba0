//! A raw moq-lite peer for the malformed-input matrix: one quiche connection (through
//! `common::raw`) that writes whatever bytes a case asks for on new streams, plays a
//! publisher or a subscriber by hand where a case needs one, and reports exactly what the
//! relay did: closed the connection, reset or stopped one stream, or left it alone.
//! It never decides what is right; the case tables do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use moqring::wire::{
    Announce, AnnounceOk, AnnounceRequest, ControlType, DataType, FrameHeader, GroupHeader,
    Message, Setup, Subscribe, SubscribeResponse, Version,
};

use crate::common::raw::RawClient;
use crate::h3;

/// How long a stream the relay leaves alone is watched before the case calls it quiet.
pub const QUIET: Duration = Duration::from_millis(400);

/// The longest any wait of this module lasts before it gives up.
const LIMIT: Duration = Duration::from_secs(15);

/// The one broadcast no case announces: a SUBSCRIBE to it proves the session still serves.
const NOWHERE: &str = "no/such/broadcast";

/// What the relay did after a case's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Closed the connection with this application error code.
    Closed(u64),
    /// Reset or stopped the case's stream with this code; the connection stayed up.
    Reset(u64),
    /// Nothing, for [`QUIET`]: the stream and the connection stayed as they were.
    Quiet,
    /// Closed the WebTransport session with this code (CLOSE_WEBTRANSPORT_SESSION), then
    /// the connection with H3_NO_ERROR.
    SessionClosed(u64),
}

/// The bytes the relay sent on one stream, and how the stream ended.
#[derive(Debug, Default)]
struct Incoming {
    buf: Vec<u8>,
    fin: bool,
    reset: Option<u64>,
}

/// One group stream the relay opened to us, as far as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSeen {
    pub subscribe: u64,
    pub sequence: u64,
    pub frames: Vec<Vec<u8>>,
    /// `Some(None)` finished, `Some(Some(code))` reset, `None` still open.
    pub end: Option<Option<u64>>,
}

pub struct Peer {
    client: RawClient,
    pub version: Version,
    next_bidi: u64,
    next_uni: u64,
    streams: HashMap<u64, Incoming>,
    /// The WebTransport session our new streams belong to (their prefix), once accepted.
    wt_session: Option<u64>,
}

impl Peer {
    fn new(client: RawClient, version: Version) -> Self {
        Self {
            client,
            version,
            next_bidi: 0,
            next_uni: 2,
            streams: HashMap::new(),
            wt_session: None,
        }
    }

    /// Connects with `version`'s ALPN; on lite-05 sends a SETUP rooting the session at "".
    pub fn connect(addr: SocketAddr, version: Version) -> Self {
        let mut peer = Self::bare(addr, version);
        if version.has_setup_stream() {
            peer.open_uni(&setup_bytes(), true);
        }
        peer
    }

    /// Connects without sending a SETUP (lite-05 cases that send their own).
    pub fn bare(addr: SocketAddr, version: Version) -> Self {
        Self::new(RawClient::connect(addr, version.alpn()), version)
    }

    /// Connects with ALPN `h3` and sends nothing yet.
    pub fn h3(addr: SocketAddr) -> Self {
        Self::new(RawClient::connect(addr, b"h3"), Version::Lite05)
    }

    /// A lite-05 session over WebTransport rooted at "" (see [`Self::start_session`]).
    pub fn webtransport(addr: SocketAddr) -> Self {
        let mut peer = Self::h3(addr);
        assert!(
            peer.start_session(),
            "no 200 for the CONNECT: {:?}",
            peer.close_code()
        );
        peer
    }

    /// On an `h3` connection: our HTTP/3 control stream, an Extended CONNECT for
    /// moq-lite-05 at "/", its 200 read, then our SETUP on a WebTransport stream. Every
    /// stream opened afterwards carries the session's prefix, and stream error codes are
    /// read back into moq-lite codes. False if no 200 came.
    pub fn start_session(&mut self) -> bool {
        self.open_h3_uni(&h3::client_control_stream(), false);
        let session = self.open_bidi(&h3::connect_request("/", "moq-lite-05"), false);
        let deadline = Instant::now() + LIMIT;
        while !h3::is_ok_response(self.received(session)) {
            if Instant::now() >= deadline || self.is_closed() {
                return false;
            }
            self.pump();
        }
        self.wt_session = Some(session);
        self.open_uni(&setup_bytes(), true);
        true
    }

    /// What the relay sent on stream `id` so far (and we did not take as messages).
    pub fn received(&self, id: u64) -> &[u8] {
        self.streams.get(&id).map_or(&[], |s| &s.buf[..])
    }

    pub fn conn(&mut self) -> &mut quiche::Connection {
        self.client.conn()
    }

    /// Opens a bidi stream carrying `bytes` (and FIN if `fin`); returns its id.
    pub fn open_bidi(&mut self, bytes: &[u8], fin: bool) -> u64 {
        let id = self.next_bidi;
        self.next_bidi += 4;
        let prefix = self.wt_session.map(h3::bidi_prefix).unwrap_or_default();
        self.send(id, &[&prefix[..], bytes].concat(), fin);
        id
    }

    /// Opens a uni stream carrying `bytes` (and FIN if `fin`); returns its id.
    pub fn open_uni(&mut self, bytes: &[u8], fin: bool) -> u64 {
        let prefix = self.wt_session.map(h3::uni_prefix).unwrap_or_default();
        self.open_h3_uni(&[&prefix[..], bytes].concat(), fin)
    }

    /// Opens a uni stream without a WebTransport prefix (an HTTP/3 stream of its own).
    pub fn open_h3_uni(&mut self, bytes: &[u8], fin: bool) -> u64 {
        let id = self.next_uni;
        self.next_uni += 4;
        self.send(id, bytes, fin);
        id
    }

    /// Queues `bytes` on stream `id` and exchanges packets until quiche took all of them.
    pub fn send(&mut self, id: u64, bytes: &[u8], fin: bool) {
        self.send_many(&[(id, bytes)], fin);
    }

    /// Writes every `(stream, bytes)` in turn, as flow control allows, until all are taken
    /// (panics after [`LIMIT`]); each stream gets FIN after its bytes if `fin`.
    pub fn send_many(&mut self, writes: &[(u64, &[u8])], fin: bool) {
        let mut sent = vec![0usize; writes.len()];
        let mut done = vec![false; writes.len()];
        let deadline = Instant::now() + LIMIT;
        loop {
            for (i, (id, bytes)) in writes.iter().enumerate() {
                if done[i] {
                    continue;
                }
                match self.conn().stream_send(*id, &bytes[sent[i]..], fin) {
                    Ok(n) => sent[i] += n,
                    // No room yet, or beyond the streams the relay allows so far.
                    Err(quiche::Error::Done | quiche::Error::StreamLimit) => {}
                    // A stream the relay stopped or a closed connection takes nothing more.
                    Err(_) => done[i] = true,
                }
                done[i] |= sent[i] == bytes.len();
            }
            if done.iter().all(|d| *d) || self.is_closed() {
                // Out of quiche and onto the wire.
                self.pump();
                return;
            }
            assert!(Instant::now() < deadline, "sending timed out");
            self.pump();
        }
    }

    /// Writes every `(stream, bytes)` as flow control allows for `time`, keeping the
    /// streams open; returns the bytes quiche took.
    pub fn offer(&mut self, writes: &[(u64, &[u8])], time: Duration) -> usize {
        let mut sent = vec![0usize; writes.len()];
        let until = Instant::now() + time;
        while Instant::now() < until && !self.is_closed() {
            let mut progress = false;
            for (i, (id, bytes)) in writes.iter().enumerate() {
                if let Ok(n) = self.conn().stream_send(*id, &bytes[sent[i]..], false) {
                    sent[i] += n;
                    progress |= n > 0;
                }
            }
            if !progress && sent.iter().zip(writes).all(|(s, (_, b))| *s == b.len()) {
                break;
            }
            self.pump();
        }
        self.pump();
        sent.iter().sum()
    }

    /// Exchanges packets for `time` without reading any stream: a peer that never reads.
    pub fn idle_for(&mut self, time: Duration) {
        self.client.run_for(time, |_| false);
    }

    /// Reserves the ids of the next `n` bidi streams (for [`Self::send_many`] and
    /// [`Self::offer`]); later `open_*` calls skip them.
    pub fn next_bidis(&mut self, n: usize) -> Vec<u64> {
        let ids = (0..n as u64).map(|i| self.next_bidi + 4 * i).collect();
        self.next_bidi += 4 * n as u64;
        ids
    }

    /// Likewise for the next `n` uni streams.
    pub fn next_unis(&mut self, n: usize) -> Vec<u64> {
        let ids = (0..n as u64).map(|i| self.next_uni + 4 * i).collect();
        self.next_uni += 4 * n as u64;
        ids
    }

    /// One round of packets in and out, then every readable stream read into our buffers.
    pub fn pump(&mut self) {
        self.client.run_for(Duration::from_millis(1), |_| false);
        self.collect();
    }

    /// Pumps for `time`.
    pub fn pump_for(&mut self, time: Duration) {
        let until = Instant::now() + time;
        while Instant::now() < until {
            self.pump();
        }
    }

    fn collect(&mut self) {
        let conn = self.client.conn();
        let readable: Vec<u64> = conn.readable().collect();
        let mut buf = vec![0u8; 65536];
        for id in readable {
            let incoming = self.streams.entry(id).or_default();
            loop {
                match conn.stream_recv(id, &mut buf) {
                    Ok((n, fin)) => {
                        incoming.buf.extend_from_slice(&buf[..n]);
                        incoming.fin |= fin;
                        if fin {
                            break;
                        }
                    }
                    Err(quiche::Error::StreamReset(code)) => {
                        incoming.reset = Some(code);
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
    }

    /// The application code the relay closed the connection with, if it did.
    pub fn close_code(&mut self) -> Option<u64> {
        let err = self.client.conn().peer_error()?;
        Some(if err.is_app {
            err.error_code
        } else {
            // A transport error reads apart from every application code.
            0x1_0000_0000 + err.error_code
        })
    }

    pub fn is_closed(&mut self) -> bool {
        self.close_code().is_some() || self.client.conn().is_closed()
    }

    /// The code the relay reset (our read side) or stopped (our write side) `id` with;
    /// inside a WebTransport session, as the moq-lite code it maps.
    fn stream_code(&mut self, id: u64) -> Option<u64> {
        let code = match self.streams.get(&id).and_then(|s| s.reset) {
            Some(code) => code,
            None => match self.conn().stream_capacity(id) {
                Err(quiche::Error::StreamStopped(code)) => code,
                _ => return None,
            },
        };
        Some(match self.wt_session {
            Some(_) => h3::moq_code(code).unwrap_or(code),
            None => code,
        })
    }

    /// Watches stream `id` until the relay closes the connection or resets or stops the
    /// stream, or [`QUIET`] passes.
    pub fn outcome(&mut self, id: u64) -> Outcome {
        self.outcome_within(id, QUIET)
    }

    /// What the relay has done to stream `id` by now, for a case that was [`Outcome::Quiet`]
    /// through the quiet period: a loaded relay may answer after it, and the code it
    /// answers with is what the case checks (timing is no claim here).
    pub fn settle(&mut self, id: u64, outcome: Outcome) -> Outcome {
        match outcome {
            Outcome::Quiet => self.outcome_within(id, Duration::ZERO),
            known => known,
        }
    }

    /// [`Self::outcome`] with its own quiet period.
    pub fn outcome_within(&mut self, id: u64, quiet: Duration) -> Outcome {
        let until = Instant::now() + quiet;
        loop {
            if let Some(code) = self.close_code() {
                let capsule = self
                    .wt_session
                    .and_then(|id| h3::close_capsule(self.received(id)));
                return match capsule {
                    Some(moq) if code == h3::NO_ERROR => Outcome::SessionClosed(moq),
                    _ => Outcome::Closed(code),
                };
            }
            if let Some(code) = self.stream_code(id) {
                return Outcome::Reset(code);
            }
            if Instant::now() >= until {
                return Outcome::Quiet;
            }
            self.pump();
        }
    }

    /// Whether the session still answers a request: a SUBSCRIBE to a broadcast nobody
    /// announced must be refused with `NotFound` (13) on its own stream.
    pub fn serves(&mut self) -> bool {
        let id = self.open_bidi(&subscribe_bytes(self.version, 9_999, NOWHERE, "t"), false);
        self.outcome_within(id, LIMIT) == Outcome::Reset(13)
    }

    /// Waits for the relay to open a bidi request stream of type `ty` to us; returns its id
    /// with the type consumed.
    pub fn accept_request(&mut self, ty: ControlType) -> u64 {
        let deadline = Instant::now() + LIMIT;
        loop {
            let found = self.streams.iter_mut().find_map(|(id, s)| {
                let relay_bidi = id & 3 == 1;
                let mut slice = &s.buf[..];
                (relay_bidi && ControlType::decode(&mut slice) == Ok(ty)).then(|| {
                    s.buf.drain(..1);
                    *id
                })
            });
            if let Some(id) = found {
                // Marks the stream as taken: its type byte is gone, so it matches no more.
                return id;
            }
            assert!(
                Instant::now() < deadline && !self.is_closed(),
                "the relay opened no {ty:?} stream to us (closed: {:?})",
                self.close_code()
            );
            self.pump();
        }
    }

    /// Waits for one whole message `M` at the front of stream `id` and takes it.
    pub fn read_msg<M: Message>(&mut self, id: u64) -> M {
        let version = self.version;
        self.read_with(id, |buf| M::decode(buf, version))
    }

    fn read_with<T>(
        &mut self,
        id: u64,
        decode: impl Fn(&mut &[u8]) -> Result<T, moqring::wire::DecodeError>,
    ) -> T {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(s) = self.streams.get_mut(&id) {
                let mut slice = &s.buf[..];
                match decode(&mut slice) {
                    Ok(msg) => {
                        let used = s.buf.len() - slice.len();
                        s.buf.drain(..used);
                        return msg;
                    }
                    Err(moqring::wire::DecodeError::Short) => {}
                    Err(e) => panic!("stream {id}: the relay sent a malformed message: {e}"),
                }
            }
            assert!(
                Instant::now() < deadline && !self.is_closed(),
                "no whole message on stream {id} (closed: {:?})",
                self.close_code()
            );
            self.pump();
        }
    }

    // -- playing a publisher ------------------------------------------------------------

    /// Answers the relay's announce request: the stream id, with the request read.
    pub fn accept_announce_request(&mut self) -> u64 {
        let id = self.accept_request(ControlType::Announce);
        let _: AnnounceRequest = self.read_msg(id);
        id
    }

    /// Announces `broadcast` (relative to the session root "") on announce stream `id`,
    /// after an ANNOUNCE_OK on lite-05.
    pub fn announce(&mut self, id: u64, broadcast: &str) {
        let mut bytes = Vec::new();
        if self.version.has_announce_ok() {
            AnnounceOk {
                origin: 7,
                active: 1,
            }
            .encode(&mut bytes, self.version);
        }
        Announce::Active {
            suffix: broadcast.into(),
            hops: vec![],
        }
        .encode(&mut bytes, self.version);
        self.send(id, &bytes, false);
    }

    /// Accepts the relay's next subscription: its stream and request.
    pub fn accept_subscribe(&mut self) -> (u64, Subscribe) {
        let id = self.accept_request(ControlType::Subscribe);
        let request = self.read_msg(id);
        (id, request)
    }

    /// Accepts subscription stream `id`: SUBSCRIBE_OK (03/04) or SUBSCRIBE_START at group 0 (05).
    pub fn start_subscription(&mut self, id: u64) {
        let response = if self.version.has_track_stream() {
            SubscribeResponse::Start { group: 0 }
        } else {
            SubscribeResponse::Ok(moqring::wire::SubscribeOk {
                priority: 0,
                ordered: false,
                max_latency: Duration::ZERO,
                start_group: None,
                end_group: None,
            })
        };
        let mut bytes = Vec::new();
        response.encode(&mut bytes, self.version);
        self.send(id, &bytes, false);
    }

    /// Sends a whole group of `frames` on a new uni stream, then FIN.
    pub fn send_group(&mut self, subscribe: u64, sequence: u64, frames: &[&[u8]]) -> u64 {
        let mut bytes = group_head(self.version, subscribe, sequence);
        bytes.extend(frames_bytes(self.version, frames));
        self.open_uni(&bytes, true)
    }

    // -- playing a subscriber -----------------------------------------------------------

    /// Asks for announcements under "" and waits until `broadcast` is announced active.
    pub fn await_announced(&mut self, broadcast: &str) {
        let mut bytes = Vec::new();
        ControlType::Announce.encode(&mut bytes);
        AnnounceRequest {
            prefix: String::new(),
            exclude_hop: 0,
        }
        .encode(&mut bytes, self.version);
        let id = self.open_bidi(&bytes, false);
        if self.version.has_announce_ok() {
            let _: AnnounceOk = self.read_msg(id);
        }
        loop {
            let msg: Announce = self.read_msg(id);
            if msg.is_active() && msg.suffix() == broadcast {
                return;
            }
        }
    }

    /// Subscribes to `broadcast`/`track` from group 0 with subscribe id `sub_id`.
    pub fn subscribe(&mut self, sub_id: u64, broadcast: &str, track: &str) -> u64 {
        let bytes = subscribe_bytes(self.version, sub_id, broadcast, track);
        self.open_bidi(&bytes, false)
    }

    /// The group streams the relay opened to us so far, in stream order.
    pub fn groups(&mut self) -> Vec<GroupSeen> {
        let mut ids: Vec<u64> = self
            .streams
            .keys()
            .copied()
            .filter(|id| id & 3 == 3)
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| parse_group(self.version, &self.streams[&id]))
            .collect()
    }

    /// The codes of the relay-opened uni streams it reset, header read or not.
    pub fn uni_resets(&mut self) -> Vec<u64> {
        let mut resets: Vec<(u64, u64)> = self
            .streams
            .iter()
            .filter(|(id, _)| *id & 3 == 3)
            .filter_map(|(id, s)| s.reset.map(|code| (*id, code)))
            .collect();
        resets.sort_unstable();
        resets.into_iter().map(|(_, code)| code).collect()
    }

    /// Pumps this peer, and `publisher` (its packets may still need sending or sending
    /// again: nothing else drives its connection meanwhile), until `done` holds for the
    /// group streams seen (panics after [`LIMIT`]).
    pub fn await_groups(
        &mut self,
        what: &str,
        publisher: &mut Peer,
        done: impl Fn(&[GroupSeen]) -> bool,
    ) -> Vec<GroupSeen> {
        let deadline = Instant::now() + LIMIT;
        loop {
            let groups = self.groups();
            if done(&groups) {
                return groups;
            }
            assert!(
                Instant::now() < deadline,
                "waiting for {what}: groups so far {groups:?}, closed: {:?}",
                self.close_code()
            );
            self.pump();
            publisher.pump();
        }
    }
}

/// A lite-05 SETUP stream's bytes: the stream type, then a SETUP with path "".
pub fn setup_bytes() -> Vec<u8> {
    let mut bytes = Vec::new();
    DataType::Setup.encode(&mut bytes);
    Setup {
        path: Some(String::new()),
        ..Setup::default()
    }
    .encode(&mut bytes, Version::Lite05);
    bytes
}

/// A subscribe stream's opening: the type and a SUBSCRIBE from group 0.
pub fn subscribe_bytes(version: Version, id: u64, broadcast: &str, track: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    ControlType::Subscribe.encode(&mut bytes);
    Subscribe {
        id,
        broadcast: broadcast.into(),
        track: track.into(),
        priority: 0,
        ordered: false,
        max_latency: Duration::ZERO,
        start_group: Some(0),
        end_group: None,
    }
    .encode(&mut bytes, version);
    bytes
}

/// A group stream's opening: the type and the group header.
pub fn group_head(version: Version, subscribe: u64, sequence: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    DataType::Group.encode(&mut bytes);
    GroupHeader {
        subscribe,
        sequence,
    }
    .encode(&mut bytes, version);
    bytes
}

/// Frames as a group stream carries them (lite-05: timestamps 0, 1, 2, ... ms).
pub fn frames_bytes(version: Version, frames: &[&[u8]]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (i, payload) in frames.iter().enumerate() {
        let header = FrameHeader {
            timestamp: i as u64,
            size: payload.len() as u64,
        };
        header.encode(&mut bytes, version, i.saturating_sub(1) as u64);
        bytes.extend_from_slice(payload);
    }
    bytes
}

/// Parses a relay-opened uni stream as a group; `None` for the SETUP stream or a stream
/// whose header has not arrived (a group reset before its header also gives `None`).
fn parse_group(version: Version, s: &Incoming) -> Option<GroupSeen> {
    let mut rest = &s.buf[..];
    if DataType::decode(&mut rest).ok()? != DataType::Group {
        return None;
    }
    let head = GroupHeader::decode(&mut rest, version).ok()?;
    let mut frames = Vec::new();
    let mut prev = 0;
    while let Ok(header) = FrameHeader::decode(&mut rest, version, prev) {
        let Some((payload, tail)) = rest.split_at_checked(header.size as usize) else {
            break;
        };
        frames.push(payload.to_vec());
        prev = header.timestamp;
        rest = tail;
    }
    let end = match (s.reset, s.fin) {
        (Some(code), _) => Some(Some(code)),
        (None, true) => Some(None),
        (None, false) => None,
    };
    Some(GroupSeen {
        subscribe: head.subscribe,
        sequence: head.sequence,
        frames,
        end,
    })
}

impl Drop for Peer {
    /// Tells the relay the case is over, so it drops the session now, not at idle timeout.
    fn drop(&mut self) {
        if !self.is_closed() {
            let _ = self.client.conn().close(true, 0, b"case over");
            self.client.run_for(Duration::from_millis(1), |_| false);
        }
    }
}
