//! Scheduling of the group streams we serve: which goes first, and which is too late.
//!
//! Priorities follow moq-net 0.2.13 (`lite/priority.rs`): a higher subscriber priority
//! first, then the newest group first (unless the subscriber asked for `ordered`
//! delivery). quiche sends the lowest urgency first and, within one urgency, the lowest
//! stream id first, so every group of a subscription is re-ranked when a newer one opens.
//!
//! Latency: once a newer group of its subscription opens, a group has the subscriber's
//! max latency (or, when it asked for zero, [`DEFAULT_MAX_LATENCY`], the budget moq-net
//! publishers keep non-latest groups for) to hand its data to QUIC. Past that, a group
//! with data still waiting here is reset with `Old` instead of being sent late. Times come
//! from [`Session::flush`]; nothing here reads a clock.
//!
//! Groups reset for either reason, or because the peer is too far behind
//! (`max_queued_bytes`), are reported at warn level, one line a second per session at most
//! ([`ResetLog`]): the subscriber loses data, and its operator should hear why.

use std::time::{Duration, Instant};

use super::Session;
use crate::log_limit::LogLimit;
use crate::wire::{ErrorCode, DEFAULT_MAX_LATENCY};

/// Urgency of control streams: before every group.
pub const CONTROL_URGENCY: u8 = 0;

/// Urgency levels a subscription's groups are spread over, newest first.
const RANKS: usize = 8;

/// quiche urgency (lower is sent first) of a group stream: the subscriber's `priority`
/// (higher first) in bands of [`RANKS`] levels, `rank` newer groups of the same
/// subscription still in flight within the band. Never [`CONTROL_URGENCY`].
pub fn group_urgency(priority: u8, rank: usize) -> u8 {
    let band = usize::from(u8::MAX - priority) / RANKS;
    let urgency = 1 + band * RANKS + rank.min(RANKS - 1);
    u8::try_from(urgency).unwrap_or(u8::MAX)
}

/// The subscriber's preferences that shape its groups' delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub priority: u8,
    pub ordered: bool,
    /// How long a non-latest group may still wait to be sent.
    pub budget: Duration,
}

impl Delivery {
    pub fn new(priority: u8, ordered: bool, max_latency: Duration) -> Self {
        let budget = if max_latency.is_zero() {
            DEFAULT_MAX_LATENCY
        } else {
            max_latency
        };
        Self {
            priority,
            ordered,
            budget,
        }
    }
}

/// A group superseded by a newer one of its subscription.
#[derive(Debug, Clone, Copy)]
pub(super) struct Superseded {
    group: u64,
    budget: Duration,
    /// Its deadline, set at the first flush after it was superseded.
    due: Option<Instant>,
}

impl Session {
    /// Re-ranks the group streams of served subscription `stream`, oldest first in its
    /// list, after `newest` joined it; the others start their latency budget.
    pub(super) fn rank_groups(&mut self, stream: u64) {
        let Some(served) = self.served.get_mut(&stream) else {
            return;
        };
        let (send, conn) = (&mut self.send, &mut self.conn);
        served
            .groups
            .retain(|(_, g)| send.contains_key(g) || conn.stream_capacity(*g).is_ok());
        let count = served.groups.len();
        let delivery = served.delivery;
        for (i, &(_, group)) in served.groups.iter().enumerate() {
            let rank = if delivery.ordered { 0 } else { count - 1 - i };
            let urgency = group_urgency(delivery.priority, rank);
            match send.get_mut(&group) {
                Some(out) => out.set_urgency(conn, group, urgency),
                // Everything is in quiche already; it may still be unsent.
                None => {
                    let _ = conn.stream_priority(group, urgency, false);
                }
            }
            let newest = i + 1 == count;
            if !newest && !self.superseded.iter().any(|s| s.group == group) {
                self.superseded.push(Superseded {
                    group,
                    budget: delivery.budget,
                    due: None,
                });
            }
        }
    }

    /// Starts the budgets of newly superseded groups and resets those past it that still
    /// have data waiting here. Returns how many were reset.
    pub(super) fn expire_late_groups(&mut self, now: Instant) -> usize {
        let mut late = 0;
        let mut i = 0;
        while i < self.superseded.len() {
            let s = &mut self.superseded[i];
            let Some(out) = self.send.get(&s.group) else {
                // Finished and handed to QUIC, or reset: nothing can be late.
                self.superseded.swap_remove(i);
                continue;
            };
            let due = *s.due.get_or_insert(now + s.budget);
            if due <= now && out.queued() > 0 {
                let (group, budget) = (s.group, s.budget);
                let sequence = out.group();
                self.superseded.swap_remove(i);
                tracing::debug!(group, "group past its latency budget: reset");
                self.reset_group(group, ErrorCode::Old.code());
                self.resets.record(Reset::Late(budget), sequence);
                late += 1;
                continue;
            }
            i += 1;
        }
        late
    }

    /// Resets the oldest group streams with data still queued here, finished or not,
    /// until the session holds at most `max_queued_bytes`. Returns how many were reset.
    pub(super) fn shed_oldest_groups(&mut self) -> usize {
        let send = &self.send;
        let mut queued: Vec<u64> = self
            .served
            .values()
            .flat_map(|s| s.groups.iter().map(|(_, g)| *g))
            .filter(|g| send.get(g).is_some_and(|out| out.queued() > 0))
            .collect();
        // Stream ids grow with each group opened: the lowest is the oldest.
        queued.sort_unstable();
        let mut shed = 0;
        for group in queued {
            if self.queued <= self.config.max_queued_bytes {
                break;
            }
            tracing::debug!(group, "peer too far behind: group reset");
            let sequence = self.send.get(&group).and_then(|out| out.group());
            self.reset_group(group, ErrorCode::Lagged.code());
            self.resets.record(Reset::Lagged, sequence);
            shed += 1;
        }
        shed
    }

    /// Writes the session's line about the groups it reset since its last one, when its
    /// [`LogLimit`] allows; otherwise they wait for a later flush. Called at every flush
    /// that has such groups, so a burst's tail is written within a second of the burst.
    pub(super) fn report_resets(&mut self, now: Instant) {
        let log = &mut self.resets;
        if log.lagged + log.late == 0 || log.limit.tick(now).is_none() {
            return;
        }
        // The limit counts flushes; the line counts groups.
        let (lagged, late) = (
            std::mem::take(&mut log.lagged),
            std::mem::take(&mut log.late),
        );
        let sequences = log.take_sequences();
        let mut reasons = Vec::with_capacity(2);
        if lagged > 0 {
            reasons.push(format!(
                "{lagged} holding more than --max-queued-bytes ({} bytes) QUIC could not take yet (Lagged)",
                self.config.max_queued_bytes
            ));
        }
        if let Some(budget) = log.budget.take().filter(|_| late > 0) {
            reasons.push(format!(
                "{late} past their latency budget ({} ms) with data unsent (Old)",
                budget.as_millis()
            ));
        }
        let peer = self.conn.path_stats().next().map(|p| p.peer_addr);
        tracing::warn!(
            peer = ?peer,
            conn = self.conn.trace_id(),
            groups = lagged + late,
            sequences,
            "subscriber cannot keep up: reset {} of its groups, {}",
            lagged + late,
            reasons.join(", ")
        );
    }

    /// The next latency deadline still ahead of the last flush.
    pub(super) fn next_latency_deadline(&self) -> Option<Instant> {
        self.superseded
            .iter()
            .filter_map(|s| s.due)
            .filter(|due| self.flushed_at.is_none_or(|at| *due > at))
            .min()
    }

    /// New preferences for served subscription `stream` (SUBSCRIBE_UPDATE).
    pub(super) fn update_delivery(&mut self, stream: u64, delivery: Delivery) {
        if let Some(served) = self.served.get_mut(&stream) {
            served.delivery = delivery;
            self.rank_groups(stream);
        }
    }
}

/// Why a group was reset here.
#[derive(Debug, Clone, Copy)]
enum Reset {
    /// Past its latency budget.
    Late(Duration),
    /// The session held more than `max_queued_bytes`.
    Lagged,
}

/// The groups a session reset since its last line about them, and the limit on such lines.
/// Sequences are kept as the lowest and the highest, so memory stays constant.
#[derive(Debug, Default)]
pub(super) struct ResetLog {
    limit: LogLimit,
    lagged: u64,
    late: u64,
    /// The latency budget of the last group reset as late.
    budget: Option<Duration>,
    /// Lowest and highest group sequence reset.
    sequences: Option<(u64, u64)>,
}

impl ResetLog {
    fn record(&mut self, why: Reset, sequence: Option<u64>) {
        match why {
            Reset::Late(budget) => {
                self.late += 1;
                self.budget = Some(budget);
            }
            Reset::Lagged => self.lagged += 1,
        }
        if let Some(s) = sequence {
            self.sequences = Some(match self.sequences {
                Some((low, high)) => (low.min(s), high.max(s)),
                None => (s, s),
            });
        }
    }

    /// The sequences reset since the last line, as `12` or `12-48` (lowest to highest).
    fn take_sequences(&mut self) -> String {
        match self.sequences.take() {
            Some((low, high)) if low == high => low.to_string(),
            Some((low, high)) => format!("{low}-{high}"),
            None => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgency_orders_priority_then_recency() {
        // Control first, then priority, then the newest group.
        assert!(group_urgency(255, 0) > CONTROL_URGENCY);
        assert!(group_urgency(255, 7) < group_urgency(200, 0));
        assert!(group_urgency(10, 0) < group_urgency(10, 1));
        assert!(group_urgency(16, 99) < group_urgency(8, 0));
        // Priorities within one band differ only by recency.
        assert_eq!(group_urgency(7, 0), group_urgency(0, 0));
        assert_eq!(group_urgency(0, 7), u8::MAX);
        assert_eq!(group_urgency(0, 1000), u8::MAX);
        assert_eq!(group_urgency(255, 0), 1);
    }

    #[test]
    fn the_reset_log_counts_each_reason_and_spans_the_sequences() {
        let mut log = ResetLog::default();
        assert_eq!(log.take_sequences(), "");
        log.record(Reset::Lagged, Some(12));
        assert_eq!(log.take_sequences(), "12");
        log.record(Reset::Lagged, Some(40));
        log.record(Reset::Late(Duration::from_millis(300)), Some(7));
        log.record(Reset::Lagged, None);
        assert_eq!((log.lagged, log.late), (3, 1));
        assert_eq!(log.budget, Some(Duration::from_millis(300)));
        assert_eq!(log.take_sequences(), "7-40");
        assert_eq!(log.take_sequences(), "", "taken");
    }

    #[test]
    fn zero_max_latency_means_the_default_budget() {
        assert_eq!(
            Delivery::new(0, false, Duration::ZERO).budget,
            DEFAULT_MAX_LATENCY
        );
        assert_eq!(
            Delivery::new(0, false, Duration::from_millis(300)).budget,
            Duration::from_millis(300)
        );
    }
}
