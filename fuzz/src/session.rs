//! The `session` and `session_h3` targets: a server [`Session`] paired in memory with a
//! raw quiche client whose every stream write, reset, STOP_SENDING, datagram and close
//! comes from the fuzz input, on one moq-lite version, before and after a valid lite-05
//! SETUP. The client of `session` speaks raw QUIC (a moq-lite ALPN); the client of
//! `session_h3` speaks HTTP/3 (ALPN `h3`) and its ops also write the HTTP/3 pieces (control
//! stream, Extended CONNECT, stream prefixes, capsules) that arbitrary bytes would rarely hit.
//!
//! The input's first byte picks the version; then [`Op`]s until it ends. Client ops write
//! arbitrary bytes on any stream id; server ops play the relay: they make requests of the
//! client and answer the requests the session reported, as the relay would. After each op
//! datagrams move both ways until quiet, the session runs `process`, `drain_events` and
//! `flush(now)`, and the bytes held by the process are checked against what the input fed.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moqring::net::quic;
use moqring::session::{BytesFactory, Event, Frame, Session, SessionConfig};
use moqring::webtransport::{capsule, headers, settings, stream as wt_stream};
use moqring::wire::{
    DataType, ErrorCode, FrameHeader, Message, Setup, Subscribe, TrackInfo, Version,
};

pub use crate::session_ops::{read, script, Answer, GroupAction, Op};
use crate::session_ops::{ANSWERS, GROUP_ACTIONS};

/// What the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Raw QUIC with the moq-lite ALPN of the input's version.
    Quic,
    /// HTTP/3 (ALPN `h3`); the version travels in the CONNECT.
    WebTransport,
}

const CLIENT: &str = "10.0.0.2:5000";
const SERVER: &str = "10.0.0.1:4443";

/// Rounds of datagram exchange after one op at most (a busy pair need not settle).
const MAX_ROUNDS: usize = 64;

/// Request streams, subscriptions and groups the harness remembers at most (oldest go).
const REMEMBERED: usize = 64;

/// Session limits small enough for fuzz inputs to reach.
fn session_config() -> SessionConfig {
    SessionConfig {
        max_frame_size: 64 << 10,
        max_queued_bytes: 256 << 10,
        ..SessionConfig::default()
    }
}

/// A certificate and the QUIC configurations, made once per process.
struct Configs {
    _identity: moqring::tls::Identity,
    server: quiche::Config,
    clients: Vec<(Version, quiche::Config)>,
    h3_client: quiche::Config,
}

thread_local! {
    static CONFIGS: RefCell<Option<Configs>> = const { RefCell::new(None) };
}

fn configs() -> Configs {
    let identity = moqring::tls::self_signed().expect("certificate");
    let server = quic::server_config(
        &identity.cert.to_string_lossy(),
        &identity.key.to_string_lossy(),
        &Version::ALL,
        30_000,
    )
    .expect("server config");
    let clients = Version::ALL
        .into_iter()
        .map(|v| {
            (
                v,
                quic::client_config(&[v], false, false).expect("client config"),
            )
        })
        .collect();
    Configs {
        _identity: identity,
        server,
        clients,
        h3_client: quic::client_config(&Version::ALL, false, true).expect("h3 client config"),
    }
}

/// The client connection and the server session between ops.
pub struct Harness {
    client: quiche::Connection,
    server: Session,
    now: Instant,
    events: Vec<Event>,
    ready: bool,
    /// Request streams the client opened that the server may answer.
    requests: Vec<u64>,
    /// The server's subscriptions to the client.
    upstream: Vec<u64>,
    /// Group streams the server opened.
    groups: Vec<u64>,
    next_token: usize,
    /// Bytes the input made the client send or the server queue.
    pub fed: usize,
    buf: Vec<u8>,
}

fn remember(list: &mut Vec<u64>, id: u64) {
    if list.len() == REMEMBERED {
        list.remove(0);
    }
    list.push(id);
}

fn pick(list: &[u64], index: u8) -> Option<u64> {
    (!list.is_empty()).then(|| list[usize::from(index) % list.len()])
}

impl Harness {
    /// A client of `version` over `transport` connected to a fresh server session
    /// (handshake done).
    pub fn new(version: Version, transport: Transport) -> Self {
        CONFIGS.with(|cell| {
            let mut cell = cell.borrow_mut();
            let configs = cell.get_or_insert_with(configs);
            let client_config = match transport {
                Transport::Quic => {
                    &mut configs
                        .clients
                        .iter_mut()
                        .find(|(v, _)| *v == version)
                        .expect("every version")
                        .1
                }
                Transport::WebTransport => &mut configs.h3_client,
            };
            let (client_addr, server_addr) = addrs();
            let cid = quiche::ConnectionId::from_ref(&[1; quiche::MAX_CONN_ID_LEN]);
            let client = quiche::connect(
                Some("localhost"),
                &cid,
                client_addr,
                server_addr,
                client_config,
            )
            .expect("connect");
            let sid = quiche::ConnectionId::from_ref(&[2; quiche::MAX_CONN_ID_LEN]);
            let server = quiche::accept_with_buf_factory::<BytesFactory>(
                &sid,
                None,
                server_addr,
                client_addr,
                &mut configs.server,
            )
            .expect("accept");
            let mut harness = Self {
                client,
                server: Session::new(server, session_config()),
                now: Instant::now(),
                events: Vec::new(),
                ready: false,
                requests: Vec::new(),
                upstream: Vec::new(),
                groups: Vec::new(),
                next_token: 0,
                fed: 0,
                buf: vec![0u8; 65536],
            };
            harness.pump();
            harness
        })
    }

    /// Whether the server session reported `Ready` (its moq-lite session is up).
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    pub fn server(&self) -> &Session {
        &self.server
    }

    /// Whether both ends are closed (nothing more can happen).
    pub fn is_over(&self) -> bool {
        self.client.is_closed() && self.server.conn().is_closed()
    }

    pub fn apply(&mut self, op: Op) {
        match op {
            Op::Write { stream, fin, data } => self.send(stream, &data, fin),
            Op::Fill {
                stream,
                byte,
                count,
            } => self.send(stream, &vec![byte; usize::from(count)], false),
            Op::Reset { stream, code } => {
                let _ = self
                    .client
                    .stream_shutdown(stream.into(), quiche::Shutdown::Write, code);
            }
            Op::StopSending { stream, code } => {
                let _ = self
                    .client
                    .stream_shutdown(stream.into(), quiche::Shutdown::Read, code);
            }
            Op::Setup { stream, path } => {
                let mut data = Vec::new();
                DataType::Setup.encode(&mut data);
                let setup = Setup {
                    path: Some(path),
                    origin: Some(7),
                    ..Setup::default()
                };
                setup.encode(&mut data, Version::Lite05);
                self.send(stream, &data, true);
            }
            Op::Read => self.read(),
            Op::Advance { ms } => self.advance(Duration::from_millis(ms.into())),
            Op::GoAway { uri } if self.ready => {
                self.server.go_away(&uri);
            }
            Op::Close { client: true, code } => {
                let _ = self.client.close(true, code, b"fuzz");
            }
            Op::Close {
                client: false,
                code,
            } => {
                let code = ErrorCode::ALL[(code % ErrorCode::ALL.len() as u64) as usize];
                self.server.close(code, "fuzz");
            }
            Op::Control { stream } => self.send(stream, &settings::client_control_stream(), false),
            Op::Connect {
                stream,
                offer,
                path,
            } => {
                let mut offered: Vec<String> = Vec::new();
                if offer & 8 != 0 {
                    offered.push("moq-lite-99".into());
                }
                for (bit, v) in Version::ALL.iter().enumerate() {
                    if offer & (1 << bit) != 0 {
                        offered.push(v.to_string());
                    }
                }
                if offer & 16 != 0 {
                    offered.reverse();
                }
                let offered: Vec<&str> = offered.iter().map(String::as_str).collect();
                let request = headers::encode_request("localhost:4443", &path, &offered);
                self.send(stream, &request, false);
            }
            Op::Prefix { stream, session } => {
                let session = u64::from(session);
                let prefix = if stream & 2 == 0 {
                    wt_stream::bidi_prefix(session)
                } else {
                    wt_stream::uni_prefix(session)
                };
                self.send(stream, &prefix, false);
            }
            Op::Capsule {
                stream,
                close,
                code,
                reason,
            } => {
                let frame = if close {
                    capsule::close_frame(code, &reason)
                } else {
                    capsule::drain_frame()
                };
                self.send(stream, &frame, false);
            }
            Op::Datagram { data } if self.client.dgram_send(&data).is_ok() => {
                self.fed += data.len();
            }
            op if self.ready => self.serve(op),
            _ => {}
        }
        self.pump();
    }

    /// The relay's side: requests of the client and answers to it (after `Ready` only).
    fn serve(&mut self, op: Op) {
        match op {
            Op::Subscribe {
                broadcast,
                track,
                priority,
                start,
            } => {
                let request = Subscribe {
                    id: 0,
                    broadcast,
                    track,
                    priority,
                    ordered: start & 0x80 != 0,
                    max_latency: Duration::from_millis(u64::from(start) * 10),
                    start_group: (start & 1 == 1).then_some(u64::from(start >> 1)),
                    end_group: None,
                };
                let token = self.next_token;
                self.next_token += 1;
                if let Some(stream) = self.server.subscribe(&request, token) {
                    remember(&mut self.upstream, stream);
                }
            }
            Op::RequestAnnounces { prefix } => {
                self.server.request_announces(&prefix);
            }
            Op::RequestTrack { broadcast, track } => {
                let token = self.next_token;
                self.next_token += 1;
                self.server.request_track(&broadcast, &track, token);
            }
            Op::Unsubscribe { index } => {
                if let Some(stream) = pick(&self.upstream, index) {
                    self.upstream.retain(|s| *s != stream);
                    self.server.unsubscribe(stream);
                }
            }
            Op::Answer { index, action, arg } => {
                if let Some(stream) = pick(&self.requests, index) {
                    self.answer(stream, ANSWERS[usize::from(action) % ANSWERS.len()], arg);
                }
            }
            Op::Group { index, action, arg } => {
                if let Some(group) = pick(&self.groups, index) {
                    let action = GROUP_ACTIONS[usize::from(action) % GROUP_ACTIONS.len()];
                    self.group(group, action, arg);
                }
            }
            _ => {}
        }
    }

    fn answer(&mut self, stream: u64, answer: Answer, arg: u64) {
        const PATHS: [&str; 4] = ["", "anon", "anon/x", "a/b/c"];
        let path = PATHS[(arg % 4) as usize];
        let hops = [arg, 2];
        match answer {
            Answer::ReplyAnnounces => self.server.reply_announces(stream, &[(path, &hops[..1])]),
            Answer::Announce => self.server.announce(stream, path, &hops, arg & 4 == 0),
            Answer::ReplyTrack => {
                let info = TrackInfo {
                    priority: arg as u8,
                    ordered: arg & 1 == 1,
                    max_latency: Duration::from_millis(arg % 10_000),
                    timescale: (arg % 1_000_000).max(1),
                };
                self.server.reply_track(stream, &info);
            }
            Answer::ReplyFetch => {
                let frames: Vec<Frame> = (0..arg % 4)
                    .map(|i| self.frame((arg % 4096) as usize, i * 40))
                    .collect();
                self.server.reply_fetch(stream, &frames);
            }
            Answer::Reject => {
                let code = ErrorCode::ALL[(arg % ErrorCode::ALL.len() as u64) as usize];
                self.server.reject(stream, code);
            }
            Answer::SubscribeOk => self.server.subscribe_ok(stream, arg as u8),
            Answer::SubscribeStart => self.server.subscribe_start(stream, arg),
            Answer::SubscribeEnd => self.server.subscribe_end(stream, arg),
            Answer::EndSubscription => self.server.end_subscription(stream, None),
            Answer::ResetSubscription => self.server.end_subscription(stream, Some(arg)),
            Answer::OpenGroup => {
                if let Some(group) = self.server.open_group(stream, arg) {
                    remember(&mut self.groups, group);
                }
            }
        }
    }

    fn group(&mut self, group: u64, action: GroupAction, arg: u16) {
        match action {
            GroupAction::Frame => {
                let frame = self.frame(usize::from(arg), u64::from(arg) * 3);
                self.server.send_frame(group, &frame);
            }
            GroupAction::Finish => self.server.finish_group(group),
            GroupAction::Reset => self.server.reset_group(group, u64::from(arg)),
        }
    }

    fn frame(&mut self, len: usize, timestamp: u64) -> Frame {
        self.fed += len;
        Frame::new(Bytes::from(vec![0x5a; len]), timestamp, 0)
    }

    fn send(&mut self, stream: u8, data: &[u8], fin: bool) {
        if let Ok(n) = self.client.stream_send(stream.into(), data, fin) {
            self.fed += n;
        }
    }

    fn read(&mut self) {
        let readable: Vec<u64> = self.client.readable().collect();
        for id in readable {
            while let Ok((n, _)) = self.client.stream_recv(id, &mut self.buf) {
                if n == 0 {
                    break;
                }
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.client.timeout_instant().is_some_and(|t| t <= self.now) {
            self.client.on_timeout();
        }
        let server = self.server.conn_mut();
        if server.timeout_instant().is_some_and(|t| t <= self.now) {
            server.on_timeout();
        }
    }

    /// Moves datagrams both ways until quiet (at most [`MAX_ROUNDS`]), running the session
    /// after each round.
    fn pump(&mut self) {
        let (client_addr, server_addr) = addrs();
        let to_client = quiche::RecvInfo {
            from: server_addr,
            to: client_addr,
        };
        let to_server = quiche::RecvInfo {
            from: client_addr,
            to: server_addr,
        };
        for _ in 0..MAX_ROUNDS {
            self.server.flush(self.now);
            let mut moved = false;
            while let Ok((n, _)) = self.server.conn_mut().send(&mut self.buf) {
                moved = true;
                let _ = self.client.recv(&mut self.buf[..n], to_client);
            }
            while let Ok((n, _)) = self.client.send(&mut self.buf) {
                moved = true;
                let _ = self.server.conn_mut().recv(&mut self.buf[..n], to_server);
            }
            self.server.process();
            self.server.drain_events(&mut self.events);
            self.note_events();
            if !moved {
                return;
            }
        }
    }

    fn note_events(&mut self) {
        for event in self.events.drain(..) {
            match event {
                Event::Ready => self.ready = true,
                Event::AnnounceInterest { stream, .. }
                | Event::TrackRequest { stream, .. }
                | Event::Subscribe { stream, .. }
                | Event::Fetch { stream, .. } => remember(&mut self.requests, stream),
                Event::RequestCancelled { stream } => self.requests.retain(|s| *s != stream),
                Event::Frame { frame, .. } => check_frame(&frame),
                _ => {}
            }
        }
    }
}

/// A frame read from the peer must go on to subscribers of every version as a valid frame
/// header followed by the same payload.
fn check_frame(frame: &Frame) {
    for version in Version::ALL {
        let wire = frame.to_wire(version);
        let mut slice = &wire[..];
        // Any delta is in range from the middle of the timestamp range.
        let header = FrameHeader::decode(&mut slice, version, 1 << 61)
            .unwrap_or_else(|e| panic!("{frame:?} on {version}: {e}"));
        assert_eq!(
            header.size,
            frame.payload().len() as u64,
            "{frame:?} on {version}"
        );
        assert_eq!(slice, &frame.payload()[..], "{frame:?} on {version}");
    }
}

fn addrs() -> (SocketAddr, SocketAddr) {
    (
        CLIENT.parse().expect("address"),
        SERVER.parse().expect("address"),
    )
}

/// Runs one session input with a client speaking `transport`; `held` reports the bytes the
/// process holds, checked after every op against what the input fed.
pub fn run(data: &[u8], transport: Transport, held: impl Fn() -> usize) {
    let (version, ops) = read(data);
    let mut harness = Harness::new(version, transport);
    let baseline = held();
    for (n, op) in ops.into_iter().enumerate() {
        if harness.is_over() {
            return;
        }
        harness.apply(op);
        crate::check_held(held(), baseline, harness.fed, n + 1);
    }
}
