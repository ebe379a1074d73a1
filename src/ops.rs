//! The operator commands' client side: `tickgate stats` (a top-like view of `/stats`,
//! [`show_stats`]) and `tickgate tune` (`POST /config` on the admin listener, [`tune`]).
//!
//! The HTTP client is hyper's HTTP/1.1 connection over a plain `TcpStream` (the gateway speaks
//! plain HTTP on loopback or a private network; put TLS in front for anything else). The view
//! is a pure function of two `/stats` samples, so it is tested without a gateway.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Timeout for one request from the CLI.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// A parsed `http://host:port/path` base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `host:port`.
    pub authority: String,
}

impl Target {
    /// Parses `http://HOST:PORT[/]` (or `HOST:PORT`).
    ///
    /// # Errors
    /// For https or anything that is not host:port.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        if url.starts_with("https://") {
            bail!("{url}: https is not supported here; point at the gateway's plain HTTP port");
        }
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let authority = rest.split('/').next().unwrap_or("").to_string();
        if !authority.contains(':') {
            bail!("{url}: expected http://HOST:PORT");
        }
        Ok(Target { authority })
    }
}

/// Sends one request; returns (status, body).
///
/// # Errors
/// Connection refused, timeout, or a malformed response, with the address in the message.
pub async fn request(
    target: &Target,
    method: &str,
    path: &str,
    body: Option<String>,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let fut = async {
        let stream = tokio::net::TcpStream::connect(&target.authority)
            .await
            .with_context(|| format!("cannot reach tickgate at {}", target.authority))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake failed")?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &target.authority)
            .header("content-type", "text/plain");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let resp = sender.send_request(req).await.context("request failed")?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.context("reading the response")?.to_bytes();
        Ok::<_, anyhow::Error>((status, String::from_utf8_lossy(&bytes).into_owned()))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow!("no answer from {} within {REQUEST_TIMEOUT:?}", target.authority))?
}

/// `GET /stats`, parsed.
///
/// # Errors
/// As [`request`], or a non-200 status / non-JSON body.
pub async fn fetch_stats(target: &Target) -> anyhow::Result<Value> {
    let (status, body) = request(target, "GET", "/stats", None, None).await?;
    if status != 200 {
        bail!("{} answered {status} to /stats: {}", target.authority, body.trim());
    }
    serde_json::from_str(&body).context("/stats did not return JSON")
}

/// The `tickgate stats` loop: renders a view from two samples a second apart and hands it
/// to `show`, once, or every second forever with `watch`.
///
/// # Errors
/// As [`fetch_stats`], with a hint to start the gateway or pass `--url`.
pub async fn show_stats(
    target: &Target,
    url: &str,
    watch: bool,
    mut show: impl FnMut(&str),
) -> anyhow::Result<()> {
    let mut prev: Option<(Value, std::time::Instant)> = None;
    loop {
        let now = fetch_stats(target).await.map_err(|e| {
            anyhow!("{e:#}\n(is the gateway running? start it with `tickgate serve`, or pass --url)")
        })?;
        let at = std::time::Instant::now();
        if prev.is_none() && !watch {
            // One frame with rates: take a second sample a second later.
            prev = Some((now, at));
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let secs = prev.as_ref().map_or(0.0, |(_, t)| at.duration_since(*t).as_secs_f64());
        show(&render_view(url, &now, prev.as_ref().map(|(v, _)| v), secs));
        if !watch {
            return Ok(());
        }
        prev = Some((now, at));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One change `tickgate tune` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed {
    /// The key.
    pub key: String,
    /// Its value before, as TOML.
    pub old: String,
    /// Its value after.
    pub new: String,
}

/// `POST /config` with `pairs` (`KEY=VALUE` lines): the changes applied, or the refusal as
/// the gateway stated it (`key: reason`, or the status and body of an unexpected answer).
///
/// # Errors
/// As [`request`].
pub async fn tune(
    target: &Target,
    pairs: &[String],
    token: Option<&str>,
) -> anyhow::Result<Result<Vec<Changed>, String>> {
    let (status, text) = request(target, "POST", "/config", Some(pairs.join("\n")), token).await?;
    Ok(interpret_tune(&target.authority, status, &text))
}

/// Reads the admin listener's answer to `POST /config`.
pub fn interpret_tune(admin: &str, status: u16, body: &str) -> Result<Vec<Changed>, String> {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().unwrap_or("?").to_string();
    if status == 200 {
        return Ok(v["changed"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| Changed { key: text(&c["key"]), old: text(&c["old"]), new: text(&c["new"]) })
            .collect());
    }
    Err(match (v["key"].as_str(), v["error"].as_str()) {
        (Some(k), Some(e)) => format!("refused: {k}: {e}"),
        (None, Some(e)) => format!("refused: {e}"),
        _ => format!("{admin} answered {status}: {}", body.trim()),
    })
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

fn rate(now: &Value, prev: Option<&Value>, k: &str, secs: f64) -> f64 {
    match prev {
        Some(p) if secs > 0.0 => (num(now, k) - num(p, k)).max(0.0) / secs,
        _ => 0.0,
    }
}

fn human(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.1}G", n / 1e9),
        n if n >= 1e6 => format!("{:.1}M", n / 1e6),
        n if n >= 1e4 => format!("{:.1}k", n / 1e3),
        n => format!("{n:.0}"),
    }
}

fn us(v: f64) -> String {
    if v >= 10_000.0 { format!("{:.1}ms", v / 1000.0) } else { format!("{v:.0}µs") }
}

/// Renders the `top`-like view from the current `/stats` sample and the previous one taken
/// `secs` earlier (rates need two samples; the first frame shows totals only).
pub fn render_view(url: &str, now: &Value, prev: Option<&Value>, secs: f64) -> String {
    let mut out = String::new();
    let feed_rate = rate(now, prev, "feed_ticks", secs);
    let updates: f64 = rate(now, prev, "delivered", secs);
    let conflated = rate(now, prev, "conflated", secs);
    let conflation = if updates + conflated > 0.0 { 100.0 * conflated / (updates + conflated) } else { 0.0 };
    out.push_str(&format!(
        "tickgate {url}   connections {}/{}   feed {}/s (target {}/s){}   updates {}/s   conflation {:.1}%   overruns {}\n",
        now["connections"].as_u64().unwrap_or(0),
        now["max_connections"].as_u64().unwrap_or(0),
        human(feed_rate),
        human(num(now, "feed_rate_target")),
        if now["feed_ended"].as_bool().unwrap_or(false) { " ENDED" } else { "" },
        human(updates),
        conflation,
        now["overruns"].as_u64().unwrap_or(0),
    ));
    out.push_str(&format!(
        "{:>5} {:>8} {:>8} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8}\n",
        "shard",
        "clients",
        "subs",
        "updates/s",
        "MB/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "confl%",
        "ring lag",
        "blocked"
    ));
    let empty = Vec::new();
    let shards = now["shards"].as_array().unwrap_or(&empty);
    for (i, s) in shards.iter().enumerate() {
        let p = prev.and_then(|p| p["shards"].get(i));
        let d = rate(s, p, "delivered", secs);
        let c = rate(s, p, "conflated", secs);
        // The last stats window (current), falling back to since-start before the first one.
        let lat = if s["latency_window"]["count"].as_u64().unwrap_or(0) > 0 {
            &s["latency_window"]
        } else {
            &s["latency"]
        };
        out.push_str(&format!(
            "{:>5} {:>8} {:>8} {:>10} {:>9.2} {:>8} {:>8} {:>8} {:>8} {:>6.1}% {:>8} {:>8}\n",
            s["id"].as_u64().unwrap_or(i as u64),
            s["clients"].as_u64().unwrap_or(0),
            s["subscriptions"].as_u64().unwrap_or(0),
            human(d),
            rate(s, p, "bytes_written", secs) / 1e6,
            us(num(lat, "p50_us")),
            us(num(lat, "p99_us")),
            us(num(lat, "p999_us")),
            us(num(lat, "max_us")),
            if d + c > 0.0 { 100.0 * c / (d + c) } else { 0.0 },
            s["ring_lag"].as_u64().unwrap_or(0),
            s["blocked_clients"].as_u64().unwrap_or(0),
        ));
    }
    if let Some(top) = now["top_symbols"].as_array().filter(|t| !t.is_empty()) {
        let list: Vec<String> = top
            .iter()
            .take(8)
            .map(|t| format!("{} {}", t["symbol"].as_str().unwrap_or("?"), human(num(t, "updates"))))
            .collect();
        out.push_str(&format!("top symbols (updates sent): {}\n", list.join(", ")));
    }
    if let Some(top) = now["top_clients"].as_array().filter(|t| !t.is_empty()) {
        out.push_str("top clients (bytes sent): ");
        let list: Vec<String> = top
            .iter()
            .take(8)
            .map(|t| {
                let cap = num(t, "max_bandwidth");
                let cap = if cap > 0.0 { format!(" (cap {}B/s)", human(cap)) } else { String::new() };
                format!("{} {}B{cap}", t["peer"].as_str().unwrap_or("?"), human(num(t, "bytes")))
            })
            .collect();
        out.push_str(&list.join(", "));
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tune_answers_are_read_as_changes_or_a_refusal() {
        let ok = r#"{"changed":[{"key":"feed.rate","old":"20000","new":"5"}]}"#;
        assert_eq!(
            interpret_tune("a:1", 200, ok),
            Ok(vec![Changed { key: "feed.rate".into(), old: "20000".into(), new: "5".into() }])
        );
        let refused = r#"{"key":"server.listen","error":"needs a restart"}"#;
        assert_eq!(
            interpret_tune("a:1", 400, refused),
            Err("refused: server.listen: needs a restart".into())
        );
        assert_eq!(interpret_tune("a:1", 400, r#"{"error":"bad body"}"#), Err("refused: bad body".into()));
        assert_eq!(interpret_tune("a:1", 401, "no token\n"), Err("a:1 answered 401: no token".into()));
    }

    #[test]
    fn urls_parse() {
        assert_eq!(Target::parse("http://127.0.0.1:9000").unwrap().authority, "127.0.0.1:9000");
        assert_eq!(Target::parse("127.0.0.1:9001/").unwrap().authority, "127.0.0.1:9001");
        assert!(Target::parse("https://x:1").is_err());
        assert!(Target::parse("http://nohost").is_err());
    }

    #[test]
    fn view_shows_rates_latency_and_conflation_per_shard() {
        let prev: Value = serde_json::from_str(
            r#"{"connections":2,"max_connections":100,"feed_ticks":1000,"delivered":500,"conflated":0,
               "overruns":0,"feed_rate_target":20000,"shards":[{"id":0,"clients":2,"subscriptions":20,
               "delivered":500,"conflated":0,"bytes_written":1000,"ring_lag":0,"blocked_clients":0,
               "latency":{"p50_us":100,"p99_us":900,"p999_us":2000,"max_us":30000}}]}"#,
        )
        .unwrap();
        let mut now = prev.clone();
        now["feed_ticks"] = 21_000.into();
        now["delivered"] = 10_500.into();
        now["conflated"] = 2_500.into();
        now["shards"][0]["delivered"] = 10_500.into();
        now["shards"][0]["conflated"] = 2_500.into();
        now["shards"][0]["bytes_written"] = 2_001_000.into();
        now["top_symbols"] = serde_json::json!([{"symbol":"SPY","updates":9000}]);
        now["top_clients"] = serde_json::json!([
            {"peer":"10.0.0.7:5123","shard":0,"bytes":2_500_000,"max_bandwidth":20_000},
            {"peer":"10.0.0.8:6000","shard":0,"bytes":1_000,"max_bandwidth":0}
        ]);
        let v = render_view("http://x:1", &now, Some(&prev), 1.0);
        assert!(v.contains("10.0.0.7:5123 2.5MB (cap 20.0kB/s)"), "{v}");
        assert!(v.contains("10.0.0.8:6000 1000B") && !v.contains("1000B (cap"), "{v}");
        assert!(v.contains("feed 20.0k/s"), "{v}");
        assert!(v.contains("updates 10.0k/s"), "{v}");
        assert!(v.contains("conflation 20.0%"), "{v}");
        assert!(v.contains("900µs") && v.contains("30.0ms"), "{v}");
        assert!(v.contains("2.00"), "MB/s: {v}");
        assert!(v.contains("SPY 9000"), "{v}");
        // First frame: no rates yet, no panic.
        assert!(render_view("u", &now, None, 0.0).contains("updates 0/s"));
    }
}
