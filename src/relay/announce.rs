//! Announcements: which broadcasts are active, who publishes them, who wants to hear of them.

use std::time::Instant;

use super::{continues, Broadcast, Relay, Route, SessionKey, Sessions, Topology, Watcher};
use crate::session::path;
use crate::wire::{ErrorCode, Subscribe, DEFAULT_MAX_LATENCY};

impl Relay {
    /// Session `key` wants announcements under `prefix` on `stream`.
    pub(super) fn watch<S: Sessions>(
        &mut self,
        key: SessionKey,
        stream: u64,
        prefix: String,
        sessions: &mut S,
    ) {
        let initial: Vec<(&str, &[u64])> = self
            .broadcasts
            .iter()
            .filter(|(p, _)| path::strip(p, &prefix).is_some())
            .filter_map(|(p, b)| {
                let route = b.active(p)?;
                forwards(route.session, key).then_some((p.as_str(), route.hops.as_slice()))
            })
            .collect();
        tracing::debug!(session = key, %prefix, active = initial.len(), "announce interest");
        sessions.reply_announces(key, stream, &initial);
        self.watchers.push(Watcher {
            session: key,
            stream,
            prefix,
        });
    }

    /// Tells every interested session (but the publisher) about a broadcast.
    fn notify<S: Sessions>(
        &self,
        broadcast: &str,
        publisher: SessionKey,
        hops: &[u64],
        active: bool,
        sessions: &mut S,
    ) {
        for w in &self.watchers {
            if forwards(publisher, w.session) && path::strip(broadcast, &w.prefix).is_some() {
                sessions.announce(w.session, w.stream, broadcast, hops, active);
            }
        }
    }

    /// Session `key` announced `broadcast` on a route through `hops`. An end of it still
    /// held is told first. Announcements that passed through this relay, or through more
    /// than `max_hops` relays, are dropped (loops in a cluster). When the route in use
    /// changes (a shorter one, or a re-publish over the same chain: see
    /// [`Broadcast::active`]), the tracks of the old one end and watchers see the
    /// broadcast re-announced; a route that only lingered (its session left abruptly) is
    /// replaced without a word when the new one has the same chain.
    pub(super) fn publish<S: Sessions>(
        &mut self,
        key: SessionKey,
        broadcast: String,
        hops: Vec<u64>,
        sessions: &mut S,
    ) {
        if hops.contains(&self.config.origin) {
            tracing::debug!(%broadcast, ?hops, session = key, "announcement looped back to us, dropped");
            return;
        }
        if hops.len() > self.config.max_hops {
            tracing::debug!(%broadcast, hops = hops.len(), session = key, "announcement over --cluster-max-hops, dropped");
            return;
        }
        if self
            .held_unannounces
            .iter()
            .any(|u| u.broadcast == broadcast)
        {
            self.release_unannounces(|u| u.broadcast == broadcast, sessions);
        }
        if self
            .broadcasts
            .get(&broadcast)
            .is_some_and(|b| b.publishers.is_empty())
        {
            // Published again while the last publisher's tracks linger: start afresh.
            self.forget_broadcast(&broadcast, sessions);
        }
        let entry = self
            .broadcasts
            .entry(broadcast.clone())
            .or_insert_with(Broadcast::new);
        let before = entry.active(&broadcast).cloned();
        // A new route replaces lingering ones (whose session keys may be reused by now).
        entry.publishers.retain(|r| r.lingers_until.is_none());
        match entry.publishers.iter_mut().find(|r| r.session == key) {
            Some(route) if route.hops == hops => return,
            // A restart over another chain (lite-05).
            Some(route) => route.hops = hops,
            None => entry.publishers.push(Route {
                session: key,
                hops,
                lingers_until: None,
            }),
        }
        let after = entry.settle(&broadcast).expect("a route was added");
        match Topology::link_shard(key) {
            Some(shard) => {
                tracing::debug!(%broadcast, shard, "broadcast announced by another shard")
            }
            None => {
                tracing::info!(%broadcast, session = key, hops = ?after.hops, "broadcast announced")
            }
        }
        match before {
            Some(old) if old.session == after.session && old.hops == after.hops => return,
            // The publisher came back (over the same chain) before its linger ran out.
            Some(old) if old.lingers_until.is_some() && old.hops == after.hops => {}
            // The same broadcast over another way: its tracks follow, unbroken.
            Some(old) if old.lingers_until.is_none() && continues(&old, &after) => {
                self.rehome_tracks(&broadcast, after.session, sessions);
                let (from, to) = (
                    (old.session, &old.hops[..]),
                    (after.session, &after.hops[..]),
                );
                self.notify_change(&broadcast, from, to, sessions);
            }
            Some(old) => {
                // The old publisher lives on: tracks ending cleanly finish in order.
                let spare = match old.lingers_until {
                    Some(_) => Spare::Nothing,
                    None => Spare::Closing,
                };
                self.end_broadcast_tracks(&broadcast, spare, sessions);
                self.detach_tracks(&broadcast);
                self.notify(&broadcast, old.session, &old.hops, false, sessions);
                self.notify(&broadcast, after.session, &after.hops, true, sessions);
            }
            None => self.notify(&broadcast, after.session, &after.hops, true, sessions),
        }
        self.subscribe_eagerly(&broadcast, sessions);
        self.settle_waiting(&broadcast, sessions);
    }

    /// Subscribes upstream to the tracks eager rules name for `broadcast` (on the shard
    /// that owns each track).
    fn subscribe_eagerly<S: Sessions>(&mut self, broadcast: &str, sessions: &mut S) {
        let tracks: Vec<String> = self
            .config
            .eager
            .iter()
            .filter(|rule| rule.matches(broadcast))
            .flat_map(|rule| rule.tracks.iter().cloned())
            .filter(|name| self.topology.owns(broadcast, name))
            .collect();
        for name in tracks {
            let publisher = self
                .broadcasts
                .get(broadcast)
                .and_then(|b| b.serving(broadcast));
            // As if the publisher asked: served from the publisher, never mirrored.
            let Some(idx) = publisher.and_then(|p| self.track_index(broadcast, &name, p)) else {
                continue;
            };
            let track = &mut self.tracks[idx];
            track.eager = true;
            if track.upstream.is_some() {
                continue;
            }
            let request = Subscribe {
                id: 0,
                broadcast: broadcast.to_string(),
                track: name.clone(),
                priority: 0,
                ordered: false,
                max_latency: DEFAULT_MAX_LATENCY,
                start_group: None,
                end_group: None,
            };
            let upstream = track.publisher;
            if let Some(up) = sessions.subscribe(upstream, &request, idx) {
                track.upstream = Some(up);
                track.upstream_options = Some(super::options_of(&request));
                tracing::debug!(%broadcast, track = %name, "eager upstream subscribe");
                super::count_upstream(&mut self.stats, upstream, broadcast, &name);
            }
        }
    }

    /// Session `key` no longer publishes `broadcast` (it said so: its session lives on).
    pub(super) fn unpublish<S: Sessions>(
        &mut self,
        key: SessionKey,
        broadcast: &str,
        sessions: &mut S,
    ) {
        self.retract(key, broadcast, false, sessions);
    }

    /// Session `key` no longer publishes `broadcast`; `gone`: the session itself is gone,
    /// so its tracks ending cleanly cannot finish either.
    fn retract<S: Sessions>(
        &mut self,
        key: SessionKey,
        broadcast: &str,
        gone: bool,
        sessions: &mut S,
    ) {
        let Some(entry) = self.broadcasts.get_mut(broadcast) else {
            return;
        };
        let Some(pos) = entry.publishers.iter().position(|r| r.session == key) else {
            return;
        };
        let before = entry.active(broadcast).cloned();
        let route = entry.publishers.remove(pos);
        if before.as_ref() != Some(&route) {
            // A route not in use went away.
            return;
        }
        let next = entry.settle(broadcast);
        match Topology::link_shard(key) {
            Some(shard) => tracing::debug!(%broadcast, shard, "broadcast ended on another shard"),
            None => tracing::info!(%broadcast, session = key, "broadcast ended"),
        }
        let rehome = next
            .as_ref()
            .filter(|n| n.lingers_until.is_none() && continues(&route, n));
        if let Some(next) = rehome {
            // The same broadcast over another way: its tracks follow, unbroken.
            self.rehome_tracks(broadcast, next.session, sessions);
        } else {
            // A publisher that unannounced lives on: with nobody to take over, its
            // subscriptions end on their own (a publisher may say the broadcast is over
            // before its tracks' last groups are out, as moq-relay does), or with the
            // broadcast when its linger ends. One that is gone takes its tracks along,
            // finished ones lingering if nobody takes over. What is left of them when
            // another publisher takes over is theirs alone: new requests go to the new one.
            let spare = match (gone, next.is_some()) {
                (false, false) => Spare::Live,
                (false, true) => Spare::Closing,
                (true, false) => Spare::Finished,
                (true, true) => Spare::Nothing,
            };
            self.end_broadcast_tracks(broadcast, spare, sessions);
            if next.is_some() {
                self.detach_tracks(broadcast);
            }
        }
        let change = Unannounce {
            broadcast: broadcast.to_string(),
            publisher: key,
            continued: rehome.is_some(),
            hops: route.hops,
            next: next.map(|r| (r.session, r.hops)),
            until: self.now.map(|now| now + self.config.linger),
        };
        if self.has_live_mirrors(broadcast) {
            // Subscribers here read the end of a mirrored track from its owner shard,
            // which hears of this on another path: tell of the end once they have.
            self.held_unannounces.push(change);
        } else {
            self.tell_unannounce(change, sessions);
        }
    }

    /// Session `key` left abruptly (timed out, or closed with an error): the broadcasts
    /// it alone carried stay announced for `route_linger`, their tracks ended, so a
    /// publisher that reconnects at once does not ripple through a cluster. Its other
    /// routes go now.
    pub(super) fn linger_all<S: Sessions>(&mut self, key: SessionKey, sessions: &mut S) {
        let Some(until) = self
            .now
            .filter(|_| !self.config.route_linger.is_zero())
            .map(|now| now + self.config.route_linger)
        else {
            return self.unpublish_all(key, true, sessions);
        };
        for broadcast in self.published_by(key) {
            let Some(entry) = self.broadcasts.get_mut(&broadcast) else {
                continue;
            };
            let alone = entry.publishers.len() == 1;
            if !alone {
                self.retract(key, &broadcast, true, sessions);
                continue;
            }
            entry.publishers[0].lingers_until = Some(until);
            // Its key goes to the next session to connect; the route is nobody's now.
            entry.publishers[0].session = super::topology::GONE;
            entry.current = Some(super::topology::GONE);
            tracing::info!(%broadcast, session = key, "publisher left abruptly: broadcast stays announced for the linger");
            self.end_broadcast_tracks(&broadcast, Spare::Finished, sessions);
        }
    }

    /// Ends the routes whose linger has passed.
    pub(super) fn expire_lingering<S: Sessions>(&mut self, now: Instant, sessions: &mut S) {
        let due: Vec<(String, SessionKey)> = self
            .broadcasts
            .iter()
            .flat_map(|(p, b)| {
                b.publishers
                    .iter()
                    .filter(|r| r.lingers_until.is_some_and(|t| t <= now))
                    .map(move |r| (p.clone(), r.session))
            })
            .collect();
        for (broadcast, key) in due {
            self.retract(key, &broadcast, true, sessions);
            self.settle_waiting(&broadcast, sessions);
        }
    }

    /// When the first lingering route expires.
    pub(super) fn next_linger(&self) -> Option<Instant> {
        let routes = self.broadcasts.values().flat_map(|b| &b.publishers);
        routes.filter_map(|r| r.lingers_until).min()
    }

    /// Tells watchers a broadcast ended (and of its next publisher, if one took over).
    fn tell_unannounce<S: Sessions>(&mut self, change: Unannounce, sessions: &mut S) {
        let broadcast = &change.broadcast;
        match change.next {
            Some((session, hops)) if change.continued => {
                let old = (change.publisher, change.hops.as_slice());
                self.notify_change(broadcast, old, (session, &hops), sessions);
            }
            Some((s, h)) => {
                self.notify(broadcast, change.publisher, &change.hops, false, sessions);
                self.notify(broadcast, s, &h, true, sessions);
            }
            None => {
                self.notify(broadcast, change.publisher, &change.hops, false, sessions);
                self.depart(broadcast, sessions);
            }
        }
    }

    /// Tells watchers that `broadcast` goes on over another route (same origin): a peer
    /// whose version can restart an announcement hears of the new chain alone.
    fn notify_change<S: Sessions>(
        &self,
        broadcast: &str,
        (old, old_hops): (SessionKey, &[u64]),
        (new, new_hops): (SessionKey, &[u64]),
        sessions: &mut S,
    ) {
        for w in &self.watchers {
            if path::strip(broadcast, &w.prefix).is_none() {
                continue;
            }
            let (s, stream) = (w.session, w.stream);
            match (forwards(old, s), forwards(new, s)) {
                (true, true) => sessions.reannounce(s, stream, broadcast, old_hops, new_hops),
                (true, false) => sessions.announce(s, stream, broadcast, old_hops, false),
                (false, true) => sessions.announce(s, stream, broadcast, new_hops, true),
                (false, false) => {}
            }
        }
    }

    /// Moves the live tracks of `broadcast` served here to the route through session `to`
    /// (see [`super::Track::rehome`]); tracks ending or finished stay as they are.
    fn rehome_tracks<S: Sessions>(&mut self, broadcast: &str, to: SessionKey, sessions: &mut S) {
        for idx in self.served_tracks(broadcast) {
            let Some(track) = self.tracks.get_mut(idx) else {
                continue;
            };
            if track.finished || track.closing || track.publisher == to {
                continue;
            }
            let name = track.name.clone();
            let awaits_info = track.info_requested && track.info.is_none();
            tracing::debug!(%broadcast, track = %name, session = to, "track moves to another route");
            if let Some(request) = track.rehome(to, sessions) {
                let Some(up) = sessions.subscribe(to, &request, idx) else {
                    self.end_track(idx, Some(ErrorCode::Cancel.code()), sessions);
                    continue;
                };
                track.upstream = Some(up);
                super::count_upstream(&mut self.stats, to, broadcast, &name);
            }
            if awaits_info && sessions.request_track(to, broadcast, &name, idx).is_none() {
                self.track_info(to, idx, super::default_info(), sessions);
            }
        }
    }

    /// The tracks of `broadcast` served from its publisher here (not mirrors).
    fn served_tracks(&self, broadcast: &str) -> Vec<usize> {
        let entry = self.broadcasts.get(broadcast);
        entry.map_or_else(Vec::new, |b| b.tracks.values().copied().collect())
    }

    /// Takes what is left of a broadcast's tracks out of its maps (they serve their
    /// subscribers until they end): requests from now on start afresh with the publisher
    /// that took over. Live mirrors stay, ended in order by their owner shards.
    fn detach_tracks(&mut self, broadcast: &str) {
        let Some(entry) = self.broadcasts.get_mut(broadcast) else {
            return;
        };
        entry.tracks.clear();
        let tracks = &self.tracks;
        entry
            .mirrors
            .retain(|_, idx| tracks.get(*idx).is_some_and(|t| !t.finished));
    }

    /// Whether this shard has a mirror of `broadcast`'s tracks still fed by its owner.
    fn has_live_mirrors(&self, broadcast: &str) -> bool {
        self.broadcasts.get(broadcast).is_some_and(|b| {
            b.mirrors
                .values()
                .any(|&idx| self.tracks.get(idx).is_some_and(|t| !t.finished))
        })
    }

    /// Tells the held ends of broadcasts that `due` selects or whose mirrors have ended.
    pub(super) fn release_unannounces<S: Sessions>(
        &mut self,
        due: impl Fn(&Unannounce) -> bool,
        sessions: &mut S,
    ) {
        let mut i = 0;
        while i < self.held_unannounces.len() {
            let held = &self.held_unannounces[i];
            if due(held) || !self.has_live_mirrors(&held.broadcast) {
                let change = self.held_unannounces.remove(i);
                self.tell_unannounce(change, sessions);
                // Telling may have released others: look again from the start.
                i = 0;
                continue;
            }
            i += 1;
        }
    }

    /// The last publisher left: keep the broadcast's finished tracks for the linger.
    fn depart<S: Sessions>(&mut self, broadcast: &str, sessions: &mut S) {
        let has_tracks = self
            .broadcasts
            .get(broadcast)
            .is_some_and(|b| !b.tracks.is_empty() || !b.mirrors.is_empty());
        match self.now {
            Some(now) if has_tracks => {
                let until = now + self.config.linger;
                self.departed.push((until, broadcast.to_string()));
            }
            _ => self.forget_broadcast(broadcast, sessions),
        }
    }

    /// The broadcasts session `key` has a route for.
    fn published_by(&self, key: SessionKey) -> Vec<String> {
        let routes = self.broadcasts.iter();
        routes
            .filter(|(_, b)| b.publishers.iter().any(|r| r.session == key))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Unannounces everything session `key` published; `gone`: the session is gone.
    pub(super) fn unpublish_all<S: Sessions>(
        &mut self,
        key: SessionKey,
        gone: bool,
        sessions: &mut S,
    ) {
        for broadcast in self.published_by(key) {
            self.retract(key, &broadcast, gone, sessions);
        }
    }

    /// Ends the tracks of a broadcast whose publisher changed or left, but those `spare`
    /// keeps. Mirrors of other shards' tracks are left to their owners, which hear of the
    /// change too and end them in order after their last groups.
    fn end_broadcast_tracks<S: Sessions>(
        &mut self,
        broadcast: &str,
        spare: Spare,
        sessions: &mut S,
    ) {
        for idx in self.served_tracks(broadcast) {
            let Some(track) = self.tracks.get(idx) else {
                continue;
            };
            let spared = match spare {
                Spare::Finished => track.finished,
                Spare::Closing => track.finished || track.closing,
                Spare::Live => true,
                Spare::Nothing => false,
            };
            if !spared {
                self.end_track(idx, Some(ErrorCode::Cancel.code()), sessions);
            }
        }
    }
}

/// The end of a broadcast's announcement by `publisher`, held until this shard's mirrors of
/// it have ended (or `until`).
#[derive(Debug)]
pub(super) struct Unannounce {
    broadcast: String,
    publisher: SessionKey,
    /// The next publisher carries the same broadcast on (see [`continues`]).
    continued: bool,
    hops: Vec<u64>,
    /// The publisher that takes over, if any.
    next: Option<(SessionKey, Vec<u64>)>,
    pub(super) until: Option<std::time::Instant>,
}

/// Whether an announcement of `publisher`'s broadcast goes to session `to`: never back to
/// its publisher, and never from one shard's link to another (each shard tells the others
/// only of its own publishers, so no announcement circles between shards).
fn forwards(publisher: SessionKey, to: SessionKey) -> bool {
    publisher != to && !(Topology::is_link(publisher) && Topology::is_link(to))
}

/// Which tracks of a broadcast survive a change of its publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spare {
    Nothing,
    /// Finished tracks, served from their cache for the linger.
    Finished,
    /// Finished tracks and those ending cleanly (waiting for their last groups).
    Closing,
    /// Every track: the publisher lives on and ends them itself.
    Live,
}
