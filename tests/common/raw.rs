//! A minimal blocking QUIC client on quiche, to send the relay bytes no real client would
//! and to read exactly what it answers (stream resets, close codes, TLS alerts). It
//! speaks no moq-lite by itself beyond the lite-05 SETUP; tests write the messages.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// How long [`RawClient::connect`] and [`RawClient::run_until`] keep exchanging packets.
pub const RAW_LIMIT: Duration = Duration::from_secs(10);

/// One QUIC connection from its own UDP socket.
pub struct RawClient {
    socket: UdpSocket,
    conn: quiche::Connection,
}

impl RawClient {
    /// Connects offering `alpn`; panics unless the handshake completes within [`RAW_LIMIT`].
    pub fn connect(peer: SocketAddr, alpn: &[u8]) -> Self {
        let client = Self::start(peer, &[alpn], RAW_LIMIT);
        assert!(
            client.conn.is_established(),
            "handshake with the relay: peer error {:?}, local error {:?}",
            client.conn.peer_error(),
            client.conn.local_error()
        );
        client
    }

    /// Starts a handshake offering `alpns` and runs it until it completes, the connection
    /// closes, or `limit` passes; the caller looks at the outcome.
    pub fn start(peer: SocketAddr, alpns: &[&[u8]], limit: Duration) -> Self {
        Self::start_with(peer, alpns, limit, None)
    }

    /// [`Self::start`] for a connection whose Initial reaches shard `shard` of a relay of
    /// `shards` shards: the relay's steering program picks the shard by the first byte of
    /// the Initial's destination connection ID, which quiche draws at random, so clients
    /// are drawn until one fits (half of them, with two shards).
    pub fn start_on(
        peer: SocketAddr,
        alpns: &[&[u8]],
        limit: Duration,
        shard: u8,
        shards: u8,
    ) -> Self {
        Self::start_with(peer, alpns, limit, Some((shard, shards)))
    }

    fn start_with(
        peer: SocketAddr,
        alpns: &[&[u8]],
        limit: Duration,
        shard: Option<(u8, u8)>,
    ) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Room for the whole flow-control window: a client thread starved on a loaded
        // machine must not lose the relay's one-shot CONNECTION_CLOSE to a full buffer.
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(4 << 20);
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut config = quiche::Config::new(quiche::PROTOCOL_VERSION).unwrap();
        config.set_application_protos(alpns).unwrap();
        config.verify_peer(false);
        config.set_initial_max_data(1 << 20);
        config.set_initial_max_stream_data_bidi_local(1 << 20);
        config.set_initial_max_stream_data_bidi_remote(1 << 20);
        config.set_initial_max_stream_data_uni(1 << 20);
        config.set_initial_max_streams_bidi(100);
        config.set_initial_max_streams_uni(100);
        config.set_max_idle_timeout(30_000);
        let scid = [0x5a; quiche::MAX_CONN_ID_LEN];
        let scid = quiche::ConnectionId::from_ref(&scid);
        let local = socket.local_addr().unwrap();
        let mut out = [0u8; 1500];
        let conn = loop {
            let mut conn =
                quiche::connect(Some("localhost"), &scid, local, peer, &mut config).unwrap();
            let Some((shard, shards)) = shard else {
                break conn;
            };
            // The first Initial: a long header, whose destination ID starts at byte 6.
            let (len, info) = conn.send(&mut out).unwrap();
            if out[6] % shards == shard {
                socket.send_to(&out[..len], info.to).unwrap();
                break conn;
            }
        };
        let mut client = Self { socket, conn };
        client.run_for(limit, |c| c.is_established() || c.is_closed());
        client
    }

    pub fn conn(&mut self) -> &mut quiche::Connection {
        &mut self.conn
    }

    /// Whether the handshake completed (and the connection has not closed since).
    pub fn is_established(&self) -> bool {
        self.conn.is_established() && !self.conn.is_closed()
    }

    /// Exchanges packets until `done` or [`RAW_LIMIT`] passes.
    pub fn run_until(&mut self, done: impl FnMut(&mut quiche::Connection) -> bool) {
        self.run_for(RAW_LIMIT, done)
    }

    /// Exchanges packets until `done` or `limit` passes.
    pub fn run_for(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut quiche::Connection) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 65535];
        let mut out = [0u8; 1500];
        while !done(&mut self.conn) && Instant::now() < deadline {
            while let Ok((len, info)) = self.conn.send(&mut out) {
                self.socket.send_to(&out[..len], info.to).unwrap();
            }
            if let Ok((len, from)) = self.socket.recv_from(&mut buf) {
                let info = quiche::RecvInfo {
                    from,
                    to: self.socket.local_addr().unwrap(),
                };
                let _ = self.conn.recv(&mut buf[..len], info);
            }
            self.conn.on_timeout();
        }
        // Whatever `done` queued last (e.g. a close) leaves now.
        while let Ok((len, info)) = self.conn.send(&mut out) {
            let _ = self.socket.send_to(&out[..len], info.to);
        }
    }

    /// Sends the lite-05 SETUP (on client uni stream 2) naming session root `path`.
    pub fn setup_05(&mut self, path: &str) {
        use moqring::wire::{DataType, Message, Setup, Version};
        let mut setup = Vec::new();
        DataType::Setup.encode(&mut setup);
        Setup {
            path: Some(path.into()),
            ..Setup::default()
        }
        .encode(&mut setup, Version::Lite05);
        self.conn.stream_send(2, &setup, true).unwrap();
    }

    /// Reads bidi stream `id` to its end: everything the relay wrote before its FIN, or
    /// the code it reset the stream with. Panics if neither happens within [`RAW_LIMIT`].
    pub fn read_reply(&mut self, id: u64) -> Result<Vec<u8>, u64> {
        let mut reply = Vec::new();
        let mut outcome = None;
        self.run_until(|c| {
            let mut buf = [0u8; 65536];
            loop {
                match c.stream_recv(id, &mut buf) {
                    Ok((n, fin)) => {
                        reply.extend_from_slice(&buf[..n]);
                        if fin {
                            outcome = Some(Ok(()));
                            return true;
                        }
                    }
                    Err(quiche::Error::StreamReset(code)) => {
                        outcome = Some(Err(code));
                        return true;
                    }
                    Err(_) => return c.is_closed(),
                }
            }
        });
        let outcome = outcome.unwrap_or_else(|| {
            panic!(
                "stream {id} was neither finished nor reset; connection closed: {}, peer error {:?}",
                self.conn.is_closed(),
                self.conn.peer_error()
            )
        });
        outcome.map(|()| reply)
    }
}
