//! Cluster links: the peer relays this relay dials (`--cluster-connect`), when each is
//! dialled again after it was lost, and the checks a link gets once it is up.
//!
//! A link is an ordinary client session in a shard's connection table: the relay asks the
//! peer for its broadcasts, announces its own (hop chains keep loops out, see
//! `relay::Broadcast::active`) and subscribes on demand, as with any session. Peers that
//! dial us are plain server sessions. This module is the sans-IO schedule: which link is
//! due, its jittered backoff (1 s, doubling up to 10 s; back to 1 s after a link that
//! stayed up), its handshake deadline and its keep-alive pings.

use std::time::{Duration, Instant};

use url::Url;

use crate::client::Verify;
use crate::relay::SessionKey;

/// The first redial delay after a link is lost (before jitter).
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The longest redial delay (before jitter).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A dial whose handshake has not completed by then is given up and dialled again.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// What the relay needs to dial its peers.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `moql://` (raw QUIC) or `https://` (WebTransport) URLs of the peers to dial; a `jwt`
    /// query parameter is sent as the peer's token.
    pub peers: Vec<Url>,
    /// How a peer's certificate is checked.
    pub verify: Verify,
    /// PEM file of CA certificates that sign peers' certificates (else the system's).
    pub root: Option<std::path::PathBuf>,
}

/// Where one link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// To be dialled at this time.
    Due(Instant),
    /// Dialled as `session` at `since`; `established` once its handshake completed.
    Up {
        session: SessionKey,
        since: Instant,
        established: bool,
        next_ping: Instant,
    },
}

#[derive(Debug)]
struct Link {
    url: Url,
    state: LinkState,
    /// The delay of the next redial, before jitter.
    backoff: Duration,
}

/// The links one shard dials.
#[derive(Debug)]
pub struct Dialer {
    links: Vec<Link>,
    /// A link's keep-alive ping period (a third of the idle timeout).
    ping: Duration,
    /// xorshift state for the jitter.
    seed: u64,
}

impl Dialer {
    /// Links to `urls`, all due at `now`; links ping every `ping` while up.
    pub fn new(urls: Vec<Url>, now: Instant, ping: Duration, seed: u64) -> Self {
        let links = urls
            .into_iter()
            .map(|url| Link {
                url,
                state: LinkState::Due(now),
                backoff: MIN_BACKOFF,
            })
            .collect();
        Self {
            links,
            ping,
            seed: seed | 1,
        }
    }

    /// The URL of link `i`.
    pub fn url(&self, i: usize) -> &Url {
        &self.links[i].url
    }

    #[cfg(test)]
    fn state(&self, i: usize) -> LinkState {
        self.links[i].state
    }

    /// The links due to be dialled at `now`.
    pub fn due(&self, now: Instant) -> Vec<usize> {
        let due = |l: &Link| matches!(l.state, LinkState::Due(t) if t <= now);
        (0..self.links.len())
            .filter(|&i| due(&self.links[i]))
            .collect()
    }

    /// Link `i` was dialled as `session`.
    pub fn dialed(&mut self, i: usize, session: SessionKey, now: Instant) {
        self.links[i].state = LinkState::Up {
            session,
            since: now,
            established: false,
            next_ping: now + self.ping,
        };
    }

    /// Dialling link `i` failed before a connection existed: try again after the backoff.
    pub fn failed(&mut self, i: usize, now: Instant) {
        self.schedule(i, now);
    }

    /// The link whose session is `session`, if one is.
    pub fn link_of(&self, session: SessionKey) -> Option<usize> {
        self.links
            .iter()
            .position(|l| matches!(l.state, LinkState::Up { session: s, .. } if s == session))
    }

    /// The sessions of links that are up.
    pub fn sessions(&self) -> impl Iterator<Item = (usize, SessionKey)> + '_ {
        self.links
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match l.state {
                LinkState::Up { session, .. } => Some((i, session)),
                LinkState::Due(_) => None,
            })
    }

    /// Link `i`'s handshake completed; returns `true` the first time.
    pub fn established(&mut self, i: usize) -> bool {
        match &mut self.links[i].state {
            LinkState::Up { established, .. } if !*established => {
                *established = true;
                true
            }
            _ => false,
        }
    }

    /// Whether link `i` has waited for its handshake past [`DIAL_TIMEOUT`].
    pub fn dial_expired(&self, i: usize, now: Instant) -> bool {
        matches!(self.links[i].state,
            LinkState::Up { since, established: false, .. } if now >= since + DIAL_TIMEOUT)
    }

    /// Whether link `i` is due a keep-alive ping at `now` (the next one is then scheduled).
    pub fn ping_due(&mut self, i: usize, now: Instant) -> bool {
        let ping = self.ping;
        match &mut self.links[i].state {
            LinkState::Up {
                established: true,
                next_ping,
                ..
            } if *next_ping <= now => {
                *next_ping = now + ping;
                true
            }
            _ => false,
        }
    }

    /// Link `i`'s session is gone: it is dialled again after its backoff, which starts
    /// over if the link had stayed up at least [`MAX_BACKOFF`].
    pub fn lost(&mut self, i: usize, now: Instant) {
        if let LinkState::Up {
            since, established, ..
        } = self.links[i].state
        {
            if established && now.duration_since(since) >= MAX_BACKOFF {
                self.links[i].backoff = MIN_BACKOFF;
            }
        }
        self.schedule(i, now);
    }

    fn schedule(&mut self, i: usize, now: Instant) {
        let backoff = self.links[i].backoff;
        let delay = self.jitter(backoff);
        self.links[i].state = LinkState::Due(now + delay);
        self.links[i].backoff = (backoff * 2).min(MAX_BACKOFF);
    }

    /// A delay between half and all of `d`, so links lost together are not redialled in
    /// lockstep.
    fn jitter(&mut self, d: Duration) -> Duration {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let half = d / 2;
        half + half.mul_f64((self.seed % 1024) as f64 / 1023.0)
    }

    /// When the dialer next has something to do: a dial, a dial deadline or a ping.
    pub fn next_wake(&self) -> Option<Instant> {
        self.links
            .iter()
            .map(|l| match l.state {
                LinkState::Due(t) => t,
                LinkState::Up {
                    since,
                    established: false,
                    ..
                } => since + DIAL_TIMEOUT,
                LinkState::Up { next_ping, .. } => next_ping,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialer(n: usize, now: Instant) -> Dialer {
        let urls = (0..n)
            .map(|i| format!("moql://127.0.0.1:{}/", 5000 + i).parse().unwrap())
            .collect();
        Dialer::new(urls, now, Duration::from_secs(3), 42)
    }

    #[test]
    fn every_link_is_due_at_start_and_not_once_dialled() {
        let now = Instant::now();
        let mut d = dialer(3, now);
        assert_eq!(d.due(now), vec![0, 1, 2]);
        d.dialed(1, 7, now);
        assert_eq!(d.due(now), vec![0, 2]);
        assert_eq!(d.link_of(7), Some(1));
        assert_eq!(d.sessions().collect::<Vec<_>>(), vec![(1, 7)]);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_ten_seconds_and_starts_over_after_a_long_link() {
        let start = Instant::now();
        let mut d = dialer(1, start);
        let mut now = start;
        let mut delays = Vec::new();
        for _ in 0..6 {
            d.dialed(0, 1, now);
            d.lost(0, now);
            let LinkState::Due(at) = d.state(0) else {
                panic!("not due")
            };
            delays.push(at - now);
            now = at;
        }
        let nominal = [1u64, 2, 4, 8, 10, 10];
        for (got, want) in delays.iter().zip(nominal) {
            let want = Duration::from_secs(want);
            assert!(
                *got >= want / 2 && *got <= want,
                "{got:?} not in [{:?}, {want:?}]",
                want / 2
            );
        }
        // The jitter spreads delays: not all the same fraction of their nominal value.
        let fractions: Vec<u128> = delays
            .iter()
            .zip(nominal)
            .map(|(d, n)| d.as_millis() * 1000 / (n as u128 * 1000))
            .collect();
        assert!(fractions.windows(2).any(|w| w[0] != w[1]), "{fractions:?}");
        // A link that stayed up ten seconds is redialled after about a second again.
        d.dialed(0, 1, now);
        assert!(d.established(0));
        assert!(!d.established(0), "established is reported once");
        let later = now + MAX_BACKOFF;
        d.lost(0, later);
        let LinkState::Due(at) = d.state(0) else {
            panic!("not due")
        };
        assert!(at - later <= MIN_BACKOFF);
    }

    #[test]
    fn a_handshake_past_its_deadline_expires_and_pings_follow_establishment() {
        let now = Instant::now();
        let mut d = dialer(1, now);
        d.dialed(0, 3, now);
        assert!(!d.dial_expired(0, now + DIAL_TIMEOUT / 2));
        assert!(d.dial_expired(0, now + DIAL_TIMEOUT));
        assert_eq!(d.next_wake(), Some(now + DIAL_TIMEOUT));
        assert!(
            !d.ping_due(0, now + Duration::from_secs(4)),
            "no ping before the handshake"
        );
        d.established(0);
        assert!(!d.dial_expired(0, now + DIAL_TIMEOUT));
        assert!(!d.ping_due(0, now + Duration::from_secs(2)));
        assert!(d.ping_due(0, now + Duration::from_secs(3)));
        assert!(
            !d.ping_due(0, now + Duration::from_secs(4)),
            "the next ping is 3 s on"
        );
        assert_eq!(d.next_wake(), Some(now + Duration::from_secs(6)));
    }
}
