//! Orders to the shards from outside their loops (the signal thread): drain the relay,
//! swap in a reloaded certificate. An order is written under a lock and announced by
//! bumping an epoch; a shard reads the epoch once per loop turn (one relaxed load) and
//! takes the lock only when it moved, so the hot path never waits on it. A sleeping shard
//! is woken with an empty mail (see [`super::Mailbox`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::Mail;

/// A graceful shutdown: refuse new connections, send GOAWAY, serve until every session has
/// left or `deadline`, then close what remains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drain {
    /// Where clients should reconnect (GOAWAY's URI); empty for none.
    pub redirect: String,
    pub deadline: Instant,
}

/// What a shard finds when the epoch moved.
#[derive(Default)]
pub struct Orders {
    pub drain: Option<Drain>,
    /// A new QUIC configuration (a reloaded certificate) for new connections.
    pub quic: Option<quiche::Config>,
}

/// The orders of every shard.
pub struct Control {
    epoch: AtomicU64,
    /// Indexed by shard.
    orders: Mutex<Vec<Orders>>,
    drain: Mutex<Option<Drain>>,
    /// Each shard's mailbox, to wake it with an empty mail.
    wake: Mutex<Vec<flume::Sender<Mail>>>,
}

impl Control {
    pub fn new(shards: usize) -> Self {
        Self {
            epoch: AtomicU64::new(0),
            orders: Mutex::new((0..shards).map(|_| Orders::default()).collect()),
            drain: Mutex::new(None),
            wake: Mutex::new(Vec::new()),
        }
    }

    /// The shards' mailboxes, to wake them when an order comes.
    pub(super) fn wake_through(&self, senders: Vec<flume::Sender<Mail>>) {
        *self.wake.lock().unwrap_or_else(|e| e.into_inner()) = senders;
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Orders every shard to drain; `false` if a drain was already ordered.
    pub fn drain(&self, drain: Drain) -> bool {
        {
            let mut current = self.drain.lock().unwrap_or_else(|e| e.into_inner());
            if current.is_some() {
                return false;
            }
            *current = Some(drain.clone());
        }
        self.order(|o| o.drain = Some(drain.clone()));
        true
    }

    /// Whether a drain has been ordered.
    pub fn draining(&self) -> bool {
        self.drain
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Hands each shard its new QUIC configuration (one per shard, in shard order).
    pub fn reload(&self, configs: Vec<quiche::Config>) {
        let mut configs = configs.into_iter();
        self.order(|o| o.quic = configs.next());
    }

    fn order(&self, mut write: impl FnMut(&mut Orders)) {
        let mut orders = self.orders.lock().unwrap_or_else(|e| e.into_inner());
        orders.iter_mut().for_each(&mut write);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        drop(orders);
        // A full mailbox means a busy shard, which reads the epoch on its next turn.
        let wake = self.wake.lock().unwrap_or_else(|e| e.into_inner());
        for (shard, sender) in wake.iter().enumerate() {
            let _ = sender.try_send(Mail {
                from: shard,
                datagrams: Vec::new(),
                messages: Vec::new(),
            });
        }
    }

    /// Shard `shard`'s orders, if the epoch moved past `seen` (which is updated).
    pub fn take(&self, shard: usize, seen: &mut u64) -> Option<Orders> {
        let epoch = self.epoch();
        if epoch == *seen {
            return None;
        }
        *seen = epoch;
        let mut orders = self.orders.lock().unwrap_or_else(|e| e.into_inner());
        orders.get_mut(shard).map(std::mem::take)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_shard_takes_each_order_once() {
        let control = Control::new(2);
        let mut seen = [control.epoch(), control.epoch()];
        assert!(control.take(0, &mut seen[0]).is_none());
        let drain = Drain {
            redirect: "moql://other:4443/".into(),
            deadline: Instant::now() + Duration::from_secs(10),
        };
        assert!(control.drain(drain.clone()));
        assert!(!control.drain(drain.clone()), "one drain at a time");
        assert!(control.draining());
        for (shard, seen) in seen.iter_mut().enumerate() {
            let orders = control.take(shard, seen).expect("an order");
            assert_eq!(orders.drain, Some(drain.clone()));
            assert!(orders.quic.is_none());
            assert!(control.take(shard, seen).is_none(), "taken once");
        }
    }

    #[test]
    fn a_reload_reaches_every_shard() {
        let control = Control::new(2);
        let mut seen = [0, 0];
        let configs = (0..2)
            .map(|_| quiche::Config::new(quiche::PROTOCOL_VERSION).unwrap())
            .collect();
        control.reload(configs);
        for (shard, seen) in seen.iter_mut().enumerate() {
            let orders = control.take(shard, seen).expect("an order");
            assert!(orders.quic.is_some() && orders.drain.is_none());
        }
    }
}
