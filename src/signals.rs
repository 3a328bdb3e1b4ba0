//! The relay's signals, on a thread of their own: SIGTERM or SIGINT drains the relay (a
//! second one exits at once), SIGHUP reloads its certificate files. The shards hear of it
//! through [`crate::shard::Control`]; nothing here runs on a shard's loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tracing::{error, info, warn};

use crate::shard::{Control, Drain};

/// Builds fresh QUIC configurations (one per shard) from the certificate files, with the
/// new certificate's fingerprint; an error keeps the old certificate.
pub type Reload = Box<dyn FnMut() -> Result<(Vec<quiche::Config>, String), String> + Send>;

/// What the signal thread does.
pub struct Handlers {
    pub control: Arc<Control>,
    pub drain_timeout: Duration,
    /// GOAWAY's redirect URI (empty: none).
    pub redirect: String,
    /// `None`: the certificate was generated; SIGHUP has nothing to reload.
    pub reload: Option<Reload>,
    /// Called once a drain starts (e.g. /health turns 503).
    pub on_drain: Box<dyn Fn() + Send>,
    /// The fingerprint shown to clients (the HTTP side door), replaced after a reload.
    pub fingerprint: crate::tls::SharedFingerprint,
}

/// Starts the signal thread.
pub fn spawn(mut handlers: Handlers) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                match signal {
                    SIGHUP => handlers.reload(),
                    _ => handlers.drain(signal),
                }
            }
        })?;
    Ok(())
}

impl Handlers {
    fn drain(&self, signal: i32) {
        if self.control.draining() {
            warn!(signal, "second signal while draining: exiting now");
            std::process::exit(1);
        }
        // /health answers 503 before any shard refuses a connection.
        (self.on_drain)();
        self.control.drain(Drain {
            redirect: self.redirect.clone(),
            deadline: Instant::now() + self.drain_timeout,
        });
        info!(
            signal,
            timeout = ?self.drain_timeout,
            "draining: refusing new connections, GOAWAY to every session (a second signal exits at once)"
        );
    }

    fn reload(&mut self) {
        let Some(reload) = &mut self.reload else {
            warn!("SIGHUP: the certificate was generated, there are no files to reload");
            return;
        };
        match reload() {
            Ok((configs, fingerprint)) => {
                self.control.reload(configs);
                info!(%fingerprint, "SIGHUP: certificate reloaded for new connections");
                self.fingerprint.set(&fingerprint);
            }
            Err(e) => error!(error = %e, "SIGHUP: keeping the old certificate"),
        }
    }
}
