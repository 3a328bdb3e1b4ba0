//! The `moqring` command line: `relay`, `pub`, `sub` and `bench`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use url::Url;

use moqring::bench::{self, BenchConfig};
use moqring::client::{
    self, Connect, PublishOptions, Publisher, SubscribeOptions, Subscriber, Verify,
};
use moqring::config::RelayFile;
use moqring::metrics::Metrics;
use moqring::relay::{CacheRule, EagerRule, RelayConfig};
use moqring::session::{path, SessionConfig};
use moqring::shard::{self, CoreList, ShardConfig};
use moqring::tls;
use moqring::wire::Version;

#[derive(Parser)]
#[command(
    name = "moqring",
    version,
    about = "A Media-over-QUIC (moq-lite) relay built for throughput"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a relay.
    Relay(Box<RelayArgs>),
    /// Publish standard input as one track.
    Pub(PubArgs),
    /// Subscribe to one track and write its frames to standard output.
    Sub(SubArgs),
    /// Load a relay with paced publishers and many subscribers; report delivery and latency.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
struct RelayArgs {
    /// TOML file with these settings; flags given on the command line override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// UDP address to listen on.
    #[arg(long, default_value = "127.0.0.1:4443")]
    bind: SocketAddr,
    /// Certificate chain (PEM); without it a self-signed certificate is generated.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// moq-lite versions to accept, by ALPN (default: all supported, newest first).
    #[arg(long = "alpn", value_parser = parse_version)]
    versions: Vec<Version>,
    /// Largest frame payload accepted from a publisher, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_frame_size: usize,
    /// Bytes a subscriber may have queued before its oldest groups are dropped.
    #[arg(long, default_value_t = 16 << 20)]
    max_queued_bytes: usize,
    /// Bytes of finished groups each track keeps for subscribers asking for older groups.
    #[arg(long, default_value_t = 4 << 20)]
    cache_bytes: usize,
    /// Milliseconds a finished group stays in its track's cache.
    #[arg(long, default_value_t = 10_000)]
    cache_age_ms: u64,
    /// Cache budgets for the tracks of matching broadcasts, over the global ones:
    /// PATTERN[:TRACK]=bytes=N,age=MS (either may be left out), PATTERN a path or a prefix
    /// ending in `*` (repeatable; the first matching rule wins).
    #[arg(long = "cache", value_name = "RULE")]
    cache: Vec<CacheRule>,
    /// Subscribe upstream on announce to these tracks of matching broadcasts, so the first
    /// viewer joins from the cache: PATTERN=TRACK[,TRACK...], PATTERN a path or a prefix
    /// ending in `*` (repeatable; default: subscribe on demand).
    #[arg(long = "eager", value_name = "PATTERN=TRACKS")]
    eager: Vec<EagerRule>,
    /// Connections held at most over all shards; new ones beyond this are refused (0: every
    /// one).
    #[arg(long, default_value_t = 20_000)]
    max_connections: usize,
    /// Milliseconds of silence after which a connection is considered gone.
    #[arg(long, default_value_t = moqring::net::quic::IDLE_TIMEOUT_MS)]
    idle_timeout_ms: u64,
    #[command(flatten)]
    handshakes: HandshakeArgs,
    /// Cores to run one shard on each, e.g. `0-3,6` (default: every available core).
    #[arg(long, value_name = "LIST", conflicts_with = "threads")]
    cores: Option<CoreList>,
    /// Number of shards, on cores 0..N-1 of the available ones (wrapping around when
    /// there are more shards than cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Do not pin shards to their cores.
    #[arg(long)]
    no_pin: bool,
    /// Do not attach the connection-ID steering program: the kernel spreads datagrams by
    /// address hash and shards forward misrouted ones through their mailboxes.
    #[arg(long)]
    no_steering: bool,
    #[command(flatten)]
    auth: AuthArgs,
    /// TCP address of the HTTP side door (/certificate.sha256, /health, /metrics,
    /// /announced); default: the UDP address actually bound.
    #[arg(long, value_name = "ADDR", conflicts_with = "no_http")]
    http_bind: Option<SocketAddr>,
    /// Serve no HTTP side door (bind no TCP port).
    #[arg(long)]
    no_http: bool,
    #[command(flatten)]
    ops: OpsArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Joining other relays (moqring or moq-relay) into a cluster.
#[derive(Args, Debug)]
struct ClusterArgs {
    /// A peer relay to dial (repeatable): moql://HOST:PORT/PATH (raw QUIC) or
    /// https://HOST:PORT/PATH (WebTransport); a `jwt` query parameter is its token. Our
    /// broadcasts are announced to it and its to us; lost links are dialled again.
    #[arg(long = "cluster-connect", value_name = "URL")]
    cluster_connect: Vec<Url>,
    /// This relay's id in announcements' hop chains (default: random at each start;
    /// 1..2^53).
    #[arg(long)]
    cluster_id: Option<u64>,
    /// Announcements that passed through more relays than this are dropped (1..=32).
    #[arg(long, default_value_t = moqring::wire::MAX_HOPS)]
    cluster_max_hops: usize,
    /// How long the broadcasts of a publisher (or peer) that left abruptly stay
    /// announced, so a quick reconnect does not ripple through the cluster (`0s`: none).
    #[arg(long, default_value = "5s", value_parser = bench::parse_duration)]
    cluster_linger: std::time::Duration,
    /// Do not check the certificates of the peers we dial.
    #[arg(long)]
    client_tls_disable_verify: bool,
    /// PEM file of the CA certificates that sign our peers' certificates (else the
    /// system's roots).
    #[arg(long, value_name = "PEM", conflicts_with = "client_tls_disable_verify")]
    client_tls_root: Option<PathBuf>,
    /// SHA-256 fingerprint (hex) the peers' certificates must have (self-signed peers).
    #[arg(long, value_name = "HEX", conflicts_with_all = ["client_tls_disable_verify", "client_tls_root"])]
    client_tls_fingerprint: Option<String>,
}

/// Handshake floods: pending handshakes, their deadline, address validation.
#[derive(Args, Debug)]
struct HandshakeArgs {
    /// A connection whose QUIC handshake has not completed this long after its first
    /// packet is dropped (`10s`, `500ms`).
    #[arg(long, default_value = "10s", value_parser = bench::parse_duration)]
    handshake_timeout: std::time::Duration,
    /// Handshakes in progress the relay holds at most, over all shards (apart from
    /// --max-connections, which counts them too).
    #[arg(long, default_value_t = shard::MAX_PENDING_HANDSHAKES)]
    max_pending_handshakes: usize,
    /// Handshakes in progress per client IP address and shard (proven and unproven
    /// addresses counted apart).
    #[arg(long, default_value_t = shard::MAX_PENDING_PER_ADDRESS)]
    max_pending_per_address: usize,
    /// Address validation with QUIC Retry: `auto` once half of --max-pending-handshakes
    /// are in progress (or an address holds its limit), `always`, or `never`.
    #[arg(long, default_value = "auto", value_parser = shard::RetryMode::parse)]
    retry: shard::RetryMode,
}

/// Running the relay as a service: the generated certificate, the drain, log format.
#[derive(Args, Debug)]
struct OpsArgs {
    /// Names (host names or IP addresses) of the generated self-signed certificate
    /// (ECDSA P-256, valid 14 days), comma-separated.
    #[arg(
        long,
        value_name = "NAME,...",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1",
        conflicts_with = "cert"
    )]
    tls_generate: Vec<String>,
    /// On SIGTERM or SIGINT, how long the relay goes on serving its sessions (after
    /// refusing new ones and sending GOAWAY) before it closes what remains and exits.
    #[arg(long, default_value = "10s", value_parser = bench::parse_duration)]
    drain_timeout: std::time::Duration,
    /// Where a drain's GOAWAY tells clients to reconnect (default: nowhere in particular).
    #[arg(long, value_name = "URL")]
    drain_redirect: Option<Url>,
    /// Log lines as text or as one JSON object each (for log shippers).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

/// Tokens as moq-relay checks them: a JWT in the URL's `jwt` query parameter.
#[derive(Args, Debug, Default)]
struct AuthArgs {
    /// JWK file that verifies tokens (JSON, or base64url JSON as `moq-token generate`
    /// writes it); with no key every path is open.
    #[arg(long, value_name = "FILE", conflicts_with = "auth_key_dir")]
    auth_key: Option<PathBuf>,
    /// Directory of JWK files named KID.jwk; a token's header `kid` picks its key.
    #[arg(long, value_name = "DIR")]
    auth_key_dir: Option<PathBuf>,
    /// Broadcast path prefix open to anyone, token or not (repeatable).
    #[arg(long, value_name = "PREFIX")]
    auth_public: Vec<String>,
}

#[derive(Args)]
struct ClientArgs {
    /// Relay URL: moql://HOST:PORT/PATH for raw QUIC, https://HOST:PORT/PATH for WebTransport
    url: Url,
    /// Broadcast path, relative to the URL path.
    #[arg(long)]
    broadcast: String,
    /// Track name.
    #[arg(long)]
    track: String,
    /// moq-lite version to offer, by ALPN (repeatable; default: all supported).
    #[arg(long = "alpn", value_parser = parse_version)]
    versions: Vec<Version>,
    /// Do not verify the relay's certificate.
    #[arg(long, conflicts_with = "tls_fingerprint")]
    tls_disable_verify: bool,
    /// Accept the relay's certificate only if its SHA-256 fingerprint (hex) matches.
    #[arg(long)]
    tls_fingerprint: Option<String>,
}

#[derive(Args)]
struct PubArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Bytes of input per frame.
    #[arg(long, default_value_t = 16384)]
    frame_size: usize,
    /// Frames per group.
    #[arg(long, default_value_t = 32)]
    group_frames: usize,
    /// Pace the payload to this many Mbit/s (default: as fast as the connection takes
    /// it; a subscriber on a slower path then loses groups).
    #[arg(long, value_name = "MBIT")]
    rate_mbit: Option<moqring::client::Rate>,
}

#[derive(Args)]
struct SubArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// First group to receive (default: join at the publisher's latest group).
    #[arg(long)]
    start_group: Option<u64>,
}

#[derive(Args)]
struct BenchArgs {
    /// Relay URL: moql://HOST:PORT/PATH for raw QUIC, https://HOST:PORT/PATH for WebTransport
    url: Url,
    /// Publishers, each publishing broadcast `bench-I/live` (under the URL path) with one track.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Subscribers per publisher (connections in all: publishers x subscribers).
    #[arg(long, default_value_t = 10)]
    subscribers: usize,
    /// Frames per second of each publisher.
    #[arg(long, default_value_t = 30.0, conflicts_with = "rate_mbit")]
    fps: f64,
    /// Rate of each publisher in Mbit/s of payload, instead of --fps (fps = rate / frame size).
    #[arg(long)]
    rate_mbit: Option<f64>,
    /// Payload bytes per frame (at least 16: the send-time stamp).
    #[arg(long, default_value_t = 5000)]
    frame_size: usize,
    /// Frames per group (each group is its own stream).
    #[arg(long, default_value_t = 60)]
    group_frames: u64,
    /// Length of the measured window (e.g. 20s, 500ms, 2m).
    #[arg(long, default_value = "20s", value_parser = bench::parse_duration)]
    duration: std::time::Duration,
    /// Time between every subscriber receiving and the measured window.
    #[arg(long, default_value = "2s", value_parser = bench::parse_duration)]
    warmup: std::time::Duration,
    /// Longest wait after the window (publishers stopped) for frames in flight; it ends
    /// earlier once no frame has arrived for 300 ms.
    #[arg(long, default_value = "5s", value_parser = bench::parse_duration)]
    drain: std::time::Duration,
    /// Longest wait for every subscriber to receive before the run goes on without them.
    #[arg(long, default_value = "30s", value_parser = bench::parse_duration)]
    setup_timeout: std::time::Duration,
    /// Bench threads (one monoio runtime each; connections dealt round-robin).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// CPUs to pin bench threads to, comma-separated (thread i on the i-th, cycling).
    #[arg(long, value_delimiter = ',')]
    pin: Vec<usize>,
    /// New connections opened per second during setup.
    #[arg(long, default_value_t = 500)]
    connect_rate: u32,
    /// The relay's process id: report its CPU time and peak RSS over the window.
    #[arg(long)]
    relay_pid: Option<u32>,
    /// Print the report as one JSON object on stdout (progress lines stay on stderr).
    #[arg(long)]
    json: bool,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// moq-lite version to offer, by ALPN (repeatable; default: all supported).
    #[arg(long = "alpn", value_parser = parse_version)]
    versions: Vec<Version>,
    /// Do not verify the relay's certificate.
    #[arg(long, conflicts_with = "tls_fingerprint")]
    tls_disable_verify: bool,
    /// Accept the relay's certificate only if its SHA-256 fingerprint (hex) matches.
    #[arg(long)]
    tls_fingerprint: Option<String>,
}

fn parse_version(s: &str) -> Result<Version, String> {
    Version::ALL
        .into_iter()
        .find(|v| v.alpn() == s.as_bytes())
        .ok_or_else(|| {
            let known: Vec<String> = Version::ALL.iter().map(|v| v.to_string()).collect();
            format!("unknown version {s}; supported: {}", known.join(", "))
        })
}

fn versions_or_all(v: Vec<Version>) -> Vec<Version> {
    if v.is_empty() {
        Version::ALL.to_vec()
    } else {
        v
    }
}

fn init_logging(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
}

fn main() -> ExitCode {
    let matches = Cli::command()
        .try_get_matches()
        .unwrap_or_else(|e| exit_on_usage_error(e));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| exit_on_usage_error(e));
    let result = match cli.command {
        Command::Relay(mut args) => {
            let given = matches
                .subcommand_matches("relay")
                .expect("relay arguments");
            apply_config_file(&mut args, given).and_then(|()| {
                init_logging("info", args.ops.log_format);
                relay(*args)
            })
        }
        Command::Pub(args) => {
            init_logging("warn", LogFormat::Text);
            let options = PublishOptions {
                broadcast: absolute(&args.client),
                track: args.client.track.clone(),
                frame_size: args.frame_size,
                group_frames: args.group_frames.max(1),
                rate: args.rate_mbit,
            };
            client::run(connect(args.client), Publisher::new(options)).map_err(|e| e.to_string())
        }
        Command::Sub(args) => {
            init_logging("warn", LogFormat::Text);
            let options = SubscribeOptions {
                broadcast: absolute(&args.client),
                track: args.client.track.clone(),
                start_group: args.start_group,
            };
            let out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
            client::run(connect(args.client), Subscriber::new(options, out))
                .map_err(|e| e.to_string())
        }
        Command::Bench(args) => {
            init_logging("warn", LogFormat::Text);
            run_bench(args)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("moqring: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints help or the version as clap does; any other error as one line naming the flag
/// and its value, then exits with status 2.
fn exit_on_usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit()
    }
    // clap's message up to its usage block, on one line.
    let text = e.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    let line = message.join(" ");
    let line = line.trim_start_matches("error: ");
    eprintln!("moqring: {line} (see --help)");
    std::process::exit(2)
}

/// Longest time any setting may name: a day (beyond it, deadlines overflow `Instant`).
const LONGEST_MS: u64 = 86_400_000;

/// Rejects relay settings it cannot run with, naming the flag (and the config key).
fn check_relay_args(args: &RelayArgs) -> Result<(), String> {
    let at_least_one = [
        ("--max-frame-size", "max_frame_size", args.max_frame_size),
        (
            "--max-queued-bytes",
            "max_queued_bytes",
            args.max_queued_bytes,
        ),
    ];
    let h = &args.handshakes;
    let at_least_one = at_least_one.into_iter().chain([
        (
            "--max-pending-handshakes",
            "max_pending_handshakes",
            h.max_pending_handshakes,
        ),
        (
            "--max-pending-per-address",
            "max_pending_per_address",
            h.max_pending_per_address,
        ),
    ]);
    for (flag, key, value) in at_least_one {
        if value == 0 {
            return Err(format!("{flag} (config {key}) must be at least 1"));
        }
    }
    if !(1..=LONGEST_MS).contains(&args.idle_timeout_ms) {
        return Err(format!(
            "--idle-timeout-ms (config idle_timeout_ms) {} out of range 1..={LONGEST_MS}",
            args.idle_timeout_ms
        ));
    }
    let handshake_ms = h.handshake_timeout.as_millis();
    if !(1..=u128::from(LONGEST_MS)).contains(&handshake_ms) {
        return Err(format!(
            "--handshake-timeout (config handshake_timeout) {handshake_ms} ms out of range 1..={LONGEST_MS} ms"
        ));
    }
    let ages = std::iter::once(args.cache_age_ms).chain(
        args.cache
            .iter()
            .filter_map(|rule| rule.age.map(|a| a.as_millis() as u64)),
    );
    for age in ages {
        if age > LONGEST_MS {
            return Err(format!(
                "cache age {age} ms (--cache-age-ms, --cache age=, config age_ms) out of range 0..={LONGEST_MS}"
            ));
        }
    }
    Ok(())
}

/// The broadcast's absolute path: the URL path joined with `--broadcast`.
fn absolute(args: &ClientArgs) -> String {
    path::join(
        &path::normalize(args.url.path()),
        &path::normalize(&args.broadcast),
    )
}

/// How a client command checks the relay's certificate.
fn verify(disabled: bool, fingerprint: Option<String>) -> Verify {
    match (disabled, fingerprint) {
        (true, _) => Verify::Disabled,
        (false, Some(fp)) => Verify::Fingerprint(fp),
        (false, None) => Verify::Roots,
    }
}

fn connect(args: ClientArgs) -> Connect {
    let verify = verify(args.tls_disable_verify, args.tls_fingerprint);
    Connect {
        url: args.url,
        versions: versions_or_all(args.versions),
        verify,
    }
}

/// Fills the settings not given on the command line from `--config`'s file; rules from
/// the file come after those on the command line (the first match wins).
fn apply_config_file(args: &mut RelayArgs, given: &ArgMatches) -> Result<(), String> {
    let Some(path) = &args.config else {
        return Ok(());
    };
    let file = RelayFile::load(path)?;
    let from_file = |id: &str| given.value_source(id) != Some(ValueSource::CommandLine);
    fn set<T>(use_file: bool, arg: &mut T, value: Option<T>) {
        if let (true, Some(v)) = (use_file, value) {
            *arg = v;
        }
    }
    set(from_file("bind"), &mut args.bind, file.bind);
    if from_file("cert") && from_file("key") && file.cert.is_some() != file.key.is_some() {
        return Err(format!("{}: cert and key go together", path.display()));
    }
    set(
        from_file("cert"),
        &mut args.cert,
        file.cert.clone().map(Some),
    );
    set(from_file("key"), &mut args.key, file.key.clone().map(Some));
    if args.versions.is_empty() {
        args.versions = file.versions()?;
    }
    set(
        from_file("max_frame_size"),
        &mut args.max_frame_size,
        file.max_frame_size,
    );
    set(
        from_file("max_queued_bytes"),
        &mut args.max_queued_bytes,
        file.max_queued_bytes,
    );
    set(
        from_file("cache_bytes"),
        &mut args.cache_bytes,
        file.cache.bytes,
    );
    set(
        from_file("cache_age_ms"),
        &mut args.cache_age_ms,
        file.cache.age_ms,
    );
    set(
        from_file("max_connections"),
        &mut args.max_connections,
        file.max_connections,
    );
    set(
        from_file("idle_timeout_ms"),
        &mut args.idle_timeout_ms,
        file.idle_timeout_ms,
    );
    if let (true, Some(timeout)) = (from_file("handshake_timeout"), &file.handshake_timeout) {
        args.handshakes.handshake_timeout = bench::parse_duration(timeout)
            .map_err(|e| format!("{}: handshake_timeout: {e}", path.display()))?;
    }
    set(
        from_file("max_pending_handshakes"),
        &mut args.handshakes.max_pending_handshakes,
        file.max_pending_handshakes,
    );
    set(
        from_file("max_pending_per_address"),
        &mut args.handshakes.max_pending_per_address,
        file.max_pending_per_address,
    );
    if let (true, Some(retry)) = (from_file("retry"), &file.retry) {
        args.handshakes.retry =
            shard::RetryMode::parse(retry).map_err(|e| format!("{}: retry {e}", path.display()))?;
    }
    // The shard layout is one setting: the command line's, if it gives either part.
    if from_file("cores") && from_file("threads") {
        args.cores = file.cores()?.map(CoreList);
        args.threads = file.threads;
    }
    if from_file("no_pin") {
        args.no_pin = file.pin == Some(false);
    }
    if from_file("no_steering") {
        args.no_steering = file.steering == Some(false);
    }
    // The side door is one setting: the command line's, if it gives either part.
    if file.http == Some(false) && file.http_bind.is_some() {
        return Err(format!("{}: http_bind with http = false", path.display()));
    }
    if from_file("http_bind") && from_file("no_http") {
        args.no_http = file.http == Some(false);
        args.http_bind = file.http_bind.filter(|_| !args.no_http);
    }
    // The key is one setting: the command line's, if it gives either form.
    if from_file("auth_key") && from_file("auth_key_dir") {
        args.auth.auth_key = file.auth_key.clone();
        args.auth.auth_key_dir = file.auth_key_dir.clone();
    }
    if from_file("auth_public") {
        args.auth.auth_public = file.auth_public.clone();
    }
    if from_file("tls_generate") && from_file("cert") {
        set(true, &mut args.ops.tls_generate, file.tls_generate.clone());
    }
    if let (true, Some(timeout)) = (from_file("drain_timeout"), &file.drain_timeout) {
        args.ops.drain_timeout = bench::parse_duration(timeout)
            .map_err(|e| format!("{}: drain_timeout: {e}", path.display()))?;
    }
    if let (true, Some(url)) = (from_file("drain_redirect"), &file.drain_redirect) {
        let url = url
            .parse()
            .map_err(|e| format!("{}: drain_redirect {url:?}: {e}", path.display()))?;
        args.ops.drain_redirect = Some(url);
    }
    if let (true, Some(format)) = (from_file("log_format"), &file.log_format) {
        args.ops.log_format = <LogFormat as clap::ValueEnum>::from_str(format, false)
            .map_err(|_| format!("{}: log_format {format:?}: text or json", path.display()))?;
    }
    let c = &file.cluster;
    if from_file("cluster_connect") {
        for url in &c.connect {
            let url = url
                .parse()
                .map_err(|e| format!("{}: cluster.connect {url:?}: {e}", path.display()))?;
            args.cluster.cluster_connect.push(url);
        }
    }
    if from_file("cluster_id") && c.id.is_some() {
        args.cluster.cluster_id = c.id;
    }
    set(
        from_file("cluster_max_hops"),
        &mut args.cluster.cluster_max_hops,
        c.max_hops,
    );
    if let (true, Some(linger)) = (from_file("cluster_linger"), &c.linger) {
        args.cluster.cluster_linger = bench::parse_duration(linger)
            .map_err(|e| format!("{}: cluster.linger: {e}", path.display()))?;
    }
    set(
        from_file("client_tls_disable_verify"),
        &mut args.cluster.client_tls_disable_verify,
        c.tls_disable_verify,
    );
    if from_file("client_tls_root") && c.tls_root.is_some() {
        args.cluster.client_tls_root = c.tls_root.clone();
    }
    if from_file("client_tls_fingerprint") && c.tls_fingerprint.is_some() {
        args.cluster.client_tls_fingerprint = c.tls_fingerprint.clone();
    }
    args.cache.extend(file.cache_rules()?);
    args.eager.extend(file.eager_rules()?);
    Ok(())
}

fn run_bench(args: BenchArgs) -> Result<(), String> {
    let verify = verify(args.tls_disable_verify, args.tls_fingerprint);
    let fps = match args.rate_mbit {
        Some(rate) => rate * 1e6 / 8.0 / args.frame_size.max(1) as f64,
        None => args.fps,
    };
    let config = BenchConfig {
        connect: Connect {
            url: args.url,
            versions: versions_or_all(args.versions),
            verify,
        },
        publishers: args.publishers,
        subscribers: args.subscribers,
        fps,
        frame_size: args.frame_size,
        group_frames: args.group_frames,
        warmup: args.warmup,
        duration: args.duration,
        drain: args.drain,
        setup_timeout: args.setup_timeout,
        threads: args.threads,
        pin: args.pin,
        connect_rate: args.connect_rate,
        relay_pid: args.relay_pid,
        progress: !args.quiet,
    };
    let report = bench::run(config).map_err(|e| e.to_string())?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

/// Loads the token keys and public prefixes and says at start what is open; `None` when
/// no auth setting is given (every path open, as before auth existed).
fn load_auth(args: &AuthArgs) -> Result<Option<Arc<moqring::auth::Auth>>, String> {
    use moqring::auth::{Auth, WallClock};
    use std::time::{Duration, Instant, SystemTime};
    if args.auth_key.is_none() && args.auth_key_dir.is_none() && args.auth_public.is_empty() {
        tracing::info!("auth: off (no --auth-key): every path is open to publish and subscribe");
        return Ok(None);
    }
    let clock = WallClock::new(Instant::now(), SystemTime::now());
    let auth = Auth::load(
        args.auth_key.as_deref(),
        args.auth_key_dir.as_deref(),
        &args.auth_public,
        clock,
    )
    .map_err(|e| format!("auth: {e}"))?;
    if auth.key_count() == 0 {
        tracing::warn!(public = ?auth.public(), "auth: no key; only the public prefixes are open and tokens are refused");
        return Ok(Some(Arc::new(auth)));
    }
    tracing::info!(keys = auth.key_count(), public = ?auth.public(), "auth: tokens required outside the public prefixes");
    let auth = Arc::new(auth);
    // Token expiry is judged in unix time: keep the shards' clock anchor on the system clock.
    let synced = Arc::clone(&auth);
    std::thread::Builder::new()
        .name("auth-clock".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            synced.clock().sync(Instant::now(), SystemTime::now());
        })
        .map_err(|e| format!("auth: clock thread: {e}"))?;
    Ok(Some(auth))
}

/// A relay id for hop chains: random, non-zero, below 2^53 (browsers read it as a number).
fn random_origin() -> Result<u64, String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no randomness for the relay id".to_string())?;
    Ok((u64::from_le_bytes(bytes) & ((1 << 53) - 1)).max(1))
}

/// The peers to dial and how, checked: `None` without `--cluster-connect`.
fn cluster_config(args: &ClusterArgs) -> Result<Option<moqring::cluster::ClusterConfig>, String> {
    if args.cluster_id == Some(0) || args.cluster_id.is_some_and(|id| id >= 1 << 53) {
        return Err("--cluster-id: expected 1..2^53".into());
    }
    if !(1..=moqring::wire::MAX_HOPS).contains(&args.cluster_max_hops) {
        return Err(format!(
            "--cluster-max-hops: expected 1..={}",
            moqring::wire::MAX_HOPS
        ));
    }
    for url in &args.cluster_connect {
        if !matches!(url.scheme(), "moql" | "moqt" | "https") || url.host_str().is_none() {
            return Err(format!(
                "--cluster-connect {url}: expected moql://HOST:PORT/PATH or https://HOST:PORT/PATH"
            ));
        }
    }
    if args.cluster_connect.is_empty() {
        return Ok(None);
    }
    if let Some(root) = &args.client_tls_root {
        std::fs::metadata(root)
            .map_err(|e| format!("--client-tls-root {}: {e}", root.display()))?;
    }
    let verify = match (&args.client_tls_root, &args.client_tls_fingerprint) {
        (_, Some(fp)) => verify(false, Some(fp.clone())),
        _ => verify(args.client_tls_disable_verify, None),
    };
    Ok(Some(moqring::cluster::ClusterConfig {
        peers: args.cluster_connect.clone(),
        verify,
        root: args.client_tls_root.clone(),
    }))
}

fn relay(args: RelayArgs) -> Result<(), String> {
    check_relay_args(&args)?;
    if args.max_connections == 0 {
        tracing::warn!("--max-connections 0: every connection will be refused");
    }
    let identity = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => tls::from_files(cert, key),
        _ => tls::generate(&args.ops.tls_generate),
    }
    .map_err(|e| e.to_string())?;
    let versions = versions_or_all(args.versions);
    let cores = shard::plan_cores(
        args.cores.as_ref().map(|c| c.0.as_slice()),
        args.threads,
        &shard::available_cores(),
    )?;
    if cores.len() > moqring::relay::MAX_SHARDS {
        return Err(format!(
            "at most {} shards are supported",
            moqring::relay::MAX_SHARDS
        ));
    }
    let shards = cores.len();
    let idle_timeout_ms = args.idle_timeout_ms;
    let quic_versions = versions.clone();
    // One QUIC configuration per shard (quiche's is not `Clone`), from the identity's files.
    let quic_for = move |identity: &tls::Identity| {
        (0..shards)
            .map(|_| {
                moqring::net::quic::server_config(
                    &identity.cert.to_string_lossy(),
                    &identity.key.to_string_lossy(),
                    &quic_versions,
                    idle_timeout_ms,
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("loading certificate: {e}"))
    };
    let quic = quic_for(&identity)?;
    // SIGHUP reads the certificate files again; a generated certificate has none.
    let reload: Option<moqring::signals::Reload> = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let (cert, key) = (cert.clone(), key.clone());
            Some(Box::new(move || {
                let identity = tls::from_files(&cert, &key).map_err(|e| e.to_string())?;
                Ok((quic_for(&identity)?, identity.fingerprint.clone()))
            }))
        }
        _ => None,
    };
    // quiche has read the files; a generated certificate's temporary copy can go.
    let fingerprint = identity.fingerprint.clone();
    let shown = tls::SharedFingerprint::from(fingerprint.as_str());
    drop(identity);
    tracing::info!(
        max_frame_size = args.max_frame_size,
        max_queued_bytes = args.max_queued_bytes,
        cache_bytes = args.cache_bytes,
        cache_age_ms = args.cache_age_ms,
        cache_rules = ?args.cache,
        eager = ?args.eager,
        max_connections = args.max_connections,
        idle_timeout_ms = args.idle_timeout_ms,
        handshakes = ?args.handshakes,
        pin = !args.no_pin,
        steering = !args.no_steering,
        "settings"
    );
    let auth = load_auth(&args.auth)?;
    let origin = match args.cluster.cluster_id {
        Some(id) => id,
        None => random_origin()?,
    };
    let cluster = cluster_config(&args.cluster)?;
    if let Some(c) = &cluster {
        tracing::info!(id = origin, peers = ?c.peers.iter().map(Url::as_str).collect::<Vec<_>>(), max_hops = args.cluster.cluster_max_hops, linger = ?args.cluster.cluster_linger, "cluster");
    }
    let pin = !args.no_pin;
    let metrics = Arc::new(Metrics::new(shards));
    let control = Arc::new(shard::Control::new(shards));
    let draining = metrics.clone();
    moqring::signals::spawn(moqring::signals::Handlers {
        control: control.clone(),
        drain_timeout: args.ops.drain_timeout,
        redirect: args
            .ops
            .drain_redirect
            .as_ref()
            .map_or(String::new(), Url::to_string),
        reload,
        on_drain: Box::new(move || draining.set_draining()),
        fingerprint: shown.clone(),
    })
    .map_err(|e| format!("signal handlers: {e}"))?;
    let config = ShardConfig {
        bind: args.bind,
        quic,
        cores: cores.iter().map(|&c| pin.then_some(c)).collect(),
        steer: !args.no_steering,
        relay: RelayConfig {
            origin,
            max_queued_bytes: args.max_queued_bytes,
            cache_bytes: args.cache_bytes,
            cache_age: std::time::Duration::from_millis(args.cache_age_ms),
            cache_rules: args.cache,
            eager: args.eager,
            max_hops: args.cluster.cluster_max_hops,
            route_linger: args.cluster.cluster_linger,
            ..RelayConfig::default()
        },
        session: SessionConfig {
            origin,
            path: None,
            max_frame_size: args.max_frame_size,
            max_queued_bytes: args.max_queued_bytes,
            auth,
            versions: versions.clone(),
            authority: None,
        },
        max_connections: args.max_connections,
        handshakes: shard::HandshakePolicy::new(
            args.handshakes.retry,
            args.handshakes.handshake_timeout,
            args.handshakes.max_pending_handshakes,
            args.handshakes.max_pending_per_address,
            std::time::Instant::now(),
        )?,
        metrics: metrics.clone(),
        control,
        cluster,
        idle_timeout_ms: args.idle_timeout_ms,
    };
    let http = (!args.no_http).then_some(args.http_bind);
    let alpns: Vec<String> = versions.iter().map(|v| v.to_string()).collect();
    let on_bound = Box::new(move |addr: SocketAddr| {
        use std::io::Write;
        // After the UDP bind, so `--bind ...:0` shares its port with the side door (if
        // that number is taken over TCP, `shard::run` draws another and calls again).
        let http = match http {
            Some(bind) => {
                let site = moqring::http::Site {
                    fingerprint: shown.clone(),
                    metrics: metrics.clone(),
                };
                let bind = bind.unwrap_or(addr);
                let bound = moqring::http::start(bind, site).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("http side door on {bind}: {e}"))
                })?;
                Some(bound)
            }
            None => None,
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "moqring relay listening on {addr}");
        let _ = writeln!(out, "certificate sha256 fingerprint: {fingerprint}");
        let _ = writeln!(out, "protocols: {}", alpns.join(", "));
        let _ = writeln!(out, "shards: {shards} on cores {cores:?}");
        if let Some(http) = http {
            let _ = writeln!(out, "http on {http}");
        }
        let _ = out.flush();
        Ok(())
    });
    shard::run(config, on_bound).map_err(|e| format!("relay: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("moqring").chain(args.iter().copied()))
    }

    /// The relay's arguments with the config file applied, as `main` does it.
    fn relay_args(args: &[&str]) -> Result<RelayArgs, String> {
        let argv = std::iter::once("moqring").chain(args.iter().copied());
        let matches = Cli::command()
            .try_get_matches_from(argv)
            .map_err(|e| e.to_string())?;
        let Command::Relay(mut relay) = Cli::from_arg_matches(&matches).unwrap().command else {
            panic!("not a relay command");
        };
        let given = matches.subcommand_matches("relay").unwrap();
        apply_config_file(&mut relay, given)?;
        Ok(*relay)
    }

    fn relay(args: &[&str]) -> RelayArgs {
        let mut all = vec!["relay"];
        all.extend_from_slice(args);
        relay_args(&all).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn every_relay_flag_parses_into_its_setting() {
        let r = relay(&["--cores", "0-3,6"]);
        assert_eq!(r.cores, Some(CoreList(vec![0, 1, 2, 3, 6])));
        assert_eq!(relay(&["--cores", "1"]).cores, Some(CoreList(vec![1])));
        assert_eq!(relay(&["--cores", "0,1"]).cores, Some(CoreList(vec![0, 1])));
        assert_eq!(relay(&["--threads", "4"]).threads, Some(4));
        let r = relay(&[
            "--bind",
            "0.0.0.0:4443",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "--alpn",
            "moq-lite-05",
            "--alpn",
            "moq-lite-04",
            "--max-frame-size",
            "1000",
            "--max-queued-bytes",
            "2000",
            "--cache-bytes",
            "3000",
            "--cache-age-ms",
            "4000",
            "--cache",
            "live/*:video=bytes=5000,age=600",
            "--cache",
            "vod/*=age=700",
            "--eager",
            "live/*=video,audio",
            "--max-connections",
            "7",
            "--idle-timeout-ms",
            "8000",
            "--no-pin",
            "--no-steering",
        ]);
        assert_eq!(r.bind, "0.0.0.0:4443".parse().unwrap());
        assert_eq!(r.cert, Some(PathBuf::from("c.pem")));
        assert_eq!(r.key, Some(PathBuf::from("k.pem")));
        assert_eq!(r.versions, vec![Version::Lite05, Version::Lite04]);
        assert_eq!(
            (r.max_frame_size, r.max_queued_bytes, r.cache_bytes),
            (1000, 2000, 3000)
        );
        assert_eq!(r.cache_age_ms, 4000);
        assert_eq!(r.cache.len(), 2);
        assert_eq!(r.cache[0].track.as_deref(), Some("video"));
        assert_eq!(r.cache[0].bytes, Some(5000));
        assert_eq!(r.cache[1].pattern, "vod/*");
        assert_eq!(r.eager[0].tracks, vec!["video", "audio"]);
        assert_eq!((r.max_connections, r.idle_timeout_ms), (7, 8000));
        assert!(r.no_pin && r.no_steering);
        assert_eq!(r.cores, None);
    }

    #[test]
    fn cluster_flags_and_their_config_section_parse_and_bad_ones_are_refused() {
        let r = relay(&[]).cluster;
        assert!(r.cluster_connect.is_empty());
        assert_eq!(r.cluster_max_hops, 32);
        assert_eq!(r.cluster_linger, std::time::Duration::from_secs(5));
        assert_eq!(cluster_config(&r).unwrap().map(|c| c.peers), None);
        let r = relay(&[
            "--cluster-connect",
            "moql://10.0.0.1:4443/",
            "--cluster-connect",
            "https://b.example:4443/?jwt=t",
            "--cluster-id",
            "42",
            "--cluster-max-hops",
            "4",
            "--cluster-linger",
            "2s",
            "--client-tls-fingerprint",
            "ab:cd",
        ])
        .cluster;
        let c = cluster_config(&r).unwrap().unwrap();
        assert_eq!(c.peers.len(), 2);
        assert_eq!(c.peers[1].query(), Some("jwt=t"));
        assert!(matches!(c.verify, Verify::Fingerprint(ref f) if f == "ab:cd"));
        assert_eq!((r.cluster_id, r.cluster_max_hops), (Some(42), 4));
        assert_eq!(r.cluster_linger, std::time::Duration::from_secs(2));
        let r = relay(&[
            "--cluster-connect",
            "moql://10.0.0.1:4443/",
            "--client-tls-disable-verify",
        ]);
        let c = cluster_config(&r.cluster).unwrap().unwrap();
        assert!(matches!(c.verify, Verify::Disabled));
        // Refused, naming the flag.
        for (args, flag) in [
            (
                &["--cluster-connect", "udp://h:1/"][..],
                "--cluster-connect",
            ),
            (&["--cluster-id", "0"][..], "--cluster-id"),
            (&["--cluster-id", "9007199254740992"][..], "--cluster-id"),
            (&["--cluster-max-hops", "33"][..], "--cluster-max-hops"),
            (
                &[
                    "--cluster-connect",
                    "moql://h:1/",
                    "--client-tls-root",
                    "/nonexistent.pem",
                ][..],
                "--client-tls-root",
            ),
        ] {
            let err = cluster_config(&relay(args).cluster).unwrap_err();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
        assert!(relay_args(&[
            "relay",
            "--client-tls-disable-verify",
            "--client-tls-fingerprint",
            "ab"
        ])
        .is_err());

        let dir = std::env::temp_dir().join(format!("moqring-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("relay.toml");
        std::fs::write(
            &file,
            "[cluster]\nconnect = [\"moql://a:1/\", \"moql://b:2/\"]\nid = 9\n\
             max_hops = 5\nlinger = \"1s\"\ntls_disable_verify = true\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let r = relay(&["--config", path]).cluster;
        assert_eq!(r.cluster_connect.len(), 2);
        assert_eq!((r.cluster_id, r.cluster_max_hops), (Some(9), 5));
        assert_eq!(r.cluster_linger, std::time::Duration::from_secs(1));
        assert!(r.client_tls_disable_verify);
        // The command line's peers replace the file's.
        let r = relay(&["--config", path, "--cluster-connect", "moql://c:3/"]).cluster;
        assert_eq!(r.cluster_connect.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn relay_defaults_are_the_documented_ones() {
        let r = relay(&[]);
        assert_eq!(r.bind, "127.0.0.1:4443".parse().unwrap());
        assert_eq!(r.max_frame_size, 16 << 20);
        assert_eq!(r.max_queued_bytes, 16 << 20);
        assert_eq!(r.cache_bytes, 4 << 20);
        assert_eq!(r.cache_age_ms, 10_000);
        assert_eq!(r.max_connections, 20_000);
        assert_eq!(r.idle_timeout_ms, 30_000);
        assert!(r.versions.is_empty() && r.cache.is_empty() && r.eager.is_empty());
        assert!(!r.no_pin && !r.no_steering && r.cores.is_none() && r.threads.is_none());
    }

    #[test]
    fn handshake_flags_and_keys_parse_with_flags_over_the_file() {
        let r = relay(&[]);
        let h = &r.handshakes;
        assert_eq!(h.handshake_timeout, std::time::Duration::from_secs(10));
        assert_eq!(
            (h.max_pending_handshakes, h.max_pending_per_address),
            (1000, 16)
        );
        assert_eq!(h.retry, shard::RetryMode::Auto);
        let r = relay(&[
            "--handshake-timeout",
            "2s",
            "--max-pending-handshakes",
            "50",
            "--max-pending-per-address",
            "3",
            "--retry",
            "always",
        ]);
        let h = &r.handshakes;
        assert_eq!(h.handshake_timeout, std::time::Duration::from_secs(2));
        assert_eq!(
            (h.max_pending_handshakes, h.max_pending_per_address),
            (50, 3)
        );
        assert_eq!(h.retry, shard::RetryMode::Always);

        let dir = std::env::temp_dir().join(format!("moqring-hs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("relay.toml");
        std::fs::write(
            &file,
            "handshake_timeout = \"500ms\"\nmax_pending_handshakes = 7\n\
             max_pending_per_address = 2\nretry = \"never\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let h = relay(&["--config", path]).handshakes;
        assert_eq!(h.handshake_timeout, std::time::Duration::from_millis(500));
        assert_eq!(
            (h.max_pending_handshakes, h.max_pending_per_address),
            (7, 2)
        );
        assert_eq!(h.retry, shard::RetryMode::Never);
        let h = relay(&[
            "--config",
            path,
            "--retry",
            "auto",
            "--max-pending-handshakes",
            "9",
        ])
        .handshakes;
        assert_eq!(
            (h.retry, h.max_pending_handshakes),
            (shard::RetryMode::Auto, 9)
        );
        assert_eq!(h.max_pending_per_address, 2);
        std::fs::write(&file, "retry = \"maybe\"\n").unwrap();
        let err = relay_args(&["relay", "--config", path]).unwrap_err();
        assert!(err.contains("retry"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();

        let checked = |args: &[&str]| check_relay_args(&relay(args));
        assert!(checked(&["--handshake-timeout", "0s"])
            .unwrap_err()
            .contains("--handshake-timeout"));
        assert!(checked(&["--max-pending-handshakes", "0"])
            .unwrap_err()
            .contains("--max-pending-handshakes"));
        assert!(checked(&["--max-pending-per-address", "0"])
            .unwrap_err()
            .contains("--max-pending-per-address"));
    }

    #[test]
    fn bad_relay_flags_are_errors_not_panics() {
        for bad in [
            &["relay", "--cores", ""][..],
            &["relay", "--cores", "x"],
            &["relay", "--cores", "3-1"],
            &["relay", "--cores", "0-99999999999"],
            &["relay", "--cores", "0", "--threads", "1"],
            &["relay", "--cert", "c.pem"],
            &["relay", "--alpn", "moq-lite-01"],
            &["relay", "--cache", "live/*"],
            &["relay", "--eager", "live/*="],
            &["relay", "--bind", "localhost"],
            &["relay", "--max-connections", "-1"],
        ] {
            let err = relay_args(bad).expect_err(&format!("{bad:?} accepted"));
            assert!(err.contains("error"), "{bad:?}: {err}");
        }
        let checked = |args: &[&str]| check_relay_args(&relay(args));
        assert!(checked(&["--max-frame-size", "0"])
            .unwrap_err()
            .contains("--max-frame-size"));
        assert!(checked(&["--max-queued-bytes", "0"])
            .unwrap_err()
            .contains("--max-queued-bytes"));
        assert!(checked(&["--idle-timeout-ms", "0"])
            .unwrap_err()
            .contains("--idle-timeout-ms"));
        assert!(checked(&["--idle-timeout-ms", "18446744073709551615"])
            .unwrap_err()
            .contains("--idle-timeout-ms"));
        assert!(checked(&["--cache-age-ms", "18446744073709551615"])
            .unwrap_err()
            .contains("--cache-age-ms"));
        assert!(checked(&["--cache", "x=age=18446744073709551615"])
            .unwrap_err()
            .contains("--cache"));
        assert_eq!(checked(&["--max-connections", "0"]), Ok(()));
    }

    #[test]
    fn a_config_file_fills_what_the_command_line_leaves_and_its_rules_come_after() {
        let dir = std::env::temp_dir().join(format!("moqring-main-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("relay.toml");
        std::fs::write(
            &file,
            r#"
bind = "0.0.0.0:4443"
cert = "/etc/moqring/cert.pem"
key = "/etc/moqring/key.pem"
alpn = ["moq-lite-05", "moq-lite-04"]
max_frame_size = 16777216
max_queued_bytes = 8388608
max_connections = 20000
idle_timeout_ms = 30000
cores = "0-3"
steering = false
pin = false

[cache]
bytes = 4194304
age_ms = 10000

[[cache.rule]]
broadcast = "live/*"
track = "video"
bytes = 16777216
age_ms = 2000

[[eager]]
broadcast = "live/*"
tracks = ["video", "audio"]
"#,
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let r = relay(&["--config", path]);
        assert_eq!(r.bind, "0.0.0.0:4443".parse().unwrap());
        assert_eq!(r.cert, Some(PathBuf::from("/etc/moqring/cert.pem")));
        assert_eq!(r.versions, vec![Version::Lite05, Version::Lite04]);
        assert_eq!(r.max_queued_bytes, 8_388_608);
        assert_eq!(r.cores, Some(CoreList(vec![0, 1, 2, 3])));
        assert!(r.no_pin && r.no_steering);
        assert_eq!(r.cache_age_ms, 10_000);

        // Flags win over the file; the command line's rules come first.
        let r = relay(&[
            "--config",
            path,
            "--bind",
            "127.0.0.1:5000",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "--alpn",
            "moq-lite-03",
            "--max-queued-bytes",
            "1234",
            "--threads",
            "1",
            "--cache",
            "live/*:audio=bytes=1",
            "--eager",
            "news/*=video",
        ]);
        assert_eq!(r.bind, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(r.cert, Some(PathBuf::from("c.pem")));
        assert_eq!(r.key, Some(PathBuf::from("k.pem")));
        assert_eq!(r.versions, vec![Version::Lite03]);
        assert_eq!(r.max_queued_bytes, 1234);
        assert_eq!((r.cores, r.threads), (None, Some(1)));
        let rules: Vec<_> = r.cache.iter().map(|c| c.track.as_deref()).collect();
        assert_eq!(rules, vec![Some("audio"), Some("video")]);
        let eager: Vec<_> = r.eager.iter().map(|e| e.pattern.as_str()).collect();
        assert_eq!(eager, vec!["news/*", "live/*"]);

        std::fs::write(&file, "cores = \"0\"\nthreads = 2\n").unwrap();
        assert!(relay_args(&["relay", "--config", path]).is_err());
        std::fs::write(&file, "max_frame_size = -1\n").unwrap();
        assert!(relay_args(&["relay", "--config", path]).is_err());
        std::fs::write(&file, "no_such_key = 1\n").unwrap();
        let err = relay_args(&["relay", "--config", path]).unwrap_err();
        assert!(err.contains("no_such_key"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn client_and_bench_flags_parse() {
        let Command::Pub(p) = parse(&[
            "pub",
            "moql://localhost:4443/anon",
            "--broadcast",
            "demo",
            "--track",
            "t",
            "--frame-size",
            "1000",
            "--group-frames",
            "4",
            "--alpn",
            "moq-lite-04",
            "--tls-fingerprint",
            "AB:cd",
        ])
        .unwrap()
        .command
        else {
            panic!("not pub");
        };
        assert_eq!((p.frame_size, p.group_frames), (1000, 4));
        assert_eq!(p.client.versions, vec![Version::Lite04]);
        assert_eq!(p.client.tls_fingerprint.as_deref(), Some("AB:cd"));
        assert_eq!(absolute(&p.client), "anon/demo");
        let Command::Sub(s) = parse(&[
            "sub",
            "moql://localhost:4443/anon",
            "--broadcast",
            "demo",
            "--track",
            "t",
            "--tls-disable-verify",
            "--start-group",
            "3",
        ])
        .unwrap()
        .command
        else {
            panic!("not sub");
        };
        assert!(s.client.tls_disable_verify);
        assert_eq!(s.start_group, Some(3));
        assert!(parse(&[
            "sub",
            "moql://h/a",
            "--broadcast",
            "b",
            "--track",
            "t",
            "--tls-disable-verify",
            "--tls-fingerprint",
            "ab"
        ])
        .is_err());

        let Command::Bench(b) = parse(&[
            "bench",
            "moql://localhost:4443/anon",
            "--publishers",
            "2",
            "--subscribers",
            "300",
            "--rate-mbit",
            "8",
            "--frame-size",
            "1000",
            "--group-frames",
            "30",
            "--duration",
            "500ms",
            "--warmup",
            "2m",
            "--drain",
            "1.5",
            "--setup-timeout",
            "3s",
            "--threads",
            "2",
            "--pin",
            "0,1",
            "--connect-rate",
            "100",
            "--relay-pid",
            "42",
            "--json",
            "--quiet",
            "--alpn",
            "moq-lite-05",
            "--tls-disable-verify",
        ])
        .unwrap()
        .command
        else {
            panic!("not bench");
        };
        assert_eq!((b.publishers, b.subscribers), (2, 300));
        assert_eq!(b.rate_mbit, Some(8.0));
        assert_eq!(b.duration, std::time::Duration::from_millis(500));
        assert_eq!(b.warmup, std::time::Duration::from_secs(120));
        assert_eq!(b.drain, std::time::Duration::from_millis(1500));
        assert_eq!(b.setup_timeout, std::time::Duration::from_secs(3));
        assert_eq!((b.threads, b.pin.as_slice()), (2, &[0, 1][..]));
        assert_eq!((b.connect_rate, b.relay_pid), (100, Some(42)));
        assert!(b.json && b.quiet && b.tls_disable_verify);
        assert!(parse(&["bench", "moql://h/a", "--fps", "30", "--rate-mbit", "8"]).is_err());
        for bad in ["1e300s", "NaN", "-1s", "25h"] {
            assert!(
                parse(&["bench", "moql://h/a", "--duration", bad]).is_err(),
                "{bad}"
            );
        }
    }
}
