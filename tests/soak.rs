//! Churn soak: clients connect, subscribe, read, unsubscribe and disconnect at a steady rate
//! while the gateway's resident memory (RSS, from /proc) is sampled every second. Memory
//! must level off: after a warm-up, the last third of the run may not sit clearly above the
//! middle third.
//!
//! `SOAK_SECS` sets the length (default 24 s, what `cargo test` runs); a long run:
//! `SOAK_SECS=600 cargo test --release --test soak -- --nocapture` prints every sample.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// New connections per second.
const CHURN_PER_SEC: u64 = 40;
/// Symbols each churning client subscribes to.
const SYMBOLS: usize = 5;
/// How long each churning client stays.
const LIFETIME: Duration = Duration::from_millis(500);
/// Allowed rise of the last third's median RSS over the middle third's: 3 % + 2 MiB.
const SLACK_FRACTION: f64 = 0.03;
const SLACK_BYTES: f64 = 2.0 * 1024.0 * 1024.0;

struct Gw(Child);

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> (Gw, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickgate"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--shards",
            "1",
            "--pin-cores",
            "off",
        ])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("gateway exited").unwrap();
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Gw(child), addr)
}

fn rss_bytes(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    kb * 1024
}

/// One churning client's life. Returns the updates it read.
async fn life(addr: SocketAddr, i: u64, names: &[String]) -> usize {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await else { return 0 };
    let pick: Vec<String> = (0..SYMBOLS)
        .map(|k| format!("\"{}\"", names[((i * 7 + k as u64 * 131) % names.len() as u64) as usize]))
        .collect();
    let list = pick.join(",");
    let _ = ws.send(Message::text(format!(r#"{{"op":"subscribe","symbols":[{list}],"id":1}}"#))).await;
    let mut n = 0;
    let end = tokio::time::Instant::now() + LIFETIME;
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(end, ws.next()).await {
        if matches!(m, Message::Text(_) | Message::Binary(_)) {
            n += 1;
        }
    }
    let _ = ws.send(Message::text(format!(r#"{{"op":"unsubscribe","symbols":[{list}],"id":2}}"#))).await;
    let _ = ws.close(None).await;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_millis(500), ws.next()).await {}
    n
}

fn median(v: &[u64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v[v.len() / 2] as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churning_clients_do_not_grow_the_gateways_memory() {
    let secs: u64 = std::env::var("SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(24).max(9);
    let (gw, addr) = start();
    let pid = gw.0.id();
    let names: Vec<String> = {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await.unwrap();
        ws.send(Message::text(r#"{"op":"list"}"#)).await.unwrap();
        let Some(Ok(Message::Text(t))) = ws.next().await else { panic!("no list reply") };
        let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
        v["symbols"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
    };
    let names = std::sync::Arc::new(names);
    let started = Instant::now();
    let mut samples: Vec<u64> = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / CHURN_PER_SEC));
    let (mut i, mut next_sample, mut read) = (0u64, Instant::now(), 0usize);
    while started.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let names = names.clone();
        tasks.spawn(async move { life(addr, i, &names).await });
        i += 1;
        while let Some(r) = tasks.try_join_next() {
            read += r.unwrap();
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(1);
            let rss = rss_bytes(pid);
            samples.push(rss);
            if secs > 60 {
                eprintln!(
                    "t={:>4}s rss={:.1} MiB clients_opened={i}",
                    started.elapsed().as_secs(),
                    rss as f64 / 1048576.0
                );
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        read += r.unwrap();
    }
    let third = samples.len() / 3;
    let (mid, last) = (median(&samples[third..2 * third]), median(&samples[2 * third..]));
    eprintln!(
        "soak: {secs} s, {i} connections ({CHURN_PER_SEC}/s), {read} messages read; RSS median middle third \
         {:.1} MiB, last third {:.1} MiB, max {:.1} MiB",
        mid / 1048576.0,
        last / 1048576.0,
        *samples.iter().max().unwrap() as f64 / 1048576.0
    );
    assert!(read > i as usize, "clients read almost nothing ({read} messages for {i} clients)");
    assert!(
        last <= mid * (1.0 + SLACK_FRACTION) + SLACK_BYTES,
        "RSS kept growing: middle third {mid} B, last third {last} B (samples {samples:?})"
    );
}
