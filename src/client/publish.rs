//! `moqring pub`: standard input cut into frames and groups, published as one track.
//!
//! Input is read by a helper thread into a bounded channel, so a slow network slows the
//! reading instead of filling memory. Reading starts with the first subscription, so a
//! publisher started before its relay subscribes loses nothing. At end of input the track
//! is ended and the command waits until the relay has everything.
//!
//! Nothing slows a publisher down but its own connection to the relay: a subscriber on a
//! slower path loses groups at the relay (and `moqring sub` fails, naming them). With
//! `--rate-mbit` the payload is paced ([`Pacer`]) so a file can go through whole to
//! subscribers whose paths take that rate.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{App, ClientError};
use crate::session::{path, Event, Frame, Session};
use crate::wire::{ErrorCode, TrackInfo};

/// Queued bytes above which input is not read.
const MAX_QUEUED: usize = 4 << 20;
/// How long to wait for the relay to take the end of the track.
const END_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle time a paced publisher may catch up on in one burst (input that was late).
const PACE_CREDIT: Duration = Duration::from_millis(50);
/// Longest wait a paced publisher computes for one frame.
const MAX_FRAME_TIME: Duration = Duration::from_secs(86_400);

#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Absolute broadcast path (the URL path joined with the broadcast name).
    pub broadcast: String,
    pub track: String,
    pub frame_size: usize,
    pub group_frames: usize,
    /// Payload rate to pace to; `None` sends as fast as the connection takes it.
    pub rate: Option<Rate>,
}

/// A payload rate, parsed from Mbit/s (`--rate-mbit`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    bytes_per_sec: f64,
}

impl Rate {
    /// Slowest rate accepted, Mbit/s (1 kbit/s).
    pub const MIN_MBIT: f64 = 0.001;
    /// Fastest rate accepted, Mbit/s (1 Tbit/s).
    pub const MAX_MBIT: f64 = 1_000_000.0;

    /// The time `len` bytes take at this rate (at most [`MAX_FRAME_TIME`]).
    fn time_of(self, len: usize) -> Duration {
        Duration::try_from_secs_f64(len as f64 / self.bytes_per_sec)
            .map_or(MAX_FRAME_TIME, |d| d.min(MAX_FRAME_TIME))
    }
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mbit: f64 = s
            .trim()
            .parse()
            .map_err(|_| "expected a rate in Mbit/s, e.g. 50 or 2.5".to_string())?;
        if !(Self::MIN_MBIT..=Self::MAX_MBIT).contains(&mbit) {
            return Err(format!(
                "a rate must be from {} to {} Mbit/s",
                Self::MIN_MBIT,
                Self::MAX_MBIT
            ));
        }
        Ok(Self {
            bytes_per_sec: mbit * 1e6 / 8.0,
        })
    }
}

/// Paces payload to a [`Rate`]: a frame may go once the frames before it have had their
/// time at that rate. Idle time earns at most [`PACE_CREDIT`] of catching up. Sans-IO:
/// the caller passes `now`.
#[derive(Debug)]
struct Pacer {
    rate: Rate,
    /// When the next frame may go (`None`: at once).
    next: Option<Instant>,
}

impl Pacer {
    fn new(rate: Rate) -> Self {
        Self { rate, next: None }
    }

    /// When the next frame may go, if that is after `now`.
    fn wait_until(&self, now: Instant) -> Option<Instant> {
        self.next.filter(|t| *t > now)
    }

    /// `len` bytes went at `now`.
    fn sent(&mut self, now: Instant, len: usize) {
        let earliest = now.checked_sub(PACE_CREDIT).unwrap_or(now);
        let base = self.next.map_or(now, |t| t.max(earliest));
        self.next = Some(base + self.rate.time_of(len));
    }
}

struct Input {
    chunks: mpsc::Receiver<Bytes>,
    wake: monoio::net::UnixStream,
    wake_reader: UnixStream,
}

struct OpenGroup {
    sequence: u64,
    frames: usize,
    prev_ts: u64,
    streams: Vec<u64>,
}

pub struct Publisher {
    options: PublishOptions,
    /// Served subscribe streams, and whether each has seen its first group.
    subs: Vec<(u64, bool)>,
    input: Option<Input>,
    group: Option<OpenGroup>,
    next_sequence: u64,
    started: Instant,
    /// Input ended then: the track's end waits for its groups to be delivered.
    finishing: Option<Instant>,
    ending: Option<Instant>,
    closing: bool,
    pacer: Option<Pacer>,
    /// Input waits for the pacer until then.
    paced_until: Option<Instant>,
    /// Group streams finished but maybe not yet delivered: the command does not close
    /// the connection before they are (a relay may cancel a subscription as soon as it
    /// reads the track's end, while its last group is still in flight).
    unsettled: Vec<u64>,
}

impl Publisher {
    pub fn new(options: PublishOptions) -> Self {
        Self {
            subs: Vec::new(),
            input: None,
            group: None,
            next_sequence: 0,
            started: Instant::now(),
            finishing: None,
            ending: None,
            closing: false,
            pacer: options.rate.map(Pacer::new),
            paced_until: None,
            unsettled: Vec::new(),
            options,
        }
    }

    fn start_input(&mut self) -> Result<(), ClientError> {
        let (tx, rx) = mpsc::sync_channel::<Bytes>(64);
        let (wake_reader, wake_writer) = UnixStream::pair()?;
        wake_reader.set_nonblocking(true)?;
        let wake = monoio::net::UnixStream::from_std(wake_reader.try_clone()?)?;
        let frame_size = self.options.frame_size.max(1);
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || read_stdin(frame_size, tx, wake_writer))?;
        self.input = Some(Input {
            chunks: rx,
            wake,
            wake_reader,
        });
        Ok(())
    }

    fn publish(&mut self, session: &mut Session, payload: Bytes) {
        if self.group.is_none() {
            let sequence = self.next_sequence;
            self.next_sequence += 1;
            let streams = open_group_for_all(session, &mut self.subs, sequence);
            self.group = Some(OpenGroup {
                sequence,
                frames: 0,
                prev_ts: 0,
                streams,
            });
        }
        let group = self.group.as_mut().expect("opened above");
        let ts = self.started.elapsed().as_millis() as u64;
        let frame = Frame::new(payload, ts, group.prev_ts);
        group.prev_ts = ts;
        for id in &group.streams {
            session.send_frame(*id, &frame);
        }
        group.frames += 1;
        tracing::trace!(sequence = group.sequence, frames = group.frames, "frame");
        if group.frames >= self.options.group_frames {
            self.finish_group(session);
        }
    }

    fn finish_group(&mut self, session: &mut Session) {
        if let Some(group) = self.group.take() {
            for id in group.streams {
                session.finish_group(id);
                self.unsettled.push(id);
            }
        }
        self.unsettled.retain(|&id| !delivered(session, id));
    }

    /// Input ended: the last group is finished; the track's end follows once every
    /// group is delivered ([`Publisher::announce_end`]).
    fn end_track(&mut self, session: &mut Session, now: Instant) {
        self.finish_group(session);
        self.finishing = Some(now);
        tracing::info!(
            groups = self.next_sequence,
            "end of input, ending track once its groups are delivered"
        );
    }

    /// Tells every subscriber where the track ends and closes the subscriptions. Sent
    /// after the groups were acknowledged: a relay that reads the end while a group is
    /// still in flight may give up on that group (moq-relay 0.17 cancels upstream as soon
    /// as its last viewer, which read the end, leaves).
    fn announce_end(&mut self, session: &mut Session, now: Instant) {
        for (sub, _) in &self.subs {
            session.subscribe_end(*sub, self.next_sequence);
            session.end_subscription(*sub, None);
        }
        self.ending = Some(now);
    }
}

fn read_stdin(frame_size: usize, tx: mpsc::SyncSender<Bytes>, mut wake: UnixStream) {
    use std::io::Write;
    let mut stdin = std::io::stdin().lock();
    loop {
        let mut buf = vec![0u8; frame_size];
        let mut filled = 0;
        while filled < frame_size {
            match stdin.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::error!(error = %e, "reading stdin");
                    break;
                }
            }
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        if tx.send(Bytes::from(buf)).is_err() {
            return;
        }
        let _ = wake.write_all(&[1]);
        if filled < frame_size {
            break;
        }
    }
    drop(tx);
    let _ = wake.write_all(&[0]);
}

impl App for Publisher {
    fn on_event(&mut self, session: &mut Session, event: Event) {
        match event {
            Event::AnnounceInterest { stream, prefix } => {
                let broadcast = &self.options.broadcast;
                if path::strip(broadcast, &prefix).is_some() {
                    session.reply_announces(stream, &[(broadcast, &[])]);
                } else {
                    session.reply_announces(stream, &[]);
                }
            }
            Event::TrackRequest {
                stream,
                broadcast,
                track,
            } => {
                if broadcast == self.options.broadcast && track == self.options.track {
                    let info = TrackInfo {
                        priority: 0,
                        ordered: false,
                        max_latency: crate::wire::DEFAULT_MAX_LATENCY,
                        timescale: 1000,
                    };
                    session.reply_track(stream, &info);
                } else {
                    session.reject(stream, ErrorCode::NotFound);
                }
            }
            Event::Subscribe { stream, request } => {
                let ours = request.broadcast == self.options.broadcast
                    && request.track == self.options.track;
                if !ours || self.ending.is_some() {
                    session.reject(stream, ErrorCode::NotFound);
                    return;
                }
                tracing::info!(stream, "subscribed");
                session.subscribe_ok(stream, request.priority);
                self.subs.push((stream, false));
                if self.input.is_none() {
                    if let Err(e) = self.start_input() {
                        tracing::error!(error = %e, "cannot read stdin");
                    }
                }
            }
            Event::RequestCancelled { stream } => {
                self.subs.retain(|(s, _)| *s != stream);
            }
            _ => {}
        }
    }

    fn poll(&mut self, session: &mut Session, now: Instant) -> Option<Result<(), ClientError>> {
        if self.closing {
            return session.conn().is_closed().then_some(Ok(()));
        }
        if let Some(since) = self.finishing {
            self.unsettled.retain(|&id| !delivered(session, id));
            let settled = self.unsettled.is_empty() && session.queued_bytes() == 0;
            if settled || now.duration_since(since) > END_TIMEOUT {
                self.finishing = None;
                self.announce_end(session, now);
            }
            return None;
        }
        if let Some(since) = self.ending {
            self.unsettled.retain(|&id| !delivered(session, id));
            let settled = self.unsettled.is_empty() && session.queued_bytes() == 0;
            if (self.subs.is_empty() && settled) || now.duration_since(since) > END_TIMEOUT {
                if !self.subs.is_empty() {
                    tracing::warn!("relay did not confirm the end of the track in time");
                } else if !settled {
                    tracing::warn!(
                        groups = self.unsettled.len(),
                        "group streams still undelivered at the end"
                    );
                }
                self.closing = true;
                session.close(ErrorCode::Cancel, "done");
            }
            return None;
        }
        let input = self.input.as_mut()?;
        let mut drain = [0u8; 64];
        while matches!(std::io::Read::read(&mut input.wake_reader, &mut drain), Ok(n) if n > 0) {}
        let mut eof = false;
        self.paced_until = None;
        while session.queued_bytes() < MAX_QUEUED {
            if let Some(at) = self.pacer.as_ref().and_then(|p| p.wait_until(now)) {
                self.paced_until = Some(at);
                break;
            }
            let Some(next) = self.input.as_ref().map(|i| i.chunks.try_recv()) else {
                break;
            };
            match next {
                Ok(chunk) => {
                    if let Some(pacer) = &mut self.pacer {
                        pacer.sent(now, chunk.len());
                    }
                    self.publish(session, chunk)
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    eof = true;
                    break;
                }
            }
        }
        if eof {
            self.input = None;
            self.end_track(session, now);
        }
        None
    }

    fn wake(&self) -> Option<&monoio::net::UnixStream> {
        self.input.as_ref().map(|i| &i.wake)
    }

    fn next_wake(&self) -> Option<Instant> {
        // While the end waits for acknowledgements, look again soon even if nothing else
        // wakes the loop (the last ACK may already be in).
        let finishing = self
            .finishing
            .map(|_| Instant::now() + std::time::Duration::from_millis(20));
        [self.paced_until, finishing].into_iter().flatten().min()
    }
}

/// Opens group `sequence` on every subscription `(stream, started)`, announcing the first
/// group of each (lite-05 SUBSCRIBE_START); returns the group streams.
/// Whether QUIC is done with our group stream `id`: every byte and the FIN acknowledged
/// (quiche then forgets the stream), or the peer stopped it.
fn delivered(session: &mut Session, id: u64) -> bool {
    matches!(
        session.conn_mut().stream_capacity(id),
        Err(quiche::Error::InvalidStreamState(_) | quiche::Error::StreamStopped(_))
    )
}

pub(crate) fn open_group_for_all(
    session: &mut Session,
    subs: &mut [(u64, bool)],
    sequence: u64,
) -> Vec<u64> {
    let mut streams = Vec::with_capacity(subs.len());
    for (sub, started) in subs {
        if !*started {
            *started = true;
            session.subscribe_start(*sub, sequence);
        }
        streams.extend(session.open_group(*sub, sequence));
    }
    streams
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_out_of_range_or_not_numbers_are_refused() {
        for bad in [
            "0", "-1", "NaN", "inf", "-inf", "1e300", "1000001", "0.0009", "", "fast",
        ] {
            let err = bad.parse::<Rate>().expect_err(bad);
            assert!(!err.contains('\n'), "one line: {err}");
        }
        assert_eq!("8".parse::<Rate>().unwrap().bytes_per_sec, 1e6);
        assert_eq!(" 0.001 ".parse::<Rate>().unwrap().bytes_per_sec, 125.0);
        assert!("1000000".parse::<Rate>().is_ok());
    }

    #[test]
    fn a_frame_takes_its_time_at_the_rate() {
        let rate: Rate = "8".parse().unwrap();
        assert_eq!(rate.time_of(1000), Duration::from_millis(1));
        let slowest: Rate = "0.001".parse().unwrap();
        assert_eq!(slowest.time_of(usize::MAX), MAX_FRAME_TIME);
    }

    #[test]
    fn the_pacer_spaces_frames_and_gives_little_credit_for_idle_time() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // 8 Mbit/s: 1000 bytes a millisecond.
        let mut pacer = Pacer::new("8".parse().unwrap());
        assert_eq!(pacer.wait_until(t0), None, "the first frame goes at once");
        pacer.sent(t0, 10_000);
        assert_eq!(pacer.wait_until(t0), Some(t0 + ms(10)));
        assert_eq!(pacer.wait_until(t0 + ms(10)), None);
        pacer.sent(t0 + ms(10), 10_000);
        assert_eq!(pacer.wait_until(t0 + ms(10)), Some(t0 + ms(20)));
        // A second idle: only PACE_CREDIT (50 ms) of it is caught up on.
        let late = t0 + ms(1020);
        for _ in 0..6 {
            assert_eq!(pacer.wait_until(late), None);
            pacer.sent(late, 10_000);
        }
        assert_eq!(
            pacer.wait_until(late),
            Some(late + ms(10)),
            "50 ms of credit spent, then the rate again"
        );
    }
}
