//! The gateway side of the bus: [`NatsSource`], a [`FeedSource`] fed by NATS.
//!
//! A thread (`tickgate-nats`) runs the NATS client on its own small runtime:
//! 1. connect (retrying until `feed.nats_wait`), read the universe from JetStream;
//! 2. subscribe to `<prefix>.>` first, then warm up: the last message of every symbol's
//!    subject from JetStream, so nothing published meanwhile is missed;
//! 3. forward every decoded tick to the feed thread through a bounded channel (when the feed
//!    thread falls behind, the channel's back-pressure slows our reads and NATS buffers);
//! 4. on a disconnect, tell the feed thread (`Status { up: false }`); on the reconnect, warm
//!    up again (catching up on what the outage hid), then `Status { up: true }`.
//!
//! With `feed.nats_interest = subscribed` step 2 follows the clients instead: no `<prefix>.>`
//! and no warm-up of the whole universe; the first client of a symbol (anywhere on the
//! gateway, [`Interest`]) opens a subscription to `<prefix>.<SYMBOL>` and then reads that
//! symbol's last value from JetStream (subscribe first, so no tick falls in between), and
//! the subscription is closed `feed.nats_linger` after the last client left. A reconnect
//! re-warms only the held symbols (the client library re-subscribes by itself).
//!
//! Order books travel the same way on `<prefix>.$book.<SYMBOL>` (the whole top each time):
//! the gateway keeps the latest per symbol and reports each as a book change; warm-up and
//! interest subscriptions read and follow a symbol's book subject beside its tick subject.
//!
//! The feed thread's `poll` never blocks: it takes what the channel holds.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use tickgate_feeds::{BookHealth, FeedPoll, FeedSource, Tick, Universe};
use tokio::sync::mpsc;

use super::{BusConfig, BusStats, wire};
use crate::interest::Interest;

/// Ticks the channel to the feed thread holds.
pub const CHANNEL_CAPACITY: usize = 65_536;

/// JetStream last-value reads in flight during warm-up.
const WARM_CONCURRENCY: usize = 64;

/// How often the feed thread's hop samples are merged into [`BusStats::hop`].
const HOP_MERGE_EVERY_NS: u64 = 1_000_000_000;

enum Item {
    /// A live tick from the subscription.
    Tick(Tick),
    /// The publisher's finite feed ended.
    End,
    /// A stored last value from JetStream (its stamp is old: not a hop sample).
    Warm(Tick),
    /// A symbol's order book, live or stored.
    Book(u32, wire::WireBook),
    Status(bool),
}

/// A feed source that follows ticks on a NATS bus.
pub struct NatsSource {
    universe: Universe,
    url: String,
    rx: mpsc::Receiver<Item>,
    stats: Arc<BusStats>,
    hop: Histogram<u64>,
    hop_merged_at: u64,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The latest book of each symbol that has one (read by `book_levels`).
    books: Vec<Option<wire::WireBook>>,
}

impl NatsSource {
    /// Connects to `url`, reads the universe, and starts following ticks. Waits at most
    /// `cfg.wait` for the server and the publisher's universe.
    ///
    /// # Errors
    /// If NATS or the universe is not there in time, or the universe is malformed.
    pub fn connect(
        url: &str,
        cfg: &BusConfig,
    ) -> anyhow::Result<(NatsSource, Arc<BusStats>, Option<Arc<Interest>>)> {
        let stats = Arc::new(BusStats::default());
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (url2, cfg2, stats2) = (url.to_string(), cfg.clone(), stats.clone());
        let thread = std::thread::Builder::new().name("tickgate-nats".into()).spawn(move || {
            rt.block_on(async move {
                tokio::select! {
                    r = follow(url2, cfg2, stats2, tx, ready_tx) => {
                        if let Err(e) = r {
                            tracing::error!(error = %format!("{e:#}"), "NATS feed stopped");
                        }
                    }
                    _ = stop_rx => {}
                }
            });
        })?;
        let (universe, interest) = match ready_rx.recv_timeout(cfg.wait + Duration::from_secs(2)) {
            Ok(r) => r?,
            Err(_) => return Err(anyhow!("no universe from {url} within {:?} (feed.nats_wait)", cfg.wait)),
        };
        let src = NatsSource {
            books: vec![None; universe.len()],
            universe,
            url: url.to_string(),
            rx,
            stats: stats.clone(),
            hop: crate::stats::latency_histogram(),
            hop_merged_at: 0,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        Ok((src, stats, interest))
    }
}

impl Drop for NatsSource {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl FeedSource for NatsSource {
    fn universe(&self) -> &Universe {
        &self.universe
    }

    fn poll(&mut self, now_ns: u64) -> FeedPoll {
        if now_ns.saturating_sub(self.hop_merged_at) >= HOP_MERGE_EVERY_NS {
            self.hop_merged_at = now_ns;
            if !self.hop.is_empty()
                && let Ok(mut h) = self.stats.hop.lock()
            {
                let _ = h.add(&self.hop);
                self.hop.reset();
            }
        }
        match self.rx.try_recv() {
            Ok(Item::Tick(t)) => {
                if t.ts_gateway != 0 {
                    let _ = self
                        .hop
                        .record(now_ns.saturating_sub(t.ts_gateway).clamp(1, crate::stats::LATENCY_MAX_NS));
                }
                FeedPoll::Tick(t)
            }
            Ok(Item::Warm(t)) => FeedPoll::Tick(t),
            Ok(Item::Book(id, b)) => match self.books.get_mut(id as usize) {
                Some(slot) => {
                    let ts_event = b.ts_event;
                    *slot = Some(b);
                    FeedPoll::Book { symbol: id, ts_event }
                }
                None => FeedPoll::Pending { until_ns: None },
            },
            Ok(Item::End) => FeedPoll::End,
            Ok(Item::Status(up)) => FeedPoll::Status { up },
            Err(mpsc::error::TryRecvError::Empty) => FeedPoll::Pending { until_ns: None },
            Err(mpsc::error::TryRecvError::Disconnected) => FeedPoll::End,
        }
    }

    fn describe(&self) -> String {
        format!("nats({}, {} symbols)", self.url, self.universe.len())
    }

    fn book_levels(
        &self,
        symbol: u32,
        depth: usize,
        bids: &mut Vec<(i64, i64)>,
        asks: &mut Vec<(i64, i64)>,
    ) -> Option<BookHealth> {
        let b = self.books.get(symbol as usize)?.as_ref()?;
        tickgate_feeds::source::copy_levels(&b.bids, &b.asks, depth, bids, asks);
        Some(b.health)
    }
}

/// Reads the universe from JetStream, retrying until `deadline` (the publisher may start
/// after us).
async fn universe(
    js: &async_nats::jetstream::Context,
    cfg: &BusConfig,
    deadline: Instant,
) -> anyhow::Result<Universe> {
    let mut logged = false;
    loop {
        let got = match js.get_stream(&cfg.stream).await {
            Ok(s) => {
                s.get_last_raw_message_by_subject(&cfg.universe_subject()).await.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match got {
            Ok(m) => return wire::decode_universe(&m.payload).context("the publisher's universe"),
            Err(e) if Instant::now() < deadline => {
                if !logged {
                    tracing::warn!(stream = %cfg.stream, error = %e, "no universe on the bus yet (is `tickgate feed --publish` running?); waiting");
                    logged = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(anyhow!("no universe in stream {} ({e})", cfg.stream)),
        }
    }
}

/// Sends the last stored tick of each symbol of `ids` to the feed thread.
async fn warm(
    js: &async_nats::jetstream::Context,
    cfg: &BusConfig,
    universe: &Universe,
    ids: impl Iterator<Item = u32>,
    stats: &BusStats,
    tx: &mpsc::Sender<Item>,
) -> anyhow::Result<u64> {
    let stream = js.get_stream(&cfg.stream).await.map_err(|e| anyhow!("stream {}: {e}", cfg.stream))?;
    let stream = &stream;
    // Each symbol's last tick and last book.
    let mut reads = futures_util::stream::iter(ids.flat_map(|id| [(id, false), (id, true)]))
        .map(|(id, book)| {
            let name = universe.name(id);
            let subject = if book { cfg.book_subject(name) } else { cfg.subject(name) };
            async move { (id, book, stream.get_last_raw_message_by_subject(&subject).await) }
        })
        .buffer_unordered(WARM_CONCURRENCY);
    let mut n = 0;
    while let Some((id, book, r)) = reads.next().await {
        let m = match r {
            Ok(m) => m,
            Err(e)
                if matches!(
                    e.kind(),
                    async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound
                ) =>
            {
                continue;
            }
            Err(e) => return Err(anyhow!("reading last values: {e}")),
        };
        if book {
            match wire::decode_book(&m.payload) {
                Ok(b) => {
                    if tx.send(Item::Book(id, b)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(subject = %m.subject, error = %e, "undecodable last book skipped");
                }
            }
            continue;
        }
        match wire::decode_tick(&m.payload, id) {
            Ok(t) => {
                n += 1;
                if tx.send(Item::Warm(t)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(subject = %m.subject, error = %e, "undecodable last value skipped");
            }
        }
    }
    stats.warmed.fetch_add(n, Ordering::Relaxed);
    Ok(n)
}

async fn follow(
    url: String,
    cfg: BusConfig,
    stats: Arc<BusStats>,
    tx: mpsc::Sender<Item>,
    ready: std::sync::mpsc::SyncSender<anyhow::Result<(Universe, Option<Arc<Interest>>)>>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + cfg.wait;
    let (ev_tx, mut events) = mpsc::unbounded_channel();
    let setup = async {
        let client = super::connect(&url, "tickgate-gateway", ev_tx, deadline).await?;
        let js = async_nats::jetstream::new(client.clone());
        let universe = universe(&js, &cfg, deadline).await?;
        anyhow::Ok((client, js, universe))
    };
    let (client, js, universe) = match setup.await {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(anyhow!("{e:#}")));
            return Ok(());
        }
    };
    stats.connected.store(true, Ordering::Release);
    if cfg.interest {
        let interest = Arc::new(Interest::new(universe.len()));
        let _ = ready.send(Ok((universe.clone(), Some(interest.clone()))));
        tracing::info!(%url, symbols = universe.len(), linger = ?cfg.linger,
            "NATS feed: following the symbols clients hold (feed.nats_interest = subscribed)");
        let bus = Bus {
            url: &url,
            cfg: &cfg,
            stats: &stats,
            tx: &tx,
            client: &client,
            js: &js,
            universe: &universe,
        };
        return follow_held(bus, &interest, events).await;
    }
    let mut sub = client
        .subscribe(format!("{}.>", cfg.prefix))
        .await
        .map_err(|e| anyhow!("subscribing to {}.>: {e}", cfg.prefix))?;
    stats.subscriptions.store(1, Ordering::Relaxed);
    let _ = ready.send(Ok((universe.clone(), None)));
    let n = warm(&js, &cfg, &universe, 0..universe.len() as u32, &stats, &tx).await?;
    tracing::info!(%url, symbols = universe.len(), warmed = n, "NATS feed: last values loaded, following live ticks");
    let mut down = false;
    loop {
        tokio::select! {
            msg = sub.next() => {
                let Some(msg) = msg else { return Err(anyhow!("the NATS subscription ended")) };
                if !forward(&cfg, &universe, &stats, &tx, msg).await {
                    return Ok(());
                }
            }
            ev = events.recv() => {
                let bus = Bus { url: &url, cfg: &cfg, stats: &stats, tx: &tx, client: &client, js: &js, universe: &universe };
                if !on_event(&bus, ev, &mut down, || 0..universe.len() as u32).await {
                    return Ok(());
                }
            }
        }
    }
}

/// What the bus loops work with.
struct Bus<'a> {
    url: &'a str,
    cfg: &'a BusConfig,
    stats: &'a Arc<BusStats>,
    tx: &'a mpsc::Sender<Item>,
    client: &'a async_nats::Client,
    js: &'a async_nats::jetstream::Context,
    universe: &'a Universe,
}

/// Decodes one tick message and hands it to the feed thread. False once the feed thread is
/// gone.
async fn forward(
    cfg: &BusConfig,
    universe: &Universe,
    stats: &BusStats,
    tx: &mpsc::Sender<Item>,
    msg: async_nats::Message,
) -> bool {
    if msg.subject.as_str() == cfg.end_subject() {
        tracing::info!("the publisher's feed ended");
        return tx.send(Item::End).await.is_ok();
    }
    let subject = msg.subject.as_str();
    let (symbol, book) = match (cfg.symbol_of(subject), cfg.book_symbol_of(subject)) {
        (Some(s), _) => (s, false),
        (None, Some(s)) => (s, true),
        (None, None) => return true,
    };
    stats.received.fetch_add(1, Ordering::Relaxed);
    let Some(id) = universe.id(symbol) else {
        stats.rejected.fetch_add(1, Ordering::Relaxed);
        return true;
    };
    if book { forward_book(id, stats, tx, msg).await } else { forward_as(id, stats, tx, msg).await }
}

/// Decodes one book message of symbol `id` and hands it to the feed thread. False once the
/// feed thread is gone.
async fn forward_book(id: u32, stats: &BusStats, tx: &mpsc::Sender<Item>, msg: async_nats::Message) -> bool {
    stats.received_bytes.fetch_add(msg.payload.len() as u64, Ordering::Relaxed);
    match wire::decode_book(&msg.payload) {
        Ok(b) => tx.send(Item::Book(id, b)).await.is_ok(),
        Err(e) => {
            if stats.rejected.fetch_add(1, Ordering::Relaxed) < 10 {
                tracing::warn!(subject = %msg.subject, error = %e, "undecodable book skipped");
            }
            true
        }
    }
}

/// Decodes one tick message of symbol `id` and hands it to the feed thread. False once the
/// feed thread is gone.
async fn forward_as(id: u32, stats: &BusStats, tx: &mpsc::Sender<Item>, msg: async_nats::Message) -> bool {
    stats.received_bytes.fetch_add(msg.payload.len() as u64, Ordering::Relaxed);
    match wire::decode_tick(&msg.payload, id) {
        Ok(t) => tx.send(Item::Tick(t)).await.is_ok(),
        Err(e) => {
            if stats.rejected.fetch_add(1, Ordering::Relaxed) < 10 {
                tracing::warn!(subject = %msg.subject, error = %e, "undecodable tick skipped");
            }
            true
        }
    }
}

/// A NATS connection event: tells the feed thread the bus went down or came back (after
/// re-reading the last values of `warm_ids`). False once the feed thread is gone.
async fn on_event<I: Iterator<Item = u32>>(
    bus: &Bus<'_>,
    ev: Option<async_nats::Event>,
    down: &mut bool,
    warm_ids: impl FnOnce() -> I,
) -> bool {
    let (url, stats, tx) = (bus.url, bus.stats, bus.tx);
    match ev {
        Some(async_nats::Event::Disconnected) if !*down => {
            *down = true;
            stats.connected.store(false, Ordering::Release);
            stats.disconnects.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%url, "NATS connection lost; serving last values, reconnecting");
            tx.send(Item::Status(false)).await.is_ok()
        }
        Some(async_nats::Event::Connected) if *down => {
            *down = false;
            stats.connected.store(true, Ordering::Release);
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
            match warm(bus.js, bus.cfg, bus.universe, warm_ids(), stats, tx).await {
                Ok(n) => tracing::info!(%url, caught_up = n, "NATS reconnected; last values reloaded"),
                Err(e) => {
                    tracing::warn!(%url, error = %format!("{e:#}"), "NATS reconnected; reloading last values failed");
                }
            }
            tx.send(Item::Status(true)).await.is_ok()
        }
        Some(e) => {
            tracing::debug!(event = %e, "NATS event");
            true
        }
        None => true,
    }
}

/// Opens the bus subscriptions of symbol `id` (its ticks and its book): a task forwarding
/// them.
async fn open(bus: &Bus<'_>, id: u32) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let name = bus.universe.name(id);
    let (subject, book_subject) = (bus.cfg.subject(name), bus.cfg.book_subject(name));
    let ticks =
        bus.client.subscribe(subject.clone()).await.map_err(|e| anyhow!("subscribing to {subject}: {e}"))?;
    let books = bus
        .client
        .subscribe(book_subject.clone())
        .await
        .map_err(|e| anyhow!("subscribing to {book_subject}: {e}"))?;
    let mut both = futures_util::stream::select(ticks.map(|m| (false, m)), books.map(|m| (true, m)));
    let (stats, tx) = (bus.stats.clone(), bus.tx.clone());
    Ok(tokio::spawn(async move {
        while let Some((book, msg)) = both.next().await {
            stats.received.fetch_add(1, Ordering::Relaxed);
            let alive = if book {
                forward_book(id, &stats, &tx, msg).await
            } else {
                forward_as(id, &stats, &tx, msg).await
            };
            if !alive {
                return;
            }
        }
    }))
}

/// How often lingering subscriptions are checked for closing.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// `feed.nats_interest = subscribed`: one subscription per symbol the gateway's clients hold.
async fn follow_held(
    bus: Bus<'_>,
    interest: &Interest,
    mut events: mpsc::UnboundedReceiver<async_nats::Event>,
) -> anyhow::Result<()> {
    let stats = bus.stats;
    let mut end = bus
        .client
        .subscribe(bus.cfg.end_subject())
        .await
        .map_err(|e| anyhow!("subscribing to the end subject: {e}"))?;
    let mut subs: HashMap<u32, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut lingering: HashMap<u32, tokio::time::Instant> = HashMap::new();
    let mut changed = Vec::new();
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut down = false;
    loop {
        tokio::select! {
            () = interest.changed() => {
                interest.take_changed(&mut changed);
                let mut opened = Vec::new();
                for &s in &changed {
                    if interest.held(s) {
                        lingering.remove(&s);
                        if subs.contains_key(&s) {
                            continue;
                        }
                        match open(&bus, s).await {
                            Ok(task) => {
                                subs.insert(s, task);
                                stats.subscribes.fetch_add(1, Ordering::Relaxed);
                                opened.push(s);
                            }
                            Err(e) => tracing::warn!(error = %format!("{e:#}"), "NATS: could not subscribe"),
                        }
                    } else if subs.contains_key(&s) {
                        lingering.entry(s).or_insert_with(|| tokio::time::Instant::now() + bus.cfg.linger);
                    }
                }
                stats.subscriptions.store(subs.len() as u64, Ordering::Relaxed);
                // Subscribed first, then the stored value: no tick can fall in between.
                if !opened.is_empty()
                    && let Err(e) = warm(bus.js, bus.cfg, bus.universe, opened.into_iter(), stats, bus.tx).await
                {
                    tracing::warn!(error = %format!("{e:#}"), "NATS: reading last values failed");
                }
            }
            _ = sweep.tick() => {
                let now = tokio::time::Instant::now();
                lingering.retain(|s, at| {
                    if interest.held(*s) {
                        return false;
                    }
                    if *at > now {
                        return true;
                    }
                    if let Some(task) = subs.remove(s) {
                        // Dropping the subscriber unsubscribes on the server.
                        task.abort();
                        stats.unsubscribes.fetch_add(1, Ordering::Relaxed);
                    }
                    false
                });
                stats.subscriptions.store(subs.len() as u64, Ordering::Relaxed);
            }
            Some(_) = end.next() => {
                // The symbol tasks may still hold ticks published before the end (each
                // subscription has its own channel): let them forward those first.
                tokio::time::sleep(Duration::from_millis(200)).await;
                tracing::info!("the publisher's feed ended");
                if bus.tx.send(Item::End).await.is_err() {
                    return Ok(());
                }
            }
            ev = events.recv() => {
                let held: Vec<u32> = subs.keys().copied().collect();
                if !on_event(&bus, ev, &mut down, || held.into_iter()).await {
                    return Ok(());
                }
            }
        }
    }
}
