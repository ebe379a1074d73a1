//! The embedded default feed: a deterministic simulated market.
//!
//! # The model
//!
//! - **Prices.** Every symbol has a mid price that follows geometric Brownian motion, starting
//!   at its reference price from the [`Universe`]. The mid moves only on quote events, by
//!   `exp(σ·√dt·z − σ²·dt/2)` where `dt` is the event time elapsed since the symbol's previous
//!   quote, `σ` is [`SimConfig::volatility`] (annualized over a trading year of 252 days of
//!   6.5 hours) and `z` is standard normal; the `−σ²·dt/2` term keeps the expected mid flat.
//!   The mid is an internal `f64`; everything that leaves the simulator is fixed point on the
//!   symbol's tick grid.
//! - **Quotes.** Bid and ask are whole ticks straddling the mid, `spread` ticks apart: a
//!   per-symbol base plus 0–2 ticks of noise, so 1–3 ticks for ordinary names. The base is
//!   1 tick except at the ends of the price range: names above ~$667 (where a cent is a
//!   sliver of a basis point) get one tick per 0.3 bp of price, and sub-dollar names are
//!   quoted about 0.2 % wide. The bid never drops below one tick, so prices are always
//!   positive. Sizes are 1..=50 round lots of 100 shares, skewed towards small.
//! - **Trades.** [`SimConfig::trade_percent`] of events are trades: mostly at the bid or the
//!   ask (the aggressor's side), sometimes inside a wide spread; 1..=32 lots, geometrically
//!   distributed (half of all trades are one lot). A trade takes size off the side it hit
//!   (never below one lot: hidden liquidity refills it) and adds to the cumulative volume.
//! - **Activity.** Each event picks its symbol with Zipf-skewed probability
//!   `1 / (rank + 1)^s`, `s` = [`SimConfig::zipf_exponent`], where rank is the symbol id. The
//!   default universe file lists the most active names first, so SPY, QQQ and NVDA carry the
//!   most traffic, as they do in a real market. Draws use an alias table: O(1), one random
//!   number per pick.
//! - **Order books.** With [`SimConfig::depth_levels`] > 0 every event is followed by a
//!   [`FeedPoll::Book`] of its symbol: a ladder of that many levels a side whose touch is the
//!   quote (best bid and ask, their sizes), then levels at most a few ticks apart (about one
//!   price in five left empty), sizes growing with distance from the touch. A level's size
//!   depends on its price and on an epoch that advances more slowly the deeper the level, so
//!   the top of the book moves with every event and the depths change now and then, as on
//!   a venue. Computed on demand ([`FeedSource::book_levels`]), so books cost nothing unless read.
//! - **Pacing.** [`SimConfig::rate`] ticks per second on a schedule anchored at the start
//!   time, optionally multiplied by [`SimConfig::burst_factor`] during periodic bursts. The
//!   clock is passed in to [`FeedSource::poll`], so pacing is exact and testable.
//!
//! Every tick carries the symbol's full Level-1 state after the event, with `seq` rising by
//! exactly 1 per symbol. Given the same seed, universe and sequence of `poll(now)` calls, the
//! output is identical (on the same build: the float math and the `rand_distr` samplers are
//! not promised to be bit-stable across platforms or crate versions).

use rand::{Rng, RngCore, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::tick::SCALE;
use crate::{FeedPoll, FeedSource, Side, Tick, TickKind, Universe};

const NS_PER_SEC: u128 = 1_000_000_000;
const NS_PER_MS: u64 = 1_000_000;

/// A trading year (252 sessions of 6.5 hours) in ns: the time base of the annualized
/// volatility. Using trading time rather than calendar time makes a 24/7 simulation move the
/// way a real session does.
const TRADING_YEAR_NS: f64 = 252.0 * 6.5 * 3600.0 * 1e9;

/// One round lot, in fixed point.
const LOT: i64 = 100 * SCALE;

/// Largest mid the simulator lets a price drift to, in fixed point ($1 billion). Keeps every
/// price, and price × lots, far inside `i64` whatever the volatility.
const MAX_PRICE: i64 = 1_000_000_000 * SCALE;

/// Highest accepted [`SimConfig::rate`]: one tick per nanosecond.
pub const MAX_RATE: u64 = 1_000_000_000;
/// Highest accepted [`SimConfig::burst_factor`].
pub const MAX_BURST_FACTOR: u32 = 1_000;
/// Highest accepted [`SimConfig::volatility`] (1000 % a year).
pub const MAX_VOLATILITY: f64 = 10.0;
/// Highest accepted [`SimConfig::zipf_exponent`].
pub const MAX_ZIPF_EXPONENT: f64 = 10.0;

/// Settings of the simulated feed. Check them with [`SimConfig::validate`] before use.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Seed of the random generator. Same seed, same universe and the same `poll` times give
    /// identical ticks. Default 1.
    pub seed: u64,
    /// Total ticks per second across all symbols; 0 = unpaced (a tick on every poll).
    /// At most 10^9. Default 20 000.
    pub rate: u64,
    /// Rate multiplier during a burst; 1 = no bursts. 1..=1000. Default 1.
    pub burst_factor: u32,
    /// A burst starts every this many ms after the feed starts (the first one at the start).
    /// Must be > 0 when `burst_factor > 1` (unused otherwise). Default 10 000.
    pub burst_every_ms: u64,
    /// Each burst lasts this many ms; must be 1..`burst_every_ms` when `burst_factor > 1`
    /// (unused otherwise). Default 500.
    pub burst_len_ms: u64,
    /// Share of events that are trades, in percent (0..=100); the rest are quotes.
    /// Default 20.
    pub trade_percent: u8,
    /// Annualized volatility of every symbol's mid (0.3 = 30 % a year), over a trading year
    /// of 252 × 6.5 h. An internal float of the model: ticks carry no floats. 0..=10.
    /// Default 0.3.
    pub volatility: f64,
    /// Skew of symbol activity: symbol `i` is picked with weight `1 / (i + 1)^s`. 0 = all
    /// symbols equally active; 1.1 puts about three quarters of all ticks on the top tenth
    /// of a 500–1000-symbol universe. 0..=10. Default 1.1.
    pub zipf_exponent: f64,
    /// Order-book levels per side of the simulated depth ladders; 0 = no books (no
    /// [`FeedPoll::Book`] at all). At most [`MAX_DEPTH_LEVELS`]. Default 0 (the gateway's
    /// `feed.depth_levels` defaults to 20).
    pub depth_levels: u16,
}

/// Highest accepted [`SimConfig::depth_levels`].
pub const MAX_DEPTH_LEVELS: u16 = 1000;

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            rate: 20_000,
            burst_factor: 1,
            burst_every_ms: 10_000,
            burst_len_ms: 500,
            trade_percent: 20,
            volatility: 0.3,
            zipf_exponent: 1.1,
            depth_levels: 0,
        }
    }
}

impl SimConfig {
    /// Checks every field against its documented range.
    ///
    /// # Errors
    /// The first offending field and the reason; displayed as e.g.
    /// `"trade_percent must be 0..=100, got 150"`.
    pub fn validate(&self) -> Result<(), InvalidSimConfig> {
        let bad = |field, reason: String| Err(InvalidSimConfig { field, reason });
        if self.rate > MAX_RATE {
            return bad(SimField::Rate, format!("must be 0..={MAX_RATE} ticks/s, got {}", self.rate));
        }
        if !(1..=MAX_BURST_FACTOR).contains(&self.burst_factor) {
            return bad(
                SimField::BurstFactor,
                format!("must be 1..={MAX_BURST_FACTOR} (1 = no bursts), got {}", self.burst_factor),
            );
        }
        // The burst window matters only when there are bursts.
        if self.burst_factor > 1 {
            if self.burst_every_ms == 0 {
                return bad(
                    SimField::BurstEvery,
                    "must be > 0 when bursts are on (a burst factor of 1 turns them off)".into(),
                );
            }
            if self.burst_len_ms == 0 || self.burst_len_ms >= self.burst_every_ms {
                return bad(
                    SimField::BurstLen,
                    format!(
                        "must be 1..{} ms (shorter than the burst period) when bursts are on, got {}",
                        self.burst_every_ms, self.burst_len_ms
                    ),
                );
            }
        }
        if self.trade_percent > 100 {
            return bad(SimField::TradePercent, format!("must be 0..=100, got {}", self.trade_percent));
        }
        if !(0.0..=MAX_VOLATILITY).contains(&self.volatility) {
            return bad(
                SimField::Volatility,
                format!("must be in 0..={MAX_VOLATILITY} (annualized, 0.3 = 30 %), got {}", self.volatility),
            );
        }
        if !(0.0..=MAX_ZIPF_EXPONENT).contains(&self.zipf_exponent) {
            return bad(
                SimField::ZipfExponent,
                format!("must be a number in 0..={MAX_ZIPF_EXPONENT}, got {}", self.zipf_exponent),
            );
        }
        if self.depth_levels > MAX_DEPTH_LEVELS {
            return bad(
                SimField::DepthLevels,
                format!("must be 0..={MAX_DEPTH_LEVELS} (0 = no books), got {}", self.depth_levels),
            );
        }
        Ok(())
    }
}

/// A [`SimConfig`] value out of range: which field and why (`"{field} {reason}"`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} {reason}", field.name())]
pub struct InvalidSimConfig {
    /// The field at fault.
    pub field: SimField,
    /// Why its value is refused.
    pub reason: String,
}

/// A checked field of [`SimConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimField {
    /// `rate`.
    Rate,
    /// `burst_factor`.
    BurstFactor,
    /// `burst_every_ms`.
    BurstEvery,
    /// `burst_len_ms`.
    BurstLen,
    /// `trade_percent`.
    TradePercent,
    /// `volatility`.
    Volatility,
    /// `zipf_exponent`.
    ZipfExponent,
    /// `depth_levels`.
    DepthLevels,
}

impl SimField {
    /// The field's name in [`SimConfig`].
    pub fn name(self) -> &'static str {
        match self {
            SimField::Rate => "rate",
            SimField::BurstFactor => "burst_factor",
            SimField::BurstEvery => "burst_every_ms",
            SimField::BurstLen => "burst_len_ms",
            SimField::TradePercent => "trade_percent",
            SimField::Volatility => "volatility",
            SimField::ZipfExponent => "zipf_exponent",
            SimField::DepthLevels => "depth_levels",
        }
    }
}

/// The pacing schedule: how many ticks are due a given time after the start.
///
/// Bursts stretch time: inside a burst the schedule's clock runs `factor` times faster, so
/// "ticks due" is `rate × schedule_time(elapsed)`. All integer arithmetic (u128), so the
/// count is exact and the inverse (when is the next tick due) is exact too.
#[derive(Clone, Copy, Debug)]
struct Schedule {
    /// Ticks per second; 0 = unpaced.
    rate: u128,
    /// Burst factor; 1 = no bursts.
    factor: u128,
    /// Burst period and length, ns (unused when `factor == 1`).
    every: u128,
    len: u128,
}

impl Schedule {
    fn new(cfg: &SimConfig) -> Self {
        let every = u128::from(cfg.burst_every_ms) * u128::from(NS_PER_MS);
        let len = (u128::from(cfg.burst_len_ms) * u128::from(NS_PER_MS)).min(every);
        let bursts = cfg.burst_factor > 1 && len > 0;
        Schedule {
            rate: u128::from(cfg.rate.min(MAX_RATE)),
            factor: if bursts { u128::from(cfg.burst_factor.min(MAX_BURST_FACTOR)) } else { 1 },
            every,
            len,
        }
    }

    fn bursts(&self) -> bool {
        self.factor > 1
    }

    /// Schedule time after `elapsed` ns of wall time: wall time, plus `factor - 1` extra for
    /// every ns spent inside a burst window `[k·every, k·every + len)`.
    fn schedule_time(&self, elapsed: u128) -> u128 {
        if !self.bursts() {
            return elapsed;
        }
        let in_bursts = (elapsed / self.every) * self.len + (elapsed % self.every).min(self.len);
        elapsed + (self.factor - 1) * in_bursts
    }

    /// The smallest elapsed wall time whose schedule time is at least `target`: the inverse
    /// of [`Schedule::schedule_time`].
    fn elapsed_for(&self, target: u128) -> u128 {
        if !self.bursts() {
            return target;
        }
        // One period is `len` burst ns (worth `factor × len` schedule ns) and then
        // `every - len` quiet ns.
        let burst_part = self.factor * self.len;
        let period = burst_part + (self.every - self.len);
        let (k, r) = (target / period, target % period);
        let within = if r <= burst_part { r.div_ceil(self.factor) } else { self.len + (r - burst_part) };
        k * self.every + within
    }

    /// Ticks due `elapsed` ns after the start.
    fn due(&self, elapsed: u64) -> u64 {
        let due = self.rate * self.schedule_time(u128::from(elapsed)) / NS_PER_SEC;
        u64::try_from(due).unwrap_or(u64::MAX)
    }

    /// Elapsed ns after the start at which tick number `n` (1-based) falls due.
    fn due_at(&self, n: u64) -> u64 {
        if self.rate == 0 {
            return 0;
        }
        let target = (u128::from(n) * NS_PER_SEC).div_ceil(self.rate);
        u64::try_from(self.elapsed_for(target)).unwrap_or(u64::MAX)
    }

    /// The most ticks a caller may be behind before the excess is dropped: one second at the
    /// peak (burst) rate. See [`Simulator::dropped`] for why.
    fn backlog_cap(&self) -> u64 {
        u64::try_from(self.rate * self.factor).unwrap_or(u64::MAX).max(1)
    }
}

/// Vose's alias table over `n` weights: one uniform u64 picks an index in O(1).
///
/// Slot `i` keeps itself with probability `keep[i] / 2^32` and otherwise yields `alias[i]`.
#[derive(Clone, Debug)]
struct AliasTable {
    keep: Vec<u64>,
    alias: Vec<u32>,
}

impl AliasTable {
    /// Builds the table for weights `1 / (i + 1)^exponent`, i = 0..n.
    fn zipf(n: usize, exponent: f64) -> Self {
        let weights: Vec<f64> = (0..n).map(|i| (i as f64 + 1.0).powf(-exponent)).collect();
        let total: f64 = weights.iter().sum();
        // Scale so the average slot holds exactly 1.
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut keep = vec![1u64 << 32; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            keep[s] = (scaled[s] * 4_294_967_296.0).round() as u64;
            alias[s] = l as u32;
            scaled[l] += scaled[s] - 1.0;
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Whatever is left is 1 up to rounding error: those slots keep themselves (the
        // `vec!` default), which is what the exact arithmetic would give.
        AliasTable { keep, alias }
    }

    /// Picks an index from one uniform `r`: the high 32 bits choose a slot, the low 32 bits
    /// toss its biased coin.
    #[inline]
    fn pick(&self, r: u64) -> usize {
        let n = self.keep.len() as u64;
        let slot = (((r >> 32) * n) >> 32) as usize;
        match (self.keep.get(slot), self.alias.get(slot)) {
            (Some(&keep), Some(&alias)) => {
                if (r & 0xFFFF_FFFF) < keep {
                    slot
                } else {
                    alias as usize
                }
            }
            _ => 0,
        }
    }
}

/// The simulated Level-1 state of one symbol. Prices are in ticks of the symbol's grid.
#[derive(Clone, Debug)]
struct SymbolState {
    /// Mid price in ticks (the GBM state), kept in `1.0..=max_mid`.
    mid: f64,
    /// Upper bound of `mid` ([`MAX_PRICE`] in ticks).
    max_mid: f64,
    /// Tick size, fixed point.
    tick: i64,
    /// Narrowest spread of this symbol, ticks (>= 1).
    base_spread: i64,
    /// Event time of the last mid update, ns since the epoch.
    last_quote_ns: u64,
    seq: u64,
    bid: i64,
    ask: i64,
    bid_lots: i64,
    ask_lots: i64,
    /// Last trade price in ticks; 0 before the first trade.
    last: i64,
    last_lots: i64,
    /// Cumulative volume, fixed point.
    volume: i64,
}

impl SymbolState {
    fn new(ref_price: i64, tick: i64, start_ns: u64) -> Self {
        let tick = tick.max(1);
        let ref_price = ref_price.max(tick);
        let max_mid = (MAX_PRICE / tick).max(1) as f64;
        let mid = (ref_price as f64 / tick as f64).clamp(1.0, max_mid);
        // One tick for almost everything; wider at both ends of the price range, as in a real
        // market: one cent is a sliver of a $3000 stock (quoted several cents wide: one tick
        // per whole 0.3 bp of price, so from about $667 up) and a sub-dollar name is quoted
        // about 0.2 % wide, many of its hundredth-of-a-cent ticks.
        let bps = if ref_price < SCALE { 20.0 } else { 0.3 };
        let base_spread = ((ref_price as f64 * bps / 10_000.0 / tick as f64) as i64).max(1);
        let mut s = SymbolState {
            mid,
            max_mid,
            tick,
            base_spread,
            last_quote_ns: start_ns,
            seq: 0,
            bid: 0,
            ask: 0,
            bid_lots: 1,
            ask_lots: 1,
            last: 0,
            last_lots: 0,
            volume: 0,
        };
        s.place_quote(s.base_spread);
        s
    }

    /// Puts bid and ask `spread` ticks apart around the mid, bid >= 1 tick.
    fn place_quote(&mut self, spread: i64) {
        let bid = (self.mid - spread as f64 / 2.0).round() as i64;
        self.bid = bid.max(1);
        self.ask = self.bid + spread;
    }

    fn to_tick(&self, symbol: u32, kind: TickKind, now_ns: u64) -> Tick {
        Tick {
            symbol,
            kind,
            seq: self.seq,
            bid: self.bid * self.tick,
            bid_size: self.bid_lots * LOT,
            ask: self.ask * self.tick,
            ask_size: self.ask_lots * LOT,
            last: self.last * self.tick,
            last_size: self.last_lots * LOT,
            volume: self.volume,
            ts_event: now_ns,
            ts_gateway: 0,
            trades: 0,
            trade_id: 0,
            side: Side::Unknown,
        }
    }
}

/// splitmix64's finalizer: a well-mixed 64-bit hash of `x`.
#[inline]
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl SymbolState {
    /// The simulated depth ladder of symbol `id` (see the module docs), `depth` levels a side
    /// at most, best first, fixed point. Level 0 is the quote; the rest never touch or cross it.
    fn ladder(&self, id: u32, depth: usize, bids: &mut Vec<(i64, i64)>, asks: &mut Vec<(i64, i64)>) {
        bids.clear();
        asks.clear();
        if depth == 0 {
            return;
        }
        bids.push((self.bid * self.tick, self.bid_lots * LOT));
        asks.push((self.ask * self.tick, self.ask_lots * LOT));
        let salt = mix(u64::from(id) ^ 0x5eed_b00c);
        for (side, out, start) in [(1u64, bids, self.bid), (2u64, asks, self.ask)] {
            let dir = if side == 1 { -1 } else { 1 };
            let mut p = start;
            // Bounded: each step moves one tick; at most 4 empty prices between levels.
            let mut steps = 0;
            while out.len() < depth && steps < depth * 5 {
                steps += 1;
                p += dir;
                if p < 1 {
                    break;
                }
                let h = mix(salt ^ side.wrapping_mul(0x9e37_79b9) ^ (p as u64));
                if h.is_multiple_of(5) {
                    continue; // an empty price
                }
                let level = out.len() as u64;
                // Deeper levels change less often: the epoch advances every 2^(level/2) events.
                let epoch = self.seq >> (level / 2).min(12);
                let lots = 1 + (mix(h ^ epoch) % (10 + 20 * level)) as i64;
                out.push((p * self.tick, lots * LOT));
            }
        }
    }
}

/// 1..=50 lots from 16 random bits, skewed towards small sizes (the square of a uniform).
#[inline]
fn quote_lots(bits: u64) -> i64 {
    let u = bits & 0xFFFF;
    1 + ((u * u * 50) >> 32) as i64
}

/// The simulated feed: a [`FeedSource`] generating GBM-priced, Zipf-skewed Level-1 ticks on
/// a paced schedule. See the [module docs](self) for the model.
#[derive(Clone, Debug)]
pub struct Simulator {
    universe: Universe,
    cfg: SimConfig,
    rng: Xoshiro256PlusPlus,
    picker: AliasTable,
    symbols: Vec<SymbolState>,
    schedule: Schedule,
    /// Mid variance per ns of event time: `σ² / trading year`.
    var_per_ns: f64,
    /// `trade_percent` as a threshold on 32 random bits.
    trade_threshold: u64,
    /// Trade ids handed out so far (the last one given).
    trade_ids: u64,
    start_ns: u64,
    /// Ticks consumed (emitted + dropped) when the schedule was last anchored at `start_ns`.
    anchor: u64,
    /// Ticks emitted so far.
    emitted: u64,
    /// Ticks skipped by the backlog cap.
    dropped: u64,
    /// When the next scheduled tick is due, ns since the epoch (paced mode only): lets a
    /// caller that polls early get its answer without any division.
    next_due_ns: u64,
    /// The book change to report before the next tick (depth ladders on): symbol, event time.
    book_due: Option<(u32, u64)>,
}

impl Simulator {
    /// A simulator over `universe`, its pacing schedule anchored at `start_ns` (wall clock,
    /// ns since the Unix epoch, when the feed starts).
    ///
    /// `cfg` should have passed [`SimConfig::validate`]; out-of-range values are clamped into
    /// range rather than trusted (a NaN volatility counts as 0). An empty universe yields no
    /// ticks: every poll is `Pending { until_ns: None }`.
    pub fn new(universe: Universe, cfg: SimConfig, start_ns: u64) -> Simulator {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
        let exponent = clamp_f64(cfg.zipf_exponent, MAX_ZIPF_EXPONENT);
        let volatility = clamp_f64(cfg.volatility, MAX_VOLATILITY);
        let picker = AliasTable::zipf(universe.len(), exponent);
        let symbols = universe
            .symbols()
            .iter()
            .map(|info| {
                let mut s = SymbolState::new(info.ref_price, info.tick_size, start_ns);
                let r = rng.next_u64();
                s.bid_lots = quote_lots(r);
                s.ask_lots = quote_lots(r >> 16);
                s
            })
            .collect();
        let schedule = Schedule::new(&cfg);
        let trade_threshold = (u64::from(cfg.trade_percent.min(100)) << 32) / 100;
        let mut sim = Simulator {
            universe,
            cfg,
            rng,
            picker,
            symbols,
            schedule,
            var_per_ns: volatility * volatility / TRADING_YEAR_NS,
            trade_threshold,
            trade_ids: 0,
            start_ns,
            anchor: 0,
            emitted: 0,
            dropped: 0,
            next_due_ns: 0,
            book_due: None,
        };
        sim.next_due_ns = sim.due_time(1);
        sim
    }

    /// Ticks emitted so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Scheduled ticks skipped because the caller fell behind.
    ///
    /// When the caller (the gateway's feed thread) is more than one second of peak-rate
    /// ticks behind the schedule — it was descheduled, stopped in a debugger, or the machine
    /// is overloaded — the excess is dropped rather than emitted in a catch-up storm. A storm
    /// would be a burst nobody configured: it would swamp the ring and the shards exactly
    /// when the system is already struggling, and make latency measurements report the
    /// stall many times over. A real market does not replay the time you missed either.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The configuration this simulator was built with.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Wall time at which scheduled tick number `n` (1-based, counted from the anchor)
    /// falls due.
    fn due_time(&self, n: u64) -> u64 {
        self.start_ns.saturating_add(self.schedule.due_at(n))
    }

    /// Ticks consumed since the schedule was anchored.
    fn consumed(&self) -> u64 {
        self.emitted + self.dropped - self.anchor
    }

    /// With depth ladders on, the event `t` changed its symbol's book: report it next.
    fn note_book(&mut self, t: &Tick) {
        if self.cfg.depth_levels > 0 {
            self.book_due = Some((t.symbol, t.ts_event));
        }
    }

    /// Generates the next event at `now_ns`. The universe must not be empty.
    fn next_tick(&mut self, now_ns: u64) -> Tick {
        let id = self.picker.pick(self.rng.next_u64());
        let is_trade = (self.rng.next_u64() >> 32) < self.trade_threshold;
        let z: f64 = if is_trade { 0.0 } else { self.rng.sample(StandardNormal) };
        // One more draw supplies every other decision, from disjoint bit fields.
        let d = self.rng.next_u64();
        let var_per_ns = self.var_per_ns;
        let Some(s) = self.symbols.get_mut(id) else {
            return Tick::default();
        };
        s.seq += 1;
        let mut side = Side::Unknown;
        let kind = if is_trade {
            let spread = s.ask - s.bid;
            // Geometric: half of all trades are one lot, a quarter two, ...; at most 32.
            let lots = 1 + i64::from(((d >> 32) as u32 | (1 << 31)).trailing_zeros());
            // About 15 % of trades print inside a spread wide enough to have an inside.
            let price = if spread >= 2 && (d & 0xFF) < 38 {
                s.bid + 1 + ((d >> 8) & 0xFFFF) as i64 % (spread - 1)
            } else if d & (1 << 24) != 0 {
                // At the ask: a buyer lifted the offer.
                side = Side::Buy;
                s.ask_lots = (s.ask_lots - lots).max(1);
                s.ask
            } else {
                side = Side::Sell;
                s.bid_lots = (s.bid_lots - lots).max(1);
                s.bid
            };
            s.last = price;
            s.last_lots = lots;
            // Saturates after ~9.2e10 shares: hours of unpaced running on the hottest name.
            s.volume = s.volume.saturating_add(lots * LOT);
            TickKind::Trade
        } else {
            let dt = now_ns.saturating_sub(s.last_quote_ns) as f64;
            s.last_quote_ns = s.last_quote_ns.max(now_ns);
            let sd = (var_per_ns * dt).sqrt();
            let next = s.mid * (sd * z - 0.5 * sd * sd).exp();
            // Floor at one tick (a price can always diffuse back up from there) and cap far
            // below i64 overflow; a NaN cannot occur for finite inputs but would keep the mid.
            if !next.is_nan() {
                s.mid = next.clamp(1.0, s.max_mid);
            }
            // Spread noise: +0 ticks 10/16 of the time, +1 5/16, +2 1/16.
            let extra = match d & 0xF {
                0..=9 => 0,
                10..=14 => 1,
                _ => 2,
            };
            s.place_quote(s.base_spread + extra);
            s.bid_lots = quote_lots(d >> 16);
            s.ask_lots = quote_lots(d >> 32);
            TickKind::Quote
        };
        self.emitted += 1;
        let mut t = s.to_tick(id as u32, kind, now_ns);
        if is_trade {
            // Venue-wide trade ids, as exchanges number their prints.
            self.trade_ids += 1;
            t.trade_id = self.trade_ids;
            t.side = side;
        }
        t
    }
}

/// `v` clamped into `0..=max`, NaN as 0.
fn clamp_f64(v: f64, max: f64) -> f64 {
    if v.is_nan() { 0.0 } else { v.clamp(0.0, max) }
}

impl FeedSource for Simulator {
    fn universe(&self) -> &Universe {
        &self.universe
    }

    /// A tick if one is due at `now_ns` (always, when unpaced), else `Pending` with the exact
    /// time the next one falls due. Never `End`.
    fn poll(&mut self, now_ns: u64) -> FeedPoll {
        if self.symbols.is_empty() {
            return FeedPoll::Pending { until_ns: None };
        }
        if let Some((symbol, ts_event)) = self.book_due.take() {
            return FeedPoll::Book { symbol, ts_event };
        }
        if self.schedule.rate == 0 {
            let t = self.next_tick(now_ns);
            self.note_book(&t);
            return FeedPoll::Tick(t);
        }
        if now_ns < self.next_due_ns {
            return FeedPoll::Pending { until_ns: Some(self.next_due_ns) };
        }
        let consumed = self.consumed();
        let due = self.schedule.due(now_ns.saturating_sub(self.start_ns));
        let owed = due.saturating_sub(consumed);
        let cap = self.schedule.backlog_cap();
        if owed > cap {
            self.dropped += owed - cap;
        }
        let tick = self.next_tick(now_ns);
        self.note_book(&tick);
        self.next_due_ns = self.due_time(self.consumed() + 1);
        FeedPoll::Tick(tick)
    }

    fn book_levels(
        &self,
        symbol: u32,
        depth: usize,
        bids: &mut Vec<(i64, i64)>,
        asks: &mut Vec<(i64, i64)>,
    ) -> Option<crate::BookHealth> {
        if self.cfg.depth_levels == 0 {
            return None;
        }
        let s = self.symbols.get(symbol as usize)?;
        s.ladder(symbol, depth.min(usize::from(self.cfg.depth_levels)), bids, asks);
        Some(crate::BookHealth::Live)
    }

    /// Re-anchors the schedule at `now_ns` with the new rate (burst windows restart from
    /// there too). Prices and sequence numbers carry on.
    fn set_rate(&mut self, ticks_per_sec: u64, now_ns: u64) -> Result<(), String> {
        let mut cfg = self.cfg.clone();
        cfg.rate = ticks_per_sec;
        cfg.validate().map_err(|e| e.to_string())?;
        self.cfg = cfg;
        self.schedule = Schedule::new(&self.cfg);
        self.start_ns = now_ns;
        self.anchor = self.emitted + self.dropped;
        self.next_due_ns = self.due_time(1);
        Ok(())
    }

    fn describe(&self) -> String {
        let mut d = format!("simulated({} symbols, ", self.symbols.len());
        if self.schedule.rate == 0 {
            d.push_str("unpaced");
        } else {
            d.push_str(&format!("{} ticks/s", self.schedule.rate));
        }
        if self.schedule.bursts() && self.schedule.rate > 0 {
            d.push_str(&format!(
                ", bursts x{} for {} ms every {} ms",
                self.schedule.factor, self.cfg.burst_len_ms, self.cfg.burst_every_ms
            ));
        }
        d.push_str(&format!(", seed {})", self.cfg.seed));
        d
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// An arbitrary but realistic epoch time to start at: 2024-03-01T00:00:00Z.
    const T0: u64 = 1_709_251_200_000_000_000;
    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000_000_000;

    fn universe() -> Universe {
        Universe::load_default().unwrap_or_else(|e| panic!("default universe: {e}"))
    }

    fn unpaced(seed: u64) -> SimConfig {
        SimConfig { seed, rate: 0, ..SimConfig::default() }
    }

    /// `n` ticks from an unpaced simulator, the clock advancing `step_ns` per poll.
    fn run(sim: &mut Simulator, n: usize, step_ns: u64) -> Vec<Tick> {
        (0..n as u64)
            .map(|i| match sim.poll(T0 + i * step_ns) {
                FeedPoll::Tick(t) => t,
                other => panic!("unpaced simulator returned {other:?}"),
            })
            .collect()
    }

    /// Polls at `now` until `Pending`; returns the ticks and the `until_ns` it ended with.
    fn drain(sim: &mut Simulator, now: u64, out: &mut Vec<Tick>) -> u64 {
        loop {
            match sim.poll(now) {
                FeedPoll::Tick(t) => out.push(t),
                FeedPoll::Pending { until_ns: Some(until) } => return until,
                other => panic!("paced simulator returned {other:?}"),
            }
        }
    }

    /// The L1 invariants every tick must satisfy against its universe.
    fn check_tick(u: &Universe, t: &Tick) -> Result<(), String> {
        let tick = u.get(t.symbol).map(|s| s.tick_size).ok_or("unknown symbol")?;
        let lots_ok = |v: i64| v % LOT == 0 && (LOT..=50 * LOT).contains(&v);
        if !(t.bid > 0 && t.bid < t.ask) {
            return Err(format!("bad book {} / {}", t.bid, t.ask));
        }
        if t.bid % tick != 0 || t.ask % tick != 0 || t.last % tick != 0 {
            return Err(format!("off grid: {t:?}"));
        }
        if !lots_ok(t.bid_size) || !lots_ok(t.ask_size) {
            return Err(format!("bad quote sizes: {t:?}"));
        }
        if t.kind == TickKind::Trade && (t.last < t.bid || t.last > t.ask || !lots_ok(t.last_size)) {
            return Err(format!("bad trade: {t:?}"));
        }
        if t.last < 0 || (t.last == 0) != (t.last_size == 0) || t.ts_gateway != 0 {
            return Err(format!("bad last/ts: {t:?}"));
        }
        Ok(())
    }

    #[test]
    fn same_seed_same_ticks_other_seed_differs() {
        let a = run(&mut Simulator::new(universe(), unpaced(7), T0), 10_000, 1_000);
        let b = run(&mut Simulator::new(universe(), unpaced(7), T0), 10_000, 1_000);
        let c = run(&mut Simulator::new(universe(), unpaced(8), T0), 10_000, 1_000);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn seq_rises_by_one_per_symbol_and_ticks_carry_event_time() {
        let mut sim = Simulator::new(universe(), unpaced(3), T0);
        let ticks = run(&mut sim, 50_000, 500);
        let mut last: HashMap<u32, u64> = HashMap::new();
        for (i, t) in ticks.iter().enumerate() {
            let prev = last.insert(t.symbol, t.seq).unwrap_or(0);
            assert_eq!(t.seq, prev + 1, "symbol {} at tick {i}", t.symbol);
            assert_eq!(t.ts_event, T0 + i as u64 * 500);
        }
        assert_eq!(sim.emitted(), 50_000);
    }

    #[test]
    fn prices_on_grid_book_not_crossed_sizes_in_lots() {
        let u = universe();
        // Volatility 2 and a clock racing 10 s per tick: prices wander far in 50k ticks.
        let cfg = SimConfig { volatility: 2.0, ..unpaced(11) };
        let ticks = run(&mut Simulator::new(u.clone(), cfg, T0), 50_000, 10 * SEC);
        for t in &ticks {
            check_tick(&u, t).unwrap_or_else(|e| panic!("{e}"));
        }
        let moved = ticks.iter().filter(|t| u.get(t.symbol).is_some_and(|s| t.bid > s.ref_price)).count();
        assert!(moved > 0 && moved < ticks.len(), "prices do not move: {moved}");
    }

    #[test]
    fn spreads_are_a_few_ticks_for_ordinary_names() {
        let u = universe();
        let ticks = run(&mut Simulator::new(u.clone(), unpaced(5), T0), 20_000, 1_000);
        for t in &ticks {
            let Some(info) = u.get(t.symbol) else { panic!("unknown symbol") };
            let spread = (t.ask - t.bid) / info.tick_size;
            if (SCALE..=600 * SCALE).contains(&info.ref_price) {
                assert!((1..=3).contains(&spread), "{} spread {spread} ticks", info.name);
            }
        }
    }

    #[test]
    fn volume_is_the_running_sum_of_trade_sizes() {
        let mut sim = Simulator::new(universe(), unpaced(9), T0);
        let ticks = run(&mut sim, 50_000, 1_000);
        let mut sum: HashMap<u32, i64> = HashMap::new();
        let mut trades = 0;
        for t in &ticks {
            let v = sum.entry(t.symbol).or_insert(0);
            if t.kind == TickKind::Trade {
                *v += t.last_size;
                trades += 1;
            }
            assert_eq!(t.volume, *v, "symbol {}", t.symbol);
            assert_eq!(t.last == 0, *v == 0, "last before the first trade: {t:?}");
        }
        // 20 % of 50 000 events, give or take sampling noise.
        assert!((9_000..=11_000).contains(&trades), "{trades} trades");
    }

    fn counts(cfg: SimConfig, n: usize) -> Vec<usize> {
        let u = universe();
        let mut counts = vec![0usize; u.len()];
        for t in run(&mut Simulator::new(u, cfg, T0), n, 1_000) {
            counts[t.symbol as usize] += 1;
        }
        counts
    }

    #[test]
    fn zipf_puts_most_traffic_on_a_few_symbols() {
        let mut c = counts(unpaced(1), 100_000);
        c.sort_unstable_by(|a, b| b.cmp(a));
        let top: usize = c.iter().take(c.len().div_ceil(10)).sum();
        assert!(top > 50_000, "top 10 % of symbols carry only {top} of 100000 ticks");
    }

    #[test]
    fn zipf_exponent_zero_is_uniform() {
        let c = counts(SimConfig { zipf_exponent: 0.0, ..unpaced(1) }, 100_000);
        let fair = 100_000 / c.len();
        let max = c.iter().copied().max().unwrap_or(0);
        assert!(max <= 3 * fair, "max {max} vs fair share {fair}");
        assert!(c.iter().all(|&n| n > 0), "a symbol never ticked");
    }

    #[test]
    fn hottest_symbol_is_the_first_row() {
        let c = counts(unpaced(2), 100_000);
        let hottest = (0..c.len()).max_by_key(|&i| c[i]);
        assert_eq!(hottest, Some(0));
    }

    #[test]
    fn paced_rate_holds_over_one_second_of_1ms_polls() {
        let cfg = SimConfig { rate: 1_000, ..SimConfig::default() };
        let mut sim = Simulator::new(universe(), cfg, T0);
        let mut ticks = Vec::new();
        // Before the first tick is due: pending, with the due time one tick-interval ahead.
        assert_eq!(sim.poll(T0), FeedPoll::Pending { until_ns: Some(T0 + MS) });
        for i in 1..=1_000 {
            let now = T0 + i * MS;
            let until = drain(&mut sim, now, &mut ticks);
            assert!(until > now && until <= now + MS, "until {} ns after now", until - now);
        }
        assert!((999..=1_001).contains(&ticks.len()), "{} ticks", ticks.len());
        assert_eq!(sim.emitted(), ticks.len() as u64);
        assert_eq!(sim.dropped(), 0);
    }

    #[test]
    fn set_rate_repaces_from_now_and_keeps_sequences() {
        let t0 = 1_000_000_000_000;
        let mut sim = Simulator::new(universe(), SimConfig { rate: 1000, ..SimConfig::default() }, t0);
        let mut out = Vec::new();
        let mut now = t0;
        for _ in 0..1000 {
            now += 1_000_000;
            drain(&mut sim, now, &mut out);
        }
        let before = out.len();
        assert!((999..=1001).contains(&before), "{before} ticks in 1 s at 1000/s");
        assert!(sim.set_rate(5000, now).is_ok());
        for _ in 0..1000 {
            now += 1_000_000;
            drain(&mut sim, now, &mut out);
        }
        let after = out.len() - before;
        assert!((4995..=5001).contains(&after), "{after} ticks in 1 s after retuning to 5000/s");
        assert!(sim.set_rate(u64::MAX, now).is_err(), "validated like start-up config");
        // Sequences carry on across the change.
        let mut last = std::collections::HashMap::new();
        for t in &out {
            let prev = last.insert(t.symbol, t.seq).unwrap_or(0);
            assert_eq!(t.seq, prev + 1);
        }
    }

    #[test]
    fn pending_until_is_exactly_when_the_next_tick_is_due() {
        let cfg = SimConfig { rate: 7_919, ..SimConfig::default() };
        let mut sim = Simulator::new(universe(), cfg, T0);
        let mut now = T0;
        for _ in 0..200 {
            let until = drain(&mut sim, now, &mut Vec::new());
            assert!(until > now);
            // One ns early is still pending; at `until` a tick comes out.
            assert!(matches!(sim.poll(until - 1), FeedPoll::Pending { until_ns: Some(u) } if u == until));
            assert!(matches!(sim.poll(until), FeedPoll::Tick(_)));
            now = until;
        }
    }

    #[test]
    fn schedule_inverse_is_exact_with_and_without_bursts() {
        let configs = [
            SimConfig { rate: 1_000, ..SimConfig::default() },
            SimConfig {
                rate: 7,
                burst_factor: 3,
                burst_every_ms: 10,
                burst_len_ms: 3,
                ..SimConfig::default()
            },
            SimConfig {
                rate: 20_000,
                burst_factor: 5,
                burst_every_ms: 1_000,
                burst_len_ms: 200,
                ..SimConfig::default()
            },
            SimConfig {
                rate: 999_983,
                burst_factor: 1_000,
                burst_every_ms: 2,
                burst_len_ms: 1,
                ..SimConfig::default()
            },
        ];
        for cfg in &configs {
            let s = Schedule::new(cfg);
            for n in 1..3_000 {
                let at = s.due_at(n);
                assert!(s.due(at) >= n, "{cfg:?} n {n}: due({at}) = {}", s.due(at));
                assert!(s.due(at - 1) < n, "{cfg:?} n {n}: due earlier than {at}");
            }
        }
    }

    #[test]
    fn bursts_multiply_the_rate_inside_the_window() {
        let cfg = SimConfig {
            rate: 1_000,
            burst_factor: 5,
            burst_every_ms: 1_000,
            burst_len_ms: 200,
            ..SimConfig::default()
        };
        let mut sim = Simulator::new(universe(), cfg, T0);
        let mut ticks = Vec::new();
        for i in 1..=2_000 {
            drain(&mut sim, T0 + i * MS, &mut ticks);
        }
        let between = |from_ms: u64, to_ms: u64| {
            ticks.iter().filter(|t| t.ts_event > T0 + from_ms * MS && t.ts_event <= T0 + to_ms * MS).count()
        };
        // Second period: 200 ms at 5x, then 200 ms of the quiet part at 1x.
        let (inside, outside) = (between(1_000, 1_200), between(1_200, 1_400));
        assert!((995..=1_005).contains(&inside), "{inside} ticks inside the burst");
        assert!((195..=205).contains(&outside), "{outside} ticks outside the burst");
        assert!(inside > 2 * outside);
        // Whole run: 2 periods of 200 ms × 5 + 800 ms × 1 = 3600 ticks.
        assert!((3_599..=3_601).contains(&ticks.len()), "{} ticks", ticks.len());
        assert!(sim.describe().contains("bursts x5"), "{}", sim.describe());
    }

    #[test]
    fn a_caller_far_behind_gets_one_second_of_backlog_not_all_of_it() {
        let cfg = SimConfig { rate: 1_000, ..SimConfig::default() };
        let mut sim = Simulator::new(universe(), cfg, T0);
        let mut ticks = Vec::new();
        // Ten seconds late: 10 000 ticks are due, only the last second's worth comes out.
        let until = drain(&mut sim, T0 + 10 * SEC, &mut ticks);
        assert_eq!(ticks.len(), 1_000);
        assert_eq!(sim.dropped(), 9_000);
        assert_eq!(until, T0 + 10 * SEC + MS);
        // Then the schedule carries on as if nothing happened.
        drain(&mut sim, T0 + 11 * SEC, &mut ticks);
        assert_eq!(ticks.len(), 2_000);
        assert_eq!(sim.dropped(), 9_000);
    }

    #[test]
    fn unpaced_never_pends() {
        let mut sim = Simulator::new(universe(), unpaced(1), T0);
        assert!((0..10_000).all(|_| matches!(sim.poll(T0), FeedPoll::Tick(_))));
    }

    #[test]
    fn polling_before_the_start_is_pending_until_the_first_tick() {
        let cfg = SimConfig { rate: 20_000, ..SimConfig::default() };
        let mut sim = Simulator::new(universe(), cfg, T0);
        assert_eq!(sim.poll(T0 - SEC), FeedPoll::Pending { until_ns: Some(T0 + 50_000) });
    }

    #[test]
    fn empty_universe_yields_nothing() {
        let mut sim = Simulator::new(Universe::default(), SimConfig::default(), T0);
        assert_eq!(sim.poll(T0 + SEC), FeedPoll::Pending { until_ns: None });
        assert_eq!(sim.emitted(), 0);
    }

    #[test]
    fn describe_names_size_rate_and_seed() {
        let sim = Simulator::new(universe(), SimConfig::default(), T0);
        let n = sim.universe().len();
        assert_eq!(sim.describe(), format!("simulated({n} symbols, 20000 ticks/s, seed 1)"));
        let sim = Simulator::new(universe(), unpaced(4), T0);
        assert_eq!(sim.describe(), format!("simulated({n} symbols, unpaced, seed 4)"));
    }

    #[test]
    fn validate_rejects_bad_values_naming_the_field() {
        assert_eq!(SimConfig::default().validate(), Ok(()));
        let d = SimConfig::default;
        let cases: Vec<(SimConfig, &str)> = vec![
            (SimConfig { rate: MAX_RATE + 1, ..d() }, "rate"),
            (SimConfig { burst_factor: 0, ..d() }, "burst_factor"),
            (SimConfig { burst_factor: 1_001, ..d() }, "burst_factor"),
            (SimConfig { burst_factor: 2, burst_every_ms: 0, ..d() }, "burst_every_ms"),
            (SimConfig { burst_factor: 2, burst_len_ms: 0, ..d() }, "burst_len_ms"),
            (SimConfig { burst_factor: 2, burst_len_ms: 10_000, ..d() }, "burst_len_ms"),
            (SimConfig { trade_percent: 101, ..d() }, "trade_percent"),
            (SimConfig { volatility: -0.1, ..d() }, "volatility"),
            (SimConfig { volatility: f64::NAN, ..d() }, "volatility"),
            (SimConfig { volatility: f64::INFINITY, ..d() }, "volatility"),
            (SimConfig { zipf_exponent: -1.0, ..d() }, "zipf_exponent"),
            (SimConfig { zipf_exponent: f64::NAN, ..d() }, "zipf_exponent"),
        ];
        for (cfg, field) in cases {
            match cfg.validate() {
                Err(e) => {
                    assert_eq!(e.field.name(), field, "{e}");
                    assert!(e.to_string().starts_with(field), "{field}: message {e}");
                }
                Ok(()) => panic!("{field}: accepted {cfg:?}"),
            }
        }
        let edges = [
            SimConfig { rate: 0, ..d() },
            SimConfig { rate: MAX_RATE, trade_percent: 100, volatility: 0.0, zipf_exponent: 0.0, ..d() },
            SimConfig { burst_factor: 1_000, burst_every_ms: 2, burst_len_ms: 1, ..d() },
            // Without bursts the burst window is not used, so it is not checked.
            SimConfig { burst_factor: 1, burst_every_ms: 0, burst_len_ms: 0, ..d() },
        ];
        for cfg in edges {
            assert_eq!(cfg.validate(), Ok(()), "{cfg:?}");
        }
    }

    #[test]
    fn depth_ladders_follow_every_event_with_the_quote_as_their_touch() {
        let cfg = SimConfig { depth_levels: 12, ..unpaced(3) };
        let mut sim = Simulator::new(universe(), cfg, T0);
        let (mut bids, mut asks) = (Vec::new(), Vec::new());
        let mut changed_deep = 0;
        let mut prev: Option<(u32, Vec<(i64, i64)>)> = None;
        for i in 0..3_000u64 {
            let FeedPoll::Tick(t) = sim.poll(T0 + i) else { panic!("a tick first") };
            let FeedPoll::Book { symbol, ts_event } = sim.poll(T0 + i) else { panic!("then its book") };
            assert_eq!((symbol, ts_event), (t.symbol, t.ts_event));
            assert_eq!(sim.book_levels(symbol, 50, &mut bids, &mut asks), Some(crate::BookHealth::Live));
            assert_eq!((bids.len(), asks.len()), (12, 12), "as many levels as configured, at most");
            assert_eq!(
                (bids[0], asks[0]),
                ((t.bid, t.bid_size), (t.ask, t.ask_size)),
                "the touch is the quote"
            );
            assert!(bids.windows(2).all(|w| w[0].0 > w[1].0) && asks.windows(2).all(|w| w[0].0 < w[1].0));
            assert!(bids.iter().chain(&asks).all(|&(p, q)| p > 0 && q > 0 && q % LOT == 0));
            let tick = universe().get(t.symbol).map_or(1, |s| s.tick_size);
            assert!(bids.iter().chain(&asks).all(|&(p, _)| p % tick == 0), "prices on the grid");
            if let Some((s, deep)) = &prev
                && *s == symbol
                && deep[..] != bids[6..]
            {
                changed_deep += 1;
            }
            prev = Some((symbol, bids[6..].to_vec()));
        }
        assert!(changed_deep > 0, "deep levels move too, now and then");
        let mut top = (Vec::new(), Vec::new());
        sim.book_levels(0, 3, &mut top.0, &mut top.1);
        assert_eq!(top.0.len(), 3, "cut to the depth asked for");
        let off = Simulator::new(universe(), unpaced(3), T0);
        assert_eq!(off.book_levels(0, 5, &mut bids, &mut asks), None, "depth_levels 0: no books");
    }

    #[test]
    fn all_trades_or_no_trades() {
        let with = |trade_percent| {
            let cfg = SimConfig { trade_percent, ..unpaced(1) };
            run(&mut Simulator::new(universe(), cfg, T0), 2_000, 1)
        };
        assert!(with(100).iter().all(|t| t.kind == TickKind::Trade));
        assert!(with(0).iter().all(|t| t.kind == TickKind::Quote && t.volume == 0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the seed and however wild the volatility, prices stay positive, uncrossed
        /// and on the grid (the one-tick floor and the cap hold).
        #[test]
        fn prices_stay_positive_and_on_grid(
            seed in any::<u64>(),
            vol in 0.0f64..=10.0,
            step_s in 1u64..3_600,
        ) {
            let u = universe();
            let cfg = SimConfig { volatility: vol, ..unpaced(seed) };
            let mut sim = Simulator::new(u.clone(), cfg, T0);
            for t in run(&mut sim, 3_000, step_s * SEC) {
                prop_assert!(check_tick(&u, &t).is_ok(), "{:?}", check_tick(&u, &t));
            }
        }
    }
}
