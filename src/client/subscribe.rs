//! `moqring sub`: waits for a broadcast's announcement, subscribes to one track and writes
//! every frame payload to standard output in group order, until the track ends.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{App, ClientError};
use crate::session::{path, Event, Session};
use crate::wire::Subscribe;

#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Absolute broadcast path (the URL path joined with the broadcast name).
    pub broadcast: String,
    pub track: String,
}

/// Frames of a group that cannot be written yet (an earlier group is still open).
#[derive(Default)]
struct Pending {
    frames: Vec<Bytes>,
    done: bool,
}

pub struct Subscriber<W: Write> {
    options: SubscribeOptions,
    out: W,
    subscribed: bool,
    /// The group being written; later groups wait in `pending`.
    next: Option<u64>,
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
            next: None,
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

    /// Writes every group that is complete, in order, and the open head group's frames.
    fn advance(&mut self) {
        while let Some(next) = self.next {
            let Some(group) = self.pending.get_mut(&next) else {
                return;
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
            self.next = Some(next + 1);
            if !self.pending.contains_key(&(next + 1)) {
                // Skip ahead only once the track is over; a later group may still be coming.
                if self.closed.is_some() {
                    self.next = self.pending.keys().next().copied();
                } else {
                    return;
                }
            }
        }
    }
}

impl<W: Write> App for Subscriber<W> {
    fn on_event(&mut self, session: &mut Session, event: Event) {
        let broadcast = &self.options.broadcast;
        match event {
            Event::Ready => {
                // Ask for everything the session may name; lite-03/04 sessions see the
                // whole relay, so narrow to the broadcast's parent.
                let parent = broadcast.rsplit_once('/').map_or("", |(p, _)| p);
                let prefix = if path::strip(parent, session.root()).is_some() {
                    parent.to_string()
                } else {
                    session.root().to_string()
                };
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
                    max_latency: Duration::ZERO,
                    start_group: None,
                    end_group: None,
                };
                self.subscribed = session.subscribe(&request, 0).is_some();
            }
            Event::SubscribeAccepted { start, .. } if self.next.is_none() => self.next = start,
            Event::Group { sequence, .. } => {
                self.open_groups += 1;
                if self.next.is_none() {
                    self.next = Some(sequence);
                }
                if self.next.is_some_and(|n| sequence >= n) {
                    self.pending.entry(sequence).or_default();
                }
            }
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

    fn poll(&mut self, _session: &mut Session, _now: Instant) -> Option<Result<(), ClientError>> {
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
}
