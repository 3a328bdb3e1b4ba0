//! One QUIC connection's moq-lite state machine: stream bytes in, [`Event`]s out.
//!
//! A `Session` owns a quiche connection (itself sans-IO) and the per-stream parse and send
//! state. The owner feeds it datagrams through [`Session::conn_mut`], calls
//! [`Session::process`] to turn received stream data into events, calls the request and
//! reply methods below to act, and [`Session::flush`] before taking packets out of quiche.
//! It never touches a socket, a thread or a clock. The same type serves the relay (server)
//! and the `pub`/`sub` commands (client). Paths in events and methods are absolute: the
//! session joins and strips its root: the path the server applies to this session's wire
//! paths (the client's URL path on lite-05, sent in SETUP; "" on lite-03/04).

mod ended;
mod frame;
mod goaway;
pub mod path;
mod recv;
mod request;
mod schedule;
mod send;
mod serve;
mod wt;
pub mod zc;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

pub use frame::Frame;
use recv::{InStream, Kind};
use schedule::Delivery;
use send::{Class, Flushed, OutStream};
pub use zc::{BytesFactory, Conn};

use crate::auth::{Admission, Auth, Grant};

use crate::wire::{
    Announce, DataType, ErrorCode, Fetch, Message, Setup, Subscribe, SubscribeResponse, TrackInfo,
    Version,
};
use wt::Wt;

/// Announcements are held after a subscription ended cleanly until the peer has closed
/// that subscription's stream too, so it reads the end of the track before it hears that
/// the broadcast is gone (it would abort the track otherwise); at most this long, for
/// peers that never close their side.
const ANNOUNCE_HOLD: Duration = Duration::from_secs(2);

/// After the peer closed the last such subscription, announcements stay held this much
/// longer: a moq-net client that read the end of a track before accepting all of its group
/// streams asks for the track again at once (a TRACK request, then SUBSCRIBE), and hearing
/// that the broadcast is gone in between makes it report the track dropped. Seen in about
/// 1 of 10 runs of the interop suite on a loaded 2-core machine without this grace.
const RESUME_GRACE: Duration = Duration::from_millis(500);

/// lite-03/04 have no SUBSCRIBE_END: a subscriber takes the last group it has seen at
/// the subscription's FIN as the last one. Group streams are acknowledged by the peer's
/// QUIC stack before the FIN goes out, but its application may not have accepted them
/// yet (moq-net reads streams on separate tasks), so the FIN waits a little longer: this
/// much, or two round trips if that is more. 20 ms lost the race about once in 20 runs
/// of the interop tests on a loaded 2-core machine (moq-net then reports the track
/// dropped); 100 ms has not been seen to.
const FIN_GRACE: Duration = Duration::from_millis(100);

/// Something the peer did that the owner must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Handshake (and, on lite-05, the SETUP exchange) done: requests may flow.
    Ready,
    /// The peer wants announcements of broadcasts under `prefix` on `stream`.
    AnnounceInterest { stream: u64, prefix: String },
    /// The peer announced (or unannounced) a broadcast on our announce request `stream`.
    Announced {
        stream: u64,
        path: String,
        hops: Vec<u64>,
        active: bool,
    },
    /// The peer stopped answering our announce request `stream`.
    AnnouncesEnded { stream: u64 },
    /// The peer asks for a track's properties (lite-05).
    TrackRequest {
        stream: u64,
        broadcast: String,
        track: String,
    },
    /// The peer subscribes (broadcast made absolute).
    Subscribe { stream: u64, request: Subscribe },
    /// The peer closed or reset a request stream it opened (subscribe, announce, track).
    RequestCancelled { stream: u64 },
    /// The peer fetches one group (lite-05; broadcast made absolute).
    Fetch { stream: u64, request: Fetch },
    /// Answer to our track request `token`.
    TrackInfo { token: usize, info: TrackInfo },
    /// Our subscription `token` was accepted; `start` is the first group when known.
    SubscribeAccepted { token: usize, start: Option<u64> },
    /// Our subscription `token` ends before group `group` (lite-05).
    SubscribeEnd { token: usize, group: u64 },
    /// Our subscription `token` stream was finished (`error: None`) or reset.
    SubscriptionClosed { token: usize, error: Option<u64> },
    /// A group of subscription `token` started on uni stream `stream`.
    Group {
        token: usize,
        stream: u64,
        sequence: u64,
    },
    /// A whole frame of group `sequence`.
    Frame {
        token: usize,
        sequence: u64,
        frame: Frame,
    },
    /// Group `sequence` finished (`error: None`) or was reset with `error`.
    GroupEnd {
        token: usize,
        sequence: u64,
        error: Option<u64>,
    },
    /// Answer to our fetch `token` (made over a link to another shard): the group's
    /// frames, or why not.
    Fetched {
        token: usize,
        result: Result<Vec<Frame>, ErrorCode>,
    },
    /// The relay is going away (GOAWAY; client sessions only): reconnect to `uri`, if
    /// any, or later.
    GoAway { uri: String },
    /// The connection is closed; drop the session after handling this.
    Closed,
}

/// Settings the owner chooses for a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our origin id, sent in lite-05 SETUP and ANNOUNCE_OK (non-zero).
    pub origin: u64,
    /// Client only: the request path advertised in the lite-05 SETUP.
    pub path: Option<String>,
    /// Largest frame payload accepted from the peer.
    pub max_frame_size: usize,
    /// Bytes of group data this session may hold for its peer beyond what QUIC accepted;
    /// past it, the oldest group streams are reset with `Lagged` (finished ones too).
    pub max_queued_bytes: usize,
    /// Server only: tokens and public prefixes every session is checked against; `None`
    /// lets every session publish and subscribe anywhere.
    pub auth: Option<Arc<Auth>>,
    /// The moq-lite versions spoken, newest first: over WebTransport the server chooses
    /// from the client's offer among these, and a client offers these.
    pub versions: Vec<Version>,
    /// Client over WebTransport: the CONNECT's `:authority` (host:port).
    pub authority: Option<String>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            origin: 1,
            path: None,
            max_frame_size: 16 << 20,
            max_queued_bytes: 16 << 20,
            auth: None,
            versions: Version::ALL.to_vec(),
            authority: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    /// WebTransport: the CONNECT is not answered yet (server), or its answer not read (client).
    AwaitConnect,
    AwaitSetup,
    Ready,
    /// WebTransport: the session is closed and the connection closes when the capsule had
    /// its chance to leave; nothing more is read.
    Closing,
    Closed,
}

/// A subscription the peer made to us, as far as the session tracks it.
#[derive(Debug)]
struct Served {
    id: u64,
    /// Its priority, order and latency budget.
    delivery: Delivery,
    /// Group streams opened for it that may still be in flight, as (sequence, stream id),
    /// in sequence order: a newer group opened before older late ones still ranks newest.
    groups: SmallVec<[(u64, u64); 4]>,
    /// `Some` once the owner ended it: FIN (`None`) or reset code, after the groups complete.
    ending: Option<Option<u64>>,
    /// When the groups completed, the FIN waits until this time (lite-03/04, see
    /// [`FIN_GRACE`]).
    fin_at: Option<Instant>,
}

/// Our subscription on the peer.
#[derive(Debug)]
struct Upstream {
    stream: u64,
    token: usize,
    /// Group sequences the publisher already opened on it.
    seen: SeenGroups,
}

/// The group sequences opened on one subscription: the highest, and a bitmap of the 128
/// below it. A sequence seen again is a duplicate; one further below is too old for any
/// subscriber to want and is left to the relay's limits.
#[derive(Debug, Default)]
struct SeenGroups {
    high: Option<u64>,
    below: u128,
}

impl SeenGroups {
    /// Records `sequence`; false if it was opened already.
    fn insert(&mut self, sequence: u64) -> bool {
        let Some(high) = self.high else {
            self.high = Some(sequence);
            return true;
        };
        if sequence > high {
            let shift = sequence - high;
            self.below = if shift > 128 {
                0
            } else {
                self.below.checked_shl(shift as u32).unwrap_or(0) | 1u128 << (shift - 1)
            };
            self.high = Some(sequence);
            return true;
        }
        let distance = high - sequence;
        if distance == 0 {
            return false;
        }
        if distance > 128 {
            return true;
        }
        let bit = 1u128 << (distance - 1);
        let fresh = self.below & bit == 0;
        self.below |= bit;
        fresh
    }
}

/// One connection's protocol state.
pub struct Session {
    conn: Conn,
    config: SessionConfig,
    phase: Phase,
    version: Option<Version>,
    root: String,
    recv: HashMap<u64, InStream>,
    /// Write state of every stream we still write to.
    send: HashMap<u64, OutStream>,
    /// Streams with queued data or a pending FIN (each once, see `OutStream::dirty`); sorted
    /// at flush so older streams go first.
    dirty: Vec<u64>,
    /// Scratch list for `flush`, kept to avoid an allocation per turn.
    flushing: Vec<u64>,
    /// Scratch list of readable streams, likewise.
    readable: Vec<u64>,
    next_bidi: u64,
    next_uni: u64,
    next_sub_id: u64,
    served: HashMap<u64, Served>,
    /// Subscribe id -> our subscription.
    upstream: HashMap<u64, Upstream>,
    events: Vec<Event>,
    queued: usize,
    /// Served subscriptions waiting for their groups to complete before they end.
    ending: Vec<u64>,
    /// Announce interests we serve: stream -> absolute prefix.
    announcing: HashMap<u64, String>,
    /// The peer's relay id, from its announce requests (lite-04/05): broadcasts whose
    /// hop chain holds it came through the peer and are never announced back to it.
    peer_origin: Option<u64>,
    /// TRACK and FETCH requests waiting for our one-shot answer.
    pending_replies: HashSet<u64>,
    /// Our announce requests: stream -> absolute prefix their suffixes are relative to.
    announce_prefixes: HashMap<u64, String>,
    /// Announcements waiting for ending subscriptions to finish first.
    held_announces: Vec<(u64, Announce)>,
    /// Subscriptions we finished cleanly whose streams the peer has not closed yet, and
    /// when we stop waiting for them (held announcements wait for these).
    closing: Vec<(u64, Instant)>,
    /// Held announcements also wait until this time (see [`RESUME_GRACE`]).
    resume_hold: Option<Instant>,
    /// Group streams superseded by a newer group of their subscription, on the clock of
    /// their latency budget.
    superseded: Vec<schedule::Superseded>,
    /// The time of the last [`Self::flush`].
    flushed_at: Option<Instant>,
    /// Groups reset for missing their latency budget.
    late_groups: u64,
    /// Groups reset because too much was queued for a peer that could not keep up.
    lagged_groups: u64,
    /// Refusals for want of a grant: the session itself, or requests outside it (metrics).
    auth_refusals: u64,
    /// What the peer may publish and subscribe to (`None`: everything; see
    /// [`SessionConfig::auth`]).
    grant: Option<Grant>,
    /// A token's admission whose `exp` is checked at the next flush, which has the time.
    admitting: Option<Admission>,
    /// When the peer's token expires and the session is closed.
    expires_at: Option<Instant>,
    /// Rate-limited log of the groups reset for the two reasons above.
    resets: schedule::ResetLog,
    /// HTTP/3 and WebTransport state; `None` on raw QUIC.
    wt: Option<Wt>,
}

impl Session {
    pub fn new(conn: Conn, config: SessionConfig) -> Self {
        let server = conn.is_server();
        Self {
            conn,
            config,
            phase: Phase::Handshake,
            version: None,
            root: String::new(),
            recv: HashMap::new(),
            send: HashMap::new(),
            dirty: Vec::new(),
            flushing: Vec::new(),
            readable: Vec::new(),
            next_bidi: if server { 1 } else { 0 },
            next_uni: if server { 3 } else { 2 },
            next_sub_id: 0,
            served: HashMap::new(),
            upstream: HashMap::new(),
            events: Vec::new(),
            queued: 0,
            ending: Vec::new(),
            announcing: HashMap::new(),
            peer_origin: None,
            pending_replies: HashSet::new(),
            announce_prefixes: HashMap::new(),
            held_announces: Vec::new(),
            closing: Vec::new(),
            resume_hold: None,
            superseded: Vec::new(),
            flushed_at: None,
            late_groups: 0,
            lagged_groups: 0,
            auth_refusals: 0,
            grant: None,
            admitting: None,
            expires_at: None,
            resets: schedule::ResetLog::default(),
            wt: None,
        }
    }

    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    pub fn conn_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }

    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// The session's root path (absolute).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Bytes queued in this session and not yet accepted by quiche.
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// Groups reset so far because they missed their subscriber's latency budget.
    pub fn late_groups(&self) -> u64 {
        self.late_groups
    }

    /// Groups reset so far because the peer fell too far behind (`max_queued_bytes`).
    pub fn lagged_groups(&self) -> u64 {
        self.lagged_groups
    }

    /// Times this session, or one of its requests, was refused for want of a grant.
    pub fn auth_refusals(&self) -> u64 {
        self.auth_refusals
    }

    /// Moves the events produced so far into `out`.
    pub fn drain_events(&mut self, out: &mut Vec<Event>) {
        out.append(&mut self.events);
    }

    /// Closes the connection with an application error (logged by the caller).
    pub fn close(&mut self, code: ErrorCode, reason: &str) {
        if self.close_webtransport(code, reason) {
            return;
        }
        let _ = self.conn.close(true, code.code(), reason.as_bytes());
    }

    /// Handles what quiche received: handshake progress and readable streams.
    pub fn process(&mut self) {
        if self.phase == Phase::Closed {
            return;
        }
        if self.phase == Phase::Handshake && self.conn.is_established() {
            self.on_established();
        }
        if matches!(
            self.phase,
            Phase::AwaitConnect | Phase::AwaitSetup | Phase::Ready
        ) {
            self.read_streams();
        }
        // No datagram tracks yet: drop what arrived so the queue never fills.
        if self.wt.is_some() {
            self.drop_datagrams();
        } else {
            let mut scratch = [0u8; 0];
            while !matches!(self.conn.dgram_recv(&mut scratch), Err(quiche::Error::Done)) {}
        }
        if self.conn.is_closed() {
            self.phase = Phase::Closed;
            self.events.push(Event::Closed);
        }
    }

    fn on_established(&mut self) {
        if self.conn.application_proto() == crate::webtransport::ALPN {
            self.wt = Some(Wt::new());
            self.on_h3_established();
            return;
        }
        let Some(version) = Version::from_alpn(self.conn.application_proto()) else {
            self.close(ErrorCode::Version, "unsupported ALPN");
            return;
        };
        self.version = Some(version);
        if version.has_setup_stream() {
            self.send_setup(version);
        }
        if self.conn.is_server() && version.has_setup_stream() {
            self.phase = Phase::AwaitSetup;
        } else if self.conn.is_server() {
            // lite-03/04 carry no path and so no token: the root is "", public prefixes only.
            self.admit(None);
        } else {
            // Only lite-05 carries the client's path; older versions root every session at "".
            if version.has_setup_stream() {
                let target = self.config.path.as_deref().unwrap_or_default();
                self.root = path::normalize(path::split_query(target).0);
            }
            self.become_ready();
        }
    }

    /// Opens our lite-05 SETUP stream. A client names its path there on raw QUIC only
    /// (over WebTransport the CONNECT carried it).
    fn send_setup(&mut self, version: Version) {
        let setup = Setup {
            path: if self.conn.is_server() || self.wt.is_some() {
                None
            } else {
                self.config.path.clone().filter(|p| !p.is_empty())
            },
            role: None,
            probe: 0,
            cost: None,
            origin: Some(self.config.origin),
        };
        let id = self.open_uni();
        let mut buf = BytesMut::new();
        DataType::Setup.encode(&mut buf);
        setup.encode(&mut buf, version);
        self.write(id, buf.freeze());
        self.finish_stream(id);
    }

    /// Server: decides whether the peer, at `self.root` with `jwt` or without, may have a
    /// session, before anything it asks for is read.
    fn admit(&mut self, jwt: Option<&str>) {
        let Some(auth) = self.config.auth.clone() else {
            self.become_ready();
            return;
        };
        match auth.admit(&self.root, jwt) {
            Ok(admission) if admission.expires.is_some() => self.admitting = Some(admission),
            Ok(admission) => {
                self.grant = Some(admission.grant);
                self.become_ready();
            }
            Err(refusal) => self.refuse(&refusal.to_string()),
        }
    }

    /// Completes an admission whose token expires, now that the time is known.
    fn admit_at(&mut self, admission: Admission, now: Instant) {
        let (Some(auth), Some(exp)) = (self.config.auth.clone(), admission.expires) else {
            return;
        };
        let now_ms = auth.clock().unix_ms(now);
        if Admission::expired(exp, now_ms) {
            return self.refuse(&crate::auth::Refusal::Expired.to_string());
        }
        let left = exp.saturating_mul(1000).saturating_sub(now_ms);
        self.expires_at = now.checked_add(Duration::from_millis(left as u64));
        self.grant = Some(admission.grant);
        self.become_ready();
    }

    /// Closes a connection whose peer may not have a session.
    fn refuse(&mut self, reason: &str) {
        tracing::warn!(path = %self.root, reason, "session refused: unauthorized");
        self.auth_refusals += 1;
        self.close(ErrorCode::Unauthorized, reason);
    }

    /// Whether the peer may subscribe to (and hear of) the broadcast at `path`.
    fn may_get(&self, path: &str) -> bool {
        self.grant.as_ref().is_none_or(|g| g.may_get(path))
    }

    /// The session is admitted (server) or set up (client). Over WebTransport a server
    /// answers the CONNECT now and, on lite-05, still waits for the peer's SETUP.
    fn become_ready(&mut self) {
        if self.accept_webtransport() {
            return;
        }
        self.phase = Phase::Ready;
        self.events.push(Event::Ready);
    }

    /// Moves queued stream data into quiche and completes subscriptions whose groups are done.
    pub fn flush(&mut self, now: Instant) {
        if let Some(admission) = self.admitting.take() {
            self.admit_at(admission, now);
        }
        if self.expires_at.is_some_and(|at| at <= now) {
            self.expires_at = None;
            tracing::info!(path = %self.root, "token expired, closing session");
            self.auth_refusals += 1;
            self.close(ErrorCode::Unauthorized, "token expired");
        }
        if !self.ending.is_empty() {
            self.complete_endings(now);
        }
        if !self.closing.is_empty() {
            // A stream is collected by quiche once both sides finished and were acked.
            let conn = &mut self.conn;
            let mut peer_closed = false;
            self.closing.retain(|&(stream, until)| {
                let collected = matches!(
                    conn.stream_capacity(stream),
                    Err(quiche::Error::InvalidStreamState(_))
                );
                peer_closed |= collected;
                until > now && !collected
            });
            if peer_closed {
                self.resume_hold = Some(now + RESUME_GRACE);
            }
        }
        if self.resume_hold.is_some_and(|t| t <= now) {
            self.resume_hold = None;
        }
        if !self.held_announces.is_empty() && !self.subscriptions_ending() {
            for (stream, msg) in std::mem::take(&mut self.held_announces) {
                if self.announcing.contains_key(&stream) {
                    self.write_msg(stream, &msg);
                }
            }
        }
        // Groups are reset before anything new goes into quiche, not after: quiche 0.30
        // still sends a zero-length STREAM frame with FIN, at the reset's final size, for a
        // stream reset while it holds unsent bytes (it skips only streams the peer stopped,
        // quiche PR 855); a subscriber that gets that FIN before the RESET_STREAM sees the
        // group end early. What the last send round took is out of quiche's buffer.
        if !self.superseded.is_empty() {
            self.late_groups += self.expire_late_groups(now) as u64;
        }
        if self.queued > self.config.max_queued_bytes {
            self.lagged_groups += self.shed_oldest_groups() as u64;
        }
        std::mem::swap(&mut self.flushing, &mut self.dirty);
        self.flushing.sort_unstable();
        for i in 0..self.flushing.len() {
            let id = self.flushing[i];
            let Some(out) = self.send.get_mut(&id) else {
                continue;
            };
            let before = out.queued();
            let state = out.flush(&mut self.conn, id);
            self.queued -= before - out.queued();
            match state {
                // Looked at again at every flush; an ACK makes its session active.
                Flushed::Pending | Flushed::AckWait => self.dirty.push(id),
                Flushed::Idle => out.dirty = false,
                Flushed::Done => {
                    self.send.remove(&id);
                }
                Flushed::Stopped(code) => {
                    if let Some(out) = self.send.remove(&id) {
                        self.queued -= out.queued();
                    }
                    self.on_stopped(id, code);
                }
            }
        }
        self.flushing.clear();
        self.report_resets(now);
        self.flush_webtransport(now);
        self.flushed_at = Some(now);
    }

    /// Queues `id` for the next flush, once.
    fn mark_dirty(&mut self, id: u64) {
        if let Some(out) = self.send.get_mut(&id) {
            if !out.dirty {
                out.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// The peer sent STOP_SENDING on a stream we write.
    fn on_stopped(&mut self, id: u64, code: u64) {
        // Echoed as received: it is already in this transport's code space.
        tracing::debug!(stream = id, code, "peer stopped stream");
        let _ = self.conn.stream_shutdown(id, quiche::Shutdown::Write, code);
    }

    fn complete_endings(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.ending.len() {
            let stream = self.ending[i];
            let finished = match self.served.get_mut(&stream) {
                None => true,
                Some(served) => {
                    let conn = &mut self.conn;
                    let send = &self.send;
                    served
                        .groups
                        .retain(|(_, g)| send.contains_key(g) || conn.stream_capacity(*g).is_ok());
                    served.groups.is_empty()
                }
            };
            if !finished || !self.fin_due(stream, now) {
                i += 1;
                continue;
            }
            self.ending.swap_remove(i);
            tracing::debug!(stream, "subscription groups complete, ending it");
            if let Some(served) = self.served.remove(&stream) {
                match served.ending {
                    Some(Some(code)) => self.reset_stream(stream, code),
                    _ => {
                        self.finish_stream(stream);
                        self.closing.push((stream, now + ANNOUNCE_HOLD));
                    }
                }
            }
        }
    }

    /// Whether announcements must wait: a subscription is ending, or earlier ones wait
    /// already (they keep their order).
    fn holds_announces(&self) -> bool {
        self.subscriptions_ending() || !self.held_announces.is_empty()
    }

    /// Whether a subscription is ending, waits for the peer to close its side, or did so
    /// within [`RESUME_GRACE`].
    fn subscriptions_ending(&self) -> bool {
        !self.ending.is_empty() || !self.closing.is_empty() || self.resume_hold.is_some()
    }

    /// Whether an ending subscription whose groups completed may be finished now.
    fn fin_due(&mut self, stream: u64, now: Instant) -> bool {
        if self.version.is_some_and(|v| v.has_track_stream()) {
            return true;
        }
        let rtt = self.rtt();
        let Some(served) = self.served.get_mut(&stream) else {
            return true;
        };
        if matches!(served.ending, Some(Some(_))) {
            return true;
        }
        let at = *served.fin_at.get_or_insert(now + FIN_GRACE.max(rtt * 2));
        at <= now
    }

    /// The connection's smoothed round-trip time (zero before the first sample).
    fn rtt(&self) -> Duration {
        self.conn
            .path_stats()
            .next()
            .map_or(Duration::ZERO, |p| p.rtt)
    }

    /// When the session next needs [`Self::flush`] even if nothing arrives: QUIC timers,
    /// delayed subscription ends, FINs waiting to go alone and the release of held
    /// announcements.
    pub fn next_timeout(&self) -> Option<Instant> {
        let hold = self
            .closing
            .iter()
            .map(|(_, until)| *until)
            .chain(self.resume_hold)
            .min()
            .filter(|_| !self.held_announces.is_empty());
        let fins = self
            .ending
            .iter()
            .filter_map(|s| self.served.get(s).and_then(|x| x.fin_at));
        // Events made by a flush (an admission completing) wait for the next process.
        let events = self.flushed_at.filter(|_| !self.events.is_empty());
        [
            self.conn.timeout_instant(),
            hold,
            self.next_latency_deadline(),
            self.expires_at,
            events,
            self.webtransport_deadline(),
        ]
        .into_iter()
        .flatten()
        .chain(fins)
        .min()
    }

    fn open_bidi(&mut self, kind: Kind) -> u64 {
        let id = self.next_bidi;
        self.next_bidi += 4;
        self.recv.insert(id, InStream::new(kind));
        if let Some(prefix) = self.stream_prefix(true) {
            self.write(id, prefix);
        }
        id
    }

    fn open_uni(&mut self) -> u64 {
        let id = self.next_uni;
        self.next_uni += 4;
        self.send.insert(id, OutStream::new(Class::Control, false));
        if let Some(prefix) = self.stream_prefix(false) {
            self.write(id, prefix);
        }
        id
    }

    fn write(&mut self, id: u64, chunk: Bytes) {
        let out = self
            .send
            .entry(id)
            .or_insert_with(|| OutStream::new(Class::Control, true));
        self.queued += chunk.len();
        out.push(chunk);
        self.mark_dirty(id);
    }

    fn write_msg<M: Message>(&mut self, id: u64, msg: &M) {
        let Some(version) = self.version else { return };
        let mut buf = BytesMut::new();
        msg.encode(&mut buf, version);
        self.write(id, buf.freeze());
    }

    fn write_response(&mut self, id: u64, msg: &SubscribeResponse) {
        let Some(version) = self.version else { return };
        let mut buf = BytesMut::new();
        msg.encode(&mut buf, version);
        self.write(id, buf.freeze());
    }

    fn finish_stream(&mut self, id: u64) {
        self.send
            .entry(id)
            .or_insert_with(|| OutStream::new(Class::Control, true))
            .finish();
        self.mark_dirty(id);
    }

    /// Resets our write side and stops reading a stream; drops its queues. `code` is a
    /// moq-lite code (mapped for WebTransport here).
    fn reset_stream(&mut self, id: u64, code: u64) {
        if let Some(out) = self.send.remove(&id) {
            self.queued -= out.queued();
        }
        let code = self.wire_code(code);
        self.shutdown_write(id, code);
        if wire_is_bidi(id) || !self.is_local(id) {
            let _ = self.conn.stream_shutdown(id, quiche::Shutdown::Read, code);
        }
        self.recv.remove(&id);
    }

    /// Resets our write side of `id` with `code` (already in the transport's code space).
    ///
    /// quiche 0.30 still sends a zero-length STREAM frame with FIN, at the reset's final
    /// size, for a stream reset while it held unsent bytes (it skips only streams the peer
    /// stopped, quiche PR 855). A peer that reads that FIN before the RESET_STREAM sees the
    /// stream end early: a group cut short. Raised to the first urgency, the stream's FIN
    /// leaves in the next packet, behind the RESET_STREAM frames quiche writes first, and
    /// is retransmitted with them, so a peer gets the reset first. (quiche puts one STREAM
    /// frame in a packet: of several streams reset at once, the others' FINs follow in
    /// later packets, which can still arrive without the first.)
    pub(super) fn shutdown_write(&mut self, id: u64, code: u64) {
        if self
            .conn
            .stream_shutdown(id, quiche::Shutdown::Write, code)
            .is_ok()
        {
            let _ = self.conn.stream_priority(id, 0, false);
        }
    }

    fn is_local(&self, id: u64) -> bool {
        (id & 1 == 1) == self.conn.is_server()
    }

    fn absolute(&self, rel: &str) -> String {
        path::join(&self.root, &path::normalize(rel))
    }

    fn relative<'a>(&self, abs: &'a str) -> Option<&'a str> {
        path::strip(abs, &self.root)
    }
}

fn wire_is_bidi(id: u64) -> bool {
    id & 2 == 0
}

#[cfg(test)]
mod tests;
