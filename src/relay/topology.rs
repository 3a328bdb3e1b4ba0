//! Where a track lives when the relay runs on several shards: the shard count, this
//! shard's index, which shard owns a track, and the session keys that stand for the links
//! to the other shards.
//!
//! A track's owner shard keeps its one upstream subscription and its cache; every other
//! shard with subscribers of the track holds a mirror of it fed by the owner. Links look
//! like sessions to the relay: what it asks of one travels to the other shard as a message.

use std::hash::{Hash, Hasher};

use super::SessionKey;

/// Session keys from here on name links to shards (`LINK_BASE + shard`); a shard's own
/// connections use small slab keys.
const LINK_BASE: SessionKey = usize::MAX - MAX_SHARDS;

/// The session key of routes whose session left abruptly and that linger (see
/// `RelayConfig::route_linger`): not any session's, since a new session may get the key
/// the old one had.
pub const GONE: SessionKey = LINK_BASE - 1;

/// Shards a relay can run at most (connection IDs carry the shard index in one byte).
pub const MAX_SHARDS: usize = 256;

/// This shard's place among the relay's shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    /// Our index, `0..shards`.
    pub shard: usize,
    pub shards: usize,
}

impl Default for Topology {
    /// A relay of one shard.
    fn default() -> Self {
        Self {
            shard: 0,
            shards: 1,
        }
    }
}

impl Topology {
    pub fn new(shard: usize, shards: usize) -> Self {
        assert!((1..=MAX_SHARDS).contains(&shards) && shard < shards);
        Self { shard, shards }
    }

    /// The session key of the link to `shard`.
    pub fn link(shard: usize) -> SessionKey {
        LINK_BASE + shard
    }

    /// The shard a session key links to, if it is a link.
    pub fn link_shard(key: SessionKey) -> Option<usize> {
        key.checked_sub(LINK_BASE)
    }

    pub fn is_link(key: SessionKey) -> bool {
        key >= LINK_BASE
    }

    /// The links to every other shard.
    pub fn links(&self) -> impl Iterator<Item = SessionKey> + '_ {
        (0..self.shards)
            .filter(move |&s| s != self.shard)
            .map(Self::link)
    }

    /// The shard that owns a track: hash(broadcast, track) % shards. The hash is fixed
    /// (SipHash with zero keys) so every shard agrees.
    pub fn owner(&self, broadcast: &str, track: &str) -> usize {
        if self.shards == 1 {
            return 0;
        }
        let mut h = std::hash::DefaultHasher::new();
        broadcast.hash(&mut h);
        track.hash(&mut h);
        (h.finish() % self.shards as u64) as usize
    }

    /// Whether this shard owns the track.
    pub fn owns(&self, broadcast: &str, track: &str) -> bool {
        self.owner(broadcast, track) == self.shard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_keys_round_trip_and_never_meet_slab_keys() {
        for shard in [0, 1, 7, MAX_SHARDS - 1] {
            let key = Topology::link(shard);
            assert!(Topology::is_link(key));
            assert_eq!(Topology::link_shard(key), Some(shard));
        }
        assert_eq!(Topology::link_shard(1_000_000), None);
        let t = Topology::new(1, 3);
        let links: Vec<_> = t.links().filter_map(Topology::link_shard).collect();
        assert_eq!(links, vec![0, 2]);
    }

    #[test]
    fn every_shard_agrees_on_the_owner_and_tracks_spread() {
        let shards: Vec<Topology> = (0..4).map(|s| Topology::new(s, 4)).collect();
        let mut per_owner = [0usize; 4];
        for i in 0..400 {
            let track = format!("t{i}");
            let owner = shards[0].owner("live/x", &track);
            assert!(shards.iter().all(|t| t.owner("live/x", &track) == owner));
            assert_eq!(
                shards.iter().filter(|t| t.owns("live/x", &track)).count(),
                1
            );
            per_owner[owner] += 1;
        }
        assert!(per_owner.iter().all(|&n| n > 50), "{per_owner:?}");
        assert_eq!(Topology::default().owner("a", "b"), 0);
    }
}
