//! `tickgate record`: write the ticks of a feed to a tick file.

use clap::{Arg, ArgMatches, Command};

use super::{CliError, init_logs, key_args, resolve};
use crate::config::FeedSpec;

/// The command and its arguments (every configuration key, and `--out`).
pub fn command() -> Command {
    key_args(
        Command::new("record")
            .about("Write the ticks of a feed (--feed) to a tick file, replayable with --feed ticks:FILE"),
    )
    .arg(
        Arg::new("out")
            .long("out")
            .short('o')
            .value_name("FILE")
            .required(true)
            .help("the tick file to write"),
    )
}

/// Records until the feed ends, `--ticks` are written, or SIGINT/SIGTERM.
///
/// # Errors
/// A bad setting or an endless feed without `--ticks` (exit 2); a failure of the feed or the
/// file (exit 1).
pub fn run(m: &ArgMatches) -> Result<(), CliError> {
    let (cfg, _) = resolve(m)?;
    let _ = init_logs(&cfg.server.log_level, cfg.server.log_format);
    let out = m.get_one::<String>("out").map(std::path::PathBuf::from).unwrap_or_default();
    let endless = match &cfg.feed.source {
        FeedSpec::Sim => true,
        FeedSpec::Replay(_) | FeedSpec::Ticks(_) => cfg.feed.replay_loop,
        FeedSpec::Nats(_) => false,
    };
    if endless && cfg.feed.ticks.is_none() {
        return Err(CliError::Run(anyhow::anyhow!(
            "this feed never ends: give --ticks N (how many ticks to record)"
        )));
    }
    let clock = if matches!(cfg.feed.source, FeedSpec::Nats(_)) {
        crate::record::Clock::Wall
    } else {
        crate::record::Clock::Virtual { start_ns: crate::clock::now_ns() }
    };
    let mut source = crate::feed::Feed::from_config(&cfg)?.source;
    let stop = crate::signal::stop_flag_on_signal()?;
    let started = std::time::Instant::now();
    let n = crate::record::record(source.as_mut(), &out, cfg.feed.ticks, cfg.server.max_depth, clock, &stop)?;
    let bytes = std::fs::metadata(&out).map_or(0, |m| m.len());
    let books = if n.books > 0 { format!(" with {} order-book changes", n.books) } else { String::new() };
    eprintln!(
        "recorded {} ticks of {} symbols{books} to {} ({bytes} bytes) in {:.2?}",
        n.ticks,
        source.universe().len(),
        out.display(),
        started.elapsed()
    );
    Ok(())
}
