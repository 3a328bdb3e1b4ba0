//! quiche transport settings for the relay (server) and the pub/sub commands (client).
//!
//! Flow-control windows are sized so a frame of the largest accepted size and a burst of
//! groups fit; congestion control is CUBIC with pacing on (quiche's defaults, made explicit).

use crate::wire::Version;

/// Largest UDP payload we send or accept.
pub const MAX_DATAGRAM_SIZE: usize = 1350;

/// The ALPN list we offer or accept, newest moq-lite first.
pub fn alpns(versions: &[Version]) -> Vec<&'static [u8]> {
    versions.iter().map(|v| v.alpn()).collect()
}

/// What a client offers: the moq-lite ALPNs on raw QUIC, or HTTP/3 alone for WebTransport
/// (the versions then travel in the CONNECT's `wt-available-protocols`).
pub fn client_alpns(versions: &[Version], webtransport: bool) -> Vec<&'static [u8]> {
    if webtransport {
        vec![crate::webtransport::ALPN]
    } else {
        alpns(versions)
    }
}

/// Datagrams quiche may hold per connection and direction.
const DGRAM_QUEUE: usize = 16;

/// Default idle timeout: a peer silent this long is gone.
pub const IDLE_TIMEOUT_MS: u64 = 30_000;

fn transport(config: &mut quiche::Config) {
    config.set_max_idle_timeout(IDLE_TIMEOUT_MS);
    config.set_max_recv_udp_payload_size(MAX_DATAGRAM_SIZE);
    config.set_max_send_udp_payload_size(MAX_DATAGRAM_SIZE);
    config.set_initial_max_data(32 << 20);
    config.set_initial_max_stream_data_bidi_local(1 << 20);
    config.set_initial_max_stream_data_bidi_remote(1 << 20);
    config.set_initial_max_stream_data_uni(8 << 20);
    config.set_initial_max_streams_bidi(1000);
    config.set_initial_max_streams_uni(10_000);
    config.set_max_connection_window(64 << 20);
    config.set_max_stream_window(16 << 20);
    config.set_disable_active_migration(true);
    // lite-05 peers (moq-native) require DATAGRAM support to be advertised; we carry no
    // datagram tracks yet, so received ones are dropped (see `Session::process`).
    config.enable_dgram(true, DGRAM_QUEUE, DGRAM_QUEUE);
    config.set_cc_algorithm(quiche::CongestionControlAlgorithm::CUBIC);
    config.enable_pacing(true);
}

/// Server settings with the given certificate files; `idle_timeout_ms` bounds how long a
/// vanished peer keeps its state (and its broadcasts announced).
pub fn server_config(
    cert: &str,
    key: &str,
    versions: &[Version],
    idle_timeout_ms: u64,
) -> Result<quiche::Config, quiche::Error> {
    let mut config = quiche::Config::new(quiche::PROTOCOL_VERSION)?;
    config.load_cert_chain_from_pem_file(cert)?;
    config.load_priv_key_from_pem_file(key)?;
    // HTTP/3 (WebTransport, for browsers) beside the moq-lite ALPNs, on the same port.
    let mut protos = alpns(versions);
    protos.push(crate::webtransport::ALPN);
    config.set_application_protos(&protos)?;
    transport(&mut config);
    config.set_max_idle_timeout(idle_timeout_ms);
    Ok(config)
}

/// Client settings; `verify` checks the server certificate against the system roots;
/// `webtransport` offers HTTP/3 instead of the moq-lite ALPNs.
pub fn client_config(
    versions: &[Version],
    verify: bool,
    webtransport: bool,
) -> Result<quiche::Config, quiche::Error> {
    let mut config = quiche::Config::new(quiche::PROTOCOL_VERSION)?;
    config.set_application_protos(&client_alpns(versions, webtransport))?;
    config.verify_peer(verify);
    if verify {
        // Debian and most distributions keep their CA bundle here.
        let _ = config.load_verify_locations_from_directory("/etc/ssl/certs");
    }
    transport(&mut config);
    Ok(config)
}
