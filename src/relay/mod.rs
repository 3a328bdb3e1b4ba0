//! The relay core: broadcasts, tracks, subscription dedup and group fan-out, sans-IO.
//!
//! The relay turns session [`Event`]s into calls on [`Sessions`], the shard's view of its
//! connections. It never sees a socket or a clock. One upstream subscription serves every
//! subscriber of a track; each group is opened on each subscriber as its own stream, and
//! every frame is handed on as shared `Bytes` handles. The latest group is kept so a late
//! joiner starts at the current group, from its first frame.

mod announce;
mod rules;
mod sessions;
mod topology;
mod track;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use slab::Slab;

pub use rules::{CacheBudget, CacheRule};
pub use sessions::{SessionKey, Sessions};
pub use topology::{Topology, MAX_SHARDS};
use track::{Downstream, Track};

use crate::session::Event;
use crate::wire::{ErrorCode, Subscribe, TrackInfo};

/// How long a track that ended cleanly waits for groups of its announced range that have
/// not opened yet (they are in flight, or were reset before their header came); then it
/// ends without them.
const END_WAIT: Duration = Duration::from_secs(10);

/// How long a subscription passed on by another shard waits for the broadcast's
/// announcement to reach this shard: the other shard heard of it first, the mail telling
/// this one is on its way from the publisher's shard.
const ANNOUNCE_IN_FLIGHT: Duration = Duration::from_secs(1);

/// Limits the relay enforces.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Our origin id (announce hops).
    pub origin: u64,
    /// Bytes a subscriber session may have queued before its oldest groups are dropped.
    pub max_queued_bytes: usize,
    /// Groups of a track that may be open upstream at once before the oldest is cut.
    pub max_open_groups: usize,
    /// How long the finished tracks of a departed publisher stay servable from cache
    /// (late joiners and clients resuming a subscription read the end from it).
    pub linger: Duration,
    /// Bytes of finished groups a track keeps for subscribers asking for older groups
    /// (the newest group is always kept).
    pub cache_bytes: usize,
    /// How long a finished group stays in a track's cache.
    pub cache_age: Duration,
    /// Budgets for tracks matching a pattern, over `cache_bytes` and `cache_age` (the
    /// first matching rule wins).
    pub cache_rules: Vec<CacheRule>,
    /// Tracks subscribed upstream as soon as a matching broadcast is announced, so the
    /// first viewer joins from the cache (default: on demand).
    pub eager: Vec<EagerRule>,
    /// Announcements that passed through more relays than this are dropped.
    pub max_hops: usize,
    /// How long the broadcasts of a publisher that left abruptly stay announced.
    pub route_linger: Duration,
}

/// Subscribe to `tracks` of every broadcast matching `pattern` when it is announced.
/// A pattern is a path, or a path prefix ending in `*` (`live/*`, or `*` for all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EagerRule {
    pub pattern: String,
    pub tracks: Vec<String>,
}

impl EagerRule {
    pub fn matches(&self, broadcast: &str) -> bool {
        rules::pattern_matches(&self.pattern, broadcast)
    }
}

impl std::str::FromStr for EagerRule {
    type Err = String;

    /// `PATTERN=TRACK[,TRACK...]`, e.g. `live/*=video,audio`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (pattern, tracks) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected PATTERN=TRACK[,TRACK...]"))?;
        let tracks: Vec<String> = tracks
            .split(',')
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect();
        if pattern.is_empty() || tracks.is_empty() {
            return Err(format!("{s:?}: expected PATTERN=TRACK[,TRACK...]"));
        }
        Ok(Self {
            pattern: pattern.to_string(),
            tracks,
        })
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            origin: 1,
            max_queued_bytes: 16 << 20,
            max_open_groups: 8,
            linger: Duration::from_secs(2),
            cache_bytes: 4 << 20,
            cache_age: Duration::from_secs(10),
            cache_rules: Vec::new(),
            eager: Vec::new(),
            max_hops: crate::wire::MAX_HOPS,
            route_linger: Duration::ZERO,
        }
    }
}

impl RelayConfig {
    /// The cache budget of track `track` of `broadcast`.
    pub fn cache_budget(&self, broadcast: &str, track: &str) -> CacheBudget {
        let global = CacheBudget {
            bytes: self.cache_bytes,
            age: self.cache_age,
        };
        rules::cache_budget(&self.cache_rules, global, broadcast, track)
    }
}

/// Counters for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Upstream subscriptions made, to publishers and to other shards.
    pub upstream_subscribes: u64,
    /// Upstream subscriptions made to publishers' sessions (not to other shards).
    pub publisher_subscribes: u64,
    pub downstream_subscribes: u64,
    pub groups: u64,
    pub frames: u64,
    pub dropped_groups: u64,
    /// Groups, frames and frame payload bytes received from publishers' sessions (not from
    /// other shards).
    pub publisher_groups: u64,
    pub publisher_frames: u64,
    pub publisher_bytes: u64,
}

/// Relay state of one session.
#[derive(Debug, Default)]
struct Peer {
    /// Served subscriptions: subscribe stream -> track.
    downstream: HashMap<u64, usize>,
}

/// One way a broadcast reaches this shard: a session (a publisher, a cluster peer or the
/// link to another shard) and the relays its announcement passed through.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    session: SessionKey,
    /// Relay ids, the broadcast's origin first.
    hops: Vec<u64>,
    /// The session left abruptly: the route stays announced (and serves nothing) until
    /// then, so a quick reconnect does not ripple through a cluster.
    lingers_until: Option<Instant>,
}

/// One active broadcast and who publishes it.
#[derive(Debug)]
struct Broadcast {
    /// Every route the broadcast is announced on; [`Broadcast::active`] picks the one in use.
    publishers: Vec<Route>,
    /// The session of the route in use, as last settled.
    current: Option<SessionKey>,
    /// Tracks served from the publisher: those this shard owns, and those another shard's
    /// owner asks of this shard's publisher.
    tracks: HashMap<String, usize>,
    /// Tracks another shard owns, mirrored here for this shard's subscribers.
    mirrors: HashMap<String, usize>,
}

impl Broadcast {
    fn new() -> Self {
        Self {
            publishers: Vec::new(),
            current: None,
            tracks: HashMap::new(),
            mirrors: HashMap::new(),
        }
    }

    /// The route in use.
    ///
    /// A publisher connected to us directly (a chain of at most its own id) is replaced
    /// by a newer direct one: a re-publish takes over. A route through other relays
    /// stays in use until a shorter one comes, or a newer one over the very same chain:
    /// switching ends the tracks served over it, not worth it for a route no shorter.
    /// When the route in use goes, the next is the one with the fewest hops; among as
    /// many relayed routes, the lowest hash of the path and the chain, so every relay
    /// picks alike; among direct ones (and equal chains) the newest.
    fn active(&self, path: &str) -> Option<&Route> {
        let rank = |(i, r): &(usize, &Route)| {
            let hash = match is_direct(&r.hops) {
                true => 0,
                false => route_hash(path, &r.hops),
            };
            (r.hops.len(), hash, usize::MAX - i)
        };
        let (_, best) = self.publishers.iter().enumerate().min_by_key(rank)?;
        let current = self
            .current
            .and_then(|key| self.publishers.iter().rposition(|r| r.session == key));
        let Some(at) = current else {
            return Some(best);
        };
        let cur = &self.publishers[at];
        if best.hops.len() < cur.hops.len() {
            return Some(best);
        }
        let alike = |r: &Route| match is_direct(&cur.hops) {
            true => r.hops.len() == cur.hops.len(),
            false => r.hops == cur.hops,
        };
        let newest_alike = self.publishers.iter().rposition(alike);
        Some(&self.publishers[newest_alike.unwrap_or(at).max(at)])
    }

    /// Records the route [`Broadcast::active`] picks now as the one in use.
    fn settle(&mut self, path: &str) -> Option<Route> {
        let active = self.active(path).cloned();
        self.current = active.as_ref().map(|r| r.session);
        active
    }

    /// The active route's session, if it can serve (it is not lingering).
    fn serving(&self, path: &str) -> Option<SessionKey> {
        self.active(path)
            .filter(|r| r.lingers_until.is_none())
            .map(|r| r.session)
    }

    /// Every track index of the broadcast, served and mirrored.
    fn all_tracks(&self) -> Vec<usize> {
        self.tracks
            .values()
            .chain(self.mirrors.values())
            .copied()
            .collect()
    }

    /// A track of this name, served here or mirrored.
    fn find(&self, name: &str) -> Option<usize> {
        self.tracks
            .get(name)
            .or_else(|| self.mirrors.get(name))
            .copied()
    }

    /// Forgets track `idx` under `name`, whichever map holds it.
    fn forget(&mut self, name: &str, idx: usize) {
        for map in [&mut self.tracks, &mut self.mirrors] {
            if map.get(name) == Some(&idx) {
                map.remove(name);
            }
        }
    }
}

/// An announce interest of a session.
#[derive(Debug)]
struct Watcher {
    session: SessionKey,
    stream: u64,
    prefix: String,
}

/// The relay of one shard.
#[derive(Debug)]
pub struct Relay {
    config: RelayConfig,
    topology: Topology,
    broadcasts: HashMap<String, Broadcast>,
    tracks: Slab<Track>,
    watchers: Vec<Watcher>,
    peers: HashMap<SessionKey, Peer>,
    stats: RelayStats,
    /// The time of the current event batch, set by [`Relay::tick`].
    now: Option<Instant>,
    /// Broadcasts whose publisher left, kept for their finished tracks until then.
    departed: Vec<(Instant, String)>,
    /// Finished tracks, kept for late and resuming subscribers until then.
    expiring: Vec<(Instant, usize)>,
    /// Tracks ending cleanly that wait for their last groups, and until when.
    ending: Vec<(Instant, usize)>,
    /// FETCHes passed on to the owner shard: token -> (session, stream) to answer.
    fetches: Slab<(SessionKey, u64)>,
    /// Ends of broadcasts not yet told to watchers: they wait for this shard's mirrors of
    /// the broadcast, which hear of the end on another path (from the owner shard).
    held_unannounces: Vec<announce::Unannounce>,
    /// Subscriptions that wait for their broadcast: one whose publisher left abruptly and
    /// lingers, or (with a deadline) one another shard passed on that this shard has not
    /// heard of yet.
    waiting: Vec<Waiting>,
}

/// A subscription waiting for its broadcast: answered once the broadcast is served (see
/// `Relay::settle_waiting`), refused when its linger ends or at `until`.
#[derive(Debug)]
struct Waiting {
    key: SessionKey,
    stream: u64,
    request: Subscribe,
    until: Option<Instant>,
}

impl Relay {
    /// The relay of a single-shard process.
    pub fn new(config: RelayConfig) -> Self {
        Self::sharded(config, Topology::default())
    }

    /// The relay of shard `topology.shard`; links to the other shards are sessions with
    /// [`Topology::link`] keys, announced to it with [`Relay::open_links`].
    pub fn sharded(config: RelayConfig, topology: Topology) -> Self {
        Self {
            config,
            topology,
            broadcasts: HashMap::new(),
            tracks: Slab::new(),
            watchers: Vec::new(),
            peers: HashMap::new(),
            stats: RelayStats::default(),
            now: None,
            departed: Vec::new(),
            expiring: Vec::new(),
            ending: Vec::new(),
            fetches: Slab::new(),
            held_unannounces: Vec::new(),
            waiting: Vec::new(),
        }
    }

    /// Treats the links to every other shard as ready sessions: asks each for the
    /// broadcasts its own publishers announce. Call once, before any other event.
    pub fn open_links<S: Sessions>(&mut self, sessions: &mut S) {
        let links: Vec<SessionKey> = self.topology.links().collect();
        for link in links {
            self.handle(link, Event::Ready, sessions);
        }
    }

    /// Sets the time for the events that follow and forgets departed broadcasts whose
    /// linger has passed. Call once per loop turn, before [`Relay::handle`].
    pub fn tick<S: Sessions>(&mut self, now: Instant, sessions: &mut S) {
        self.now = Some(now);
        if self.next_linger().is_some_and(|t| t <= now) {
            self.expire_lingering(now, sessions);
        }
        while let Some(pos) = self.departed.iter().position(|(at, _)| *at <= now) {
            let (_, path) = self.departed.swap_remove(pos);
            let gone = self
                .broadcasts
                .get(&path)
                .is_some_and(|b| b.publishers.is_empty());
            if gone {
                self.forget_broadcast(&path, sessions);
            }
        }
        if !self.held_unannounces.is_empty() {
            self.release_unannounces(|held| held.until.is_some_and(|t| t <= now), sessions);
        }
        while let Some(pos) = self
            .waiting
            .iter()
            .position(|w| w.until.is_some_and(|t| t <= now))
        {
            let w = self.waiting.swap_remove(pos);
            tracing::debug!(broadcast = %w.request.broadcast, "subscription from another shard: broadcast never announced here");
            sessions.reject(w.key, w.stream, ErrorCode::NotFound);
        }
        while let Some(pos) = self.ending.iter().position(|(at, _)| *at <= now) {
            let (_, idx) = self.ending.swap_remove(pos);
            // Groups of the announced range that never opened are lost; the track ends.
            if self.tracks.get(idx).is_some_and(|t| t.closing) {
                self.end_track(idx, None, sessions);
            }
        }
        while let Some(pos) = self.expiring.iter().position(|(at, _)| *at <= now) {
            let (_, idx) = self.expiring.swap_remove(pos);
            // The slot may hold another track by now; only a finished one goes.
            if self.tracks.get(idx).is_some_and(|t| t.finished) {
                self.end_track(idx, Some(ErrorCode::Cancel.code()), sessions);
            }
        }
    }

    /// When [`Relay::tick`] next has work.
    pub fn next_timeout(&self) -> Option<Instant> {
        let departed = self.departed.iter().map(|(at, _)| *at);
        let held = self.held_unannounces.iter().filter_map(|u| u.until);
        departed
            .chain(self.expiring.iter().map(|(at, _)| *at))
            .chain(self.ending.iter().map(|(at, _)| *at))
            .chain(self.waiting.iter().filter_map(|w| w.until))
            .chain(held)
            .chain(self.next_linger())
            .min()
    }

    /// Removes a broadcast and every track it still holds.
    fn forget_broadcast<S: Sessions>(&mut self, path: &str, sessions: &mut S) {
        let Some(b) = self.broadcasts.remove(path) else {
            return;
        };
        for idx in b.all_tracks() {
            self.end_track(idx, Some(ErrorCode::Cancel.code()), sessions);
        }
    }

    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// Subscriptions of this shard's own sessions being served (not other shards').
    /// Walks every track: for metrics, not for the hot path.
    pub fn subscriber_count(&self) -> usize {
        let subs = self.tracks.iter().flat_map(|(_, t)| &t.subscribers);
        subs.filter(|s| !Topology::is_link(s.session)).count()
    }

    /// Memory held by every track's groups, and how many groups (walks every track).
    pub fn cache_usage(&self) -> (usize, usize) {
        let usage = self.tracks.iter().map(|(_, t)| t.cache_usage());
        usage.fold((0, 0), |(b, g), (tb, tg)| (b + tb, g + tg))
    }

    /// Replaces `out` with the broadcasts whose active publisher is one of this shard's
    /// sessions (not another shard), sorted.
    pub fn local_broadcasts(&self, out: &mut Vec<String>) {
        out.clear();
        let local = self.broadcasts.iter().filter(|(path, b)| {
            b.active(path)
                .is_some_and(|r| !Topology::is_link(r.session))
        });
        out.extend(local.map(|(path, _)| path.clone()));
        out.sort_unstable();
    }

    /// Number of tracks with state (upstream subscription or waiting requests).
    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    /// Acts on one event of session `key`.
    pub fn handle<S: Sessions>(&mut self, key: SessionKey, event: Event, sessions: &mut S) {
        match event {
            Event::Ready => {
                self.peers.insert(key, Peer::default());
                let root = sessions.root(key);
                sessions.request_announces(key, &root);
            }
            Event::AnnounceInterest { stream, prefix } => self.watch(key, stream, prefix, sessions),
            Event::Announced {
                path, hops, active, ..
            } => {
                tracing::debug!(session = key, %path, ?hops, active, "announcement received");
                if active {
                    self.publish(key, path, hops, sessions);
                } else {
                    self.unpublish(key, &path, sessions);
                }
            }
            Event::AnnouncesEnded { .. } => self.unpublish_all(key, false, sessions),
            Event::TrackRequest {
                stream,
                broadcast,
                track,
            } => self.track_request(key, stream, &broadcast, &track, sessions),
            Event::Subscribe { stream, request } => self.subscribe(key, stream, request, sessions),
            Event::Fetch { stream, request } => self.fetch(key, stream, request, sessions),
            Event::Fetched { token, result } => {
                if let Some((session, stream)) = self.fetches.try_remove(token) {
                    match result {
                        Ok(frames) => sessions.reply_fetch(session, stream, &frames),
                        Err(code) => sessions.reject(session, stream, code),
                    }
                }
            }
            Event::RequestCancelled { stream } => self.cancel(key, stream, sessions),
            Event::TrackInfo { token, info } => self.track_info(key, token, info, sessions),
            Event::SubscribeAccepted { token, start } => {
                tracing::debug!(token, ?start, "upstream subscription accepted");
                if let Some(track) = upstream_track(&mut self.tracks, key, token) {
                    track.accepted(start, sessions);
                }
            }
            Event::SubscribeEnd { token, group } => {
                tracing::debug!(token, group, "upstream track ends");
                if let Some(track) = upstream_track(&mut self.tracks, key, token) {
                    track.set_end(group, sessions);
                }
            }
            Event::SubscriptionClosed { token, error } => {
                tracing::debug!(token, ?error, "upstream subscription closed");
                match upstream_track(&mut self.tracks, key, token) {
                    // A clean end waits for the groups still arriving, and for those of
                    // the announced range not opened yet (at most END_WAIT).
                    Some(track)
                        if error.is_none()
                            && (track.has_open_groups() || track.awaits_groups()) =>
                    {
                        track.closing = true;
                        if let Some(now) = self.now {
                            self.ending.push((now + END_WAIT, token));
                        }
                    }
                    Some(_) => self.end_track(token, error, sessions),
                    None => {}
                }
            }
            Event::Group {
                token, sequence, ..
            } => {
                if let Some(track) = upstream_track(&mut self.tracks, key, token) {
                    let dropped = track.start_group(sequence, &self.config, self.now, sessions);
                    self.stats.groups += 1;
                    self.stats.dropped_groups += dropped;
                    self.stats.publisher_groups += u64::from(!Topology::is_link(key));
                }
            }
            Event::Frame {
                token,
                sequence,
                frame,
            } => {
                if let Some(track) = upstream_track(&mut self.tracks, key, token) {
                    if !Topology::is_link(key) {
                        self.stats.publisher_frames += 1;
                        self.stats.publisher_bytes += frame.payload().len() as u64;
                    }
                    track.push_frame(sequence, frame, sessions);
                    self.stats.frames += 1;
                }
            }
            Event::GroupEnd {
                token,
                sequence,
                error,
            } => {
                if let Some(track) = upstream_track(&mut self.tracks, key, token) {
                    track.end_group(sequence, error, &self.config, self.now, sessions);
                    if track.closing && !track.has_open_groups() && !track.awaits_groups() {
                        self.end_track(token, None, sessions);
                    }
                }
            }
            Event::Closed => self.remove_session(key, sessions),
            // Only client sessions hear GOAWAY; a relay's sessions are servers.
            Event::GoAway { .. } => {}
        }
    }

    /// Answers a FETCH from the track's cache here, else from its owner shard's.
    fn fetch<S: Sessions>(
        &mut self,
        key: SessionKey,
        stream: u64,
        request: crate::wire::Fetch,
        sessions: &mut S,
    ) {
        let answer = self
            .broadcasts
            .get(&request.broadcast)
            .and_then(|b| b.find(&request.track))
            .and_then(|idx| self.tracks.get(idx))
            .map_or(Err(ErrorCode::NotFound), |t| t.cached_group(request.group));
        let code = match answer {
            Ok(frames) => return sessions.reply_fetch(key, stream, frames),
            Err(code) => code,
        };
        let owner = self.topology.owner(&request.broadcast, &request.track);
        if Topology::is_link(key) || owner == self.topology.shard {
            return sessions.reject(key, stream, code);
        }
        // A mirror holds only what passed since it was made; the owner's cache is the
        // track's.
        let token = self.fetches.insert((key, stream));
        if sessions
            .fetch(Topology::link(owner), &request, token)
            .is_none()
        {
            self.fetches.remove(token);
            sessions.reject(key, stream, code);
        }
    }

    fn track_request<S: Sessions>(
        &mut self,
        key: SessionKey,
        stream: u64,
        broadcast: &str,
        name: &str,
        sessions: &mut S,
    ) {
        tracing::debug!(session = key, %broadcast, track = %name, "track request");
        let Some(idx) = self.track_index(broadcast, name, key) else {
            sessions.reject(key, stream, ErrorCode::NotFound);
            return;
        };
        let track = &mut self.tracks[idx];
        if let Some(info) = &track.info {
            sessions.reply_track(key, stream, info);
            return;
        }
        if track.finished {
            sessions.reply_track(key, stream, &default_info());
            return;
        }
        track.info_waiters.push((key, stream));
        if track.info_requested {
            return;
        }
        track.info_requested = true;
        let publisher = track.publisher;
        if sessions
            .request_track(publisher, broadcast, name, idx)
            .is_none()
        {
            // The publisher's version has no track properties: answer with defaults.
            self.track_info(publisher, idx, default_info(), sessions);
        }
    }

    fn track_info<S: Sessions>(
        &mut self,
        key: SessionKey,
        token: usize,
        info: TrackInfo,
        sessions: &mut S,
    ) {
        let Some(track) = self.tracks.get_mut(token).filter(|t| t.publisher == key) else {
            return;
        };
        tracing::debug!(broadcast = %track.broadcast, track = %track.name, ?info, "track info");
        for (session, stream) in track.info_waiters.drain(..) {
            sessions.reply_track(session, stream, &info);
        }
        track.info = Some(info);
        self.drop_if_unused(token, sessions);
    }

    fn subscribe<S: Sessions>(
        &mut self,
        key: SessionKey,
        stream: u64,
        request: Subscribe,
        sessions: &mut S,
    ) {
        tracing::debug!(session = key, stream, ?request, "subscribe");
        let lingering = self.broadcasts.get(&request.broadcast).is_some_and(|b| {
            b.find(&request.track).is_none()
                && b.active(&request.broadcast)
                    .is_some_and(|r| r.lingers_until.is_some())
        });
        if lingering {
            tracing::debug!(broadcast = %request.broadcast, "subscription waits for the lingering broadcast's publisher");
            self.waiting.push(Waiting {
                key,
                stream,
                request,
                until: None,
            });
            return;
        }
        if Topology::is_link(key) && !self.broadcasts.contains_key(&request.broadcast) {
            if let Some(now) = self.now {
                tracing::debug!(broadcast = %request.broadcast, "subscription from another shard waits for the announcement");
                self.waiting.push(Waiting {
                    key,
                    stream,
                    request,
                    until: Some(now + ANNOUNCE_IN_FLIGHT),
                });
                return;
            }
        }
        let Some(idx) = self.track_index(&request.broadcast, &request.track, key) else {
            tracing::debug!(broadcast = %request.broadcast, track = %request.track, "subscribe to unknown broadcast");
            sessions.reject(key, stream, ErrorCode::NotFound);
            return;
        };
        self.stats.downstream_subscribes += 1;
        let track = &mut self.tracks[idx];
        if track.finished {
            sessions.subscribe_ok(key, stream, request.priority);
            let sub = Downstream::new(key, stream, request.start_group).until(request.end_group);
            track.serve_finished(sub, sessions);
            return;
        }
        if track.upstream.is_none() {
            let publisher = track.publisher;
            match sessions.subscribe(publisher, &request, idx) {
                Some(up) => {
                    track.upstream = Some(up);
                    track.upstream_options = Some(options_of(&request));
                    count_upstream(
                        &mut self.stats,
                        publisher,
                        &request.broadcast,
                        &request.track,
                    );
                }
                None => {
                    sessions.reject(key, stream, ErrorCode::NotFound);
                    self.drop_if_unused(idx, sessions);
                    return;
                }
            }
        }
        sessions.subscribe_ok(key, stream, request.priority);
        let sub = Downstream::new(key, stream, request.start_group).until(request.end_group);
        track.add_subscriber(sub, sessions);
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.downstream.insert(stream, idx);
        }
    }

    /// Answers the subscriptions waiting for `broadcast` once it is announced, or served
    /// again after a linger, or refuses them once it is not even lingering.
    fn settle_waiting<S: Sessions>(&mut self, broadcast: &str, sessions: &mut S) {
        if !self
            .waiting
            .iter()
            .any(|w| w.request.broadcast == broadcast)
        {
            return;
        }
        let lingering = self
            .broadcasts
            .get(broadcast)
            .and_then(|b| b.active(broadcast))
            .is_some_and(|r| r.lingers_until.is_some());
        // One not heard of before goes on even so: it waits for the linger if there is one.
        let (due, keep) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| w.request.broadcast == broadcast && (w.until.is_some() || !lingering));
        self.waiting = keep;
        for w in due {
            self.subscribe(w.key, w.stream, w.request, sessions);
        }
    }

    /// The session cancelled a request stream: a subscription or an announce interest.
    fn cancel<S: Sessions>(&mut self, key: SessionKey, stream: u64, sessions: &mut S) {
        self.waiting
            .retain(|w| !(w.key == key && w.stream == stream));
        self.watchers
            .retain(|w| !(w.session == key && w.stream == stream));
        let Some(idx) = self
            .peers
            .get_mut(&key)
            .and_then(|p| p.downstream.remove(&stream))
        else {
            return;
        };
        if let Some(track) = self.tracks.get_mut(idx) {
            track.remove_subscriber(key, stream);
        }
        self.drop_if_unused(idx, sessions);
    }

    /// Gets or creates the track state of an announced broadcast for a request from
    /// session `from`. On the track's owner shard, and for requests arriving from other
    /// shards, the track is served from the publisher (a local session or the link to the
    /// publisher's shard); elsewhere it is a mirror fed by the owner.
    fn track_index(&mut self, broadcast: &str, name: &str, from: SessionKey) -> Option<usize> {
        let mirror = !Topology::is_link(from) && !self.topology.owns(broadcast, name);
        let owner = Topology::link(self.topology.owner(broadcast, name));
        let b = self.broadcasts.get_mut(broadcast)?;
        let publisher = b.serving(broadcast);
        let map = if mirror {
            &mut b.mirrors
        } else {
            &mut b.tracks
        };
        if let Some(&idx) = map.get(name) {
            return Some(idx);
        }
        let publisher = publisher?;
        let upstream = if mirror { owner } else { publisher };
        let idx = self.tracks.insert(Track::new(
            broadcast.to_string(),
            name.to_string(),
            upstream,
        ));
        map.insert(name.to_string(), idx);
        Some(idx)
    }

    /// Forgets a track nobody needs any more, cancelling its upstream subscription.
    fn drop_if_unused<S: Sessions>(&mut self, idx: usize, sessions: &mut S) {
        let Some(track) = self.tracks.get(idx) else {
            return;
        };
        if track.finished
            || track.eager
            || !track.subscribers.is_empty()
            || !track.info_waiters.is_empty()
        {
            return;
        }
        let track = self.tracks.remove(idx);
        if let Some(up) = track.upstream {
            sessions.unsubscribe(track.publisher, up);
        }
        if let Some(b) = self.broadcasts.get_mut(&track.broadcast) {
            b.forget(&track.name, idx);
        }
    }

    /// Ends a track for all its subscribers (see [`Relay::end_track_only`]), then applies
    /// the unannouncements that waited for it.
    fn end_track<S: Sessions>(&mut self, idx: usize, error: Option<u64>, sessions: &mut S) {
        self.end_track_only(idx, error, sessions);
        if !self.held_unannounces.is_empty() {
            self.release_unannounces(|_| false, sessions);
        }
    }

    /// Ends a track for all its subscribers. A clean end (`error: None`) keeps the track,
    /// finished, so later requests are answered from its cached last group; an error
    /// forgets it.
    fn end_track_only<S: Sessions>(&mut self, idx: usize, error: Option<u64>, sessions: &mut S) {
        let Some(track) = self.tracks.get_mut(idx) else {
            return;
        };
        let final_group = track.final_group();
        for sub in track.subscribers.drain(..) {
            if let Some(peer) = self.peers.get_mut(&sub.session) {
                peer.downstream.remove(&sub.stream);
            }
            sub.end(error, final_group, sessions);
        }
        if let Some(up) = track.upstream.take() {
            sessions.unsubscribe(track.publisher, up);
        }
        if error.is_none() {
            track.finish();
            if let Some(now) = self.now {
                self.expiring.push((now + self.config.linger, idx));
            }
            let info = track.info.clone().unwrap_or_else(default_info);
            for (session, stream) in track.info_waiters.drain(..) {
                sessions.reply_track(session, stream, &info);
            }
            return;
        }
        let mut track = self.tracks.remove(idx);
        if let Some(b) = self.broadcasts.get_mut(&track.broadcast) {
            b.forget(&track.name, idx);
        }
        for (session, stream) in track.info_waiters.drain(..) {
            sessions.reject(session, stream, ErrorCode::NotFound);
        }
    }

    fn remove_session<S: Sessions>(&mut self, key: SessionKey, sessions: &mut S) {
        self.watchers.retain(|w| w.session != key);
        self.waiting.retain(|w| w.key != key);
        if sessions.left_abruptly(key) {
            self.linger_all(key, sessions);
        } else {
            self.unpublish_all(key, true, sessions);
        }
        if let Some(peer) = self.peers.remove(&key) {
            for (stream, idx) in peer.downstream {
                if let Some(track) = self.tracks.get_mut(idx) {
                    track.remove_subscriber(key, stream);
                }
                self.drop_if_unused(idx, sessions);
            }
        }
    }
}

/// Whether a hop chain came straight from its publisher: at most the publisher's own id
/// (lite-04/05 clients put theirs; lite-03 and some clients none), no relay between.
fn is_direct(hops: &[u64]) -> bool {
    hops.len() <= 1
}

/// FNV-1a over a broadcast path and its hop chain: breaks ties between routes of the same
/// length the same way on every relay.
fn route_hash(path: &str, hops: &[u64]) -> u64 {
    const PRIME: u64 = 0x100_0000_01b3;
    let bytes = path
        .bytes()
        .chain(hops.iter().flat_map(|h| h.to_le_bytes()));
    bytes.fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

/// Counts an upstream subscription just made to `upstream`.
fn count_upstream(stats: &mut RelayStats, upstream: SessionKey, broadcast: &str, track: &str) {
    stats.upstream_subscribes += 1;
    match Topology::link_shard(upstream) {
        Some(shard) => {
            tracing::debug!(%broadcast, %track, shard, "upstream subscribe via shard");
        }
        None => {
            stats.publisher_subscribes += 1;
            tracing::info!(%broadcast, %track, session = upstream, "subscribing to the publisher");
        }
    }
}

/// The track of an upstream subscription event, if `key` still publishes it.
fn upstream_track(tracks: &mut Slab<Track>, key: SessionKey, token: usize) -> Option<&mut Track> {
    tracks
        .get_mut(token)
        .filter(|t| t.publisher == key && t.upstream.is_some())
}

/// What a subscription asks for, kept to ask a new route alike.
fn options_of(request: &Subscribe) -> crate::wire::SubscribeOptions {
    crate::wire::SubscribeOptions {
        priority: request.priority,
        ordered: request.ordered,
        max_latency: request.max_latency,
        start_group: request.start_group,
        end_group: request.end_group,
    }
}

/// Whether `new` carries the same broadcast as `old` over other relays: both came through
/// relays (not straight from a publisher) from the same origin, so their groups are the
/// same and a track can move from one to the other without its subscribers noticing. An
/// origin of 0 (lite-03 chains carry no ids) proves nothing.
fn continues(old: &Route, new: &Route) -> bool {
    let origin = old.hops.first().filter(|&&o| o != 0);
    !is_direct(&old.hops) && !is_direct(&new.hops) && origin.is_some() && origin == new.hops.first()
}

/// Track properties for a publisher whose version does not carry them (lite-03/04).
fn default_info() -> TrackInfo {
    TrackInfo {
        priority: 0,
        ordered: false,
        max_latency: crate::wire::DEFAULT_MAX_LATENCY,
        timescale: crate::wire::DEFAULT_TIMESCALE,
    }
}

#[cfg(test)]
mod tests;
