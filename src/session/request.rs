//! Requests this session makes of its peer: announcements, subscriptions, track properties.

use bytes::BytesMut;

use super::recv::Kind;
use super::{Session, Upstream};
use crate::wire::{AnnounceRequest, ControlType, ErrorCode, Message, Subscribe, TrackRequest};

impl Session {
    /// Asks the peer for announcements under `prefix` (absolute); answers arrive as
    /// [`Event::Announced`] on the returned stream. A session with a grant is asked only
    /// under the prefixes it may publish (one request each; none if it may publish
    /// nothing), as moq-relay does; the first request's stream is returned.
    pub fn request_announces(&mut self, prefix: &str) -> Option<u64> {
        let Some(grant) = &self.grant else {
            return self.request_announces_under(prefix);
        };
        let prefixes = grant.put_within(prefix);
        if prefixes.is_empty() {
            tracing::debug!(root = %self.root, "session may publish nothing, not asking for its broadcasts");
        }
        let mut first = None;
        for prefix in prefixes {
            let id = self.request_announces_under(&prefix);
            first = first.or(id);
        }
        first
    }

    fn request_announces_under(&mut self, prefix: &str) -> Option<u64> {
        let rel = self.relative(prefix)?.to_string();
        let id = self.open_bidi(Kind::AnnounceReplies { origin: None });
        self.announce_prefixes.insert(id, prefix.to_string());
        let mut buf = BytesMut::new();
        ControlType::Announce.encode(&mut buf);
        AnnounceRequest {
            prefix: rel,
            exclude_hop: self.config.origin,
        }
        .encode(&mut buf, self.version?);
        self.write(id, buf.freeze());
        Some(id)
    }

    /// Subscribes with `request`'s broadcast (absolute), track and options; its id is
    /// replaced by one of ours. Answers and groups carry `token`.
    pub fn subscribe(&mut self, request: &Subscribe, token: usize) -> Option<u64> {
        let version = self.version?;
        let rel = self.relative(&request.broadcast)?.to_string();
        let id = self.open_bidi(Kind::SubscribeReplies { token });
        let sub_id = self.next_sub_id;
        self.next_sub_id += 1;
        self.upstream.insert(sub_id, Upstream { stream: id, token });
        let mut buf = BytesMut::new();
        ControlType::Subscribe.encode(&mut buf);
        Subscribe {
            id: sub_id,
            broadcast: rel,
            track: request.track.clone(),
            ..request.clone()
        }
        .encode(&mut buf, version);
        self.write(id, buf.freeze());
        Some(id)
    }

    /// Ends our subscription on `stream`: FIN, then ignore its late groups.
    pub fn unsubscribe(&mut self, stream: u64) {
        self.upstream.retain(|_, up| up.stream != stream);
        self.recv.remove(&stream);
        let code = self.wire_code(ErrorCode::Cancel.code());
        let _ = self
            .conn
            .stream_shutdown(stream, quiche::Shutdown::Read, code);
        self.finish_stream(stream);
    }

    /// Asks for a track's properties (lite-05); the answer is [`Event::TrackInfo`].
    pub fn request_track(&mut self, broadcast: &str, track: &str, token: usize) -> Option<u64> {
        let version = self.version?;
        if !version.has_track_stream() {
            return None;
        }
        let rel = self.relative(broadcast)?.to_string();
        let id = self.open_bidi(Kind::TrackReplies { token });
        let mut buf = BytesMut::new();
        ControlType::Track.encode(&mut buf);
        TrackRequest {
            broadcast: rel,
            track: track.to_string(),
        }
        .encode(&mut buf, version);
        self.write(id, buf.freeze());
        // Our FIN waits for the answer: a publisher may read an early FIN as a cancel.
        Some(id)
    }
}
