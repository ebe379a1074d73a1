//! Token authentication and symbol entitlements.
//!
//! With `auth.mode = "token"` every WebSocket handshake must carry an HS256 JWT:
//!
//! ```json
//! {"sub": "alice", "exp": 1732240000, "symbols": ["AAPL", "MSFT", "BTC*"]}
//! ```
//!
//! - `sub`: who the client is (logs, metrics); required.
//! - `exp`: expiry, seconds since the Unix epoch; required. A connection whose token expires
//!   is closed with 1008 `token expired` unless it sent a fresh one (`{"op":"auth",...}`).
//! - `symbols`: what the client is entitled to: exact names, `*` (everything) or a prefix
//!   pattern ending in `*` (`BTC*`); required. Anything else in a pattern makes the token
//!   invalid (a typo must not widen access).
//!
//! The token comes in `?token=`, `Authorization: Bearer`, or a `Sec-WebSocket-Protocol`
//! entry `tickgate.token.<JWT>` (browsers cannot set headers). [`Verifier`] checks the
//! signature, algorithm, `exp` (with [`LEEWAY_SECS`]) and shape; [`mint`] makes tokens for
//! operators and tests (`tickgate token`).

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Clock skew tolerated on `exp`, seconds.
pub const LEEWAY_SECS: u64 = 5;

/// Shortest secret accepted, bytes (HS256 wants at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;

/// Longest token accepted, bytes (bounds work on hostile input).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Subprotocol prefix that carries a token.
pub const TOKEN_SUBPROTOCOL: &str = "tickgate.token.";

/// One entitlement pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Every symbol (`*`).
    Any,
    /// Symbols starting with this (`BTC*`).
    Prefix(String),
    /// Exactly this symbol.
    Exact(String),
}

impl Pattern {
    /// Parses `*`, `PREFIX*` or `NAME`.
    ///
    /// # Errors
    /// An empty pattern, or `*` anywhere but at the end.
    pub fn parse(p: &str) -> Result<Pattern, String> {
        match p.find('*') {
            _ if p.is_empty() => Err("empty symbol pattern".into()),
            None => Ok(Pattern::Exact(p.to_string())),
            Some(i) if i + 1 == p.len() => {
                Ok(if i == 0 { Pattern::Any } else { Pattern::Prefix(p[..i].to_string()) })
            }
            Some(_) => Err(format!("symbol pattern {p:?}: `*` may only end a pattern")),
        }
    }

    fn allows(&self, symbol: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Prefix(p) => symbol.starts_with(p.as_str()),
            Pattern::Exact(s) => s == symbol,
        }
    }
}

/// What a verified token grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The token's subject.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Entitlement patterns.
    pub symbols: Vec<Pattern>,
}

impl Grant {
    /// Whether the grant covers `symbol`.
    pub fn allows(&self, symbol: &str) -> bool {
        self.symbols.iter().any(|p| p.allows(symbol))
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    symbols: Vec<String>,
}

/// Why a token was refused (the reason goes into the 401 body or the error reply).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token in the request.
    #[error("missing token: send ?token=, Authorization: Bearer, or subprotocol tickgate.token.<JWT>")]
    Missing,
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("token too long")]
    TooLong,
    /// Expired (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// Bad signature, algorithm, encoding or claims.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Verifies tokens with one HS256 secret.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(HS256)")
    }
}

impl Verifier {
    /// A verifier for `secret`.
    ///
    /// # Errors
    /// A secret shorter than [`MIN_SECRET_BYTES`].
    pub fn new(secret: &[u8]) -> Result<Verifier, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!("the token secret must be at least {MIN_SECRET_BYTES} bytes"));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_exp = true;
        Ok(Verifier { key: DecodingKey::from_secret(secret), validation })
    }

    /// Checks `token` and returns its grant.
    ///
    /// # Errors
    /// Why the token is refused.
    pub fn verify(&self, token: &str) -> Result<Grant, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLong);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e
            .kind()
        {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid(e.to_string()),
        })?;
        let c = data.claims;
        if c.sub.is_empty() {
            return Err(AuthError::Invalid("empty sub".into()));
        }
        let symbols = c
            .symbols
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(AuthError::Invalid)?;
        Ok(Grant { sub: c.sub, exp: c.exp, symbols })
    }
}

/// Mints an HS256 token for `sub`, entitled to `symbols`, valid until `exp` (Unix seconds).
///
/// # Errors
/// A bad pattern or a short secret.
pub fn mint(secret: &[u8], sub: &str, symbols: &[String], exp: u64) -> Result<String, String> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!("the token secret must be at least {MIN_SECRET_BYTES} bytes"));
    }
    for p in symbols {
        Pattern::parse(p)?;
    }
    let claims = Claims { sub: sub.to_string(), exp, symbols: symbols.to_vec() };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret))
        .map_err(|e| e.to_string())
}

/// Reads the secret from `file` (trailing newline trimmed) or, without a file, from the
/// environment variable [`crate::config::AUTH_SECRET_ENV`].
///
/// # Errors
/// An unreadable file, or neither source.
pub fn load_secret(file: Option<&Path>) -> Result<Vec<u8>, String> {
    let raw = match file {
        Some(f) => std::fs::read(f).map_err(|e| format!("auth.secret_file {}: {e}", f.display()))?,
        None => std::env::var(crate::config::AUTH_SECRET_ENV)
            .map_err(|_| {
                format!(
                    "auth.mode is token: set auth.secret_file or the {} environment variable",
                    crate::config::AUTH_SECRET_ENV
                )
            })?
            .into_bytes(),
    };
    let mut s = raw;
    while s.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        s.pop();
    }
    Ok(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        crate::clock::now_ns() / 1_000_000_000
    }

    #[test]
    fn minted_tokens_verify_and_grant_their_patterns() {
        let v = Verifier::new(SECRET).unwrap();
        let t = mint(SECRET, "alice", &["AAPL".into(), "BTC*".into()], now() + 60).unwrap();
        let g = v.verify(&t).unwrap();
        assert_eq!(g.sub, "alice");
        assert!(g.allows("AAPL") && g.allows("BTCUSDT") && g.allows("BTC"));
        assert!(!g.allows("AAP") && !g.allows("AAPLX") && !g.allows("ETHBTC"));
        let all = v.verify(&mint(SECRET, "ops", &["*".into()], now() + 60).unwrap()).unwrap();
        assert!(all.allows("ANYTHING"));
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
        let v = Verifier::new(SECRET).unwrap();
        let expired = mint(SECRET, "a", &["*".into()], now() - 60).unwrap();
        assert_eq!(v.verify(&expired), Err(AuthError::Expired));
        let other = mint(b"another secret that is long enough!!", "a", &["*".into()], now() + 60).unwrap();
        assert!(matches!(v.verify(&other), Err(AuthError::Invalid(_))));
        assert!(matches!(v.verify("not.a.jwt"), Err(AuthError::Invalid(_))));
        assert!(matches!(v.verify(&"x".repeat(MAX_TOKEN_BYTES + 1)), Err(AuthError::TooLong)));
        // A token signed with "none" or another algorithm is refused.
        let none = format!(
            "{}.{}.",
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0",
            "eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5LCJzeW1ib2xzIjpbIioiXX0"
        );
        assert!(matches!(v.verify(&none), Err(AuthError::Invalid(_))));
        // A pattern with `*` inside is invalid, not silently widened.
        let sneaky = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims { sub: "a".into(), exp: now() + 60, symbols: vec!["A*PL".into()] },
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(matches!(v.verify(&sneaky), Err(AuthError::Invalid(m)) if m.contains("A*PL")));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(Verifier::new(b"short").is_err());
        assert!(mint(b"short", "a", &[], 1).is_err());
    }
}
