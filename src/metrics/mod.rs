//! The relay's metrics: a catalogue of counters and gauges, the plain per-shard tally a
//! shard counts into, and the shared [`Metrics`] its shards publish to and the HTTP side
//! door reads. Shards only ever store into their own slots; nothing here is read back by a
//! shard, and nothing here takes a lock per frame.
//!
//! A shard counts in plain `u64` fields (its [`Tally`], the relay's `RelayStats`, the
//! connection table's counters) and copies them into its [`ShardMetrics`] atomics from its
//! own thread every [`PUBLISH_EVERY`] while it is busy. Each slot has a single writer, so
//! the copy is a relaxed store (a plain `mov`), never a locked instruction, and the hot
//! path pays nothing per frame for being observed.

mod exposition;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use exposition::render;

/// How often a busy shard publishes its tally (an idle one published on its last turn).
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// Counter (only grows) or gauge (goes both ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One series of the catalogue: its family (the name after `moqring_`), kind, help text
/// and optional label.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub family: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub label: Option<(&'static str, &'static str)>,
}

macro_rules! catalogue {
    ($($slot:ident => $family:literal, $kind:ident, $label:expr, $help:literal;)*) => {
        /// Every value a shard publishes, one slot each.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Slot {
            $($slot,)*
        }

        /// The series of each [`Slot`], in slot order; series of one family are adjacent.
        pub const SERIES: &[Series] = &[
            $(Series { family: $family, kind: Kind::$kind, help: $help, label: $label },)*
        ];
    };
}

catalogue! {
    ConnectionsOpen => "connections_open", Gauge, None,
        "QUIC connections held now (handshaking or established).";
    ConnectionsAccepted => "connections_accepted_total", Counter, None,
        "QUIC connections accepted.";
    RefusedLimit => "connections_refused_total", Counter, Some(("reason", "limit")),
        "New connections refused: relay-wide --max-connections reached (limit), accept failed (error), unsupported QUIC version (version negotiation sent), --max-pending-handshakes reached (handshakes), --max-pending-per-address reached (address), or a Retry token invalid, expired or from another address (token).";
    RefusedError => "connections_refused_total", Counter, Some(("reason", "error")), "";
    RefusedVersion => "connections_refused_total", Counter, Some(("reason", "version")), "";
    RefusedHandshakes => "connections_refused_total", Counter, Some(("reason", "handshakes")), "";
    RefusedAddress => "connections_refused_total", Counter, Some(("reason", "address")), "";
    RefusedToken => "connections_refused_total", Counter, Some(("reason", "token")), "";
    AuthRefusals => "auth_refusals_total", Counter, None,
        "Sessions refused or closed for their token (missing, invalid, expired, foreign root) and requests refused outside their grant (Unauthorized).";
    HandshakesPending => "handshakes_pending", Gauge, None,
        "Connections whose QUIC handshake or moq-lite setup has not completed.";
    RetriesSent => "retries_sent_total", Counter, None,
        "QUIC Retry packets sent (address validation: --retry, or auto over half of --max-pending-handshakes).";
    HandshakesTimedOut => "handshakes_timed_out_total", Counter, None,
        "Connections dropped because their QUIC handshake did not complete within --handshake-timeout.";
    SessionsLite05 => "sessions", Gauge, Some(("version", "moq-lite-05")),
        "Established moq-lite sessions by negotiated version.";
    SessionsLite04 => "sessions", Gauge, Some(("version", "moq-lite-04")), "";
    SessionsLite03 => "sessions", Gauge, Some(("version", "moq-lite-03")), "";
    SessionsWebTransport => "webtransport_sessions", Gauge, None,
        "Established sessions (counted in sessions too) that came over WebTransport (HTTP/3).";
    Broadcasts => "broadcasts", Gauge, None,
        "Broadcasts announced by publishers connected to this shard (see /announced).";
    Tracks => "tracks", Gauge, None,
        "Track states held (served from a publisher, or mirrored from their owner shard).";
    UpstreamSubscriptions => "upstream_subscriptions_total", Counter, None,
        "Upstream subscriptions made (to publishers and to owner shards).";
    PublisherSubscriptions => "publisher_subscriptions_total", Counter, None,
        "Upstream subscriptions made to publishers' sessions.";
    Subscribes => "subscribes_total", Counter, None,
        "Subscriptions served (from subscribers and from other shards).";
    Subscribers => "subscribers", Gauge, None,
        "Subscriptions of connected subscribers being served now.";
    BytesIn => "bytes_in_total", Counter, None,
        "Frame payload bytes received from publishers.";
    FramesIn => "frames_in_total", Counter, None,
        "Frames received from publishers.";
    GroupsIn => "groups_in_total", Counter, None,
        "Groups received from publishers.";
    BytesOut => "bytes_out_total", Counter, None,
        "Frame payload bytes handed to subscribers' sessions (live or replayed from the cache; not FETCH answers).";
    FramesOut => "frames_out_total", Counter, None,
        "Frames handed to subscribers' sessions.";
    GroupsOut => "groups_out_total", Counter, None,
        "Group streams opened on subscribers' sessions.";
    ResetLagged => "groups_reset_total", Counter, Some(("reason", "lagged")),
        "Group streams reset towards subscribers: Lagged (too far behind), Old (past the latency budget), other (an upstream reset passed on, or a track ended).";
    ResetOld => "groups_reset_total", Counter, Some(("reason", "old")), "";
    ResetOther => "groups_reset_total", Counter, Some(("reason", "other")), "";
    QueuedBytes => "queued_bytes", Gauge, None,
        "Bytes queued in subscriber sessions that QUIC has not taken yet.";
    CacheBytes => "cache_bytes", Gauge, None,
        "Memory held by cached groups (frames count at least their receive buffer).";
    CacheGroups => "cache_groups", Gauge, None,
        "Groups held in track caches.";
    DatagramsIn => "datagrams_received_total", Counter, None,
        "UDP datagrams received.";
    DatagramsOut => "datagrams_sent_total", Counter, None,
        "QUIC packets written into send batches.";
    SendMessages => "send_messages_total", Counter, None,
        "sendmmsg messages the kernel took (a GSO run of same-size packets is one).";
    SendCalls => "send_calls_total", Counter, None,
        "sendmmsg system calls.";
    SendDropped => "send_dropped_total", Counter, None,
        "Messages dropped on send: full socket buffer or a kernel error (QUIC sees loss).";
    SendErrors => "send_errors_total", Counter, None,
        "Connections closed because QUIC could not produce a packet.";
    Forwarded => "forwarded_datagrams_total", Counter, None,
        "Datagrams passed to the shard their connection ID names (steering fallback).";
    MailboxDepth => "mailbox_depth", Gauge, None,
        "Mails waiting in the shard's inbox.";
    MailboxFull => "mailbox_full_total", Counter, None,
        "Times mail found another shard's mailbox full (kept and retried).";
    LoopTurns => "loop_turns_total", Counter, None,
        "Event loop turns.";
    BusyNanos => "busy_seconds_total", Counter, None,
        "Time the event loop spent working (not waiting), in seconds.";
}

impl Slot {
    /// Number of slots.
    pub const COUNT: usize = SERIES.len();

    pub fn series(self) -> &'static Series {
        &SERIES[self as usize]
    }
}

/// A shard's values as it counts them: plain integers, no atomics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally([u64; Slot::COUNT]);

impl Default for Tally {
    fn default() -> Self {
        Self([0; Slot::COUNT])
    }
}

impl Tally {
    pub fn get(&self, slot: Slot) -> u64 {
        self.0[slot as usize]
    }

    pub fn set(&mut self, slot: Slot, value: u64) {
        self.0[slot as usize] = value;
    }

    pub fn add(&mut self, slot: Slot, value: u64) {
        self.0[slot as usize] += value;
    }
}

/// What one shard publishes: its values, whether it runs, and the broadcasts its
/// publishers announce.
#[derive(Debug)]
pub struct ShardMetrics {
    values: [AtomicU64; Slot::COUNT],
    running: AtomicBool,
    /// Replaced only when the shard's list changes (never per frame).
    broadcasts: Mutex<Vec<String>>,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        Self {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
            running: AtomicBool::new(false),
            broadcasts: Mutex::new(Vec::new()),
        }
    }
}

impl ShardMetrics {
    /// Copies `tally` out. Only the shard's own thread calls this, so every slot has one
    /// writer and a relaxed store is enough (readers see each value whole, maybe a turn old).
    pub fn publish(&self, tally: &Tally) {
        for (slot, value) in self.values.iter().zip(tally.0.iter()) {
            slot.store(*value, Ordering::Relaxed);
        }
    }

    /// The values last published.
    pub fn snapshot(&self) -> Tally {
        Tally(std::array::from_fn(|i| {
            self.values[i].load(Ordering::Relaxed)
        }))
    }

    /// Replaces the list of broadcasts announced by the shard's publishers.
    pub fn set_broadcasts(&self, list: Vec<String>) {
        *self.broadcasts.lock().unwrap_or_else(|e| e.into_inner()) = list;
    }

    pub fn broadcasts(&self) -> Vec<String> {
        self.broadcasts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Marks the shard running until the returned guard drops (the thread ends, by error or
    /// panic).
    pub fn running(self: &Arc<Self>) -> RunningGuard {
        self.running.store(true, Ordering::Release);
        RunningGuard(self.clone())
    }
}

/// Marks its shard stopped when dropped.
#[derive(Debug)]
pub struct RunningGuard(Arc<ShardMetrics>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

/// The relay's metrics: one [`ShardMetrics`] per shard and the relay-wide draining flag.
#[derive(Debug)]
pub struct Metrics {
    shards: Vec<Arc<ShardMetrics>>,
    draining: AtomicBool,
}

impl Metrics {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards).map(|_| Arc::default()).collect(),
            draining: AtomicBool::new(false),
        }
    }

    pub fn shards(&self) -> &[Arc<ShardMetrics>] {
        &self.shards
    }

    pub fn shard(&self, index: usize) -> &Arc<ShardMetrics> {
        &self.shards[index]
    }

    /// The relay is draining: /health answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Every shard runs and the relay is not draining.
    pub fn healthy(&self) -> bool {
        !self.is_draining() && self.shards.iter().all(|s| s.is_running())
    }

    /// The broadcasts of every shard, sorted, without duplicates.
    pub fn broadcasts(&self) -> Vec<String> {
        let mut all: Vec<String> = self.shards.iter().flat_map(|s| s.broadcasts()).collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_of_a_family_are_adjacent_and_documented_once() {
        let mut seen: Vec<&str> = Vec::new();
        for (i, s) in SERIES.iter().enumerate() {
            let first = i == 0 || SERIES[i - 1].family != s.family;
            if first {
                assert!(!seen.contains(&s.family), "{} split", s.family);
                assert!(!s.help.is_empty(), "{} has no help", s.family);
                seen.push(s.family);
            } else {
                assert_eq!(SERIES[i - 1].kind, s.kind, "{}", s.family);
                assert!(s.label.is_some(), "{} repeats without a label", s.family);
            }
            let counter = s.family.ends_with("_total");
            assert_eq!(counter, s.kind == Kind::Counter, "{}", s.family);
        }
    }

    #[test]
    fn a_published_tally_reads_back() {
        let m = Metrics::new(2);
        let mut t = Tally::default();
        t.add(Slot::BytesIn, 5);
        t.add(Slot::BytesIn, 7);
        t.set(Slot::Tracks, 3);
        m.shard(1).publish(&t);
        assert_eq!(m.shard(1).snapshot(), t);
        assert_eq!(m.shard(0).snapshot().get(Slot::BytesIn), 0);
    }

    #[test]
    fn health_needs_every_shard_running_and_no_drain() {
        let m = Metrics::new(2);
        assert!(!m.healthy(), "shards not started");
        let a = m.shard(0).running();
        let b = m.shard(1).running();
        assert!(m.healthy());
        drop(b);
        assert!(!m.healthy(), "a shard stopped");
        let _b = m.shard(1).running();
        assert!(m.healthy());
        m.set_draining();
        assert!(!m.healthy());
        drop(a);
    }

    #[test]
    fn broadcasts_of_all_shards_merge_sorted() {
        let m = Metrics::new(2);
        m.shard(0).set_broadcasts(vec!["b".into(), "a".into()]);
        m.shard(1).set_broadcasts(vec!["c".into(), "a".into()]);
        assert_eq!(m.broadcasts(), ["a", "b", "c"]);
    }
}
