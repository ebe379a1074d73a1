//! How a key's text becomes its typed value and back: one [`Kind`] per sort of value (a
//! bounded integer, a duration, an address, ...). The key table pairs each key with its kind,
//! so parsing (flags, environment, file, `tickgate tune`) and rendering (`config print`,
//! `GET /config`) cannot disagree.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::ValueError;

/// One sort of configuration value.
pub trait Kind {
    /// The typed value.
    type Value;
    /// Parses the text of a flag, variable, file entry or live change.
    ///
    /// # Errors
    /// Why the text is refused.
    fn parse(&self, text: &str) -> Result<Self::Value, ValueError>;
    /// Renders the value as TOML (what `parse` reads back to the same value).
    fn render(&self, value: &Self::Value) -> String;
}

/// A TOML basic string (Rust's `{:?}` escapes such as `\0` or `\u{301}` are not TOML).
pub(crate) fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A whole number in `min..=max` (`_` separators allowed: `10_000`).
pub struct Int<T> {
    /// Smallest accepted.
    pub min: T,
    /// Largest accepted.
    pub max: T,
}

impl<T: FromStr + PartialOrd + fmt::Display + Copy> Kind for Int<T> {
    type Value = T;
    fn parse(&self, v: &str) -> Result<T, ValueError> {
        let n: T = v.trim().replace('_', "").parse().map_err(|_| ValueError::NotInteger)?;
        if n < self.min || n > self.max {
            return Err(ValueError::OutOfRange { min: self.min.to_string(), max: self.max.to_string() });
        }
        Ok(n)
    }
    fn render(&self, v: &T) -> String {
        v.to_string()
    }
}

/// A whole number in `0..=max` where 0 means "none" (`feed.ticks`).
pub struct OptionalCount {
    /// Largest accepted.
    pub max: u64,
}

impl Kind for OptionalCount {
    type Value = Option<u64>;
    fn parse(&self, v: &str) -> Result<Option<u64>, ValueError> {
        let n = Int { min: 0, max: self.max }.parse(v)?;
        Ok((n > 0).then_some(n))
    }
    fn render(&self, v: &Option<u64>) -> String {
        v.unwrap_or(0).to_string()
    }
}

/// Another kind with one more rule on the parsed value.
pub struct Checked<K: Kind> {
    /// The underlying kind.
    pub kind: K,
    /// The extra rule.
    pub check: fn(&K::Value) -> Result<(), ValueError>,
}

impl<K: Kind> Kind for Checked<K> {
    type Value = K::Value;
    fn parse(&self, v: &str) -> Result<K::Value, ValueError> {
        let value = self.kind.parse(v)?;
        (self.check)(&value)?;
        Ok(value)
    }
    fn render(&self, v: &K::Value) -> String {
        self.kind.render(v)
    }
}

/// A number in `min..=max`.
pub struct Float {
    /// Smallest accepted.
    pub min: f64,
    /// Largest accepted.
    pub max: f64,
}

impl Kind for Float {
    type Value = f64;
    fn parse(&self, v: &str) -> Result<f64, ValueError> {
        let n: f64 = v.trim().parse().map_err(|_| ValueError::NotNumber)?;
        if !n.is_finite() || n < self.min || n > self.max {
            return Err(ValueError::OutOfRange { min: self.min.to_string(), max: self.max.to_string() });
        }
        Ok(n)
    }
    fn render(&self, v: &f64) -> String {
        format!("{v:?}")
    }
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
pub struct Bool;

impl Kind for Bool {
    type Value = bool;
    fn parse(&self, v: &str) -> Result<bool, ValueError> {
        match v.trim() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ValueError::NotBool),
        }
    }
    fn render(&self, v: &bool) -> String {
        v.to_string()
    }
}

/// A duration of at least `min` and at most a week: `250ms`, `30s`, `2m`, `1h`.
pub struct Dur {
    /// Shortest accepted.
    pub min: Duration,
}

impl Kind for Dur {
    type Value = Duration;
    fn parse(&self, v: &str) -> Result<Duration, ValueError> {
        parse_duration(v, self.min)
    }
    fn render(&self, d: &Duration) -> String {
        let ms = d.as_millis();
        if ms.is_multiple_of(1000) { quote(&format!("{}s", ms / 1000)) } else { quote(&format!("{ms}ms")) }
    }
}

/// Parses `250ms`, `30s`, `2m`, `1h` (a whole number and a unit), at least `min`, at most
/// 7 days.
///
/// # Errors
/// Why the text is not such a duration.
pub fn parse_duration(v: &str, min: Duration) -> Result<Duration, ValueError> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().map_err(|_| ValueError::NotDuration)?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "" => return Err(ValueError::MissingUnit),
        _ => return Err(ValueError::UnknownUnit(unit.to_string())),
    };
    if d < min {
        return Err(ValueError::TooShort(min.as_millis()));
    }
    if d > Duration::from_secs(7 * 24 * 3600) {
        return Err(ValueError::TooLong);
    }
    Ok(d)
}

/// `IP:PORT`.
pub struct Addr;

impl Kind for Addr {
    type Value = SocketAddr;
    fn parse(&self, v: &str) -> Result<SocketAddr, ValueError> {
        v.parse().map_err(|_| ValueError::Expected("IP:PORT, e.g. 127.0.0.1:9000"))
    }
    fn render(&self, v: &SocketAddr) -> String {
        quote(&v.to_string())
    }
}

/// `IP:PORT`, or `off` (also empty) for none.
pub struct AddrOrOff;

impl Kind for AddrOrOff {
    type Value = Option<SocketAddr>;
    fn parse(&self, v: &str) -> Result<Option<SocketAddr>, ValueError> {
        match v {
            "off" | "" => Ok(None),
            a => a.parse().map(Some).map_err(|_| ValueError::Expected("IP:PORT or off")),
        }
    }
    fn render(&self, v: &Option<SocketAddr>) -> String {
        quote(&v.map_or("off".to_string(), |a| a.to_string()))
    }
}

/// A file path; empty for none.
pub struct OptPath;

impl Kind for OptPath {
    type Value = Option<PathBuf>;
    fn parse(&self, v: &str) -> Result<Option<PathBuf>, ValueError> {
        let v = v.trim();
        Ok((!v.is_empty()).then(|| PathBuf::from(v)))
    }
    fn render(&self, v: &Option<PathBuf>) -> String {
        quote(&v.as_ref().map_or(String::new(), |p| p.display().to_string()))
    }
}

/// A value of a type with its own `FromStr` (errors as [`ValueError`]) and `Display` (the text
/// `FromStr` reads back): [`PinCores`](super::PinCores), [`FeedSpec`](super::FeedSpec), ...
pub struct Parsed<T>(pub PhantomData<T>);

impl<T: FromStr<Err = ValueError> + fmt::Display> Kind for Parsed<T> {
    type Value = T;
    fn parse(&self, v: &str) -> Result<T, ValueError> {
        v.parse()
    }
    fn render(&self, v: &T) -> String {
        quote(&v.to_string())
    }
}

/// The replay pace: `max` or a factor of real time.
pub struct ReplaySpeed;

impl Kind for ReplaySpeed {
    type Value = tickgate_feeds::Speed;
    fn parse(&self, v: &str) -> Result<tickgate_feeds::Speed, ValueError> {
        v.parse().map_err(ValueError::Rule)
    }
    fn render(&self, v: &tickgate_feeds::Speed) -> String {
        quote(&match v {
            tickgate_feeds::Speed::Max => "max".to_string(),
            tickgate_feeds::Speed::Factor(f) => f.to_string(),
        })
    }
}

/// A log filter in tracing's `EnvFilter` syntax, checked with [`log_filter`].
pub struct LogFilter;

impl Kind for LogFilter {
    type Value = String;
    fn parse(&self, v: &str) -> Result<String, ValueError> {
        log_filter(v)?;
        Ok(v.to_string())
    }
    fn render(&self, v: &String) -> String {
        quote(v)
    }
}

/// Parses a log filter safely: ASCII only (tracing-subscriber 0.3.23 panics slicing some
/// non-ASCII directives) and without field-value regexes (their automata grow
/// exponentially with the pattern; a 25-byte value took seconds and 100 MB). Both were
/// found by fuzzing `server.log_level`, which is also settable live.
///
/// # Errors
/// Why the filter is refused.
pub fn log_filter(v: &str) -> Result<tracing_subscriber::EnvFilter, ValueError> {
    if !v.is_ascii() || v.len() > 1024 {
        return Err(ValueError::Rule(
            "a log filter is ASCII, at most 1024 bytes (e.g. info, tickgate=debug)".into(),
        ));
    }
    tracing_subscriber::EnvFilter::builder()
        .with_regex(false)
        .parse(v)
        .map_err(|e| ValueError::Rule(format!("not a valid log filter: {e}")))
}

/// A comma-separated list of browser origins (`scheme://host[:port]`, no path), lowercased.
pub struct Origins;

impl Kind for Origins {
    type Value = Vec<String>;
    fn parse(&self, v: &str) -> Result<Vec<String>, ValueError> {
        let mut out = Vec::new();
        for o in v.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let rest = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
            match rest {
                Some(host) if !host.is_empty() && !host.contains('/') => out.push(o.to_ascii_lowercase()),
                _ => {
                    return Err(ValueError::Rule(format!(
                        "{o:?} is not an origin like https://app.example.com (scheme and host, no path)"
                    )));
                }
            }
        }
        Ok(out)
    }
    fn render(&self, v: &Vec<String>) -> String {
        quote(&v.join(","))
    }
}

/// A NATS subject prefix: dot-separated tokens of `A-Z a-z 0-9 _ -`.
pub struct SubjectPrefix;

impl Kind for SubjectPrefix {
    type Value = String;
    fn parse(&self, v: &str) -> Result<String, ValueError> {
        let v = v.trim();
        let ok = !v.is_empty()
            && v.split('.')
                .all(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)));
        if ok {
            Ok(v.to_string())
        } else {
            Err(ValueError::Expected("dot-separated tokens of A-Z a-z 0-9 _ - (e.g. ticks or md.us)"))
        }
    }
    fn render(&self, v: &String) -> String {
        quote(v)
    }
}

/// A JetStream stream name: 1-64 characters of `A-Z a-z 0-9 _ -`.
pub struct StreamName;

impl Kind for StreamName {
    type Value = String;
    fn parse(&self, v: &str) -> Result<String, ValueError> {
        let v = v.trim();
        if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
        {
            return Err(ValueError::Expected("1-64 characters of A-Z a-z 0-9 _ -"));
        }
        Ok(v.to_string())
    }
    fn render(&self, v: &String) -> String {
        quote(v)
    }
}

/// `server.send_buffer_bytes`: 0 (the OS default) or at least 4096.
pub fn zero_or_4096(v: &usize) -> Result<(), ValueError> {
    if *v != 0 && *v < 4096 {
        return Err(ValueError::Rule("must be 0 (OS default) or at least 4096".into()));
    }
    Ok(())
}

/// `server.ring_capacity`: a power of two.
pub fn power_of_two(v: &usize) -> Result<(), ValueError> {
    if !v.is_power_of_two() {
        return Err(ValueError::Rule("must be a power of two".into()));
    }
    Ok(())
}

/// A comma-separated list of non-empty strings (a TOML array is joined with commas first), each
/// trimmed.
pub struct List;

impl Kind for List {
    type Value = Vec<String>;
    fn parse(&self, v: &str) -> Result<Vec<String>, ValueError> {
        Ok(v.split(',').map(str::trim).filter(|e| !e.is_empty()).map(String::from).collect())
    }
    fn render(&self, v: &Vec<String>) -> String {
        quote(&v.join(","))
    }
}

/// Free text of at most `max` bytes, without control characters; trimmed.
pub struct Text {
    /// Longest accepted, bytes.
    pub max: usize,
}

impl Kind for Text {
    type Value = String;
    fn parse(&self, v: &str) -> Result<String, ValueError> {
        let v = v.trim();
        if v.len() > self.max || v.chars().any(char::is_control) {
            return Err(ValueError::Rule(format!("at most {} bytes, without control characters", self.max)));
        }
        Ok(v.to_string())
    }
    fn render(&self, v: &String) -> String {
        quote(v)
    }
}

/// An `http://` or `https://` URL with a host, or empty for none.
pub struct OptUrl;

impl Kind for OptUrl {
    type Value = String;
    fn parse(&self, v: &str) -> Result<String, ValueError> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(String::new());
        }
        check_url(v)?;
        Ok(v.to_string())
    }
    fn render(&self, v: &String) -> String {
        quote(v)
    }
}

/// Whether `v` is an `http://` or `https://` URL with a host.
///
/// # Errors
/// What is wrong with it.
pub fn check_url(v: &str) -> Result<(), ValueError> {
    let bad = || ValueError::Rule(format!("{v:?} is not an http:// or https:// URL with a host"));
    let uri: hyper::Uri = v.parse().map_err(|_| bad())?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(()),
        _ => Err(bad()),
    }
}

/// `auth.issuers`: each entry is `ISSUER SOURCE` (a JWKS URL, a `.pem` file or a JWKS file).
#[allow(clippy::ptr_arg)] // the signature `Checked` wants: fn(&Kind::Value)
pub fn issuer_entries(v: &Vec<String>) -> Result<(), ValueError> {
    for e in v {
        let Some((issuer, source)) = e.split_once(char::is_whitespace) else {
            return Err(ValueError::Rule(format!(
                "{e:?}: expected \"ISSUER SOURCE\" (SOURCE: a JWKS URL, a .pem file or a JWKS file)"
            )));
        };
        let source = source.trim();
        if issuer.is_empty() || source.is_empty() {
            return Err(ValueError::Rule(format!("{e:?}: expected \"ISSUER SOURCE\"")));
        }
        if source.contains("://") {
            check_url(source).map_err(|r| ValueError::Rule(format!("{e:?}: {r}")))?;
        }
    }
    Ok(())
}

/// `server.trusted_proxies`: each entry an address or CIDR block.
#[allow(clippy::ptr_arg)] // the signature `Checked` wants: fn(&Kind::Value)
pub fn cidr_entries(v: &Vec<String>) -> Result<(), ValueError> {
    crate::server::client_ip::TrustedProxies::parse(v).map(|_| ()).map_err(ValueError::Rule)
}
