//! The whole tool against a real in-process gateway: the smoke profile (JSON, binary, mixed,
//! churn) and `--verify-final` on a finite feed.

use std::time::Duration;

use tickgate_loadtest::options::FormatMode;
use tickgate_loadtest::report::Report;
use tickgate_loadtest::ws::url::WsUrl;
use tickgate_loadtest::{Pick, run};

use crate::common::{gateway, smoke};

/// The report of a healthy run: every client streamed, updates arrived, no violation, and
/// the numbers are consistent.
fn assert_sane(r: &Report) {
    assert!(r.passed(), "run failed: {:?}\n{}", r.failures(), r.table());
    assert_eq!(r.clients.subscribed, r.clients.target, "{}", r.table());
    assert_eq!(r.clients.connected, r.clients.target);
    assert_eq!(r.violations.total(), 0, "{:?}", r.violation_samples);
    assert!(r.updates > 0, "no updates\n{}", r.table());
    assert!(r.updates_per_sec > 0.0 && r.bytes_per_sec > 0.0);
    for p in [&r.latency_gateway, &r.latency_event] {
        assert!(p.count > 0);
        assert!(p.min <= p.p50 && p.p50 <= p.p90 && p.p90 <= p.p99, "{p:?}");
        assert!(p.p99 <= p.p999 && p.p999 <= p.p9999 && p.p9999 <= p.max, "{p:?}");
    }
    // The event happened before the gateway ingested it.
    assert!(r.latency_event.p50 >= r.latency_gateway.p50);
    assert_eq!(r.connect.count as usize, r.clients.target);
    assert!(r.connect.p50 > 0 && r.connect.p50 <= r.connect.p99);
    assert!(r.rate_spread.min <= r.rate_spread.median && r.rate_spread.median <= r.rate_spread.max);
    assert!(r.rate_spread.max > 0.0);
    assert!(r.cpu.pct_of_one_core > 0.0 && r.cpu.workers_pct > 0.0, "{:?}", r.cpu);
    assert!((0.0..=1.0).contains(&r.conflation_ratio));
    assert!(r.measured_secs > 0.0);
    assert!(r.machine.cores >= 1 && !r.machine.kernel.is_empty());
    assert!(!r.intervals.is_empty());
    assert_eq!(r.histograms.latency_gateway.0.len(), r.latency_gateway.count);
}

#[test]
fn smoke_profile_against_an_in_process_gateway() {
    let gw = gateway(&[("feed.rate", "5000"), ("feed.symbols", "200")]);
    let mut o = smoke(&gw, 3.0);
    o.hdr_log = Some(std::env::temp_dir().join(format!("tickgate-loadtest-{}.hlog", std::process::id())));
    let r = run(o.clone()).unwrap();
    assert_sane(&r);
    assert_eq!(r.clients.target, 50);
    assert_eq!(r.config.symbols_per_client, 10);
    assert_eq!(r.config.universe, 200);
    // The interval log holds tagged histograms.
    let log = std::fs::read_to_string(o.hdr_log.as_ref().unwrap()).unwrap();
    assert!(log.contains("Tag=gateway") && log.contains("Tag=event"), "{log}");
    let mut logged = 0;
    for entry in hdrhistogram::serialization::interval_log::IntervalLogIterator::new(log.as_bytes()) {
        if let hdrhistogram::serialization::interval_log::LogEntry::Interval(h) = entry.unwrap() {
            logged += 1;
            assert!(h.tag().is_some());
        }
    }
    assert!(logged >= 4, "{logged} intervals in the log");
    let _ = std::fs::remove_file(o.hdr_log.as_ref().unwrap());
    // The JSON report round-trips, histograms included.
    let text = serde_json::to_string(&r).unwrap();
    let back: Report = serde_json::from_str(&text).unwrap();
    assert_eq!(back.histograms, r.histograms);
    assert_eq!(back.latency_gateway, r.latency_gateway);
    gw.shutdown();
}

#[test]
fn binary_mixed_zipf_churn_over_two_gateways() {
    let gw = gateway(&[("feed.rate", "5000"), ("feed.symbols", "200")]);
    let gw2 = gateway(&[("feed.rate", "5000"), ("feed.symbols", "200")]);
    let mut o = smoke(&gw, 2.5);
    o.urls.push(WsUrl::parse(&format!("ws://{}/ws", gw2.local_addr())).unwrap());
    o.format = FormatMode::Mixed;
    o.pick = Pick::Zipf;
    o.churn_per_sec = 40.0;
    o.max_rate = Some(200.0);
    let r = run(o).unwrap();
    assert_sane(&r);
    assert!(r.churn_ops > 20, "churn ops {}", r.churn_ops);
    assert!(r.snapshots > 0, "a re-subscribe starts with a snapshot");
    // Clients went round-robin over both gateways: both delivered.
    let delivered = |g: &tickgate::gateway::Gateway| -> u64 {
        g.app().shards.iter().map(|s| s.stats.delivered.load(std::sync::atomic::Ordering::Relaxed)).sum()
    };
    assert!(delivered(&gw) > 0 && delivered(&gw2) > 0);
    gw.shutdown();
    gw2.shutdown();
}

#[test]
fn verify_final_on_a_finite_feed() {
    let gw = gateway(&[("feed.rate", "20000"), ("feed.symbols", "200"), ("feed.ticks", "30000")]);
    let mut o = smoke(&gw, 1.0);
    o.verify_final = true;
    o.format = FormatMode::Mixed;
    o.verify_timeout = Duration::from_secs(20);
    let r = run(o).unwrap();
    let v = r.verify.clone().unwrap();
    assert_eq!(v.error, None, "{}", r.table());
    assert_eq!(v.compared, 50 * 10);
    assert_eq!((v.mismatches, v.missing), (0, 0), "{:?}", v.samples);
    assert!(r.passed(), "{}", r.table());
    gw.shutdown();
}

#[test]
fn batched_json_passes_integrity_and_converges() {
    let gw = gateway(&[("feed.rate", "20000"), ("feed.symbols", "200"), ("feed.ticks", "30000")]);
    let mut o = smoke(&gw, 1.0);
    o.verify_final = true;
    o.format = FormatMode::JsonBatch;
    o.verify_timeout = Duration::from_secs(20);
    let r = run(o).unwrap();
    assert_sane(&r);
    let v = r.verify.clone().unwrap();
    assert_eq!(v.error, None, "{}", r.table());
    assert_eq!((v.mismatches, v.missing), (0, 0), "{:?}", v.samples);
    assert!(r.passed(), "{}", r.table());
    gw.shutdown();
}

#[test]
fn trades_pass_integrity_in_every_format_and_gaps_are_counted() {
    // Every event a trade, a backlog of 2: trades arrive in order; clients that fall behind
    // are told how many they missed, and the run still passes (a gap is not a violation).
    let gw = gateway(&[
        ("feed.rate", "3000"),
        ("feed.symbols", "20"),
        ("feed.trade_percent", "100"),
        ("server.max_trade_backlog", "2"),
    ]);
    for format in [FormatMode::Json, FormatMode::JsonBatch, FormatMode::Binary] {
        let mut o = smoke(&gw, 2.0);
        o.format = format;
        o.trades = true;
        let r = run(o).unwrap();
        assert_sane(&r);
        assert!(r.trades.trades > 1_000, "{format:?}: {:?}\n{}", r.trades, r.table());
        assert!(r.table().contains("trades"), "{}", r.table());
    }
    gw.shutdown();
}

#[test]
fn sse_clients_pass_integrity_with_trades_and_converge() {
    let gw = gateway(&[("feed.rate", "20000"), ("feed.symbols", "200"), ("feed.ticks", "30000")]);
    let mut o = smoke(&gw, 1.0);
    o.transport = tickgate_loadtest::Transport::Sse;
    o.trades = true;
    o.verify_final = true;
    o.verify_timeout = Duration::from_secs(20);
    let r = run(o).unwrap();
    assert_sane(&r);
    assert!(r.trades.trades > 0, "{}", r.table());
    let v = r.verify.clone().unwrap();
    assert_eq!((v.mismatches, v.missing), (0, 0), "{:?}", v.samples);
    gw.shutdown();
}

#[test]
fn books_pass_integrity_in_every_format_and_converge() {
    // The simulator keeps a book per symbol (feed.depth_levels, 20 levels a side by default)
    // and changes it with every event; clients watch the top 10.
    use tickgate_loadtest::Transport;
    for (format, transport) in [
        (FormatMode::Mixed, Transport::Ws),
        (FormatMode::JsonBatch, Transport::Ws),
        (FormatMode::Json, Transport::Sse),
    ] {
        // A slower feed than the other tests': a book is several times an update's JSON, and
        // the debug build's decoding must keep up. Long enough to outlast the measurement.
        let gw = gateway(&[("feed.rate", "1000"), ("feed.symbols", "200"), ("feed.ticks", "4000")]);
        let mut o = smoke(&gw, 1.0);
        // Fewer clients than the profile's 50: the other e2e tests run alongside.
        o.clients = 20;
        o.format = format;
        o.transport = transport;
        o.depth = 10;
        o.verify_final = true;
        o.verify_timeout = Duration::from_secs(20);
        let r = run(o).unwrap();
        let what = format!("{format:?} over {transport:?}");
        assert_sane(&r);
        assert!(r.books.books > 0 && r.books_per_sec > 0.0, "{what}: {:?}\n{}", r.books, r.table());
        assert_eq!(r.config.depth, 10);
        assert!(r.table().contains("books "), "{}", r.table());
        let v = r.verify.clone().unwrap();
        assert_eq!(v.error, None, "{what}: {}", r.table());
        assert_eq!((v.compared, v.books_compared), (20 * 10, 20 * 10), "{what}");
        assert_eq!((v.mismatches, v.missing, v.book_mismatches), (0, 0, 0), "{what}: {:?}", v.samples);
        gw.shutdown();
    }
}
