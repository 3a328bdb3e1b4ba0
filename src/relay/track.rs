//! One track at the relay: its upstream subscription, its open and latest groups, and the
//! fan-out of each group to every subscriber on a stream of its own.

use std::collections::VecDeque;
use std::time::Instant;

use smallvec::SmallVec;

use super::{CacheBudget, RelayConfig, SessionKey, Sessions};
use crate::session::Frame;
use crate::wire::{ErrorCode, Subscribe, SubscribeOptions, TrackInfo};

/// A group as the relay holds it: frames so far and how it ended.
#[derive(Debug)]
pub struct Group {
    pub sequence: u64,
    pub frames: Vec<Frame>,
    /// `None` while open upstream; `Some(None)` finished; `Some(Some(code))` reset.
    pub end: Option<Option<u64>>,
    /// Memory its frames keep alive (what it costs the cache; see `Frame::memory_cost`).
    bytes: usize,
    /// When it ended upstream (its age in the cache counts from there).
    ended_at: Option<Instant>,
    /// Frames a new upstream will send again before new ones (the track moved to another
    /// route while the group was open: the new route sends it from its first frame).
    resent: usize,
}

/// One subscriber of a track.
#[derive(Debug)]
pub struct Downstream {
    pub session: SessionKey,
    /// Its subscribe stream.
    pub stream: u64,
    started: bool,
    /// The first group it may get, announced with its first group (lite-05 SUBSCRIBE_START):
    /// what it asked for, else what upstream said, else that first group.
    start: Option<u64>,
    /// The last group it wants (SUBSCRIBE's end group, a cap on what is served).
    last: Option<u64>,
    /// Open group streams: (sequence, stream).
    groups: SmallVec<[(u64, u64); 2]>,
}

impl Downstream {
    pub fn new(session: SessionKey, stream: u64, start: Option<u64>) -> Self {
        Self {
            session,
            stream,
            started: false,
            start,
            last: None,
            groups: SmallVec::new(),
        }
    }

    /// Serves no group after `last`.
    pub fn until(mut self, last: Option<u64>) -> Self {
        self.last = last;
        self
    }

    /// Whether group `sequence` is within what it asked for.
    fn wants(&self, sequence: u64) -> bool {
        self.start.is_none_or(|start| sequence >= start)
            && self.last.is_none_or(|last| sequence <= last)
    }

    /// Opens `group` on this subscriber and sends what the relay has of it. `floor` is the
    /// first group upstream promised, if it said.
    fn open<S: Sessions>(&mut self, group: &Group, floor: Option<u64>, sessions: &mut S) {
        if !self.started {
            self.started = true;
            // Groups may arrive out of order: a start below the first one keeps the
            // subscriber from discarding older groups still on their way. Nothing below
            // the upstream's own start (`floor`) will come, whatever was asked for.
            let start = match (self.start, floor) {
                (Some(asked), Some(floor)) => Some(asked.max(floor)),
                (asked, floor) => asked.or(floor),
            };
            let start = start.map_or(group.sequence, |s| s.min(group.sequence));
            sessions.subscribe_start(self.session, self.stream, start);
        }
        let Some(id) = sessions.open_group(self.session, self.stream, group.sequence) else {
            return;
        };
        for frame in &group.frames {
            sessions.send_frame(self.session, id, frame);
        }
        match group.end {
            None => self.groups.push((group.sequence, id)),
            Some(None) => sessions.finish_group(self.session, id),
            Some(Some(code)) => sessions.reset_group(self.session, id, code),
        }
    }

    fn stream_of(&self, sequence: u64) -> Option<u64> {
        self.groups
            .iter()
            .find(|(seq, _)| *seq == sequence)
            .map(|(_, id)| *id)
    }

    /// Drops the oldest open groups while the session has too much queued. Returns how many.
    fn shed<S: Sessions>(&mut self, limit: usize, sessions: &mut S) -> u64 {
        let mut dropped = 0;
        while !self.groups.is_empty() && sessions.queued_bytes(self.session) > limit {
            let (sequence, id) = self.groups.remove(0);
            tracing::debug!(
                session = self.session,
                sequence,
                "slow subscriber: dropping group"
            );
            sessions.reset_group(self.session, id, ErrorCode::Lagged.code());
            dropped += 1;
        }
        dropped
    }

    /// Ends this subscription: open groups are reset on error, cut otherwise.
    pub fn end<S: Sessions>(self, error: Option<u64>, end_group: Option<u64>, sessions: &mut S) {
        let code = error.unwrap_or(ErrorCode::Cancel.code());
        for (_, id) in &self.groups {
            sessions.reset_group(self.session, *id, code);
        }
        if error.is_none() {
            if let Some(group) = end_group {
                sessions.subscribe_end(self.session, self.stream, group);
            }
        }
        sessions.end_subscription(self.session, self.stream, error);
    }
}

/// A track with state at the relay.
#[derive(Debug)]
pub struct Track {
    pub broadcast: String,
    pub name: String,
    /// The session publishing it (the upstream).
    pub publisher: SessionKey,
    /// Our subscribe stream on the publisher, once subscribed.
    pub upstream: Option<u64>,
    /// What the upstream subscription asked for (to ask a new route alike).
    pub upstream_options: Option<SubscribeOptions>,
    pub info: Option<TrackInfo>,
    pub info_requested: bool,
    /// Track requests waiting for the publisher's answer.
    pub info_waiters: SmallVec<[(SessionKey, u64); 1]>,
    /// Open groups and the latest one, oldest first.
    groups: VecDeque<Group>,
    pub subscribers: Vec<Downstream>,
    /// lite-05 SUBSCRIBE_END from upstream: the first group that will not exist.
    end: Option<u64>,
    /// lite-05 SUBSCRIBE_START from upstream: the first group it will send.
    pub upstream_start: Option<u64>,
    /// Upstream ended cleanly; the track ends once its open groups have.
    pub closing: bool,
    /// Ended cleanly: no upstream, answered from its last group.
    pub finished: bool,
    /// Subscribed on announce (an eager rule): kept without subscribers.
    pub eager: bool,
    /// Its cache budget, looked up in the relay's rules at its first group.
    budget: Option<CacheBudget>,
    /// Groups below this were evicted from the cache: they will not be served again.
    evicted_below: u64,
    /// Groups opened upstream at or above `upstream_start` (to tell whether a clean end
    /// still waits for some).
    groups_started: u64,
    /// The first group asked of the route the track last moved to: older ones it sends
    /// are not taken unless they complete a group held here.
    resume_floor: u64,
}

impl Track {
    pub fn new(broadcast: String, name: String, publisher: SessionKey) -> Self {
        Self {
            broadcast,
            name,
            publisher,
            upstream: None,
            upstream_options: None,
            info: None,
            info_requested: false,
            info_waiters: SmallVec::new(),
            groups: VecDeque::new(),
            subscribers: Vec::new(),
            end: None,
            upstream_start: None,
            closing: false,
            finished: false,
            eager: false,
            budget: None,
            evicted_below: 0,
            groups_started: 0,
            resume_floor: 0,
        }
    }

    /// What its groups hold: (memory their frames keep alive, groups), for metrics.
    pub fn cache_usage(&self) -> (usize, usize) {
        (self.groups.iter().map(|g| g.bytes).sum(), self.groups.len())
    }

    /// The end of the track as a group sequence, when known or implied by the groups seen.
    pub fn final_group(&self) -> Option<u64> {
        self.end
            .or_else(|| self.groups.back().map(|g| g.sequence.saturating_add(1)))
    }

    /// Marks the track ended cleanly, keeping its finished groups (within the cache budgets).
    pub fn finish(&mut self) {
        self.finished = true;
        self.closing = false;
        self.groups.retain(|g| g.end == Some(None));
    }

    /// Answers a subscription to a finished track: its last group, or every cached group
    /// from the start group it asked for (a client resuming a track whose end it read
    /// before its last groups), then the end.
    pub fn serve_finished<S: Sessions>(&self, mut sub: Downstream, sessions: &mut S) {
        let from = match sub.start {
            Some(start) => self.groups.partition_point(|g| g.sequence < start),
            None => self.groups.len().saturating_sub(1),
        };
        for group in self.groups.range(from..) {
            sub.open(group, None, sessions);
        }
        sub.end(None, self.final_group(), sessions);
    }

    /// A finished group's frames, for FETCH: `Evicted` when it is older than the cache,
    /// `NotFound` when it is unknown, still open, or was reset.
    pub fn cached_group(&self, sequence: u64) -> Result<&[Frame], ErrorCode> {
        match self.groups.iter().find(|g| g.sequence == sequence) {
            Some(group) if group.end == Some(None) => Ok(&group.frames),
            Some(_) => Err(ErrorCode::NotFound),
            None if self.groups.front().is_some_and(|g| sequence < g.sequence) => {
                Err(ErrorCode::Evicted)
            }
            None => Err(ErrorCode::NotFound),
        }
    }

    pub fn has_open_groups(&self) -> bool {
        self.groups.iter().any(|g| g.end.is_none())
    }

    /// Whether groups of the range the upstream announced (lite-05: from SUBSCRIBE_START
    /// to SUBSCRIBE_END) have not opened here yet: a clean end must wait for them.
    pub fn awaits_groups(&self) -> bool {
        match (self.upstream_start, self.end) {
            (Some(start), Some(end)) if end > start => self.groups_started < end - start,
            _ => false,
        }
    }

    /// A new subscriber starts at the latest group, from its first frame; one that asks for
    /// an older start gets every cached group from there on, in order.
    pub fn add_subscriber<S: Sessions>(&mut self, mut sub: Downstream, sessions: &mut S) {
        let from = match (sub.start, self.groups.back()) {
            (_, None) => None,
            (None, Some(_)) => Some(self.groups.len() - 1),
            // A start ahead of the newest group waits for it.
            (Some(start), Some(latest)) if start > latest.sequence => None,
            (Some(start), Some(_)) => self.groups.iter().position(|g| g.sequence >= start),
        };
        if let Some(from) = from {
            // A requested start stays: an older group may still be on its way (upstream
            // groups arrive in any order), and announcing the first cached group as the
            // start would make the subscriber discard it. Evicted groups will not come.
            sub.start = sub.start.map(|s| s.max(self.evicted_below));
            // A late joiner at the latest group starts there; one asking for an older
            // start gets no less than what the upstream itself starts at.
            let floor = sub.start.and(self.upstream_start);
            for group in self.groups.range(from..) {
                if sub.wants(group.sequence) {
                    sub.open(group, floor, sessions);
                }
            }
        }
        self.subscribers.push(sub);
    }

    pub fn remove_subscriber(&mut self, session: SessionKey, stream: u64) {
        self.subscribers
            .retain(|s| !(s.session == session && s.stream == stream));
    }

    /// Moves the track to another route of the same broadcast (the same origin, so the
    /// same groups): `to` publishes it from now on and the subscription on the old route
    /// is cancelled. Subscribers keep their subscriptions: returns what to ask of `to`,
    /// from the first group not complete here (groups open here take the rest of their
    /// frames from the new route), or `None` when the track had no upstream subscription.
    pub fn rehome<S: Sessions>(&mut self, to: SessionKey, sessions: &mut S) -> Option<Subscribe> {
        let old = std::mem::replace(&mut self.publisher, to);
        self.end = None;
        self.upstream_start = None;
        self.groups_started = 0;
        let up = self.upstream.take()?;
        sessions.unsubscribe(old, up);
        let options = self.upstream_options.clone()?;
        let open = self.groups.iter().find(|g| g.end.is_none());
        let resume = open
            .map(|g| g.sequence)
            .or_else(|| self.groups.back().map(|g| g.sequence.saturating_add(1)));
        self.resume_floor = resume.unwrap_or(0);
        Some(Subscribe {
            id: 0,
            broadcast: self.broadcast.clone(),
            track: self.name.clone(),
            priority: options.priority,
            ordered: options.ordered,
            max_latency: options.max_latency,
            start_group: resume.or(options.start_group),
            end_group: options.end_group,
        })
    }

    /// Upstream accepted our subscription, sending from group `start` if it said: groups
    /// still open below it (left by a route the track moved away from) will not complete.
    pub fn accepted<S: Sessions>(&mut self, start: Option<u64>, sessions: &mut S) {
        self.upstream_start = start;
        let Some(start) = start else { return };
        while let Some(pos) = self
            .groups
            .iter()
            .position(|g| g.end.is_none() && g.sequence < start)
        {
            let sequence = self.groups[pos].sequence;
            self.groups.remove(pos);
            self.cut_group(sequence, ErrorCode::Cancel.code(), sessions);
        }
    }

    pub fn set_end<S: Sessions>(&mut self, group: u64, sessions: &mut S) {
        self.end = Some(group);
        for sub in &self.subscribers {
            sessions.subscribe_end(sub.session, sub.stream, group);
        }
    }

    /// Upstream opened group `sequence`: cache it and open it on every subscriber.
    /// Returns how many subscriber groups were dropped to bound memory.
    pub fn start_group<S: Sessions>(
        &mut self,
        sequence: u64,
        config: &RelayConfig,
        now: Option<Instant>,
        sessions: &mut S,
    ) -> u64 {
        if self.upstream_start.is_none_or(|start| sequence >= start) {
            self.groups_started += 1;
        }
        if let Some(group) = self.groups.iter_mut().find(|g| g.sequence == sequence) {
            // Sent again by the route the track moved to: an open group takes the frames
            // it lacks, an ended one nothing.
            group.resent = group.frames.len();
            return 0;
        }
        if sequence < self.resume_floor {
            return 0;
        }
        self.evict(config, now);
        while self.open_groups() >= config.max_open_groups {
            let Some(pos) = self.groups.iter().position(|g| g.end.is_none()) else {
                break;
            };
            if let Some(old) = self.groups.remove(pos) {
                self.cut_group(old.sequence, ErrorCode::Old.code(), sessions);
            }
        }
        let group = Group {
            sequence,
            frames: Vec::new(),
            end: None,
            bytes: 0,
            ended_at: None,
            resent: 0,
        };
        let mut dropped = 0;
        for sub in &mut self.subscribers {
            dropped += sub.shed(config.max_queued_bytes, sessions);
            if sub.wants(sequence) {
                sub.open(&group, self.upstream_start, sessions);
            }
        }
        // Groups are kept in sequence order, whatever order their streams arrive in.
        let pos = self.groups.partition_point(|g| g.sequence < sequence);
        self.groups.insert(pos, group);
        dropped
    }

    pub fn push_frame<S: Sessions>(&mut self, sequence: u64, frame: Frame, sessions: &mut S) {
        let Some(group) = self
            .groups
            .iter_mut()
            .rev()
            .find(|g| g.sequence == sequence)
        else {
            return;
        };
        if group.end.is_some() {
            return;
        }
        if group.resent > 0 {
            group.resent -= 1;
            return;
        }
        for sub in &self.subscribers {
            if let Some(id) = sub.stream_of(sequence) {
                sessions.send_frame(sub.session, id, &frame);
            }
        }
        group.bytes += frame.memory_cost();
        group.frames.push(frame);
    }

    pub fn end_group<S: Sessions>(
        &mut self,
        sequence: u64,
        error: Option<u64>,
        config: &RelayConfig,
        now: Option<Instant>,
        sessions: &mut S,
    ) {
        let Some(pos) = self.groups.iter().position(|g| g.sequence == sequence) else {
            return;
        };
        if self.groups[pos].end.is_some() {
            // Ended already (a group sent again by a new route).
            return;
        }
        self.groups[pos].end = Some(error);
        self.groups[pos].ended_at = now;
        for sub in &mut self.subscribers {
            let Some(i) = sub.groups.iter().position(|(seq, _)| *seq == sequence) else {
                continue;
            };
            let (_, id) = sub.groups.remove(i);
            match error {
                None => sessions.finish_group(sub.session, id),
                Some(code) => sessions.reset_group(sub.session, id, code),
            }
        }
        if error.is_some() && pos + 1 != self.groups.len() {
            // A reset group is incomplete: not worth serving from the cache.
            self.groups.remove(pos);
        }
        self.evict(config, now);
    }

    fn open_groups(&self) -> usize {
        self.groups.iter().filter(|g| g.end.is_none()).count()
    }

    /// Drops the oldest finished groups beyond the cache's byte and age budgets. The newest
    /// group always stays (a late joiner starts there); open groups stay until they end.
    fn evict(&mut self, config: &RelayConfig, now: Option<Instant>) {
        let (broadcast, name) = (&self.broadcast, &self.name);
        let budget = *self
            .budget
            .get_or_insert_with(|| config.cache_budget(broadcast, name));
        let mut bytes: usize = self.groups.iter().map(|g| g.bytes).sum();
        while self.groups.len() > 1 {
            let oldest = &self.groups[0];
            if oldest.end.is_none() {
                break;
            }
            let too_old = match (now, oldest.ended_at) {
                (Some(now), Some(at)) => now.saturating_duration_since(at) > budget.age,
                _ => false,
            };
            if bytes <= budget.bytes && !too_old {
                break;
            }
            bytes -= oldest.bytes;
            self.evicted_below = self.evicted_below.max(oldest.sequence + 1);
            self.groups.pop_front();
        }
    }

    /// Resets a group on every subscriber (it fell out of the relay's window).
    fn cut_group<S: Sessions>(&mut self, sequence: u64, code: u64, sessions: &mut S) {
        for sub in &mut self.subscribers {
            if let Some(i) = sub.groups.iter().position(|(seq, _)| *seq == sequence) {
                let (_, id) = sub.groups.remove(i);
                sessions.reset_group(sub.session, id, code);
            }
        }
    }
}
