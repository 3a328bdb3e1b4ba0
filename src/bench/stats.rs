//! The bench's measurements: a fixed-size latency histogram, the per-thread live counters
//! the progress line reads, and the totals each bench thread hands back at the end.
//!
//! Recording never allocates: the histogram is one array of counts, the counters are
//! atomics only their own thread writes.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Linear sub-buckets per power of two: values are kept to within 1/32 (about 3 %).
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Values are clamped to below 2^MAX_BITS microseconds (about 19 hours).
const MAX_BITS: u32 = 36;
const BUCKETS: usize = ((MAX_BITS - SUB_BITS + 1) as u64 * SUB) as usize;

/// Counts of microsecond values in log-linear buckets, with the exact maximum.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("max", &self.max)
            .finish()
    }
}

fn bucket(v: u64) -> usize {
    let v = v.min((1 << MAX_BITS) - 1);
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let sub = (v >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as u64 * SUB + sub) as usize
}

/// The largest value that falls in bucket `i`.
fn bucket_high(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let exp = (i / SUB) as u32 + SUB_BITS - 1;
    let sub = i % SUB;
    let width = 1u64 << (exp - SUB_BITS);
    (1u64 << exp) + (sub + 1) * width - 1
}

impl Histogram {
    pub fn record(&mut self, us: u64) {
        self.counts[bucket(us)] += 1;
        self.total += 1;
        self.max = self.max.max(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1): the smallest bucket bound with at least that
    /// share of the values at or below it, never above the maximum; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_high(i).min(self.max);
            }
        }
        self.max
    }
}

/// Live counters of one bench thread, read by the progress line once a second. Only
/// the owning thread writes them (relaxed atomics, no contention); aligned apart so two
/// threads' counters never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Counters {
    /// Frames and payload bytes delivered to subscribers in the measured window.
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    /// Latency sum and maximum (microseconds) of those frames; the maximum is reset by
    /// each progress read.
    pub latency_sum_us: AtomicU64,
    pub latency_max_us: AtomicU64,
    /// Frames received in any phase (the drain waits for these to stop).
    pub seen: AtomicU64,
    /// Subscribers that have received at least one frame.
    pub receiving: AtomicU64,
    /// Connections that closed before the end of the run.
    pub failed: AtomicU64,
}

impl Counters {
    pub fn add_frame(&self, bytes: usize, latency_us: u64) {
        self.frames.fetch_add(1, Relaxed);
        self.bytes.fetch_add(bytes as u64, Relaxed);
        self.latency_sum_us.fetch_add(latency_us, Relaxed);
        self.latency_max_us.fetch_max(latency_us, Relaxed);
    }
}

/// A snapshot of all threads' counters, for one progress line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub frames: u64,
    pub bytes: u64,
    pub latency_sum_us: u64,
    pub latency_max_us: u64,
    pub seen: u64,
    pub receiving: u64,
    pub failed: u64,
}

impl Snapshot {
    /// Sums the counters and resets their interval maximum.
    pub fn take(all: &[std::sync::Arc<Counters>]) -> Self {
        let mut s = Self::default();
        for c in all {
            s.frames += c.frames.load(Relaxed);
            s.bytes += c.bytes.load(Relaxed);
            s.latency_sum_us += c.latency_sum_us.load(Relaxed);
            s.latency_max_us = s.latency_max_us.max(c.latency_max_us.swap(0, Relaxed));
            s.seen += c.seen.load(Relaxed);
            s.receiving += c.receiving.load(Relaxed);
            s.failed += c.failed.load(Relaxed);
        }
        s
    }
}

/// What one bench thread measured over the whole run.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Latency of frames delivered in the measured window.
    pub latency: Histogram,
    /// Frames and payload bytes delivered in the measured window.
    pub frames: u64,
    pub bytes: u64,
    /// Frames lost over the whole run (see [`super::stamp::Tracker`]).
    pub lost: u64,
    /// Groups the relay reset before they were complete.
    pub groups_reset: u64,
    /// Frames published in the measured window, and frames not published because the
    /// publisher's queue was full.
    pub published: u64,
    pub skipped: u64,
    /// Subscribers that received at least one frame; connections that failed.
    pub receiving: u64,
    pub failed: u64,
    /// The moq-lite version the relay negotiated (ALPN), from the first ready session.
    pub version: Option<String>,
}

impl Totals {
    pub fn merge(&mut self, other: &Totals) {
        self.latency.merge(&other.latency);
        self.frames += other.frames;
        self.bytes += other.bytes;
        self.lost += other.lost;
        self.groups_reset += other.groups_reset;
        self.published += other.published;
        self.skipped += other.skipped;
        self.receiving += other.receiving;
        self.failed += other.failed;
        if self.version.is_none() {
            self.version.clone_from(&other.version);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::default();
        for v in 1..=10 {
            h.record(v);
        }
        assert_eq!(h.count(), 10);
        assert_eq!(h.quantile(0.5), 5);
        assert_eq!(h.quantile(0.99), 10);
        assert_eq!(h.quantile(1.0), 10);
        assert_eq!(h.max(), 10);
    }

    #[test]
    fn large_values_are_within_one_bucket() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for (q, want) in [(0.5, 50_000f64), (0.99, 99_000f64)] {
            let got = h.quantile(q) as f64;
            assert!(
                got >= want && got <= want * (1.0 + 1.0 / 32.0),
                "{q}: {got}"
            );
        }
        assert_eq!(
            h.quantile(1.0),
            100_000,
            "the top quantile is the exact max"
        );
    }

    #[test]
    fn buckets_tile_the_range() {
        for i in 0..BUCKETS - 1 {
            assert_eq!(bucket(bucket_high(i)), i);
            assert_eq!(bucket(bucket_high(i) + 1), i + 1);
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn empty_histogram_reports_zero() {
        assert_eq!(Histogram::default().quantile(0.99), 0);
    }

    #[test]
    fn merged_histograms_count_both() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        for _ in 0..99 {
            a.record(1000);
        }
        b.record(50_000);
        a.merge(&b);
        assert_eq!(a.count(), 100);
        assert!(a.quantile(0.5) >= 1000 && a.quantile(0.5) < 1040);
        assert_eq!(a.quantile(1.0), 50_000);
        assert_eq!(a.max(), 50_000);
    }

    #[test]
    fn snapshots_sum_threads_and_reset_the_interval_maximum() {
        let threads = [
            std::sync::Arc::new(Counters::default()),
            std::sync::Arc::new(Counters::default()),
        ];
        threads[0].add_frame(100, 7);
        threads[1].add_frame(50, 3);
        threads[1].add_frame(50, 9);
        let s = Snapshot::take(&threads);
        assert_eq!((s.frames, s.bytes, s.latency_sum_us), (3, 200, 19));
        assert_eq!(s.latency_max_us, 9);
        assert_eq!(Snapshot::take(&threads).latency_max_us, 0);
    }
}
