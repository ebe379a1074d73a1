//! Where verification keys come from, and keeping them fresh without a restart.
//!
//! A [`Spec`] is one configured source bound to one issuer (or to none): the HS256 secret, a
//! PEM file, a JWKS file or a JWKS URL. [`Sources`] holds each source's last good keys:
//!
//! - Files are re-read when their modification time or size changes (checked every
//!   [`POLL`]) and on SIGHUP. A file that no longer parses keeps its last good keys, with a log
//!   line and a counted error, until it is fixed.
//! - URLs are fetched at start, every `auth.jwks_refresh`, on SIGHUP, and when a token names a
//!   `kid` its issuer does not have — at most once per `auth.jwks_min_refresh` per URL, so a
//!   flood of made-up `kid`s costs the identity provider one request per that period. A failed
//!   fetch keeps the last good keys and is retried after `jwks_min_refresh`.
//!
//! Fetching is plain hyper over TCP or rustls (system roots plus `auth.jwks_ca_file`), with a
//! [`FETCH_TIMEOUT`] and a [`super::keys::MAX_DOCUMENT_BYTES`] body limit. Redirects are not
//! followed: the URL must name the document itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use super::keys::{self, Key, MAX_DOCUMENT_BYTES};
use crate::config::{AUTH_SECRET_ENV, AuthConfig};

/// How often key files are checked for changes.
pub const POLL: Duration = Duration::from_secs(1);

/// Longest one JWKS fetch may take (connect, TLS, request, body).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where one source's keys are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The HS256 secret: a file, else [`AUTH_SECRET_ENV`].
    Secret(Option<PathBuf>),
    /// A PEM file of public keys.
    Pem(PathBuf),
    /// A JWKS document on disk.
    JwksFile(PathBuf),
    /// A JWKS endpoint.
    JwksUrl(String),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Secret(Some(p)) => write!(f, "secret {}", p.display()),
            Location::Secret(None) => write!(f, "secret ${AUTH_SECRET_ENV}"),
            Location::Pem(p) => write!(f, "PEM {}", p.display()),
            Location::JwksFile(p) => write!(f, "JWKS {}", p.display()),
            Location::JwksUrl(u) => write!(f, "JWKS {u}"),
        }
    }
}

/// One configured source and the issuer its keys belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// `Some(iss)`: the keys verify tokens of this issuer only. `None`: any issuer, or none.
    pub issuer: Option<String>,
    /// Where the keys are.
    pub location: Location,
    /// The configuration key that named it (for error messages).
    pub key: &'static str,
}

/// The sources a configuration names. The secret is one of them when `auth.secret_file` or
/// [`AUTH_SECRET_ENV`] is set, or when nothing else is (then it is required).
pub fn specs(c: &AuthConfig) -> Vec<Spec> {
    let top = (!c.issuer.is_empty()).then(|| c.issuer.clone());
    let mut v = Vec::new();
    let mut add =
        |issuer: &Option<String>, location, key| v.push(Spec { issuer: issuer.clone(), location, key });
    if let Some(p) = &c.public_key_file {
        add(&top, Location::Pem(p.clone()), "auth.public_key_file");
    }
    if let Some(p) = &c.jwks_file {
        add(&top, Location::JwksFile(p.clone()), "auth.jwks_file");
    }
    if !c.jwks_url.is_empty() {
        add(&top, Location::JwksUrl(c.jwks_url.clone()), "auth.jwks_url");
    }
    for e in &c.issuers {
        // Checked by the config (`issuer_entries`): "ISSUER SOURCE".
        let Some((issuer, source)) = e.split_once(char::is_whitespace) else { continue };
        let source = source.trim();
        let location = if source.contains("://") {
            Location::JwksUrl(source.to_string())
        } else if source.to_ascii_lowercase().ends_with(".pem") {
            Location::Pem(PathBuf::from(source))
        } else {
            Location::JwksFile(PathBuf::from(source))
        };
        add(&Some(issuer.to_string()), location, "auth.issuers");
    }
    let env_secret = std::env::var_os(AUTH_SECRET_ENV).is_some();
    if c.secret_file.is_some() || env_secret || v.is_empty() {
        v.push(Spec {
            issuer: top,
            location: Location::Secret(c.secret_file.clone()),
            key: "auth.secret_file",
        });
    }
    v
}

/// One source's state.
#[derive(Debug)]
pub(crate) struct State {
    pub spec: Spec,
    /// The last good keys.
    pub keys: Vec<Arc<Key>>,
    /// A file's (mtime, size) when it was last read.
    stamp: Option<(SystemTime, u64)>,
    /// A URL's next periodic fetch.
    next_fetch: Option<Instant>,
    /// A URL's last fetch triggered by an unknown kid.
    last_triggered: Option<Instant>,
    /// A fetch was asked for (unknown kid, SIGHUP).
    requested: bool,
    /// The last load or fetch failed (for `/stats`).
    pub failing: bool,
}

impl State {
    pub fn new(spec: Spec) -> State {
        State {
            spec,
            keys: Vec::new(),
            stamp: None,
            next_fetch: None,
            last_triggered: None,
            requested: false,
            failing: false,
        }
    }

    /// Whether this is a URL.
    pub fn url(&self) -> Option<&str> {
        match &self.spec.location {
            Location::JwksUrl(u) => Some(u),
            _ => None,
        }
    }

    /// Reads a file source if it changed (or always, with `force`). `Ok(true)` when its keys
    /// were replaced. URLs are not handled here.
    ///
    /// # Errors
    /// Why the file could not be read or parsed (the old keys stay).
    pub fn reload_file(&mut self, force: bool) -> Result<bool, String> {
        let path = match &self.spec.location {
            Location::Secret(Some(p)) | Location::Pem(p) | Location::JwksFile(p) => p.clone(),
            // The environment does not change under a running process: read once.
            Location::Secret(None) if self.keys.is_empty() => {
                let secret = super::load_secret(None)?;
                self.keys = vec![Arc::new(keys::from_secret(&secret, &self.spec.location.to_string())?)];
                return Ok(true);
            }
            Location::Secret(None) | Location::JwksUrl(_) => return Ok(false),
        };
        let stamp = std::fs::metadata(&path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
        // Unchanged (a file that stays missing counts as unchanged: reported once).
        if !force && stamp == self.stamp {
            return Ok(false);
        }
        let what = format!("{} {}", self.spec.key, path.display());
        let result = self.read_file(&path).map_err(|e| format!("{what}: {e}"));
        // Remember the stamp even on failure: a broken file is reported once per change.
        self.stamp = stamp;
        self.failing = result.is_err();
        self.keys = result?;
        Ok(true)
    }

    fn read_file(&self, path: &Path) -> Result<Vec<Arc<Key>>, String> {
        let label = format!("{} {}", self.spec.key, path.display());
        let keys = match &self.spec.location {
            Location::Secret(_) => vec![keys::from_secret(&super::load_secret(Some(path))?, &label)?],
            Location::Pem(_) => {
                let text = read_bounded(path)?;
                keys::from_pem(&String::from_utf8_lossy(&text), &label)?
            }
            Location::JwksFile(_) => self.jwks(&read_bounded(path)?, &label)?,
            Location::JwksUrl(_) => Vec::new(),
        };
        Ok(keys.into_iter().map(Arc::new).collect())
    }

    fn jwks(&self, doc: &[u8], label: &str) -> Result<Vec<Key>, String> {
        let (keys, skipped) = keys::from_jwks(doc, label)?;
        for s in skipped {
            tracing::debug!(source = label, key = %s, "JWKS key skipped");
        }
        if keys.is_empty() {
            return Err("no usable signing key in the JWKS".into());
        }
        Ok(keys)
    }

    /// Whether a URL is due for a fetch at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.url().is_some() && (self.requested || self.next_fetch.is_none_or(|t| now >= t))
    }

    /// Asks for a fetch because a token named an unknown kid: refused (`false`) within
    /// `min_refresh` of the last such fetch.
    pub fn request(&mut self, now: Instant, min_refresh: Duration) -> bool {
        if self.url().is_none() {
            return false;
        }
        if self.requested {
            return true;
        }
        if self.last_triggered.is_some_and(|t| now.duration_since(t) < min_refresh) {
            return false;
        }
        self.last_triggered = Some(now);
        self.requested = true;
        true
    }

    /// Asks for a fetch unconditionally (SIGHUP).
    pub fn force(&mut self) {
        if self.url().is_some() {
            self.requested = true;
        }
    }

    /// Applies a fetch's outcome; `Ok(true)` when the keys were replaced.
    ///
    /// # Errors
    /// Why the fetch failed (the old keys stay; the next try is after `min_refresh`).
    pub fn fetched(
        &mut self,
        doc: Result<Vec<u8>, String>,
        now: Instant,
        refresh: Duration,
        min_refresh: Duration,
    ) -> Result<bool, String> {
        self.requested = false;
        let label = self.spec.location.to_string();
        match doc.and_then(|d| self.jwks(&d, &label)) {
            Ok(keys) => {
                self.next_fetch = Some(now + refresh);
                self.failing = false;
                let changed = keys.len() != self.keys.len()
                    || keys.iter().zip(&self.keys).any(|(a, b)| a.kid != b.kid || a.alg != b.alg);
                self.keys = keys.into_iter().map(Arc::new).collect();
                Ok(changed)
            }
            Err(e) => {
                self.next_fetch = Some(now + min_refresh.min(refresh));
                self.failing = true;
                Err(format!("{} {}: {e}", self.spec.key, label))
            }
        }
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    if data.len() > MAX_DOCUMENT_BYTES {
        return Err(format!("larger than {MAX_DOCUMENT_BYTES} bytes"));
    }
    Ok(data)
}

/// TLS for https:// JWKS URLs: the system's roots plus `ca_file`'s certificates.
///
/// # Errors
/// An unreadable CA file, or no root at all.
pub fn client_tls(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        // A system root rustls cannot parse is skipped, as every TLS client does.
        let _ = roots.add(c);
    }
    if let Some(f) = ca_file {
        let what = |e: String| format!("auth.jwks_ca_file {}: {e}", f.display());
        for c in CertificateDer::pem_file_iter(f).map_err(|e| what(e.to_string()))? {
            roots.add(c.map_err(|e| what(e.to_string()))?).map_err(|e| what(e.to_string()))?;
        }
    }
    if roots.is_empty() {
        return Err("no trusted root certificate for https:// JWKS URLs: install ca-certificates \
                    or set auth.jwks_ca_file"
            .into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// GETs `url` (a JWKS document): status 200, at most [`MAX_DOCUMENT_BYTES`], within
/// [`FETCH_TIMEOUT`].
///
/// # Errors
/// What went wrong, for the log.
pub async fn fetch(url: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Vec<u8>, String> {
    match tokio::time::timeout(FETCH_TIMEOUT, fetch_inner(url, tls)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {FETCH_TIMEOUT:?}")),
    }
}

async fn fetch_inner(url: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Vec<u8>, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let https = uri.scheme_str() == Some("https");
    let host =
        uri.host().ok_or("URL without a host")?.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::ACCEPT, "application/json, application/jwk-set+json")
        .header(hyper::header::USER_AGENT, concat!("tickgate/", env!("CARGO_PKG_VERSION")))
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if https {
        let cfg = tls.ok_or("https:// needs TLS roots")?.clone();
        let name =
            rustls::pki_types::ServerName::try_from(host).map_err(|e| format!("bad host name: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        request(stream, req).await
    } else {
        request(tcp, req).await
    }
}

async fn request<S>(io: S, req: Request<Empty<Bytes>>) -> Result<Vec<u8>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| format!("HTTP: {e}"));
    let result = match resp {
        Ok(r) if r.status() == hyper::StatusCode::OK => Limited::new(r.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .map_err(|e| format!("reading the body: {e}")),
        Ok(r) => Err(format!("HTTP status {}", r.status())),
        Err(e) => Err(e),
    };
    driver.abort();
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn url_state() -> State {
        State::new(Spec {
            issuer: None,
            location: Location::JwksUrl("http://x/".into()),
            key: "auth.jwks_url",
        })
    }

    #[test]
    fn unknown_kid_fetches_are_limited_to_one_per_min_refresh() {
        let mut s = url_state();
        let t0 = Instant::now();
        let min = Duration::from_secs(30);
        assert!(s.due(t0), "never fetched: due");
        let _ = s.fetched(Ok(br#"{"keys":[]}"#.to_vec()), t0, Duration::from_secs(300), min);
        assert!(!s.due(t0));
        assert!(s.request(t0, min), "the first unknown kid asks for a fetch");
        assert!(s.due(t0));
        let _ = s.fetched(Err("down".into()), t0, Duration::from_secs(300), min);
        for i in 1..100 {
            assert!(
                !s.request(t0 + Duration::from_millis(i * 100), min),
                "a flood within min_refresh is refused"
            );
        }
        assert!(s.request(t0 + min, min), "after min_refresh one more is allowed");
        s.requested = false;
        s.force();
        assert!(s.due(t0), "SIGHUP forces a fetch");
    }

    #[test]
    fn a_file_that_breaks_or_disappears_is_reported_once_and_keeps_its_keys() {
        let dir = std::env::temp_dir().join(format!("tickgate-sources-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("jwks.json");
        let doc = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        std::fs::write(&file, doc).unwrap();
        let mut s = State::new(Spec {
            issuer: None,
            location: Location::JwksFile(file.clone()),
            key: "auth.jwks_file",
        });
        assert_eq!(s.reload_file(true), Ok(true));
        assert_eq!(s.reload_file(false), Ok(false), "unchanged: not read again");
        std::fs::remove_file(&file).unwrap();
        assert!(s.reload_file(false).unwrap_err().contains("auth.jwks_file"));
        assert_eq!(s.reload_file(false), Ok(false), "still missing: reported once");
        assert_eq!(s.keys.len(), 1, "the last good keys stay");
        std::fs::write(&file, "{not json").unwrap();
        assert!(s.reload_file(false).is_err());
        assert_eq!(s.keys.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_fetch_keeps_the_last_good_keys() {
        let mut s = url_state();
        let t = Instant::now();
        let doc = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        let (r, m) = (Duration::from_secs(300), Duration::from_secs(30));
        assert_eq!(s.fetched(Ok(doc.to_vec()), t, r, m), Ok(true));
        assert_eq!(s.fetched(Ok(doc.to_vec()), t, r, m), Ok(false), "same keys: no change");
        assert!(s.fetched(Err("connection refused".into()), t, r, m).is_err());
        assert_eq!(s.keys.len(), 1);
        assert!(s.failing);
        assert!(s.fetched(Ok(b"<html>".to_vec()), t, r, m).is_err(), "a broken document is a failure too");
        assert_eq!(s.keys.len(), 1);
        assert!(!s.due(t) && s.due(t + m), "retried after min_refresh");
    }
}
