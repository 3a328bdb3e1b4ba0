//! `moqring sub`: waits for a broadcast's announcement, subscribes to one track and writes
//! every frame payload to standard output in group order, until the track ends.
//!
//! Groups travel on parallel streams and may show up out of order. On lite-05 the
//! relay's SUBSCRIBE_START names the first group; older versions say nothing, so the first
//! group is chosen as the lowest one seen during a short window after the first arrival.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{App, ClientError};
use crate::session::{path, Event, Session};
use crate::wire::{Subscribe, DEFAULT_MAX_LATENCY};

/// How long groups are gathered before the first one is chosen (lite-03/04 only).
const START_WINDOW: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Absolute broadcast path (the URL path joined with the broadcast name).
    pub broadcast: String,
    pub track: String,
    /// First group wanted; `None` joins at the publisher's latest group.
    pub start_group: Option<u64>,
}

/// Frames of a group that cannot be written yet (an earlier group is still open).
#[derive(Default)]
struct Pending {
    frames: Vec<Bytes>,
    done: bool,
}

/// Where output stands.
enum Head {
    /// No group seen yet.
    Waiting,
    /// Groups seen since `since`; the first is not chosen yet.
    Gathering { since: Instant },
    /// Writing group `next`; later groups wait in `pending`.
    Writing { next: u64 },
}

pub struct Subscriber<W: Write> {
    options: SubscribeOptions,
    out: W,
    subscribed: bool,
    head: Head,
    pending: BTreeMap<u64, Pending>,
    open_groups: usize,
    closed: Option<Option<u64>>,
    lost_groups: u64,
    error: Option<String>,
}

impl<W: Write> Subscriber<W> {
    pub fn new(options: SubscribeOptions, out: W) -> Self {
        Self {
            options,
            out,
            subscribed: false,
            head: Head::Waiting,
            pending: BTreeMap::new(),
            open_groups: 0,
            closed: None,
            lost_groups: 0,
            error: None,
        }
    }

    fn write(&mut self, payload: &[u8]) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(payload) {
                self.error = Some(format!("writing output: {e}"));
            }
        }
    }

    /// Starts writing at the lowest group seen, once the start window has passed.
    fn choose_start(&mut self, now: Instant) {
        if let Head::Gathering { since } = self.head {
            if self.closed.is_some() || now.duration_since(since) >= START_WINDOW {
                if let Some(&first) = self.pending.keys().next() {
                    self.head = Head::Writing { next: first };
                }
            }
        }
    }

    /// Writes every complete group in order, and what the head group has so far.
    fn advance(&mut self) {
        while let Head::Writing { next } = self.head {
            let Some(group) = self.pending.get_mut(&next) else {
                // The head group has not shown up; once the track is over, skip the gap.
                match (self.closed, self.pending.keys().next()) {
                    (Some(_), Some(&later)) if self.open_groups == 0 => {
                        self.head = Head::Writing { next: later };
                        continue;
                    }
                    _ => return,
                }
            };
            let frames = std::mem::take(&mut group.frames);
            let done = group.done;
            for f in frames {
                self.write(&f);
            }
            if !done {
                return;
            }
            self.pending.remove(&next);
            self.head = Head::Writing { next: next + 1 };
        }
    }

    fn on_group(&mut self, sequence: u64) {
        self.open_groups += 1;
        match self.head {
            Head::Waiting => {
                self.head = Head::Gathering {
                    since: Instant::now(),
                }
            }
            Head::Writing { next } if sequence < next => {
                tracing::debug!(
                    sequence,
                    next,
                    "group older than the output position, skipped"
                );
                return;
            }
            _ => {}
        }
        self.pending.entry(sequence).or_default();
    }
}

impl<W: Write> App for Subscriber<W> {
    fn on_event(&mut self, session: &mut Session, event: Event) {
        let broadcast = &self.options.broadcast;
        match event {
            Event::Ready => {
                let prefix = announce_prefix(broadcast, session.root());
                session.request_announces(&prefix);
            }
            Event::Announced { path, active, .. }
                if path == *broadcast && active && !self.subscribed =>
            {
                tracing::info!(%broadcast, "announced, subscribing");
                let request = Subscribe {
                    id: 0,
                    broadcast: broadcast.clone(),
                    track: self.options.track.clone(),
                    priority: 0,
                    ordered: true,
                    max_latency: DEFAULT_MAX_LATENCY,
                    start_group: self.options.start_group,
                    end_group: None,
                };
                self.subscribed = session.subscribe(&request, 0).is_some();
            }
            Event::SubscribeAccepted {
                start: Some(first), ..
            } if !matches!(self.head, Head::Writing { .. }) => {
                self.head = Head::Writing { next: first };
                self.pending.retain(|seq, _| *seq >= first);
            }
            Event::Group { sequence, .. } => self.on_group(sequence),
            Event::Frame {
                sequence, frame, ..
            } => {
                if let Some(group) = self.pending.get_mut(&sequence) {
                    group.frames.push(frame.payload().clone());
                }
            }
            Event::GroupEnd {
                sequence, error, ..
            } => {
                self.open_groups = self.open_groups.saturating_sub(1);
                if let Some(code) = error {
                    self.lost_groups += 1;
                    tracing::warn!(sequence, code, "group reset, its remaining frames are lost");
                }
                if let Some(group) = self.pending.get_mut(&sequence) {
                    group.done = true;
                }
            }
            Event::SubscriptionClosed { error, .. } => self.closed = Some(error),
            _ => {}
        }
        self.advance();
    }

    fn poll(&mut self, _session: &mut Session, now: Instant) -> Option<Result<(), ClientError>> {
        self.choose_start(now);
        self.advance();
        if let Err(e) = self.out.flush() {
            self.error.get_or_insert(format!("writing output: {e}"));
        }
        if let Some(e) = self.error.take() {
            return Some(Err(ClientError::App(e)));
        }
        let closed = self.closed?;
        if self.open_groups > 0 {
            return None;
        }
        for group in self.pending.values_mut() {
            group.done = true;
        }
        self.advance();
        let _ = self.out.flush();
        match closed {
            None if self.lost_groups == 0 => Some(Ok(())),
            None => Some(Err(ClientError::App(format!(
                "track ended, {} groups were lost",
                self.lost_groups
            )))),
            Some(code) => Some(Err(ClientError::App(format!(
                "track ended by the relay with error code {code}"
            )))),
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        match self.head {
            Head::Gathering { since } => Some(since + START_WINDOW),
            _ => None,
        }
    }
}

/// The prefix to watch for `broadcast`'s announcement: its parent, so only its own
/// announcement comes back, when the session may name it (lite-03/04 sessions see the
/// whole relay), else the session root.
pub(crate) fn announce_prefix(broadcast: &str, root: &str) -> String {
    let parent = broadcast.rsplit_once('/').map_or("", |(p, _)| p);
    if path::strip(parent, root).is_some() {
        parent.to_string()
    } else {
        root.to_string()
    }
}
