//! `tickgate config check [FILE]` and `tickgate config print`: validate the configuration
//! from every source and print it as TOML, each key with where its value came from.

use clap::{Arg, ArgMatches, Command};

use super::{CliError, key_args, resolve};

/// The command and its two subcommands.
pub fn command() -> Command {
    Command::new("config")
        .about("Validate and show configuration")
        .subcommand_required(true)
        .subcommand(
            key_args(
                Command::new("check").about(
                    "Validate FILE (with env and flags applied) and print the effective configuration",
                ),
            )
            .arg(Arg::new("file").value_name("FILE").help("configuration file to check")),
        )
        .subcommand(key_args(
            Command::new("print").about("Print the effective configuration and where each value came from"),
        ))
}

/// Prints the effective configuration.
///
/// # Errors
/// The first bad setting (exit 2).
pub fn run(m: &ArgMatches) -> Result<(), CliError> {
    let Some((_, args)) = m.subcommand() else {
        return Err(CliError::Usage("config: give check or print".into()));
    };
    let (cfg, sources) = resolve(args)?;
    print!("{}", crate::config::render(&cfg, &sources));
    Ok(())
}
