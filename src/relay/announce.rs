//! Announcements: which broadcasts are active, who publishes them, who wants to hear of them.

use super::{Broadcast, Relay, SessionKey, Sessions, Topology, Watcher};
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
                let (publisher, hops) = b.publishers.last()?;
                forwards(*publisher, key).then_some((p.as_str(), hops.as_slice()))
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

    /// Session `key` announced `broadcast`. An end of it still held is told first. A second
    /// publisher of the same path takes over:
    /// the tracks of the first end and subscribers see the broadcast re-announced.
    pub(super) fn publish<S: Sessions>(
        &mut self,
        key: SessionKey,
        broadcast: String,
        hops: Vec<u64>,
        sessions: &mut S,
    ) {
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
        if entry.publishers.iter().any(|(s, _)| *s == key) {
            return;
        }
        let previous = entry.publishers.last().map(|(s, h)| (*s, h.clone()));
        entry.publishers.push((key, hops.clone()));
        match Topology::link_shard(key) {
            Some(shard) => {
                tracing::debug!(%broadcast, shard, "broadcast announced by another shard")
            }
            None => tracing::info!(%broadcast, session = key, "broadcast announced"),
        }
        if let Some((old, old_hops)) = previous {
            self.end_broadcast_tracks(&broadcast, false, sessions);
            self.notify(&broadcast, old, &old_hops, false, sessions);
        }
        self.notify(&broadcast, key, &hops, true, sessions);
        self.subscribe_eagerly(&broadcast, sessions);
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
                .and_then(|b| b.publishers.last())
                .map(|(s, _)| *s);
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
                tracing::debug!(%broadcast, track = %name, "eager upstream subscribe");
                super::count_upstream(&mut self.stats, upstream, broadcast, &name);
            }
        }
    }

    /// Session `key` no longer publishes `broadcast`.
    pub(super) fn unpublish<S: Sessions>(
        &mut self,
        key: SessionKey,
        broadcast: &str,
        sessions: &mut S,
    ) {
        let Some(entry) = self.broadcasts.get_mut(broadcast) else {
            return;
        };
        let Some(pos) = entry.publishers.iter().position(|(s, _)| *s == key) else {
            return;
        };
        let was_active = pos + 1 == entry.publishers.len();
        let (_, hops) = entry.publishers.remove(pos);
        let next = entry.publishers.last().map(|(s, h)| (*s, h.clone()));
        if !was_active {
            return;
        }
        match Topology::link_shard(key) {
            Some(shard) => tracing::debug!(%broadcast, shard, "broadcast ended on another shard"),
            None => tracing::info!(%broadcast, session = key, "broadcast ended"),
        }
        let lingering = next.is_none();
        self.end_broadcast_tracks(broadcast, lingering, sessions);
        let change = Unannounce {
            broadcast: broadcast.to_string(),
            publisher: key,
            hops,
            next,
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

    /// Tells watchers a broadcast ended (and of its next publisher, if one took over).
    fn tell_unannounce<S: Sessions>(&mut self, change: Unannounce, sessions: &mut S) {
        let broadcast = &change.broadcast;
        self.notify(broadcast, change.publisher, &change.hops, false, sessions);
        match change.next {
            Some((s, h)) => self.notify(broadcast, s, &h, true, sessions),
            None => self.depart(broadcast, sessions),
        }
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

    /// Unannounces everything session `key` published.
    pub(super) fn unpublish_all<S: Sessions>(&mut self, key: SessionKey, sessions: &mut S) {
        let mine: Vec<String> = self
            .broadcasts
            .iter()
            .filter(|(_, b)| b.publishers.iter().any(|(s, _)| *s == key))
            .map(|(p, _)| p.clone())
            .collect();
        for broadcast in mine {
            self.unpublish(key, &broadcast, sessions);
        }
    }

    /// Ends every track of a broadcast whose publisher changed or left; finished tracks
    /// stay when `keep_finished`. Mirrors of other shards' tracks are left to their owners,
    /// which hear of the change too and end them in order after their last groups.
    fn end_broadcast_tracks<S: Sessions>(
        &mut self,
        broadcast: &str,
        keep_finished: bool,
        sessions: &mut S,
    ) {
        let Some(entry) = self.broadcasts.get(broadcast) else {
            return;
        };
        let tracks: Vec<usize> = entry.tracks.values().copied().collect();
        for idx in tracks {
            let finished = self.tracks.get(idx).is_some_and(|t| t.finished);
            if !(keep_finished && finished) {
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
