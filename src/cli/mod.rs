//! The `tickgate` command line: one module per command (`serve`, `record`, `feed`, `config`,
//! `token`, `stats`, `tune`), each with its `command()` (its arguments) and `run()`; the
//! binary (`src/main.rs`) only parses, dispatches with [`run`] and exits with
//! [`CliError::exit_code`].
//!
//! The commands that take configuration keys (`serve`, `record`, `feed`, `config`) share
//! [`key_args`], which turns every key of [`KEYS`] into a flag, and [`resolve`], which layers
//! flags, environment and file into one validated [`Config`].

pub mod config;
pub mod feed;
pub mod record;
pub mod serve;
pub mod stats;
pub mod token;
pub mod tune;

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::config::{Config, ConfigError, KEYS, Layers, LogFormat, Source, Sources, ValueError};

/// Exit code for usage and configuration errors, and for refused changes.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for failures at run time.
pub const EXIT_FAILURE: u8 = 1;

/// Why a command failed; it knows its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad setting, from any source.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A bad argument of a command.
    #[error("{0}")]
    Usage(String),
    /// The gateway refused a change (`tickgate tune`), as it said.
    #[error("{0}")]
    Refused(String),
    /// Failed while running.
    #[error("{0:#}")]
    Run(#[from] anyhow::Error),
}

impl CliError {
    /// The process exit code: 2 for usage, configuration and refusals, 1 for run-time
    /// failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::Usage(_) | CliError::Refused(_) => EXIT_USAGE,
            CliError::Run(_) => EXIT_FAILURE,
        }
    }
}

/// The whole command line.
pub fn command() -> Command {
    Command::new("tickgate")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Real-time market data push gateway: WebSocket fan-out with conflation")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(serve::command())
        .subcommand(record::command())
        .subcommand(feed::command())
        .subcommand(config::command())
        .subcommand(token::command())
        .subcommand(stats::command())
        .subcommand(tune::command())
}

/// Runs the command `m` names.
///
/// # Errors
/// The command's failure, which says its exit code.
pub fn run(m: &ArgMatches) -> Result<(), CliError> {
    match m.subcommand() {
        Some(("serve", sub)) => serve::run(sub),
        Some(("record", sub)) => record::run(sub),
        Some(("feed", sub)) => feed::run(sub),
        Some(("config", sub)) => config::run(sub),
        Some(("token", sub)) => token::run(sub),
        Some(("stats", sub)) => stats::run(sub),
        Some(("tune", sub)) => tune::run(sub),
        _ => Err(CliError::Usage("no command given; see --help".into())),
    }
}

/// Adds `--config`, `--set` and one flag per configuration key to `cmd`.
pub fn key_args(cmd: Command) -> Command {
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

/// Layers flags, environment and file (`--config`, or the positional FILE of `config
/// check`); validates once.
///
/// # Errors
/// The first bad setting, naming its key, value, source and reason.
pub fn resolve(m: &ArgMatches) -> Result<(Config, Sources), ConfigError> {
    let mut layers = Layers::new();
    for k in KEYS {
        if let Some(v) = m.get_one::<String>(k.key) {
            layers.set(k.key, v.clone(), Source::Flag)?;
        }
    }
    for kv in m.get_many::<String>("set").into_iter().flatten() {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(ConfigError::Invalid {
                key: kv.clone(),
                value: String::new(),
                origin: Source::Flag,
                reason: ValueError::Expected("KEY=VALUE after --set"),
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
pub fn init_logs(level: &str, format: LogFormat) -> crate::live::LogReloader {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, reload};
    let from_env = std::env::var("RUST_LOG").ok().and_then(|v| crate::config::log_filter(&v).ok());
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
        let f = crate::config::log_filter(level).map_err(|e| e.to_string())?;
        handle.reload(f).map_err(|e| e.to_string())
    })
}
