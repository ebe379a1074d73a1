//! The NATS feed bus end to end: a real `nats-server` with JetStream (started by the test on
//! a free port), a real `tickgate feed --publish` process, and gateways fed by the bus.
//! Skipped, loudly, where `nats-server` is not installed (`.ci/run` installs it).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tickgate::feeds::Tick;
use tickgate::feeds::tickfile::TickReader;
use tickgate::gateway::Gateway;

use crate::common::*;

fn nats_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!(
            "SKIPPED: nats-server is not installed (apt-get install nats-server); the NATS fleet tests did not run"
        );
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tickgate-fleet-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A nats-server child process with JetStream, storing under `dir`.
struct Nats {
    bin: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Nats {
    fn start(bin: PathBuf, dir: PathBuf) -> Nats {
        let mut n = Nats { bin, port: free_port(), dir, child: None };
        n.restart();
        n
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.join("nats.log")).unwrap();
        let child = Command::new(&self.bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.dir.join("store"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen; see {}", self.dir.display());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `tickgate feed --publish` child process.
struct Publisher(Child);

impl Publisher {
    fn start(url: &str, dir: &Path, args: &[&str]) -> Publisher {
        let log = std::fs::File::create(dir.join("publisher.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tickgate"))
            .args(["feed", "--publish", url, "--nats-wait", "10s", "--pin-cores", "off"])
            .args(args)
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tickgate feed");
        Publisher(child)
    }

    /// Waits for a finite feed to finish; asserts it exited 0.
    fn wait(mut self, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                assert!(st.success(), "publisher failed: {st}; log in {}", dir.display());
                return;
            }
            assert!(Instant::now() < deadline, "publisher did not finish");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits: the publisher flushes and exits 0.
    fn stop(self, dir: &Path) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        self.wait(dir);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gateway(url: &str) -> Gateway {
    let (cfg, sources) = config(&[("feed.source", url), ("feed.nats_wait", "20s")]);
    tickgate::feed::Feed::from_config(&cfg)
        .and_then(|feed| Gateway::start(cfg, sources, feed))
        .unwrap_or_else(|e| panic!("gateway on {url} did not start: {e:#}"))
}

/// Every symbol's latest state as `/snapshot` reports it.
async fn all_values(addr: SocketAddr, names: &[&str]) -> HashMap<String, Tick> {
    let mut out = HashMap::new();
    for chunk in names.chunks(200) {
        out.extend(snapshot(addr, chunk).await.into_iter().map(|(k, u)| (k, u.tick)));
    }
    out
}

/// Compares the L1 state and seq (not `ts_gateway`, which each gateway stamps itself).
fn same(a: &Tick, b: &Tick) -> bool {
    (a.seq, a.bid, a.bid_size, a.ask, a.ask_size, a.last, a.last_size, a.volume, a.ts_event)
        == (b.seq, b.bid, b.bid_size, b.ask, b.ask_size, b.last, b.last_size, b.volume, b.ts_event)
}

/// Waits until `addr` reports exactly `want` for every symbol.
async fn converge(addr: SocketAddr, names: &[&str], want: &HashMap<String, Tick>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = all_values(addr, names).await;
        let wrong: Vec<&String> =
            want.keys().filter(|k| !got.get(*k).is_some_and(|g| same(g, &want[*k]))).collect();
        if wrong.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} symbols never converged, e.g. {:?}: got {:?}, want {:?}",
            wrong.len(),
            wrong[0],
            got.get(wrong[0]),
            want[wrong[0]]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn fixture() -> (PathBuf, Vec<String>, HashMap<String, Tick>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("feeds/fixtures/sim-20k.ticks");
    let mut r = TickReader::open(&path).unwrap();
    let mut last = HashMap::new();
    while let Some(t) = r.next_tick().unwrap() {
        last.insert(r.universe().name(t.symbol).to_string(), t);
    }
    let names = r.universe().symbols().iter().map(|s| s.name.clone()).collect();
    (path, names, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_and_a_late_one_serve_the_publishers_values() {
    let Some(bin) = nats_binary() else { return };
    let dir = scratch("converge");
    let nats = Nats::start(bin, dir.clone());
    let (ticks, names, truth) = fixture();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let publisher = Publisher::start(
        &nats.url(),
        &dir,
        &["--feed", &format!("ticks:{}", ticks.display()), "--replay-speed", "1"],
    );
    let a = gateway(&nats.url());
    let b = gateway(&nats.url());
    // A client on each gateway follows the busiest symbols live.
    let hot: Vec<&str> = {
        let mut v: Vec<&Tick> = truth.values().collect();
        v.sort_by_key(|t| std::cmp::Reverse(t.seq));
        v.iter().take(5).map(|t| names[t.symbol as usize]).collect()
    };
    let mut clients = Vec::new();
    for g in [&a, &b] {
        let mut c = Client::connect(g.local_addr(), "format=binary").await;
        let ids = c.subscribe(&hot, "").await;
        clients.push((c, ids.into_iter().map(|(k, v)| (v, k)).collect::<HashMap<u32, String>>()));
    }
    publisher.wait(&dir);
    for (i, g) in [&a, &b].into_iter().enumerate() {
        converge(g.local_addr(), &names, &truth, &format!("gateway {i}")).await;
        // The publisher said its finite feed ended: the gateways' feeds end too.
        wait_feed_end(g.local_addr()).await;
    }
    for (c, ids) in &mut clients {
        let seen = collect(c, ids, Duration::from_millis(500), |_| {}).await;
        for s in &hot {
            if let Some(u) = seen.get(*s) {
                assert!(u.tick.seq <= truth[*s].seq, "{s}: a client saw a seq beyond the publisher's last");
            }
        }
    }
    // Both gateways number symbols in the publisher's order: the same ids everywhere.
    assert_eq!(clients[0].1, clients[1].1);
    // A gateway started after the publisher finished gets its snapshots from JetStream.
    let late = gateway(&nats.url());
    converge(late.local_addr(), &names, &truth, "late gateway").await;
    let s = stats(late.local_addr()).await;
    assert_eq!(s["bus"]["warmed"].as_u64(), Some(truth.len() as u64), "{s}");
    for g in [a, b, late] {
        g.shutdown();
    }
}

async fn expect_status(c: &mut Client, want: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_within(left).await {
            None => panic!("no feed {want} status within {within:?}"),
            Some(Some(Frame::Json(v))) if v["type"] == "status" => {
                assert_eq!(v, serde_json::json!({"type":"status","feed":want}));
                return;
            }
            Some(Some(_)) => {}
            Some(None) => panic!("connection ended while waiting for feed {want}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_is_told_to_clients_and_values_converge_after_it() {
    let Some(bin) = nats_binary() else { return };
    let dir = scratch("outage");
    let mut nats = Nats::start(bin, dir.clone());
    let publisher =
        Publisher::start(&nats.url(), &dir, &["--feed", "sim", "--rate", "2000", "--symbols", "50"]);
    let a = gateway(&nats.url());
    let b = gateway(&nats.url());
    let mut ca = Client::connect(a.local_addr(), "").await;
    let mut cb = Client::connect(b.local_addr(), "format=binary").await;
    let names: Vec<String> = {
        ca.send(r#"{"op":"list","id":9}"#).await;
        let v: Value = ca.json().await;
        v["symbols"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
    };
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    ca.subscribe(&names[..10], "").await;
    cb.subscribe(&names[..10], "").await;
    assert!(!collect(&mut ca, &HashMap::new(), Duration::from_millis(500), |_| {}).await.is_empty());

    nats.kill();
    expect_status(&mut ca, "down", Duration::from_secs(5)).await;
    expect_status(&mut cb, "down", Duration::from_secs(5)).await;
    let s = stats(a.local_addr()).await;
    assert_eq!((s["feed_up"].as_bool(), s["bus"]["connected"].as_bool()), (Some(false), Some(false)), "{s}");
    // A client arriving during the outage is told at once, and still gets last values.
    let mut late = Client::connect(a.local_addr(), "").await;
    expect_status(&mut late, "down", Duration::from_secs(2)).await;
    late.subscribe(&names[..1], "").await;
    assert!(matches!(late.json().await["snapshot"].as_bool(), Some(true)));

    nats.restart();
    expect_status(&mut ca, "up", Duration::from_secs(15)).await;
    expect_status(&mut cb, "up", Duration::from_secs(15)).await;
    let moved = collect(&mut ca, &HashMap::new(), Duration::from_millis(700), |_| {}).await;
    assert!(!moved.is_empty(), "no live updates after the bus came back");
    publisher.stop(&dir);
    // Both gateways end on the same values (the publisher republishes its latest values after
    // a reconnect, so nothing lost in the outage lingers).
    let mut want = all_values(a.local_addr(), &names).await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let again = all_values(a.local_addr(), &names).await;
        if again.len() == want.len() && again.iter().all(|(k, t)| same(t, &want[k])) {
            break;
        }
        want = again;
    }
    assert_eq!(want.len(), names.len());
    converge(b.local_addr(), &names, &want, "gateway b vs a").await;
    let s = stats(b.local_addr()).await;
    assert_eq!((s["feed_outages"].as_u64(), s["bus"]["reconnects"].as_u64()), (Some(1), Some(1)), "{s}");
    a.shutdown();
    b.shutdown();
}

/// A gateway on the bus with `feed.nats_interest = subscribed`.
fn interest_gateway(url: &str) -> Gateway {
    let (cfg, sources) = config(&[
        ("feed.source", url),
        ("feed.nats_wait", "20s"),
        ("feed.nats_interest", "subscribed"),
        ("feed.nats_linger", "300ms"),
    ]);
    tickgate::feed::Feed::from_config(&cfg)
        .and_then(|feed| Gateway::start(cfg, sources, feed))
        .unwrap_or_else(|e| panic!("gateway on {url} did not start: {e:#}"))
}

/// Waits until `/stats` `bus.<field>` equals `want`.
async fn bus_stat(addr: SocketAddr, field: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats(addr).await;
        if s["bus"][field].as_u64() == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "bus.{field} never reached {want}: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interest_mode_follows_only_the_symbols_clients_hold_through_an_outage() {
    let Some(bin) = nats_binary() else { return };
    let dir = scratch("interest");
    let mut nats = Nats::start(bin, dir.clone());
    // Uniform activity, so the share of messages follows the share of symbols.
    let publisher = Publisher::start(
        &nats.url(),
        &dir,
        &["--feed", "sim", "--rate", "2000", "--symbols", "50", "--zipf-exponent", "0"],
    );
    let every = gateway(&nats.url());
    let held = interest_gateway(&nats.url());
    let addr = held.local_addr();
    let mut c = Client::connect(addr, "").await;
    let names = c.list().await;
    assert_eq!(names.len(), 50, "the universe is the whole one");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = stats(addr).await;
    assert_eq!(s["bus"]["subscriptions"].as_u64(), Some(0), "nothing held, nothing followed: {s}");
    assert_eq!(s["bus"]["received"].as_u64(), Some(0), "{s}");

    // Three symbols held: three subscriptions, each with its last value from JetStream.
    let mine: Vec<&str> = names[..3].iter().map(String::as_str).collect();
    c.subscribe(&mine, "").await;
    bus_stat(addr, "subscriptions", 3).await;
    let seen = collect(&mut c, &HashMap::new(), Duration::from_millis(800), |_| {}).await;
    for n in &mine {
        assert!(seen.contains_key(*n), "{n}: no value after subscribing: {seen:?}");
    }
    // Two clients of a symbol, and one leaving: the subscription stays.
    let mut other = Client::connect(addr, "").await;
    other.subscribe(&mine[..1], "").await;
    other.send(&format!(r#"{{"op":"unsubscribe","symbols":["{}"]}}"#, mine[0])).await;
    while other.json().await["type"] != "unsubscribed" {}
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(stats(addr).await["bus"]["subscriptions"].as_u64(), Some(3));

    // An outage: the client library resubscribes, the held symbols are re-read.
    nats.kill();
    expect_status(&mut c, "down", Duration::from_secs(5)).await;
    nats.restart();
    expect_status(&mut c, "up", Duration::from_secs(15)).await;
    assert!(
        !collect(&mut c, &HashMap::new(), Duration::from_millis(800), |_| {}).await.is_empty(),
        "live again"
    );

    // The last client leaves: after the linger, nothing is followed.
    c.send(&format!(r#"{{"op":"unsubscribe","symbols":["{}","{}","{}"]}}"#, mine[0], mine[1], mine[2])).await;
    bus_stat(addr, "subscriptions", 0).await;
    let s = stats(addr).await;
    assert_eq!(
        (s["bus"]["subscribes"].as_u64(), s["bus"]["unsubscribes"].as_u64()),
        (Some(3), Some(3)),
        "{s}"
    );

    // Held symbols converge with a gateway that takes everything, and cost a fraction of it.
    let mut d = Client::connect(addr, "").await;
    d.subscribe(&mine, "").await;
    bus_stat(addr, "subscriptions", 3).await;
    publisher.stop(&dir);
    let want: HashMap<String, Tick> = all_values(every.local_addr(), &mine).await;
    converge(addr, &mine, &want, "interest gateway vs all").await;
    let (a, b) = (stats(every.local_addr()).await, stats(addr).await);
    let (all_rx, held_rx) = (a["bus"]["received"].as_u64().unwrap(), b["bus"]["received"].as_u64().unwrap());
    assert!(held_rx * 5 < all_rx, "3 of 50 symbols held: {held_rx} messages vs {all_rx}");
    every.shutdown();
    held.shutdown();
}

/// `GET /snapshot?symbols=..&depth=N`: each symbol's book as (bids, asks, stale).
type BusBook = (Vec<(f64, f64)>, Vec<(f64, f64)>, bool);

async fn books_of(addr: SocketAddr, names: &[&str], depth: usize) -> HashMap<String, BusBook> {
    let (status, text) =
        http_get(addr, &format!("/snapshot?symbols={}&depth={depth}", names.join(",")), "").await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(body(&text)).unwrap();
    let side = |b: &Value, k: &str| -> Vec<(f64, f64)> {
        b[k].as_array().unwrap().iter().map(|l| (l[0].as_f64().unwrap(), l[1].as_f64().unwrap())).collect()
    };
    v.as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "book")
        .map(|b| {
            (
                b["symbol"].as_str().unwrap().to_string(),
                (side(b, "bids"), side(b, "asks"), b["stale"].as_bool().unwrap()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_books_travel_the_bus_to_live_late_and_interest_gateways() {
    let Some(bin) = nats_binary() else { return };
    let dir = scratch("books");
    let nats = Nats::start(bin, dir.clone());
    let publisher = Publisher::start(
        &nats.url(),
        &dir,
        &[
            "--feed",
            "sim",
            "--symbols",
            "20",
            "--rate",
            "2000",
            "--ticks",
            "6000",
            "--zipf-exponent",
            "0",
            "--depth-levels",
            "12",
        ],
    );
    let live = gateway(&nats.url());
    let names: Vec<String> = (0..20).map(|i| live.app().universe.name(i).to_string()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut c = Client::connect(live.local_addr(), "format=json").await;
    c.subscribe(&names[..3], r#","depth":5"#).await;
    let mut books = 0;
    let deadline = Instant::now() + WAIT;
    while books < 20 {
        assert!(Instant::now() < deadline, "only {books} books arrived over the bus");
        if let Some(Some(Frame::Json(v))) = c.next_within(Duration::from_millis(200)).await
            && v["type"] == "book"
        {
            let bids = v["bids"].as_array().unwrap();
            assert!(!bids.is_empty() && bids.len() <= 5, "{v}");
            books += 1;
        }
    }
    publisher.wait(&dir);
    wait_feed_end(live.local_addr()).await;
    let want = books_of(live.local_addr(), &names, 12).await;
    assert_eq!(want.len(), 20, "every simulated symbol has a book");
    assert!(want.values().all(|(b, a, stale)| b.len() == 12 && a.len() == 12 && !stale), "{want:?}");
    // A gateway started after the publisher finished has every book from JetStream, and one
    // following only what its clients hold gets the book of a symbol on subscribing.
    let late = gateway(&nats.url());
    let deadline = Instant::now() + WAIT;
    while books_of(late.local_addr(), &names, 12).await != want {
        assert!(Instant::now() < deadline, "the late gateway's books never matched");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = interest_gateway(&nats.url());
    let mut c = Client::connect(held.local_addr(), "format=json").await;
    c.subscribe(&names[7..8], r#","depth":12"#).await;
    let deadline = Instant::now() + WAIT;
    loop {
        match c.next_within(Duration::from_millis(200)).await {
            Some(Some(Frame::Json(v))) if v["type"] == "book" => {
                let got = books_of(held.local_addr(), &names[7..8], 12).await;
                assert_eq!(got[names[7]], want[names[7]], "the interest gateway's book");
                assert_eq!(v["bids"].as_array().map(Vec::len), Some(12));
                break;
            }
            _ => assert!(Instant::now() < deadline, "no book on the interest gateway"),
        }
    }
    for g in [live, late, held] {
        g.shutdown();
    }
}
