//! The relay's view of a shard's sessions: the calls it makes, addressed by session key.
//!
//! The shard implements this over its real `Session`s; tests implement it with a recorder,
//! so relay logic is checked without sockets or QUIC.

use crate::session::Frame;
use crate::wire::{ErrorCode, Fetch, Subscribe, TrackInfo};

/// Identifies a session within a shard.
pub type SessionKey = usize;

/// Requests and replies the relay sends to sessions. Calls naming a session or stream that
/// no longer exists are ignored.
pub trait Sessions {
    /// The session's root path (absolute).
    fn root(&self, s: SessionKey) -> String;
    /// Whether the closed session `s` went without a clean close (timed out, or closed
    /// with an error): its broadcasts linger (see `RelayConfig::route_linger`).
    fn left_abruptly(&self, _s: SessionKey) -> bool {
        false
    }
    fn request_announces(&mut self, s: SessionKey, prefix: &str) -> Option<u64>;
    fn reply_announces(&mut self, s: SessionKey, stream: u64, initial: &[(&str, &[u64])]);
    fn announce(&mut self, s: SessionKey, stream: u64, broadcast: &str, hops: &[u64], active: bool);
    /// `broadcast` goes on over a route through `new` hops instead of `old` (the same
    /// origin, the same groups): by default its end and a new announcement.
    fn reannounce(
        &mut self,
        s: SessionKey,
        stream: u64,
        broadcast: &str,
        old: &[u64],
        new: &[u64],
    ) {
        self.announce(s, stream, broadcast, old, false);
        self.announce(s, stream, broadcast, new, true);
    }
    /// Subscribes upstream with `request`'s track and options (its id is replaced).
    fn subscribe(&mut self, s: SessionKey, request: &Subscribe, token: usize) -> Option<u64>;
    fn unsubscribe(&mut self, s: SessionKey, stream: u64);
    /// `None` when the session's version has no track properties.
    fn request_track(
        &mut self,
        s: SessionKey,
        broadcast: &str,
        track: &str,
        token: usize,
    ) -> Option<u64>;
    fn reply_track(&mut self, s: SessionKey, stream: u64, info: &TrackInfo);
    /// Fetches a group from `s` (only links to other shards can); the answer is
    /// [`crate::session::Event::Fetched`] with `token`.
    fn fetch(&mut self, s: SessionKey, request: &Fetch, token: usize) -> Option<u64>;
    /// Answers a FETCH with a whole group's frames.
    fn reply_fetch(&mut self, s: SessionKey, stream: u64, frames: &[Frame]);
    fn reject(&mut self, s: SessionKey, stream: u64, code: ErrorCode);
    fn subscribe_ok(&mut self, s: SessionKey, stream: u64, priority: u8);
    fn subscribe_start(&mut self, s: SessionKey, stream: u64, group: u64);
    fn subscribe_end(&mut self, s: SessionKey, stream: u64, group: u64);
    fn end_subscription(&mut self, s: SessionKey, stream: u64, error: Option<u64>);
    fn open_group(&mut self, s: SessionKey, stream: u64, sequence: u64) -> Option<u64>;
    fn send_frame(&mut self, s: SessionKey, group: u64, frame: &Frame);
    fn finish_group(&mut self, s: SessionKey, group: u64);
    fn reset_group(&mut self, s: SessionKey, group: u64, code: u64);
    /// Bytes queued in the session and not yet taken by QUIC.
    fn queued_bytes(&self, s: SessionKey) -> usize;
}
