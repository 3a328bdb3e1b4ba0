//! Replies to the peer's requests: announcements, track properties, subscription
//! acceptance and end, and the group streams that carry a subscription's frames.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use super::send::OutStream;
use super::{path, Frame, Session};
use crate::wire::{
    Announce, AnnounceOk, DataType, ErrorCode, GroupHeader, Message, SubscribeOk,
    SubscribeResponse, TrackInfo, Version,
};

impl Session {
    /// Starts answering an announce interest: lite-05 sends ANNOUNCE_OK with the count of
    /// `initial`, then each entry; older versions just the entries.
    /// Broadcasts the peer may not subscribe to are left out.
    pub fn reply_announces(&mut self, stream: u64, initial: &[(&str, &[u64])]) {
        let Some(version) = self.version else { return };
        if version.has_announce_ok() {
            let visible = initial
                .iter()
                .filter(|(p, hops)| self.may_get(p) && !self.came_through_peer(hops))
                .count();
            let ok = AnnounceOk {
                origin: self.config.origin,
                active: visible as u64,
            };
            self.write_msg(stream, &ok);
        }
        for (path, hops) in initial {
            self.announce(stream, path, hops, true);
        }
    }

    /// Tells the peer that `broadcast` (absolute) is active or ended on announce `stream`.
    /// Nothing is said of a broadcast the peer may not subscribe to.
    pub fn announce(&mut self, stream: u64, broadcast: &str, hops: &[u64], active: bool) {
        let Some(version) = self.version else { return };
        if !self.may_get(broadcast) || self.came_through_peer(hops) {
            return;
        }
        let Some(prefix) = self.announcing.get(&stream) else {
            return;
        };
        let Some(suffix) = path::strip(broadcast, prefix) else {
            return;
        };
        let mut hops: Vec<u64> = hops.to_vec();
        if version == Version::Lite04 {
            hops.push(self.config.origin);
        }
        let suffix = suffix.to_string();
        let msg = if active {
            Announce::Active { suffix, hops }
        } else {
            Announce::Ended { suffix, hops }
        };
        // A subscription ending cleanly must reach the peer before the broadcast's end,
        // or the peer aborts the track: hold announcements while any is ending, until the
        // peer closed its side, and for a short grace after (see `RESUME_GRACE`).
        if self.holds_announces() {
            self.held_announces.push((stream, msg));
        } else {
            self.write_msg(stream, &msg);
        }
    }

    /// Tells the peer that `broadcast` goes on over a route through `new` hops instead of
    /// `old` (the same origin): lite-05 restarts the announcement in place (the peer's
    /// subscriptions go on), older versions hear its end and a new announcement.
    pub fn reannounce(&mut self, stream: u64, broadcast: &str, old: &[u64], new: &[u64]) {
        let in_place = self.version == Some(Version::Lite05)
            && !self.came_through_peer(old)
            && !self.came_through_peer(new);
        if !in_place {
            self.announce(stream, broadcast, old, false);
        }
        self.announce(stream, broadcast, new, true);
    }

    /// Whether a broadcast's hop chain passed through the peer (a cluster loop).
    fn came_through_peer(&self, hops: &[u64]) -> bool {
        self.peer_origin.is_some_and(|o| hops.contains(&o))
    }

    /// Answers a track request and finishes the stream.
    pub fn reply_track(&mut self, stream: u64, info: &TrackInfo) {
        if !self.pending_replies.remove(&stream) {
            return;
        }
        self.write_msg(stream, info);
        self.finish_stream(stream);
    }

    /// Answers a fetch with a whole group's frames, then FIN.
    pub fn reply_fetch(&mut self, stream: u64, frames: &[Frame]) {
        let Some(version) = self.version else { return };
        if !self.pending_replies.remove(&stream) {
            return;
        }
        let mut parts: SmallVec<[Bytes; 3]> = SmallVec::new();
        for frame in frames {
            parts.clear();
            frame.write_to(version, &mut parts);
            for part in parts.drain(..) {
                self.write(stream, part);
            }
        }
        self.finish_stream(stream);
    }

    /// Refuses a request stream the peer opened.
    pub fn reject(&mut self, stream: u64, code: ErrorCode) {
        self.served.remove(&stream);
        self.announcing.remove(&stream);
        self.pending_replies.remove(&stream);
        self.reset_stream(stream, code.code());
    }

    /// Accepts a subscription (lite-03/04 SUBSCRIBE_OK; lite-05 waits for [`Self::subscribe_start`]).
    pub fn subscribe_ok(&mut self, stream: u64, priority: u8) {
        let Some(version) = self.version else { return };
        if version.has_track_stream() || !self.served.contains_key(&stream) {
            return;
        }
        let ok = SubscribeOk {
            priority,
            ordered: false,
            max_latency: Duration::ZERO,
            start_group: None,
            end_group: None,
        };
        self.write_response(stream, &SubscribeResponse::Ok(ok));
    }

    /// lite-05: the subscription's first group.
    pub fn subscribe_start(&mut self, stream: u64, group: u64) {
        if self.version.is_some_and(|v| v.has_track_stream()) && self.served.contains_key(&stream) {
            self.write_response(stream, &SubscribeResponse::Start { group });
        }
    }

    /// lite-05: the subscription ends before `group`.
    pub fn subscribe_end(&mut self, stream: u64, group: u64) {
        if self.version.is_some_and(|v| v.has_track_stream()) && self.served.contains_key(&stream) {
            self.write_response(stream, &SubscribeResponse::End { group });
        }
    }

    /// Ends a served subscription once its group streams completed: FIN, or reset with `error`.
    pub fn end_subscription(&mut self, stream: u64, error: Option<u64>) {
        if let Some(served) = self.served.get_mut(&stream) {
            if served.ending.is_none() {
                tracing::debug!(
                    stream,
                    ?error,
                    groups = served.groups.len(),
                    "ending subscription"
                );
                served.ending = Some(error);
                self.ending.push(stream);
            }
        }
    }

    /// Opens the stream of group `sequence` for served subscription `stream`.
    pub fn open_group(&mut self, stream: u64, sequence: u64) -> Option<u64> {
        let version = self.version?;
        let served = self.served.get_mut(&stream)?;
        if served.ending.is_some() {
            return None;
        }
        let id = self.next_uni;
        self.next_uni += 4;
        let at = served.groups.partition_point(|(s, _)| *s <= sequence);
        served.groups.insert(at, (sequence, id));
        let mut buf = BytesMut::with_capacity(24);
        DataType::Group.encode(&mut buf);
        GroupHeader {
            subscribe: served.id,
            sequence,
        }
        .encode(&mut buf, version);
        let mut out = OutStream::for_group(sequence);
        if let Some(prefix) = self.stream_prefix(false) {
            self.queued += prefix.len();
            out.push(prefix);
        }
        self.queued += buf.len();
        out.push(buf.freeze());
        self.send.insert(id, out);
        self.mark_dirty(id);
        self.rank_groups(stream);
        Some(id)
    }

    /// Queues a frame on a group stream (shared handles, no copy).
    pub fn send_frame(&mut self, group: u64, frame: &Frame) {
        let (Some(version), Some(out)) = (self.version, self.send.get_mut(&group)) else {
            return;
        };
        let before = out.queued();
        let mut parts: SmallVec<[Bytes; 3]> = SmallVec::new();
        frame.write_to(version, &mut parts);
        for part in parts {
            out.push(part);
        }
        self.queued += out.queued() - before;
        self.mark_dirty(group);
    }

    /// Finishes a group stream after its queued frames.
    pub fn finish_group(&mut self, group: u64) {
        if let Some(out) = self.send.get_mut(&group) {
            out.finish();
            self.mark_dirty(group);
        }
    }

    /// Resets a group stream with `code`, dropping what is queued.
    pub fn reset_group(&mut self, group: u64, code: u64) {
        if let Some(mut out) = self.send.remove(&group) {
            self.queued -= out.queued();
            if !out.is_opened() {
                // Open it first so the peer is not left with a stream that never ends.
                let _ = out.flush_data(&mut self.conn, group);
            }
        }
        // Out of its subscription's ranking too: a re-rank must not lower the urgency
        // the reset gave it (see `shutdown_write`).
        for served in self.served.values_mut() {
            served.groups.retain(|(_, g)| *g != group);
        }
        let code = self.wire_code(code);
        self.shutdown_write(group, code);
    }
}
