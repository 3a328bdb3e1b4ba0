//! The deadlines of a shard's sessions in one min-heap, so a loop turn finds the expired
//! ones and the next wake-up without looking at every session.
//!
//! A session's deadline only changes in a turn where it was active, so the shard
//! re-schedules exactly those at the end of the turn. Replaced deadlines stay in the heap
//! as stale entries, recognised by not matching the session's current one and dropped when
//! they surface; the heap is rebuilt when stale entries outnumber live ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::relay::SessionKey;

#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, SessionKey)>>,
    /// The current deadline of each session key.
    current: Vec<Option<Instant>>,
    /// Keys with a current deadline.
    live: usize,
}

impl Timers {
    /// Sets (or with `None` clears) the deadline of `key`.
    pub fn schedule(&mut self, key: SessionKey, at: Option<Instant>) {
        if key >= self.current.len() {
            self.current.resize(key + 1, None);
        }
        let slot = &mut self.current[key];
        if *slot == at {
            return;
        }
        match (slot.is_some(), at.is_some()) {
            (false, true) => self.live += 1,
            (true, false) => self.live -= 1,
            _ => {}
        }
        *slot = at;
        if let Some(at) = at {
            self.heap.push(Reverse((at, key)));
            if self.heap.len() > 4 * self.live + 64 {
                self.rebuild();
            }
        }
    }

    /// Moves the keys whose deadline is at or before `now` into `out`, clearing their
    /// deadlines.
    pub fn expired(&mut self, now: Instant, out: &mut Vec<SessionKey>) {
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            if self.current.get(key) == Some(&Some(at)) {
                self.current[key] = None;
                self.live -= 1;
                out.push(key);
            }
        }
    }

    /// The earliest deadline (possibly a stale one: waking early is harmless).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Keeps only current deadlines.
    fn rebuild(&mut self) {
        let live = self
            .current
            .iter()
            .enumerate()
            .filter_map(|(key, at)| at.map(|at| Reverse((at, key))));
        self.heap = live.collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn expired_keys_come_out_once_in_deadline_order() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut timers = Timers::default();
        timers.schedule(3, Some(ms(30)));
        timers.schedule(1, Some(ms(10)));
        timers.schedule(2, Some(ms(20)));
        timers.schedule(1, Some(ms(25))); // replaces 10
        timers.schedule(2, None); // cancelled
        assert_eq!(
            timers.next(),
            Some(ms(10)),
            "a stale entry may wake us early"
        );
        let mut out = Vec::new();
        timers.expired(ms(15), &mut out);
        assert!(out.is_empty(), "the stale entry is dropped");
        timers.expired(ms(30), &mut out);
        assert_eq!(out, vec![1, 3]);
        timers.expired(ms(100), &mut out);
        assert_eq!(out, vec![1, 3], "each once");
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn stale_entries_never_pile_up() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        for i in 0..100_000u64 {
            timers.schedule((i % 10) as usize, Some(t0 + Duration::from_micros(i)));
        }
        assert!(
            timers.heap.len() <= 4 * 10 + 64 + 1,
            "{}",
            timers.heap.len()
        );
        let mut out = Vec::new();
        timers.expired(t0 + Duration::from_secs(1), &mut out);
        out.sort();
        assert_eq!(out, (0..10).collect::<Vec<_>>());
    }
}
