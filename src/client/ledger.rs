//! The subscriber's output ledger: writes a track's groups to the output in sequence order
//! and accounts for every group it could not write whole. Sans-IO: group events in, bytes
//! out to a `Write`; it never reads a clock or touches the session.
//!
//! A group is lost when it was reset (its frames up to the reset are still written), when
//! it never arrived before the output had to move past it (the track ended, or too much of
//! later groups piled up behind it), when it arrived after the output had moved past it,
//! or when it lies below the track's announced end (lite-05 SUBSCRIBE_END) and never came.
//! Groups below the subscription's first group are not part of it and are ignored.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;

use bytes::Bytes;

use crate::wire::ErrorCode;

/// Bytes of later groups held while the head group has not shown up, past which the head
/// group is given up as lost so memory stays bounded. Groups are delivered oldest first
/// (the subscription asks for `ordered`), so this much arriving ahead of a group means the
/// relay reset it before its stream header reached us.
pub const MAX_HELD: usize = 64 << 20;

/// Lost groups named one by one in a message; more are summarised as a count.
const MAX_RANGES: usize = 12;

/// Why a group did not reach the output whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Reset by the relay or publisher with `code`, after `written` of its bytes went out.
    Reset { code: u64, written: u64 },
    /// Never arrived, nor any group up to `last`: the output moved past them (the track
    /// ended, or later groups piled up).
    Missing { last: u64 },
    /// Arrived after the output had moved past it.
    Late,
}

/// Frames of a group that cannot be written yet, or the head group's state.
#[derive(Default)]
struct Pending {
    frames: Vec<Bytes>,
    done: bool,
    reset: Option<u64>,
    /// Bytes of this group written so far.
    written: u64,
}

pub struct Ledger<W: Write> {
    out: W,
    /// The subscription's first group, once known; groups below it are not ours.
    floor: Option<u64>,
    /// The next group to write; `None` until the first group is chosen.
    head: Option<u64>,
    pending: BTreeMap<u64, Pending>,
    /// Payload bytes held in `pending`.
    held: usize,
    /// Groups started and not ended yet.
    open: usize,
    /// The subscription's exclusive end, when the publisher said (lite-05 SUBSCRIBE_END).
    end: Option<u64>,
    /// The subscription stream is closed: no group will start any more.
    closed: bool,
    /// Lost groups by (first) sequence.
    lost: BTreeMap<u64, Loss>,
    written: u64,
    error: Option<std::io::Error>,
}

impl<W: Write> Ledger<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            floor: None,
            head: None,
            pending: BTreeMap::new(),
            held: 0,
            open: 0,
            end: None,
            closed: false,
            lost: BTreeMap::new(),
            written: 0,
            error: None,
        }
    }

    /// Whether the first group to write has been chosen.
    pub fn started(&self) -> bool {
        self.head.is_some()
    }

    /// Groups started and not ended yet.
    pub fn open_groups(&self) -> usize {
        self.open
    }

    /// Payload bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Groups lost so far.
    pub fn lost_groups(&self) -> u64 {
        self.lost
            .iter()
            .map(|(first, loss)| last_of(*first, loss) - first + 1)
            .sum()
    }

    /// Every loss, by first sequence (tests and messages).
    #[cfg(test)]
    fn losses(&self) -> Vec<(u64, Loss)> {
        self.lost.iter().map(|(s, l)| (*s, *l)).collect()
    }

    /// Whether group `sequence` is already counted as lost.
    fn is_lost(&self, sequence: u64) -> bool {
        self.lost
            .range(..=sequence)
            .next_back()
            .is_some_and(|(first, loss)| last_of(*first, loss) >= sequence)
    }

    /// The first write error, if any (the output is not written to after it).
    pub fn take_error(&mut self) -> Option<std::io::Error> {
        self.error.take()
    }

    pub fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                self.error = Some(e);
            }
        }
    }

    /// The subscription's first group is `first` (lite-05 SUBSCRIBE_START, or the
    /// requested start). Earlier groups are not part of it.
    pub fn start_at(&mut self, first: u64) {
        self.floor = Some(first);
        if self.head.is_none() {
            let below: Vec<u64> = self.pending.range(..first).map(|(s, _)| *s).collect();
            for seq in below {
                if let Some(group) = self.pending.remove(&seq) {
                    self.held -= held_by(&group);
                }
            }
            self.head = Some(first);
        }
        self.advance();
    }

    /// Starts at the lowest group seen so far, if any (lite-03/04, which do not name the
    /// first group: a lower one arriving later is lost, as it may be part of the track).
    pub fn start_at_lowest(&mut self) {
        if let (None, Some(&first)) = (self.head, self.pending.keys().next()) {
            self.head = Some(first);
            self.advance();
        }
    }

    /// The publisher says no group at or after `group` will come (lite-05 SUBSCRIBE_END).
    pub fn end_before(&mut self, group: u64) {
        self.end = Some(group);
        self.advance();
    }

    /// Group `sequence` started.
    pub fn group(&mut self, sequence: u64) {
        self.open += 1;
        if self.floor.is_some_and(|f| sequence < f) || self.end.is_some_and(|e| sequence >= e) {
            return;
        }
        if self.head.is_some_and(|h| sequence < h) {
            // Counted already when it is in a run the output skipped.
            if !self.is_lost(sequence) {
                tracing::debug!(sequence, "group arrived after the output passed it: lost");
                self.lost.insert(sequence, Loss::Late);
            }
            return;
        }
        self.pending.entry(sequence).or_default();
    }

    /// A whole frame of group `sequence`.
    pub fn frame(&mut self, sequence: u64, payload: Bytes) {
        if let Some(group) = self.pending.get_mut(&sequence) {
            self.held += payload.len();
            group.frames.push(payload);
            if self.head == Some(sequence) {
                self.advance();
            }
        }
    }

    /// Group `sequence` finished (`error: None`) or was reset with `error`.
    pub fn group_end(&mut self, sequence: u64, error: Option<u64>) {
        self.open = self.open.saturating_sub(1);
        if let Some(group) = self.pending.get_mut(&sequence) {
            group.done = true;
            group.reset = error;
        }
        self.advance();
    }

    /// The subscription stream closed: no more groups will start, though those open may
    /// still end.
    pub fn close(&mut self) {
        self.closed = true;
        self.advance();
    }

    /// Writes everything that can still be written once the track is over (every open
    /// group ended): groups that never arrived, up to the announced end, are lost.
    pub fn finish(&mut self) {
        self.closed = true;
        self.open = 0;
        if self.head.is_none() {
            // The start window never closed (lite-03/04): the lowest group seen is first.
            self.start_at_lowest();
        }
        for group in self.pending.values_mut() {
            group.done = true;
        }
        self.advance();
        if let (Some(head), Some(end)) = (self.head, self.end) {
            if head < end {
                self.skip_to(end);
            }
        }
        self.flush();
    }

    /// Writes every complete group in order, and what the head group has so far.
    fn advance(&mut self) {
        while let Some(next) = self.head {
            if self.end.is_some_and(|e| next >= e) {
                return;
            }
            let Some(group) = self.pending.get_mut(&next) else {
                let gave_up = (self.closed && self.open == 0) || self.held > MAX_HELD;
                match self.pending.keys().next() {
                    Some(&later) if gave_up => self.skip_to(later),
                    _ => return,
                }
                continue;
            };
            let frames = std::mem::take(&mut group.frames);
            for f in &frames {
                group.written += f.len() as u64;
            }
            let (done, reset, group_written) = (group.done, group.reset, group.written);
            for f in frames {
                self.held -= f.len();
                self.write(&f);
            }
            if !done {
                return;
            }
            self.pending.remove(&next);
            if let Some(code) = reset {
                tracing::debug!(
                    sequence = next,
                    code,
                    "group reset: its remaining frames are lost"
                );
                self.lost.insert(
                    next,
                    Loss::Reset {
                        code,
                        written: group_written,
                    },
                );
            }
            self.head = Some(next + 1);
        }
    }

    /// Moves the output to group `to`, every group before it that never came being lost.
    fn skip_to(&mut self, to: u64) {
        let Some(from) = self.head else { return };
        if to > from {
            tracing::debug!(from, to, "groups never arrived: lost");
            self.lost.insert(from, Loss::Missing { last: to - 1 });
        }
        self.head = Some(to);
    }

    fn write(&mut self, payload: &[u8]) {
        if self.error.is_none() {
            match self.out.write_all(payload) {
                Ok(()) => self.written += payload.len() as u64,
                Err(e) => self.error = Some(e),
            }
        }
    }

    /// What was lost, for a message: `None` when nothing was.
    pub fn describe_losses(&self) -> Option<String> {
        if self.lost.is_empty() {
            return None;
        }
        let count = self.lost_groups();
        let all = self.runs(|_| true);
        let mut text = format!(
            "{count} group{} lost ({})",
            if count == 1 { " was" } else { "s were" },
            ranges(&all)
        );
        let mut codes: Vec<u64> = self
            .lost
            .values()
            .filter_map(|l| match l {
                Loss::Reset { code, .. } => Some(*code),
                _ => None,
            })
            .collect();
        codes.sort_unstable();
        codes.dedup();
        let mut kinds: Vec<(Vec<(u64, u64)>, String)> = codes
            .into_iter()
            .map(|code| {
                let runs = self.runs(|l| matches!(l, Loss::Reset { code: c, .. } if *c == code));
                (runs, format!("reset with {}", code_name(code)))
            })
            .collect();
        let missing = self.runs(|l| matches!(l, Loss::Missing { .. }));
        kinds.push((missing, "never arrived".to_string()));
        let late = self.runs(|l| *l == Loss::Late);
        kinds.push((late, "arrived too late".to_string()));
        kinds.retain(|(runs, _)| !runs.is_empty());
        if let [(_, what)] = kinds.as_slice() {
            let _ = write!(text, ", {what}");
        } else {
            let each: Vec<String> = kinds
                .iter()
                .map(|(runs, what)| format!("{} {what}", ranges(runs)))
                .collect();
            let _ = write!(text, ": {}", each.join(", "));
        }
        let partial: u64 = self
            .lost
            .values()
            .map(|l| match l {
                Loss::Reset { written, .. } => *written,
                _ => 0,
            })
            .sum();
        if partial > 0 {
            let _ = write!(
                text,
                "; {partial} of the bytes written are from groups cut short"
            );
        }
        Some(text)
    }

    /// The runs `(first, last)` of lost groups whose loss matches `kind`, in order.
    fn runs(&self, kind: impl Fn(&Loss) -> bool) -> Vec<(u64, u64)> {
        self.lost
            .iter()
            .filter(|(_, l)| kind(l))
            .map(|(first, l)| (*first, last_of(*first, l)))
            .collect()
    }
}

/// The last group of the lost run starting at `first`.
fn last_of(first: u64, loss: &Loss) -> u64 {
    match loss {
        Loss::Missing { last } => *last,
        _ => first,
    }
}

/// Payload bytes a pending group holds.
fn held_by(group: &Pending) -> usize {
    group.frames.iter().map(Bytes::len).sum()
}

/// A reset code as `26 (Lagged: the subscriber fell too far behind)`.
fn code_name(code: u64) -> String {
    let why = match ErrorCode::from_code(code) {
        Some(ErrorCode::Lagged) => "Lagged: too far behind at the relay",
        Some(ErrorCode::Old) => "Old: past its latency budget",
        Some(ErrorCode::Cancel) => "Cancel",
        Some(other) => return format!("code {code} ({other:?})"),
        None => return format!("code {code}"),
    };
    format!("code {code} ({why})")
}

/// Sorted runs `(first, last)` as `3-5, 9` (adjacent runs merged), the first
/// [`MAX_RANGES`] of them.
pub fn ranges(runs: &[(u64, u64)]) -> String {
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for &(first, last) in runs {
        match merged.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(first) => *end = last,
            _ => merged.push((first, last)),
        }
    }
    let mut text = merged
        .iter()
        .take(MAX_RANGES)
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    if merged.len() > MAX_RANGES {
        let _ = write!(text, " and {} more runs", merged.len() - MAX_RANGES);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(b: &[u8]) -> Bytes {
        Bytes::copy_from_slice(b)
    }

    /// A ledger started at group 0 (as after lite-05 SUBSCRIBE_START 0).
    fn started() -> Ledger<Vec<u8>> {
        let mut ledger = Ledger::new(Vec::new());
        ledger.start_at(0);
        ledger
    }

    /// Group `seq` whole: start, one frame `[seq; len]`, end.
    fn whole(ledger: &mut Ledger<Vec<u8>>, seq: u64, len: usize) {
        ledger.group(seq);
        ledger.frame(seq, Bytes::from(vec![seq as u8; len]));
        ledger.group_end(seq, None);
    }

    #[test]
    fn out_of_order_groups_are_written_in_order_and_nothing_is_lost() {
        let mut ledger = started();
        whole(&mut ledger, 1, 2);
        assert_eq!(ledger.written(), 0, "group 1 waits for group 0");
        ledger.group(0);
        ledger.frame(0, bytes(b"a"));
        assert_eq!(
            ledger.written(),
            1,
            "the head group is written as it arrives"
        );
        ledger.frame(0, bytes(b"b"));
        ledger.group_end(0, None);
        ledger.end_before(2);
        ledger.close();
        ledger.finish();
        assert_eq!(ledger.out, b"ab\x01\x01");
        assert_eq!(ledger.lost_groups(), 0);
        assert_eq!(ledger.describe_losses(), None);
    }

    #[test]
    fn a_reset_group_is_lost_with_what_was_written_of_it() {
        let mut ledger = started();
        ledger.group(0);
        ledger.frame(0, bytes(b"abc"));
        ledger.group_end(0, Some(ErrorCode::Lagged.code()));
        whole(&mut ledger, 1, 2);
        ledger.close();
        ledger.finish();
        assert_eq!(
            ledger.out, b"abc\x01\x01",
            "the frames before the reset are written"
        );
        assert_eq!(
            ledger.losses(),
            vec![(
                0,
                Loss::Reset {
                    code: 26,
                    written: 3
                }
            )]
        );
        assert_eq!(
            ledger.describe_losses().unwrap(),
            "1 group was lost (0), reset with code 26 (Lagged: too far behind at the relay); \
             3 of the bytes written are from groups cut short"
        );
    }

    #[test]
    fn a_gap_is_skipped_only_when_the_track_is_over_and_is_lost() {
        let mut ledger = started();
        whole(&mut ledger, 0, 1);
        // Groups 1-2 were reset before their stream header reached us: they never show up.
        whole(&mut ledger, 3, 1);
        whole(&mut ledger, 5, 1);
        assert_eq!(ledger.out, [0], "the output waits for group 1");
        ledger.close();
        assert_eq!(
            ledger.out,
            [0, 3, 5],
            "closed, no group open: the gaps are skipped"
        );
        ledger.finish();
        assert_eq!(ledger.lost_groups(), 3);
        assert_eq!(
            ledger.describe_losses().unwrap(),
            "3 groups were lost (1-2, 4), never arrived"
        );
    }

    #[test]
    fn each_kind_of_loss_is_named_with_its_groups() {
        let mut ledger = started();
        whole(&mut ledger, 0, 1);
        for (seq, code) in [
            (1, ErrorCode::Old),
            (2, ErrorCode::Lagged),
            (3, ErrorCode::Lagged),
        ] {
            ledger.group(seq);
            ledger.group_end(seq, Some(code.code()));
        }
        whole(&mut ledger, 6, 1);
        ledger.end_before(9);
        ledger.close();
        ledger.finish();
        assert_eq!(ledger.lost_groups(), 7);
        assert_eq!(
            ledger.describe_losses().unwrap(),
            "7 groups were lost (1-5, 7-8): 1 reset with code 2 (Old: past its latency \
             budget), 2-3 reset with code 26 (Lagged: too far behind at the relay), 4-5, 7-8 \
             never arrived"
        );
    }

    #[test]
    fn the_gap_waits_for_open_groups() {
        let mut ledger = started();
        ledger.group(1);
        ledger.close();
        ledger.group(0);
        ledger.frame(0, bytes(b"x"));
        assert_eq!(ledger.out, b"x");
        ledger.group_end(0, None);
        ledger.frame(1, bytes(b"y"));
        ledger.group_end(1, None);
        ledger.finish();
        assert_eq!(ledger.out, b"xy");
        assert_eq!(ledger.lost_groups(), 0);
    }

    #[test]
    fn groups_missing_before_the_announced_end_are_lost() {
        let mut ledger = started();
        whole(&mut ledger, 0, 4);
        whole(&mut ledger, 1, 4);
        ledger.end_before(5);
        ledger.close();
        ledger.finish();
        assert_eq!(ledger.written(), 8);
        assert_eq!(
            ledger.describe_losses().unwrap(),
            "3 groups were lost (2-4), never arrived"
        );
    }

    #[test]
    fn a_group_arriving_after_the_output_passed_it_is_lost() {
        let mut ledger = Ledger::new(Vec::new());
        // lite-03/04: the lowest group seen first is chosen; group 2 came before group 1.
        whole(&mut ledger, 2, 1);
        ledger.start_at_lowest();
        whole(&mut ledger, 1, 1);
        whole(&mut ledger, 3, 1);
        ledger.close();
        ledger.finish();
        assert_eq!(ledger.out, [2, 3]);
        assert_eq!(ledger.losses(), vec![(1, Loss::Late)]);
        assert_eq!(
            ledger.describe_losses().unwrap(),
            "1 group was lost (1), arrived too late"
        );
    }

    #[test]
    fn a_skipped_group_arriving_later_is_counted_once() {
        let mut ledger = started();
        whole(&mut ledger, 0, 1);
        whole(&mut ledger, 2, 1);
        ledger.close();
        ledger.group(1);
        ledger.group_end(1, None);
        ledger.finish();
        assert_eq!(ledger.lost_groups(), 1);
        assert_eq!(ledger.out, [0, 2]);
    }

    #[test]
    fn groups_below_the_first_one_are_not_part_of_the_subscription() {
        let mut ledger = Ledger::new(Vec::new());
        whole(&mut ledger, 3, 1);
        whole(&mut ledger, 5, 1);
        ledger.start_at(4);
        whole(&mut ledger, 2, 1);
        ledger.end_before(6);
        ledger.close();
        ledger.finish();
        assert_eq!(ledger.out, [5]);
        assert_eq!(ledger.lost_groups(), 1, "group 4 never came");
        assert_eq!(ledger.open_groups(), 0);
    }

    #[test]
    fn the_head_group_is_given_up_when_too_much_piles_up_behind_it() {
        let mut ledger = started();
        let chunk = MAX_HELD / 4;
        for seq in 1..=4 {
            whole(&mut ledger, seq, chunk);
            assert_eq!(ledger.written(), 0);
        }
        whole(&mut ledger, 5, 1);
        assert_eq!(
            ledger.written(),
            4 * chunk as u64 + 1,
            "past MAX_HELD the output moves on"
        );
        assert_eq!(ledger.losses(), vec![(0, Loss::Missing { last: 0 })]);
    }

    #[test]
    fn ranges_merge_runs_and_stop_after_a_few() {
        assert_eq!(ranges(&[(3, 3), (4, 5), (9, 9)]), "3-5, 9");
        let many: Vec<(u64, u64)> = (0..20).map(|i| (i * 2, i * 2)).collect();
        assert_eq!(
            ranges(&many),
            "0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22 and 8 more runs"
        );
        assert_eq!(ranges(&[(u64::MAX, u64::MAX)]), u64::MAX.to_string());
    }

    #[test]
    fn a_write_error_stops_the_output_and_is_reported() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut ledger = Ledger::new(Full);
        ledger.start_at(0);
        ledger.group(0);
        ledger.frame(0, bytes(b"a"));
        assert_eq!(ledger.written(), 0);
        assert!(ledger.take_error().is_some());
    }
}
