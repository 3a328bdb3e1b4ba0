//! A shard's side of the metrics: counts what its loop does (turns, busy time, datagrams,
//! sends) in plain fields and publishes the shard's tally to the shared
//! [`ShardMetrics`] at most every [`PUBLISH_EVERY`], from the shard's own thread. It never
//! reads anything back and takes no lock per frame (only when the shard's list of
//! broadcasts changed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Core, Mailbox};
use crate::metrics::{ShardMetrics, Slot, Tally, PUBLISH_EVERY};
use crate::net::batch::Sent;

pub struct Meter {
    shared: Arc<ShardMetrics>,
    tally: Tally,
    /// When the next publication is due.
    due: Instant,
    /// Broadcasts as last published.
    broadcasts: Vec<String>,
    scratch: Vec<String>,
}

impl Meter {
    pub fn new(shared: Arc<ShardMetrics>) -> Self {
        Self {
            shared,
            tally: Tally::default(),
            due: Instant::now(),
            broadcasts: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// One datagram came in.
    pub fn received(&mut self) {
        self.tally.add(Slot::DatagramsIn, 1);
    }

    /// A send batch left.
    pub fn sent(&mut self, sent: Sent) {
        self.tally.add(Slot::SendMessages, sent.messages as u64);
        self.tally.add(Slot::SendDropped, sent.dropped as u64);
        self.tally.add(Slot::SendCalls, sent.calls as u64);
    }

    /// Ends a loop turn that began at `start`; publishes when due. Returns how soon the
    /// loop must wake to publish what this turn changed (`None`: published).
    pub fn end_turn(
        &mut self,
        start: Instant,
        now: Instant,
        core: &Core,
        mailbox: &Mailbox,
    ) -> Option<Duration> {
        self.tally.add(Slot::LoopTurns, 1);
        let busy = now.saturating_duration_since(start);
        self.tally.add(Slot::BusyNanos, busy.as_nanos() as u64);
        if now < self.due {
            return Some(self.due - now);
        }
        self.due = now + PUBLISH_EVERY;
        self.publish(core, mailbox);
        None
    }

    fn publish(&mut self, core: &Core, mailbox: &Mailbox) {
        core.tally(&mut self.tally);
        self.tally
            .set(Slot::MailboxDepth, mailbox.inbox.len() as u64);
        self.tally.set(Slot::MailboxFull, mailbox.full.get());
        core.relay().local_broadcasts(&mut self.scratch);
        self.tally.set(Slot::Broadcasts, self.scratch.len() as u64);
        if self.scratch != self.broadcasts {
            std::mem::swap(&mut self.scratch, &mut self.broadcasts);
            self.shared.set_broadcasts(self.broadcasts.clone());
        }
        self.shared.publish(&self.tally);
    }
}
