//! The shard's connection table: routes datagrams by connection ID, accepts new
//! connections, runs QUIC timers, and gives the relay its [`Sessions`] view.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ring::rand::SecureRandom;
use slab::Slab;
use tracing::{debug, info};

use super::admission::Admission;
use super::handshakes::{HandshakePolicy, Pending, Verdict};
use super::timers::Timers;
use crate::log_limit::LogLimit;
use crate::metrics::{Slot, Tally};
use crate::relay::{SessionKey, Sessions};
use crate::session::{zc::BytesFactory, Frame, Session, SessionConfig};
use crate::wire::{ErrorCode, Fetch, Subscribe, TrackInfo, Version};

/// The smallest datagram that may carry a client's first Initial (RFC 9000, 14.1).
const MIN_INITIAL_LEN: usize = 1200;

/// Connections of one shard.
pub struct Table {
    quic: quiche::Config,
    session: SessionConfig,
    /// The relay-wide connection limit: connections beyond it are refused (their Initial
    /// packets are dropped, with a rate-limited log line).
    admission: Admission,
    refusals: LogLimit,
    /// Handshakes not yet complete, their deadlines and limits, and the Retry key.
    pending: Pending,
    /// Draining: new connections are refused, every session was sent a GOAWAY.
    draining: bool,
    /// The first byte of every connection ID we issue: our shard index, which steers the
    /// connection's datagrams to us.
    shard: u8,
    sessions: Slab<Session>,
    by_cid: HashMap<Vec<u8>, SessionKey>,
    rng: ring::rand::SystemRandom,
    /// Sessions with something to do this loop turn: input, an expired timer, or data the
    /// relay queued. Only these are processed and flushed, so idle subscribers cost nothing.
    active: Vec<SessionKey>,
    /// `marked[key]`: `key` is in `active`.
    marked: Vec<bool>,
    /// Deadlines (QUIC and session timers) of the sessions.
    timers: Timers,
    /// Scratch list for `on_timeouts`.
    expired: Vec<SessionKey>,
    /// Counters for metrics (plain: only this shard touches them).
    counts: Counts,
}

/// What a table counts as it goes, for metrics (see [`Table::tally`]).
#[derive(Debug, Default)]
struct Counts {
    accepted: u64,
    refused_limit: u64,
    refused_error: u64,
    refused_version: u64,
    /// Over `--max-pending-handshakes`, over `--max-pending-per-address`, bad Retry token.
    refused_pending: u64,
    refused_address: u64,
    refused_token: u64,
    retries: u64,
    handshakes_timed_out: u64,
    bytes_out: u64,
    frames_out: u64,
    groups_out: u64,
    /// Resets the relay asked for, by reason: Lagged, Old, other.
    resets: [u64; 3],
    /// Sessions' own Lagged and Old resets, of sessions already removed.
    removed_lagged: u64,
    /// Auth refusals of sessions already removed.
    removed_auth: u64,
    removed_late: u64,
}

impl Table {
    pub fn new(
        quic: quiche::Config,
        session: SessionConfig,
        admission: Admission,
        shard: u8,
    ) -> Self {
        Self {
            quic,
            session,
            admission,
            refusals: LogLimit::default(),
            pending: Pending::new(HandshakePolicy::standalone()),
            draining: false,
            shard,
            sessions: Slab::new(),
            by_cid: HashMap::new(),
            rng: ring::rand::SystemRandom::new(),
            active: Vec::new(),
            marked: Vec::new(),
            timers: Timers::default(),
            expired: Vec::new(),
            counts: Counts::default(),
        }
    }

    /// Writes the table's counters and gauges into `t`. Walks every session: call it to
    /// publish metrics, not per packet.
    pub fn tally(&self, t: &mut Tally) {
        let c = &self.counts;
        t.set(Slot::ConnectionsOpen, self.sessions.len() as u64);
        t.set(Slot::ConnectionsAccepted, c.accepted);
        t.set(Slot::RefusedLimit, c.refused_limit);
        t.set(Slot::RefusedError, c.refused_error);
        t.set(Slot::RefusedVersion, c.refused_version);
        t.set(Slot::RefusedHandshakes, c.refused_pending);
        t.set(Slot::RefusedAddress, c.refused_address);
        t.set(Slot::RefusedToken, c.refused_token);
        t.set(Slot::RetriesSent, c.retries);
        t.set(Slot::HandshakesTimedOut, c.handshakes_timed_out);
        t.set(Slot::BytesOut, c.bytes_out);
        t.set(Slot::FramesOut, c.frames_out);
        t.set(Slot::GroupsOut, c.groups_out);
        let (mut pending, mut queued, mut lagged, mut late, mut auth) =
            (0, 0, c.removed_lagged, c.removed_late, c.removed_auth);
        let mut versions = [0u64; 3];
        let mut webtransport = 0;
        for (_, session) in &self.sessions {
            webtransport += u64::from(session.is_webtransport() && session.version().is_some());
            queued += session.queued_bytes() as u64;
            lagged += session.lagged_groups();
            late += session.late_groups();
            auth += session.auth_refusals();
            match session.version() {
                Some(Version::Lite05) => versions[0] += 1,
                Some(Version::Lite04) => versions[1] += 1,
                Some(Version::Lite03) => versions[2] += 1,
                None => pending += 1,
            }
        }
        t.set(Slot::HandshakesPending, pending);
        t.set(Slot::SessionsLite05, versions[0]);
        t.set(Slot::SessionsLite04, versions[1]);
        t.set(Slot::SessionsLite03, versions[2]);
        t.set(Slot::SessionsWebTransport, webtransport);
        t.set(Slot::QueuedBytes, queued);
        t.set(Slot::ResetLagged, c.resets[0] + lagged);
        t.set(Slot::ResetOld, c.resets[1] + late);
        t.set(Slot::ResetOther, c.resets[2]);
        t.set(Slot::AuthRefusals, auth);
    }

    /// Replaces `out`'s contents with the sessions active this turn (no allocation once
    /// `out` has grown).
    pub fn active_into(&self, out: &mut Vec<SessionKey>) {
        out.clear();
        out.extend_from_slice(&self.active);
    }

    /// Ends the turn: the active sessions' deadlines are re-scheduled, closed connections
    /// forgotten (after the relay handled their `Closed` event), and no session is active
    /// any more. Only active sessions can have changed, so idle ones cost nothing here.
    pub fn end_turn(&mut self) {
        for key in self.active.drain(..) {
            self.marked[key] = false;
            let Some(session) = self.sessions.get(key) else {
                self.timers.schedule(key, None);
                continue;
            };
            if session.conn().is_closed() {
                self.timers.schedule(key, None);
                let session = self.sessions.remove(key);
                self.counts.removed_lagged += session.lagged_groups();
                self.counts.removed_auth += session.auth_refusals();
                self.counts.removed_late += session.late_groups();
                // Links we dialled hold no place (see `Table::dial`).
                if session.conn().is_server() {
                    self.admission.release();
                }
                self.pending.remove(key);
                self.by_cid.retain(|_, k| *k != key);
                let conn = session.conn();
                info!(
                    session = key,
                    peer_error = ?conn.peer_error(),
                    local_error = ?conn.local_error(),
                    "connection removed"
                );
            } else {
                // A handshake done gives back its pending place (a lookup only while
                // handshakes are pending at all).
                if !self.pending.is_empty() && session.conn().is_established() {
                    self.pending.remove(key);
                }
                self.timers.schedule(key, session.next_timeout());
            }
        }
    }

    fn mark(&mut self, key: SessionKey) {
        if key >= self.marked.len() {
            self.marked.resize(key + 1, false);
        }
        if !self.marked[key] {
            self.marked[key] = true;
            self.active.push(key);
        }
    }

    /// The session, marked active (the relay is about to give it work).
    fn touch(&mut self, key: SessionKey) -> Option<&mut Session> {
        if !self.sessions.contains(key) {
            return None;
        }
        self.mark(key);
        self.sessions.get_mut(key)
    }

    pub fn get_mut(&mut self, key: SessionKey) -> Option<&mut Session> {
        self.sessions.get_mut(key)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Handshakes of this shard not yet complete (see [`HandshakePolicy`]).
    pub fn pending_handshakes(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Feeds a datagram to its connection, accepting new ones. Returns a datagram to send
    /// back directly (version negotiation), if any.
    pub fn on_datagram(
        &mut self,
        buf: &mut [u8],
        from: SocketAddr,
        local: SocketAddr,
    ) -> Option<Vec<u8>> {
        let header = match quiche::Header::from_slice(buf, quiche::MAX_CONN_ID_LEN) {
            Ok(h) => h,
            Err(_) => {
                debug!(%from, "dropping datagram with unparsable header");
                return None;
            }
        };
        let key = match self.by_cid.get(header.dcid.as_ref()) {
            Some(&key) => key,
            None => {
                if header.ty != quiche::Type::Initial {
                    return None;
                }
                if !quiche::version_is_supported(header.version) {
                    self.counts.refused_version += 1;
                    let mut out = vec![0u8; 1350];
                    let len =
                        quiche::negotiate_version(&header.scid, &header.dcid, &mut out).ok()?;
                    out.truncate(len);
                    return Some(out);
                }
                // A client's first datagram is padded to 1200 bytes (RFC 9000, 14.1):
                // a shorter one gets neither state nor an answer.
                if buf.len() < MIN_INITIAL_LEN {
                    return None;
                }
                match self.initial(&header, from, local, Instant::now()) {
                    Ok(key) => key,
                    Err(reply) => return reply,
                }
            }
        };
        let session = self.touch(key)?;
        let info = quiche::RecvInfo { from, to: local };
        if let Err(e) = session.conn_mut().recv(buf, info) {
            debug!(session = key, error = %e, "recv rejected datagram");
        }
        None
    }

    /// An Initial that opens no known connection: accepted as a pending handshake (its
    /// key), answered with a Retry, or dropped (`Err(None)`), per the handshake limits.
    fn initial(
        &mut self,
        header: &quiche::Header,
        from: SocketAddr,
        local: SocketAddr,
        now: Instant,
    ) -> Result<SessionKey, Option<Vec<u8>>> {
        if self.draining {
            // `accept` refuses it, with its log line.
            return self
                .accept(header.dcid.as_ref(), None, from, local, now)
                .ok_or(None);
        }
        let token = header.token.as_deref().filter(|t| !t.is_empty());
        let retried = match token {
            None => None,
            Some(token) => {
                let key = &self.pending.policy().key;
                match key.check(token, now, from, &header.dcid) {
                    Ok(odcid) => Some(odcid.to_vec()),
                    Err(e) => {
                        self.counts.refused_token += 1;
                        self.refused(now, from, &format!("Retry token refused ({e:?})"));
                        return Err(None);
                    }
                }
            }
        };
        let proven = retried.is_some();
        match self.pending.admit(from.ip(), proven) {
            Verdict::Accept => {}
            Verdict::Retry => return Err(self.retry(header, from, now)),
            Verdict::RefuseRelay => {
                self.counts.refused_pending += 1;
                let limit = self.pending.policy().pending.limit();
                let why = format!("the relay holds its limit of {limit} pending handshakes");
                self.refused(now, from, &why);
                return Err(None);
            }
            Verdict::RefuseAddress => {
                self.counts.refused_address += 1;
                let limit = self.pending.policy().per_address;
                let why = format!("its address holds its limit of {limit} pending handshakes");
                self.refused(now, from, &why);
                return Err(None);
            }
        }
        let dcid = header.dcid.as_ref();
        match self.accept(dcid, retried.as_deref(), from, local, now) {
            Some(key) => {
                self.pending.insert(key, from.ip(), proven, now);
                Ok(key)
            }
            None => {
                self.pending.cancel(from.ip(), proven);
                Err(None)
            }
        }
    }

    /// A rate-limited log line for a refused connection.
    fn refused(&mut self, now: Instant, from: SocketAddr, why: &str) {
        if let Some(refused) = self.refusals.tick(now) {
            info!(peer = %from, refused, "connection refused: {why}");
        }
    }

    /// A Retry packet sending the client at `from` back with a token, under a new
    /// connection ID of this shard.
    fn retry(
        &mut self,
        header: &quiche::Header,
        from: SocketAddr,
        now: Instant,
    ) -> Option<Vec<u8>> {
        let mut scid = [0u8; quiche::MAX_CONN_ID_LEN];
        self.rng.fill(&mut scid).ok()?;
        scid[0] = self.shard;
        let token = self
            .pending
            .policy()
            .key
            .mint(now, from, &header.dcid, &scid);
        let mut out = vec![0u8; 256];
        let scid = quiche::ConnectionId::from_ref(&scid);
        let len = quiche::retry(
            &header.scid,
            &header.dcid,
            &scid,
            &token,
            header.version,
            &mut out,
        )
        .ok()?;
        out.truncate(len);
        self.counts.retries += 1;
        Some(out)
    }

    /// Creates the connection for an Initial to `dcid` (after a Retry, `dcid` is the
    /// connection ID the Retry gave and `retried` the client's original one).
    fn accept(
        &mut self,
        dcid: &[u8],
        retried: Option<&[u8]>,
        from: SocketAddr,
        local: SocketAddr,
        now: Instant,
    ) -> Option<SessionKey> {
        if self.draining {
            if let Some(refused) = self.refusals.tick(now) {
                info!(peer = %from, refused, "connection refused: the relay is draining");
            }
            return None;
        }
        if !self.admission.try_admit() {
            self.counts.refused_limit += 1;
            if let Some(refused) = self.refusals.tick(now) {
                let limit = self.admission.limit();
                info!(
                    peer = %from,
                    refused,
                    "connection refused: the relay holds its limit of {limit} connections"
                );
            }
            return None;
        }
        let mut scid = [0u8; quiche::MAX_CONN_ID_LEN];
        let scid: &[u8] = match retried {
            // The Retry's connection ID (ours: its token says so) stays the connection's.
            Some(_) => dcid,
            None => {
                if self.rng.fill(&mut scid).is_err() {
                    self.counts.refused_error += 1;
                    self.admission.release();
                    return None;
                }
                scid[0] = self.shard;
                &scid
            }
        };
        let scid_ref = quiche::ConnectionId::from_ref(scid);
        let odcid = retried.map(quiche::ConnectionId::from_ref);
        let conn = match quiche::accept_with_buf_factory::<BytesFactory>(
            &scid_ref,
            odcid.as_ref(),
            local,
            from,
            &mut self.quic,
        ) {
            Ok(conn) => conn,
            Err(e) => {
                self.counts.refused_error += 1;
                self.admission.release();
                debug!(peer = %from, error = %e, "accept failed");
                return None;
            }
        };
        let key = self
            .sessions
            .insert(Session::new(conn, self.session.clone()));
        self.by_cid.insert(scid.to_vec(), key);
        self.by_cid.insert(dcid.to_vec(), key);
        self.counts.accepted += 1;
        info!(session = key, peer = %from, retried = retried.is_some(), "connection accepted");
        Some(key)
    }

    /// Dials a peer relay at `url` (a cluster link) from our socket at `local`: a client
    /// session whose connection IDs steer its datagrams to this shard, as our own
    /// connections' do. It holds no place under `--max-connections` (the operator chose
    /// it) and is sent its first packets this turn.
    pub fn dial(
        &mut self,
        url: &url::Url,
        config: &mut quiche::Config,
        local: SocketAddr,
        origin: u64,
    ) -> Result<SessionKey, String> {
        let (host, peer) = crate::client::resolve(url).map_err(|e| e.to_string())?;
        let mut scid = [0u8; quiche::MAX_CONN_ID_LEN];
        self.rng
            .fill(&mut scid)
            .map_err(|_| "no randomness for a connection ID".to_string())?;
        scid[0] = self.shard;
        let scid_ref = quiche::ConnectionId::from_ref(&scid);
        let conn = quiche::connect_with_buffer_factory::<BytesFactory>(
            Some(&host),
            &scid_ref,
            local,
            peer,
            config,
        )
        .map_err(|e| format!("QUIC: {e}"))?;
        let config = SessionConfig {
            origin,
            // The query travels with the path: it may carry a `jwt` token for the peer.
            path: Some(match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_string(),
            }),
            authority: Some(format!(
                "{}:{}",
                url.host_str().unwrap_or(&host),
                peer.port()
            )),
            // We check no token of a peer we chose to dial.
            auth: None,
            ..self.session.clone()
        };
        let key = self.sessions.insert(Session::new(conn, config));
        self.by_cid.insert(scid.to_vec(), key);
        self.mark(key);
        info!(session = key, %peer, %url, "cluster link dialled");
        Ok(key)
    }

    /// Whether `key` is a connection we dialled that completed its handshake.
    pub fn is_established(&self, key: SessionKey) -> bool {
        self.sessions
            .get(key)
            .is_some_and(|s| s.conn().is_established())
    }

    /// Whether `key` is a connection we dialled (a key freed by a lost link may already
    /// name a connection a client opened).
    pub fn is_dialled(&self, key: SessionKey) -> bool {
        self.sessions
            .get(key)
            .is_some_and(|s| !s.conn().is_server())
    }

    /// Marks `key` active so it is processed and flushed this turn.
    pub fn wake(&mut self, key: SessionKey) {
        if self.sessions.contains(key) {
            self.mark(key);
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Sets the handshake limits and the Retry key, shared with the other shards (before
    /// the first connection).
    pub fn set_handshakes(&mut self, policy: HandshakePolicy) {
        debug_assert!(self.pending.is_empty());
        self.pending = Pending::new(policy);
    }

    /// Drops the pending handshakes past their deadline without a word (their peers may
    /// not exist), and lets go of those that completed after all.
    fn sweep_handshakes(&mut self, now: Instant) {
        let mut expired = std::mem::take(&mut self.expired);
        expired.clear();
        self.pending.expired(now, &mut expired);
        expired.retain(|&key| {
            let done = self
                .sessions
                .get(key)
                .is_none_or(|s| s.conn().is_established() || s.conn().is_closed());
            if done {
                self.pending.remove(key);
            }
            !done
        });
        for &key in &expired {
            // Never established, so the relay has never heard of it.
            self.sessions.remove(key);
            self.pending.remove(key);
            self.admission.release();
            self.timers.schedule(key, None);
            self.counts.handshakes_timed_out += 1;
            debug!(session = key, "handshake timed out: connection dropped");
        }
        if !expired.is_empty() {
            expired.sort_unstable();
            self.by_cid.retain(|_, k| expired.binary_search(k).is_err());
        }
        self.expired = expired;
    }

    /// New connections get `quic` (a reloaded certificate); open ones keep theirs.
    pub fn set_quic(&mut self, quic: quiche::Config) {
        self.quic = quic;
    }

    /// Starts a drain: refuses new connections from now on and sends every session a
    /// GOAWAY naming `redirect` (on versions that have one).
    pub fn drain(&mut self, redirect: &str) {
        self.draining = true;
        let keys: Vec<SessionKey> = self.sessions.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(session) = self.touch(key) {
                session.go_away(redirect);
            }
        }
    }

    /// Connections the whole relay holds now (every shard's).
    pub fn relay_connections(&self) -> usize {
        self.admission.open()
    }

    /// Closes every connection with QUIC's NO_ERROR: the end of a drain.
    pub fn close_all(&mut self, reason: &str) {
        let keys: Vec<SessionKey> = self.sessions.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(session) = self.touch(key) {
                let _ = session.conn_mut().close(false, 0x0, reason.as_bytes());
            }
        }
    }

    /// Runs expired QUIC timers and activates sessions whose timers (QUIC or their own)
    /// expired.
    pub fn on_timeouts(&mut self, now: Instant) {
        if self.pending.next_deadline().is_some_and(|t| t <= now) {
            self.sweep_handshakes(now);
        }
        let mut expired = std::mem::take(&mut self.expired);
        expired.clear();
        self.timers.expired(now, &mut expired);
        for &key in &expired {
            let Some(session) = self.sessions.get_mut(key) else {
                continue;
            };
            let conn = session.conn_mut();
            if conn.timeout_instant().is_some_and(|t| t <= now) {
                conn.on_timeout();
            }
            self.mark(key);
        }
        self.expired = expired;
    }

    /// Time until the earliest QUIC or session timer.
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        let handshakes = self.pending.next_deadline();
        let next = match (self.timers.next(), handshakes) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(|t| t.saturating_duration_since(now))
    }
}

impl Sessions for Table {
    fn root(&self, s: SessionKey) -> String {
        self.sessions
            .get(s)
            .map(|x| x.root().to_string())
            .unwrap_or_default()
    }
    fn left_abruptly(&self, s: SessionKey) -> bool {
        let Some(session) = self.sessions.get(s) else {
            return false;
        };
        let conn = session.conn();
        if conn.is_timed_out() {
            return true;
        }
        // We closed it (an error of the peer's, or a drain): nothing to wait for.
        if conn.local_error().is_some() {
            return false;
        }
        conn.peer_error().is_some_and(|e| e.error_code != 0)
    }
    fn request_announces(&mut self, s: SessionKey, prefix: &str) -> Option<u64> {
        self.touch(s)?.request_announces(prefix)
    }
    fn reply_announces(&mut self, s: SessionKey, stream: u64, initial: &[(&str, &[u64])]) {
        if let Some(x) = self.touch(s) {
            x.reply_announces(stream, initial)
        }
    }
    fn announce(&mut self, s: SessionKey, stream: u64, b: &str, hops: &[u64], active: bool) {
        if let Some(x) = self.touch(s) {
            x.announce(stream, b, hops, active)
        }
    }
    fn reannounce(&mut self, s: SessionKey, stream: u64, b: &str, old: &[u64], new: &[u64]) {
        if let Some(x) = self.touch(s) {
            x.reannounce(stream, b, old, new)
        }
    }
    fn subscribe(&mut self, s: SessionKey, request: &Subscribe, token: usize) -> Option<u64> {
        self.touch(s)?.subscribe(request, token)
    }
    fn unsubscribe(&mut self, s: SessionKey, stream: u64) {
        if let Some(x) = self.touch(s) {
            x.unsubscribe(stream)
        }
    }
    fn request_track(&mut self, s: SessionKey, b: &str, t: &str, token: usize) -> Option<u64> {
        self.touch(s)?.request_track(b, t, token)
    }
    fn reply_track(&mut self, s: SessionKey, stream: u64, info: &TrackInfo) {
        if let Some(x) = self.touch(s) {
            x.reply_track(stream, info)
        }
    }
    fn fetch(&mut self, _: SessionKey, _: &Fetch, _: usize) -> Option<u64> {
        // Sessions are never asked to fetch: the relay answers from its caches.
        None
    }
    fn reply_fetch(&mut self, s: SessionKey, stream: u64, frames: &[Frame]) {
        if let Some(x) = self.touch(s) {
            x.reply_fetch(stream, frames)
        }
    }
    fn reject(&mut self, s: SessionKey, stream: u64, code: ErrorCode) {
        if let Some(x) = self.touch(s) {
            x.reject(stream, code)
        }
    }
    fn subscribe_ok(&mut self, s: SessionKey, stream: u64, priority: u8) {
        if let Some(x) = self.touch(s) {
            x.subscribe_ok(stream, priority)
        }
    }
    fn subscribe_start(&mut self, s: SessionKey, stream: u64, group: u64) {
        if let Some(x) = self.touch(s) {
            x.subscribe_start(stream, group)
        }
    }
    fn subscribe_end(&mut self, s: SessionKey, stream: u64, group: u64) {
        if let Some(x) = self.touch(s) {
            x.subscribe_end(stream, group)
        }
    }
    fn end_subscription(&mut self, s: SessionKey, stream: u64, error: Option<u64>) {
        if let Some(x) = self.touch(s) {
            x.end_subscription(stream, error)
        }
    }
    fn open_group(&mut self, s: SessionKey, stream: u64, sequence: u64) -> Option<u64> {
        let opened = self.touch(s)?.open_group(stream, sequence);
        self.counts.groups_out += u64::from(opened.is_some());
        opened
    }
    fn send_frame(&mut self, s: SessionKey, group: u64, frame: &Frame) {
        if let Some(x) = self.touch(s) {
            x.send_frame(group, frame);
            self.counts.frames_out += 1;
            self.counts.bytes_out += frame.payload().len() as u64;
        }
    }
    fn finish_group(&mut self, s: SessionKey, group: u64) {
        if let Some(x) = self.touch(s) {
            x.finish_group(group)
        }
    }
    fn reset_group(&mut self, s: SessionKey, group: u64, code: u64) {
        if let Some(x) = self.touch(s) {
            x.reset_group(group, code);
            let reason = match ErrorCode::from_code(code) {
                Some(ErrorCode::Lagged) => 0,
                Some(ErrorCode::Old) => 1,
                _ => 2,
            };
            self.counts.resets[reason] += 1;
        }
    }
    fn queued_bytes(&self, s: SessionKey) -> usize {
        self.sessions.get(s).map_or(0, |x| x.queued_bytes())
    }
}
