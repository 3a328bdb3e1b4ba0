//! `moqring bench`: a load generator for MoQ relays. Publishers and thousands of
//! subscriber connections run in one process, on a few threads of their own, each a
//! monoio runtime with its connections as tasks.
//!
//! Publishers stamp every frame with its send time and index ([`stamp`]); subscribers
//! measure latency, delivered frames and bytes, and lost frames ([`stats`]). The run goes
//! through phases, switched by the main thread and read by every connection: setup
//! (connect, subscribe, wait until every subscriber receives), warmup, the measured
//! window, a drain (publishers stop; late frames still count as delivered, not lost),
//! and stop. It speaks moq-lite over raw QUIC like `moqring pub`/`sub`, so it measures
//! any relay that does, moq-relay included.

mod conn;
mod report;
pub mod stamp;
pub mod stats;
pub mod sys;

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{self, ClientError, Connect, Verify};
use crate::net::quic;
use crate::session::path;

pub use report::{RelayUsage, Report};
use stats::{Counters, Snapshot, Totals};

/// The drain ends once no frame has arrived for this long.
const QUIET: Duration = Duration::from_millis(300);

/// How a run is shaped.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub connect: Connect,
    /// Publishers, each with one broadcast (`bench-I/live` under the URL path) of one track.
    pub publishers: usize,
    /// Subscribers of each publisher's track.
    pub subscribers: usize,
    /// Frames per second, payload bytes per frame (at least the 16-byte stamp), frames
    /// per group.
    pub fps: f64,
    pub frame_size: usize,
    pub group_frames: u64,
    pub warmup: Duration,
    pub duration: Duration,
    /// After the window publishers stop; frames in flight may arrive (and are not lost)
    /// until none has for [`QUIET`], for at most this long.
    pub drain: Duration,
    /// How long setup may take before the run goes on without the missing subscribers.
    pub setup_timeout: Duration,
    /// Bench threads, and CPUs to pin them to (thread i on `pin[i % len]`).
    pub threads: usize,
    pub pin: Vec<usize>,
    /// New connections per second during setup.
    pub connect_rate: u32,
    /// The relay's pid, to report its CPU time and peak RSS over the window.
    pub relay_pid: Option<u32>,
    /// Progress lines on stderr.
    pub progress: bool,
}

/// Frame rates a run accepts: one frame a day to a million a second (the interval between
/// frames must be a usable `Duration`).
const FPS_RANGE: std::ops::RangeInclusive<f64> = (1.0 / 86_400.0)..=1e6;

/// Longest duration a flag may name: a day.
const LONGEST: Duration = Duration::from_secs(86_400);

impl BenchConfig {
    /// Rejects a shape the bench cannot run, naming the flag.
    fn check(&self) -> Result<(), String> {
        let at_least_one = [
            ("--publishers", self.publishers as u64),
            ("--subscribers", self.subscribers as u64),
            ("--group-frames", self.group_frames),
            ("--threads", self.threads as u64),
            ("--connect-rate", u64::from(self.connect_rate)),
        ];
        for (flag, value) in at_least_one {
            if value == 0 {
                return Err(format!("{flag} must be at least 1"));
            }
        }
        if self.frame_size < stamp::STAMP_LEN {
            return Err(format!(
                "--frame-size {} is below {} (the send-time stamp every frame carries)",
                self.frame_size,
                stamp::STAMP_LEN
            ));
        }
        if !FPS_RANGE.contains(&self.fps) {
            return Err(format!(
                "a frame rate of {} frames/s (--fps, or --rate-mbit / --frame-size) is out of range {:e}..={:e}",
                self.fps,
                FPS_RANGE.start(),
                FPS_RANGE.end()
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}")]
    Config(String),
    #[error("bench thread: {0}")]
    Thread(String),
    #[error("reading the relay's /proc entries: {0}")]
    Proc(std::io::Error),
    #[error(
        "no subscriber received a frame within the setup time ({0:?}): is a relay serving {1}?"
    )]
    NothingReceived(Duration, String),
}

/// Where a run stands; connections read it every turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    Setup,
    Warmup,
    Measure,
    Drain,
    Stop,
}

/// State every bench thread sees.
#[derive(Debug)]
pub struct Shared {
    phase: AtomicU8,
    /// Per publisher: the index of its last published frame (`u64::MAX`: none yet).
    last_index: Box<[AtomicU64]>,
}

impl Shared {
    fn new(publishers: usize) -> Self {
        Self {
            phase: AtomicU8::new(Phase::Setup as u8),
            last_index: (0..publishers).map(|_| AtomicU64::new(u64::MAX)).collect(),
        }
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Relaxed) {
            0 => Phase::Setup,
            1 => Phase::Warmup,
            2 => Phase::Measure,
            3 => Phase::Drain,
            _ => Phase::Stop,
        }
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Relaxed);
    }
}

/// A connection to open: a publisher of track `i`, or a subscriber of it.
#[derive(Debug, Clone, Copy)]
enum Role {
    Publisher(usize),
    Subscriber(usize),
}

/// Connections in opening order (publishers first), dealt round-robin to `threads`.
fn plan(publishers: usize, subscribers: usize, threads: usize) -> Vec<Vec<(usize, Role)>> {
    let mut out = vec![Vec::new(); threads.max(1)];
    let roles = (0..publishers)
        .map(Role::Publisher)
        .chain((0..subscribers).flat_map(|_| (0..publishers).map(Role::Subscriber)));
    let n = out.len();
    for (i, role) in roles.enumerate() {
        out[i % n].push((i, role));
    }
    out
}

/// The absolute path of publisher `i`'s broadcast.
fn broadcast(connect: &Connect, i: usize) -> String {
    path::join(
        &path::normalize(connect.url.path()),
        &format!("bench-{i}/live"),
    )
}

/// Runs the bench and returns its report.
pub fn run(config: BenchConfig) -> Result<Report, BenchError> {
    config.check().map_err(BenchError::Config)?;
    let connections = config.publishers * (config.subscribers + 1);
    match sys::raise_fd_limit() {
        // A connection takes two descriptors (its socket and monoio's duplicate).
        Ok(limit) if limit < 2 * connections as u64 + 64 => tracing::warn!(
            limit,
            connections,
            "open file limit may be too low for one socket per connection"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
    let (host, peer) = client::resolve(&config.connect.url)?;
    let shared = Arc::new(Shared::new(config.publishers));
    let threads = config.threads;
    let counters: Vec<Arc<Counters>> = (0..threads).map(|_| Arc::default()).collect();
    let pacing = conn::Pacing {
        interval: Duration::from_secs_f64(1.0 / config.fps),
        frame_size: config.frame_size,
        group_frames: config.group_frames,
    };
    let mut handles = Vec::with_capacity(threads);
    for (t, conns) in plan(config.publishers, config.subscribers, threads)
        .into_iter()
        .enumerate()
    {
        let quic = quic::client_config(
            &config.connect.versions,
            matches!(config.connect.verify, Verify::Roots),
            config.connect.is_webtransport(),
        )
        .map_err(ClientError::from)?;
        let ctx_parts = (
            shared.clone(),
            counters[t].clone(),
            config.connect.clone(),
            host.clone(),
        );
        let cpu = (!config.pin.is_empty()).then(|| config.pin[t % config.pin.len()]);
        let connect_rate = f64::from(config.connect_rate);
        let handle = std::thread::Builder::new()
            .name(format!("bench-{t}"))
            .spawn(move || -> Result<Totals, String> {
                if let Some(cpu) = cpu {
                    if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
                        tracing::warn!(cpu, error = ?e, "cannot pin bench thread");
                    }
                }
                let (shared, counters, connect, host) = ctx_parts;
                let ctx = Rc::new(conn::Ctx::new(shared, counters, connect, host, peer, quic));
                let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                    .enable_timer()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(async {
                    let mut tasks = Vec::with_capacity(conns.len());
                    for (i, role) in conns {
                        let delay = Duration::from_secs_f64(i as f64 / connect_rate);
                        let name = match role {
                            Role::Publisher(p) | Role::Subscriber(p) => broadcast(&ctx.connect, p),
                        };
                        tasks.push(match role {
                            Role::Publisher(p) => monoio::spawn(conn::run(
                                ctx.clone(),
                                conn::Publisher::new(ctx.clone(), p, name, pacing),
                                delay,
                            )),
                            Role::Subscriber(p) => monoio::spawn(conn::run(
                                ctx.clone(),
                                conn::Subscriber::new(ctx.clone(), p, name),
                                delay,
                            )),
                        });
                    }
                    for task in tasks {
                        task.await;
                    }
                });
                let totals = ctx.totals.borrow().clone();
                Ok(totals)
            })
            .map_err(|e| BenchError::Thread(e.to_string()))?;
        handles.push(handle);
    }

    let window = orchestrate(&config, &shared, &counters)?;

    let mut totals = Totals::default();
    for handle in handles {
        let t = handle
            .join()
            .map_err(|_| BenchError::Thread("panicked".into()))?
            .map_err(BenchError::Thread)?;
        totals.merge(&t);
    }
    Ok(Report {
        url: config.connect.url.to_string(),
        publishers: config.publishers,
        subscribers: config.publishers * config.subscribers,
        threads,
        fps: config.fps,
        frame_size: pacing.frame_size,
        group_frames: pacing.group_frames,
        window_s: window.seconds,
        totals,
        relay: window.relay,
        bench_cpu_s: window.bench_cpu_s,
    })
}

/// The measured window: its length, and the CPU time the relay and the bench used in it.
struct Window {
    seconds: f64,
    relay: Option<RelayUsage>,
    bench_cpu_s: Option<f64>,
}

/// Walks the run through its phases with a progress line a second.
fn orchestrate(
    config: &BenchConfig,
    shared: &Shared,
    counters: &[Arc<Counters>],
) -> Result<Window, BenchError> {
    let subscribers = config.publishers * config.subscribers;
    let start = Instant::now();
    let mut prev = Snapshot::take(counters);
    let mut prev_at = start;
    let mut tick = |label: &str| {
        let now = Instant::now();
        let snap = Snapshot::take(counters);
        if config.progress {
            let line = report::progress_line(
                label,
                now.duration_since(start).as_secs_f64(),
                &prev,
                &snap,
                now.duration_since(prev_at).as_secs_f64(),
                subscribers,
            );
            eprintln!("{line}");
        }
        prev = snap;
        prev_at = now;
        snap
    };
    let second = Duration::from_secs(1);

    // Setup: until every subscriber receives, or the setup time is up.
    let setup_end = start + config.setup_timeout;
    loop {
        let snap = tick("setup");
        if snap.receiving as usize >= subscribers {
            break;
        }
        if Instant::now() >= setup_end {
            if snap.receiving == 0 {
                shared.set_phase(Phase::Stop);
                return Err(BenchError::NothingReceived(
                    config.setup_timeout,
                    config.connect.url.to_string(),
                ));
            }
            tracing::warn!(
                receiving = snap.receiving,
                subscribers,
                "setup timed out; measuring with the subscribers that receive"
            );
            break;
        }
        std::thread::sleep(second.min(setup_end.saturating_duration_since(Instant::now())));
    }
    shared.set_phase(Phase::Warmup);
    sleep_ticking(config.warmup, || {
        tick("warmup");
    });

    let cpu = |pid| sys::cpu_seconds(pid).map_err(BenchError::Proc);
    let cpu_before = config.relay_pid.map(cpu).transpose()?;
    let own_before = sys::cpu_seconds(std::process::id()).ok();
    shared.set_phase(Phase::Measure);
    let window_start = Instant::now();
    sleep_ticking(config.duration, || {
        tick("measuring");
    });
    shared.set_phase(Phase::Drain);
    let window_s = window_start.elapsed().as_secs_f64();
    let cpu_after = config.relay_pid.map(cpu).transpose()?;
    let own_after = sys::cpu_seconds(std::process::id()).ok();
    let bench_cpu_s = own_before.zip(own_after).map(|(b, a)| a - b);
    let drain_end = Instant::now() + config.drain;
    let mut seen = Snapshot::take(counters).seen;
    let mut quiet_since = Instant::now();
    while Instant::now() < drain_end && quiet_since.elapsed() < QUIET {
        std::thread::sleep(QUIET / 3);
        let now = Snapshot::take(counters).seen;
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
    }
    tick("drained");
    let relay = match (config.relay_pid, cpu_before, cpu_after) {
        (Some(pid), Some(before), Some(after)) => Some(RelayUsage {
            pid,
            cpu_seconds: after - before,
            peak_rss_kib: sys::peak_rss_kib(pid).map_err(BenchError::Proc)?,
        }),
        _ => None,
    };
    shared.set_phase(Phase::Stop);
    Ok(Window {
        seconds: window_s,
        relay,
        bench_cpu_s,
    })
}

/// "20s", "500ms", "2m" or a plain number of seconds, at most a day.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v * scale).ok())
        .filter(|d| *d <= LONGEST)
        .ok_or_else(|| format!("bad duration {s:?}: expected e.g. 20s, 500ms, 2m, at most a day"))
}

/// Sleeps `total`, calling `tick` after every whole second and at the end.
fn sleep_ticking(total: Duration, mut tick: impl FnMut()) {
    let end = Instant::now() + total;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_secs(1)));
        tick();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_opens_publishers_first_and_deals_connections_round_robin() {
        let plan = plan(2, 3, 2);
        assert_eq!(plan.len(), 2);
        let all: Vec<(usize, String)> = {
            let mut v: Vec<(usize, String)> = plan
                .iter()
                .flatten()
                .map(|(i, r)| (*i, format!("{r:?}")))
                .collect();
            v.sort();
            v
        };
        assert_eq!(all.len(), 2 + 6);
        assert_eq!(all[0].1, "Publisher(0)");
        assert_eq!(all[1].1, "Publisher(1)");
        let subs_of = |p: usize| {
            all.iter()
                .filter(|(_, r)| *r == format!("Subscriber({p})"))
                .count()
        };
        assert_eq!((subs_of(0), subs_of(1)), (3, 3));
        assert_eq!(plan[0].len(), 4);
        assert_eq!(plan[1].len(), 4);
    }

    #[test]
    fn broadcasts_live_under_the_url_path() {
        let connect = Connect {
            url: "moql://localhost:4443/anon".parse().unwrap(),
            versions: Vec::new(),
            verify: Verify::Disabled,
        };
        assert_eq!(broadcast(&connect, 3), "anon/bench-3/live");
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("1e300s").is_err());
        assert!(parse_duration("NaN").is_err());
        assert!(parse_duration("inf").is_err());
        assert_eq!(parse_duration("1440m"), Ok(LONGEST));
        assert!(parse_duration("1441m").is_err());
    }

    fn config() -> BenchConfig {
        BenchConfig {
            connect: Connect {
                url: "moql://localhost:4443/anon".parse().unwrap(),
                versions: Vec::new(),
                verify: Verify::Disabled,
            },
            publishers: 1,
            subscribers: 1,
            fps: 30.0,
            frame_size: 5000,
            group_frames: 60,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            drain: Duration::ZERO,
            setup_timeout: Duration::from_secs(1),
            threads: 1,
            pin: Vec::new(),
            connect_rate: 500,
            relay_pid: None,
            progress: false,
        }
    }

    #[test]
    fn shapes_the_bench_cannot_run_are_refused_by_flag() {
        assert_eq!(config().check(), Ok(()));
        let refused = |change: fn(&mut BenchConfig), flag: &str| {
            let mut c = config();
            change(&mut c);
            let err = c.check().unwrap_err();
            assert!(err.contains(flag), "{err:?} does not name {flag}");
        };
        refused(|c| c.publishers = 0, "--publishers");
        refused(|c| c.subscribers = 0, "--subscribers");
        refused(|c| c.group_frames = 0, "--group-frames");
        refused(|c| c.threads = 0, "--threads");
        refused(|c| c.connect_rate = 0, "--connect-rate");
        refused(|c| c.frame_size = 15, "--frame-size");
        refused(|c| c.fps = 1e-300, "--fps");
        refused(|c| c.fps = 0.0, "--fps");
        refused(|c| c.fps = f64::NAN, "--fps");
        refused(|c| c.fps = f64::INFINITY, "--fps");
        refused(|c| c.fps = 1e7, "--fps");
    }

    #[test]
    fn phases_are_ordered_and_round_trip() {
        let shared = Shared::new(1);
        for phase in [
            Phase::Setup,
            Phase::Warmup,
            Phase::Measure,
            Phase::Drain,
            Phase::Stop,
        ] {
            shared.set_phase(phase);
            assert_eq!(shared.phase(), phase);
        }
        assert!(Phase::Drain < Phase::Stop);
    }
}
