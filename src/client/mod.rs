//! The `pub` and `sub` commands: one QUIC connection to a relay on a monoio event loop.
//!
//! The loop is the shard's, for one connection: receive -> QUIC timers -> session events ->
//! the command's logic ([`App`]) -> flush and send -> sleep until the socket, the timer or
//! the command's own wake-up (stdin data) fires.

mod ledger;
mod publish;
mod subscribe;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Instant;

use ring::rand::SecureRandom;
use url::Url;

use crate::net::quic;
use crate::net::udp::UdpIo;
use crate::session::{zc::BytesFactory, Event, Session, SessionConfig};
use crate::wire::{ErrorCode, Version};

pub(crate) use publish::open_group_for_all;
pub use publish::{PublishOptions, Publisher, Rate};
pub(crate) use subscribe::announce_prefix;
pub use subscribe::{SubscribeOptions, Subscriber};

/// How the client checks the relay's certificate.
#[derive(Debug, Clone)]
pub enum Verify {
    /// Against the system's CA roots.
    Roots,
    /// Against a SHA-256 fingerprint (hex) of the leaf certificate.
    Fingerprint(String),
    /// Not at all.
    Disabled,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Connect {
    /// `moql://` (or `moqt://`) for raw QUIC, `https://` for WebTransport.
    pub url: Url,
    /// Versions to offer, newest first.
    pub versions: Vec<Version>,
    pub verify: Verify,
}

impl Connect {
    /// Whether the URL asks for WebTransport over HTTP/3 (`https://`).
    pub fn is_webtransport(&self) -> bool {
        self.url.scheme() == "https"
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad URL {0}: expected moql://HOST:PORT/PATH (raw QUIC) or https://HOST:PORT/PATH (WebTransport)")]
    Url(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("QUIC: {0}")]
    Quic(#[from] quiche::Error),
    #[error("the relay's certificate fingerprint {got} does not match {want}")]
    Fingerprint { got: String, want: String },
    #[error("connection closed: {0}")]
    Closed(String),
    #[error("{0}")]
    App(String),
}

/// A command's logic on top of the session.
pub trait App {
    fn on_event(&mut self, session: &mut Session, event: Event);
    /// Called once per loop turn; `Some` ends the command.
    fn poll(&mut self, session: &mut Session, now: Instant) -> Option<Result<(), ClientError>>;
    /// Extra wake-up source (e.g. stdin data ready).
    fn wake(&self) -> Option<&monoio::net::UnixStream> {
        None
    }
    /// A time at which `poll` must run even if nothing arrives.
    fn next_wake(&self) -> Option<Instant> {
        None
    }
}

/// The host name (for SNI) and the address a `moql://` URL points at.
pub(crate) fn resolve(url: &Url) -> Result<(String, SocketAddr), ClientError> {
    if !matches!(url.scheme(), "moql" | "moqt" | "https") {
        return Err(ClientError::Url(url.to_string()));
    }
    let host = url
        .host_str()
        .ok_or_else(|| ClientError::Url(url.to_string()))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let port = url.port().unwrap_or(443);
    let addrs: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|_| ClientError::Resolve(host.clone()))?
        .collect();
    // The relay binds IPv4 loopback by default: prefer IPv4 when a name has both.
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| ClientError::Resolve(host.clone()))?;
    Ok((host, addr))
}

/// Runs `app` over a connection to `connect.url` until it finishes.
pub fn run<A: App>(connect: Connect, app: A) -> Result<(), ClientError> {
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()?;
    rt.block_on(drive(connect, app))
}

async fn drive<A: App>(connect: Connect, mut app: A) -> Result<(), ClientError> {
    let (host, peer) = resolve(&connect.url)?;
    let local: SocketAddr = if peer.is_ipv4() {
        "0.0.0.0:0".parse().expect("valid")
    } else {
        "[::]:0".parse().expect("valid")
    };
    let io = UdpIo::bind(local)?;
    let mut config = quic::client_config(
        &connect.versions,
        matches!(connect.verify, Verify::Roots),
        connect.is_webtransport(),
    )?;
    let mut session = new_session(&connect, &host, io.local_addr(), peer, &mut config)?;
    let mut buf = vec![0u8; 65536];
    let mut out = io.send_batch_of(crate::net::gso::MAX_RUN);
    let mut events = Vec::new();
    let mut checked = false;
    // When to ping the relay next, so a client waiting on a silent track (or for its
    // first subscriber) outlives the idle timeout.
    let mut ping_at: Option<Instant> = None;
    loop {
        while let Some((len, from)) = io.try_recv(&mut buf)? {
            let info = quiche::RecvInfo {
                from,
                to: io.local_addr(),
            };
            let _ = session.conn_mut().recv(&mut buf[..len], info);
        }
        let now = Instant::now();
        if session.conn().timeout_instant().is_some_and(|t| t <= now) {
            session.conn_mut().on_timeout();
        }
        if !checked && session.conn().is_established() {
            checked = true;
            check_certificate(&mut session, &connect.verify)?;
        }
        if session.conn().is_established() {
            let due = *ping_at.get_or_insert_with(|| now + keep_alive(session.conn()));
            if now >= due {
                session.conn_mut().send_ack_eliciting()?;
                ping_at = Some(now + keep_alive(session.conn()));
            }
        }
        session.process();
        session.drain_events(&mut events);
        let mut closed = false;
        for event in events.drain(..) {
            closed |= event == Event::Closed;
            if let Event::GoAway { uri } = &event {
                tracing::warn!(redirect = %uri, "the relay is going away (GOAWAY)");
            }
            app.on_event(&mut session, event);
        }
        if let Some(result) = app.poll(&mut session, now) {
            // Say goodbye, so the relay frees the session now rather than at its idle
            // timeout; the close packet is best effort.
            session.flush(now);
            let _ = session.conn_mut().close(false, 0x0, b"done");
            let _ = io.send_from(session.conn_mut(), &mut out);
            return result;
        }
        if closed {
            return Err(ClientError::Closed(close_reason(&session)));
        }
        session.flush(now);
        io.send_from(session.conn_mut(), &mut out)?;
        let wake_at = [session.next_timeout(), app.next_wake(), ping_at]
            .into_iter()
            .flatten()
            .min();
        let timeout = wake_at.map(|t| t.saturating_duration_since(Instant::now()));
        io.wait(timeout, app.wake()).await;
    }
}

/// How often a client pings the relay: a third of the idle timeout both sides agreed on.
fn keep_alive<F: quiche::BufFactory>(conn: &quiche::Connection<F>) -> std::time::Duration {
    let peer = conn
        .peer_transport_params()
        .map_or(0, |p| p.max_idle_timeout);
    let idle = match peer {
        0 => quic::IDLE_TIMEOUT_MS,
        peer => peer.min(quic::IDLE_TIMEOUT_MS),
    };
    std::time::Duration::from_millis((idle / 3).max(100))
}

/// A client session to `peer` from the socket bound at `local`, its handshake not yet
/// sent: random connection ID and origin, the URL path for the lite-05 SETUP.
pub(crate) fn new_session(
    connect: &Connect,
    host: &str,
    local: SocketAddr,
    peer: SocketAddr,
    config: &mut quiche::Config,
) -> Result<Session, ClientError> {
    let rng = ring::rand::SystemRandom::new();
    let mut scid = [0u8; quiche::MAX_CONN_ID_LEN];
    let mut origin = [0u8; 4];
    let _ = rng.fill(&mut scid);
    let _ = rng.fill(&mut origin);
    let scid = quiche::ConnectionId::from_ref(&scid);
    let conn = quiche::connect_with_buffer_factory::<BytesFactory>(
        Some(host),
        &scid,
        local,
        peer,
        config,
    )?;
    let session_config = SessionConfig {
        origin: u64::from(u32::from_le_bytes(origin)) | 1,
        // The query travels with the path (lite-05 SETUP, or the WebTransport CONNECT): it
        // may carry a `jwt` token.
        path: Some(match connect.url.query() {
            Some(query) => format!("{}?{query}", connect.url.path()),
            None => connect.url.path().to_string(),
        }),
        versions: connect.versions.clone(),
        authority: Some(format!(
            "{}:{}",
            connect.url.host_str().unwrap_or(host),
            peer.port()
        )),
        ..SessionConfig::default()
    };
    Ok(Session::new(conn, session_config))
}

/// Closes the session and fails when the relay's certificate does not match the
/// fingerprint asked for.
pub(crate) fn check_certificate(session: &mut Session, verify: &Verify) -> Result<(), ClientError> {
    let Verify::Fingerprint(want) = verify else {
        return Ok(());
    };
    let want = crate::tls::normalize_fingerprint(want);
    let got = session
        .conn()
        .peer_cert()
        .map(crate::tls::fingerprint)
        .unwrap_or_default();
    if got != want {
        session.close(ErrorCode::Unauthorized, "certificate fingerprint mismatch");
        return Err(ClientError::Fingerprint { got, want });
    }
    Ok(())
}

/// Why the connection closed, for an error message.
pub(crate) fn close_reason(session: &Session) -> String {
    if let Some(status) = session.refused_status() {
        return format!("the relay refused the WebTransport session: HTTP status {status}");
    }
    let conn = session.conn();
    if let Some(e) = conn.peer_error() {
        return format!(
            "by the relay: code {} {}",
            e.error_code,
            String::from_utf8_lossy(&e.reason)
        );
    }
    if let Some(e) = conn.local_error() {
        return format!(
            "locally: code {} {}",
            e.error_code,
            String::from_utf8_lossy(&e.reason)
        );
    }
    if conn.is_timed_out() {
        return "timed out (is the relay running?)".to_string();
    }
    "without an error".to_string()
}
