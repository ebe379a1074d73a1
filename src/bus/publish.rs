//! `tickgate feed --publish nats://HOST:PORT`: runs only a feed and publishes it.
//!
//! - Creates the JetStream stream (`feed.nats_stream`, over `<prefix>.>`, one message per
//!   subject, file storage) if it is missing, so NATS itself holds the latest tick of every
//!   symbol for gateways that start later.
//! - Publishes the universe (`<prefix>.$universe`) and waits for JetStream's acknowledgement.
//! - Continues each symbol's `seq` from the last value in JetStream, so a restarted
//!   publisher's ticks are newer than what gateways hold.
//! - Drives the source on the wall clock, stamps each tick's `ts_gateway` (the gateways use
//!   it to measure the bus hop), and publishes it on `<prefix>.<SYMBOL>`.
//! - A source that keeps order books (capture replays, the simulator) has each change
//!   published whole, the top `server.max_depth` levels a side, on `<prefix>.$book.<SYMBOL>`.
//! - After a reconnect, republishes the universe and the latest tick and book of every symbol: ticks
//!   published while NATS was away may be lost, and this brings JetStream and every gateway
//!   back to the current state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use bytes::Bytes;
use tickgate_feeds::{FeedPoll, FeedSource, Tick, TradeCounter};
use tokio::sync::mpsc;

use super::{BusConfig, wire};
use crate::clock::now_ns;
use crate::feed::{MAX_SLEEP, MIN_SLEEP};

/// Ticks published between checks of the stop flag and connection events.
const BATCH: usize = 256;

/// Counts of a publisher run.
#[derive(Debug, Default, Clone, Copy)]
pub struct PublishReport {
    /// Ticks published.
    pub published: u64,
    /// Latest-value republications after reconnects.
    pub republished: u64,
    /// Reconnects.
    pub reconnects: u64,
    /// Order-book changes published.
    pub books: u64,
}

async fn ensure_stream(js: &async_nats::jetstream::Context, cfg: &BusConfig) -> anyhow::Result<()> {
    use async_nats::jetstream::stream::{Config, DiscardPolicy, StorageType};
    let want = Config {
        name: cfg.stream.clone(),
        subjects: vec![format!("{}.>", cfg.prefix)],
        max_messages_per_subject: 1,
        discard: DiscardPolicy::Old,
        storage: StorageType::File,
        allow_direct: true,
        ..Default::default()
    };
    js.get_or_create_stream(want).await.map_err(|e| anyhow!("creating stream {}: {e}", cfg.stream))?;
    Ok(())
}

/// Publishes ticks from `source` to NATS at `url` until the source ends or `stop` is set.
///
/// # Errors
/// If NATS is not reachable within `cfg.wait`, or the stream cannot be created.
pub fn run(
    url: &str,
    cfg: &BusConfig,
    mut source: Box<dyn FeedSource>,
    limit: Option<u64>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<PublishReport> {
    // One worker runs the NATS connection; this thread runs the feed loop (it sleeps for
    // pacing with the OS timer, finer than the runtime's millisecond timer).
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async move {
        let (ev_tx, mut events) = mpsc::unbounded_channel();
        let client = super::connect(url, "tickgate-feed", ev_tx, Instant::now() + cfg.wait).await?;
        let js = async_nats::jetstream::new(client.clone());
        ensure_stream(&js, cfg).await?;
        let universe = source.universe().clone();
        let subjects: Vec<async_nats::Subject> =
            universe.symbols().iter().map(|s| async_nats::Subject::from(cfg.subject(&s.name))).collect();
        let universe_payload = Bytes::from(wire::encode_universe(&universe));
        js.publish(cfg.universe_subject(), universe_payload.clone())
            .await
            .map_err(|e| anyhow!("publishing the universe: {e}"))?
            .await
            .map_err(|e| anyhow!("storing the universe: {e}"))?;
        // Continue numbering from what the bus already holds.
        let stream = js.get_stream(&cfg.stream).await.context("reading the stream back")?;
        let mut offset = vec![0u64; universe.len()];
        let mut trades = TradeCounter::new(universe.len());
        for (id, s) in universe.symbols().iter().enumerate() {
            if let Ok(m) = stream.get_last_raw_message_by_subject(&cfg.subject(&s.name)).await
                && let Ok(t) = wire::decode_tick(&m.payload, id as u32)
            {
                offset[id] = t.seq;
                trades.resume(id as u32, t.trades);
            }
        }
        let resumed = offset.iter().filter(|&&o| o > 0).count();
        tracing::info!(%url, stream = %cfg.stream, symbols = universe.len(), resumed, source = %source.describe(),
            "publishing feed to NATS");

        let book_subjects: Vec<async_nats::Subject> =
            universe.symbols().iter().map(|s| async_nats::Subject::from(cfg.book_subject(&s.name))).collect();
        let mut last: Vec<Option<Tick>> = vec![None; universe.len()];
        // The latest book payload of each symbol (for the republish after a reconnect).
        let mut last_books: Vec<Option<Bytes>> = vec![None; universe.len()];
        let (mut bids, mut asks) = (Vec::new(), Vec::new());
        let mut report = PublishReport::default();
        let mut buf = Vec::with_capacity(64);
        let (mut down, started) = (false, Instant::now());
        let mut next_log = Instant::now() + Duration::from_secs(10);
        // The feed itself ended (a finite source, or --ticks reached), not a stop request.
        let mut ended = false;
        'run: while !stop.load(Ordering::Acquire) {
            while let Ok(ev) = events.try_recv() {
                match ev {
                    async_nats::Event::Disconnected if !down => {
                        down = true;
                        tracing::warn!(%url, "NATS connection lost; reconnecting (ticks published meanwhile may be lost)");
                    }
                    async_nats::Event::Connected if down => {
                        down = false;
                        report.reconnects += 1;
                        let mut n = republish(&client, &js, cfg, &universe_payload, &subjects, &last).await;
                        for (subject, b) in book_subjects.iter().zip(&last_books) {
                            if let Some(b) = b
                                && client.publish(subject.clone(), b.clone()).await.is_ok()
                            {
                                n += 1;
                            }
                        }
                        report.republished += n;
                        tracing::info!(%url, republished = n, "NATS reconnected; latest values republished");
                    }
                    other => tracing::debug!(event = %other, "NATS event"),
                }
            }
            let mut wait = None;
            for _ in 0..BATCH {
                if limit.is_some_and(|l| report.published >= l) {
                    ended = true;
                    break 'run;
                }
                let now = now_ns();
                match source.poll(now) {
                    FeedPoll::Tick(mut t) => {
                        let i = t.symbol as usize;
                        let Some(subject) = subjects.get(i) else { continue };
                        t.seq += offset[i];
                        // Numbered here, so a gateway sees trades lost on the bus as a gap.
                        trades.stamp(&mut t);
                        t.ts_gateway = now_ns();
                        buf.clear();
                        wire::encode_tick(&mut buf, &t);
                        last[i] = Some(t);
                        // Queued to the connection task; awaits only when its buffer is full.
                        if client.publish(subject.clone(), Bytes::copy_from_slice(&buf)).await.is_err() {
                            tracing::warn!("NATS client closed");
                            break 'run;
                        }
                        report.published += 1;
                    }
                    FeedPoll::Pending { until_ns } => {
                        wait = Some(until_ns.unwrap_or(now + 100_000));
                        break;
                    }
                    FeedPoll::Book { symbol, ts_event } => {
                        let i = symbol as usize;
                        let Some(subject) = book_subjects.get(i) else { continue };
                        let Some(health) = source.book_levels(symbol, cfg.book_depth, &mut bids, &mut asks) else {
                            continue;
                        };
                        if health == tickgate_feeds::BookHealth::Stale {
                            // Its levels are not to be published (they may be crossed): the
                            // gateways keep their last good ones.
                            bids.clear();
                            asks.clear();
                        }
                        buf.clear();
                        wire::encode_book(&mut buf, health, ts_event, &bids, &asks);
                        let payload = Bytes::copy_from_slice(&buf);
                        last_books[i] = Some(payload.clone());
                        if client.publish(subject.clone(), payload).await.is_err() {
                            tracing::warn!("NATS client closed");
                            break 'run;
                        }
                        report.books += 1;
                    }
                    FeedPoll::Status { .. } => {}
                    FeedPoll::End => {
                        ended = true;
                        break 'run;
                    }
                }
            }
            if let Some(until) = wait {
                let d = Duration::from_nanos(until.saturating_sub(now_ns())).clamp(MIN_SLEEP, MAX_SLEEP);
                std::thread::sleep(d);
            }
            if Instant::now() >= next_log {
                next_log += Duration::from_secs(10);
                let secs = started.elapsed().as_secs_f64();
                tracing::info!(published = report.published, rate = format!("{:.0}/s", report.published as f64 / secs),
                    "feed publisher");
            }
        }
        if ended {
            // Tell the gateways following the bus that this feed is over (their /stats then
            // say feed_ended, as for a finite local feed).
            if let Err(e) = client.publish(cfg.end_subject(), Bytes::new()).await {
                tracing::warn!(error = %e, "publishing the end of the feed");
            }
        }
        if let Err(e) = client.flush().await {
            tracing::warn!(error = %e, "flushing NATS at the end");
        }
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(published = report.published, reconnects = report.reconnects, republished = report.republished,
            ticks_per_sec = format!("{:.0}", report.published as f64 / secs.max(1e-9)), "feed publisher done");
        Ok(report)
    })
}

/// Republishes the universe and the latest tick of every symbol (after a reconnect).
async fn republish(
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    cfg: &BusConfig,
    universe: &Bytes,
    subjects: &[async_nats::Subject],
    last: &[Option<Tick>],
) -> u64 {
    if let Err(e) = ensure_stream(js, cfg).await {
        tracing::warn!(error = %format!("{e:#}"), "re-creating the stream after reconnect");
    }
    let _ = client.publish(cfg.universe_subject(), universe.clone()).await;
    let mut n = 0;
    let mut buf = Vec::with_capacity(64);
    for (subject, t) in subjects.iter().zip(last) {
        if let Some(t) = t {
            buf.clear();
            wire::encode_tick(&mut buf, t);
            if client.publish(subject.clone(), Bytes::copy_from_slice(&buf)).await.is_ok() {
                n += 1;
            }
        }
    }
    let _ = client.flush().await;
    n
}
