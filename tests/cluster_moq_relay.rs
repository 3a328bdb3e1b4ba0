//! Clustering with moq-relay 0.17.10 (crates.io), on loopback, both ways round:
//!
//! - a moqring edge dialling a moq-relay origin (`--cluster-connect moql://ORIGIN/
//!   --client-tls-disable-verify`);
//! - a moq-relay edge dialling a moqring origin (`--cluster-connect moql://ORIGIN/
//!   --connect-tls-insecure`).
//!
//! Over each link a track travels both ways: published with `moqring pub` on one relay,
//! read with `moqring sub` on the other, byte for byte (about 200 KB of random bytes,
//! paced at 2 Mbit/s so the whole track crosses while both relays are live, from group 0).
//!
//! moq-relay is `MOQ_RELAY_BIN`, else `perf/.tools/moq-relay-default/bin/moq-relay`
//! (`perf/build-moq-relay.sh default` builds it). Without it the tests pass with a
//! `SKIPPED` line, except under CI (`CI` set), where they fail.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;

use anyhow::{Context, Result};
use common::*;
use tokio::process::Command;
use url::Url;

/// The root every broadcast of these tests lives under.
const ROOT: &str = "anon";

/// Payload rate of the publishers, Mbit/s.
const RATE_MBIT: &str = "2";

/// The moq-relay binary, or `None` (with a loud skip) when it is not built; under CI a
/// missing binary fails the test.
fn moq_relay_bin(test: &str) -> Option<PathBuf> {
    let path = match std::env::var_os("MOQ_RELAY_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("perf/.tools/moq-relay-default/bin/moq-relay"),
    };
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: moq-relay not found at {} (build it with perf/build-moq-relay.sh default, \
         or point MOQ_RELAY_BIN at one)",
        path.display()
    );
    say("SKIPPED: moq-relay not built (perf/build-moq-relay.sh default)");
    None
}

/// A free UDP port on 127.0.0.1 (the kernel's pick, released at once).
fn free_udp_port() -> Result<u16> {
    let socket = UdpSocket::bind("127.0.0.1:0").context("binding a probe UDP socket")?;
    Ok(socket.local_addr()?.port())
}

/// A running moq-relay, killed on drop.
struct MoqRelay {
    addr: SocketAddr,
    proc: ChildProc,
}

impl MoqRelay {
    /// `moq-relay --listen 127.0.0.1:PORT` with a generated certificate, every path open,
    /// and `extra` arguments; ready once its UDP port is bound.
    async fn start(bin: &PathBuf, extra: &[&str]) -> Result<Self> {
        let port = free_udp_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = Command::new(bin);
        cmd.args(["--listen", &addr.to_string()])
            .args(["--listen-tls-generate", "localhost,127.0.0.1"])
            .args(["--auth-public", "**"])
            .args(["--log-level", "debug"])
            .args(extra);
        let mut proc = ChildProc::spawn("moq-relay", cmd)?;
        proc.close_stdin();
        proc.log_stdout();
        wait_udp_bound(&mut proc, port, "moq-relay").await?;
        Ok(Self { addr, proc })
    }

    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("moql://{}/{path}", self.addr)).expect("valid relay url")
    }
}

/// `moqring pub|sub URL --broadcast B --track t --tls-disable-verify EXTRA...`.
fn client(command: &str, url: &Url, broadcast: &str, extra: &[&str]) -> Result<ChildProc> {
    let mut cmd = moqring_command([
        command,
        url.as_str(),
        "--broadcast",
        broadcast,
        "--track",
        "t",
        "--tls-disable-verify",
    ]);
    cmd.args(extra).env("RUST_LOG", "moqring=info");
    ChildProc::spawn(format!("moqring {command} {url} {broadcast}"), cmd)
}

/// Publishes ~200 KB of random bytes at `from` (paced) and reads the track from group 0 at
/// `to`; fails unless every byte arrived in order. `logs` are the relays, whose log tails
/// a failure carries.
async fn carry(
    from: &Url,
    to: &Url,
    broadcast: &str,
    rng: &mut Rng,
    logs: &[&ChildProc],
) -> Result<()> {
    let len = 200_000 + rng.below(20_000) as usize;
    let data = rng.bytes(len).to_vec();
    let result = async {
        let mut sub = client("sub", to, broadcast, &["--start-group", "0"])?;
        sub.close_stdin();
        let mut stdout = sub.take_stdout().context("sub stdout")?;
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut out).await?;
            std::io::Result::Ok(out)
        });
        let mut publisher = client(
            "pub",
            from,
            broadcast,
            &[
                "--rate-mbit",
                RATE_MBIT,
                "--frame-size",
                "4000",
                "--group-frames",
                "8",
            ],
        )?;
        publisher.log_stdout();
        let mut stdin = publisher.take_stdin().context("pub stdin")?;
        let input = data.clone();
        let writer = tokio::spawn(async move {
            tokio::io::AsyncWriteExt::write_all(&mut stdin, &input).await?;
            tokio::io::AsyncWriteExt::shutdown(&mut stdin).await
        });
        publisher.wait_success().await?;
        within("pub's stdin writer", writer)
            .await?
            .context("stdin task")??;
        sub.wait_success().await?;
        let got = within("sub's stdout", reader)
            .await?
            .context("stdout task")??;
        assert_bytes_eq(&got, &data, &format!("{broadcast}: {from} -> {to}"));
        Ok(())
    }
    .await;
    result.map_err(|err: anyhow::Error| logs.iter().fold(err, |err, relay| relay.with_log(err)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moqring_edge_dials_a_moq_relay_origin() -> Result<()> {
    const TEST: &str = "moqring_edge_dials_a_moq_relay_origin";
    let Some(bin) = moq_relay_bin(TEST) else {
        return Ok(());
    };
    let mut rng = Rng::seeded(TEST);
    let origin = MoqRelay::start(&bin, &[]).await?;
    let upstream = format!("moql://{}/", origin.addr);
    let edge = Relay::start_with(&[
        "--threads",
        "1",
        "--cluster-connect",
        &upstream,
        "--client-tls-disable-verify",
    ])
    .await?;
    edge.child()
        .wait_log("cluster link up", 1)
        .await
        .map_err(|err| origin.proc.with_log(err))?;
    let logs = [&origin.proc, edge.child()];

    // Published on the moq-relay origin, read on the moqring edge.
    carry(
        &origin.url(ROOT),
        &edge.url(ROOT),
        "from-origin",
        &mut rng,
        &logs,
    )
    .await?;
    // Published on the moqring edge, read on the moq-relay origin.
    carry(
        &edge.url(ROOT),
        &origin.url(ROOT),
        "from-edge",
        &mut rng,
        &logs,
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moq_relay_edge_dials_a_moqring_origin() -> Result<()> {
    const TEST: &str = "moq_relay_edge_dials_a_moqring_origin";
    let Some(bin) = moq_relay_bin(TEST) else {
        return Ok(());
    };
    let mut rng = Rng::seeded(TEST);
    let origin = Relay::start_with(&["--threads", "1"]).await?;
    let upstream = format!("moql://{}/", origin.addr);
    let edge = MoqRelay::start(
        &bin,
        &["--cluster-connect", &upstream, "--connect-tls-insecure"],
    )
    .await?;
    // The link is up once the origin holds the edge's session.
    origin
        .child()
        .wait_log("connection accepted", 1)
        .await
        .map_err(|err| edge.proc.with_log(err))?;
    let logs = [&edge.proc, origin.child()];

    // Published on the moqring origin, read on the moq-relay edge.
    carry(
        &origin.url(ROOT),
        &edge.url(ROOT),
        "from-origin",
        &mut rng,
        &logs,
    )
    .await?;
    // Published on the moq-relay edge, read on the moqring origin.
    carry(
        &edge.url(ROOT),
        &origin.url(ROOT),
        "from-edge",
        &mut rng,
        &logs,
    )
    .await?;
    Ok(())
}
