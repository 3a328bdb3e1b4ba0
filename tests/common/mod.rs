//! Shared harness for moqring's integration tests: starts relays (our binary, or an
//! external reference relay for harness development), spawns `moqring` client
//! processes under kill-on-drop guards, builds moq-native / moq-tokio clients pinned to
//! a moq-lite version, and generates, publishes, reads and compares random tracks.
//!
//! Every wait goes through [`within`] (or an explicit timeout), so a broken relay fails
//! a test instead of hanging it. Each test starts its own relay on an ephemeral port,
//! so tests are independent and run in parallel.
//!
//! # Relay under test
//!
//! [`Relay::start`] runs `moqring relay --bind 127.0.0.1:0` and parses the `moqring relay
//! listening on ADDR` line it prints on stdout. Only the interop tests
//! (`tests/interop.rs`) start their relay with [`Relay::start_interop`], which honours
//! `MOQRING_TEST_RELAY_CMD`: another relay's command line (whitespace-separated, no
//! quoting), for developing the harness against a reference relay. `{port}` and `{addr}`
//! are replaced with a free UDP port on 127.0.0.1 and `127.0.0.1:{port}`; the relay counts
//! as ready once that UDP port is bound. Every other test runs `moqring relay` whatever
//! the variable says (and says so on stderr), and a relay that needs moqring's flags or
//! environment refuses to start an external one. A check that only holds for moqring is
//! skipped with a `SKIPPED` line on stderr. `.ci/run` unsets the variable. Example with the
//! moq-relay reference build:
//!
//! ```text
//! MOQRING_TEST_RELAY_CMD='/tmp/moq-relay-ref/bin/moq-relay --listen {addr}
//!   --listen-tls-generate localhost --auth-public **' cargo test --release --test interop
//! ```
//!
//! # Loud skips
//!
//! A test whose precondition is missing on this host still passes, but [`skip`] writes
//! why to the process's stderr directly, past libtest's output capture, so every run
//! shows it.
//!
//! Payloads are random; the seed is printed and can be pinned with
//! `MOQRING_TEST_SEED=<u64>` to replay a failure.

#![allow(dead_code)] // Each test binary uses its own subset of the harness.

pub mod forwarder;
pub mod raw;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use url::Url;

pub use moq_native::moq_net as native_net;
pub use moq_tokio::moq_net as tokio_net;

/// Upper bound for any single wait: a connect, an announcement, the next group or
/// frame, a process exit.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// How long publishers keep groups and subscribers tolerate group reordering. Far
/// longer than any test, so no client or relay may legitimately skip a group.
pub const LATENCY: Duration = Duration::from_secs(120);

/// Path of the `moqring` binary built for these tests.
pub const MOQRING: &str = env!("CARGO_BIN_EXE_moqring");

/// Env var naming an external relay command line to test instead of `moqring relay`.
pub const RELAY_CMD_ENV: &str = "MOQRING_TEST_RELAY_CMD";

/// Env var pinning the payload seed.
pub const SEED_ENV: &str = "MOQRING_TEST_SEED";

/// Lines of a child's stderr/stdout kept for failure reports.
const LOG_TAIL: usize = 400;

/// Bytes of one log line kept.
const MAX_LOG_LINE: usize = 2048;

/// Writes `line` straight to this process's stderr, past libtest's capture (which only
/// takes `print!`/`eprint!`), so it shows in the output of passing tests too.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Reports that `test` skipped `what` because `why`, loudly (see [`say`]).
pub fn skip(test: &str, what: &str, why: &str) {
    say(&format!("SKIPPED in {test}: {what}: {why}"));
}

/// Install the process-wide rustls crypto provider (aws-lc-rs). Idempotent.
pub fn init_crypto() {
    // Err means a provider is already installed, which is all we need.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Await `fut` for at most [`TIMEOUT`], naming `what` in the error.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> Result<T> {
    within_for(TIMEOUT, what, fut).await
}

/// Await `fut` for at most `limit`, naming `what` in the error.
pub async fn within_for<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| anyhow!("timed out after {limit:?} waiting for {what}"))
}

// ---------------------------------------------------------------------------
// Protocol versions
// ---------------------------------------------------------------------------

/// The moq-lite versions moqring supports, each negotiated by its own ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lite {
    V03,
    V04,
    V05,
}

impl Lite {
    pub const ALL: [Lite; 3] = [Lite::V05, Lite::V04, Lite::V03];

    /// The ALPN (and version name) of this version.
    pub fn alpn(self) -> &'static str {
        match self {
            Lite::V03 => "moq-lite-03",
            Lite::V04 => "moq-lite-04",
            Lite::V05 => "moq-lite-05",
        }
    }

    /// Whether a raw-QUIC client carries its URL path in-band (the lite-05 SETUP).
    /// lite-03/04 have no SETUP, so their sessions are rooted at "" and name
    /// broadcasts by full path.
    pub fn has_in_band_path(self) -> bool {
        matches!(self, Lite::V05)
    }

    /// Whether frames carry their timestamps on the wire (lite-05+).
    pub fn has_wire_timestamps(self) -> bool {
        matches!(self, Lite::V05)
    }

    /// This version as moq-native 0.19 (moq-net 0.2) spells it.
    pub fn native(self) -> native_net::Version {
        self.alpn()
            .parse()
            .expect("moq-net 0.2 knows every moq-lite version we support")
    }

    /// This version as moq-tokio 0.19 (moq-net 0.3) spells it.
    pub fn tokio(self) -> tokio_net::Version {
        self.alpn()
            .parse()
            .expect("moq-net 0.3 knows every moq-lite version we support")
    }
}

// ---------------------------------------------------------------------------
// Randomness and payloads
// ---------------------------------------------------------------------------

/// A small deterministic PRNG (splitmix64); no extra dependency, replayable by seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A fresh generator seeded from `MOQRING_TEST_SEED`, or from the clock otherwise.
    /// The seed is printed (libtest shows it for failing tests) so a run can be replayed.
    pub fn seeded(label: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let seed = match std::env::var(SEED_ENV) {
            Ok(seed) => seed
                .parse()
                .unwrap_or_else(|_| panic!("{SEED_ENV} must be a u64")),
            Err(_) => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                nanos
                    ^ (u64::from(std::process::id()) << 32)
                    ^ COUNTER.fetch_add(0x9e37, Ordering::Relaxed)
            }
        };
        eprintln!("[{label}] payload seed: {SEED_ENV}={seed}");
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn bytes(&mut self, len: usize) -> Bytes {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        Bytes::from(out)
    }

    /// A name unique within a test run, e.g. a broadcast or track name.
    pub fn name(&mut self, prefix: &str) -> String {
        format!("{prefix}-{:08x}", self.next_u64() as u32)
    }
}

/// Frame sizes drawn for random payloads: empty, tiny, around one packet, around the
/// 64 KiB mark, and well past it.
const FRAME_SIZES: &[usize] = &[
    0, 1, 13, 512, 1_199, 1_200, 4_096, 16_384, 65_535, 65_536, 65_537, 100_000, 150_001,
];

/// The content of a track: groups (sequence = index) of frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    pub groups: Vec<Vec<Bytes>>,
}

impl Payload {
    /// Several groups of frames with varied sizes, including empty frames, frames over
    /// 64 KiB, an empty first frame and an empty last frame; at least 400 KB in total.
    pub fn random(rng: &mut Rng) -> Self {
        let group_count = 6 + rng.below(3) as usize;
        let mut groups: Vec<Vec<Bytes>> = (0..group_count)
            .map(|_| {
                let frames = 2 + rng.below(5) as usize;
                (0..frames)
                    .map(|_| {
                        let size = FRAME_SIZES[rng.below(FRAME_SIZES.len() as u64) as usize];
                        rng.bytes(size)
                    })
                    .collect()
            })
            .collect();

        // Edge cases that must always be present, wherever the dice fell.
        groups[0].insert(0, Bytes::new());
        groups[0].insert(1, rng.bytes(70_000));
        groups
            .last_mut()
            .expect("at least one group")
            .push(Bytes::new());
        let middle = group_count / 2;
        let mut payload = Self { groups };
        while payload.byte_len() < 400_000 {
            payload.groups[middle].push(rng.bytes(131_072));
        }
        payload
    }

    /// How `moqring pub --frame-size F --group-frames N` cuts `data`: frames of `F`
    /// bytes (the last may be shorter), `N` frames per group.
    pub fn cut(data: &[u8], frame_size: usize, group_frames: usize) -> Self {
        assert!(frame_size > 0 && group_frames > 0);
        let frames: Vec<Bytes> = data
            .chunks(frame_size)
            .map(Bytes::copy_from_slice)
            .collect();
        Self {
            groups: frames.chunks(group_frames).map(<[Bytes]>::to_vec).collect(),
        }
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    pub fn frame_count(&self) -> usize {
        self.groups.iter().map(Vec::len).sum()
    }

    pub fn byte_len(&self) -> usize {
        self.groups.iter().flatten().map(Bytes::len).sum()
    }

    /// All frame payloads concatenated in order, as `moqring sub` writes them.
    pub fn concat(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.byte_len());
        for frame in self.groups.iter().flatten() {
            out.extend_from_slice(frame);
        }
        out
    }

    /// The timestamp (ms) our publishers stamp on frame `frame` of group `group`.
    pub fn timestamp_ms(group: usize, frame: usize) -> u64 {
        group as u64 * 100 + frame as u64
    }
}

/// What a subscriber read from a track: groups by sequence, each in frame order.
#[derive(Clone, Debug, Default)]
pub struct ReceivedTrack {
    pub groups: BTreeMap<u64, ReceivedGroup>,
}

#[derive(Clone, Debug, Default)]
pub struct ReceivedGroup {
    pub frames: Vec<Bytes>,
    /// Each frame's timestamp in milliseconds, as the subscribing client reported it.
    pub timestamps_ms: Vec<u128>,
}

impl ReceivedTrack {
    pub fn insert(&mut self, sequence: u64, group: ReceivedGroup) -> Result<()> {
        ensure!(
            self.groups.insert(sequence, group).is_none(),
            "group {sequence} was delivered twice"
        );
        Ok(())
    }

    pub fn frame_count(&self) -> usize {
        self.groups.values().map(|g| g.frames.len()).sum()
    }

    pub fn byte_len(&self) -> usize {
        self.groups
            .values()
            .flat_map(|g| &g.frames)
            .map(Bytes::len)
            .sum()
    }

    pub fn concat(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.byte_len());
        for frame in self.groups.values().flat_map(|g| &g.frames) {
            out.extend_from_slice(frame);
        }
        out
    }

    /// [`Self::assert_matches`], plus the frame timestamps where `version` carries them.
    pub fn assert_delivered(&self, expected: &Payload, version: Lite) {
        self.assert_matches(expected);
        if version.has_wire_timestamps() {
            self.assert_timestamps(expected);
        }
    }

    /// Panic unless exactly `expected` arrived: the same group sequences (0..n), the
    /// same frame count in each group, and byte-identical frames.
    pub fn assert_matches(&self, expected: &Payload) {
        let got: Vec<u64> = self.groups.keys().copied().collect();
        let want: Vec<u64> = (0..expected.group_count() as u64).collect();
        assert_eq!(
            got,
            want,
            "group sequences differ ({} frames / {} bytes received, {} / {} expected)",
            self.frame_count(),
            self.byte_len(),
            expected.frame_count(),
            expected.byte_len()
        );
        for (sequence, (got, want)) in self.groups.values().zip(&expected.groups).enumerate() {
            let got_sizes: Vec<usize> = got.frames.iter().map(Bytes::len).collect();
            let want_sizes: Vec<usize> = want.iter().map(Bytes::len).collect();
            assert_eq!(
                got_sizes, want_sizes,
                "frame sizes differ in group {sequence}"
            );
            for (index, (got, want)) in got.frames.iter().zip(want).enumerate() {
                assert_bytes_eq(got, want, &format!("group {sequence} frame {index}"));
            }
        }
    }

    /// Panic unless every frame carries the timestamp [`Payload::timestamp_ms`] gave it.
    /// Only meaningful when publisher and subscriber both speak lite-05+.
    pub fn assert_timestamps(&self, expected: &Payload) {
        for (sequence, (got, want)) in self.groups.values().zip(&expected.groups).enumerate() {
            let want: Vec<u128> = (0..want.len())
                .map(|frame| u128::from(Payload::timestamp_ms(sequence, frame)))
                .collect();
            assert_eq!(
                got.timestamps_ms, want,
                "frame timestamps differ in group {sequence}"
            );
        }
    }
}

/// Compare two byte strings without dumping megabytes into the failure message.
#[track_caller]
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first_diff = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: {} bytes received, {} expected; first difference at offset {first_diff}",
        got.len(),
        want.len()
    );
}

// ---------------------------------------------------------------------------
// The relay's side doors: HTTP, signals
// ---------------------------------------------------------------------------

/// A response of the relay's HTTP side door: status and body.
pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

/// Sends `request` (a whole HTTP/1.1 request head) to `addr` and reads the response until
/// the side door closes the connection (it serves one request per connection).
pub async fn http_send(addr: SocketAddr, request: &str) -> Result<HttpReply> {
    within(&format!("an answer to {request:?}"), async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        let text = String::from_utf8(raw)?;
        let (head, body) = text.split_once("\r\n\r\n").context("no end of head")?;
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .context("no status line")?
            .parse()?;
        Ok(HttpReply {
            status,
            body: body.to_string(),
        })
    })
    .await?
}

/// `GET path` from the side door at `addr`.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<HttpReply> {
    http_send(addr, &format!("GET {path} HTTP/1.1\r\nHost: relay\r\n\r\n")).await
}

/// Sends `signal` (`TERM`, `INT`, `HUP`, ...) to process `pid` with kill(1).
pub async fn send_signal(pid: u32, signal: &str) -> Result<()> {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .await?;
    ensure!(status.success(), "kill -{signal} {pid}: {status}");
    Ok(())
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// A child process that is killed when dropped. Its stderr (and any stdout it was not
/// asked to hand over) is collected into a bounded tail, printed if the test panics
/// while the guard is alive and included in [`ChildProc::wait_success`] errors.
pub struct ChildProc {
    name: String,
    child: Child,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl ChildProc {
    /// Spawn `cmd` with stdin, stdout and stderr piped. Take stdin/stdout with
    /// [`Self::take_stdin`] / [`Self::take_stdout`]; call [`Self::log_stdout`] to fold
    /// stdout into the log instead.
    pub fn spawn(name: impl Into<String>, mut cmd: Command) -> Result<Self> {
        let name = name.into();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("failed to spawn {name}: {cmd:?}"))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(collect_lines(BufReader::new(stderr), log.clone(), ""));
        }
        Ok(Self { name, child, log })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Close stdin now (the child sees EOF), if it was not taken.
    pub fn close_stdin(&mut self) {
        self.child.stdin.take();
    }

    /// Fold the remaining stdout into the log tail (prefixed `stdout: `).
    pub fn log_stdout(&mut self) {
        if let Some(stdout) = self.child.stdout.take() {
            tokio::spawn(collect_lines(
                BufReader::new(stdout),
                self.log.clone(),
                "stdout: ",
            ));
        }
    }

    /// Append a line of our own to the log tail.
    pub fn note(&self, line: impl Into<String>) {
        push_line(&self.log, line.into());
    }

    /// The last lines the child wrote.
    /// Waits until the log tail holds `needle` at least `count` times; returns the last
    /// line holding it.
    pub async fn wait_log(&self, needle: &str, count: usize) -> Result<String> {
        let what = format!("{count} x {needle:?} in {}'s log", self.name);
        within(&what, async {
            loop {
                let tail = self.log_tail();
                if tail.matches(needle).count() >= count {
                    let last = tail.lines().rev().find(|l| l.contains(needle));
                    return last.unwrap_or_default().to_string();
                }
                // Log lines arrive without an event to await.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .map_err(|e| self.with_log(e))
    }

    pub fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether the child has exited (without waiting).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Wait for the child to exit, at most `limit`.
    pub async fn wait_for(&mut self, limit: Duration) -> Result<ExitStatus> {
        let what = format!("{} to exit", self.name);
        let status = within_for(limit, &what, self.child.wait()).await;
        let status = status.and_then(|s| s.with_context(|| format!("waiting for {}", self.name)));
        status.map_err(|err| self.with_log(err))
    }

    /// Wait (at most [`TIMEOUT`]) for the child to exit successfully.
    pub async fn wait_success(&mut self) -> Result<()> {
        let status = self.wait_for(TIMEOUT).await?;
        if !status.success() {
            return Err(self.with_log(anyhow!("{} failed: {status}", self.name)));
        }
        Ok(())
    }

    /// Attach the log tail to an error about this child.
    pub fn with_log(&self, err: anyhow::Error) -> anyhow::Error {
        anyhow!(
            "{err:#}\n--- {} log tail ---\n{}\n--- end ---",
            self.name,
            self.log_tail()
        )
    }

    /// Kill the child now (it is also killed on drop).
    pub fn kill(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!(
                "--- {} log tail ---\n{}\n--- end ---",
                self.name,
                self.log_tail()
            );
        }
    }
}

fn push_line(log: &Mutex<VecDeque<String>>, line: String) {
    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
    if log.len() == LOG_TAIL {
        log.pop_front();
    }
    log.push_back(line);
}

async fn collect_lines<R: tokio::io::AsyncBufRead + Unpin>(
    reader: R,
    log: Arc<Mutex<VecDeque<String>>>,
    prefix: &str,
) {
    // Drain until EOF whatever the bytes are (a full pipe would stall the child):
    // invalid UTF-8 is replaced and over-long lines are cut for the log.
    let mut reader = reader;
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line[..line.len().min(MAX_LOG_LINE)]);
                push_line(&log, format!("{prefix}{}", text.trim_end()));
            }
        }
    }
}

/// A `moqring` command with `args`.
pub fn moqring_command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(MOQRING);
    cmd.args(args);
    cmd
}

/// `moqring pub|sub URL --broadcast B --track t --tls-disable-verify EXTRA...`, logging at
/// info level.
pub fn moqring_client(
    command: &str,
    url: &Url,
    broadcast: &str,
    extra: &[&str],
) -> Result<ChildProc> {
    let mut args = vec![
        command.to_string(),
        url.to_string(),
        "--broadcast".into(),
        broadcast.into(),
        "--track".into(),
        "t".into(),
        "--tls-disable-verify".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut cmd = moqring_command(&args);
    cmd.env("RUST_LOG", "moqring=info");
    ChildProc::spawn(format!("moqring {command}"), cmd)
}

// ---------------------------------------------------------------------------
// Relays
// ---------------------------------------------------------------------------

/// Which relay a test runs against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayKind {
    /// `moqring relay --bind 127.0.0.1:0` (the default, and what the tests are for).
    Moqring,
    /// An external relay command line (see the module docs), for harness development.
    External(String),
}

impl RelayKind {
    /// [`RelayKind::External`] when `MOQRING_TEST_RELAY_CMD` is set, else [`RelayKind::Moqring`].
    pub fn from_env() -> Self {
        match std::env::var(RELAY_CMD_ENV) {
            Ok(cmd) if !cmd.trim().is_empty() => RelayKind::External(cmd),
            _ => RelayKind::Moqring,
        }
    }
}

/// A running relay, killed on drop.
pub struct Relay {
    pub kind: RelayKind,
    /// The UDP address the relay listens on.
    pub addr: SocketAddr,
    proc: ChildProc,
}

impl Relay {
    /// `moqring relay` on an ephemeral port (never an external relay: see the module docs).
    pub async fn start() -> Result<Self> {
        Self::start_with_env(&[], &[]).await
    }

    /// [`Self::start`] with extra command-line arguments for the relay.
    pub async fn start_with(extra: &[&str]) -> Result<Self> {
        Self::start_with_env(extra, &[]).await
    }

    /// [`Self::start_with`] with environment variables set for the relay (e.g. to force
    /// monoio's epoll driver with `MONOIO_FORCE_LEGACY_DRIVER=1`).
    pub async fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        if let RelayKind::External(_) = RelayKind::from_env() {
            static NOTED: std::sync::Once = std::sync::Once::new();
            NOTED.call_once(|| {
                say(&format!(
                    "NOTE: {RELAY_CMD_ENV} applies to tests/interop.rs only; this test binary \
                     runs `moqring relay`"
                ))
            });
        }
        Self::spawn_with_env(RelayKind::Moqring, extra, env).await
    }

    /// The relay of an interop test: [`RelayKind::from_env`], our binary by default.
    pub async fn start_interop() -> Result<Self> {
        Self::spawn_with_env(RelayKind::from_env(), &[], &[]).await
    }

    /// Starts a relay of `kind` with `extra` arguments and `env` for it, and waits until
    /// it listens. An external relay takes neither: a test that needs them is a moqring
    /// test and fails here rather than run without them.
    async fn spawn_with_env(kind: RelayKind, extra: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        init_crypto();
        match &kind {
            RelayKind::Moqring => Self::spawn_moqring(extra, env).await,
            RelayKind::External(template) => {
                let port = free_udp_port()?;
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                let line = template
                    .replace("{addr}", &addr.to_string())
                    .replace("{port}", &port.to_string());
                if line == *template {
                    bail!("{RELAY_CMD_ENV} needs {{port}} or {{addr}} to bind a known port");
                }
                let mut words = line.split_whitespace();
                let program = words.next().context("empty relay command")?;
                if !extra.is_empty() || !env.is_empty() {
                    bail!(
                        "{RELAY_CMD_ENV}: this test needs moqring relay's flags {extra:?} and \
                         environment {env:?}, which an external relay cannot honour"
                    );
                }
                let mut cmd = Command::new(program);
                cmd.args(words);
                let mut proc = ChildProc::spawn(format!("relay `{program}`"), cmd)?;
                proc.close_stdin();
                proc.log_stdout();
                wait_udp_bound(&mut proc, port, "the external relay").await?;
                Ok(Self { kind, addr, proc })
            }
        }
    }

    /// `moqring relay --bind 127.0.0.1:0` with `extra` and `env`.
    async fn spawn_moqring(extra: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        let mut cmd = moqring_command(["relay", "--bind", "127.0.0.1:0"]);
        cmd.args(extra);
        cmd.envs(env.iter().copied());
        let mut proc = ChildProc::spawn("moqring relay", cmd)?;
        proc.close_stdin();
        let stdout = proc.take_stdout().context("relay stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = within("the `moqring relay listening on` line", async {
            loop {
                let Some(line) = lines.next_line().await? else {
                    bail!("relay closed stdout before printing its listening line");
                };
                proc.note(format!("stdout: {line}"));
                if let Some((_, addr)) = line.split_once("listening on ") {
                    let addr = addr.trim();
                    return addr
                        .parse::<SocketAddr>()
                        .with_context(|| format!("bad listen address {addr:?}"));
                }
            }
        })
        .await
        .and_then(|r| r);
        let addr = match addr {
            Ok(addr) => addr,
            Err(err) => {
                // The relay's last words reach its stderr after stdout closed.
                let _ = proc.wait_for(Duration::from_secs(5)).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(proc.with_log(err));
            }
        };
        // Keep draining stdout so the relay never blocks on a full pipe.
        tokio::spawn(collect_lines(
            lines.into_inner(),
            proc.log.clone(),
            "stdout: ",
        ));
        Ok(Self {
            kind: RelayKind::Moqring,
            addr,
            proc,
        })
    }

    pub fn is_moqring(&self) -> bool {
        self.kind == RelayKind::Moqring
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `moql://ADDR/path`; an empty `path` gives a URL without one.
    pub fn url(&self, path: &str) -> Url {
        let path = path.trim_start_matches('/');
        let url = match path {
            "" => format!("moql://{}", self.addr),
            _ => format!("moql://{}/{path}", self.addr),
        };
        Url::parse(&url).expect("valid relay url")
    }

    /// Where a session of `version` (None: the client's default, lite-05+) should
    /// connect to work under `root`, and how it names broadcasts there.
    pub fn scope(&self, version: Option<Lite>, root: &str) -> Scope {
        let root = root.trim_matches('/').to_string();
        match version {
            Some(v) if !v.has_in_band_path() => Scope {
                url: self.url(""),
                prefix: root,
            },
            _ => Scope {
                url: self.url(&root),
                prefix: String::new(),
            },
        }
    }

    /// The relay's process guard (its log tail is handy in error messages).
    pub fn process(&mut self) -> &mut ChildProc {
        &mut self.proc
    }

    /// The relay's process guard, shared (for waiting on its log).
    pub fn child(&self) -> &ChildProc {
        &self.proc
    }

    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }
}

/// How many connections each shard accepted, from the relay's log.
pub fn accepted_per_shard(log: &str, shards: usize) -> Vec<usize> {
    let mut counts = vec![0; shards];
    for line in log.lines().filter(|l| l.contains("connection accepted")) {
        let shard = shard_of(line).expect("accept lines carry the shard span");
        counts[shard] += 1;
    }
    counts
}

/// The shard index of a log line's `shard{index=N}` span.
pub fn shard_of(line: &str) -> Option<usize> {
    let rest = &line[line.find("shard{index=")? + "shard{index=".len()..];
    rest[..rest.find('}')?].parse().ok()
}

/// A session's view of a relay root: the URL to dial and the prefix it must put in
/// front of broadcast names (non-empty only for versions without an in-band path,
/// whose sessions are rooted at "").
#[derive(Clone, Debug)]
pub struct Scope {
    pub url: Url,
    pub prefix: String,
}

impl Scope {
    /// The name a session in this scope uses for broadcast `name` under the root.
    pub fn name(&self, name: &str) -> String {
        match self.prefix.as_str() {
            "" => name.to_string(),
            prefix => format!("{prefix}/{name}"),
        }
    }
}

fn free_udp_port() -> Result<u16> {
    let socket = UdpSocket::bind("127.0.0.1:0").context("binding a probe UDP socket")?;
    Ok(socket.local_addr()?.port())
}

/// Whether some process has a UDP socket bound to `port` (Linux: /proc/net/udp{,6}).
/// Waits until `proc` (`what`, for messages) has bound UDP `port`; fails if it exits first.
pub async fn wait_udp_bound(proc: &mut ChildProc, port: u16, what: &str) -> Result<()> {
    within(&format!("{what} to bind its UDP port"), async {
        while !udp_port_bound(port) {
            if let Some(status) = proc.try_status() {
                bail!("{what} exited early: {status}");
            }
            // No event exists for "a port got bound": poll /proc.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    })
    .await
    .and_then(|r| r)
    .map_err(|err| proc.with_log(err))
}

fn udp_port_bound(port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|file| {
        std::fs::read_to_string(file)
            .map(|table| {
                table.lines().skip(1).any(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|local| format!("{local} ").ends_with(&needle))
                })
            })
            .unwrap_or(false)
    })
}

// ---------------------------------------------------------------------------
// moqring client processes
// ---------------------------------------------------------------------------

/// Options of `moqring pub`.
#[derive(Clone, Debug)]
pub struct PubOptions {
    pub frame_size: Option<usize>,
    pub group_frames: Option<usize>,
    pub alpn: Option<&'static str>,
}

/// A running `moqring sub`; its stdout is collected in the background.
pub struct MoqringSub {
    pub proc: ChildProc,
    stdout: tokio::task::JoinHandle<std::io::Result<Vec<u8>>>,
}

impl MoqringSub {
    /// `moqring sub URL --broadcast B --track T --tls-disable-verify [--alpn A]`.
    pub fn spawn(url: &Url, broadcast: &str, track: &str, alpn: Option<&str>) -> Result<Self> {
        Self::spawn_with(url, broadcast, track, alpn, &[])
    }

    /// As [`Self::spawn`], with more arguments (e.g. `--start-group 0`).
    pub fn spawn_with(
        url: &Url,
        broadcast: &str,
        track: &str,
        alpn: Option<&str>,
        extra: &[&str],
    ) -> Result<Self> {
        let mut args = vec![
            "sub".to_string(),
            url.to_string(),
            "--broadcast".into(),
            broadcast.into(),
            "--track".into(),
            track.into(),
            "--tls-disable-verify".into(),
        ];
        if let Some(alpn) = alpn {
            args.extend(["--alpn".into(), alpn.into()]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut proc = ChildProc::spawn("moqring sub", moqring_command(&args))?;
        proc.close_stdin();
        let mut stdout = proc.take_stdout().context("sub stdout")?;
        let stdout = tokio::spawn(async move {
            let mut out = Vec::new();
            stdout.read_to_end(&mut out).await?;
            Ok(out)
        });
        Ok(Self { proc, stdout })
    }

    /// Wait for a successful exit and return everything written to stdout.
    pub async fn output(mut self) -> Result<Vec<u8>> {
        self.proc.wait_success().await?;
        let out = within("moqring sub stdout to close", &mut self.stdout).await?;
        out.context("stdout task")?.context("reading stdout")
    }
}

/// A running `moqring pub`, fed `data` on stdin by a background task.
pub struct MoqringPub {
    pub proc: ChildProc,
    stdin: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl MoqringPub {
    /// `moqring pub URL --broadcast B --track T --tls-disable-verify [options]`, with
    /// `data` written to stdin and then closed. `moqring pub` reads stdin only once it
    /// has a subscriber, so the writer runs in the background.
    pub fn spawn(
        url: &Url,
        broadcast: &str,
        track: &str,
        options: &PubOptions,
        data: Vec<u8>,
    ) -> Result<Self> {
        let mut args = vec![
            "pub".to_string(),
            url.to_string(),
            "--broadcast".into(),
            broadcast.into(),
            "--track".into(),
            track.into(),
            "--tls-disable-verify".into(),
        ];
        if let Some(size) = options.frame_size {
            args.extend(["--frame-size".into(), size.to_string()]);
        }
        if let Some(frames) = options.group_frames {
            args.extend(["--group-frames".into(), frames.to_string()]);
        }
        if let Some(alpn) = options.alpn {
            args.extend(["--alpn".into(), alpn.into()]);
        }
        let mut proc = ChildProc::spawn("moqring pub", moqring_command(&args))?;
        proc.log_stdout();
        let mut stdin = proc.take_stdin().context("pub stdin")?;
        let stdin = tokio::spawn(async move {
            stdin.write_all(&data).await?;
            stdin.shutdown().await
        });
        Ok(Self { proc, stdin })
    }

    /// Wait for a successful exit (having consumed all of stdin).
    pub async fn finish(mut self) -> Result<()> {
        self.proc.wait_success().await?;
        let written = within("moqring pub stdin writer", &mut self.stdin).await?;
        written.context("stdin task")?.context("writing stdin")?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// moq-native (moq-net 0.2) clients
// ---------------------------------------------------------------------------

/// A moq-native client that offers only `version` (or every version it knows when
/// `None`), skips certificate checks and never falls back to WebSocket.
pub fn native_client_config(version: Option<Lite>) -> moq_native::ClientConfig {
    init_crypto();
    let mut config = moq_native::ClientConfig::default();
    config.bind = "127.0.0.1:0".parse().expect("valid bind address");
    config.tls.disable_verify = Some(true);
    config.timeout = Some(TIMEOUT);
    config.websocket.enabled = false;
    if let Some(version) = version {
        config.version = vec![version.native()];
    }
    config
}

/// A connected moq-native session plus what keeps it alive.
pub struct NativeSession {
    pub session: native_net::Session,
    client: moq_native::Client,
}

impl NativeSession {
    /// Connect, publishing `publish` and/or consuming into `subscribe`, and check that
    /// the pinned version (if any) is the one negotiated.
    pub async fn connect(
        url: &Url,
        version: Option<Lite>,
        publish: Option<&native_net::origin::Producer>,
        subscribe: Option<&native_net::origin::Producer>,
    ) -> Result<Self> {
        Self::connect_with(
            native_client_config(version),
            url,
            version,
            publish,
            subscribe,
        )
        .await
    }

    /// [`Self::connect`] with a config of the caller's (e.g. a shorter keep-alive).
    pub async fn connect_with(
        config: moq_native::ClientConfig,
        url: &Url,
        version: Option<Lite>,
        publish: Option<&native_net::origin::Producer>,
        subscribe: Option<&native_net::origin::Producer>,
    ) -> Result<Self> {
        let mut client = config.init().context("moq-native client")?;
        if let Some(origin) = publish {
            client = client.with_publisher(origin);
        }
        if let Some(origin) = subscribe {
            client = client.with_subscriber(origin.clone());
        }
        let what = format!("moq-native connect to {url}");
        let session = within(&what, client.connect(url.clone()))
            .await?
            .with_context(|| what.clone())?;
        if let Some(version) = version {
            ensure!(
                session.version() == version.native(),
                "negotiated {} but only {} was offered",
                session.version(),
                version.alpn()
            );
        }
        Ok(Self { session, client })
    }

    pub fn version(&self) -> native_net::Version {
        self.session.version()
    }
}

/// A moq-native publisher of one announced broadcast with one track.
pub struct NativePublisher {
    pub session: NativeSession,
    pub origin: native_net::origin::Producer,
    pub broadcast: native_net::broadcast::Producer,
    pub track: native_net::track::Producer,
}

impl NativePublisher {
    /// Connect to `url` and announce `broadcast` (relative to the session root) with
    /// track `track`.
    pub async fn connect(
        url: &Url,
        version: Option<Lite>,
        broadcast: &str,
        track: &str,
    ) -> Result<Self> {
        Self::connect_with(
            native_client_config(version),
            url,
            version,
            broadcast,
            track,
        )
        .await
    }

    /// [`Self::connect`] with a config of the caller's (e.g. a shorter keep-alive).
    pub async fn connect_with(
        config: moq_native::ClientConfig,
        url: &Url,
        version: Option<Lite>,
        broadcast: &str,
        track: &str,
    ) -> Result<Self> {
        let origin = native_net::Origin::random().produce();
        let mut bc = origin
            .create_broadcast(broadcast, native_net::broadcast::Route::announced())
            .context("create broadcast")?;
        let info = native_net::track::Info::default().with_latency_max(LATENCY);
        let tr = bc.create_track(track, info).context("create track")?;
        let session =
            NativeSession::connect_with(config, url, version, Some(&origin), None).await?;
        Ok(Self {
            session,
            origin,
            broadcast: bc,
            track: tr,
        })
    }

    /// Wait until someone (the relay, on behalf of a subscriber) subscribes to the track.
    pub async fn subscribed(&self) -> Result<()> {
        within(
            "a subscription to reach the moq-native publisher",
            self.track.used(),
        )
        .await?
        .context("track closed while waiting for a subscriber")
    }

    /// Write every group of `payload` (timestamps from [`Payload::timestamp_ms`]).
    pub fn write(&mut self, payload: &Payload) -> Result<()> {
        native_write_track(&mut self.track, payload)
    }

    /// Declare the end of the track.
    pub fn finish(&mut self) -> Result<()> {
        self.track.finish().context("finish track")
    }
}

/// Write every group of `payload` to a moq-native track (timestamps from
/// [`Payload::timestamp_ms`]).
pub fn native_write_track(
    track: &mut native_net::track::Producer,
    payload: &Payload,
) -> Result<()> {
    for (sequence, frames) in payload.groups.iter().enumerate() {
        let mut group = track.append_group().context("append group")?;
        ensure!(
            group.sequence == sequence as u64,
            "unexpected group sequence"
        );
        for (index, frame) in frames.iter().enumerate() {
            let ts = native_net::Timestamp::from_millis(Payload::timestamp_ms(sequence, index))?;
            group
                .write_frame(ts, frame.clone())
                .context("write frame")?;
        }
        group.finish().context("finish group")?;
    }
    Ok(())
}

/// A moq-native subscriber session, collecting the peer's announcements.
pub struct NativeSubscriber {
    pub session: NativeSession,
    pub origin: native_net::origin::Producer,
}

impl NativeSubscriber {
    pub async fn connect(url: &Url, version: Option<Lite>) -> Result<Self> {
        Self::connect_with(native_client_config(version), url, version).await
    }

    /// [`Self::connect`] with a config of the caller's.
    pub async fn connect_with(
        config: moq_native::ClientConfig,
        url: &Url,
        version: Option<Lite>,
    ) -> Result<Self> {
        let origin = native_net::Origin::random().produce();
        let session =
            NativeSession::connect_with(config, url, version, None, Some(&origin)).await?;
        Ok(Self { session, origin })
    }

    /// Wait for `path` (relative to the session root) to be announced.
    pub async fn broadcast(&self, path: &str) -> Result<native_net::broadcast::Consumer> {
        let consumer = self.origin.consume();
        within(
            &format!("broadcast {path:?} to be announced"),
            consumer.announced_broadcast(path),
        )
        .await?
        .with_context(|| format!("origin closed before {path:?} was announced"))
    }

    /// A cursor over announcements (initial state first, then changes).
    pub fn announcements(&self) -> native_net::announce::Consumer {
        self.origin.consume().announced()
    }

    /// Subscribe to `track` of `path` and read it to its end.
    pub async fn read_track(&self, path: &str, track: &str) -> Result<ReceivedTrack> {
        let broadcast = self.broadcast(path).await?;
        native_read_track(&broadcast, track).await
    }
}

/// Subscribe from group 0 (ordered, with a [`LATENCY`] budget) and read every group
/// until the track ends.
///
/// The explicit start matters: on lite-03..05 an absent SUBSCRIBE start group means
/// "from the latest group", so a relay that attaches the downstream subscription only
/// after upstream groups arrived may legitimately skip the older ones. Asking for
/// group 0 makes "every group" the only correct answer.
pub async fn native_read_track(
    broadcast: &native_net::broadcast::Consumer,
    track: &str,
) -> Result<ReceivedTrack> {
    let mut sub = native_subscribe(broadcast, track).await?;
    let mut received = ReceivedTrack::default();
    loop {
        let next = within("the next group (or end of track)", sub.recv_group()).await?;
        let Some(mut group) = next.context("track ended with an error")? else {
            return Ok(received);
        };
        let sequence = group.sequence;
        let out = native_read_group(&mut group)
            .await?
            .with_context(|| format!("group {sequence} ended with an error"))?;
        received.insert(sequence, out)?;
    }
}

/// Subscribe to `track` from group 0, ordered, with a [`LATENCY`] budget (see
/// [`native_read_track`]).
pub async fn native_subscribe(
    broadcast: &native_net::broadcast::Consumer,
    track: &str,
) -> Result<native_net::track::Subscriber> {
    let subscription = native_net::track::Subscription::default()
        .with_ordered(true)
        .with_latency_max(LATENCY)
        .with_group_start(0);
    let mut attempt = 1;
    loop {
        let consumer = broadcast.track(track).context("track lookup")?;
        let subscribed = within(
            &format!("subscription to {track:?} to be accepted"),
            consumer.subscribe(subscription.clone()),
        )
        .await?;
        match subscribed {
            // moq-net 0.2.13 sometimes answers NotFound by itself, before any SUBSCRIBE
            // leaves it, when asked right after the announcement arrived (the relay's
            // debug log of such a failure shows no subscription at all). A relay that
            // refuses the track refuses it every time, so a few retries still fail.
            Err(native_net::Error::NotFound) if attempt < NOT_FOUND_ATTEMPTS => {
                eprintln!("subscription to {track:?}: not found locally, retrying ({attempt})");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other.context("subscribe"),
        }
    }
}

/// Read a group's frames to its end: the frames, or the error it ended with (each wait
/// bounded by [`TIMEOUT`], which fails the outer result).
pub async fn native_read_group(
    group: &mut native_net::group::Consumer,
) -> Result<Result<ReceivedGroup, native_net::Error>> {
    let mut out = ReceivedGroup::default();
    loop {
        let what = format!("frame {} of group {}", out.frames.len(), group.sequence);
        match within(&what, group.read_frame()).await? {
            Ok(Some(frame)) => {
                out.timestamps_ms.push(frame.timestamp.as_millis());
                out.frames.push(frame.payload);
            }
            Ok(None) => return Ok(Ok(out)),
            Err(err) => return Ok(Err(err)),
        }
    }
}

/// The moq-lite code a moq-native read error carries: the peer's reset code. moq-native
/// 0.19.12's transports read every RESET_STREAM code as a WebTransport (HTTP/3-range)
/// code, also on raw QUIC, so a plain moq-lite code arrives as the transport error
/// `invalid RESET_STREAM: N`; both spellings give `N`.
pub fn native_reset_code(err: &native_net::Error) -> Option<u64> {
    match err {
        native_net::Error::Transport(msg) => msg
            .rsplit_once("invalid RESET_STREAM: ")
            .and_then(|(_, code)| code.trim().parse().ok()),
        other => Some(u64::from(other.to_code())),
    }
}

/// How often [`native_read_track`] asks for a track moq-net says it cannot find.
const NOT_FOUND_ATTEMPTS: u32 = 4;

/// Take the next announcement as (path, active).
pub async fn native_next_announcement(
    announced: &mut native_net::announce::Consumer,
) -> Result<(String, bool)> {
    let update = within("the next announcement", announced.next()).await?;
    let update = update.context("announcement stream closed")?;
    Ok((update.path.as_str().to_string(), update.broadcast.is_some()))
}

// ---------------------------------------------------------------------------
// moq-tokio (moq-net 0.3) clients
// ---------------------------------------------------------------------------

/// A moq-tokio client config that offers only `version` (or its default list when
/// `None`), skips certificate checks, dials once and never falls back to WebSocket.
pub fn tokio_connect_config(version: Option<Lite>) -> moq_tokio::connect::Config {
    init_crypto();
    let mut config = moq_tokio::connect::Config::default();
    config.bind = Some("127.0.0.1:0".parse().expect("valid bind address"));
    config.tls.insecure = Some(true);
    config.timeout = TIMEOUT;
    config.once = Some(true);
    config.websocket.enabled = Some(false);
    if let Some(version) = version {
        config.version = vec![version.tokio()];
    }
    config
}

/// A connected moq-tokio connection plus what keeps it alive.
pub struct TokioSession {
    pub connection: moq_tokio::Connection,
    client: moq_tokio::Client,
}

impl TokioSession {
    pub async fn connect(
        url: &Url,
        version: Option<Lite>,
        publish: Option<&tokio_net::origin::Producer>,
        subscribe: Option<&tokio_net::origin::Producer>,
    ) -> Result<Self> {
        let mut client = tokio_connect_config(version)
            .init(Default::default())
            .context("moq-tokio client")?;
        if let Some(origin) = publish {
            client = client.with_publisher(origin);
        }
        if let Some(origin) = subscribe {
            client = client.with_subscriber(origin.clone());
        }
        let what = format!("moq-tokio connect to {url}");
        let connection = within(&what, client.connect(url.clone()).established())
            .await?
            .with_context(|| what.clone())?;
        if let Some(version) = version {
            ensure!(
                connection.version() == Some(version.tokio()),
                "negotiated {:?} but only {} was offered",
                connection.version(),
                version.alpn()
            );
        }
        Ok(Self { connection, client })
    }

    /// The negotiated version, by name (e.g. `moq-lite-05`).
    pub fn version_name(&self) -> Option<String> {
        self.connection.version().map(|v| v.to_string())
    }
}

/// A moq-tokio publisher of one announced broadcast with one track.
pub struct TokioPublisher {
    pub session: TokioSession,
    pub origin: tokio_net::origin::Producer,
    pub broadcast: tokio_net::broadcast::Producer,
    pub track: tokio_net::track::Producer,
}

impl TokioPublisher {
    pub async fn connect(
        url: &Url,
        version: Option<Lite>,
        broadcast: &str,
        track: &str,
    ) -> Result<Self> {
        let origin = moq_tokio::origin::spawn();
        let bc = origin
            .create_broadcast(broadcast)
            .context("create broadcast")?;
        let info = tokio_net::track::Info::default().with_max_age(LATENCY);
        let tr = bc.create_track(track, info).context("create track")?;
        bc.announce(Default::default())
            .context("announce broadcast")?;
        let session = TokioSession::connect(url, version, Some(&origin), None).await?;
        Ok(Self {
            session,
            origin,
            broadcast: bc,
            track: tr,
        })
    }

    pub async fn subscribed(&self) -> Result<()> {
        within(
            "a subscription to reach the moq-tokio publisher",
            self.track.used(),
        )
        .await?
        .context("track closed while waiting for a subscriber")
    }

    pub fn write(&mut self, payload: &Payload) -> Result<()> {
        for (sequence, frames) in payload.groups.iter().enumerate() {
            let mut group = self.track.append_group().context("append group")?;
            ensure!(
                group.sequence == sequence as u64,
                "unexpected group sequence"
            );
            for (index, frame) in frames.iter().enumerate() {
                let ts = tokio_net::Timestamp::from_millis(Payload::timestamp_ms(sequence, index))?;
                group
                    .write_frame(ts, frame.clone())
                    .context("write frame")?;
            }
            group.finish().context("finish group")?;
        }
        Ok(())
    }

    pub fn finish(&mut self) -> Result<()> {
        self.track.finish().context("finish track")
    }
}

/// A moq-tokio subscriber session.
pub struct TokioSubscriber {
    pub session: TokioSession,
    pub origin: tokio_net::origin::Producer,
}

impl TokioSubscriber {
    pub async fn connect(url: &Url, version: Option<Lite>) -> Result<Self> {
        let origin = moq_tokio::origin::spawn();
        let session = TokioSession::connect(url, version, None, Some(&origin)).await?;
        Ok(Self { session, origin })
    }

    pub async fn broadcast(&self, path: &str) -> Result<tokio_net::broadcast::Consumer> {
        let consumer = self.origin.consume();
        within(
            &format!("broadcast {path:?} to be routable"),
            consumer.routed_broadcast(path),
        )
        .await?
        .with_context(|| format!("resolving {path:?}"))
    }

    /// Subscribe from group 0 with a [`LATENCY`] budget (see [`native_read_track`]) and
    /// read every group until the track ends.
    pub async fn read_track(&self, path: &str, track: &str) -> Result<ReceivedTrack> {
        let broadcast = self.broadcast(path).await?;
        let subscription = tokio_net::track::Subscription::default()
            .with_max_age(LATENCY)
            .with_groups(0..);
        let consumer = broadcast.track(track).context("track lookup")?;
        let mut sub = within(
            &format!("subscription to {track:?} to be accepted"),
            consumer.subscribe(subscription),
        )
        .await?
        .context("subscribe")?;
        let mut received = ReceivedTrack::default();
        loop {
            let next = within("the next group (or end of track)", sub.recv_group()).await?;
            let Some(mut group) = next.context("track ended with an error")? else {
                return Ok(received);
            };
            let sequence = group.sequence;
            let mut out = ReceivedGroup::default();
            loop {
                let what = format!("frame {} of group {sequence}", out.frames.len());
                let frame = within(&what, group.read_frame()).await?;
                let Some(frame) =
                    frame.with_context(|| format!("group {sequence} ended with an error"))?
                else {
                    break;
                };
                out.timestamps_ms.push(frame.timestamp.as_millis());
                out.frames.push(frame.payload);
            }
            received.insert(sequence, out)?;
        }
    }
}
