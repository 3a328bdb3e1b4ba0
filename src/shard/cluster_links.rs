//! The cluster links a shard dials, carried out on its connection table each loop turn:
//! dial what is due, notice links that were lost, check a new link's certificate, give
//! up on handshakes past their deadline and keep quiet links alive.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::Table;
use crate::client::Verify;
use crate::cluster::{ClusterConfig, Dialer};
use crate::net::quic;
use crate::wire::Version;

/// One shard's share of the cluster links, and what it dials them with.
pub struct ClusterLinks {
    dialer: Dialer,
    verify: Verify,
    /// Client settings for raw QUIC and for WebTransport links (built when first needed).
    raw: Option<quiche::Config>,
    webtransport: Option<quiche::Config>,
    root: Option<std::path::PathBuf>,
    versions: Vec<Version>,
    idle_timeout_ms: u64,
    local: SocketAddr,
    /// Our relay id, sent as the origin of our announcements.
    origin: u64,
}

impl ClusterLinks {
    /// The links of `config` this shard dials (every `shards`-th from `shard`), from the
    /// socket bound at `local`.
    pub fn new(
        config: &ClusterConfig,
        (shard, shards): (usize, usize),
        local: SocketAddr,
        versions: Vec<Version>,
        idle_timeout_ms: u64,
        origin: u64,
    ) -> Option<Self> {
        let urls: Vec<url::Url> = config
            .peers
            .iter()
            .enumerate()
            .filter(|(i, _)| i % shards == shard)
            .map(|(_, u)| u.clone())
            .collect();
        if urls.is_empty() {
            return None;
        }
        let ping = Duration::from_millis((idle_timeout_ms / 3).max(100));
        let seed = origin ^ (shard as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Some(Self {
            dialer: Dialer::new(urls, Instant::now(), ping, seed),
            verify: config.verify.clone(),
            raw: None,
            webtransport: None,
            root: config.root.clone(),
            versions,
            idle_timeout_ms,
            local,
            origin,
        })
    }

    fn client_config(&mut self, webtransport: bool) -> Result<&mut quiche::Config, String> {
        let slot = if webtransport {
            &mut self.webtransport
        } else {
            &mut self.raw
        };
        if slot.is_none() {
            let roots = matches!(self.verify, Verify::Roots);
            let mut config = quic::client_config(&self.versions, roots, webtransport)
                .map_err(|e| format!("client TLS settings: {e}"))?;
            if let (true, Some(root)) = (roots, &self.root) {
                let path = root.to_string_lossy();
                config
                    .load_verify_locations_from_file(&path)
                    .map_err(|e| format!("--client-tls-root {path}: {e}"))?;
            }
            config.set_max_idle_timeout(self.idle_timeout_ms);
            *slot = Some(config);
        }
        Ok(slot.as_mut().expect("just built"))
    }

    /// One turn's work on `table` (see the module docs).
    pub fn turn(&mut self, table: &mut Table, now: Instant) {
        let up: Vec<(usize, usize)> = self.dialer.sessions().collect();
        for (i, key) in up {
            if !table.is_dialled(key) {
                warn!(url = %self.dialer.url(i), "cluster link lost; dialling again after a backoff");
                self.dialer.lost(i, now);
                continue;
            }
            if table.is_established(key) && self.dialer.established(i) {
                let Some(session) = table.get_mut(key) else {
                    continue;
                };
                match crate::client::check_certificate(session, &self.verify) {
                    Ok(()) => info!(url = %self.dialer.url(i), session = key, "cluster link up"),
                    Err(e) => warn!(url = %self.dialer.url(i), error = %e, "cluster link refused"),
                }
                table.wake(key);
            } else if self.dialer.dial_expired(i, now) {
                warn!(url = %self.dialer.url(i), "cluster link handshake timed out");
                if let Some(session) = table.get_mut(key) {
                    let _ = session.conn_mut().close(false, 0x0, b"handshake timed out");
                }
                table.wake(key);
            } else if self.dialer.ping_due(i, now) {
                if let Some(session) = table.get_mut(key) {
                    let _ = session.conn_mut().send_ack_eliciting();
                }
                table.wake(key);
            }
        }
        if table.is_draining() {
            return;
        }
        for i in self.dialer.due(now) {
            let url = self.dialer.url(i).clone();
            let (local, origin) = (self.local, self.origin);
            let dialled = self
                .client_config(url.scheme() == "https")
                .and_then(|config| table.dial(&url, config, local, origin));
            match dialled {
                Ok(key) => self.dialer.dialed(i, key, now),
                Err(e) => {
                    warn!(%url, error = %e, "cannot dial cluster peer");
                    self.dialer.failed(i, now);
                }
            }
        }
    }

    /// When [`ClusterLinks::turn`] next has work.
    pub fn next_wake(&self) -> Option<Instant> {
        self.dialer.next_wake()
    }
}
