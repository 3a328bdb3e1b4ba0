//! Pending handshakes: connections accepted whose QUIC handshake has not completed, held
//! apart from established ones. Decides, for each new Initial, whether to accept it, to
//! answer with a stateless Retry, or to drop it; keeps a deadline per pending handshake.
//! Sans-IO (time comes in as `now`), and touched only on the Initial/accept path, when a
//! handshake completes or closes, and by a sweep of expired deadlines, never per packet of
//! an established connection.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::admission::Admission;
use super::retry::RetryKey;
use crate::relay::SessionKey;

/// When new connections must first prove their address with a Retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryMode {
    /// Once the relay holds half its `--max-pending-handshakes` (or an address its
    /// `--max-pending-per-address` unproven handshakes).
    Auto,
    /// Every new connection.
    Always,
    /// Never: over the limits, Initials are dropped.
    Never,
}

impl RetryMode {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            _ => Err(format!("{s:?}: auto, always or never")),
        }
    }
}

/// Default `--handshake-timeout`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `--max-pending-handshakes` (about 29 KB each).
pub const MAX_PENDING: usize = 1000;
/// Default `--max-pending-per-address`.
pub const MAX_PER_ADDRESS: usize = 16;

/// The relay's handshake policy, shared by every shard (the Retry key and the relay-wide
/// count of pending handshakes are the same for all).
#[derive(Debug, Clone)]
pub struct HandshakePolicy {
    pub retry: RetryMode,
    /// A pending handshake not done after this is dropped.
    pub timeout: Duration,
    /// Pending handshakes over the whole relay (its limit is `--max-pending-handshakes`).
    pub pending: Admission,
    /// Pending handshakes per source IP address and shard, counted apart for proven
    /// (Retry token) and unproven addresses.
    pub per_address: usize,
    pub key: Arc<RetryKey>,
}

impl HandshakePolicy {
    pub fn new(
        retry: RetryMode,
        timeout: Duration,
        max_pending: usize,
        per_address: usize,
        epoch: Instant,
    ) -> Result<Self, String> {
        let key = RetryKey::generate(epoch).map_err(|_| "no random Retry key".to_string())?;
        Ok(Self {
            retry,
            timeout,
            pending: Admission::new(max_pending),
            per_address,
            key: Arc::new(key),
        })
    }

    /// The defaults, with a key of its own (for a single-shard core and tests).
    pub fn standalone() -> Self {
        Self::new(
            RetryMode::Auto,
            HANDSHAKE_TIMEOUT,
            MAX_PENDING,
            MAX_PER_ADDRESS,
            Instant::now(),
        )
        .expect("the system random generator works")
    }
}

/// What to do with an Initial that opens no known connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Accept it as a pending handshake (its place is taken: give it back with
    /// [`Pending::cancel`] if the accept fails).
    Accept,
    /// Answer with a Retry carrying a token.
    Retry,
    /// Drop it: too many pending handshakes on the relay.
    RefuseRelay,
    /// Drop it: too many pending handshakes from this address.
    RefuseAddress,
}

/// One shard's pending handshakes.
#[derive(Debug)]
pub struct Pending {
    policy: HandshakePolicy,
    /// The pending ones: their address, whether it was proven, and their queue ticket.
    by_key: HashMap<SessionKey, Entry>,
    /// Pending handshakes per (address, proven).
    by_address: HashMap<(IpAddr, bool), usize>,
    /// Deadlines in accept order (one timeout for all, so the order is the deadlines').
    queue: VecDeque<(Instant, SessionKey, u64)>,
    tickets: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    ip: IpAddr,
    proven: bool,
    ticket: u64,
}

impl Pending {
    pub fn new(policy: HandshakePolicy) -> Self {
        Self {
            policy,
            by_key: HashMap::new(),
            by_address: HashMap::new(),
            queue: VecDeque::new(),
            tickets: 0,
        }
    }

    pub fn policy(&self) -> &HandshakePolicy {
        &self.policy
    }

    /// Pending handshakes of this shard.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Decides on an Initial from `ip`; `proven`: it carried a valid Retry token. On
    /// [`Verdict::Accept`] the relay-wide and per-address places are taken.
    pub fn admit(&mut self, ip: IpAddr, proven: bool) -> Verdict {
        let p = &self.policy;
        let here = self.by_address.get(&(ip, proven)).copied().unwrap_or(0);
        if !proven {
            let busy = p.pending.open() >= p.pending.limit() / 2;
            let full = here >= p.per_address || p.pending.open() >= p.pending.limit();
            match p.retry {
                RetryMode::Always => return Verdict::Retry,
                RetryMode::Auto if busy || full => return Verdict::Retry,
                _ => {}
            }
        }
        if here >= p.per_address {
            return Verdict::RefuseAddress;
        }
        if !p.pending.try_admit() {
            return Verdict::RefuseRelay;
        }
        *self.by_address.entry((ip, proven)).or_default() += 1;
        Verdict::Accept
    }

    /// Gives back the places [`Pending::admit`] took for a connection that was not made.
    pub fn cancel(&mut self, ip: IpAddr, proven: bool) {
        self.policy.pending.release();
        self.forget_address(ip, proven);
    }

    /// Starts the deadline of the connection just accepted as `key`.
    pub fn insert(&mut self, key: SessionKey, ip: IpAddr, proven: bool, now: Instant) {
        let ticket = self.tickets;
        self.tickets += 1;
        self.by_key.insert(key, Entry { ip, proven, ticket });
        self.queue
            .push_back((now + self.policy.timeout, key, ticket));
    }

    /// `key` is no longer pending (its handshake completed, or it closed): gives back its
    /// places. Returns whether it was pending.
    pub fn remove(&mut self, key: SessionKey) -> bool {
        let Some(entry) = self.by_key.remove(&key) else {
            return false;
        };
        self.policy.pending.release();
        self.forget_address(entry.ip, entry.proven);
        true
    }

    fn forget_address(&mut self, ip: IpAddr, proven: bool) {
        if let Some(n) = self.by_address.get_mut(&(ip, proven)) {
            *n -= 1;
            if *n == 0 {
                self.by_address.remove(&(ip, proven));
            }
        }
    }

    /// Appends to `out` the pending handshakes whose deadline has passed (still pending:
    /// the caller drops them or, if done after all, calls [`Pending::remove`]).
    pub fn expired(&mut self, now: Instant, out: &mut Vec<SessionKey>) {
        while let Some(&(deadline, key, ticket)) = self.queue.front() {
            if deadline > now {
                break;
            }
            self.queue.pop_front();
            if self.by_key.get(&key).is_some_and(|e| e.ticket == ticket) {
                out.push(key);
            }
        }
    }

    /// The earliest deadline still queued (maybe of a handshake already done: waking for
    /// it costs one empty sweep).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.front().map(|&(deadline, ..)| deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(retry: RetryMode, max: usize, per_address: usize) -> HandshakePolicy {
        HandshakePolicy::new(
            retry,
            Duration::from_secs(10),
            max,
            per_address,
            Instant::now(),
        )
        .unwrap()
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn never_caps_per_address_then_per_relay() {
        let mut p = Pending::new(policy(RetryMode::Never, 4, 2));
        let now = Instant::now();
        assert_eq!(p.admit(ip(1), false), Verdict::Accept);
        p.insert(0, ip(1), false, now);
        assert_eq!(p.admit(ip(1), false), Verdict::Accept);
        p.insert(1, ip(1), false, now);
        assert_eq!(p.admit(ip(1), false), Verdict::RefuseAddress);
        assert_eq!(p.admit(ip(2), false), Verdict::Accept);
        p.insert(2, ip(2), false, now);
        assert_eq!(p.admit(ip(3), false), Verdict::Accept);
        p.insert(3, ip(3), false, now);
        assert_eq!(p.admit(ip(4), false), Verdict::RefuseRelay);
        assert_eq!(p.policy().pending.open(), 4);
        // A handshake that completes gives both places back.
        assert!(p.remove(0));
        assert!(!p.remove(0));
        assert_eq!(p.admit(ip(1), false), Verdict::Accept);
        p.cancel(ip(1), false);
        assert_eq!(p.policy().pending.open(), 3);
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn auto_retries_from_half_the_limit_and_over_an_address_cap() {
        let mut p = Pending::new(policy(RetryMode::Auto, 4, 1));
        let now = Instant::now();
        assert_eq!(p.admit(ip(1), false), Verdict::Accept);
        p.insert(0, ip(1), false, now);
        // Address 1 is at its cap: prove it first.
        assert_eq!(p.admit(ip(1), false), Verdict::Retry);
        // Proven handshakes have their own per-address count.
        assert_eq!(p.admit(ip(1), true), Verdict::Accept);
        p.insert(1, ip(1), true, now);
        assert_eq!(p.admit(ip(1), true), Verdict::RefuseAddress);
        // Two of four pending: everyone unproven gets a Retry now.
        assert_eq!(p.admit(ip(2), false), Verdict::Retry);
        assert_eq!(p.admit(ip(2), true), Verdict::Accept);
        assert_eq!(p.admit(ip(3), true), Verdict::Accept);
        assert_eq!(p.admit(ip(4), true), Verdict::RefuseRelay);
    }

    #[test]
    fn always_retries_every_unproven_initial() {
        let mut p = Pending::new(policy(RetryMode::Always, 100, 10));
        assert_eq!(p.admit(ip(1), false), Verdict::Retry);
        assert_eq!(p.admit(ip(1), true), Verdict::Accept);
        assert_eq!(p.policy().pending.open(), 1);
    }

    #[test]
    fn deadlines_expire_in_order_and_skip_what_is_gone() {
        let mut p = Pending::new(policy(RetryMode::Never, 10, 10));
        let t0 = Instant::now();
        for key in 0..3 {
            assert_eq!(p.admit(ip(1), false), Verdict::Accept);
            p.insert(key, ip(1), false, t0 + Duration::from_secs(key as u64));
        }
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(10)));
        p.remove(1);
        // Key 0 reused by a newer connection: only the newer deadline counts.
        p.remove(0);
        assert_eq!(p.admit(ip(1), false), Verdict::Accept);
        p.insert(0, ip(1), false, t0 + Duration::from_secs(5));
        let mut out = Vec::new();
        p.expired(t0 + Duration::from_millis(9_999), &mut out);
        assert!(out.is_empty());
        p.expired(t0 + Duration::from_secs(12), &mut out);
        assert_eq!(out, vec![2]);
        p.expired(t0 + Duration::from_secs(15), &mut out);
        assert_eq!(out, vec![2, 0]);
        assert_eq!(p.next_deadline(), None);
    }
}
