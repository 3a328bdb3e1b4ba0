//! The relay-wide connection limit (`--max-connections`): one counter shared by every
//! shard, taken when a shard accepts a connection and given back when it forgets one.
//! It is touched only on accept and close, never per packet, so sharing it costs the
//! hot path nothing; it is the one piece of mutable state shards share.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Admission to the relay: at most `limit` connections at once, over all shards.
#[derive(Debug, Clone)]
pub struct Admission {
    open: Arc<AtomicUsize>,
    limit: usize,
}

impl Admission {
    pub fn new(limit: usize) -> Self {
        Self {
            open: Arc::default(),
            limit,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Connections held now, over all shards.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Takes a place for one more connection; `false` when the relay is full.
    pub fn try_admit(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives back the place of a connection that is gone.
    pub fn release(&self) {
        let _ = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_holds_over_every_clone() {
        let a = Admission::new(3);
        let b = a.clone();
        assert!(a.try_admit());
        assert!(b.try_admit());
        assert!(a.try_admit());
        assert!(!b.try_admit(), "a fourth connection over two shards");
        assert_eq!(a.open(), 3);
        b.release();
        assert!(a.try_admit());
        assert!(!a.try_admit());
    }

    #[test]
    fn a_zero_limit_admits_nothing() {
        let a = Admission::new(0);
        assert!(!a.try_admit());
        a.release();
        assert_eq!(a.open(), 0);
    }

    #[test]
    fn threads_never_admit_more_than_the_limit() {
        let a = Admission::new(1000);
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..500).filter(|_| a.try_admit()).count()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, 1000);
        assert_eq!(a.open(), 1000);
    }
}
