//! `tickgate feed --publish nats://...`: run only a feed and publish its ticks for a fleet
//! of gateways.

use clap::{Arg, ArgMatches, Command};

use super::{CliError, init_logs, key_args, resolve};
use crate::config::FeedSpec;

/// The command and its arguments (every configuration key, and `--publish`).
pub fn command() -> Command {
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
    )
}

/// Publishes until the feed ends or SIGINT/SIGTERM.
///
/// # Errors
/// A bad setting (exit 2); a bad `--publish`, a NATS source, or a failure while publishing
/// (exit 1).
pub fn run(m: &ArgMatches) -> Result<(), CliError> {
    let (cfg, _) = resolve(m)?;
    let _ = init_logs(&cfg.server.log_level, cfg.server.log_format);
    let url = m.get_one::<String>("publish").cloned().unwrap_or_default();
    if !url.starts_with("nats://") {
        return Err(CliError::Run(anyhow::anyhow!("--publish expects nats://HOST:PORT, got {url:?}")));
    }
    if matches!(cfg.feed.source, FeedSpec::Nats(_)) {
        return Err(CliError::Run(anyhow::anyhow!(
            "--feed nats:// cannot be republished to NATS; give the source feed (sim, replay:, ticks:)"
        )));
    }
    let source = crate::feed::Feed::from_config(&cfg)?.source;
    let stop = crate::signal::stop_flag_on_signal()?;
    crate::bus::publish::run(&url, &crate::bus::BusConfig::from(&cfg), source, cfg.feed.ticks, stop)?;
    Ok(())
}
