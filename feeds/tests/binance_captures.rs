//! Replays the real Binance captures in `../shared/data/binance-2024-08-08/` and checks the
//! normalized ticks against an independent scan of the same files (a generic JSON parse,
//! not the replay's parser). Skipped, loudly, where the shared data is not present.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use tickgate_feeds::replay::scan_captures;
use tickgate_feeds::{CaptureReplay, FeedPoll, FeedSource, ReplayOptions, Speed, Tick, TickKind};

fn data_dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/binance-2024-08-08");
    if d.join("btcusdt_20240808.gz").exists() {
        Some(d)
    } else {
        eprintln!(
            "SKIPPED: the shared Binance captures are not at {} (they live beside the repository, \
             in ../shared/data); the real-capture replay checks did not run",
            d.display()
        );
        None
    }
}

/// What a generic JSON scan finds: per symbol the last quote (bid, ask) and last trade price.
#[derive(Default, Debug)]
struct Independent {
    trades: u64,
    quotes: u64,
    last_quote: HashMap<String, (u64, String, String)>,
    last_trade: HashMap<String, (u64, String)>,
    volume: HashMap<String, f64>,
}

fn scan_independently(paths: &[PathBuf]) -> Independent {
    let mut out = Independent::default();
    for p in paths {
        let gz = flate2::read::MultiGzDecoder::new(std::fs::File::open(p).unwrap());
        for line in BufReader::new(gz).lines() {
            let line = line.unwrap();
            let (ts, json) = line.split_once(' ').unwrap();
            let ts: u64 = ts.parse().unwrap();
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            let Some(stream) = v.get("stream").and_then(|s| s.as_str()) else { continue };
            let d = &v["data"];
            let sym = d["s"].as_str().unwrap().to_string();
            if stream.ends_with("@trade") {
                out.trades += 1;
                let e = out.last_trade.entry(sym.clone()).or_default();
                if ts >= e.0 {
                    *e = (ts, d["p"].as_str().unwrap().to_string());
                }
                *out.volume.entry(sym).or_default() += d["q"].as_str().unwrap().parse::<f64>().unwrap();
            } else if stream.ends_with("@bookTicker") {
                out.quotes += 1;
                let e = out.last_quote.entry(sym).or_default();
                if ts >= e.0 {
                    *e = (ts, d["b"].as_str().unwrap().to_string(), d["a"].as_str().unwrap().to_string());
                }
            }
        }
    }
    out
}

fn fixed(s: &str) -> i64 {
    tickgate_feeds::universe::parse_fixed(s).unwrap()
}

#[test]
fn replaying_the_real_captures_matches_an_independent_scan() {
    let Some(dir) = data_dir() else { return };
    let paths: Vec<PathBuf> =
        ["btcusdt_20240808.gz", "ethusdt_20240808.gz", "btcusdt_20240809.gz", "ethusdt_20240809.gz"]
            .iter()
            .map(|f| dir.join(f))
            .collect();
    let want = scan_independently(&paths);
    let mut replay =
        CaptureReplay::open(paths.clone(), ReplayOptions { speed: Speed::Max, looped: false }).unwrap();
    let names: Vec<String> = replay.universe().symbols().iter().map(|s| s.name.clone()).collect();
    assert_eq!(names, ["BTCUSDT", "ETHUSDT"]);
    let mut last: HashMap<u32, Tick> = HashMap::new();
    let (mut trades, mut quotes, mut prev_ts, mut books) = (0u64, 0u64, 0u64, 0u64);
    let started = std::time::Instant::now();
    loop {
        match replay.poll(0) {
            FeedPoll::Tick(t) => {
                match t.kind {
                    TickKind::Trade => trades += 1,
                    TickKind::Quote => quotes += 1,
                    TickKind::Book => panic!("book notices are the gateway's, not a source's"),
                }
                assert!(t.ts_event >= prev_ts, "ticks must come out in capture order");
                prev_ts = t.ts_event;
                let before = last.insert(t.symbol, t);
                assert_eq!(t.seq, before.map_or(0, |b| b.seq) + 1, "seq rises by one per symbol");
            }
            FeedPoll::Book { .. } => books += 1,
            FeedPoll::Pending { .. } | FeedPoll::Status { .. } => panic!("speed max never waits"),
            FeedPoll::End => break,
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "replayed {} ticks in {:?} ({:.0} ticks/s, debug or release as built)",
        trades + quotes,
        elapsed,
        (trades + quotes) as f64 / elapsed.as_secs_f64()
    );
    assert_eq!((trades, quotes), (want.trades, want.quotes));
    // The shared README's table: 34,419 trades and 131,932 quotes in the four files.
    assert_eq!((trades, quotes), (9_757 + 10_147 + 6_106 + 8_409, 28_040 + 45_134 + 24_077 + 34_681));
    let c = replay.counts();
    assert_eq!((c.trades, c.quotes, c.malformed), (trades, quotes, 0));
    assert_eq!(c.depth, 3_451 + 3_044 + 3_434 + 3_036);
    assert_eq!(c.snapshots, 2, "one REST snapshot line in each _20240808 file");
    eprintln!("book changes {books}, breaks {}, crossed {}", c.book_breaks, c.book_crossed);
    assert_eq!(c.book_crossed, 0);
    assert!(books > 12_000, "each applied diff changes its book: {books}");
    assert_eq!(c.lines, 41_249 + 58_325 + 33_618 + 46_126);
    for (id, name) in names.iter().enumerate() {
        let t = last[&(id as u32)];
        let (_, bid, ask) = &want.last_quote[name];
        let (_, lastp) = &want.last_trade[name];
        assert_eq!((t.bid, t.ask, t.last), (fixed(bid), fixed(ask), fixed(lastp)), "{name}");
        let vol = t.volume as f64 / 1e8;
        assert!(
            (vol - want.volume[name]).abs() < 1e-6 * vol.max(1.0),
            "{name} volume {vol} vs {}",
            want.volume[name]
        );
    }
    let scan = scan_captures(&paths).unwrap();
    assert_eq!((scan.counts.trades, scan.counts.quotes), (trades, quotes));
}

#[test]
fn a_capture_with_malformed_lines_replays_the_rest_and_counts_them() {
    let Some(dir) = data_dir() else { return };
    // The first 2,000 lines of a real capture with damage spliced in: a truncated line, a
    // line without its timestamp, binary junk, a bad decimal and an empty line.
    let gz = flate2::read::MultiGzDecoder::new(std::fs::File::open(dir.join("ethusdt_20240808.gz")).unwrap());
    let mut lines: Vec<String> = BufReader::new(gz).lines().take(2_000).map(Result::unwrap).collect();
    let good = scan_independently_lines(&lines);
    let cut = lines[100][..lines[100].len() / 2].to_string();
    let no_ts = lines[200].split_once(' ').unwrap().1.to_string();
    let bad_dec = lines.iter().find(|l| l.contains("@trade")).unwrap().replacen("\"p\":\"", "\"p\":\"1e", 1);
    lines.insert(300, cut);
    lines.insert(400, no_ts);
    lines.insert(500, "\u{1}\u{2}garbage".into());
    lines.insert(600, bad_dec);
    lines.insert(700, String::new());
    let tmp = std::env::temp_dir().join(format!("tickgate-malformed-{}.txt", std::process::id()));
    std::fs::write(&tmp, lines.join("\n")).unwrap();
    let mut replay =
        CaptureReplay::open(vec![tmp.clone()], ReplayOptions { speed: Speed::Max, looped: false }).unwrap();
    let mut n = 0;
    while let FeedPoll::Tick(_) = replay.poll(0) {
        n += 1;
    }
    let c = replay.counts();
    assert_eq!(c.malformed, 4, "{c}");
    assert_eq!(n, good, "every good trade and quote is still replayed");
    assert_eq!(c.trades + c.quotes, good);
    let _ = std::fs::remove_file(tmp);
}

fn scan_independently_lines(lines: &[String]) -> u64 {
    lines.iter().filter(|l| l.contains("@trade\"") || l.contains("@bookTicker\"")).count() as u64
}
