//! The `tickgate` binary: parses the command line, resolves the configuration, and runs the
//! library's [`Gateway`] until SIGINT/SIGTERM. All logic lives in the library.

use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};
use mimalloc::MiMalloc;
use tickgate::config::{self, KEYS, Layers, Source};
use tickgate::gateway::Gateway;

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
        cmd.arg(Arg::new(k.key).long(k.flag()).value_name("VALUE").help(format!(
            "{} [default: {}] [env: {}]",
            k.doc,
            k.default,
            k.env_var()
        )))
    })
}

fn cli() -> Command {
    Command::new("tickgate")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Real-time market data push gateway: WebSocket fan-out with conflation")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(key_args(Command::new("serve").about("Run the gateway (embedded simulated feed)")))
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

fn init_logs(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout()) && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi).init();
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

fn serve(cfg: config::Config) -> anyhow::Result<()> {
    init_logs(&cfg.log_level);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Register the handlers before starting, so an early signal is not lost.
    let gateway = Gateway::start(cfg)?;
    rt.block_on(signal());
    tracing::info!("signal received: shutting down (a second signal exits at once)");
    std::thread::spawn(move || {
        rt.block_on(signal());
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
    gateway.shutdown();
    Ok(())
}

fn main() -> ExitCode {
    let m = cli().get_matches();
    let (name, sub) = match m.subcommand() {
        Some(x) => x,
        None => return ExitCode::from(EXIT_CONFIG),
    };
    match name {
        "serve" => match resolve(sub) {
            Ok((cfg, _)) => match serve(cfg) {
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
        },
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
        _ => ExitCode::from(EXIT_CONFIG),
    }
}
