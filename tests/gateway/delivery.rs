//! Delivery guarantees: conflation keeps a stalled client's state bounded and delivers the
//! latest values when it resumes; every client converges on the feed's final state; a shard
//! lapped by the ring heals; max_rate paces updates.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;

/// Reads until the gateway's finite feed has ended and the stream has been quiet.
async fn drain(
    c: &mut Client,
    names: &HashMap<u32, String>,
    addr: std::net::SocketAddr,
) -> HashMap<String, Update> {
    wait_feed_end(addr).await;
    let mut last = HashMap::new();
    loop {
        let got = collect(c, names, Duration::from_millis(700), |_| {}).await;
        if got.is_empty() {
            return last;
        }
        last.extend(got);
    }
}

fn names_of(ids: HashMap<String, u32>) -> HashMap<u32, String> {
    ids.into_iter().map(|(k, v)| (v, k)).collect()
}

fn assert_converged(last: &HashMap<String, Update>, snap: &HashMap<String, Update>, who: &str) {
    for (s, want) in snap {
        let got = last.get(s).unwrap_or_else(|| panic!("{who}: never got {s}"));
        assert_eq!(got.tick, want.tick, "{who}: {s} did not converge");
    }
}

#[tokio::test]
async fn stalled_client_has_bounded_pending_state_and_gets_latest_values_on_resume() {
    let gw = start(&[("feed.symbols", "20"), ("feed.rate", "50000"), ("feed.ticks", "150000")]);
    let addr = gw.local_addr();
    let syms: Vec<String> = (0..20).map(|i| gw.app().universe.name(i).to_string()).collect();
    let refs: Vec<&str> = syms.iter().map(String::as_str).collect();

    // A tiny receive buffer so the client's socket fills almost at once.
    let mut c = Client::connect_with(addr, "", None, Some(4096)).await.unwrap();
    let ids = c.subscribe(&refs, "").await;

    // Stop reading. The gateway must block on the socket and conflate, not buffer.
    let mut saw_blocked = false;
    let mut max_pending = 0;
    let mut max_buffered = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = stats(addr).await;
        saw_blocked |= s["shards"][0]["blocked_clients"].as_u64().unwrap() >= 1;
        max_pending = max_pending.max(s["pending_updates"].as_u64().unwrap());
        max_buffered = max_buffered.max(s["buffered_bytes"].as_u64().unwrap());
    }
    assert!(saw_blocked, "the client never blocked the gateway's writes");
    assert!(max_pending <= 20, "pending {max_pending} exceeds one slot per subscribed symbol");
    // At most one flush's worth (20 updates) plus snapshots/replies stays in our buffer.
    assert!(
        max_buffered <= 20 * 300 + 20 * 300 + 1024,
        "gateway buffered {max_buffered} bytes for a stalled client"
    );

    // Resume: the latest value of every symbol arrives, seq never going backwards, and the
    // values skipped over while it was stalled are counted as conflated when it drains.
    let last = drain(&mut c, &names_of(ids), addr).await;
    let snap = snapshot(addr, &refs).await;
    assert_converged(&last, &snap, "resumed client");
    let conflated = stats(addr).await["conflated"].as_u64().unwrap();
    assert!(conflated > 1000, "only {conflated} updates were conflated");
    gw.shutdown();
}

#[tokio::test]
async fn every_client_converges_on_the_final_state_of_a_finite_feed() {
    let gw = start(&[("feed.symbols", "40"), ("feed.rate", "20000"), ("feed.ticks", "30000")]);
    let addr = gw.local_addr();
    let syms: Vec<String> = (0..40).map(|i| gw.app().universe.name(i).to_string()).collect();
    let mut tasks = Vec::new();
    for k in 0..12usize {
        let mine: Vec<String> =
            syms.iter().enumerate().filter(|(i, _)| (i + k) % 3 != 0).map(|(_, s)| s.clone()).collect();
        let format = if k % 2 == 0 { "format=json" } else { "format=binary" };
        let mut c = Client::connect(addr, format).await;
        let refs: Vec<&str> = mine.iter().map(String::as_str).collect();
        let ids = c.subscribe(&refs, "").await;
        tasks.push(tokio::spawn(async move {
            let last = drain(&mut c, &names_of(ids), addr).await;
            (mine, last, format)
        }));
    }
    for t in tasks {
        let (mine, last, format) = t.await.unwrap();
        let refs: Vec<&str> = mine.iter().map(String::as_str).collect();
        let snap = snapshot(addr, &refs).await;
        assert_eq!(snap.len(), mine.len());
        assert_converged(&last, &snap, format);
        assert!(last.keys().all(|s| mine.contains(s)), "got a symbol it did not subscribe to");
    }
    gw.shutdown();
}

#[tokio::test]
async fn a_stalled_shard_detects_ring_overrun_and_its_clients_still_converge() {
    let gw = start(&[
        ("feed.symbols", "20"),
        ("feed.rate", "50000"),
        ("feed.ticks", "100000"),
        ("server.ring_capacity", "1024"),
    ]);
    let addr = gw.local_addr();
    let syms: Vec<String> = (0..20).map(|i| gw.app().universe.name(i).to_string()).collect();
    let refs: Vec<&str> = syms.iter().map(String::as_str).collect();
    let mut c = Client::connect(addr, "format=binary").await;
    let ids = c.subscribe(&refs, "").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // 400 ms at 50,000 ticks/s is ~20,000 ticks: the 1,024-slot ring laps the shard.
    gw.stall_shard(0, Duration::from_millis(400));
    let last = drain(&mut c, &names_of(ids), addr).await;
    let s = stats(addr).await;
    assert!(s["overruns"].as_u64().unwrap() >= 1, "no overrun detected: {s}");
    let snap = snapshot(addr, &refs).await;
    assert_converged(&last, &snap, "client of the lapped shard");
    gw.shutdown();
}

#[tokio::test]
async fn max_rate_paces_updates_per_symbol_and_can_be_changed_live() {
    let gw = start(&[("feed.symbols", "3"), ("feed.rate", "3000"), ("feed.zipf_exponent", "0")]);
    let addr = gw.local_addr();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let syms: Vec<String> = (0..3).map(|i| gw.app().universe.name(i).to_string()).collect();
    let refs: Vec<&str> = syms.iter().map(String::as_str).collect();
    let mut c = Client::connect(addr, "").await;
    c.subscribe(&refs, r#","max_rate":2"#).await;

    let mut per: HashMap<String, usize> = HashMap::new();
    collect(&mut c, &HashMap::new(), Duration::from_secs(3), |u| {
        if !u.snapshot {
            *per.entry(u.symbol.clone()).or_default() += 1;
        }
    })
    .await;
    for s in &syms {
        let n = per.get(s).copied().unwrap_or(0);
        // ~1,000 ticks/s per symbol, paced to 2/s over 3 s: 6, give or take the edges.
        assert!((4..=8).contains(&n), "{s}: {n} updates in 3 s at max_rate 2");
    }

    // Raise it live; the change is acknowledged.
    c.send(&format!(r#"{{"op":"subscribe","symbols":["{}"],"id":9,"max_rate":10}}"#, syms[0])).await;
    let mut acked = false;
    let mut n = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        match c.next_within(deadline.saturating_duration_since(tokio::time::Instant::now())).await {
            Some(Some(Frame::Json(v))) if v["type"] == "subscribed" => {
                assert_eq!(v["id"], 9);
                acked = true;
            }
            Some(Some(Frame::Json(v))) => {
                if let Some(u) = json_update(&v)
                    && acked
                    && u.symbol == syms[0]
                {
                    n += 1;
                }
            }
            _ => break,
        }
    }
    assert!(acked, "max_rate change was not acknowledged");
    assert!((14..=22).contains(&n), "{n} updates in ~2 s at max_rate 10");
    gw.shutdown();
}
