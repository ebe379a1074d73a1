//! `tickgate token`: mint a token for `auth.mode = token` (HS256 from the shared secret, or
//! RS/PS/ES/EdDSA from a PEM private key), or say whether the configuration accepts one and
//! why (`--verify`).

use clap::{Arg, ArgAction, ArgMatches, Command};

use super::CliError;
use crate::auth::sign::{SigningKey, TokenClaims, sign};
use crate::config::{Layers, Source};

/// The command and its arguments.
pub fn command() -> Command {
    Command::new("token")
        .about("Mint a token for auth.mode = token, or check one against the configuration (--verify)")
        .long_about(
            "Mint a token for auth.mode = token: HS256 with the shared secret (--secret-file or \
             TICKGATE_AUTH_SECRET), or signed with a PEM private key (--key-file: RSA, EC P-256/P-384, \
             Ed25519), with --kid, --iss and --aud as the gateway's auth settings expect.\n\n\
             With --verify TOKEN: load the keys the configuration names (--config FILE and \
             TICKGATE_* variables, JWKS URLs fetched once) and print which key and claims the token \
             would be accepted with, or why it is refused (exit 1).",
        )
        .arg(
            Arg::new("sub")
                .long("sub")
                .required_unless_present("verify")
                .value_name("NAME")
                .help("who the token is for (the sub claim)"),
        )
        .arg(
            Arg::new("symbols")
                .long("symbols")
                .required_unless_present("verify")
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
                .conflicts_with("key-file")
                .help("file holding the HS256 secret (else the TICKGATE_AUTH_SECRET environment variable)"),
        )
        .arg(
            Arg::new("key-file")
                .long("key-file")
                .value_name("PEM")
                .help("sign with this private key (PKCS#8 RSA/EC/Ed25519 or PKCS#1 RSA) instead of a secret"),
        )
        .arg(Arg::new("alg").long("alg").value_name("ALG").help(
            "signature algorithm (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA); \
             default: the key's (RS256 for RSA)",
        ))
        .arg(Arg::new("kid").long("kid").value_name("ID").help("key id to put in the header (kid)"))
        .arg(Arg::new("iss").long("iss").value_name("ISSUER").help("issuer claim (iss)"))
        .arg(Arg::new("aud").long("aud").value_name("AUDIENCE").help("audience claim (aud)"))
        .arg(
            Arg::new("symbols-claim")
                .long("symbols-claim")
                .default_value("symbols")
                .value_name("NAME")
                .help("claim that carries the symbols (the gateway's auth.symbols_claim)"),
        )
        .arg(
            Arg::new("verify")
                .long("verify")
                .value_name("TOKEN")
                .conflicts_with_all(["sub", "symbols", "secret-file", "key-file", "alg", "kid", "iss", "aud"])
                .help("check TOKEN against the configuration's keys instead of minting one"),
        )
        .arg(
            Arg::new("config")
                .long("config")
                .short('c')
                .value_name("FILE")
                .help("with --verify: the gateway's TOML configuration (TICKGATE_* variables apply too)"),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .action(ArgAction::SetTrue)
                .help("with --verify: print the result as JSON"),
        )
}

/// Prints the token, or the verdict on one.
///
/// # Errors
/// Empty `--sub`/`--symbols`, a bad `--ttl`/`--alg`, no usable key (exit 2); with `--verify`, a
/// refused token (exit 1).
pub fn run(m: &ArgMatches) -> Result<(), CliError> {
    let arg = |name: &str| m.get_one::<String>(name).map(String::as_str);
    if let Some(token) = arg("verify") {
        return verify(token, arg("config"), m.get_flag("json"));
    }
    let sub = arg("sub").unwrap_or("");
    let symbols: Vec<String> = arg("symbols")
        .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    if sub.is_empty() || symbols.is_empty() {
        return Err(CliError::Usage("--sub and --symbols must not be empty".into()));
    }
    let ttl = crate::config::parse_duration(arg("ttl").unwrap_or("1h"), std::time::Duration::from_secs(1))
        .map_err(|e| CliError::Usage(format!("--ttl: {e}")))?;
    let alg = match arg("alg") {
        Some(a) => Some(
            a.parse::<jsonwebtoken::Algorithm>()
                .map_err(|_| CliError::Usage(format!("--alg {a}: unknown algorithm")))?,
        ),
        None => None,
    };
    let key = match arg("key-file") {
        Some(f) => {
            let pem =
                std::fs::read_to_string(f).map_err(|e| CliError::Usage(format!("--key-file {f}: {e}")))?;
            SigningKey::pem(&pem, alg).map_err(|e| CliError::Usage(format!("--key-file {f}: {e}")))?
        }
        None => {
            if alg.is_some_and(|a| a != jsonwebtoken::Algorithm::HS256) {
                return Err(CliError::Usage("--alg other than HS256 needs --key-file".into()));
            }
            if arg("kid").is_some() {
                return Err(CliError::Usage(
                    "--kid needs --key-file: the HS256 secret has no key id, so the gateway would refuse the token"
                        .into(),
                ));
            }
            let secret = crate::auth::load_secret(arg("secret-file").map(std::path::Path::new))
                .map_err(CliError::Usage)?;
            SigningKey::secret(&secret).map_err(CliError::Usage)?
        }
    };
    let claims = TokenClaims {
        sub: sub.to_string(),
        symbols,
        symbols_claim: arg("symbols-claim").unwrap_or("symbols").to_string(),
        exp: crate::clock::now_ns() / 1_000_000_000 + ttl.as_secs(),
        iss: arg("iss").map(String::from),
        aud: arg("aud").map(String::from),
    };
    let token = sign(&key.with_kid(arg("kid").map(String::from)), &claims).map_err(CliError::Usage)?;
    println!("{token}");
    Ok(())
}

fn verify(token: &str, config: Option<&str>, json: bool) -> Result<(), CliError> {
    let mut layers = Layers::new();
    layers.add_env(std::env::vars())?;
    if let Some(path) = config {
        layers.add_file(std::path::Path::new(path))?;
    }
    // The mode does not matter here: the keys are what is being asked about.
    layers.set("auth.mode", "token".into(), Source::Flag)?;
    let (c, _) = layers.build()?;
    let verifier = crate::auth::Verifier::from_config(&c.auth).map_err(CliError::Usage)?;
    verifier.fetch_now();
    let sources = verifier.sources();
    match verifier.check(token.trim()) {
        Ok(a) => {
            let now = crate::clock::now_ns() / 1_000_000_000;
            if json {
                let v = serde_json::json!({
                    "accepted": true,
                    "issuer": a.issuer,
                    "key": {"source": a.key.source, "kid": a.key.kid, "alg": format!("{:?}", a.key.alg)},
                    "sub": a.grant.sub,
                    "exp": a.grant.exp,
                    "claims": a.claims,
                });
                println!("{v}");
            } else {
                println!("accepted");
                println!("  issuer:   {}", a.issuer.as_deref().unwrap_or("(keys bound to no issuer)"));
                println!("  key:      {} [{:?}]", a.key.source, a.key.alg);
                println!("  sub:      {}", a.grant.sub);
                println!("  expires:  in {}s (exp {})", a.grant.exp.saturating_sub(now), a.grant.exp);
                println!("  claims:   {}", serde_json::Value::Object(a.claims));
            }
            Ok(())
        }
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({"accepted": false, "reason": e.to_string()}));
            } else {
                println!("refused: {e}");
                for (source, issuer, keys, failing) in sources {
                    let state = if failing { ", FAILING (last good keys kept)" } else { "" };
                    println!(
                        "  {source}: {keys} keys, issuer {}{state}",
                        issuer.as_deref().unwrap_or("(any)")
                    );
                }
            }
            Err(CliError::Run(anyhow::anyhow!("token refused: {e}")))
        }
    }
}
