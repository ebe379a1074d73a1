//! Trades as their own messages (never conflated), gap accounting for a client that cannot
//! keep up, and the per-client bandwidth cap: a real gateway, real captures, real sockets.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use tickgate::feeds::universe::parse_fixed;
use tickgate::gateway::Gateway;
use tickgate::protocol::binary;

use crate::common::*;

fn start_replay(spec: &str, extra: &[(&str, &str)]) -> Gateway {
    let mut overrides = vec![("feed.source", spec), ("feed.replay_speed", "max")];
    overrides.extend_from_slice(extra);
    let (cfg, sources) = config(&overrides);
    tickgate::feed::Feed::from_config(&cfg)
        .and_then(|feed| Gateway::start(cfg, sources, feed))
        .unwrap_or_else(|e| panic!("gateway did not start: {e:#}"))
}

fn capture(name: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/binance-2024-08-08").join(name);
    if p.exists() {
        return Some(p);
    }
    eprintln!("SKIPPED: no shared Binance capture at {} (../shared/data)", p.display());
    None
}

/// (trade id, price, size, side) of every `@trade` of `symbol` in the files, in order.
fn capture_trades(paths: &[PathBuf], symbol: &str) -> Vec<(u64, i64, i64, &'static str)> {
    let mut out = Vec::new();
    for p in paths {
        let gz = flate2::read::MultiGzDecoder::new(std::fs::File::open(p).unwrap());
        for line in BufReader::new(gz).lines() {
            let line = line.unwrap();
            let v: Value = serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
            let d = &v["data"];
            if !v["stream"].as_str().is_some_and(|s| s.ends_with("@trade")) || d["s"] != symbol {
                continue;
            }
            let side = if d["m"].as_bool().unwrap() { "sell" } else { "buy" };
            out.push((
                d["t"].as_u64().unwrap(),
                parse_fixed(d["p"].as_str().unwrap()).unwrap(),
                parse_fixed(d["q"].as_str().unwrap()).unwrap(),
                side,
            ));
        }
    }
    out
}

fn fixed(v: &Value) -> i64 {
    parse_fixed(&v.to_string()).unwrap_or_else(|| panic!("not an exact decimal: {v}"))
}

/// Reads `c` until the feed has ended and nothing arrived for a second; every JSON message
/// (batches flattened) and every binary record goes to `each`.
async fn drain_until_quiet(g: &Gateway, c: &mut Client, mut each: impl FnMut(Msg)) {
    let mut ended = false;
    loop {
        match c.next_within(Duration::from_secs(1)).await {
            Some(Some(Frame::Json(Value::Array(batch)))) => {
                batch.into_iter().for_each(|v| each(Msg::Json(v)))
            }
            Some(Some(Frame::Json(v))) => each(Msg::Json(v)),
            Some(Some(Frame::Records(r))) => {
                r.into_iter().for_each(|r| each(Msg::Bin(binary::Message::Update(r))))
            }
            Some(Some(Frame::Messages(m))) => m.into_iter().for_each(|m| each(Msg::Bin(m))),
            Some(other) => panic!("unexpected {other:?}"),
            None if ended => return,
            None => ended = stats(g.local_addr()).await["feed_ended"].as_bool().unwrap_or(false),
        }
    }
}

enum Msg {
    Json(Value),
    Bin(binary::Message),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trades_subscriber_gets_every_trade_of_a_real_capture_in_order_while_quotes_conflate() {
    let _exclusive = EXCLUSIVE.lock().await;
    let (Some(a), Some(b), Some(e)) =
        (capture("btcusdt_20240808.gz"), capture("btcusdt_20240809.gz"), capture("ethusdt_20240808.gz"))
    else {
        return;
    };
    let spec = format!("replay:{},{},{}", a.display(), b.display(), e.display());
    let g = start_replay(&spec, &[("server.max_trade_backlog", "1000000")]);
    let mut json = Client::connect(g.local_addr(), "").await;
    let mut bin = Client::connect(g.local_addr(), "format=binary").await;
    json.subscribe(&["BTCUSDT", "ETHUSDT"], r#","trades":true"#).await;
    let ids = bin.subscribe(&["BTCUSDT"], r#","trades":true"#).await;

    let json_reader = async {
        let (mut trades, mut quotes, mut gaps) = (Vec::new(), 0usize, 0usize);
        let mut last_seq: HashMap<String, u64> = HashMap::new();
        drain_until_quiet(&g, &mut json, |m| {
            let Msg::Json(v) = m else { panic!("binary on a JSON connection") };
            match v["type"].as_str().unwrap() {
                "trade" => {
                    let sym = v["symbol"].as_str().unwrap().to_string();
                    let seq = v["seq"].as_u64().unwrap();
                    let prev = last_seq.insert(sym.clone(), seq).unwrap_or(0);
                    assert!(seq > prev, "{sym}: trade seq {seq} after {prev}");
                    if sym == "BTCUSDT" {
                        trades.push((
                            v["trade_id"].as_u64().unwrap(),
                            fixed(&v["price"]),
                            fixed(&v["size"]),
                            v["side"].as_str().unwrap().to_string(),
                        ));
                    }
                }
                "update" => quotes += 1,
                "gap" => gaps += 1,
                other => panic!("unexpected {other}: {v}"),
            }
        })
        .await;
        (trades, quotes, gaps)
    };
    let bin_reader = async {
        let mut trades = Vec::new();
        drain_until_quiet(&g, &mut bin, |m| match m {
            Msg::Bin(binary::Message::Trade(t)) => {
                assert_eq!(t.symbol, ids["BTCUSDT"]);
                trades.push((t.trade_id, t.last, t.last_size, t.side.as_str().unwrap().to_string()));
            }
            Msg::Bin(binary::Message::Gap { missed, .. }) => {
                panic!("a gap of {missed} with an unbounded backlog")
            }
            Msg::Bin(binary::Message::Update(_)) => {}
            Msg::Bin(binary::Message::Book(b)) => panic!("a book without a depth subscription: {b:?}"),
            Msg::Json(v) => panic!("JSON on a binary connection after subscribing: {v}"),
        })
        .await;
        trades
    };
    let ((trades, quotes, gaps), bin_trades) = tokio::join!(json_reader, bin_reader);

    let want = capture_trades(&[a, b], "BTCUSDT");
    assert_eq!(want.len(), 9_757 + 10_147);
    assert!(
        trades.len() > want.len() / 2,
        "only {} of {} trades arrived after subscribing",
        trades.len(),
        want.len()
    );
    let first = want.iter().position(|t| t.0 == trades[0].0).expect("first trade id is in the capture");
    let want: Vec<_> = want[first..].iter().map(|&(id, p, q, s)| (id, p, q, s.to_string())).collect();
    eprintln!(
        "capture: {} of {} BTCUSDT trades after subscribing, {quotes} quote updates",
        trades.len(),
        want.len()
    );
    assert_eq!(gaps, 0, "no gaps with an unbounded backlog");
    assert_eq!(trades.len(), want.len(), "every trade after the subscription, none missing");
    assert!(trades == want, "trades differ from the capture's, in order");
    // The binary client subscribed a moment later: the same trades from its first on.
    let from = want.iter().position(|t| t.0 == bin_trades[0].0).unwrap();
    assert!(bin_trades == want[from..], "binary trades differ from the capture's");
    // Quotes conflate: far fewer updates than the capture's book tickers.
    let s = stats(g.local_addr()).await;
    assert!(quotes < 28_040 + 45_134 + 24_077, "{quotes} quote updates");
    assert!(
        s["shards"][0]["trades_sent"].as_u64().unwrap() >= (trades.len() + bin_trades.len()) as u64,
        "{s}"
    );
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_gets_gaps_that_add_up_with_its_trades_to_the_feeds_total() {
    let _exclusive = EXCLUSIVE.lock().await;
    // Every simulated event a trade, so a symbol's seq is its trade count.
    let g = start(&[
        ("feed.symbols", "4"),
        ("feed.rate", "20000"),
        ("feed.ticks", "60000"),
        ("feed.trade_percent", "100"),
        ("server.max_trade_backlog", "50"),
        ("server.slow_client_timeout", "60s"),
    ]);
    // A small receive buffer and no reading for a while: the client overflows its backlog.
    let mut c = Client::connect_with(g.local_addr(), "format=binary", None, Some(4096)).await.unwrap();
    let all = c.list().await;
    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    assert_eq!(names.len(), 4);
    let ids = c.subscribe(&names, r#","trades":true"#).await;
    let by_id: HashMap<u32, String> = ids.iter().map(|(k, v)| (*v, k.clone())).collect();
    // The snapshots (sent with the reply) say where each symbol's trades start.
    let mut start: HashMap<String, u64> = HashMap::new();
    let mut got: HashMap<String, u64> = HashMap::new();
    let mut missed: HashMap<String, u64> = HashMap::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut stalled = false;
    let t0 = Instant::now();
    let mut ended = false;
    loop {
        if !stalled && !start.is_empty() {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            stalled = true;
        }
        let frame = c.next_within(Duration::from_secs(1)).await;
        let msgs = match frame {
            Some(Some(Frame::Records(r))) => r.into_iter().map(binary::Message::Update).collect(),
            Some(Some(Frame::Messages(m))) => m,
            Some(other) => panic!("unexpected {other:?}"),
            None if ended => break,
            None => {
                ended = stats(g.local_addr()).await["feed_ended"].as_bool().unwrap_or(false);
                continue;
            }
        };
        for m in msgs {
            match m {
                binary::Message::Update(r) if r.snapshot => {
                    start.insert(by_id[&r.tick.symbol].clone(), r.tick.seq);
                }
                binary::Message::Update(_) => {}
                binary::Message::Book(b) => panic!("a book without a depth subscription: {b:?}"),
                binary::Message::Trade(t) => {
                    let sym = &by_id[&t.symbol];
                    let prev = last.insert(sym.clone(), t.seq).unwrap_or(0);
                    assert!(t.seq > prev, "{sym}: trade seq {} after {prev}", t.seq);
                    *got.entry(sym.clone()).or_default() += 1;
                }
                binary::Message::Gap { symbol, missed: n } => {
                    assert!(n > 0);
                    *missed.entry(by_id[&symbol].clone()).or_default() += n;
                }
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "feed did not end");
    }
    let finals = snapshot(g.local_addr(), &names).await;
    let total_missed: u64 = missed.values().sum();
    eprintln!("stalled client: received {got:?}, missed {missed:?}");
    assert!(total_missed > 0, "the stall overflowed nothing: {got:?}");
    for &sym in &names {
        let after_subscribe = finals[sym].tick.seq - start.get(sym).copied().unwrap_or(0);
        let (n, m) = (got.get(sym).copied().unwrap_or(0), missed.get(sym).copied().unwrap_or(0));
        assert_eq!(n + m, after_subscribe, "{sym}: {n} received + {m} missed");
        assert_eq!(last.get(sym).copied(), Some(finals[sym].tick.seq), "{sym} ends on the last trade");
    }
    let s = stats(g.local_addr()).await;
    let shard = &s["shards"][0];
    assert_eq!(shard["trades_missed"].as_u64(), Some(total_missed), "{s}");
    assert!(shard["trade_gaps"].as_u64().unwrap() > 0);
    assert!(shard["trade_backlog"].as_u64().unwrap() <= 4 * 50, "{s}");
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_client_stays_within_its_bandwidth_and_converges_when_the_feed_stops() {
    let _exclusive = EXCLUSIVE.lock().await;
    let g = start(&[
        ("feed.symbols", "200"),
        ("feed.rate", "20000"),
        ("feed.ticks", "120000"),
        ("feed.zipf_exponent", "0"),
        ("server.max_bandwidth_ceiling", "50000"),
    ]);
    let mut c = Client::connect(g.local_addr(), "format=json-batch").await;
    c.send(r#"{"op":"set","max_bandwidth":1000000,"id":7}"#).await;
    let v = c.json().await;
    assert_eq!(
        (v["type"].as_str(), v["id"].as_i64(), v["max_bandwidth"].as_u64()),
        (Some("settings"), Some(7), Some(50_000)),
        "the ceiling applies: {v}"
    );
    const CAP: u64 = 20_000;
    c.send(&format!(r#"{{"op":"set","max_bandwidth":{CAP}}}"#)).await;
    assert_eq!(c.json().await["max_bandwidth"].as_u64(), Some(CAP));
    let all = c.list().await;
    let mine: Vec<&str> = all.iter().take(50).map(String::as_str).collect();
    c.subscribe(&mine, "").await;
    // Bytes received per 1 s window (frame payload + header), after the snapshots.
    let mut windows: Vec<u64> = Vec::new();
    let mut last: HashMap<String, Update> = HashMap::new();
    let t0 = Instant::now();
    let mut window_start = t0;
    let mut bytes = 0u64;
    let mut ended = false;
    loop {
        let frame = match c.next_text_within(Duration::from_secs(1)).await {
            Some(f) => f,
            None if ended => break,
            None => {
                ended = stats(g.local_addr()).await["feed_ended"].as_bool().unwrap_or(false);
                continue;
            }
        };
        let now = Instant::now();
        while now.duration_since(window_start) >= Duration::from_secs(1) {
            windows.push(bytes);
            bytes = 0;
            window_start += Duration::from_secs(1);
        }
        bytes += frame.len() as u64 + if frame.len() < 126 { 2 } else { 4 };
        let v: Value = serde_json::from_slice(&frame).unwrap();
        for u in v.as_array().unwrap().iter().filter_map(json_update) {
            last.insert(u.symbol.clone(), u);
        }
    }
    eprintln!("capped client: bytes per second {windows:?}");
    // The first window holds the snapshots; the feed ran ~6 s.
    let steady = &windows[1..windows.len().saturating_sub(1)];
    assert!(steady.len() >= 3, "{windows:?}");
    for (i, &w) in steady.iter().enumerate() {
        // The cap, 10 ms of carry-over and one message, with slack for where windows fall.
        assert!(w <= CAP + CAP / 10 + 1_500, "window {i}: {w} bytes over a {CAP} B/s cap: {windows:?}");
    }
    assert!(steady.iter().any(|&w| w >= CAP / 2), "the cap was not used: {windows:?}");
    // Within a second of the feed stopping the client holds every latest value.
    let finals = snapshot(g.local_addr(), &mine).await;
    for sym in &mine {
        assert_eq!(last.get(*sym).map(|u| u.tick.seq), Some(finals[*sym].tick.seq), "{sym} did not converge");
    }
    let s = stats(g.local_addr()).await;
    assert!(s["shards"][0]["bandwidth_holds"].as_u64().unwrap() > 0, "{s}");
    let top = &s["top_clients"][0];
    assert_eq!(top["max_bandwidth"].as_u64(), Some(CAP), "{s}");
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_that_was_descheduled_catches_up_without_losing_a_trade() {
    let _exclusive = EXCLUSIVE.lock().await;
    // Every simulated event a trade, so a symbol's seq is its trade count.
    let g = start(&[
        ("feed.symbols", "4"),
        ("feed.rate", "10000"),
        ("feed.ticks", "30000"),
        ("feed.trade_percent", "100"),
        ("server.max_trade_backlog", "1000000"),
        ("server.ring_capacity", "65536"),
    ]);
    let mut c = Client::connect(g.local_addr(), "format=binary").await;
    let all = c.list().await;
    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    let ids = c.subscribe(&names, r#","trades":true"#).await;
    let by_id: HashMap<u32, String> = ids.iter().map(|(k, v)| (*v, k.clone())).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 500 ms at 10,000 ticks/s is ~5,000 ticks: far older than MAX_TICK_AGE when the shard
    // wakes, well within the ring.
    g.stall_shard(0, Duration::from_millis(500));
    let (mut start, mut last, mut gaps) = (HashMap::new(), HashMap::<String, u64>::new(), 0u64);
    drain_until_quiet(&g, &mut c, |m| match m {
        Msg::Bin(binary::Message::Update(r)) if r.snapshot => {
            start.insert(by_id[&r.tick.symbol].clone(), r.tick.seq);
        }
        Msg::Bin(binary::Message::Update(_)) => {}
        Msg::Bin(binary::Message::Trade(t)) => {
            let sym = &by_id[&t.symbol];
            // No snapshot: the symbol had no trade yet, its first is seq 1.
            let prev = last.get(sym).or(start.get(sym)).copied().unwrap_or(0);
            assert_eq!(t.seq, prev + 1, "{sym}: trade seq {} after {prev}", t.seq);
            last.insert(sym.clone(), t.seq);
        }
        Msg::Bin(binary::Message::Gap { missed, .. }) => gaps += missed,
        Msg::Bin(other) => panic!("unexpected {other:?}"),
        Msg::Json(v) => panic!("JSON on a binary connection after subscribing: {v}"),
    })
    .await;
    assert_eq!(gaps, 0, "trades reported missed");
    let finals = snapshot(g.local_addr(), &names).await;
    for &sym in &names {
        assert_eq!(last.get(sym).copied(), Some(finals[sym].tick.seq), "{sym} ends on the last trade");
    }
    let s = stats(g.local_addr()).await;
    assert!(s["catch_ups"].as_u64().unwrap() >= 1, "no catch-up counted: {s}");
    assert_eq!(s["overruns"].as_u64(), Some(0), "{s}");
    g.shutdown();
}
