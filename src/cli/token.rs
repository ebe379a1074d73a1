//! `tickgate token`: mint an HS256 token for `auth.mode = token`.

use clap::{Arg, ArgMatches, Command};

use super::CliError;

/// The command and its arguments.
pub fn command() -> Command {
    Command::new("token")
        .about(
            "Mint an HS256 token for auth.mode = token (secret from --secret-file or TICKGATE_AUTH_SECRET)",
        )
        .arg(
            Arg::new("sub")
                .long("sub")
                .required(true)
                .value_name("NAME")
                .help("who the token is for (the sub claim)"),
        )
        .arg(
            Arg::new("symbols")
                .long("symbols")
                .required(true)
                .value_name("LIST")
                .help("comma-separated symbols or patterns it entitles: AAPL,MSFT,BTC*  or  *"),
        )
        .arg(
            Arg::new("ttl")
                .long("ttl")
                .default_value("1h")
                .value_name("DURATION")
                .help("validity, e.g. 15m, 1h, 24h"),
        )
        .arg(
            Arg::new("secret-file")
                .long("secret-file")
                .value_name("FILE")
                .help("file holding the secret (else the TICKGATE_AUTH_SECRET environment variable)"),
        )
}

/// Prints the token.
///
/// # Errors
/// Empty `--sub`/`--symbols`, a bad `--ttl`, or no usable secret (exit 2).
pub fn run(m: &ArgMatches) -> Result<(), CliError> {
    let sub = m.get_one::<String>("sub").map_or("", String::as_str);
    let symbols: Vec<String> = m
        .get_one::<String>("symbols")
        .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    if sub.is_empty() || symbols.is_empty() {
        return Err(CliError::Usage("--sub and --symbols must not be empty".into()));
    }
    let ttl = crate::config::parse_duration(
        m.get_one::<String>("ttl").map_or("1h", String::as_str),
        std::time::Duration::from_secs(1),
    )
    .map_err(|e| CliError::Usage(format!("--ttl: {e}")))?;
    let secret = crate::auth::load_secret(m.get_one::<String>("secret-file").map(std::path::Path::new))
        .map_err(CliError::Usage)?;
    let exp = crate::clock::now_ns() / 1_000_000_000 + ttl.as_secs();
    let token = crate::auth::mint(&secret, sub, &symbols, exp).map_err(CliError::Usage)?;
    println!("{token}");
    Ok(())
}
