//! Level-2 order books through a whole gateway: real Binance captures replayed to the end and
//! checked against books built independently here from the same files, a capture with a diff
//! removed (one break, a stale book), and a stalled client subscribed at depth.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tickgate::feeds::universe::parse_fixed;
use tickgate::gateway::Gateway;
use tickgate::protocol::binary;

use crate::common::*;

fn start_replay(files: &[PathBuf]) -> Gateway {
    let spec =
        format!("replay:{}", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(","));
    let (cfg, sources) = config(&[("feed.source", &spec), ("feed.replay_speed", "max")]);
    tickgate::feed::Feed::from_config(&cfg)
        .and_then(|feed| Gateway::start(cfg, sources, feed))
        .unwrap_or_else(|e| panic!("gateway did not start: {e:#}"))
}

fn captures() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/binance-2024-08-08");
    if d.join("btcusdt_20240808.gz").exists() {
        return Some(d);
    }
    eprintln!("SKIPPED: no shared Binance captures at {}; the depth replay tests did not run", d.display());
    None
}

/// A book as the tests compare it: (bids best first, asks best first, stale).
type Top = (Vec<(i64, i64)>, Vec<(i64, i64)>, bool);

/// The reference: each file's book built here, without the gateway's code: the REST snapshot,
/// then every `depthUpdate` whose final id is past it, applied in file order (size 0 removes
/// the level). One file holds one symbol. Returns the top `n` levels by symbol.
fn reference_books(files: &[PathBuf], n: usize) -> HashMap<String, Top> {
    let mut out = HashMap::new();
    for f in files {
        let symbol = f.file_name().unwrap().to_str().unwrap().split('_').next().unwrap().to_uppercase();
        let (mut bids, mut asks) = (BTreeMap::<i64, i64>::new(), BTreeMap::<i64, i64>::new());
        let mut last_id: Option<u64> = None;
        let mut pending: Vec<Value> = Vec::new();
        let apply = |d: &Value, bids: &mut BTreeMap<i64, i64>, asks: &mut BTreeMap<i64, i64>| {
            for (side, book) in [("b", bids), ("a", asks)] {
                for l in d[side].as_array().unwrap() {
                    let p = parse_fixed(l[0].as_str().unwrap()).unwrap();
                    let q = parse_fixed(l[1].as_str().unwrap()).unwrap();
                    if q == 0 {
                        book.remove(&p);
                    } else {
                        book.insert(p, q);
                    }
                }
            }
        };
        let gz = flate2::read::MultiGzDecoder::new(std::fs::File::open(f).unwrap());
        for line in BufReader::new(gz).lines() {
            let line = line.unwrap();
            let v: Value = serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
            if let Some(id) = v["lastUpdateId"].as_u64() {
                for side in ["bids", "asks"] {
                    let book = if side == "bids" { &mut bids } else { &mut asks };
                    for l in v[side].as_array().unwrap() {
                        book.insert(
                            parse_fixed(l[0].as_str().unwrap()).unwrap(),
                            parse_fixed(l[1].as_str().unwrap()).unwrap(),
                        );
                    }
                }
                last_id = Some(id);
                for d in pending.drain(..) {
                    if d["u"].as_u64().unwrap() > id {
                        apply(&d, &mut bids, &mut asks);
                    }
                }
                continue;
            }
            if v["data"]["e"] != "depthUpdate" {
                continue;
            }
            match last_id {
                None => pending.push(v["data"].clone()),
                Some(id) if v["data"]["u"].as_u64().unwrap() > id => apply(&v["data"], &mut bids, &mut asks),
                Some(_) => {}
            }
        }
        let top_bids: Vec<(i64, i64)> = bids.iter().rev().take(n).map(|(p, q)| (*p, *q)).collect();
        let top_asks: Vec<(i64, i64)> = asks.iter().take(n).map(|(p, q)| (*p, *q)).collect();
        out.insert(symbol, (top_bids, top_asks, false));
    }
    out
}

fn fixed(v: &Value) -> i64 {
    parse_fixed(&v.to_string()).unwrap_or_else(|| panic!("not an exact decimal: {v}"))
}

/// A JSON book message as (symbol, seq, top).
fn json_book(v: &Value) -> Option<(String, u64, Top)> {
    if v["type"] != "book" {
        return None;
    }
    let side = |k: &str| v[k].as_array().unwrap().iter().map(|l| (fixed(&l[0]), fixed(&l[1]))).collect();
    Some((
        v["symbol"].as_str()?.to_string(),
        v["seq"].as_u64()?,
        (side("bids"), side("asks"), v["stale"].as_bool()?),
    ))
}

/// What a book must always be: bids strictly descending, asks strictly ascending, not crossed.
fn check_book(who: &str, symbol: &str, top: &Top, depth: usize) {
    let (b, a, _) = top;
    assert!(b.len() <= depth && a.len() <= depth, "{who} {symbol}: more levels than asked for");
    assert!(b.windows(2).all(|w| w[0].0 > w[1].0), "{who} {symbol}: bids not descending");
    assert!(a.windows(2).all(|w| w[0].0 < w[1].0), "{who} {symbol}: asks not ascending");
    if let (Some(bb), Some(ba)) = (b.first(), a.first()) {
        assert!(bb.0 < ba.0, "{who} {symbol}: crossed book {} / {}", bb.0, ba.0);
    }
}

/// Reads books (JSON or binary) until nothing arrives for `quiet`; checks each one and that
/// seq rises per symbol; returns the last book per symbol and how many arrived.
async fn read_books(
    c: &mut Client,
    names: &HashMap<u32, String>,
    depth: usize,
    quiet: Duration,
) -> (HashMap<String, (u64, Top)>, usize) {
    let (mut last, mut n) = (HashMap::<String, (u64, Top)>::new(), 0);
    let mut on_book = |symbol: String, seq: u64, top: Top| {
        check_book("client", &symbol, &top, depth);
        if let Some((prev, _)) = last.get(&symbol) {
            assert!(seq > *prev, "{symbol}: book seq {seq} after {prev}");
        }
        last.insert(symbol, (seq, top));
        n += 1;
    };
    while let Some(frame) = c.next_within(quiet).await {
        match frame {
            Some(Frame::Json(v)) => {
                let items = v.as_array().cloned().unwrap_or_else(|| vec![v]);
                for (s, seq, top) in items.iter().filter_map(json_book) {
                    on_book(s, seq, top);
                }
            }
            Some(Frame::Messages(ms)) => {
                for m in ms {
                    if let binary::Message::Book(b) = m {
                        assert_eq!(usize::from(b.depth), depth);
                        on_book(
                            names[&b.symbol].clone(),
                            b.book.seq,
                            (b.book.bids, b.book.asks, b.book.stale),
                        );
                    }
                }
            }
            Some(Frame::Records(_)) => {}
            Some(Frame::Close(code, reason)) => panic!("closed {code} {reason}"),
            None => panic!("connection ended"),
        }
    }
    (last, n)
}

/// `GET /snapshot?symbols=..&depth=N`: the books, by symbol.
async fn snapshot_books(g: &Gateway, symbols: &[&str], depth: usize) -> HashMap<String, (u64, Top)> {
    let (status, text) =
        http_get(g.local_addr(), &format!("/snapshot?symbols={}&depth={depth}", symbols.join(",")), "").await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(body(&text)).unwrap();
    v.as_array().unwrap().iter().filter_map(json_book).map(|(s, seq, top)| (s, (seq, top))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_spot_captures_end_on_the_reference_books_in_json_and_binary() {
    let _exclusive = EXCLUSIVE.lock().await;
    let Some(dir) = captures() else { return };
    let files = [dir.join("btcusdt_20240808.gz"), dir.join("ethusdt_20240808.gz")];
    let g = start_replay(&files);
    let mut clients = Vec::new();
    for format in ["format=json", "format=binary"] {
        let mut c = Client::connect(g.local_addr(), format).await;
        let ids = c.subscribe(&["BTCUSDT", "ETHUSDT"], r#","depth":20"#).await;
        let names: HashMap<u32, String> = ids.iter().map(|(k, v)| (*v, k.clone())).collect();
        clients.push((format, c, names));
    }
    let want = reference_books(&files, 20);
    wait_feed_end(g.local_addr()).await;
    let s = stats(g.local_addr()).await;
    assert_eq!(s["feed_books_stale"], 0, "no continuity break in the real captures: {s}");
    assert!(s["feed_book_changes"].as_u64().unwrap() > 1_000, "{s}");
    let snap = snapshot_books(&g, &["BTCUSDT", "ETHUSDT"], 20).await;
    for (format, mut c, names) in clients {
        let (last, n) = read_books(&mut c, &names, 20, Duration::from_millis(800)).await;
        assert!(n >= 2, "{format}: only {n} books");
        for sym in ["BTCUSDT", "ETHUSDT"] {
            let (_, got) = &last[sym];
            assert_eq!(got, &want[sym], "{format}: {sym}'s last book is not the reference's top 20");
            assert_eq!(snap[sym].1, want[sym], "/snapshot's {sym} book");
            assert_eq!(want[sym].0.len(), 20, "the reference has 20 levels");
        }
    }
    g.shutdown();
}

/// The first `n` lines of `src` with the `skip`-th depth diff after the REST snapshot left out,
/// written to `dir/name`.
fn capture_without_a_diff(src: &Path, dir: &Path, name: &str, n: usize, skip: usize) -> PathBuf {
    let gz = flate2::read::MultiGzDecoder::new(std::fs::File::open(src).unwrap());
    let (mut seen_snapshot, mut diffs, mut removed) = (false, 0, false);
    let path = dir.join(name);
    let mut out = std::fs::File::create(&path).unwrap();
    for line in BufReader::new(gz).lines().take(n) {
        let line = line.unwrap();
        seen_snapshot |= line.contains("\"lastUpdateId\"");
        if seen_snapshot && line.contains("depthUpdate") {
            diffs += 1;
            if diffs == skip {
                removed = true;
                continue;
            }
        }
        writeln!(out, "{line}").unwrap();
    }
    assert!(removed, "the capture has fewer than {skip} diffs after its snapshot in {n} lines");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_missing_one_diff_breaks_once_and_clients_are_told_the_book_is_stale() {
    let Some(dir) = captures() else { return };
    let tmp = std::env::temp_dir().join(format!("tickgate-depth-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let file = capture_without_a_diff(&dir.join("btcusdt_20240808.gz"), &tmp, "btcusdt_cut.txt", 3_000, 20);
    let g = start_replay(&[file]);
    wait_feed_end(g.local_addr()).await;
    let s = stats(g.local_addr()).await;
    assert_eq!(s["feed_books_stale"], 1, "exactly one break: {s}");
    let snap = snapshot_books(&g, &["BTCUSDT"], 5).await;
    let (_, (bids, asks, stale)) = &snap["BTCUSDT"];
    assert!(stale, "/snapshot shows the book stale");
    check_book("snapshot", "BTCUSDT", &(bids.clone(), asks.clone(), true), 5);
    let mut c = Client::connect(g.local_addr(), "format=json").await;
    let ids = c.subscribe(&["BTCUSDT"], r#","depth":5"#).await;
    let names = ids.iter().map(|(k, v)| (*v, k.clone())).collect();
    let (last, _) = read_books(&mut c, &names, 5, Duration::from_millis(500)).await;
    assert_eq!(last["BTCUSDT"].1, (bids.clone(), asks.clone(), true), "the client is told too");
    g.shutdown();
    let _ = std::fs::remove_dir_all(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_depth_client_stays_bounded_then_converges_on_the_latest_books() {
    let _exclusive = EXCLUSIVE.lock().await;
    let g = start(&[
        ("feed.symbols", "20"),
        ("feed.rate", "20000"),
        ("feed.ticks", "60000"),
        ("feed.zipf_exponent", "0"),
        ("feed.depth_levels", "20"),
    ]);
    let addr = g.local_addr();
    let syms: Vec<String> = (0..20).map(|i| g.app().universe.name(i).to_string()).collect();
    let refs: Vec<&str> = syms.iter().map(String::as_str).collect();
    let mut c = Client::connect_with(addr, "format=json", None, Some(4096)).await.unwrap();
    let ids = c.subscribe(&refs, r#","depth":20"#).await;
    let names: HashMap<u32, String> = ids.iter().map(|(k, v)| (*v, k.clone())).collect();
    // Stop reading while the feed runs (about 3 s): the gateway conflates books, it does not
    // queue them.
    let (mut max_buffered, mut max_pending) = (0, 0);
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = stats(addr).await;
        max_buffered = max_buffered.max(s["buffered_bytes"].as_u64().unwrap());
        max_pending = max_pending.max(s["pending_updates"].as_u64().unwrap());
    }
    // One flush at most: 20 books of 20 levels a side (~1.1 KB each) and 20 quotes.
    assert!(
        max_buffered <= 20 * 1_300 + 20 * 300 + 4096,
        "buffered {max_buffered} bytes for a stalled client"
    );
    assert!(max_pending <= 40, "pending {max_pending}: more than a quote and a book per symbol");
    wait_feed_end(addr).await;
    let (last, n) = read_books(&mut c, &names, 20, Duration::from_millis(800)).await;
    let snap = snapshot_books(&g, &refs, 20).await;
    assert_eq!(snap.len(), 20);
    for (sym, (seq, top)) in &snap {
        let got = last.get(sym).unwrap_or_else(|| panic!("never got {sym}'s book"));
        assert_eq!((&got.0, &got.1), (seq, top), "{sym}: the resumed client did not converge");
    }
    let feed_changes = stats(addr).await["feed_book_changes"].as_u64().unwrap();
    assert!((n as u64) < feed_changes / 4, "{n} books for {feed_changes} changes: not conflated");
    g.shutdown();
}
