//! `tickgate tune --set KEY=VALUE...`: change live settings of a running gateway through its
//! admin listener, all-or-nothing.

use clap::{Arg, ArgAction, ArgMatches, Command};

use super::CliError;
use crate::ops;

/// The command and its arguments.
pub fn command() -> Command {
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
        .arg(
            Arg::new("token-file")
                .long("token-file")
                .value_name("FILE")
                .help("file holding the admin token (else the TICKGATE_ADMIN_TOKEN environment variable)"),
        )
}

/// Applies the changes and prints each as `key: old -> new`.
///
/// # Errors
/// A refused change (exit 2), or an unreachable admin listener (exit 1).
pub fn run(m: &ArgMatches) -> Result<(), CliError> {
    let admin = m.get_one::<String>("admin").map_or("http://127.0.0.1:9001", String::as_str);
    let target = ops::Target::parse(admin)?;
    let token = match m.get_one::<String>("token-file") {
        Some(f) => Some(
            std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("reading {f}: {e}"))?.trim().to_string(),
        ),
        None => std::env::var(crate::config::ADMIN_TOKEN_ENV).ok(),
    };
    let pairs: Vec<String> = m.get_many::<String>("set").into_iter().flatten().cloned().collect();
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(anyhow::Error::from)?;
    match rt.block_on(ops::tune(&target, &pairs, token.as_deref()))? {
        Ok(changes) => {
            for c in changes {
                println!("{}: {} -> {}", c.key, c.old, c.new);
            }
            Ok(())
        }
        Err(refusal) => Err(CliError::Refused(refusal)),
    }
}
