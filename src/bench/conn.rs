//! One bench connection as a task on its thread's monoio runtime: the client loop of
//! `src/client` (receive -> timers -> session events -> role -> flush and send -> sleep),
//! with the thread's receive and send buffers shared by all its connections, and the two
//! roles: a paced publisher stamping its frames, a subscriber measuring them.
//!
//! Every connection has its own UDP socket, so its own source port: a relay that steers
//! by address hash spreads them over its shards like real clients.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::stamp::{Stamp, Tracker};
use super::stats::{Counters, Totals};
use super::{Phase, Shared};
use crate::client::{self, App, ClientError, Connect};
use crate::net::batch::{RecvBatch, BATCH};
use crate::net::gso::SendBatch;
use crate::net::udp::UdpIo;
use crate::session::{path, Event, Frame, Session};
use crate::wire::{ErrorCode, Subscribe, TrackInfo, DEFAULT_MAX_LATENCY};

/// Track name every bench publisher publishes.
pub const TRACK: &str = "frames";

/// A connection waits at most this long between turns, so it sees phase changes.
const PHASE_POLL: Duration = Duration::from_millis(200);

/// Bytes a publisher may have queued in its session; frames due beyond this are skipped
/// (counted) instead of queued without bound.
const MAX_QUEUED: usize = 16 << 20;

/// What a bench thread's connections share: settings, buffers and measurements.
pub struct Ctx {
    pub shared: Arc<Shared>,
    pub counters: Arc<Counters>,
    pub totals: RefCell<Totals>,
    pub connect: Connect,
    pub host: String,
    pub peer: SocketAddr,
    pub quic: RefCell<quiche::Config>,
    batch: RefCell<RecvBatch>,
    /// The send batch of this thread's connections, laid out for the first socket's GSO
    /// segment (every socket of a host gets the same).
    out: RefCell<Option<SendBatch>>,
    /// Wall clock (ns since the UNIX epoch) read once per loop turn.
    now_ns: Cell<u64>,
}

impl Ctx {
    pub fn new(
        shared: Arc<Shared>,
        counters: Arc<Counters>,
        connect: Connect,
        host: String,
        peer: SocketAddr,
        quic: quiche::Config,
    ) -> Self {
        Self {
            shared,
            counters,
            totals: RefCell::new(Totals::default()),
            connect,
            host,
            peer,
            quic: RefCell::new(quic),
            batch: RefCell::new(RecvBatch::new()),
            out: RefCell::new(None),
            now_ns: Cell::new(0),
        }
    }
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Runs one connection with `app` after `delay`, until the run stops. A connection that
/// fails before the run is over is counted and logged.
pub async fn run<A: App>(ctx: Rc<Ctx>, mut app: A, delay: Duration) {
    monoio::time::sleep(delay).await;
    if let Err(e) = drive(&ctx, &mut app).await {
        if ctx.shared.phase() < Phase::Stop {
            ctx.counters.failed.fetch_add(1, Relaxed);
            ctx.totals.borrow_mut().failed += 1;
            tracing::warn!(error = %e, "bench connection failed");
        }
    }
}

async fn drive<A: App>(ctx: &Ctx, app: &mut A) -> Result<(), ClientError> {
    let local: SocketAddr = if ctx.peer.is_ipv4() {
        "0.0.0.0:0".parse().expect("valid")
    } else {
        "[::]:0".parse().expect("valid")
    };
    let io = UdpIo::bind(local)?;
    io.enable_gro();
    let local = io.local_addr();
    let mut session = client::new_session(
        &ctx.connect,
        &ctx.host,
        local,
        ctx.peer,
        &mut ctx.quic.borrow_mut(),
    )?;
    let mut events = Vec::new();
    let mut checked = false;
    loop {
        {
            let mut batch = ctx.batch.borrow_mut();
            loop {
                let n = io.recv_batch(&mut batch)?;
                for (data, from) in batch.datagrams() {
                    let info = quiche::RecvInfo { from, to: local };
                    let _ = session.conn_mut().recv(data, info);
                }
                if n < BATCH {
                    break;
                }
            }
        }
        let now = Instant::now();
        ctx.now_ns.set(unix_ns());
        if session.conn().timeout_instant().is_some_and(|t| t <= now) {
            session.conn_mut().on_timeout();
        }
        if !checked && session.conn().is_established() {
            checked = true;
            client::check_certificate(&mut session, &ctx.connect.verify)?;
        }
        session.process();
        session.drain_events(&mut events);
        let mut closed = false;
        for event in events.drain(..) {
            closed |= event == Event::Closed;
            app.on_event(&mut session, event);
        }
        let done = app.poll(&mut session, now);
        if done.is_none() && closed {
            return Err(ClientError::Closed(client::close_reason(&session)));
        }
        session.flush(now);
        {
            let mut out = ctx.out.borrow_mut();
            let out = out.get_or_insert_with(|| io.send_batch_of(crate::net::gso::MAX_RUN));
            io.send_from(session.conn_mut(), out)?;
        }
        if let Some(result) = done {
            return result;
        }
        let wake_at = [session.next_timeout(), app.next_wake()]
            .into_iter()
            .flatten()
            .min();
        let timeout = wake_at
            .map_or(PHASE_POLL, |t| t.saturating_duration_since(Instant::now()))
            .min(PHASE_POLL);
        io.wait(Some(timeout), None).await;
    }
}

/// Ends a connection at the end of the run: a CONNECTION_CLOSE the caller sends.
fn close(session: &mut Session) -> Option<Result<(), ClientError>> {
    session.close(ErrorCode::Cancel, "bench done");
    Some(Ok(()))
}

/// How a publisher paces and shapes its frames.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub interval: Duration,
    pub frame_size: usize,
    pub group_frames: u64,
}

struct OpenGroup {
    frames: u64,
    prev_ts: u64,
    streams: Vec<u64>,
}

/// A publisher of one broadcast with one track, sending stamped frames at a fixed pace
/// from the moment its session is ready until the run drains.
pub struct Publisher {
    ctx: Rc<Ctx>,
    track: usize,
    broadcast: String,
    pacing: Pacing,
    /// Served subscriptions and whether each has had its first group.
    subs: Vec<(u64, bool)>,
    group: Option<OpenGroup>,
    next_sequence: u64,
    next_index: u64,
    /// When the session became ready, and when the next frame is due.
    started: Option<Instant>,
    due: Option<Instant>,
    ended: bool,
}

impl Publisher {
    pub fn new(ctx: Rc<Ctx>, track: usize, broadcast: String, pacing: Pacing) -> Self {
        Self {
            ctx,
            track,
            broadcast,
            pacing,
            subs: Vec::new(),
            group: None,
            next_sequence: 0,
            next_index: 0,
            started: None,
            due: None,
            ended: false,
        }
    }

    fn publish(&mut self, session: &mut Session, now: Instant) {
        if self.group.is_none() {
            let sequence = self.next_sequence;
            self.next_sequence += 1;
            let streams = client::open_group_for_all(session, &mut self.subs, sequence);
            self.group = Some(OpenGroup {
                frames: 0,
                prev_ts: 0,
                streams,
            });
        }
        let group = self.group.as_mut().expect("opened above");
        let stamp = Stamp {
            sent_ns: self.ctx.now_ns.get(),
            index: self.next_index,
        };
        let ts = self
            .started
            .map_or(0, |s| now.duration_since(s).as_millis() as u64);
        let frame = Frame::new(stamp.payload(self.pacing.frame_size), ts, group.prev_ts);
        group.prev_ts = ts;
        for id in &group.streams {
            session.send_frame(*id, &frame);
        }
        group.frames += 1;
        self.ctx.shared.last_index[self.track].store(self.next_index, Relaxed);
        self.next_index += 1;
        if group.frames >= self.pacing.group_frames {
            self.finish_group(session);
        }
    }

    fn finish_group(&mut self, session: &mut Session) {
        if let Some(group) = self.group.take() {
            for id in group.streams {
                session.finish_group(id);
            }
        }
    }
}

impl App for Publisher {
    fn on_event(&mut self, session: &mut Session, event: Event) {
        match event {
            Event::Ready => {
                let now = Instant::now();
                self.started = Some(now);
                self.due = Some(now);
                note_version(&self.ctx, session);
            }
            Event::AnnounceInterest { stream, prefix } => {
                if path::strip(&self.broadcast, &prefix).is_some() {
                    session.reply_announces(stream, &[(&self.broadcast, &[])]);
                } else {
                    session.reply_announces(stream, &[]);
                }
            }
            Event::TrackRequest {
                stream,
                broadcast,
                track,
            } => {
                if broadcast == self.broadcast && track == TRACK {
                    let info = TrackInfo {
                        priority: 0,
                        ordered: false,
                        max_latency: DEFAULT_MAX_LATENCY,
                        timescale: 1000,
                    };
                    session.reply_track(stream, &info);
                } else {
                    session.reject(stream, ErrorCode::NotFound);
                }
            }
            Event::Subscribe { stream, request } => {
                if request.broadcast == self.broadcast && request.track == TRACK {
                    session.subscribe_ok(stream, request.priority);
                    self.subs.push((stream, false));
                    // A subscription starts with a whole group: end the open one early
                    // rather than keep the new subscriber waiting for the next.
                    self.finish_group(session);
                } else {
                    session.reject(stream, ErrorCode::NotFound);
                }
            }
            Event::RequestCancelled { stream } => self.subs.retain(|(s, _)| *s != stream),
            _ => {}
        }
    }

    fn poll(&mut self, session: &mut Session, now: Instant) -> Option<Result<(), ClientError>> {
        let phase = self.ctx.shared.phase();
        if phase >= Phase::Stop {
            return close(session);
        }
        if phase >= Phase::Drain {
            if !self.ended {
                self.ended = true;
                self.finish_group(session);
            }
            return None;
        }
        let measuring = phase == Phase::Measure;
        while let Some(due) = self.due.filter(|d| *d <= now) {
            self.due = Some(due + self.pacing.interval);
            if session.queued_bytes() >= MAX_QUEUED {
                if measuring {
                    self.ctx.totals.borrow_mut().skipped += 1;
                }
                continue;
            }
            self.publish(session, now);
            if measuring {
                self.ctx.totals.borrow_mut().published += 1;
            }
        }
        None
    }

    fn next_wake(&self) -> Option<Instant> {
        self.due.filter(|_| !self.ended)
    }
}

/// A subscriber of one publisher's track: waits for its announcement, subscribes from
/// the latest group, and records latency, bytes and lost frames.
pub struct Subscriber {
    ctx: Rc<Ctx>,
    track: usize,
    broadcast: String,
    subscribed: bool,
    tracker: Tracker,
}

impl Subscriber {
    pub fn new(ctx: Rc<Ctx>, track: usize, broadcast: String) -> Self {
        Self {
            ctx,
            track,
            broadcast,
            subscribed: false,
            tracker: Tracker::default(),
        }
    }

    fn on_frame(&mut self, payload: &[u8]) {
        let Some(stamp) = Stamp::parse(payload) else {
            return;
        };
        if self.tracker.received() == 0 {
            self.ctx.counters.receiving.fetch_add(1, Relaxed);
        }
        self.ctx.counters.seen.fetch_add(1, Relaxed);
        self.tracker.record(stamp.index);
        if self.ctx.shared.phase() == Phase::Measure {
            let latency = stamp.latency_us(self.ctx.now_ns.get());
            self.ctx.counters.add_frame(payload.len(), latency);
            let mut totals = self.ctx.totals.borrow_mut();
            totals.frames += 1;
            totals.bytes += payload.len() as u64;
            totals.latency.record(latency);
        }
    }
}

impl App for Subscriber {
    fn on_event(&mut self, session: &mut Session, event: Event) {
        match event {
            Event::Ready => {
                note_version(&self.ctx, session);
                let prefix = client::announce_prefix(&self.broadcast, session.root());
                session.request_announces(&prefix);
            }
            Event::Announced { path, active, .. }
                if active && !self.subscribed && path == self.broadcast =>
            {
                let request = Subscribe {
                    id: 0,
                    broadcast: self.broadcast.clone(),
                    track: TRACK.to_string(),
                    priority: 0,
                    ordered: false,
                    max_latency: DEFAULT_MAX_LATENCY,
                    start_group: None,
                    end_group: None,
                };
                self.subscribed = session.subscribe(&request, 0).is_some();
            }
            Event::Frame { frame, .. } => self.on_frame(frame.payload()),
            Event::GroupEnd { error: Some(_), .. } => {
                self.ctx.totals.borrow_mut().groups_reset += 1;
            }
            _ => {}
        }
    }

    fn poll(&mut self, session: &mut Session, _now: Instant) -> Option<Result<(), ClientError>> {
        if self.ctx.shared.phase() >= Phase::Stop {
            return close(session);
        }
        None
    }
}

impl Drop for Subscriber {
    /// Adds what this subscriber received and lost to its thread's totals when its
    /// connection ends: at the end of the run, or earlier if it failed.
    fn drop(&mut self) {
        let last = self.ctx.shared.last_index[self.track].load(Relaxed);
        let last = (last != u64::MAX).then_some(last);
        let mut totals = self.ctx.totals.borrow_mut();
        totals.lost += self.tracker.lost(last);
        totals.receiving += u64::from(self.tracker.received() > 0);
    }
}

fn note_version(ctx: &Ctx, session: &Session) {
    let mut totals = ctx.totals.borrow_mut();
    if totals.version.is_none() {
        totals.version = session.version().map(|v| v.to_string());
    }
}
