//! The command line as users type it, run with the real binary: every flag README
//! documents for `relay`, `pub`, `sub` and `bench` at least once, README's configuration
//! file with flags over it, `--cores` pinning each shard thread to exactly its core (read
//! back from `/proc/PID/task/*/status`), and bad values answered with one line and a
//! non-zero exit, never a panic.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// A relay started with exactly the given arguments, once it printed its banner.
struct Started {
    proc: ChildProc,
    addr: SocketAddr,
    /// The banner's lines on stdout (address, fingerprint, protocols, shards).
    banner: Vec<String>,
}

impl Started {
    async fn relay(args: &[&str]) -> Result<Self> {
        let mut proc = ChildProc::spawn("moqring relay", moqring_command(args))?;
        proc.close_stdin();
        let stdout = proc.take_stdout().context("relay stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut banner = Vec::new();
        let read = within("the relay's banner", async {
            while let Some(line) = lines.next_line().await? {
                banner.push(line);
                if banner.last().is_some_and(|l| l.starts_with("shards:")) {
                    return Ok(());
                }
            }
            bail!("the relay closed stdout after {banner:?}")
        })
        .await
        .and_then(|r| r);
        if let Err(e) = read {
            return Err(proc.with_log(e));
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let addr = banner[0]
            .strip_prefix("moqring relay listening on ")
            .context("no listening line")?
            .parse()?;
        Ok(Self { proc, addr, banner })
    }

    fn line(&self, prefix: &str) -> &str {
        self.banner
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {:?}", self.banner))
    }

    fn url(&self, path: &str) -> String {
        format!("moql://{}/{path}", self.addr)
    }
}

/// Runs a command that must fail: returns its stderr, after checking it exited non-zero
/// (not by a signal) with exactly one line that names what was wrong, and no panic.
async fn fails_with_one_line(args: &[&str], names: &str) -> Result<String> {
    let out = within(
        &format!("moqring {args:?} to exit"),
        moqring_command(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    ensure!(
        out.status.code().is_some_and(|c| c != 0),
        "{args:?} exited with {:?}; stderr: {stderr}",
        out.status
    );
    ensure!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    ensure!(
        stderr.lines().count() == 1 && stderr.starts_with("moqring: "),
        "{args:?}: want one `moqring: ...` line, got {stderr:?}"
    );
    ensure!(
        stderr.contains(names),
        "{args:?}: {stderr:?} does not name {names:?}"
    );
    Ok(stderr)
}

/// A certificate and key in files, with the fingerprint the relay must print for them.
fn certificate() -> moqring::tls::Identity {
    moqring::tls::self_signed().expect("certificate")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The cores each `shard-N` thread of `pid` may run on, by shard index.
fn shard_affinity(pid: u32) -> Result<Vec<(usize, String)>> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let status = std::fs::read_to_string(task?.path().join("status"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        let Some(index) = field("Name:").and_then(|n| n.strip_prefix("shard-")?.parse().ok())
        else {
            continue;
        };
        out.push((index, field("Cpus_allowed_list:").unwrap_or_default()));
    }
    out.sort();
    Ok(out)
}

#[tokio::test]
async fn cores_pins_one_shard_to_each_listed_core() -> Result<()> {
    let available = moqring::shard::available_cores();
    let first = available[0];
    let last = *available.last().unwrap();
    let mut lists = vec![(format!("{last}"), vec![last])];
    if available.len() >= 2 {
        let second = available[1];
        lists.push((format!("{first},{second}"), vec![first, second]));
        if second == first + 1 {
            lists.push((format!("{first}-{second}"), vec![first, second]));
        }
    } else {
        skip(
            "cores_pins_one_shard_to_each_listed_core",
            "lists and ranges of cores",
            "only one core is available",
        );
    }
    for (list, cores) in lists {
        let relay = Started::relay(&["relay", "--bind", "127.0.0.1:0", "--cores", &list]).await?;
        assert_eq!(
            relay.line("shards: "),
            format!("{} on cores {cores:?}", cores.len())
        );
        // Each shard pins itself as its thread starts, before it listens.
        relay.proc.wait_log("shard listening", cores.len()).await?;
        let pid = relay.proc.id().context("relay pid")?;
        let want: Vec<(usize, String)> = cores
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.to_string()))
            .collect();
        assert_eq!(shard_affinity(pid)?, want, "--cores {list}");
    }
    Ok(())
}

#[tokio::test]
async fn bad_core_lists_get_one_line_each() -> Result<()> {
    fails_with_one_line(&["relay", "--cores", ""], "--cores").await?;
    fails_with_one_line(&["relay", "--cores", "x"], "--cores").await?;
    fails_with_one_line(&["relay", "--cores", "3-1"], "--cores").await?;
    fails_with_one_line(&["relay", "--cores", ","], "--cores").await?;
    fails_with_one_line(&["relay", "--cores", "0-99999999999"], "out of range").await?;
    fails_with_one_line(&["relay", "--cores", "0", "--threads", "1"], "--threads").await?;
    fails_with_one_line(&["relay", "--cores", "1023"], "core 1023 is not available").await?;
    // A core the process's affinity mask leaves out.
    let available = moqring::shard::available_cores();
    if available.len() >= 2 && Path::new("/usr/bin/taskset").exists() {
        let out = tokio::process::Command::new("taskset")
            .args(["-c", &available[0].to_string(), MOQRING])
            .args(["relay", "--cores", &available[1].to_string()])
            .stdin(Stdio::null())
            .output()
            .await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("core {} is not available", available[1])),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    } else {
        skip(
            "bad_core_lists_get_one_line_each",
            "a core outside the affinity mask",
            "taskset or a second core is missing",
        );
    }
    Ok(())
}

#[tokio::test]
async fn every_relay_flag_starts_a_relay_that_carries_traffic() -> Result<()> {
    let identity = certificate();
    let relay = Started::relay(&[
        "relay",
        "--bind",
        "127.0.0.1:0",
        "--cert",
        s(&identity.cert),
        "--key",
        s(&identity.key),
        "--alpn",
        "moq-lite-05",
        "--alpn",
        "moq-lite-04",
        "--max-frame-size",
        "16777216",
        "--max-queued-bytes",
        "8388608",
        "--cache-bytes",
        "4194304",
        "--cache-age-ms",
        "10000",
        "--cache",
        "live/*:video=bytes=16777216,age=2000",
        "--eager",
        "live/*=video,audio",
        "--max-connections",
        "20000",
        "--idle-timeout-ms",
        "30000",
        "--threads",
        "2",
        "--no-pin",
        "--no-steering",
        "--handshake-timeout",
        "10s",
        "--max-pending-handshakes",
        "1000",
        "--max-pending-per-address",
        "16",
        "--retry",
        "always",
    ])
    .await?;
    assert_eq!(
        relay.line("certificate sha256 fingerprint: "),
        identity.fingerprint
    );
    assert_eq!(relay.line("protocols: "), "moq-lite-05, moq-lite-04");
    assert!(relay.line("shards: ").starts_with("2 on cores"));
    let settings = relay.proc.wait_log(" settings", 1).await?;
    for field in [
        "max_frame_size=16777216",
        "max_queued_bytes=8388608",
        "cache_bytes=4194304",
        "cache_age_ms=10000",
        "max_connections=20000",
        "idle_timeout_ms=30000",
        "pin=false",
        "steering=false",
        "pattern: \"live/*\", track: Some(\"video\"), bytes: Some(16777216), age: Some(2s)",
        "tracks: [\"video\", \"audio\"]",
    ] {
        assert!(settings.contains(field), "{field} not in {settings}");
    }
    relay.proc.wait_log("steered=false", 1).await?;
    let handshakes = relay.proc.wait_log(" settings", 1).await?;
    assert!(
        handshakes.contains("retry: Always") && handshakes.contains("max_pending_per_address: 16"),
        "{handshakes}"
    );
    let unpinned = relay.proc.wait_log("shard listening", 2).await?;
    assert!(unpinned.contains("core=None"), "{unpinned}");

    // A pub and a sub with the client flags, through it; moq-lite-03 is not offered.
    let data = Rng::seeded("cli-flags").bytes(300_000);
    let url = relay.url("anon");
    let mut sub = ChildProc::spawn(
        "moqring sub",
        moqring_command([
            "sub",
            &url,
            "--broadcast",
            "demo",
            "--track",
            "t",
            "--alpn",
            "moq-lite-04",
            "--tls-fingerprint",
            &identity.fingerprint,
            "--start-group",
            "0",
        ]),
    )?;
    sub.close_stdin();
    let mut sub_out = sub.take_stdout().context("sub stdout")?;
    let received = tokio::spawn(async move {
        let mut out = Vec::new();
        sub_out.read_to_end(&mut out).await.map(|_| out)
    });
    let mut publisher = ChildProc::spawn(
        "moqring pub",
        moqring_command([
            "pub",
            &url,
            "--broadcast",
            "demo",
            "--track",
            "t",
            "--frame-size",
            "1000",
            "--group-frames",
            "4",
            "--alpn",
            "moq-lite-05",
            "--tls-disable-verify",
        ]),
    )?;
    let mut stdin = publisher.take_stdin().context("pub stdin")?;
    stdin.write_all(&data).await?;
    drop(stdin);
    publisher.wait_success().await?;
    sub.wait_success().await?;
    let got = within("the sub's output", received).await???;
    assert_bytes_eq(&got, &data, "pub -> relay -> sub with every client flag");
    // --retry always: both clients proved their address with a Retry first.
    relay.proc.wait_log("retried=true", 2).await?;

    // The relay accepts only the versions --alpn names.
    let mut refused = moqring_command([
        "sub",
        &url,
        "--broadcast",
        "demo",
        "--track",
        "t",
        "--alpn",
        "moq-lite-03",
        "--tls-disable-verify",
    ]);
    refused.stdin(Stdio::null()).kill_on_drop(true);
    let out = within("a lite-03 sub to fail", refused.output()).await??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(())
}

/// README's configuration file, as README shows it.
fn readme_config() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme.find("```toml\n").expect("a toml block in README") + 8;
    let end = start + readme[start..].find("```").expect("end of the toml block");
    readme[start..end].to_string()
}

#[tokio::test]
async fn readme_config_file_runs_with_flags_over_it() -> Result<()> {
    let dir = tempdir("config")?;
    let identity = certificate();
    let file = dir.join("relay.toml");
    let text = readme_config();
    for key in [
        "bind",
        "cert",
        "key",
        "alpn",
        "max_frame_size",
        "max_queued_bytes",
        "max_connections",
        "idle_timeout_ms",
        "cores",
        "steering",
        "pin",
        "[cache]",
        "[[cache.rule]]",
        "[[eager]]",
        "tls_generate",
        "drain_timeout",
        "drain_redirect",
        "log_format",
        "http_bind",
        "[cluster]",
    ] {
        assert!(text.contains(key), "README's example lacks {key}");
    }
    std::fs::write(&file, &text)?;
    // Flags replace the file's address, certificate, queue bound and core list (the
    // example's cores and port need not exist here); rules of the command line go first.
    let relay = Started::relay(&[
        "relay",
        "--config",
        s(&file),
        "--bind",
        "127.0.0.1:0",
        "--cert",
        s(&identity.cert),
        "--key",
        s(&identity.key),
        "--max-queued-bytes",
        "1234567",
        "--threads",
        "1",
        "--cache",
        "live/*:audio=bytes=1000",
        "--eager",
        "news/*=video",
        "--log-format",
        "text",
        "--http-bind",
        "127.0.0.1:0",
    ])
    .await?;
    assert!(relay.addr.ip().is_loopback(), "{}", relay.addr);
    assert_ne!(relay.addr.port(), 4443);
    assert_eq!(
        relay.line("certificate sha256 fingerprint: "),
        identity.fingerprint
    );
    assert_eq!(relay.line("protocols: "), "moq-lite-05, moq-lite-04");
    assert!(relay.line("shards: ").starts_with("1 on cores"));
    let settings = relay.proc.wait_log(" settings", 1).await?;
    for field in [
        "max_queued_bytes=1234567",
        "max_frame_size=16777216",
        "max_connections=20000",
        "cache_bytes=4194304",
        "pin=true",
        "steering=true",
    ] {
        assert!(settings.contains(field), "{field} not in {settings}");
    }
    let before = |a: &str, b: &str| settings.find(a).unwrap() < settings.find(b).unwrap();
    assert!(before("track: Some(\"audio\")", "track: Some(\"video\")"));
    assert!(before("news/*", "tracks: [\"video\", \"audio\"]"));
    drop(relay);

    // The file alone decides what no flag gives: its own cores, bind, cert and key.
    let core = moqring::shard::available_cores()[0];
    let own = text
        .replace("0.0.0.0:4443", "127.0.0.1:0")
        .replace("/etc/moqring/cert.pem", s(&identity.cert))
        .replace("/etc/moqring/key.pem", s(&identity.key))
        .replace("cores = \"0-3\"", &format!("cores = \"{core}\""));
    std::fs::write(&file, own)?;
    let relay = Started::relay(&["relay", "--config", s(&file)]).await?;
    assert_eq!(relay.line("shards: "), format!("1 on cores [{core}]"));
    assert_eq!(
        relay.line("certificate sha256 fingerprint: "),
        identity.fingerprint
    );
    // The file's log format: one JSON object a line.
    let settings = relay.proc.wait_log("\"message\":\"settings\"", 1).await?;
    let json: serde_json::Value = serde_json::from_str(&settings)?;
    assert_eq!(json["fields"]["max_queued_bytes"], 8388608, "{json}");
    relay.proc.wait_log("shard listening", 1).await?;
    let pid = relay.proc.id().context("pid")?;
    assert_eq!(shard_affinity(pid)?, vec![(0, core.to_string())]);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// A fresh folder under the system's temporary one.
fn tempdir(label: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "moqring-cli-{label}-{}-{}",
        std::process::id(),
        Rng::seeded(label).next_u64()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[tokio::test]
async fn every_bench_flag_runs_a_measurement() -> Result<()> {
    let relay = Started::relay(&[
        "relay",
        "--bind",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--tls-generate",
        "localhost,127.0.0.1",
        "--drain-timeout",
        "500ms",
        "--drain-redirect",
        "moql://other.example:4443/",
        "--log-format",
        "text",
    ])
    .await?;
    let pid = relay.proc.id().context("pid")?.to_string();
    let fingerprint = relay.line("certificate sha256 fingerprint: ").to_string();
    let cpus: Vec<String> = moqring::shard::available_cores()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let url = relay.url("anon");
    let common = [
        "bench",
        url.as_str(),
        "--publishers",
        "1",
        "--subscribers",
        "2",
        "--frame-size",
        "5000",
        "--group-frames",
        "60",
        "--duration",
        "1s",
        "--warmup",
        "500ms",
        "--drain",
        "2s",
        "--setup-timeout",
        "20s",
        "--threads",
        "2",
        "--connect-rate",
        "500",
        "--relay-pid",
        &pid,
        "--json",
        "--quiet",
        "--alpn",
        "moq-lite-05",
    ];
    let pin = cpus.join(",");
    let runs: [&[&str]; 2] = [
        &["--fps", "30", "--tls-disable-verify", "--pin", &pin],
        &["--rate-mbit", "2", "--tls-fingerprint", &fingerprint],
    ];
    for extra in runs {
        let mut cmd = moqring_command(common);
        cmd.args(extra).stdin(Stdio::null()).kill_on_drop(true);
        let out = within_for(Duration::from_secs(60), "moqring bench", cmd.output()).await??;
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "bench {extra:?}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_str(stdout.trim())?;
        assert_eq!(json["subscribers"], 2, "{json}");
        assert_eq!(json["subscribers_receiving"], 2, "{json}");
        assert_eq!(json["threads"], 2, "{json}");
        assert_eq!(json["frame_size"], 5000, "{json}");
        assert_eq!(json["version"], "moq-lite-05", "{json}");
        assert_eq!(json["frames_lost"], 0, "{json}");
        assert!(json["frames_delivered"].as_u64().unwrap() > 0, "{json}");
        assert_eq!(json["relay"]["pid"].to_string(), pid, "{json}");
    }
    Ok(())
}

#[tokio::test]
async fn bench_against_no_relay_fails() -> Result<()> {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("moql://127.0.0.1:{port}/anon");
    let mut cmd = moqring_command([
        "bench",
        &url,
        "--setup-timeout",
        "2s",
        "--warmup",
        "0s",
        "--duration",
        "1s",
        "--quiet",
        "--tls-disable-verify",
    ]);
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = within("bench to give up", cmd.output()).await??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "bench exited 0: {stderr}");
    assert!(stderr.contains("no subscriber received"), "{stderr}");
    assert!(out.stdout.is_empty(), "a report for nothing measured");
    Ok(())
}

#[tokio::test]
async fn bad_values_get_one_line_naming_them() -> Result<()> {
    let dir = tempdir("bad")?;
    let bad_key = dir.join("bad-key.toml");
    std::fs::write(&bad_key, "max_frame_size = 1\nno_such_key = 2\n")?;
    let both = dir.join("both.toml");
    std::fs::write(&both, "cores = \"0\"\nthreads = 1\n")?;
    let zero = dir.join("zero.toml");
    std::fs::write(&zero, "idle_timeout_ms = 0\n")?;
    let bad_retry = dir.join("retry.toml");
    std::fs::write(&bad_retry, "retry = \"sometimes\"\n")?;
    let zero_handshake = dir.join("handshake.toml");
    std::fs::write(&zero_handshake, "handshake_timeout = \"0s\"\n")?;
    let url = "moql://127.0.0.1:9/anon";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["relay", "--threads", "0"], "--threads"),
        (vec!["relay", "--max-frame-size", "0"], "--max-frame-size"),
        (
            vec!["relay", "--max-queued-bytes", "0"],
            "--max-queued-bytes",
        ),
        (vec!["relay", "--idle-timeout-ms", "0"], "--idle-timeout-ms"),
        (
            vec!["relay", "--idle-timeout-ms", "18446744073709551615"],
            "--idle-timeout-ms",
        ),
        (
            vec!["relay", "--cache-age-ms", "18446744073709551615"],
            "--cache-age-ms",
        ),
        (vec!["relay", "--max-connections=-1"], "--max-connections"),
        (vec!["relay", "--cache", "live/*"], "--cache"),
        (vec!["relay", "--eager", "live/*="], "--eager"),
        (vec!["relay", "--alpn", "moq-lite-01"], "--alpn"),
        (vec!["relay", "--bind", "localhost"], "--bind"),
        (vec!["relay", "--cert", "c.pem"], "--key"),
        (
            vec![
                "relay",
                "--cert",
                "/nonexistent.pem",
                "--key",
                "/nonexistent.pem",
            ],
            "nonexistent.pem",
        ),
        (
            vec!["relay", "--config", "/nonexistent.toml"],
            "nonexistent.toml",
        ),
        (vec!["relay", "--config", s(&bad_key)], "no_such_key"),
        (vec!["relay", "--config", s(&both)], "threads"),
        (vec!["relay", "--config", s(&zero)], "idle_timeout_ms"),
        (vec!["relay", "--no-such-flag"], "--no-such-flag"),
        (
            vec!["relay", "--drain-timeout", "1e300s"],
            "--drain-timeout",
        ),
        (
            vec!["relay", "--drain-redirect", "not a url"],
            "--drain-redirect",
        ),
        (vec!["relay", "--log-format", "xml"], "--log-format"),
        (vec!["relay", "--retry", "sometimes"], "--retry"),
        (
            vec!["relay", "--handshake-timeout", "0s"],
            "--handshake-timeout",
        ),
        (
            vec!["relay", "--handshake-timeout", "soon"],
            "--handshake-timeout",
        ),
        (
            vec!["relay", "--max-pending-handshakes", "0"],
            "--max-pending-handshakes",
        ),
        (
            vec!["relay", "--max-pending-per-address", "0"],
            "--max-pending-per-address",
        ),
        (vec!["relay", "--config", s(&bad_retry)], "retry"),
        (
            vec!["relay", "--config", s(&zero_handshake)],
            "handshake_timeout",
        ),
        (
            vec!["relay", "--tls-generate", "a", "--cert", "c", "--key", "k"],
            "--tls-generate",
        ),
        (vec!["bench", url, "--duration", "1e300s"], "--duration"),
        (vec!["bench", url, "--warmup", "1e300s"], "--warmup"),
        (vec!["bench", url, "--drain", "1e300s"], "--drain"),
        (
            vec!["bench", url, "--setup-timeout", "1e300s"],
            "--setup-timeout",
        ),
        (vec!["bench", url, "--fps", "1e-300"], "--fps"),
        (vec!["bench", url, "--rate-mbit", "1e-300"], "--rate-mbit"),
        (vec!["bench", url, "--rate-mbit=-5"], "--rate-mbit"),
        (vec!["bench", url, "--frame-size", "8"], "--frame-size"),
        (vec!["bench", url, "--subscribers", "0"], "--subscribers"),
        (vec!["bench", url, "--threads", "0"], "--threads"),
        (vec!["bench", url, "--connect-rate", "0"], "--connect-rate"),
        (vec!["bench", url, "--group-frames", "0"], "--group-frames"),
        (vec!["bench", "http://127.0.0.1:9/anon"], "moql://"),
        (
            vec!["sub", "not a url", "--broadcast", "b", "--track", "t"],
            "URL",
        ),
    ];
    for (args, names) in cases {
        fails_with_one_line(&args, names).await?;
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn help_and_version_exit_zero() -> Result<()> {
    for args in [&["--help"][..], &["--version"], &["relay", "--help"]] {
        let out = within("moqring to answer", moqring_command(args).output()).await??;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}: {:?}", out.status);
        assert!(text.contains("moqring"), "{args:?}: {text}");
    }
    Ok(())
}
