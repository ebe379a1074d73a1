//! Replayed feeds through a whole gateway: real Binance captures (from `../shared/data`,
//! skipped loudly when absent), the recorded tick fixture, and replay pacing.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Duration;

use tickgate::feeds::tickfile::TickReader;
use tickgate::feeds::universe::parse_fixed;
use tickgate::gateway::Gateway;

use crate::common::*;

fn start_feed(spec: &str, speed: &str) -> Gateway {
    let (cfg, sources) = config(&[("feed.source", spec), ("feed.replay_speed", speed)]);
    tickgate::feed::Feed::from_config(&cfg)
        .and_then(|feed| Gateway::start(cfg, sources, feed))
        .unwrap_or_else(|e| panic!("gateway did not start: {e:#}"))
}

fn shared_captures() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/binance-2024-08-08");
    if d.join("btcusdt_20240808.gz").exists() {
        return Some(d);
    }
    eprintln!(
        "SKIPPED: no shared Binance captures at {} (they live beside the repository in \
         ../shared/data); the real-capture gateway test did not run",
        d.display()
    );
    None
}

/// Last bookTicker bid/ask and last trade price per symbol, by a generic JSON scan.
fn last_values(paths: &[PathBuf]) -> HashMap<String, (String, String, String)> {
    let mut out: HashMap<String, (String, String, String)> = HashMap::new();
    for p in paths {
        let gz = flate2::read::MultiGzDecoder::new(std::fs::File::open(p).unwrap());
        for line in BufReader::new(gz).lines() {
            let line = line.unwrap();
            let v: serde_json::Value = serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
            let Some(stream) = v["stream"].as_str() else { continue };
            let d = &v["data"];
            let e = out.entry(d["s"].as_str().unwrap().to_string()).or_default();
            if stream.ends_with("@bookTicker") {
                e.0 = d["b"].as_str().unwrap().into();
                e.1 = d["a"].as_str().unwrap().into();
            } else if stream.ends_with("@trade") {
                e.2 = d["p"].as_str().unwrap().into();
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_capture_replay_streams_quotes_and_ends_on_the_files_last_values() {
    let _exclusive = EXCLUSIVE.lock().await;
    let Some(dir) = shared_captures() else { return };
    let files = [dir.join("btcusdt_20240808.gz"), dir.join("ethusdt_20240808.gz")];
    let spec = format!("replay:{},{}", files[0].display(), files[1].display());
    let g = start_feed(&spec, "max");
    let mut c = Client::connect(g.local_addr(), "format=binary").await;
    let ids = c.subscribe(&["BTCUSDT", "ETHUSDT"], "").await;
    let names: HashMap<u32, String> = ids.iter().map(|(k, v)| (*v, k.clone())).collect();
    let mut updates = 0;
    let got = collect(&mut c, &names, Duration::from_secs(2), |_| updates += 1).await;
    assert!(updates > 0 && got.contains_key("BTCUSDT"), "no BTCUSDT updates");
    wait_feed_end(g.local_addr()).await;
    let want = last_values(&files);
    let snap = snapshot(g.local_addr(), &["BTCUSDT", "ETHUSDT"]).await;
    for sym in ["BTCUSDT", "ETHUSDT"] {
        let (bid, ask, last) = &want[sym];
        let t = &snap[sym].tick;
        let fixed = |s: &str| parse_fixed(s).unwrap();
        assert_eq!((t.bid, t.ask, t.last), (fixed(bid), fixed(ask), fixed(last)), "{sym}");
    }
    let s = stats(g.local_addr()).await;
    // 9,757 + 6,106 trades and 28,040 + 24,077 quotes in these two files.
    assert_eq!(s["feed_ticks"], 9_757 + 6_106 + 28_040 + 24_077, "{s}");
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorded_fixture_replays_to_its_last_ticks() {
    let _exclusive = EXCLUSIVE.lock().await;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("feeds/fixtures/sim-20k.ticks");
    let mut r = TickReader::open(&path).unwrap();
    let mut last = HashMap::new();
    let mut n = 0u64;
    while let Some(t) = r.next_tick().unwrap() {
        last.insert(t.symbol, t);
        n += 1;
    }
    let universe = r.universe().clone();
    let g = start_feed(&format!("ticks:{}", path.display()), "max");
    wait_feed_end(g.local_addr()).await;
    assert_eq!(stats(g.local_addr()).await["feed_ticks"], n);
    let names: Vec<&str> = last.keys().take(200).map(|&id| universe.name(id)).collect();
    let snap = snapshot(g.local_addr(), &names).await;
    for &name in &names {
        let want = last[&universe.id(name).unwrap()];
        let got = &snap[name].tick;
        assert_eq!(
            (got.seq, got.bid, got.ask, got.last, got.volume, got.ts_event),
            (want.seq, want.bid, want.ask, want.last, want.volume, want.ts_event),
            "{name}"
        );
    }
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_at_speed_one_keeps_the_recorded_spacing() {
    let _exclusive = EXCLUSIVE.lock().await;
    // A synthetic capture: one tick of WARM, then after 400 ms twenty quotes of PACED, 50 ms
    // apart. The client subscribes during the pause and checks the gateway's stamps.
    const GAP_MS: u64 = 50;
    const TOLERANCE_MS: f64 = 5.0;
    let t0 = 1_723_161_254_000_000_000u64;
    let mut lines = vec![format!(
        r#"{t0} {{"stream":"warm@bookTicker","data":{{"u":1,"s":"WARM","b":"1","B":"1","a":"2","A":"1"}}}}"#
    )];
    for i in 0..20u64 {
        let ts = t0 + 400_000_000 + i * GAP_MS * 1_000_000;
        lines.push(format!(
            r#"{ts} {{"stream":"paced@bookTicker","data":{{"u":{i},"s":"PACED","b":"{}.5","B":"1","a":"200","A":"1"}}}}"#,
            100 + i
        ));
    }
    let path = std::env::temp_dir().join(format!("tickgate-paced-{}.txt", std::process::id()));
    std::fs::write(&path, lines.join("\n")).unwrap();
    let g = start_feed(&format!("replay:{}", path.display()), "1");
    let mut c = Client::connect(g.local_addr(), "").await;
    c.subscribe(&["PACED"], "").await;
    let mut stamps = Vec::new();
    collect(&mut c, &HashMap::new(), Duration::from_secs(3), |u| {
        if !u.snapshot {
            stamps.push(u.tick.ts_gateway)
        }
    })
    .await;
    assert_eq!(stamps.len(), 20, "every paced quote arrives (no conflation at 20/s)");
    for w in stamps.windows(2) {
        let gap_ms = (w[1] - w[0]) as f64 / 1e6;
        assert!(
            (gap_ms - GAP_MS as f64).abs() <= TOLERANCE_MS,
            "spacing {gap_ms:.2} ms, recorded {GAP_MS} ms (tolerance ±{TOLERANCE_MS} ms)"
        );
    }
    let total_ms = (stamps[19] - stamps[0]) as f64 / 1e6;
    assert!((total_ms - 950.0).abs() <= TOLERANCE_MS, "19 gaps took {total_ms:.2} ms, recorded 950 ms");
    g.shutdown();
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_feed_sources_fail_to_start_with_the_reason() {
    for (spec, want) in [
        ("replay:/nonexistent/capture.gz", "/nonexistent/capture.gz"),
        ("ticks:/nonexistent/x.ticks", "/nonexistent/x.ticks"),
        (concat!("ticks:", env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"), "not a tickgate tick file"),
    ] {
        let (cfg, sources) = config(&[("feed.source", spec)]);
        let err = match tickgate::feed::Feed::from_config(&cfg)
            .and_then(|feed| Gateway::start(cfg, sources, feed))
        {
            Ok(_) => panic!("{spec} started"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(want), "{spec}: {err}");
    }
}
