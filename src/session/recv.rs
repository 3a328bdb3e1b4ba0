//! Incoming stream data: per-stream buffers and the parse state of each stream kind.
//!
//! Bytes are read from quiche once into a per-stream `BytesMut`; a frame payload is split
//! off that buffer as a `Bytes` and from then on only shared. Control messages are small;
//! their buffers are released when empty so idle subscribers cost little memory.

use bytes::{Buf, BytesMut};

use super::{path, Delivery, Event, Phase, Served, Session};
use crate::session::Frame;
use crate::wire::{
    Announce, AnnounceOk, AnnounceRequest, ControlType, DataType, DecodeError, ErrorCode, Fetch,
    FrameHeader, Goaway, GroupHeader, Message, Setup, Subscribe, SubscribeResponse,
    SubscribeUpdate, TrackInfo, TrackRequest, Version,
};

/// Smallest free space offered to quiche for one read (so the smallest receive buffer a
/// frame can be cut from; see [`super::Frame::memory_cost`]).
pub(crate) const MIN_READ: usize = 1024;
/// Largest single growth of a stream buffer.
const MAX_READ: usize = 64 * 1024;
/// Largest buffer a stream other than a group's grows to by doubling (then by
/// [`MIN_READ`]): one message of [`crate::wire::MAX_MESSAGE_SIZE`] with its size (or an
/// HTTP/3 frame with its type and length). A peer leaving a message but its end on each of
/// many streams then costs about what it sent, not twice.
const MAX_MESSAGE_BUF: usize = crate::wire::MAX_MESSAGE_SIZE + 16;

/// What a stream carries and where its parser stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// Peer-opened bidi stream, type not read yet.
    Bidi,
    /// Peer-opened uni stream, type not read yet.
    Uni,
    ServeAnnounce {
        prefix: Option<String>,
    },
    ServeSubscribe {
        requested: bool,
    },
    ServeTrack,
    ServeFetch,
    /// A GOAWAY from the relay (client sessions only).
    GoAway,
    Setup,
    GroupHead,
    Group {
        token: usize,
        sequence: u64,
        prev_ts: u64,
    },
    /// Data we ignore until FIN (e.g. a probe stream, a cancelled group).
    Discard,
    AnnounceReplies {
        origin: Option<u64>,
    },
    SubscribeReplies {
        token: usize,
    },
    TrackReplies {
        token: usize,
    },
    /// WebTransport: a peer uni stream, its HTTP/3 stream type not read yet.
    H3Uni,
    /// WebTransport: a peer bidi stream, its first varint not read yet.
    H3Bidi,
    /// The peer's HTTP/3 control stream (`settings`: its SETTINGS arrived).
    H3Control {
        settings: bool,
    },
    /// The CONNECT stream: its request (server) or answer (client) `headers`, then capsules.
    Connect {
        headers: bool,
    },
}

#[derive(Debug)]
pub(super) struct InStream {
    pub kind: Kind,
    buf: BytesMut,
    filled: usize,
    fin: bool,
}

impl InStream {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            buf: BytesMut::new(),
            filled: 0,
            fin: false,
        }
    }

    pub(super) fn data(&self) -> &[u8] {
        &self.buf[..self.filled]
    }

    /// Bytes received and not yet parsed.
    pub fn pending(&self) -> usize {
        self.filled
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.filled -= n;
    }

    /// Decodes one message from the buffered bytes; `Ok(None)` means wait for more.
    fn take<M: Message>(&mut self, version: Version) -> Result<Option<M>, DecodeError> {
        let mut slice = self.data();
        let before = slice.len();
        match M::decode(&mut slice, version) {
            Ok(msg) => {
                let used = before - slice.len();
                self.consume(used);
                Ok(Some(msg))
            }
            Err(DecodeError::Short) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn take_with<T>(
        &mut self,
        decode: impl FnOnce(&mut &[u8]) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        let mut slice = self.data();
        let before = slice.len();
        match decode(&mut slice) {
            Ok(v) => {
                let used = before - slice.len();
                self.consume(used);
                Ok(Some(v))
            }
            Err(DecodeError::Short) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes room for the next read from quiche.
    fn reserve(&mut self) {
        if self.buf.len() - self.filled < MIN_READ {
            let mut len = self.filled + self.filled.clamp(MIN_READ, MAX_READ);
            if !matches!(self.kind, Kind::Group { .. }) {
                len = len.min(MAX_MESSAGE_BUF).max(self.filled + MIN_READ);
            }
            self.buf.resize(len, 0);
        }
    }

    /// Releases an empty buffer (control streams idle most of the time).
    fn shrink_if_empty(&mut self) {
        if self.filled == 0 && !matches!(self.kind, Kind::Group { .. }) {
            self.buf = BytesMut::new();
        }
    }
}

/// Why a stream's parse stopped.
pub(super) enum Failure {
    /// Close the whole connection.
    Connection(ErrorCode, &'static str),
    /// Reset / stop just this stream.
    Stream(ErrorCode),
    /// Refuse this request (already logged): reset with `Unauthorized`.
    Unauthorized,
    /// The HTTP/3 layer under WebTransport failed: close the connection with this code.
    H3(crate::webtransport::H3Error, &'static str),
}

impl From<DecodeError> for Failure {
    fn from(e: DecodeError) -> Self {
        let code = match e {
            DecodeError::TooLarge => ErrorCode::BoundsExceeded,
            DecodeError::Version => ErrorCode::Version,
            DecodeError::UnknownType(_) => ErrorCode::UnexpectedMessage,
            _ => ErrorCode::Decode,
        };
        Failure::Connection(code, "malformed control message")
    }
}

impl Session {
    pub(super) fn read_streams(&mut self) {
        loop {
            let was_ready = self.phase == Phase::Ready;
            // Data (uni) streams before control (bidi) streams, so a group's last bytes are
            // handled before a subscription end that arrived with them; and lower ids
            // first, as ids grow in opening order, to keep groups in sequence.
            let mut readable = std::mem::take(&mut self.readable);
            readable.clear();
            readable.extend(self.conn.readable());
            readable.sort_unstable_by_key(|id| (super::wire_is_bidi(*id), *id));
            for &id in &readable {
                self.read_stream(id);
                if self.conn.is_closed() {
                    break;
                }
            }
            self.readable = readable;
            if self.conn.is_closed() {
                return;
            }
            // A lite-05 SETUP read in this pass releases the streams skipped before it.
            if was_ready || self.phase != Phase::Ready {
                break;
            }
            // Over WebTransport their bytes may sit in our buffers already.
            self.reparse_buffered();
        }
    }

    /// Parses again the buffered bytes of streams that waited for the session to be ready.
    fn reparse_buffered(&mut self) {
        let mut waiting = std::mem::take(&mut self.readable);
        waiting.clear();
        waiting.extend(
            self.recv
                .iter()
                .filter(|(_, s)| s.pending() > 0 && matches!(s.kind, Kind::Bidi | Kind::H3Uni))
                .map(|(id, _)| *id),
        );
        waiting.sort_unstable_by_key(|id| (super::wire_is_bidi(*id), *id));
        for &id in &waiting {
            self.read_stream(id);
            if self.conn.is_closed() {
                break;
            }
        }
        self.readable = waiting;
    }

    fn read_stream(&mut self, id: u64) {
        let version = match self.version {
            Some(v) => v,
            // Before the CONNECT chose a version only HTTP/3 streams are parsed, and they
            // do not depend on it.
            None if self.wt.is_some() => Version::Lite05,
            None => return,
        };
        if !self.recv.contains_key(&id) {
            if self.is_local(id) {
                // A stream we no longer track (e.g. cancelled): drain and forget.
                let code = self.wire_code(ErrorCode::Cancel.code());
                let _ = self.conn.stream_shutdown(id, quiche::Shutdown::Read, code);
                return;
            }
            let kind = match (super::wire_is_bidi(id), self.wt.is_some()) {
                (true, false) => Kind::Bidi,
                (false, false) => Kind::Uni,
                (true, true) => Kind::H3Bidi,
                (false, true) => Kind::H3Uni,
            };
            // Until the peer's SETUP arrives (lite-05 server) only uni streams are read.
            if self.phase != Phase::Ready && kind == Kind::Bidi {
                return;
            }
            self.recv.insert(id, InStream::new(kind));
        }
        if self.phase != Phase::Ready && self.recv.get(&id).is_some_and(|s| s.kind == Kind::Bidi) {
            return;
        }
        let mut reset = None;
        let mut stream = self.recv.remove(&id).expect("inserted above");
        // A stream kept after its FIN (waiting for the session) has nothing more in quiche.
        while !stream.fin {
            stream.reserve();
            let filled = stream.filled;
            match self.conn.stream_recv(id, &mut stream.buf[filled..]) {
                Ok((n, fin)) => {
                    stream.filled += n;
                    stream.fin |= fin;
                }
                Err(quiche::Error::Done) => break,
                Err(quiche::Error::StreamReset(code)) => {
                    reset = Some(self.app_code(code));
                    break;
                }
                Err(_) => {
                    reset = Some(ErrorCode::Cancel.code());
                    break;
                }
            }
            if let Err(failure) = self.parse(id, &mut stream, version) {
                self.fail(id, stream, failure);
                return;
            }
        }
        if let Err(failure) = self.parse(id, &mut stream, version) {
            self.fail(id, stream, failure);
            return;
        }
        // A WebTransport stream read before its session was ready waits with its bytes.
        let waiting = stream.pending() > 0
            && (stream.kind == Kind::H3Uni
                || (stream.kind == Kind::Bidi && self.phase != Phase::Ready));
        if reset.is_some() || (stream.fin && !waiting) {
            self.on_stream_end(id, stream, reset);
        } else {
            stream.shrink_if_empty();
            self.recv.insert(id, stream);
        }
    }

    /// Reports a group stream that ended in error (no-op for other kinds of stream).
    pub(super) fn group_failed(&mut self, kind: &Kind, code: ErrorCode) {
        if let Kind::Group {
            token, sequence, ..
        } = *kind
        {
            self.events.push(Event::GroupEnd {
                token,
                sequence,
                error: Some(code.code()),
            });
        }
    }

    fn fail(&mut self, id: u64, stream: InStream, failure: Failure) {
        match failure {
            Failure::Connection(code, reason) => {
                tracing::warn!(stream = id, kind = ?stream.kind, ?code, reason, "protocol error, closing connection");
                self.close(code, reason);
            }
            Failure::Stream(code) => {
                tracing::warn!(stream = id, kind = ?stream.kind, ?code, "protocol error, resetting stream");
                self.group_failed(&stream.kind, code);
                self.reset_stream(id, code.code());
            }
            Failure::Unauthorized => {
                self.auth_refusals += 1;
                self.reset_stream(id, ErrorCode::Unauthorized.code());
            }
            Failure::H3(code, reason) => {
                tracing::warn!(stream = id, kind = ?stream.kind, ?code, reason, "HTTP/3 error, closing connection");
                let _ = self.conn.close(true, code.code(), reason.as_bytes());
            }
        }
    }

    /// Parses every complete message buffered on a stream.
    fn parse(&mut self, id: u64, s: &mut InStream, v: Version) -> Result<(), Failure> {
        loop {
            let progressed = match s.kind.clone() {
                // A lite-05 request waits for the peer's SETUP (WebTransport streams get
                // here with their bytes read; see `reparse_buffered`).
                Kind::Bidi if self.phase != Phase::Ready => false,
                Kind::H3Uni => self.parse_h3_uni(id, s)?,
                Kind::H3Bidi => self.parse_h3_bidi(id, s)?,
                Kind::H3Control { settings } => self.parse_h3_control(s, settings)?,
                Kind::Connect { headers } => self.parse_connect(id, s, headers)?,
                Kind::Bidi => match s.take_with(ControlType::decode)? {
                    None => false,
                    Some(t) => {
                        s.kind = self.serve_kind(t, v)?;
                        true
                    }
                },
                Kind::Uni => match s
                    .take_with(DataType::decode)
                    .map_err(|_| Failure::Stream(ErrorCode::UnexpectedStream))?
                {
                    None => false,
                    Some(DataType::Setup) if v.has_setup_stream() => {
                        s.kind = Kind::Setup;
                        true
                    }
                    Some(DataType::Setup) => {
                        return Err(Failure::Stream(ErrorCode::UnexpectedStream))
                    }
                    Some(DataType::Group) => {
                        s.kind = Kind::GroupHead;
                        true
                    }
                },
                Kind::Setup => match s.take::<Setup>(v)? {
                    None => false,
                    Some(setup) => {
                        self.on_setup(setup);
                        s.kind = Kind::Discard;
                        true
                    }
                },
                Kind::ServeAnnounce { prefix: None } => match s.take::<AnnounceRequest>(v)? {
                    None => false,
                    Some(req) => {
                        let prefix = self.absolute(&req.prefix);
                        s.kind = Kind::ServeAnnounce {
                            prefix: Some(prefix.clone()),
                        };
                        self.announcing.insert(id, prefix.clone());
                        if req.exclude_hop != 0 {
                            self.peer_origin = Some(req.exclude_hop);
                        }
                        self.events
                            .push(Event::AnnounceInterest { stream: id, prefix });
                        true
                    }
                },
                Kind::ServeSubscribe { requested: false } => match s.take::<Subscribe>(v)? {
                    None => false,
                    Some(mut req) => {
                        req.broadcast = self.absolute(&req.broadcast);
                        if !self.may_get(&req.broadcast) {
                            return Err(self.unauthorized("subscribe", &req.broadcast));
                        }
                        s.kind = Kind::ServeSubscribe { requested: true };
                        self.served.insert(
                            id,
                            Served {
                                id: req.id,
                                delivery: Delivery::new(req.priority, req.ordered, req.max_latency),
                                groups: Default::default(),
                                ending: None,
                                fin_at: None,
                            },
                        );
                        self.events.push(Event::Subscribe {
                            stream: id,
                            request: req,
                        });
                        true
                    }
                },
                Kind::ServeSubscribe { requested: true } => match s.take::<SubscribeUpdate>(v)? {
                    None => false,
                    Some(update) => {
                        // The group range stays as first asked; delivery follows the update.
                        tracing::debug!(stream = id, ?update, "subscribe update");
                        let delivery =
                            Delivery::new(update.priority, update.ordered, update.max_latency);
                        self.update_delivery(id, delivery);
                        true
                    }
                },
                Kind::ServeTrack => match s.take::<TrackRequest>(v)? {
                    None => false,
                    Some(req) => {
                        let broadcast = self.absolute(&req.broadcast);
                        if !self.may_get(&broadcast) {
                            return Err(self.unauthorized("track", &broadcast));
                        }
                        self.events.push(Event::TrackRequest {
                            stream: id,
                            broadcast,
                            track: req.track,
                        });
                        // Nothing more may follow on this stream but a FIN.
                        s.kind = Kind::Discard;
                        self.pending_replies.insert(id);
                        true
                    }
                },
                Kind::GoAway => match s.take::<Goaway>(v)? {
                    None => false,
                    Some(goaway) => {
                        self.events.push(Event::GoAway { uri: goaway.uri });
                        s.kind = Kind::Discard;
                        true
                    }
                },
                Kind::ServeFetch => match s.take::<Fetch>(v)? {
                    None => false,
                    Some(mut request) => {
                        request.broadcast = self.absolute(&request.broadcast);
                        if !self.may_get(&request.broadcast) {
                            return Err(self.unauthorized("fetch", &request.broadcast));
                        }
                        self.events.push(Event::Fetch {
                            stream: id,
                            request,
                        });
                        s.kind = Kind::Discard;
                        self.pending_replies.insert(id);
                        true
                    }
                },
                Kind::AnnounceReplies { origin } => self.parse_announce_reply(id, s, v, origin)?,
                Kind::SubscribeReplies { token } => {
                    match s.take_with(|b| SubscribeResponse::decode(b, v))? {
                        None => false,
                        Some(resp) => {
                            self.on_subscribe_response(token, resp);
                            true
                        }
                    }
                }
                Kind::TrackReplies { token } => match s.take::<TrackInfo>(v)? {
                    None => false,
                    Some(info) => {
                        self.events.push(Event::TrackInfo { token, info });
                        self.finish_stream(id);
                        s.kind = Kind::Discard;
                        true
                    }
                },
                Kind::GroupHead => match s
                    .take::<GroupHeader>(v)
                    .map_err(|_| Failure::Stream(ErrorCode::Decode))?
                {
                    None => false,
                    Some(head) => match self.upstream.get_mut(&head.subscribe) {
                        None => {
                            // A group for a subscription we ended or never made.
                            let code = self.wire_code(ErrorCode::Cancel.code());
                            let _ = self.conn.stream_shutdown(id, quiche::Shutdown::Read, code);
                            s.kind = Kind::Discard;
                            true
                        }
                        Some(up) => {
                            if !up.seen.insert(head.sequence) {
                                // A second stream for a group already opened: its frames
                                // could not be told from the first's.
                                tracing::debug!(group = head.sequence, "duplicate group refused");
                                return Err(Failure::Stream(ErrorCode::Duplicate));
                            }
                            let token = up.token;
                            s.kind = Kind::Group {
                                token,
                                sequence: head.sequence,
                                prev_ts: 0,
                            };
                            self.events.push(Event::Group {
                                token,
                                stream: id,
                                sequence: head.sequence,
                            });
                            true
                        }
                    },
                },
                Kind::Group {
                    token,
                    sequence,
                    prev_ts,
                } => self.parse_frame(s, v, token, sequence, prev_ts)?,
                Kind::Discard | Kind::ServeAnnounce { prefix: Some(_) } => {
                    if s.filled > 0 && matches!(s.kind, Kind::ServeAnnounce { .. }) {
                        return Err(Failure::Connection(
                            ErrorCode::UnexpectedMessage,
                            "data after announce request",
                        ));
                    }
                    let n = s.filled;
                    s.consume(n);
                    false
                }
            };
            if !progressed {
                return Ok(());
            }
        }
    }

    fn serve_kind(&mut self, t: ControlType, v: Version) -> Result<Kind, Failure> {
        Ok(match t {
            ControlType::Announce => Kind::ServeAnnounce { prefix: None },
            ControlType::Subscribe => Kind::ServeSubscribe { requested: false },
            ControlType::Track if v.has_track_stream() => Kind::ServeTrack,
            ControlType::Fetch if v.has_track_stream() => Kind::ServeFetch,
            ControlType::Goaway if !self.conn.is_server() && v.has_goaway() => Kind::GoAway,
            // Probing is optional: we measure nothing, so the stream is refused; a relay
            // takes no GOAWAY from its clients.
            ControlType::Probe | ControlType::Fetch | ControlType::Goaway => {
                return Err(Failure::Stream(ErrorCode::Unsupported))
            }
            _ => {
                return Err(Failure::Connection(
                    ErrorCode::UnexpectedStream,
                    "unexpected control stream type",
                ))
            }
        })
    }

    fn parse_announce_reply(
        &mut self,
        id: u64,
        s: &mut InStream,
        v: Version,
        origin: Option<u64>,
    ) -> Result<bool, Failure> {
        if v.has_announce_ok() && origin.is_none() {
            return Ok(match s.take::<AnnounceOk>(v)? {
                None => false,
                Some(ok) => {
                    s.kind = Kind::AnnounceReplies {
                        origin: Some(ok.origin),
                    };
                    true
                }
            });
        }
        let Some(msg) = s.take::<Announce>(v)? else {
            return Ok(false);
        };
        let (suffix, mut hops, active) = match msg {
            Announce::Active { suffix, hops } => (suffix, hops, true),
            Announce::Ended { suffix, hops } => (suffix, hops, false),
        };
        if let Some(origin) = origin.filter(|o| *o != 0) {
            hops.push(origin);
        }
        let prefix = self.announce_prefixes.get(&id).map_or("", |p| p.as_str());
        let path = path::join(prefix, &path::normalize(&suffix));
        if self.grant.as_ref().is_some_and(|g| !g.may_put(&path)) {
            tracing::warn!(%path, root = %self.root, "announcement outside the session's grant, ignored");
            return Ok(true);
        }
        self.events.push(Event::Announced {
            stream: id,
            path,
            hops,
            active,
        });
        Ok(true)
    }

    fn on_subscribe_response(&mut self, token: usize, resp: SubscribeResponse) {
        match resp {
            SubscribeResponse::Ok(_) => self
                .events
                .push(Event::SubscribeAccepted { token, start: None }),
            SubscribeResponse::Start { group } => self.events.push(Event::SubscribeAccepted {
                token,
                start: Some(group),
            }),
            SubscribeResponse::End { group } => {
                self.events.push(Event::SubscribeEnd { token, group })
            }
            SubscribeResponse::Drop(drop) => {
                tracing::debug!(token, ?drop, "upstream dropped groups")
            }
        }
    }

    fn parse_frame(
        &mut self,
        s: &mut InStream,
        v: Version,
        token: usize,
        sequence: u64,
        prev_ts: u64,
    ) -> Result<bool, Failure> {
        let mut slice = s.data();
        let before = slice.len();
        let header = match FrameHeader::decode(&mut slice, v, prev_ts) {
            Ok(h) => h,
            Err(DecodeError::Short) => return Ok(false),
            Err(_) => return Err(Failure::Stream(ErrorCode::Decode)),
        };
        let header_len = before - slice.len();
        if header.size > self.config.max_frame_size as u64 {
            return Err(Failure::Stream(ErrorCode::FrameTooLarge));
        }
        let size = header.size as usize;
        if s.filled < header_len + size {
            return Ok(false);
        }
        // The timestamp comes first; its length is what its first byte says, however
        // wide the peer chose to write either varint.
        let ts_len = if v.has_track_stream() {
            crate::wire::varint::encoded_len(s.data()[0])
        } else {
            0
        };
        let head = s.buf.split_to(header_len).freeze();
        let payload = s.buf.split_to(size).freeze();
        s.filled -= header_len + size;
        s.kind = Kind::Group {
            token,
            sequence,
            prev_ts: header.timestamp,
        };
        let frame = Frame::from_parts(head, ts_len as u8, payload);
        self.events.push(Event::Frame {
            token,
            sequence,
            frame,
        });
        Ok(true)
    }

    fn on_setup(&mut self, setup: Setup) {
        if self.wt.is_some() {
            // Over WebTransport the CONNECT carried the path and admitted the session.
            if self.conn.is_server() && self.phase == Phase::AwaitSetup {
                if !setup.path().is_empty() {
                    tracing::debug!("SETUP path ignored over WebTransport");
                }
                self.become_ready();
            }
            return;
        }
        if self.conn.is_server() && self.phase == Phase::AwaitSetup && self.admitting.is_none() {
            // The path travels with its query (`?jwt=...`); the root is the path alone.
            let (target, jwt) = crate::auth::split_target(setup.path());
            self.root = path::normalize(target);
            tracing::debug!(root = %self.root, token = jwt.is_some(), "peer setup");
            self.admit(jwt.as_deref());
        }
    }

    /// Refuses a request for `path` outside the session's grant: logged, reset with
    /// `Unauthorized`, and nothing of it kept.
    fn unauthorized(&self, request: &'static str, path: &str) -> Failure {
        tracing::warn!(request, path, root = %self.root, "request outside the session's grant, refused");
        Failure::Unauthorized
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills `s` by reads of whatever room [`InStream::reserve`] leaves, up to `len` bytes.
    fn fill(s: &mut InStream, len: usize) {
        while s.filled < len {
            s.reserve();
            s.filled = s.buf.len().min(len);
        }
    }

    #[test]
    fn a_message_buffer_stops_growing_at_one_whole_message() {
        let mut control = InStream::new(Kind::ServeSubscribe { requested: false });
        fill(&mut control, crate::wire::MAX_MESSAGE_SIZE + 4);
        assert!(
            control.buf.len() <= MAX_MESSAGE_BUF + MIN_READ,
            "{}",
            control.buf.len()
        );
        // A group's frames may be larger: its buffer grows by up to 64 KiB a read.
        let mut group = InStream::new(Kind::Group {
            token: 0,
            sequence: 0,
            prev_ts: 0,
        });
        fill(&mut group, crate::wire::MAX_MESSAGE_SIZE + 4);
        assert!(
            group.buf.len() > MAX_MESSAGE_BUF + MIN_READ,
            "{}",
            group.buf.len()
        );
    }
}
