//! A real browser against the relay: headless Chromium runs the npm MoQ client (`@moq/net`,
//! bundled by esbuild) over WebTransport, driven by `tests/browser/run.mjs` (playwright-core).
//! Browser to browser on every moq-lite version, with a pinned certificate hash and with an
//! `http://` URL (fingerprint fetched from `/certificate.sha256`), and across transports:
//! browser publisher to `moqring sub`, `moqring pub` to browser subscriber (raw QUIC).
//! Groups are compared byte for byte (length and SHA-256 of every frame, the bytes of small
//! ones) and the negotiated version is asserted.
//!
//! Needs `/usr/bin/chromium` (or `MOQRING_CHROMIUM`) and `npm ci` in `tests/browser`
//! (`tests/browser/install.sh` does both). Without them the tests pass with a `SKIPPED` line,
//! except under CI (`CI` set), where they fail. `MOQRING_TEST_RELAY_CMD` points them at
//! another relay (e.g. moq-relay with a TCP listener for `/certificate.sha256` on the same
//! port), as for `tests/interop.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::*;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, ChildStdout};

/// The root every browser test works under (open to all on the reference relays too).
const ROOT: &str = "anon";

/// The directory holding the driver, its page and its `node_modules`.
const DRIVER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");

/// Frame sizes drawn for browser-published groups: empty, tiny, around a packet, around
/// 64 KiB and past it.
const SIZES: &[usize] = &[
    0, 1, 13, 512, 1_200, 4_096, 16_384, 65_535, 65_536, 65_537, 100_000,
];

/// moq-lite versions as the npm client names them (its `connection.version`).
const LATEST: &str = "moq-lite-05";

/// How long bundling and starting Chromium may take before the pages' own waits begin:
/// seen taking 20 s on a 2-vCPU machine with a load average of 20.
const LAUNCH: Duration = TIMEOUT;

// ---------------------------------------------------------------------------
// The driver and what it reports
// ---------------------------------------------------------------------------

/// One line of the driver: the pages' reports, or why it could not run them.
#[derive(Debug, Deserialize)]
struct DriverLine {
    chromium: Option<String>,
    moq_net: Option<String>,
    #[serde(default)]
    pages: Vec<PageReport>,
    error: Option<String>,
}

/// What one page did: the version it negotiated, the groups it read, or its error.
#[derive(Debug, Deserialize)]
struct PageReport {
    role: String,
    version: Option<String>,
    error: Option<String>,
    groups: Option<Vec<GroupReport>>,
    end: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GroupReport {
    sequence: u64,
    frames: Vec<FrameReport>,
}

#[derive(Debug, Deserialize)]
struct FrameReport {
    len: usize,
    sha256: String,
    ts_ms: f64,
    hex: Option<String>,
}

/// Whether Chromium and the driver's packages are here. Missing ones fail under CI and
/// skip (loudly) elsewhere.
fn browser_ready(test: &str) -> bool {
    let chromium = std::env::var("MOQRING_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let modules = Path::new(DRIVER_DIR).join("node_modules");
    let missing: Vec<String> = [
        PathBuf::from(&chromium),
        modules.join("@moq/net"),
        modules.join("playwright-core"),
        modules.join("esbuild"),
    ]
    .into_iter()
    .filter(|p| !p.exists())
    .map(|p| p.display().to_string())
    .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "missing {} (run tests/browser/install.sh)",
        missing.join(", ")
    );
    assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
    skip(test, "the browser test", &why);
    false
}

/// A running driver: its pages work until [`BrowserRun::report`]; its publishing pages end
/// their tracks (those not ending at once) at [`BrowserRun::end_tracks`] and keep their
/// sessions until the report.
struct BrowserRun {
    proc: ChildProc,
    stdin: Option<ChildStdin>,
    stdout: tokio::task::JoinHandle<std::io::Result<Vec<u8>>>,
}

impl BrowserRun {
    fn start(tasks: &[Value]) -> Result<Self> {
        let job = json!({ "launch_timeout_ms": LAUNCH.as_millis() as u64, "tasks": tasks });
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(Path::new(DRIVER_DIR).join("run.mjs"))
            .arg(job.to_string());
        let mut proc = ChildProc::spawn("browser driver", cmd)?;
        let stdin = proc.take_stdin();
        let mut out = proc.take_stdout().context("driver stdout")?;
        let stdout = tokio::spawn(async move {
            let mut bytes = Vec::new();
            out.read_to_end(&mut bytes).await?;
            Ok(bytes)
        });
        Ok(Self {
            proc,
            stdin,
            stdout,
        })
    }

    /// Lets the publishing pages end their tracks (a line "end" to the driver).
    async fn end_tracks(&mut self) -> Result<()> {
        let stdin = self.stdin.as_mut().context("driver stdin already closed")?;
        stdin.write_all(b"end\n").await?;
        stdin
            .flush()
            .await
            .context("telling the driver to end the tracks")
    }

    /// Lets the publishing pages end their sessions (EOF on the driver's stdin), waits for
    /// the driver's line and returns the pages' reports, in task order.
    async fn report(mut self) -> Result<Vec<PageReport>> {
        self.stdin.take();
        let status = self.proc.wait_for(LAUNCH + TIMEOUT).await?;
        let out = within("the driver's stdout", &mut self.stdout).await??;
        let text = String::from_utf8(out?)?;
        let line: DriverLine = serde_json::from_str(text.trim())
            .map_err(|e| self.proc.with_log(anyhow!("driver printed {text:?}: {e}")))?;
        if let Some(error) = line.error {
            return Err(self
                .proc
                .with_log(anyhow!("driver failed ({status}): {error}")));
        }
        say(&format!(
            "browser: Chromium {}, @moq/net {}",
            line.chromium.unwrap_or_default(),
            line.moq_net.unwrap_or_default()
        ));
        Ok(line.pages)
    }
}

// ---------------------------------------------------------------------------
// Relays and tasks
// ---------------------------------------------------------------------------

/// The relay under test and the SHA-256 fingerprint it serves over HTTP.
async fn relay_and_fingerprint() -> Result<(Relay, String)> {
    let relay = Relay::start_interop().await?;
    let reply = http_get(relay.addr, "/certificate.sha256").await?;
    ensure!(
        reply.status == 200,
        "GET /certificate.sha256: status {}",
        reply.status
    );
    let fingerprint = reply.body.trim().to_string();
    ensure!(
        fingerprint.len() == 64 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit()),
        "GET /certificate.sha256 gave {fingerprint:?}"
    );
    Ok((relay, fingerprint))
}

/// `moqring sub` over raw QUIC whose stdout is read as it comes: a track's bytes can be
/// checked before its end.
struct StreamingSub {
    proc: ChildProc,
    stdout: ChildStdout,
}

impl StreamingSub {
    /// Subscribes to track `t` of `ROOT/broadcast`, offering `version` (None: all).
    fn spawn(relay: &Relay, broadcast: &str, version: Option<Lite>) -> Result<Self> {
        let alpn: Vec<&str> = version.map_or(Vec::new(), |v| vec!["--alpn", v.alpn()]);
        let mut proc = moqring_client("sub", &relay.url(ROOT), broadcast, &alpn)?;
        proc.close_stdin();
        let stdout = proc.take_stdout().context("sub stdout")?;
        Ok(Self { proc, stdout })
    }

    /// Its output up to `len` bytes: fewer when it ends first or stalls (waiting at most
    /// for the browser to start and TIMEOUT more).
    async fn read(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut head = (&mut self.stdout).take(len as u64);
        let read = head.read_to_end(&mut out);
        let read = within_for(LAUNCH + TIMEOUT, "moqring sub's output", read).await;
        if let Err(err) = read.map(|r| r.map_err(anyhow::Error::from)).and_then(|r| r) {
            say(&format!(
                "moqring sub: {err:#} after {} of {len} bytes",
                out.len()
            ));
        }
        out
    }

    /// After the track's end: nothing more on stdout, and a clean exit.
    async fn finish(mut self) -> Result<()> {
        let mut rest = Vec::new();
        within(
            "moqring sub's stdout to close",
            self.stdout.read_to_end(&mut rest),
        )
        .await?
        .context("reading moqring sub's stdout")?;
        self.proc.wait_success().await?;
        ensure!(
            rest.is_empty(),
            "moqring sub wrote {} bytes more than the track holds",
            rest.len()
        );
        Ok(())
    }
}

/// How a page reaches the relay: `https://` with a pinned hash, or `http://` (the client
/// fetches the fingerprint itself).
#[derive(Clone, Copy)]
enum Reach<'a> {
    Pinned(&'a str),
    HttpUrl,
}

/// The fields every task shares: where to connect and which version(s) to offer (`None`:
/// the client's default list).
fn task(relay: &Relay, reach: Reach, version: Option<Lite>, role: &str, broadcast: &str) -> Value {
    let (scheme, fingerprint) = match reach {
        Reach::Pinned(hash) => ("https", Some(hash)),
        Reach::HttpUrl => ("http", None),
    };
    json!({
        "role": role,
        "url": format!("{scheme}://127.0.0.1:{}/{ROOT}", relay.port()),
        "fingerprint": fingerprint,
        "protocols": version.map(|v| vec![v.alpn()]),
        "broadcast": broadcast,
        "track": "t",
        "timeout_ms": TIMEOUT.as_millis() as u64,
    })
}

/// Whether a browser publisher on `version` ends its track as soon as it wrote its groups.
/// Only lite-05 says where a track ends (SUBSCRIBE_END): there the relay waits for group
/// streams still on their way. On lite-03/04 the end of the subscription is the end of the
/// track, and @moq/net FINs it before its group streams are out, so those publishers end
/// their tracks only once the subscribers have everything ([`BrowserRun::end_tracks`]).
fn ends_at_once(version: Option<Lite>) -> bool {
    version.is_none_or(|v| v == Lite::V05)
}

/// A publishing task writing `payload` (rebuilt in the page from `seed` and the sizes).
fn publish_task(base: Value, version: Option<Lite>, seed: u64, payload: &Payload) -> Value {
    let sizes: Vec<Vec<usize>> = payload
        .groups
        .iter()
        .map(|g| g.iter().map(|f| f.len()).collect())
        .collect();
    let end_at_once = ends_at_once(version);
    merge(
        base,
        json!({ "seed": seed.to_string(), "groups": sizes, "end_at_once": end_at_once }),
    )
}

/// A subscribing task that reads until the track ends, or (`Some(n)`) stops after `n`
/// groups: for publishers that end their tracks only when told.
fn subscribe_task(base: Value, expect_groups: Option<usize>) -> Value {
    merge(base, json!({ "expect_groups": expect_groups }))
}

fn merge(mut base: Value, more: Value) -> Value {
    if let (Some(base), Value::Object(more)) = (base.as_object_mut(), more) {
        base.extend(more);
    }
    base
}

/// Groups of frames with sizes drawn from [`SIZES`] (an empty first and last frame
/// always), their bytes from `Rng::new(seed)` in order, as the page makes them.
fn browser_payload(rng: &mut Rng) -> (u64, Payload) {
    let mut sizes: Vec<Vec<usize>> = (0..4 + rng.below(3))
        .map(|_| {
            (0..1 + rng.below(4))
                .map(|_| SIZES[rng.below(SIZES.len() as u64) as usize])
                .collect()
        })
        .collect();
    sizes[0].insert(0, 0);
    sizes.last_mut().expect("groups").push(0);
    let seed = rng.next_u64();
    let mut bytes = Rng::new(seed);
    let groups = sizes
        .iter()
        .map(|g| g.iter().map(|&n| bytes.bytes(n)).collect())
        .collect();
    (seed, Payload { groups })
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// The page connected with `version` and reported no error.
fn check_page(page: &PageReport, version: &str, what: &str) -> Result<()> {
    if let Some(error) = &page.error {
        let groups: Vec<(u64, usize)> = (page.groups.iter().flatten())
            .map(|g| (g.sequence, g.frames.len()))
            .collect();
        bail!(
            "{what} ({}): {error}\n(groups read, with their frame counts: {groups:?})",
            page.role
        );
    }
    ensure!(
        page.version.as_deref() == Some(version),
        "{what}: negotiated {:?}, expected {version}",
        page.version
    );
    Ok(())
}

/// The subscribing page read exactly `expected`: groups 0..n, each frame's length,
/// SHA-256 and (small frames) bytes; and the publisher's timestamps when `timestamps`.
fn check_groups(page: &PageReport, expected: &Payload, timestamps: bool, what: &str) -> Result<()> {
    let mut groups: Vec<&GroupReport> = page.groups.iter().flatten().collect();
    groups.sort_by_key(|g| g.sequence);
    let got: Vec<u64> = groups.iter().map(|g| g.sequence).collect();
    let want: Vec<u64> = (0..expected.group_count() as u64).collect();
    ensure!(
        got == want,
        "{what}: groups {got:?} arrived (end: {:?}), expected {want:?}",
        page.end
    );
    for (group, want) in groups.iter().zip(&expected.groups) {
        let sizes: Vec<usize> = group.frames.iter().map(|f| f.len).collect();
        let want_sizes: Vec<usize> = want.iter().map(|f| f.len()).collect();
        ensure!(
            sizes == want_sizes,
            "{what}: group {} frame sizes {sizes:?}, expected {want_sizes:?}",
            group.sequence
        );
        for (index, (frame, bytes)) in group.frames.iter().zip(want).enumerate() {
            let at = format!("{what}: group {} frame {index}", group.sequence);
            ensure!(frame.sha256 == sha256_hex(bytes), "{at}: SHA-256 differs");
            if let Some(hex) = &frame.hex {
                ensure!(
                    *hex == to_hex(bytes),
                    "{at}: bytes {hex}, expected {}",
                    to_hex(bytes)
                );
            }
            let stamp = Payload::timestamp_ms(group.sequence as usize, index) as f64;
            ensure!(
                !timestamps || frame.ts_ms == stamp,
                "{at}: timestamp {} ms, expected {stamp}",
                frame.ts_ms
            );
        }
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One browser scenario at a time: each starts its own Chromium, and four of them at
/// once on a 2-vCPU machine starve the relay and the pages alike (a run in eight lost a
/// group under that load).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Panic with the whole error chain while the relay (and its log) is alive.
#[track_caller]
fn check(result: Result<()>, relay: &Relay) {
    if let Err(err) = result {
        panic!(
            "{err:?}\n--- relay log tail ---\n{}\n--- end ---",
            relay.log_tail()
        );
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// Three browser pairs through the relay with a pinned certificate hash, covering each
/// version on each side and across versions: default offer (lite-05) -> lite-04,
/// lite-04 -> lite-03, lite-03 -> default. The lite-05 publisher ends its track as soon as
/// it wrote it, and its subscriber reads until the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_to_browser_on_every_version_with_a_pinned_hash() {
    if !browser_ready("browser_to_browser_on_every_version_with_a_pinned_hash") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let (relay, fingerprint) = relay_and_fingerprint().await.expect("relay starts");
    check(browser_pairs(&relay, &fingerprint).await, &relay);
}

async fn browser_pairs(relay: &Relay, fingerprint: &str) -> Result<()> {
    let mut rng = Rng::seeded("browser pairs");
    let pairs = [
        (None, Some(Lite::V04)),
        (Some(Lite::V04), Some(Lite::V03)),
        (Some(Lite::V03), None),
    ];
    let reach = Reach::Pinned(fingerprint);
    let mut tasks = Vec::new();
    let mut payloads = Vec::new();
    for (publisher, subscriber) in pairs {
        let broadcast = rng.name("pair");
        let (seed, payload) = browser_payload(&mut rng);
        tasks.push(publish_task(
            task(relay, reach, publisher, "publish", &broadcast),
            publisher,
            seed,
            &payload,
        ));
        let count = (!ends_at_once(publisher)).then(|| payload.group_count());
        tasks.push(subscribe_task(
            task(relay, reach, subscriber, "subscribe", &broadcast),
            count,
        ));
        payloads.push(payload);
    }
    let pages = BrowserRun::start(&tasks)?.report().await?;
    for (i, ((publisher, subscriber), payload)) in pairs.iter().zip(&payloads).enumerate() {
        let name = |v: &Option<Lite>| v.map_or(LATEST, Lite::alpn);
        let what = format!("pair {i} ({} -> {})", name(publisher), name(subscriber));
        check_page(&pages[2 * i], name(publisher), &what)?;
        check_page(&pages[2 * i + 1], name(subscriber), &what)?;
        check_groups(&pages[2 * i + 1], payload, false, &what)?;
    }
    Ok(())
}

/// `http://host:port/anon` URLs: the client fetches `/certificate.sha256`, pins it and
/// connects over WebTransport (lite-05, timestamps carried, read to the track's end); a
/// page pinning a wrong hash is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_url_pins_the_served_fingerprint_and_a_wrong_pin_is_refused() {
    if !browser_ready("an_http_url_pins_the_served_fingerprint_and_a_wrong_pin_is_refused") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let (relay, fingerprint) = relay_and_fingerprint().await.expect("relay starts");
    check(http_url(&relay, &fingerprint).await, &relay);
}

async fn http_url(relay: &Relay, fingerprint: &str) -> Result<()> {
    let mut rng = Rng::seeded("http url");
    let broadcast = rng.name("http");
    let (seed, payload) = browser_payload(&mut rng);
    // The right hash with one bit flipped.
    let last = u8::from_str_radix(&fingerprint[62..], 16)? ^ 1;
    let wrong = format!("{}{last:02x}", &fingerprint[..62]);
    let tasks = [
        publish_task(
            task(relay, Reach::HttpUrl, None, "publish", &broadcast),
            None,
            seed,
            &payload,
        ),
        subscribe_task(
            task(relay, Reach::HttpUrl, None, "subscribe", &broadcast),
            None,
        ),
        subscribe_task(
            task(relay, Reach::Pinned(&wrong), None, "subscribe", &broadcast),
            Some(1),
        ),
    ];
    let pages = BrowserRun::start(&tasks)?.report().await?;
    check_page(&pages[0], LATEST, "http:// publisher")?;
    check_page(&pages[1], LATEST, "http:// subscriber")?;
    check_groups(&pages[1], &payload, true, "http:// subscriber")?;
    let refused = &pages[2];
    ensure!(
        refused.error.is_some() && refused.version.is_none(),
        "a page pinning the wrong hash connected: {refused:?}"
    );
    Ok(())
}

/// Browser publishers (default offer, lite-04, lite-03) -> relay -> `moqring sub` over raw
/// QUIC (lite-03, default, lite-04): the bytes arrive whole and in order, and each `sub`
/// exits 0 at the end of its track (the lite-05 publisher's own, the others' once told).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_publishes_and_moqring_sub_receives_over_raw_quic() {
    if !browser_ready("browser_publishes_and_moqring_sub_receives_over_raw_quic") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let (relay, fingerprint) = relay_and_fingerprint().await.expect("relay starts");
    check(browser_to_moqring_sub(&relay, &fingerprint).await, &relay);
}

async fn browser_to_moqring_sub(relay: &Relay, fingerprint: &str) -> Result<()> {
    let mut rng = Rng::seeded("browser to moqring sub");
    let pairs = [
        (None, Some(Lite::V03)),
        (Some(Lite::V04), None),
        (Some(Lite::V03), Some(Lite::V04)),
    ];
    let mut tasks = Vec::new();
    let mut subs = Vec::new();
    let mut payloads = Vec::new();
    for (browser, sub) in pairs {
        let broadcast = rng.name("to-sub");
        let (seed, payload) = browser_payload(&mut rng);
        // The sub waits for the announcement; the page waits for the subscription.
        subs.push(StreamingSub::spawn(relay, &broadcast, sub)?);
        tasks.push(publish_task(
            task(
                relay,
                Reach::Pinned(fingerprint),
                browser,
                "publish",
                &broadcast,
            ),
            browser,
            seed,
            &payload,
        ));
        payloads.push(payload);
    }
    let mut run = BrowserRun::start(&tasks)?;
    // All are read at once: a sub whose stdout nobody reads blocks writing it, stops
    // acknowledging, and the relay rightly resets its groups once they are late.
    let reads: Vec<_> = subs
        .into_iter()
        .zip(&payloads)
        .map(|(mut sub, payload)| {
            let len = payload.byte_len();
            tokio::spawn(async move {
                let got = sub.read(len).await;
                (sub, got)
            })
        })
        .collect();
    let mut subs = Vec::new();
    for (i, (read, payload)) in reads.into_iter().zip(&payloads).enumerate() {
        let (sub, got) = read.await.context("reading a moqring sub's output")?;
        assert_bytes_eq(&got, &payload.concat(), &format!("moqring sub {i}"));
        subs.push(sub);
    }
    run.end_tracks().await?;
    for (i, sub) in subs.into_iter().enumerate() {
        sub.finish()
            .await
            .with_context(|| format!("moqring sub {i}"))?;
    }
    let pages = run.report().await?;
    for (i, (browser, _)) in pairs.iter().enumerate() {
        check_page(
            &pages[i],
            browser.map_or(LATEST, Lite::alpn),
            &format!("browser publisher {i}"),
        )?;
    }
    Ok(())
}

/// `moqring pub` over raw QUIC (lite-05, lite-03, lite-04) -> relay -> browser subscribers
/// (lite-03, default offer, lite-04), reading to the track's end: the groups `moqring pub`
/// cut arrive byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moqring_pub_publishes_and_the_browser_receives() {
    if !browser_ready("moqring_pub_publishes_and_the_browser_receives") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let (relay, fingerprint) = relay_and_fingerprint().await.expect("relay starts");
    check(moqring_pub_to_browser(&relay, &fingerprint).await, &relay);
}

async fn moqring_pub_to_browser(relay: &Relay, fingerprint: &str) -> Result<()> {
    let mut rng = Rng::seeded("moqring pub to browser");
    // (pub version, browser version, bytes, frame size, frames per group)
    let cases = [
        (Some(Lite::V05), Some(Lite::V03), 300_000, 70_000, 2),
        (Some(Lite::V03), None, 50_000, 1_200, 10),
        (Some(Lite::V04), Some(Lite::V04), 200_000, 16_384, 4),
    ];
    let mut tasks = Vec::new();
    let mut pubs = Vec::new();
    let mut payloads = Vec::new();
    for (publisher, browser, len, frame_size, group_frames) in cases {
        let broadcast = rng.name("from-pub");
        let data = rng.bytes(len).to_vec();
        let payload = Payload::cut(&data, frame_size, group_frames);
        let options = PubOptions {
            frame_size: Some(frame_size),
            group_frames: Some(group_frames),
            alpn: publisher.map(Lite::alpn),
        };
        pubs.push(MoqringPub::spawn(
            &relay.url(ROOT),
            &broadcast,
            "t",
            &options,
            data,
        )?);
        tasks.push(subscribe_task(
            task(
                relay,
                Reach::Pinned(fingerprint),
                browser,
                "subscribe",
                &broadcast,
            ),
            None,
        ));
        payloads.push(payload);
    }
    let pages = BrowserRun::start(&tasks)?.report().await?;
    for (i, ((_, browser, ..), payload)) in cases.iter().zip(&payloads).enumerate() {
        let what = format!("browser subscriber {i}");
        check_page(&pages[i], browser.map_or(LATEST, Lite::alpn), &what)?;
        check_groups(&pages[i], payload, false, &what)?;
    }
    for (i, publisher) in pubs.into_iter().enumerate() {
        publisher
            .finish()
            .await
            .with_context(|| format!("moqring pub {i}"))?;
    }
    Ok(())
}
