//! Certificates with the real binary: SIGHUP reloads `--cert/--key` from disk (new
//! connections get the new certificate, open ones go on, a bad file keeps the old one),
//! and the HTTP side door serves the fingerprint in use.

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Copies `identity`'s files over `cert` and `key`.
fn install(identity: &moqring::tls::Identity, cert: &Path, key: &Path) -> Result<()> {
    std::fs::copy(&identity.cert, cert)?;
    std::fs::copy(&identity.key, key)?;
    Ok(())
}

/// A `moqring sub` of `r/t` from group 0 that accepts only the certificate `fingerprint`,
/// its output gathered as it comes.
struct Pinned {
    proc: ChildProc,
    got: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Pinned {
    fn spawn(relay: &Relay, fingerprint: &str) -> Result<Self> {
        let url = relay.url("anon").to_string();
        let mut proc = ChildProc::spawn(
            "pinned sub",
            moqring_command([
                "sub",
                url.as_str(),
                "--broadcast",
                "r",
                "--track",
                "t",
                "--start-group",
                "0",
                "--tls-fingerprint",
                fingerprint,
            ]),
        )?;
        proc.close_stdin();
        let mut stdout = proc.take_stdout().context("sub stdout")?;
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = got.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n @ 1..) = stdout.read(&mut buf).await {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Ok(Self { proc, got, reader })
    }

    /// Waits until it has received at least `n` bytes (so it is subscribed).
    async fn received(&self, n: usize) -> Result<()> {
        within(&format!("{n} bytes at the pinned sub"), async {
            while self.got.lock().unwrap().len() < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .map_err(|e| self.proc.with_log(e))
    }

    async fn output(mut self) -> Result<Vec<u8>> {
        self.proc.wait_success().await?;
        within("the sub's stdout to close", &mut self.reader).await??;
        let got = self.got.lock().unwrap().clone();
        Ok(got)
    }
}

#[tokio::test]
async fn sighup_swaps_the_certificate_for_new_connections_and_a_bad_file_keeps_the_old(
) -> Result<()> {
    let shards = moqring::shard::available_cores().len();
    let first = moqring::tls::self_signed()?;
    let second = moqring::tls::self_signed()?;
    let dir = std::env::temp_dir().join(format!("moqring-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    install(&first, &cert, &key)?;
    let mut relay = Relay::start_with(&[
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ])
    .await?;
    let pid = relay.process().id().context("relay pid")?;
    assert_eq!(
        http_get(relay.addr, "/certificate.sha256")
            .await?
            .body
            .trim(),
        first.fingerprint
    );

    // A publisher and a subscriber connected before the reload go on after it.
    let data = Rng::seeded("reload").bytes(60_000);
    let url = relay.url("anon").to_string();
    let mut publisher = ChildProc::spawn(
        "moqring pub",
        moqring_command([
            "pub",
            url.as_str(),
            "--broadcast",
            "r",
            "--track",
            "t",
            "--frame-size",
            "1000",
            "--group-frames",
            "10",
            "--tls-fingerprint",
            &first.fingerprint,
        ]),
    )?;
    let mut stdin = publisher.take_stdin().context("pub stdin")?;
    let early = Pinned::spawn(&relay, &first.fingerprint)?;
    stdin.write_all(&data[..30_000]).await?;
    stdin.flush().await?;
    early.received(30_000).await?;

    install(&second, &cert, &key)?;
    send_signal(pid, "HUP").await?;
    relay
        .process()
        .wait_log("new connections get the new one", shards)
        .await?;
    assert_eq!(
        http_get(relay.addr, "/certificate.sha256")
            .await?
            .body
            .trim(),
        second.fingerprint
    );

    // New connections get the new certificate: pinning the old one fails, the new works.
    let mut stale = Pinned::spawn(&relay, &first.fingerprint)?;
    let fresh = Pinned::spawn(&relay, &second.fingerprint)?;
    fresh.received(30_000).await?;
    let status = stale.proc.wait_for(TIMEOUT).await?;
    assert!(
        !status.success(),
        "a subscriber pinning the old certificate got in"
    );
    stale.proc.wait_log("fingerprint", 1).await?;

    // A broken file is refused with a reason; the certificate in use stays.
    std::fs::write(&cert, "not a certificate")?;
    send_signal(pid, "HUP").await?;
    relay
        .process()
        .wait_log("keeping the old certificate", 1)
        .await?;
    let after = Pinned::spawn(&relay, &second.fingerprint)?;
    after.received(30_000).await?;
    assert_eq!(
        http_get(relay.addr, "/certificate.sha256")
            .await?
            .body
            .trim(),
        second.fingerprint
    );

    stdin.write_all(&data[30_000..]).await?;
    drop(stdin);
    publisher.wait_success().await?;
    for (sub, what) in [
        (early, "connected before"),
        (fresh, "after"),
        (after, "after a bad reload"),
    ] {
        assert_bytes_eq(&sub.output().await?, &data, &format!("a subscriber {what}"));
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
