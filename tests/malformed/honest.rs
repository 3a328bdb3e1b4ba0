//! The well-behaved side of every matrix run: one `moqring pub` streaming random bytes for
//! as long as the malformed cases last, ten `moqring sub` of that track that must receive
//! every byte, and the relay's resident memory read from /proc.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tokio::io::AsyncWriteExt;

use crate::common::{assert_bytes_eq, moqring_client, ChildProc, MoqringSub, Relay, Rng};

/// Honest subscribers per relay.
pub const SUBSCRIBERS: usize = 10;

/// The honest broadcast, under the root `anon` the honest clients use.
pub const BROADCAST: &str = "honest";

/// What the honest publisher writes at a time, and how often.
const CHUNK: usize = 4096;
const EVERY: Duration = Duration::from_millis(10);

/// A live honest track and its ten subscribers.
pub struct Honest {
    subs: Vec<MoqringSub>,
    publisher: ChildProc,
    stop: Arc<AtomicBool>,
    writer: tokio::task::JoinHandle<std::io::Result<Vec<u8>>>,
}

impl Honest {
    /// Starts the ten subscribers (from group 0), then the publisher, and waits until the
    /// publisher has taken its first bytes (it reads stdin once it has a subscriber).
    pub async fn start(relay: &Relay, label: &str) -> Result<Self> {
        let url = relay.url("anon");
        let mut subs = Vec::new();
        for _ in 0..SUBSCRIBERS {
            subs.push(MoqringSub::spawn_with(
                &url,
                BROADCAST,
                "t",
                None,
                &["--start-group", "0"],
            )?);
        }
        let extra = ["--frame-size", "2000", "--group-frames", "8"];
        let mut publisher = moqring_client("pub", &url, BROADCAST, &extra)?;
        publisher.log_stdout();
        let mut stdin = publisher.take_stdin().context("pub stdin")?;
        let stop = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let mut rng = Rng::seeded(label);
        let stopped = stop.clone();
        let writer = tokio::spawn(async move {
            let mut written = Vec::new();
            let mut started = Some(started_tx);
            while !stopped.load(Ordering::Relaxed) {
                let chunk = rng.bytes(CHUNK);
                stdin.write_all(&chunk).await?;
                written.extend_from_slice(&chunk);
                // Past the pipe's buffer: the publisher is reading, so it has a subscriber.
                if written.len() > 256 * 1024 {
                    if let Some(tx) = started.take() {
                        let _ = tx.send(());
                    }
                }
                tokio::time::sleep(EVERY).await;
            }
            stdin.shutdown().await?;
            Ok(written)
        });
        crate::common::within("the honest publisher to start", started_rx)
            .await?
            .context("the honest writer ended early")?;
        Ok(Self {
            subs,
            publisher,
            stop,
            writer,
        })
    }

    /// Ends the track and checks that every subscriber received all of it, byte for byte.
    pub async fn finish(mut self) -> Result<usize> {
        self.stop.store(true, Ordering::Relaxed);
        let data = crate::common::within("the honest writer", self.writer)
            .await?
            .context("writer task")?
            .context("writing the publisher's stdin")?;
        self.publisher.wait_success().await?;
        for (i, sub) in self.subs.into_iter().enumerate() {
            let got = sub.output().await?;
            assert_bytes_eq(&got, &data, &format!("honest subscriber {i}"));
        }
        Ok(data.len())
    }
}

/// The resident set size of process `pid` in bytes (VmRSS in /proc/PID/status).
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// Checks the relay is still running and never panicked.
pub fn assert_alive(relay: &mut Relay) -> Result<()> {
    let status = relay.process().try_status();
    ensure!(
        status.is_none(),
        "the relay exited: {status:?}\n{}",
        relay.log_tail()
    );
    let log = relay.log_tail();
    ensure!(!log.contains("panicked"), "the relay panicked:\n{log}");
    Ok(())
}
