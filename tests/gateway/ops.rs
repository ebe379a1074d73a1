//! Operators: Prometheus metrics, live tuning through the admin listener and the real
//! `tickgate tune` / `tickgate stats` commands against a running gateway.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// Parses Prometheus/OpenMetrics text strictly enough to catch malformed output: every
/// sample line is `name{labels} value` with a parseable value, belongs to a family declared
/// by `# TYPE`, and the text ends with `# EOF`. Returns sample → value.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut families: Vec<(String, String)> = Vec::new();
    let mut samples = HashMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "exposition must end with # EOF");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            families.push((name.to_string(), kind.to_string()));
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let v: f64 = match value {
            "+Inf" | "inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad name {line:?}");
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "bad labels {line:?}");
        }
        let family = families.last().unwrap_or_else(|| panic!("sample before any TYPE: {line}"));
        let ok = match family.1.as_str() {
            "counter" => name == format!("{}_total", family.0),
            "histogram" => ["_bucket", "_sum", "_count"].iter().any(|s| name == format!("{}{s}", family.0)),
            _ => name == family.0,
        };
        assert!(ok, "{name} does not belong to family {family:?}");
        samples.insert(series.to_string(), v);
    }
    samples
}

async fn get_metrics(addr: SocketAddr) -> HashMap<String, f64> {
    let (status, text) = http_get(addr, "/metrics", "").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.to_ascii_lowercase().contains("content-type: application/openmetrics-text"), "{text}");
    parse_metrics(body(&text))
}

#[tokio::test]
async fn metrics_parse_and_counters_move_with_traffic() {
    let gw = start(&[("feed.rate", "5000"), ("feed.symbols", "10")]);
    let addr = gw.local_addr();
    let before = get_metrics(addr).await;
    let mut c = Client::connect(addr, "").await;
    let sym = gw.app().universe.name(0).to_string();
    c.subscribe(&[&sym], "").await;
    c.send(r#"{"op":"dance"}"#).await;
    let mut n = 0;
    collect(&mut c, &HashMap::new(), Duration::from_millis(1500), |_| n += 1).await;
    assert!(n > 10);
    let after = get_metrics(addr).await;
    let key = |k: &str| k.to_string();
    for k in [
        "tickgate_feed_ticks_total",
        "tickgate_updates_delivered_total{shard=\"0\"}",
        "tickgate_bytes_written_total{shard=\"0\"}",
        "tickgate_writes_total{shard=\"0\"}",
        "tickgate_client_messages_total{shard=\"0\"}",
        "tickgate_client_errors_total{shard=\"0\",code=\"unknown_op\"}",
        "tickgate_snapshots_total{shard=\"0\"}",
        "tickgate_flush_slices_total{shard=\"0\"}",
        "tickgate_flush_slice_nanoseconds_total{shard=\"0\"}",
        "tickgate_flush_visits_total{shard=\"0\"}",
        "tickgate_ready_wait_nanoseconds_total{shard=\"0\"}",
        "tickgate_wakeups_total{shard=\"0\"}",
    ] {
        assert!(after[&key(k)] > before.get(k).copied().unwrap_or(0.0), "{k} did not move");
    }
    assert_eq!(after["tickgate_connections{shard=\"0\"}"], 1.0);
    assert_eq!(after["tickgate_feed_up"], 1.0);
    // The latency histogram: cumulative buckets ending at +Inf == count.
    let count = after["tickgate_delivery_latency_seconds_count{shard=\"0\"}"];
    assert!(count > 0.0);
    let mut buckets: Vec<(f64, f64)> = after
        .iter()
        .filter(|(k, _)| k.starts_with("tickgate_delivery_latency_seconds_bucket"))
        .map(|(k, v)| {
            let le = k.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
            (if le.contains("inf") { f64::INFINITY } else { le.parse().unwrap() }, *v)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "buckets not cumulative: {buckets:?}");
    assert_eq!(buckets.last().map(|b| b.1), Some(count));
    gw.shutdown();
}

/// `/stats` describes the flush loop per shard, and its figures agree with each other and
/// with the counters: one client at ~500 updates/s is flushed about once per update.
#[tokio::test]
async fn stats_show_the_flush_loop() {
    let gw = start(&[("feed.rate", "5000"), ("feed.symbols", "10"), ("server.stats_interval", "1s")]);
    let addr = gw.local_addr();
    let mut c = Client::connect(addr, "").await;
    let sym = gw.app().universe.name(0).to_string();
    c.subscribe(&[&sym], "").await;
    let mut n = 0;
    collect(&mut c, &HashMap::new(), Duration::from_millis(2500), |_| n += 1).await;
    assert!(n > 100, "only {n} updates");
    let s = stats(addr).await;
    let shard = &s["shards"][0];
    let f = &shard["flush"];
    let num = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {v}"));
    assert!(num(f, "window_s") > 0.5, "{f}");
    assert!(num(f, "writes_per_sec") > 50.0, "{f}");
    let upw = num(f, "updates_per_write");
    assert!((0.5..=3.0).contains(&upw), "one light client: about one update per write, got {upw}");
    assert!(num(f, "clients_per_slice") >= 1.0, "{f}");
    assert!(num(f, "slice_us_avg") > 0.0 && num(f, "slice_us_max") >= num(f, "slice_us_avg"), "{f}");
    assert!(num(f, "revisit_ms_max") >= num(f, "revisit_ms_avg"), "{f}");
    assert!(num(f, "revisit_ms_avg") < 50.0, "a lone client waits for nobody: {f}");
    for k in ["slices", "visits", "wakeups", "writes"] {
        assert!(shard[k].as_u64().unwrap_or(0) > 0, "{k} did not move: {shard}");
    }
    assert!(shard["visits"].as_u64() >= shard["slices"].as_u64(), "{shard}");
    gw.shutdown();
}

fn tickgate(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tickgate"));
    cmd.args(args).env_remove("TICKGATE_ADMIN_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Feed ticks/s measured from /stats over `d`.
async fn measured_feed_rate(addr: SocketAddr, d: Duration) -> f64 {
    let a = stats(addr).await["feed_ticks"].as_f64().unwrap();
    let t = std::time::Instant::now();
    tokio::time::sleep(d).await;
    let b = stats(addr).await["feed_ticks"].as_f64().unwrap();
    (b - a) / t.elapsed().as_secs_f64()
}

#[tokio::test]
async fn tune_changes_the_measured_feed_rate_live_and_refuses_restart_keys() {
    let gw = start(&[("feed.rate", "1000")]);
    let addr = gw.local_addr();
    let admin = format!("http://{}", gw.admin_addr().unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = measured_feed_rate(addr, Duration::from_secs(1)).await;
    assert!((800.0..1200.0).contains(&r), "feed at {r}/s before tuning");

    let out = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || tickgate(&["tune", "--admin", &admin, "--set", "feed.rate=5000"], &[])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "feed.rate: 1000 -> 5000");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = measured_feed_rate(addr, Duration::from_secs(1)).await;
    assert!((4000.0..6000.0).contains(&r), "feed at {r}/s after tuning to 5000");

    let out = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || {
            tickgate(&["tune", "--admin", &admin, "--set", "feed.rate=1", "--set", "server.shards=4"], &[])
        }
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.shards") && err.contains("needs a restart"), "{err}");
    assert_eq!(gw.app().live.config().feed.rate, 5000, "all-or-nothing");

    // The admin view shows where each value came from.
    let (_, cfg) = http_get(gw.admin_addr().unwrap(), "/config", "").await;
    assert!(cfg.contains("rate = 5000  # live"), "{cfg}");
    assert!(cfg.contains("shards = 1  # flag"), "{cfg}");
    gw.shutdown();
}

#[tokio::test]
async fn admin_token_is_required_when_configured() {
    let dir = std::env::temp_dir().join(format!("tickgate-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "s3cret\n").unwrap();
    let gw = start(&[("feed.rate", "100"), ("admin.token_file", file.to_str().unwrap())]);
    let admin_addr = gw.admin_addr().unwrap();
    let (status, _) = http_get(admin_addr, "/config", "").await;
    assert_eq!(status, 401);
    let (status, _) = http_get(admin_addr, "/config", "Authorization: Bearer wrong\r\n").await;
    assert_eq!(status, 401);
    let (status, _) = http_get(admin_addr, "/config", "Authorization: Bearer s3cret\r\n").await;
    assert_eq!(status, 200);
    let admin = format!("http://{admin_addr}");
    let (denied, allowed) = tokio::task::spawn_blocking(move || {
        (
            tickgate(&["tune", "--admin", &admin, "--set", "feed.rate=200"], &[]),
            tickgate(
                &["tune", "--admin", &admin, "--set", "feed.rate=200"],
                &[("TICKGATE_ADMIN_TOKEN", "s3cret")],
            ),
        )
    })
    .await
    .unwrap();
    assert_eq!(denied.status.code(), Some(2), "{}", String::from_utf8_lossy(&denied.stderr));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("401"));
    assert!(allowed.status.success(), "{}", String::from_utf8_lossy(&allowed.stderr));
    gw.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn stats_command_shows_the_view_and_says_when_unreachable() {
    let gw = start(&[("feed.rate", "2000")]);
    let url = format!("http://{}", gw.local_addr());
    let mut c = Client::connect(gw.local_addr(), "").await;
    let sym = gw.app().universe.name(0).to_string();
    c.subscribe(&[&sym], "").await;
    let reader = tokio::spawn(async move {
        collect(&mut c, &HashMap::new(), Duration::from_secs(3), |_| {}).await;
    });
    let out = tokio::task::spawn_blocking(move || tickgate(&["stats", "--url", &url], &[])).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("connections 1/") && text.contains("updates/s") && text.contains("p99.9"),
        "{text}"
    );
    assert!(text.contains("top symbols"), "{text}");
    reader.await.unwrap();
    gw.shutdown();
    // Nothing listens there any more.
    let out = tickgate(&["stats", "--url", "http://127.0.0.1:1"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach tickgate at 127.0.0.1:1") && err.contains("is the gateway running"),
        "{err}"
    );
}
