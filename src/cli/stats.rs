//! `tickgate stats`: a running gateway's clients, rates and latency, like `top`.

use clap::{Arg, ArgAction, ArgMatches, Command};

use super::CliError;
use crate::ops;

/// The command and its arguments.
pub fn command() -> Command {
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
        .arg(Arg::new("json").long("json").action(ArgAction::SetTrue).help("print the raw /stats JSON once"))
}

/// Prints one view (two samples a second apart, for rates), every second with `--watch`,
/// or the raw JSON once with `--json`.
///
/// # Errors
/// A bad `--url` or an unreachable gateway (exit 1).
pub fn run(m: &ArgMatches) -> Result<(), CliError> {
    let url = m.get_one::<String>("url").map_or("http://127.0.0.1:9000", String::as_str);
    let target = ops::Target::parse(url)?;
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(anyhow::Error::from)?;
    if m.get_flag("json") {
        println!("{}", rt.block_on(ops::fetch_stats(&target))?);
        return Ok(());
    }
    let watch = m.get_flag("watch");
    rt.block_on(ops::show_stats(&target, url, watch, |view| {
        if watch {
            print!("\x1b[2J\x1b[H{view}");
        } else {
            print!("{view}");
        }
    }))?;
    Ok(())
}
