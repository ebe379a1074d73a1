//! `tickgate serve`: run the gateway until SIGINT/SIGTERM (SIGHUP reloads TLS), then shut
//! down within `server.shutdown_grace`.

use clap::{ArgMatches, Command};

use super::{CliError, init_logs, key_args, resolve};
use crate::gateway::Gateway;

/// The command and its arguments (every configuration key).
pub fn command() -> Command {
    key_args(
        Command::new("serve")
            .about("Run the gateway (on the embedded simulated feed unless --feed says otherwise)"),
    )
}

/// Runs the gateway.
///
/// # Errors
/// A bad setting (exit 2), or a failure to start (exit 1).
pub fn run(m: &ArgMatches) -> Result<(), CliError> {
    let (cfg, sources) = resolve(m)?;
    let reload = init_logs(&cfg.server.log_level, cfg.server.log_format);
    let feed = crate::feed::Feed::from_config(&cfg)?;
    let gateway = Gateway::start(cfg, sources, feed)?;
    gateway.app().live.set_log_reloader(reload);
    crate::signal::serve_until_terminated(gateway).map_err(CliError::Run)
}
