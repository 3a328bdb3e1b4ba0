//! WebTransport over HTTP/3 (ALPN `h3`) under a session: the HTTP/3 control streams, the
//! Extended CONNECT that opens the WebTransport session, the prefixes of its streams, the
//! mapping of stream error codes and the session's capsules.
//!
//! The bytes are decoded and encoded by [`crate::webtransport`]; this file keeps the
//! connection's state and acts on it. Once the CONNECT is answered, the session's streams
//! carry moq-lite exactly as on raw QUIC: the relay above never learns which transport a
//! session came over. One WebTransport session per connection (we advertise at most one).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::recv::{Failure, InStream, Kind};
use super::{path, Event, Phase, Session};
use crate::webtransport::capsule::{self, Capsule};
use crate::webtransport::{self as wt, frame, headers, settings, stream, H3Error, Protocol};
use crate::wire::{ErrorCode, Version};

/// A WebTransport stream error code the peer sent outside the mapped range (or none of
/// ours) reads as this one.
const UNMAPPED: ErrorCode = ErrorCode::Cancel;

/// WT_BUFFERED_STREAM_REJECTED: a stream for a session we do not have.
const BUFFERED_STREAM_REJECTED: u64 = 0x3994_bd84;

/// How long the CLOSE capsule (or a refusal's status) gets to leave before the connection
/// closes, at least; two round trips if that is more, at most [`CLOSE_GRACE_MAX`].
const CLOSE_GRACE_MIN: Duration = Duration::from_millis(5);
const CLOSE_GRACE_MAX: Duration = Duration::from_millis(250);

/// A connection's HTTP/3 and WebTransport state.
#[derive(Debug)]
pub(super) struct Wt {
    /// The CONNECT stream: the WebTransport session id. Set when a CONNECT is read
    /// (server) or sent (client).
    session: Option<u64>,
    /// The CONNECT was answered with 200 (server) or such an answer read (client).
    accepted: bool,
    /// The sub-protocol chosen from the client's list, echoed in `wt-protocol`.
    protocol: Option<Protocol>,
    /// The peer opened its HTTP/3 control stream (a second one is a connection error).
    peer_control: bool,
    /// The prefixes of the streams we open, made once (a clone is a refcount).
    uni_prefix: Bytes,
    bidi_prefix: Bytes,
    /// DATA payload of the CONNECT stream not yet parsed into capsules.
    capsules: BytesMut,
    /// A close in progress: what the connection closes with once the capsule or status
    /// had its chance to leave, and when (known at the next flush).
    closing: Option<String>,
    close_at: Option<Instant>,
    /// The status of a CONNECT the relay refused (client sessions).
    refused: Option<u16>,
}

impl Wt {
    pub(super) fn new() -> Self {
        Self {
            session: None,
            accepted: false,
            protocol: None,
            peer_control: false,
            uni_prefix: Bytes::new(),
            bidi_prefix: Bytes::new(),
            capsules: BytesMut::new(),
            closing: None,
            close_at: None,
            refused: None,
        }
    }

    fn open_session(&mut self, id: u64) {
        self.session = Some(id);
        self.uni_prefix = stream::uni_prefix(id);
        self.bidi_prefix = stream::bidi_prefix(id);
    }
}

/// A peer HTTP/3 stream's type, the bytes it took, and our WebTransport session's state.
struct StreamHead<T> {
    kind: T,
    used: usize,
    session: Option<u64>,
    accepted: bool,
}

impl Session {
    /// Whether this session runs over WebTransport.
    pub fn is_webtransport(&self) -> bool {
        self.wt.is_some()
    }

    /// The HTTP status a relay answered our CONNECT with, when it was not 200.
    pub fn refused_status(&self) -> Option<u16> {
        self.wt.as_ref().and_then(|wt| wt.refused)
    }

    /// The connection negotiated `h3`: open our control stream; a client sends its CONNECT.
    pub(super) fn on_h3_established(&mut self) {
        let server = self.conn.is_server();
        let id = self.next_uni;
        self.next_uni += 4;
        self.send.insert(
            id,
            super::send::OutStream::new(super::send::Class::Control, false),
        );
        let control = if server {
            settings::server_control_stream()
        } else {
            settings::client_control_stream()
        };
        self.write(id, control);
        self.phase = Phase::AwaitConnect;
        if server {
            return;
        }
        let target = self.config.path.clone().unwrap_or_else(|| "/".to_string());
        let authority = self.config.authority.clone().unwrap_or_default();
        let offered: Vec<String> = self.config.versions.iter().map(|v| v.to_string()).collect();
        let offered: Vec<&str> = offered.iter().map(String::as_str).collect();
        let id = self.next_bidi;
        self.next_bidi += 4;
        self.recv
            .insert(id, InStream::new(Kind::Connect { headers: false }));
        if let Some(wt) = self.wt.as_mut() {
            wt.open_session(id);
        }
        self.write(id, headers::encode_request(&authority, &target, &offered));
    }

    /// The wire code of moq-lite stream error `code` on this transport.
    pub(super) fn wire_code(&self, code: u64) -> u64 {
        match self.wt {
            Some(_) => wt::to_h3(u32::try_from(code).unwrap_or(u32::MAX)),
            None => code,
        }
    }

    /// The moq-lite code of a stream error code the peer sent. Over WebTransport it is
    /// mapped back from the HTTP/3 range. On raw QUIC a code in that range is mapped back
    /// too: moq-dev's transport (web-transport-quinn, under moq-native 0.19) encodes every
    /// stream error code into it on raw QUIC as well, and no moq-lite code is that large.
    pub(super) fn app_code(&self, code: u64) -> u64 {
        match (&self.wt, wt::from_h3(code)) {
            (_, Some(app)) => u64::from(app),
            (Some(_), None) => UNMAPPED.code(),
            (None, None) => code,
        }
    }

    /// The prefix a new stream of ours carries first (empty on raw QUIC).
    pub(super) fn stream_prefix(&self, bidi: bool) -> Option<Bytes> {
        let wt = self.wt.as_ref()?;
        Some(if bidi {
            wt.bidi_prefix.clone()
        } else {
            wt.uni_prefix.clone()
        })
    }

    /// Closes over WebTransport: the CLOSE capsule (or, before the CONNECT was answered, a
    /// refusal status), then the connection. `false` when there is no session to close
    /// that way (raw QUIC, or HTTP/3 without a CONNECT).
    pub(super) fn close_webtransport(&mut self, code: ErrorCode, reason: &str) -> bool {
        let Some(wt) = self.wt.as_ref() else {
            return false;
        };
        if wt.closing.is_some() {
            return true;
        }
        let Some(id) = wt.session else { return false };
        let message = if wt.accepted {
            capsule::close_frame(u32::try_from(code.code()).unwrap_or(u32::MAX), reason)
        } else if self.conn.is_server() {
            let status = if code == ErrorCode::Unauthorized {
                403
            } else {
                400
            };
            headers::encode_response(status, None)
        } else {
            return false;
        };
        self.write(id, message);
        self.finish_stream(id);
        self.phase = Phase::Closing;
        if let Some(wt) = self.wt.as_mut() {
            wt.closing = Some(reason.to_string());
        }
        true
    }

    /// At flush: a close in progress ends the connection once its grace passed.
    pub(super) fn flush_webtransport(&mut self, now: Instant) {
        let rtt = self.rtt();
        let Some(wt) = self.wt.as_mut() else { return };
        let Some(reason) = wt.closing.as_ref() else {
            return;
        };
        let at = *wt
            .close_at
            .get_or_insert(now + (rtt * 2).clamp(CLOSE_GRACE_MIN, CLOSE_GRACE_MAX));
        if at <= now {
            let reason = reason.clone();
            let _ = self
                .conn
                .close(true, H3Error::NoError.code(), reason.as_bytes());
        }
    }

    /// When a close in progress needs a flush.
    pub(super) fn webtransport_deadline(&self) -> Option<Instant> {
        self.wt.as_ref().and_then(|wt| wt.close_at)
    }

    /// Drops received HTTP datagrams: no track uses them yet. The quarter-stream-id tells
    /// which session one belongs to; one of another session is ignored alike.
    pub(super) fn drop_datagrams(&mut self) {
        let session = self.wt.as_ref().and_then(|wt| wt.session);
        let mut buf = [0u8; super::super::net::quic::MAX_DATAGRAM_SIZE];
        loop {
            match self.conn.dgram_recv(&mut buf) {
                Ok(len) => {
                    let payload = session.and_then(|s| wt::datagram::strip(&buf[..len], s));
                    tracing::trace!(
                        len,
                        ours = payload.is_some(),
                        "WebTransport datagram dropped"
                    );
                }
                Err(quiche::Error::Done) => break,
                Err(_) => continue,
            }
        }
    }

    /// Tells a WebTransport peer that the session is draining (the DRAIN capsule).
    pub(super) fn drain_webtransport(&mut self) {
        let Some(id) = self
            .wt
            .as_ref()
            .filter(|wt| wt.accepted && wt.closing.is_none())
            .and_then(|wt| wt.session)
        else {
            return;
        };
        self.write(id, capsule::drain_frame());
    }

    /// A peer stream's type read with `decode`, the bytes it took, our session's stream
    /// id and whether it was accepted; `None` until the type is whole.
    fn h3_stream_type<T>(
        &self,
        s: &InStream,
        decode: fn(&mut &[u8]) -> Result<T, wt::Error>,
    ) -> Result<Option<StreamHead<T>>, Failure> {
        let Some((kind, used)) = decoded(s.data(), decode)? else {
            return Ok(None);
        };
        let (session, accepted) = self
            .wt
            .as_ref()
            .map_or((None, false), |wt| (wt.session, wt.accepted));
        Ok(Some(StreamHead {
            kind,
            used,
            session,
            accepted,
        }))
    }

    /// The type of a peer uni stream: control, QPACK, or a WebTransport stream of ours.
    pub(super) fn parse_h3_uni(&mut self, id: u64, s: &mut InStream) -> Result<bool, Failure> {
        let Some(StreamHead {
            kind,
            used,
            session,
            accepted,
        }) = self.h3_stream_type(s, stream::decode_uni)?
        else {
            return Ok(false);
        };
        s.kind = match kind {
            stream::UniStream::Control => {
                let seen = self.wt.as_mut().map(|wt| &mut wt.peer_control);
                if seen.is_some_and(|seen| std::mem::replace(seen, true)) {
                    // RFC 9114 6.2.1: only one control stream per peer.
                    return Err(Failure::H3(
                        H3Error::StreamCreation,
                        "second control stream",
                    ));
                }
                Kind::H3Control { settings: false }
            }
            stream::UniStream::QpackEncoder | stream::UniStream::QpackDecoder => {
                // We allow no dynamic table: nothing useful arrives; read and discard.
                Kind::Discard
            }
            stream::UniStream::WebTransport { session: sid } if Some(sid) == session => {
                if !accepted {
                    // A client reads our streams only after the CONNECT's answer, which
                    // may still be on its way through the same packets.
                    return Ok(false);
                }
                Kind::Uni
            }
            stream::UniStream::WebTransport { .. } => {
                let _ =
                    self.conn
                        .stream_shutdown(id, quiche::Shutdown::Read, BUFFERED_STREAM_REJECTED);
                Kind::Discard
            }
            stream::UniStream::Other(_) => {
                // Push streams (we allow none), GREASE and unknown types: refused.
                let _ = self.conn.stream_shutdown(
                    id,
                    quiche::Shutdown::Read,
                    H3Error::StreamCreation.code(),
                );
                Kind::Discard
            }
        };
        s.consume(used);
        Ok(true)
    }

    /// A peer bidi stream: a WebTransport stream of our session or an HTTP/3 request.
    pub(super) fn parse_h3_bidi(&mut self, id: u64, s: &mut InStream) -> Result<bool, Failure> {
        let Some(StreamHead {
            kind,
            used,
            session,
            accepted,
        }) = self.h3_stream_type(s, stream::decode_bidi)?
        else {
            return Ok(false);
        };
        s.kind = match kind {
            stream::BidiStream::WebTransport { session: sid }
                if Some(sid) == session && accepted =>
            {
                Kind::Bidi
            }
            stream::BidiStream::WebTransport { .. } => {
                self.reject_stream(id, BUFFERED_STREAM_REJECTED);
                Kind::Discard
            }
            stream::BidiStream::Request if self.conn.is_server() && session.is_none() => {
                if let Some(wt) = self.wt.as_mut() {
                    wt.open_session(id);
                }
                Kind::Connect { headers: false }
            }
            stream::BidiStream::Request => {
                // One session per connection: a second request is refused.
                self.reject_stream(id, H3Error::RequestRejected.code());
                Kind::Discard
            }
        };
        s.consume(used);
        Ok(true)
    }

    /// Stops a peer stream in both directions with a raw HTTP/3 code.
    fn reject_stream(&mut self, id: u64, code: u64) {
        let _ = self.conn.stream_shutdown(id, quiche::Shutdown::Read, code);
        let _ = self.conn.stream_shutdown(id, quiche::Shutdown::Write, code);
    }

    /// The peer's control stream: SETTINGS first, then frames we skip.
    pub(super) fn parse_h3_control(
        &mut self,
        s: &mut InStream,
        settings_seen: bool,
    ) -> Result<bool, Failure> {
        let Some(((ty, payload), used)) = decoded(s.data(), |b| frame::decode(b, wt::MAX_FRAME))?
        else {
            return Ok(false);
        };
        match (ty, settings_seen) {
            (frame::SETTINGS, false) => {
                let peer = settings::decode(payload).map_err(Failure::from_h3)?;
                tracing::debug!(?peer, "HTTP/3 peer settings");
                s.kind = Kind::H3Control { settings: true };
            }
            (_, false) => {
                return Err(Failure::H3(
                    H3Error::MissingSettings,
                    "control stream must open with SETTINGS",
                ))
            }
            (frame::SETTINGS | frame::DATA | frame::HEADERS, true) => {
                return Err(Failure::H3(
                    H3Error::FrameUnexpected,
                    "frame not allowed on the control stream",
                ))
            }
            // GOAWAY, MAX_PUSH_ID, PRIORITY_UPDATE, GREASE and unknown frames: nothing to do.
            _ => {}
        }
        s.consume(used);
        Ok(true)
    }

    /// The CONNECT stream: the request (server) or its answer (client), then capsules.
    pub(super) fn parse_connect(
        &mut self,
        id: u64,
        s: &mut InStream,
        headers_read: bool,
    ) -> Result<bool, Failure> {
        let Some(((ty, payload), used)) = decoded(s.data(), |b| frame::decode(b, wt::MAX_FRAME))?
        else {
            return Ok(false);
        };
        match (ty, headers_read) {
            (frame::HEADERS, false) => {
                let block = payload.to_vec();
                s.consume(used);
                s.kind = Kind::Connect { headers: true };
                if self.conn.is_server() {
                    self.on_connect_request(id, &block)?;
                } else {
                    self.on_connect_response(&block)?;
                }
                return Ok(true);
            }
            (frame::DATA, false) => {
                return Err(Failure::H3(
                    H3Error::FrameUnexpected,
                    "DATA before HEADERS on the CONNECT stream",
                ))
            }
            (frame::DATA, true) => {
                if let Some(wt) = self.wt.as_mut() {
                    if wt.capsules.len() + payload.len() > wt::MAX_FRAME as usize {
                        return Err(Failure::H3(H3Error::ExcessiveLoad, "capsule too large"));
                    }
                    wt.capsules.extend_from_slice(payload);
                }
                s.consume(used);
                self.read_capsules()?;
                return Ok(true);
            }
            // Trailers, GREASE and unknown frames are skipped.
            _ => {}
        }
        s.consume(used);
        Ok(true)
    }

    fn read_capsules(&mut self) -> Result<(), Failure> {
        loop {
            let Some(wt) = self.wt.as_mut() else {
                return Ok(());
            };
            let Some((capsule, used)) = decoded(&wt.capsules, capsule::decode)? else {
                return Ok(());
            };
            let _ = wt.capsules.split_to(used);
            match capsule {
                Capsule::Close { code, reason } => {
                    tracing::debug!(code, %reason, "peer closed the WebTransport session");
                    let _ = self.conn.close(
                        true,
                        H3Error::NoError.code(),
                        b"WebTransport session closed",
                    );
                    return Ok(());
                }
                Capsule::Drain => {
                    tracing::debug!("peer drains the WebTransport session");
                    if !self.conn.is_server() {
                        self.events.push(Event::GoAway { uri: String::new() });
                    }
                }
                Capsule::Other(ty) => tracing::trace!(ty, "capsule skipped"),
            }
        }
    }

    /// Server: the CONNECT request. Chooses the moq-lite version from the client's
    /// `wt-available-protocols`, roots the session at the path and admits it (a `jwt` in
    /// the query is checked like on raw QUIC); the answer goes out on admission.
    fn on_connect_request(&mut self, id: u64, block: &[u8]) -> Result<(), Failure> {
        let request = match headers::decode_request(block) {
            Ok(request) => request,
            Err(headers::RequestError::Malformed(reason)) => {
                return Err(Failure::H3(H3Error::Message, reason))
            }
            Err(headers::RequestError::Rejected { status, reason }) => {
                tracing::warn!(status, reason, "CONNECT refused");
                self.respond_and_close(id, status, reason);
                return Ok(());
            }
        };
        let supported: Vec<String> = self.config.versions.iter().map(|v| v.to_string()).collect();
        let supported: Vec<&str> = supported.iter().map(String::as_str).collect();
        let Some(protocol) = headers::choose(&request.protocols, &supported).cloned() else {
            tracing::warn!(offered = ?request.protocols, "CONNECT offers no moq-lite version we speak");
            self.respond_and_close(id, 400, "no supported wt-available-protocols");
            return Ok(());
        };
        let version = Version::from_alpn(protocol.name.as_bytes()).expect("chosen from ours");
        tracing::debug!(path = %request.path, %version, origin = ?request.origin, "WebTransport CONNECT");
        self.version = Some(version);
        if let Some(wt) = self.wt.as_mut() {
            wt.protocol = Some(protocol);
        }
        let (target, jwt) = crate::auth::split_target(&request.path);
        self.root = path::normalize(target);
        self.admit(jwt.as_deref());
        Ok(())
    }

    /// Answers a CONNECT with an error status and ends the connection shortly after.
    fn respond_and_close(&mut self, id: u64, status: u16, reason: &str) {
        self.write(id, headers::encode_response(status, None));
        self.finish_stream(id);
        self.phase = Phase::Closing;
        if let Some(wt) = self.wt.as_mut() {
            wt.closing = Some(reason.to_string());
        }
    }

    /// Server, on admission: answers the CONNECT with 200 and the chosen protocol. Returns
    /// whether the session must still wait for the peer's SETUP (lite-05).
    pub(super) fn accept_webtransport(&mut self) -> bool {
        let Some(wt) = self.wt.as_mut().filter(|wt| !wt.accepted) else {
            return false;
        };
        wt.accepted = true;
        let (Some(id), protocol) = (wt.session, wt.protocol.clone()) else {
            return false;
        };
        self.write(id, headers::encode_response(200, protocol.as_ref()));
        match self.version {
            Some(v) if v.has_setup_stream() => {
                self.send_setup(v);
                self.phase = Phase::AwaitSetup;
                true
            }
            _ => false,
        }
    }

    /// Client: the answer to our CONNECT. 200 with a `wt-protocol` we offered starts the
    /// moq-lite session; anything else closes the connection.
    fn on_connect_response(&mut self, block: &[u8]) -> Result<(), Failure> {
        let response = match headers::decode_response(block) {
            Ok(response) => response,
            Err(headers::RequestError::Malformed(reason))
            | Err(headers::RequestError::Rejected { reason, .. }) => {
                return Err(Failure::H3(H3Error::Message, reason))
            }
        };
        if response.status != 200 {
            if let Some(wt) = self.wt.as_mut() {
                wt.refused = Some(response.status);
            }
            let reason = format!("CONNECT refused with status {}", response.status);
            let _ = self
                .conn
                .close(true, H3Error::RequestRejected.code(), reason.as_bytes());
            return Ok(());
        }
        let version = response
            .protocol
            .as_deref()
            .and_then(|p| Version::from_alpn(p.as_bytes()))
            .filter(|v| self.config.versions.contains(v));
        let Some(version) = version else {
            return Err(Failure::H3(
                H3Error::Connect,
                "the relay chose no moq-lite version we offered",
            ));
        };
        self.version = Some(version);
        if let Some(wt) = self.wt.as_mut() {
            wt.accepted = true;
        }
        if version.has_setup_stream() {
            self.send_setup(version);
        }
        let target = self.config.path.as_deref().unwrap_or_default();
        self.root = path::normalize(path::split_query(target).0);
        self.become_ready();
        Ok(())
    }

    /// A FIN or reset of the CONNECT stream ends the session, and with it the connection.
    pub(super) fn on_connect_ended(&mut self) {
        if self.wt.as_ref().is_some_and(|wt| wt.closing.is_some()) {
            // We are closing it ourselves: our answer or capsule leaves first.
            return;
        }
        let _ = self
            .conn
            .close(true, H3Error::NoError.code(), b"WebTransport session ended");
    }
}

/// What `decode` reads from the front of `buf`, and the bytes it took; `None` until it is
/// whole.
fn decoded<'a, T>(
    buf: &'a [u8],
    decode: impl FnOnce(&mut &'a [u8]) -> Result<T, wt::Error>,
) -> Result<Option<(T, usize)>, Failure> {
    let mut slice = buf;
    match decode(&mut slice) {
        Err(wt::Error::Short) => Ok(None),
        Err(wt::Error::H3 { code, reason }) => Err(Failure::H3(code, reason)),
        Ok(value) => Ok(Some((value, buf.len() - slice.len()))),
    }
}

impl Failure {
    fn from_h3(e: wt::Error) -> Self {
        match e {
            wt::Error::H3 { code, reason } => Failure::H3(code, reason),
            wt::Error::Short => Failure::H3(H3Error::Frame, "truncated frame"),
        }
    }
}
