//! `moqring sub`: waits for a broadcast's announcement, subscribes to one track and writes
//! every frame payload to standard output in group order, until the track ends.
//!
//! Groups travel on parallel streams and may show up out of order. On lite-05 the
//! relay's SUBSCRIBE_START names the first group; older versions say nothing, so the first
//! group is chosen as the lowest one seen during a short window after the first arrival.
//! The [`Ledger`] writes them in order and counts what was lost; the command fails,
//! naming the lost groups and the bytes written, when anything was.

use std::io::Write;
use std::time::{Duration, Instant};

use super::ledger::Ledger;
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

/// Where the choice of the first group stands (lite-03/04, which do not name it).
enum Start {
    /// No group seen yet, or the first group is chosen.
    Idle,
    /// A group showed up; the window opens at the next poll.
    Seen,
    /// The first group is chosen at this time, among the groups seen by then.
    At(Instant),
}

pub struct Subscriber<W: Write> {
    options: SubscribeOptions,
    subscribed: bool,
    start: Start,
    ledger: Ledger<W>,
    /// `Some` once the subscription stream closed: FIN (`None`) or reset code.
    closed: Option<Option<u64>>,
    /// Whether a loss has been logged already (the summary at the end names them all).
    warned: bool,
}

impl<W: Write> Subscriber<W> {
    pub fn new(options: SubscribeOptions, out: W) -> Self {
        Self {
            options,
            subscribed: false,
            start: Start::Idle,
            ledger: Ledger::new(out),
            closed: None,
            warned: false,
        }
    }

    /// Starts writing at the lowest group seen, once the start window has passed.
    fn choose_start(&mut self, now: Instant) {
        match self.start {
            Start::Seen => self.start = Start::At(now + START_WINDOW),
            Start::At(at) if now >= at || self.closed.is_some() => {
                self.start = Start::Idle;
                self.ledger.start_at_lowest();
            }
            _ => {}
        }
    }

    /// Logs the first loss as it happens; the summary at the end names them all.
    fn warn_once(&mut self) {
        if !self.warned && self.ledger.lost_groups() > 0 {
            self.warned = true;
            if let Some(what) = self.ledger.describe_losses() {
                tracing::warn!("the output will be incomplete: {what}");
            }
        }
    }

    /// The command's result once the track is over.
    fn result(&mut self, closed: Option<u64>) -> Result<(), ClientError> {
        self.ledger.finish();
        if let Some(e) = self.ledger.take_error() {
            return Err(ClientError::App(format!("writing output: {e}")));
        }
        let written = self.ledger.written();
        let lost = self.ledger.describe_losses();
        match (closed, lost) {
            (None, None) => Ok(()),
            (None, Some(lost)) => Err(ClientError::App(format!(
                "track ended but {lost}; wrote {written} bytes (a publisher faster than the \
                 path to this subscriber loses groups at the relay: see `moqring pub --rate-mbit`)"
            ))),
            (Some(code), lost) => Err(ClientError::App(format!(
                "track ended by the relay with error code {code}{}; wrote {written} bytes",
                lost.map(|l| format!("; {l}")).unwrap_or_default()
            ))),
        }
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
            } => {
                if let Some(asked) = self.options.start_group.filter(|a| *a < first) {
                    tracing::info!(
                        asked,
                        first,
                        "the relay starts later than asked: earlier groups are no longer cached"
                    );
                }
                self.start = Start::Idle;
                self.ledger.start_at(first);
            }
            Event::SubscribeEnd { group, .. } => self.ledger.end_before(group),
            Event::Group { sequence, .. } => {
                if !self.ledger.started() && matches!(self.start, Start::Idle) {
                    self.start = Start::Seen;
                }
                self.ledger.group(sequence);
            }
            Event::Frame {
                sequence, frame, ..
            } => self.ledger.frame(sequence, frame.payload().clone()),
            Event::GroupEnd {
                sequence, error, ..
            } => self.ledger.group_end(sequence, error),
            Event::SubscriptionClosed { error, .. } => {
                self.closed = Some(error);
                self.ledger.close();
            }
            _ => {}
        }
        self.warn_once();
    }

    fn poll(&mut self, _session: &mut Session, now: Instant) -> Option<Result<(), ClientError>> {
        self.choose_start(now);
        self.ledger.flush();
        if let Some(e) = self.ledger.take_error() {
            return Some(Err(ClientError::App(format!("writing output: {e}"))));
        }
        let closed = self.closed?;
        if self.ledger.open_groups() > 0 {
            return None;
        }
        Some(self.result(closed))
    }

    fn next_wake(&self) -> Option<Instant> {
        match self.start {
            Start::At(at) => Some(at),
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
