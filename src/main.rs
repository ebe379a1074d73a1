//! The `tickgate` binary: parses the command line, resolves the configuration, and runs the
//! library's [`Gateway`] until SIGINT/SIGTERM. All logic lives in the library.

use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};
use mimalloc::MiMalloc;
use tickgate::config::{self, KEYS, Layers, LogFormat, Source};
use tickgate::gateway::Gateway;
use tickgate::ops;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Exit code for configuration errors (as for usage errors).
const EXIT_CONFIG: u8 = 2;

fn key_args(cmd: Command) -> Command {
    let cmd = cmd
        .arg(
            Arg::new("config")
                .long("config")
                .short('c')
                .value_name("FILE")
                .help("TOML configuration file (see config/tickgate.toml for every key)"),
        )
        .arg(
            Arg::new("set")
                .long("set")
                .value_name("KEY=VALUE")
                .action(ArgAction::Append)
                .help("Set any key, e.g. --set feed.rate=5000 (same precedence as the dedicated flags)"),
        );
    KEYS.iter().fold(cmd, |cmd, k| {
        let arg = Arg::new(k.key).long(k.flag()).value_name("VALUE").help(format!(
            "{} [default: {}] [env: {}]",
            k.doc,
            k.default,
            k.env_var()
        ));
        let arg = if k.is_bool() { arg.num_args(0..=1).default_missing_value("true") } else { arg };
        cmd.arg(arg)
    })
}

fn cli() -> Command {
    Command::new("tickgate")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Real-time market data push gateway: WebSocket fan-out with conflation")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(key_args(
            Command::new("serve")
                .about("Run the gateway (on the embedded simulated feed unless --feed says otherwise)"),
        ))
        .subcommand(
            key_args(Command::new("record").about(
                "Write the ticks of a feed (--feed) to a tick file, replayable with --feed ticks:FILE",
            ))
            .arg(
                Arg::new("out")
                    .long("out")
                    .short('o')
                    .value_name("FILE")
                    .required(true)
                    .help("the tick file to write"),
            ),
        )
        .subcommand(
            key_args(
                Command::new("feed")
                    .about("Run only a feed (--feed) and publish its ticks to NATS for a fleet of gateways"),
            )
            .arg(
                Arg::new("publish")
                    .long("publish")
                    .value_name("nats://HOST:PORT")
                    .required(true)
                    .help("the NATS server to publish to (JetStream enabled)"),
            ),
        )
        .subcommand(
            Command::new("config")
                .about("Validate and show configuration")
                .subcommand_required(true)
                .subcommand(
                    key_args(Command::new("check").about(
                        "Validate FILE (with env and flags applied) and print the effective configuration",
                    ))
                    .arg(Arg::new("file").value_name("FILE").help("configuration file to check")),
                )
                .subcommand(key_args(
                    Command::new("print")
                        .about("Print the effective configuration and where each value came from"),
                )),
        )
        .subcommand(
            Command::new("token")
                .about("Mint an HS256 token for auth.mode = token (secret from --secret-file or TICKGATE_AUTH_SECRET)")
                .arg(Arg::new("sub").long("sub").required(true).value_name("NAME").help("who the token is for (the sub claim)"))
                .arg(
                    Arg::new("symbols")
                        .long("symbols")
                        .required(true)
                        .value_name("LIST")
                        .help("comma-separated symbols or patterns it entitles: AAPL,MSFT,BTC*  or  *"),
                )
                .arg(Arg::new("ttl").long("ttl").default_value("1h").value_name("DURATION").help("validity, e.g. 15m, 1h, 24h"))
                .arg(
                    Arg::new("secret-file")
                        .long("secret-file")
                        .value_name("FILE")
                        .help("file holding the secret (else the TICKGATE_AUTH_SECRET environment variable)"),
                ),
        )
        .subcommand(
            Command::new("stats")
                .about("Show a running gateway's clients, rates and latency (like top)")
                .arg(
                    Arg::new("url")
                        .long("url")
                        .default_value("http://127.0.0.1:9000")
                        .help("the gateway's public (or admin) HTTP address"),
                )
                .arg(
                    Arg::new("watch")
                        .long("watch")
                        .short('w')
                        .action(ArgAction::SetTrue)
                        .help("refresh every second"),
                )
                .arg(
                    Arg::new("json")
                        .long("json")
                        .action(ArgAction::SetTrue)
                        .help("print the raw /stats JSON once"),
                ),
        )
        .subcommand(
            Command::new("tune")
                .about("Change settings of a running gateway without a restart (admin listener)")
                .arg(
                    Arg::new("set")
                        .long("set")
                        .value_name("KEY=VALUE")
                        .action(ArgAction::Append)
                        .required(true)
                        .help("a live key, e.g. feed.rate=5000 (repeatable; applied all-or-nothing)"),
                )
                .arg(
                    Arg::new("admin")
                        .long("admin")
                        .default_value("http://127.0.0.1:9001")
                        .help("admin listener address"),
                )
                .arg(Arg::new("token-file").long("token-file").value_name("FILE").help(
                    "file holding the admin token (else the TICKGATE_ADMIN_TOKEN environment variable)",
                )),
        )
}

/// Layers file, environment and flags; validates once.
fn resolve(
    m: &ArgMatches,
) -> Result<(config::Config, std::collections::BTreeMap<&'static str, Source>), config::ConfigError> {
    let mut layers = Layers::new();
    for k in KEYS {
        if let Some(v) = m.get_one::<String>(k.key) {
            layers.set(k.key, v.clone(), Source::Flag)?;
        }
    }
    for kv in m.get_many::<String>("set").into_iter().flatten() {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(config::ConfigError::Invalid {
                key: kv.clone(),
                value: String::new(),
                origin: Source::Flag,
                reason: "--set expects KEY=VALUE".into(),
            });
        };
        layers.set(k.trim(), v.trim().to_string(), Source::Flag)?;
    }
    layers.add_env(std::env::vars())?;
    let file = m.get_one::<String>("config").or_else(|| m.try_get_one::<String>("file").ok().flatten());
    if let Some(path) = file {
        layers.add_file(std::path::Path::new(path))?;
    }
    layers.build()
}

/// Installs the log subscriber; returns a function that swaps the filter (live log level).
fn init_logs(level: &str, format: LogFormat) -> tickgate::live::LogReloader {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, reload};
    let from_env = std::env::var("RUST_LOG").ok().and_then(|v| config::log_filter(&v).ok());
    let (filter, handle) = reload::Layer::new(from_env.unwrap_or_else(|| EnvFilter::new(level)));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout()) && std::env::var_os("NO_COLOR").is_none();
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Pretty => {
            registry.with(tracing_subscriber::fmt::layer().with_target(false).with_ansi(ansi)).init()
        }
        LogFormat::Json => {
            registry.with(tracing_subscriber::fmt::layer().json().with_current_span(false)).init()
        }
    }
    Box::new(move |level: &str| {
        let f = config::log_filter(level)?;
        handle.reload(f).map_err(|e| e.to_string())
    })
}

/// Waits for SIGINT or SIGTERM.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn serve(
    cfg: config::Config,
    sources: std::collections::BTreeMap<&'static str, Source>,
) -> anyhow::Result<()> {
    let reload = init_logs(&cfg.log_level, cfg.log_format);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let gateway = Gateway::start_configured(cfg, sources)?;
    gateway.app().live.set_log_reloader(reload);
    rt.block_on(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal as unix_signal};
            if let Ok(mut hup) = unix_signal(SignalKind::hangup()) {
                let stop = signal();
                tokio::pin!(stop);
                loop {
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = hup.recv() => match gateway.reload_tls() {
                            Ok(true) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
                            Ok(false) => tracing::info!("SIGHUP: no TLS configured; nothing to reload"),
                            Err(e) => tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the current certificate"),
                        },
                    }
                }
            }
        }
        signal().await;
    });
    tracing::info!("signal received: shutting down (a second signal exits at once)");
    std::thread::spawn(move || {
        rt.block_on(signal());
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
    // The shutdown itself is bounded by shutdown_grace; this wait is the backstop.
    let grace = gateway.app().live.shutdown_grace();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        gateway.shutdown();
        let _ = done_tx.send(());
    });
    if done_rx.recv_timeout(grace + std::time::Duration::from_millis(500)).is_err() {
        tracing::warn!("shutdown_grace elapsed; exiting with connections still closing");
    }
    Ok(())
}

/// Sets `stop` on SIGINT/SIGTERM (for the commands that run a feed without a gateway).
fn stop_on_signal() -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("tickgate-signal".into()).spawn(move || {
        rt.block_on(signal());
        s.store(true, std::sync::atomic::Ordering::Release);
        eprintln!("signal received: finishing");
    })?;
    Ok(stop)
}

fn record_cmd(cfg: config::Config, m: &ArgMatches) -> anyhow::Result<()> {
    let _ = init_logs(&cfg.log_level, cfg.log_format);
    let out = m.get_one::<String>("out").map(std::path::PathBuf::from).unwrap_or_default();
    let endless = match &cfg.feed.source {
        config::FeedSpec::Sim => true,
        config::FeedSpec::Replay(_) | config::FeedSpec::Ticks(_) => cfg.feed.replay_loop,
        config::FeedSpec::Nats(_) => false,
    };
    if endless && cfg.feed.ticks.is_none() {
        anyhow::bail!("this feed never ends: give --ticks N (how many ticks to record)");
    }
    let clock = if matches!(cfg.feed.source, config::FeedSpec::Nats(_)) {
        tickgate::record::Clock::Wall
    } else {
        tickgate::record::Clock::Virtual { start_ns: tickgate::clock::now_ns() }
    };
    let mut source = tickgate::gateway::build_source(&cfg)?.source;
    let stop = stop_on_signal()?;
    let started = std::time::Instant::now();
    let n = tickgate::record::record(source.as_mut(), &out, cfg.feed.ticks, clock, &stop)?;
    let bytes = std::fs::metadata(&out).map_or(0, |m| m.len());
    eprintln!(
        "recorded {n} ticks of {} symbols to {} ({bytes} bytes, {:.1} bytes/tick) in {:.2?}",
        source.universe().len(),
        out.display(),
        bytes as f64 / n.max(1) as f64,
        started.elapsed()
    );
    Ok(())
}

fn feed_cmd(cfg: config::Config, m: &ArgMatches) -> anyhow::Result<()> {
    let _ = init_logs(&cfg.log_level, cfg.log_format);
    let url = m.get_one::<String>("publish").cloned().unwrap_or_default();
    if !url.starts_with("nats://") {
        anyhow::bail!("--publish expects nats://HOST:PORT, got {url:?}");
    }
    if matches!(cfg.feed.source, config::FeedSpec::Nats(_)) {
        anyhow::bail!(
            "--feed nats:// cannot be republished to NATS; give the source feed (sim, replay:, ticks:)"
        );
    }
    let source = tickgate::gateway::build_source(&cfg)?.source;
    let stop = stop_on_signal()?;
    tickgate::bus::publish::run(&url, &tickgate::bus::BusConfig::from(&cfg), source, cfg.feed.ticks, stop)?;
    Ok(())
}

fn token_cmd(m: &ArgMatches) -> Result<(), String> {
    let sub = m.get_one::<String>("sub").map_or("", String::as_str);
    let symbols: Vec<String> = m
        .get_one::<String>("symbols")
        .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    if sub.is_empty() || symbols.is_empty() {
        return Err("--sub and --symbols must not be empty".into());
    }
    let ttl = config::parse_duration(
        m.get_one::<String>("ttl").map_or("1h", String::as_str),
        std::time::Duration::from_secs(1),
    )
    .map_err(|e| format!("--ttl: {e}"))?;
    let secret = tickgate::auth::load_secret(m.get_one::<String>("secret-file").map(std::path::Path::new))?;
    let exp = tickgate::clock::now_ns() / 1_000_000_000 + ttl.as_secs();
    let token = tickgate::auth::mint(&secret, sub, &symbols, exp)?;
    println!("{token}");
    Ok(())
}

fn stats_cmd(m: &ArgMatches) -> anyhow::Result<()> {
    let url = m.get_one::<String>("url").map_or("http://127.0.0.1:9000", String::as_str);
    let target = ops::Target::parse(url)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        if m.get_flag("json") {
            println!("{}", ops::fetch_stats(&target).await?);
            return Ok(());
        }
        let watch = m.get_flag("watch");
        let mut prev: Option<(serde_json::Value, std::time::Instant)> = None;
        loop {
            let now = ops::fetch_stats(&target).await.map_err(|e| {
                anyhow::anyhow!(
                    "{e:#}\n(is the gateway running? start it with `tickgate serve`, or pass --url)"
                )
            })?;
            let at = std::time::Instant::now();
            if prev.is_none() && !watch {
                // One frame with rates: take a second sample a second later.
                prev = Some((now, at));
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            let secs = prev.as_ref().map_or(0.0, |(_, t)| at.duration_since(*t).as_secs_f64());
            let view = ops::render_view(url, &now, prev.as_ref().map(|(v, _)| v), secs);
            if watch {
                print!("\x1b[2J\x1b[H{view}");
            } else {
                print!("{view}");
                return Ok(());
            }
            prev = Some((now, at));
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    })
}

fn tune_cmd(m: &ArgMatches) -> anyhow::Result<bool> {
    let admin = m.get_one::<String>("admin").map_or("http://127.0.0.1:9001", String::as_str);
    let target = ops::Target::parse(admin)?;
    let token = match m.get_one::<String>("token-file") {
        Some(f) => Some(
            std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("reading {f}: {e}"))?.trim().to_string(),
        ),
        None => std::env::var(config::ADMIN_TOKEN_ENV).ok(),
    };
    let body: Vec<String> = m.get_many::<String>("set").into_iter().flatten().cloned().collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (status, text) =
        rt.block_on(ops::request(&target, "POST", "/config", Some(body.join("\n")), token.as_deref()))?;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    if status == 200 {
        for c in v["changed"].as_array().into_iter().flatten() {
            println!(
                "{}: {} -> {}",
                c["key"].as_str().unwrap_or("?"),
                c["old"].as_str().unwrap_or("?"),
                c["new"].as_str().unwrap_or("?")
            );
        }
        return Ok(true);
    }
    match (v["key"].as_str(), v["error"].as_str()) {
        (Some(k), Some(e)) => eprintln!("tickgate: refused: {k}: {e}"),
        (None, Some(e)) => eprintln!("tickgate: refused: {e}"),
        _ => eprintln!("tickgate: {admin} answered {status}: {}", text.trim()),
    }
    Ok(false)
}

/// Resolves the configuration of a subcommand that takes the config keys and runs `f`: a bad
/// setting exits 2 with the key and reason, a failure at run time exits 1.
fn keyed(
    sub: &ArgMatches,
    f: impl FnOnce(config::Config, std::collections::BTreeMap<&'static str, Source>) -> anyhow::Result<()>,
) -> ExitCode {
    match resolve(sub) {
        Ok((cfg, sources)) => match f(cfg, sources) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tickgate: {e:#}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("tickgate: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn main() -> ExitCode {
    // Before any thread starts: freed memory goes back to the OS at once (src/alloc.rs).
    tickgate::alloc::return_freed_memory_promptly();
    let m = cli().get_matches();
    let (name, sub) = match m.subcommand() {
        Some(x) => x,
        None => return ExitCode::from(EXIT_CONFIG),
    };
    match name {
        "serve" => keyed(sub, serve),
        "record" => keyed(sub, |cfg, _| record_cmd(cfg, sub)),
        "feed" => keyed(sub, |cfg, _| feed_cmd(cfg, sub)),
        "config" => {
            let Some((_, args)) = sub.subcommand() else { return ExitCode::from(EXIT_CONFIG) };
            match resolve(args) {
                Ok((cfg, sources)) => {
                    print!("{}", config::render(&cfg, &sources));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tickgate: {e}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        "token" => match token_cmd(sub) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tickgate: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        "stats" => match stats_cmd(sub) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tickgate: {e:#}");
                ExitCode::FAILURE
            }
        },
        "tune" => match tune_cmd(sub) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(EXIT_CONFIG),
            Err(e) => {
                eprintln!("tickgate: {e:#}");
                ExitCode::FAILURE
            }
        },
        _ => ExitCode::from(EXIT_CONFIG),
    }
}
