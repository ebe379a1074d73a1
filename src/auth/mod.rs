//! Token authentication and symbol entitlements.
//!
//! With `auth.mode = "token"` every WebSocket handshake (and SSE request) must carry a JWT:
//!
//! ```json
//! {"iss": "https://idp.example/", "sub": "alice", "exp": 1732240000, "symbols": ["AAPL", "BTC*"]}
//! ```
//!
//! - `sub`: who the client is (logs, metrics); required.
//! - `exp`: expiry, seconds since the Unix epoch; required; `nbf` is checked when present
//!   (both with `auth.leeway`). A connection whose token expires is closed with 1008
//!   `token expired` unless it sent a fresh one (`{"op":"auth",...}`).
//! - the symbols claim (`symbols`, or the claim `auth.symbols_claim` names): exact names, `*`
//!   (everything) or a prefix pattern ending in `*` (`BTC*`). Anything else in a pattern makes
//!   the token invalid (a typo must not widen access).
//! - `iss` and `aud` are checked when `auth.issuer`/`auth.issuers` and `auth.audience` are set.
//!
//! Keys ([`keys`]) come from an HS256 secret, PEM public keys, JWKS files and JWKS URLs
//! ([`sources`], reloaded without a restart). Each key belongs to one issuer (or to none) and
//! verifies exactly one algorithm. A token is checked against its own issuer's keys only —
//! looked up by (issuer, `kid`), never by `kid` alone — and its header's `alg` must equal the
//! key's: `alg: none`, an HS256 token "signed" with an RSA public key, or any other mismatch is
//! refused before a signature is computed.
//!
//! The token comes in `?token=`, `Authorization: Bearer`, or a `Sec-WebSocket-Protocol`
//! entry `tickgate.token.<JWT>` (browsers cannot set headers). [`mint`] and [`sign`] make
//! tokens for operators and tests (`tickgate token`).

pub mod keys;
pub mod sign;
pub mod sources;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use self::keys::Key;
use self::sources::{Spec, State};

/// Clock skew tolerated on `exp` and `nbf` by [`Verifier::new`], seconds (`auth.leeway`'s
/// default).
pub const LEEWAY_SECS: u64 = 5;

/// Longest token header accepted, bytes (base64url text).
pub const MAX_HEADER_BYTES: usize = 2048;

/// Keys tried for one token without a `kid` (each try is a signature check).
pub const MAX_KEY_TRIES: usize = 4;

/// How long a handshake whose token names an unknown `kid` waits for the JWKS fetch it
/// triggered.
pub const REFETCH_WAIT: Duration = Duration::from_secs(3);

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
    /// Its issuer has no key with its `kid` (a JWKS refetch may have been asked for).
    #[error("unknown key: {0}")]
    UnknownKey(String),
    /// Bad signature, algorithm, encoding or claims.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Counters of key loading and refreshing (`/stats`, `/metrics`).
#[derive(Debug, Default)]
pub struct AuthStats {
    /// Keys loaded now, over all sources.
    pub keys: AtomicU64,
    /// Key files re-read after a change or SIGHUP.
    pub reloads: AtomicU64,
    /// Key files that could not be read or parsed (the last good keys stayed).
    pub reload_errors: AtomicU64,
    /// JWKS fetches.
    pub jwks_fetches: AtomicU64,
    /// JWKS fetches that failed (the last good keys stayed).
    pub jwks_fetch_errors: AtomicU64,
    /// JWKS fetches asked for by tokens with an unknown `kid`.
    pub kid_refetches: AtomicU64,
    /// Unknown `kid`s that could not ask for a fetch (within `auth.jwks_min_refresh`).
    pub kid_refetches_throttled: AtomicU64,
}

/// The checks besides the signature.
#[derive(Clone, Debug)]
struct Rules {
    leeway: u64,
    audience: Vec<String>,
    symbols_claim: String,
}

/// The keys in force, by issuer.
#[derive(Debug, Default)]
struct KeySet {
    /// Keys bound to an issuer, by issuer (every configured issuer has an entry).
    bound: HashMap<String, Vec<Arc<Key>>>,
    /// Keys of sources bound to no issuer, if there are such sources.
    unbound: Option<Vec<Arc<Key>>>,
}

impl KeySet {
    fn build(sources: &[State]) -> KeySet {
        let mut set = KeySet::default();
        for s in sources {
            let bucket = match &s.spec.issuer {
                Some(i) => set.bound.entry(i.clone()).or_default(),
                None => set.unbound.get_or_insert_with(Vec::new),
            };
            bucket.extend(s.keys.iter().cloned());
        }
        set
    }

    /// The issuer's keys: its own if it is a bound issuer, else the unbound keys.
    fn bucket(&self, iss: Option<&str>) -> Option<(Option<&str>, &[Arc<Key>])> {
        if let Some((i, keys)) = iss.and_then(|i| self.bound.get_key_value(i)) {
            return Some((Some(i.as_str()), keys));
        }
        self.unbound.as_deref().map(|k| (None, k))
    }

    fn len(&self) -> usize {
        self.bound.values().map(Vec::len).sum::<usize>() + self.unbound.as_ref().map_or(0, Vec::len)
    }
}

/// A token that verified: its grant, and which key and claims it was accepted with.
#[derive(Debug)]
pub struct Accepted {
    /// What it grants.
    pub grant: Grant,
    /// The key's issuer (`None`: a key bound to no issuer).
    pub issuer: Option<String>,
    /// The key that verified it.
    pub key: Arc<Key>,
    /// All its claims.
    pub claims: Map<String, Value>,
}

/// Verifies tokens against the configured keys, and keeps those keys fresh.
pub struct Verifier {
    rules: Rules,
    keys: RwLock<Arc<KeySet>>,
    sources: Mutex<Vec<State>>,
    refresh: Duration,
    min_refresh: Duration,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    /// Wakes the refresher (an unknown kid, SIGHUP).
    wake: tokio::sync::Notify,
    /// Bumped each time the key set changes (handshakes waiting for a refetch watch it).
    generation: tokio::sync::watch::Sender<u64>,
    /// Counters.
    pub stats: AuthStats,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier({} keys)", self.stats.keys.load(Ordering::Relaxed))
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Verifier {
    /// A verifier for one HS256 `secret`, bound to no issuer, with the default leeway.
    ///
    /// # Errors
    /// A secret shorter than [`MIN_SECRET_BYTES`].
    pub fn new(secret: &[u8]) -> Result<Verifier, String> {
        let key = Arc::new(keys::from_secret(secret, "secret")?);
        let mut state = State::new(Spec {
            issuer: None,
            location: sources::Location::Secret(None),
            key: "auth.secret_file",
        });
        state.keys = vec![key];
        let rules = Rules { leeway: LEEWAY_SECS, audience: Vec::new(), symbols_claim: "symbols".into() };
        Ok(Verifier::with_sources(rules, vec![state], Duration::MAX, Duration::MAX, None))
    }

    fn with_sources(
        rules: Rules,
        states: Vec<State>,
        refresh: Duration,
        min_refresh: Duration,
        tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    ) -> Verifier {
        let set = KeySet::build(&states);
        let stats = AuthStats::default();
        stats.keys.store(set.len() as u64, Ordering::Relaxed);
        Verifier {
            rules,
            keys: RwLock::new(Arc::new(set)),
            sources: Mutex::new(states),
            refresh,
            min_refresh,
            tls,
            wake: tokio::sync::Notify::new(),
            generation: tokio::sync::watch::Sender::new(0),
            stats,
        }
    }

    /// The verifier `auth.*` describes, with every file source read. JWKS URLs are fetched
    /// by [`Verifier::start_refresher`] (or [`Verifier::fetch_now`]).
    ///
    /// # Errors
    /// A source that cannot be read (naming its key), no secret where one is needed, or no
    /// TLS roots for an https:// URL.
    pub fn from_config(c: &crate::config::AuthConfig) -> Result<Verifier, String> {
        let specs = sources::specs(c);
        let https = specs
            .iter()
            .any(|s| matches!(&s.location, sources::Location::JwksUrl(u) if u.starts_with("https:")));
        let tls = if https { Some(sources::client_tls(c.jwks_ca_file.as_deref())?) } else { None };
        let mut states: Vec<State> = specs.into_iter().map(State::new).collect();
        for s in &mut states {
            s.reload_file(true)?;
        }
        let rules = Rules {
            leeway: c.leeway.as_secs(),
            audience: c.audience.clone(),
            symbols_claim: c.symbols_claim.clone(),
        };
        Ok(Verifier::with_sources(rules, states, c.jwks_refresh, c.jwks_min_refresh, tls))
    }

    /// The configured sources and how many keys each holds now: `(source, issuer, keys,
    /// failing)`.
    pub fn sources(&self) -> Vec<(String, Option<String>, usize, bool)> {
        lock(&self.sources)
            .iter()
            .map(|s| (s.spec.location.to_string(), s.spec.issuer.clone(), s.keys.len(), s.failing))
            .collect()
    }

    fn publish(&self, states: &[State]) {
        let set = KeySet::build(states);
        self.stats.keys.store(set.len() as u64, Ordering::Relaxed);
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(set);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Re-reads key files that changed (every file with `force`); logs and counts failures.
    fn poll_files(&self, force: bool) {
        let mut states = lock(&self.sources);
        let mut changed = false;
        for s in states.iter_mut() {
            match s.reload_file(force) {
                Ok(false) => {}
                Ok(true) => {
                    self.stats.reloads.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(source = %s.spec.location, keys = s.keys.len(), "token keys reloaded");
                    changed = true;
                }
                Err(e) => {
                    self.stats.reload_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "token keys not reloaded; the last good keys stay in use");
                }
            }
        }
        if changed {
            self.publish(&states);
        }
    }

    /// Fetches every JWKS URL that is due; logs and counts failures.
    async fn fetch_due(&self) {
        let due: Vec<(usize, String)> = {
            let now = Instant::now();
            lock(&self.sources)
                .iter()
                .enumerate()
                .filter(|(_, s)| s.due(now))
                .filter_map(|(i, s)| s.url().map(|u| (i, u.to_string())))
                .collect()
        };
        for (i, url) in due {
            self.stats.jwks_fetches.fetch_add(1, Ordering::Relaxed);
            let doc = sources::fetch(&url, self.tls.as_ref()).await;
            let mut states = lock(&self.sources);
            let Some(s) = states.get_mut(i) else { continue };
            match s.fetched(doc, Instant::now(), self.refresh, self.min_refresh) {
                Ok(changed) => {
                    tracing::debug!(url = %url, keys = s.keys.len(), changed, "JWKS fetched");
                    if changed {
                        tracing::info!(url = %url, keys = s.keys.len(), "token keys updated from the JWKS");
                    }
                    // Publish even without a change: handshakes waiting on a refetch wake up.
                    self.publish(&states);
                }
                Err(e) => {
                    self.stats.jwks_fetch_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, keys = s.keys.len(), "JWKS fetch failed; the last good keys stay in use");
                    self.publish(&states);
                }
            }
        }
    }

    /// Fetches every JWKS URL now, on a runtime of its own (for `tickgate token --verify`).
    pub fn fetch_now(&self) {
        for s in lock(&self.sources).iter_mut() {
            s.force();
        }
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(self.fetch_due()),
            Err(e) => tracing::error!(error = %e, "no runtime to fetch the JWKS"),
        }
    }

    /// Starts the thread that fetches JWKS URLs (now, then every `auth.jwks_refresh` and on
    /// demand) and re-reads key files when they change. It ends once the verifier is dropped.
    ///
    /// # Errors
    /// The thread could not start.
    pub fn start_refresher(self: &Arc<Self>) -> std::io::Result<()> {
        let weak: Weak<Verifier> = Arc::downgrade(self);
        std::thread::Builder::new().name("tickgate-keys".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "token key refresher: no runtime; keys will not refresh");
                    return;
                }
            };
            rt.block_on(async move {
                while let Some(v) = weak.upgrade() {
                    v.fetch_due().await;
                    v.poll_files(false);
                    let _ = tokio::time::timeout(sources::POLL, v.wake.notified()).await;
                }
            });
        })?;
        Ok(())
    }

    /// SIGHUP: re-reads every key file and fetches every JWKS URL again.
    pub fn reload(&self) {
        self.poll_files(true);
        for s in lock(&self.sources).iter_mut() {
            s.force();
        }
        self.wake.notify_one();
    }

    /// Asks for a JWKS refetch for `issuer`'s URLs, at most once per `auth.jwks_min_refresh`.
    /// `count` says whether a refusal counts as throttled (once per token: the handshake's
    /// [`Verifier::prefetch`] and [`Verifier::check`] both ask).
    fn request_refetch(&self, issuer: Option<&str>, count: bool) -> bool {
        let now = Instant::now();
        let mut asked = false;
        let mut throttled = false;
        for s in lock(&self.sources).iter_mut().filter(|s| s.spec.issuer.as_deref() == issuer) {
            if s.url().is_some() {
                if s.request(now, self.min_refresh) {
                    asked = true;
                } else {
                    throttled = true;
                }
            }
        }
        if asked {
            self.stats.kid_refetches.fetch_add(1, Ordering::Relaxed);
            self.wake.notify_one();
        } else if throttled && count {
            self.stats.kid_refetches_throttled.fetch_add(1, Ordering::Relaxed);
        }
        asked
    }

    /// Before a handshake is checked: when `token` names a `kid` its issuer does not have and
    /// a JWKS refetch may be asked for, asks for one and waits for it (at most
    /// [`REFETCH_WAIT`]), so a freshly rotated key works on its first use. Cheap otherwise: no
    /// signature is checked here.
    pub async fn prefetch(&self, token: &str) {
        let Ok((header, iss)) = peek(token) else { return };
        let Some(kid) = header.kid else { return };
        let issuer = {
            let set = read(&self.keys).clone();
            match set.bucket(iss.as_deref()) {
                Some((_, keys)) if keys.iter().any(|k| k.kid.as_deref() == Some(kid.as_str())) => return,
                Some((issuer, _)) => issuer.map(String::from),
                None => return,
            }
        };
        let mut changed = self.generation.subscribe();
        changed.mark_unchanged();
        if self.request_refetch(issuer.as_deref(), false) {
            let _ = tokio::time::timeout(REFETCH_WAIT, changed.changed()).await;
        }
    }

    /// Checks `token` and returns its grant.
    ///
    /// # Errors
    /// Why the token is refused.
    pub fn verify(&self, token: &str) -> Result<Grant, AuthError> {
        self.check(token).map(|a| a.grant)
    }

    /// Checks `token`: its issuer's keys, the key's algorithm, the signature, `exp`/`nbf`,
    /// `iss`, `aud`, `sub` and the symbols claim.
    ///
    /// # Errors
    /// Why the token is refused.
    pub fn check(&self, token: &str) -> Result<Accepted, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLong);
        }
        let (header, iss) = peek(token)?;
        let set = read(&self.keys).clone();
        let (issuer, keys) = set.bucket(iss.as_deref()).ok_or_else(|| {
            AuthError::Invalid(match &iss {
                Some(i) => format!("issuer {i:?} is not accepted"),
                None => "no iss (issuer) claim, and every key belongs to an issuer".into(),
            })
        })?;
        let candidates: Vec<&Arc<Key>> = match &header.kid {
            Some(kid) => {
                let with_kid: Vec<_> =
                    keys.iter().filter(|k| k.kid.as_deref() == Some(kid.as_str())).collect();
                if with_kid.is_empty() {
                    self.request_refetch(issuer, true);
                    return Err(AuthError::UnknownKey(format!(
                        "no key {kid:?} for issuer {}",
                        issuer.map_or("(any)".into(), |i| format!("{i:?}"))
                    )));
                }
                let algs: Vec<Algorithm> = with_kid.iter().map(|k| k.alg).collect();
                let same: Vec<_> = with_kid.into_iter().filter(|k| k.alg == header.alg).collect();
                if same.is_empty() {
                    return Err(AuthError::Invalid(format!(
                        "alg {:?} is not its key's ({algs:?}): the algorithm comes from the key",
                        header.alg
                    )));
                }
                same
            }
            None => {
                let same: Vec<_> = keys.iter().filter(|k| k.alg == header.alg).collect();
                if same.is_empty() {
                    return Err(AuthError::Invalid(format!(
                        "no key of this issuer verifies alg {:?} (and the token names no kid)",
                        header.alg
                    )));
                }
                same
            }
        };
        let mut last = AuthError::Invalid("bad signature".into());
        for key in candidates.into_iter().take(MAX_KEY_TRIES) {
            let validation = self.validation(key.alg, issuer);
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    let grant = self.grant(&data.claims)?;
                    return Ok(Accepted {
                        grant,
                        issuer: issuer.map(String::from),
                        key: key.clone(),
                        claims: data.claims,
                    });
                }
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => last = refusal(&e),
                Err(e) => return Err(refusal(&e)),
            }
        }
        Err(last)
    }

    fn validation(&self, alg: Algorithm, issuer: Option<&str>) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.rules.leeway;
        v.validate_exp = true;
        v.validate_nbf = true;
        // Whatever is checked must be present: a token without aud (or iss) is not one for us.
        let mut required = vec!["exp", "sub"];
        if let Some(i) = issuer {
            v.set_issuer(&[i]);
            required.push("iss");
        }
        if self.rules.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.rules.audience);
            required.push("aud");
        }
        v.set_required_spec_claims(&required);
        v
    }

    fn grant(&self, claims: &Map<String, Value>) -> Result<Grant, AuthError> {
        let invalid = |m: String| AuthError::Invalid(m);
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
        if sub.is_empty() {
            return Err(invalid("empty sub".into()));
        }
        let exp = claims
            .get("exp")
            .and_then(|e| e.as_u64().or_else(|| e.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)))
            .ok_or_else(|| invalid("exp is not a number of seconds".into()))?;
        let name = &self.rules.symbols_claim;
        let value = claim(claims, name)
            .ok_or_else(|| invalid(format!("no {name:?} claim: the token grants no symbols")))?;
        let patterns: Vec<&str> = match value {
            Value::Array(a) => a
                .iter()
                .map(|v| v.as_str().ok_or_else(|| invalid(format!("{name:?} holds a non-string"))))
                .collect::<Result<_, _>>()?,
            Value::String(s) => s.split_whitespace().collect(),
            _ => return Err(invalid(format!("{name:?} is neither a list nor a string"))),
        };
        let symbols =
            patterns.into_iter().map(Pattern::parse).collect::<Result<Vec<_>, _>>().map_err(invalid)?;
        Ok(Grant { sub: sub.to_string(), exp, symbols })
    }
}

/// A claim by exact name, else by dotted path (`resource_access.tickgate.roles`).
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.get(p)?;
    }
    Some(v)
}

/// The token's header and its unverified `iss` (to pick the issuer's keys).
fn peek(token: &str) -> Result<(Header, Option<String>), AuthError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Invalid("not a JWT (header.payload.signature)".into()));
    };
    if h.len() > MAX_HEADER_BYTES {
        return Err(AuthError::Invalid(format!("header longer than {MAX_HEADER_BYTES} bytes")));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| {
        AuthError::Invalid(match e.kind() {
            ErrorKind::Json(_) => {
                "header: not JSON, or an alg that is not supported (alg none never is)".into()
            }
            _ => format!("header: {e}"),
        })
    })?;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(p.trim_end_matches('='))
        .map_err(|_| AuthError::Invalid("payload is not base64url".into()))?;
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<Value>,
    }
    let iss = serde_json::from_slice::<Iss>(&payload)
        .map_err(|_| AuthError::Invalid("payload is not a JSON object".into()))?
        .iss;
    match iss {
        None => Ok((header, None)),
        Some(Value::String(s)) => Ok((header, Some(s))),
        Some(_) => Err(AuthError::Invalid("iss is not a string".into())),
    }
}

fn refusal(e: &jsonwebtoken::errors::Error) -> AuthError {
    let invalid = |m: &str| AuthError::Invalid(m.into());
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => invalid("not valid yet (nbf)"),
        ErrorKind::InvalidSignature => invalid("bad signature"),
        ErrorKind::InvalidIssuer => invalid("wrong issuer (iss)"),
        ErrorKind::InvalidAudience => invalid("wrong audience (aud)"),
        ErrorKind::MissingRequiredClaim(c) => AuthError::Invalid(format!("missing claim {c}")),
        ErrorKind::InvalidAlgorithm => invalid("algorithm not allowed for the key"),
        ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
            AuthError::Invalid(format!("malformed token: {e}"))
        }
        _ => AuthError::Invalid(e.to_string()),
    }
}

/// Mints an HS256 token for `sub`, entitled to `symbols`, valid until `exp` (Unix seconds).
///
/// # Errors
/// A bad pattern or a short secret.
pub fn mint(secret: &[u8], sub: &str, symbols: &[String], exp: u64) -> Result<String, String> {
    let claims = sign::TokenClaims {
        sub: sub.to_string(),
        symbols: symbols.to_vec(),
        symbols_claim: "symbols".into(),
        exp,
        iss: None,
        aud: None,
    };
    sign::sign(&sign::SigningKey::secret(secret)?, &claims)
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
                    "auth.mode is token: set auth.secret_file or the {} environment variable, or \
                     a public key source (auth.public_key_file, auth.jwks_file, auth.jwks_url, \
                     auth.issuers)",
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
    use jsonwebtoken::EncodingKey;
    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    struct Claims {
        sub: String,
        exp: u64,
        symbols: Vec<String>,
    }

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
