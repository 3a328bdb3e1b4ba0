//! A rate limit for log lines a peer can trigger at will (connections refused at the
//! limit, groups reset for a subscriber too far behind): at most one line per interval,
//! carrying how many events it stands for. Sans-IO: the caller passes `now`.
//!
//! Events after the last line of a burst are reported with the next line; if none comes,
//! the counters (metrics, the client's own report) still have them.

use std::time::{Duration, Instant};

/// One line per `interval` at most.
#[derive(Debug, Clone)]
pub struct LogLimit {
    interval: Duration,
    /// When the next line may be written (`None`: at once).
    next: Option<Instant>,
    /// Events counted since the last line.
    pending: u64,
}

impl LogLimit {
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            next: None,
            pending: 0,
        }
    }

    /// Counts one event. Returns `Some(n)` when a line may be written now, `n` being the
    /// events it stands for (this one and those held back since the last line).
    pub fn tick(&mut self, now: Instant) -> Option<u64> {
        self.pending += 1;
        if self.next.is_some_and(|t| now < t) {
            return None;
        }
        self.next = Some(now + self.interval);
        Some(std::mem::take(&mut self.pending))
    }
}

impl Default for LogLimit {
    /// One line a second.
    fn default() -> Self {
        Self::new(Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_counting_what_it_held_back() {
        let t0 = Instant::now();
        let mut limit = LogLimit::new(Duration::from_secs(1));
        assert_eq!(limit.tick(t0), Some(1));
        assert_eq!(limit.tick(t0), None);
        assert_eq!(limit.tick(t0 + Duration::from_millis(999)), None);
        assert_eq!(limit.tick(t0 + Duration::from_secs(1)), Some(3));
        assert_eq!(limit.tick(t0 + Duration::from_millis(1500)), None);
        assert_eq!(limit.tick(t0 + Duration::from_secs(5)), Some(2));
    }
}
