//! Sessions over WebTransport (HTTP/3, ALPN `h3`) in memory: every moq-lite version chosen
//! through `wt-available-protocols`, groups carried byte-exact behind their stream prefix,
//! reset codes mapped both ways, the session closed with its capsule; and a raw HTTP/3
//! client sending what a session must refuse, each refusal with its own code.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::net::quic;
use crate::webtransport::{capsule, frame, headers, settings, stream, H3Error};

fn client(version: Version, target: &str) -> SessionConfig {
    SessionConfig {
        path: Some(target.into()),
        versions: vec![version],
        authority: Some("localhost:4443".into()),
        ..SessionConfig::default()
    }
}

fn wt_pair(version: Version) -> Pair {
    Pair::build(
        version,
        client(version, "/anon?x=1"),
        SessionConfig::default(),
        true,
    )
}

#[test]
fn every_version_carries_groups_byte_exact_with_reset_codes_mapped() {
    for version in Version::ALL {
        let mut pair = wt_pair(version);
        assert!(pair.server_events.contains(&Event::Ready), "{version}");
        assert!(pair.client_events.contains(&Event::Ready), "{version}");
        assert!(pair.server.is_webtransport() && pair.client.is_webtransport());
        assert_eq!(pair.server.version(), Some(version));
        assert_eq!(pair.client.version(), Some(version));
        // The root is the CONNECT path without its query, on every version.
        assert_eq!(pair.server.root(), "anon", "{version}");
        assert_eq!(pair.client.root(), "anon", "{version}");

        let sub = pair.subscribe(0, false, Duration::ZERO);
        pair.server.subscribe_ok(sub, 0);
        let group = pair.server.open_group(sub, 0).unwrap();
        // Our uni streams open with 0x54 and the session id (the CONNECT stream, 0).
        let prefix = pair
            .server
            .send
            .get(&group)
            .and_then(|o| o.front())
            .cloned();
        assert_eq!(prefix.as_deref(), Some(&[0x40, 0x54, 0x00][..]));
        let payloads: Vec<Bytes> = (0..3u8)
            .map(|i| Bytes::from(vec![i; 1000 + usize::from(i) * 3000]))
            .collect();
        for p in &payloads {
            pair.server.send_frame(group, &Frame::new(p.clone(), 0, 0));
        }
        pair.server.finish_group(group);
        pair.pump();
        assert_eq!(frames_of(&pair.client_events, 0), payloads, "{version}");
        assert_eq!(group_end(&pair.client_events, 0), Some(None), "{version}");

        // A group reset with a moq-lite code reaches the client with that code.
        let second = pair.server.open_group(sub, 1).unwrap();
        pair.server
            .send_frame(second, &Frame::new(Bytes::from_static(b"cut"), 0, 0));
        pair.pump();
        pair.server.reset_group(second, ErrorCode::Lagged.code());
        pair.pump();
        assert_eq!(
            group_end(&pair.client_events, 1),
            Some(Some(ErrorCode::Lagged.code())),
            "{version}"
        );
    }
}

/// moq-native 0.19 (web-transport-quinn) resets streams with WebTransport-range codes on
/// raw QUIC too: such a code reads as the moq-lite code it encodes; a plain one stays plain.
#[test]
fn a_webtransport_range_code_on_raw_quic_reads_as_its_moq_lite_code() {
    let mut pair = Pair::new(Version::Lite05);
    assert!(!pair.client.is_webtransport());
    let sub = pair.subscribe(0, false, Duration::ZERO);
    pair.server.subscribe_ok(sub, 0);
    let wrapped = pair.server.open_group(sub, 0).unwrap();
    let plain = pair.server.open_group(sub, 1).unwrap();
    for group in [wrapped, plain] {
        pair.server
            .send_frame(group, &Frame::new(Bytes::from_static(b"cut"), 0, 0));
    }
    pair.pump();
    // What moq-native sends for `Error::App(1000)`: 1000 + 64, in the WebTransport range.
    let code = crate::webtransport::to_h3(1064);
    pair.server
        .conn_mut()
        .stream_shutdown(wrapped, quiche::Shutdown::Write, code)
        .unwrap();
    pair.server.reset_group(plain, ErrorCode::Lagged.code());
    pair.pump();
    assert_eq!(
        frames_of(&pair.client_events, 0),
        [Bytes::from_static(b"cut")]
    );
    assert_eq!(group_end(&pair.client_events, 0), Some(Some(1064)));
    assert_eq!(
        group_end(&pair.client_events, 1),
        Some(Some(ErrorCode::Lagged.code()))
    );
}

#[test]
fn the_relay_side_closes_the_session_with_its_capsule_then_the_connection() {
    let mut pair = wt_pair(Version::Lite05);
    pair.server.close(ErrorCode::Unauthorized, "token expired");
    pair.pump();
    // The capsule arrives before the connection closes: the client ends the connection
    // itself on reading it.
    let error = pair.client.conn().local_error().expect("the client closed");
    assert!(error.is_app);
    assert_eq!(error.error_code, H3Error::NoError.code());
    assert_eq!(error.reason, b"WebTransport session closed");
    assert!(pair.server.conn().peer_error().is_some());
}

#[test]
fn a_silent_peer_still_loses_the_connection_after_the_capsule() {
    let mut raw = Raw::new();
    raw.connect(&["moq-lite-05"]);
    assert_eq!(raw.response().status, 200);
    raw.server.close(ErrorCode::Unauthorized, "token expired");
    raw.pump();
    // The raw client does not react to the capsule; the relay closes after its grace.
    assert!(raw.client.peer_error().is_none());
    let mut data = raw.read(0);
    let mut slice = &data[..];
    let (ty, payload) = frame::decode(&mut slice, 1 << 16).unwrap();
    assert_eq!(ty, frame::DATA);
    let mut payload = payload;
    assert_eq!(
        capsule::decode(&mut payload).unwrap(),
        capsule::Capsule::Close {
            code: ErrorCode::Unauthorized.code() as u32,
            reason: "token expired".into()
        }
    );
    data.clear();
    assert_eq!(raw.closed_with(), Some(H3Error::NoError.code()));
}

#[test]
fn a_client_offering_no_version_we_speak_is_answered_400() {
    let server = SessionConfig {
        versions: vec![Version::Lite05],
        ..SessionConfig::default()
    };
    let mut pair = Pair::build(
        Version::Lite04,
        client(Version::Lite04, "/anon"),
        server,
        true,
    );
    pair.now += Duration::from_millis(300);
    pair.pump();
    assert_eq!(pair.client.refused_status(), Some(400));
    let error = pair.client.conn().local_error().expect("the client closed");
    assert_eq!(error.error_code, H3Error::RequestRejected.code());
    assert!(!pair.server_events.contains(&Event::Ready));
}

/// A raw HTTP/3 client (a quiche connection with ALPN h3) against a server session.
struct Raw {
    client: quiche::Connection,
    server: Session,
    events: Vec<Event>,
    now: Instant,
    _identity: crate::tls::Identity,
}

const CLIENT: &str = "10.0.0.2:5000";
const SERVER: &str = "10.0.0.1:4443";

impl Raw {
    fn new() -> Self {
        let identity = crate::tls::self_signed().expect("certificate");
        let mut server_config = quic::server_config(
            &identity.cert.to_string_lossy(),
            &identity.key.to_string_lossy(),
            &Version::ALL,
            30_000,
        )
        .unwrap();
        let mut client_config = quic::client_config(&Version::ALL, false, true).unwrap();
        let (c, s): (SocketAddr, SocketAddr) = (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
        let cid = quiche::ConnectionId::from_ref(&[3; quiche::MAX_CONN_ID_LEN]);
        let client =
            quiche::connect(Some("localhost"), &cid, c, s, &mut client_config).expect("client");
        let sid = quiche::ConnectionId::from_ref(&[4; quiche::MAX_CONN_ID_LEN]);
        let server = quiche::accept_with_buf_factory::<crate::session::zc::BytesFactory>(
            &sid,
            None,
            s,
            c,
            &mut server_config,
        )
        .unwrap();
        let mut raw = Self {
            client,
            server: Session::new(server, SessionConfig::default()),
            events: Vec::new(),
            now: Instant::now(),
            _identity: identity,
        };
        raw.pump();
        raw
    }

    fn pump(&mut self) {
        let mut buf = vec![0u8; 65536];
        let (c, s) = (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
        for _ in 0..1000 {
            let mut moved = false;
            while let Ok((n, _)) = self.client.send(&mut buf) {
                moved = true;
                let _ = self
                    .server
                    .conn_mut()
                    .recv(&mut buf[..n], quiche::RecvInfo { from: c, to: s });
            }
            self.server.process();
            self.server.drain_events(&mut self.events);
            self.server.flush(self.now);
            while let Ok((n, _)) = self.server.conn_mut().send(&mut buf) {
                moved = true;
                let _ = self
                    .client
                    .recv(&mut buf[..n], quiche::RecvInfo { from: s, to: c });
            }
            if !moved {
                return;
            }
        }
        panic!("never settled");
    }

    fn send(&mut self, stream: u64, bytes: &[u8], fin: bool) {
        self.client.stream_send(stream, bytes, fin).expect("send");
        self.pump();
    }

    /// Our control stream, as a well-behaved client opens it.
    fn control(&mut self) {
        self.send(2, &settings::client_control_stream(), false);
    }

    fn connect(&mut self, protocols: &[&str]) {
        self.control();
        let request = headers::encode_request("localhost:4443", "/anon", protocols);
        self.send(0, &request, false);
    }

    /// Everything the server wrote on a stream so far.
    fn read(&mut self, stream: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok((n, _)) = self.client.stream_recv(stream, &mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    /// The CONNECT's answer: status and `wt-protocol`.
    fn response(&mut self) -> headers::ConnectResponse {
        let bytes = self.read(0);
        let mut slice = &bytes[..];
        let (ty, block) = frame::decode(&mut slice, 1 << 16).expect("a whole frame");
        assert_eq!(ty, frame::HEADERS);
        headers::decode_response(block).expect("a response")
    }

    /// The code the server closed the connection with.
    fn closed_with(&mut self) -> Option<u64> {
        for _ in 0..3 {
            self.now += Duration::from_millis(300);
            self.pump();
        }
        self.client.peer_error().map(|e| e.error_code)
    }
}

#[test]
fn a_connect_gets_200_with_the_first_offered_version_we_speak() {
    let mut raw = Raw::new();
    raw.connect(&["moq-lite-99", "moq-lite-04", "moq-lite-05"]);
    let response = raw.response();
    assert_eq!(response.status, 200);
    assert_eq!(response.protocol.as_deref(), Some("moq-lite-04"));
    assert!(raw.events.contains(&Event::Ready));
    assert_eq!(raw.server.version(), Some(Version::Lite04));
    // A second CONNECT on the same connection is refused on its stream alone.
    let request = headers::encode_request("localhost:4443", "/other", &["moq-lite-04"]);
    raw.send(4, &request, false);
    assert!(raw.client.stream_finished(4) || raw.read(4).is_empty());
    assert!(!raw.client.is_closed());
}

#[test]
fn a_request_that_is_not_a_webtransport_connect_is_answered_with_a_status() {
    // A plain GET: a valid request we do not serve.
    let block = {
        let mut out = vec![0u8; 256];
        let fields = [
            quiche::h3::Header::new(b":method", b"GET"),
            quiche::h3::Header::new(b":scheme", b"https"),
            quiche::h3::Header::new(b":authority", b"localhost"),
            quiche::h3::Header::new(b":path", b"/"),
        ];
        let n = quiche::h3::qpack::Encoder::new()
            .encode(&fields, &mut out)
            .unwrap();
        out.truncate(n);
        out
    };
    let mut raw = Raw::new();
    raw.control();
    let mut request = Vec::new();
    frame::encode_header(frame::HEADERS, block.len() as u64, &mut request);
    request.extend_from_slice(&block);
    raw.send(0, &request, true);
    let status = raw.response().status;
    assert!((400..500).contains(&status), "{status}");
    assert!(!raw.events.contains(&Event::Ready));
    assert_eq!(raw.closed_with(), Some(H3Error::NoError.code()));
}

#[test]
fn malformed_http3_closes_the_connection_with_its_code() {
    type Case = (&'static str, fn(&mut Raw), H3Error);
    let cases: [Case; 5] = [
        (
            "a second control stream",
            |raw| {
                raw.control();
                raw.send(6, &[0x00, 0x04, 0x00], false);
            },
            H3Error::StreamCreation,
        ),
        (
            "control stream opening with a DATA frame",
            |raw| raw.send(2, &[0x00, 0x00, 0x01, 0xff], false),
            H3Error::MissingSettings,
        ),
        (
            "a second SETTINGS frame",
            |raw| {
                raw.control();
                raw.send(2, &[0x04, 0x00], false);
            },
            H3Error::FrameUnexpected,
        ),
        (
            "a HEADERS frame past the size limit",
            |raw| {
                raw.control();
                let mut big = Vec::new();
                frame::encode_header(frame::HEADERS, 1 << 20, &mut big);
                raw.send(0, &big, false);
            },
            H3Error::ExcessiveLoad,
        ),
        (
            "a CONNECT header block that is not QPACK",
            |raw| {
                raw.control();
                raw.send(0, &[0x01, 0x03, 0xff, 0xff, 0xff], false);
            },
            H3Error::Message,
        ),
    ];
    for (name, act, code) in cases {
        let mut raw = Raw::new();
        act(&mut raw);
        assert_eq!(raw.closed_with(), Some(code.code()), "{name}");
    }
}

#[test]
fn the_peers_close_capsule_and_streams_of_other_sessions() {
    let mut raw = Raw::new();
    raw.connect(&["moq-lite-04"]);
    assert_eq!(raw.response().status, 200);
    // A WebTransport stream naming another session is stopped; the session goes on.
    let mut other = stream::uni_prefix(8).to_vec();
    other.extend_from_slice(b"junk");
    raw.send(6, &other, false);
    assert!(!raw.client.is_closed());
    assert!(!raw.events.contains(&Event::Closed));
    // The client closes its session: the relay ends the connection.
    raw.send(0, &capsule::close_frame(7, "bye"), true);
    assert_eq!(raw.closed_with(), Some(H3Error::NoError.code()));
    raw.pump();
    raw.server.process();
    raw.server.drain_events(&mut raw.events);
    assert!(raw.server.conn().is_closed() || raw.server.conn().is_draining());
}
