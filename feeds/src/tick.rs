//! The normalized Level-1 tick: the one event type that flows from every feed source through
//! the ring to the shards.
//!
//! A [`Tick`] carries the symbol's **full** L1 state after the event it reflects (bid/ask,
//! last trade, cumulative volume), not a delta. That is what makes conflation trivial and safe
//! downstream: the newest tick of a symbol is all a client ever needs.
//!
//! Prices, sizes and volume are fixed-point integers scaled by [`SCALE`] (10^8), so
//! `189.12` is `18_912_000_000`. No floating point is used anywhere in the pipeline.

/// Fixed-point scale of prices, sizes and volume: 8 decimal places.
pub const SCALE: i64 = 100_000_000;

/// What kind of feed event produced this tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TickKind {
    /// The best bid and/or ask changed.
    #[default]
    Quote = 0,
    /// A trade printed: `last`, `last_size` and `volume` changed.
    Trade = 1,
    /// Not an L1 event: a notice, inside the gateway (feed thread → ring → shards), that the
    /// symbol's order book changed. Its levels live in the gateway's book store; `seq` is the
    /// book's own sequence and [`Tick::book_first_changed`] the shallowest level that changed.
    /// Made with [`Tick::book_notice`]; never in tick files or on the bus.
    Book = 2,
}

impl TickKind {
    /// Decodes the wire/storage byte; unknown values are `None`.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Quote),
            1 => Some(Self::Trade),
            2 => Some(Self::Book),
            _ => None,
        }
    }
}

/// The aggressor of a trade: the side that crossed the spread (took liquidity), where the
/// source says so.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Side {
    /// The source does not say (and every quote).
    #[default]
    Unknown = 0,
    /// A buyer lifted the offer.
    Buy = 1,
    /// A seller hit the bid.
    Sell = 2,
}

impl Side {
    /// Decodes the wire/storage value; anything else is [`Side::Unknown`].
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Buy,
            2 => Self::Sell,
            _ => Self::Unknown,
        }
    }

    /// The protocol's name, or `None` for [`Side::Unknown`] (the field is then omitted).
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            Self::Unknown => None,
            Self::Buy => Some("buy"),
            Self::Sell => Some("sell"),
        }
    }
}

/// A normalized Level-1 tick: the full top-of-book state of one symbol after one feed event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tick {
    /// Dense symbol id, an index into the [`crate::Universe`].
    pub symbol: u32,
    /// What changed.
    pub kind: TickKind,
    /// Per-symbol sequence number: rises by exactly 1 for every feed event of this symbol,
    /// starting at 1. 0 means "no event yet".
    pub seq: u64,
    /// Best bid price (fixed point, 10^8).
    pub bid: i64,
    /// Size at the best bid (fixed point, 10^8).
    pub bid_size: i64,
    /// Best ask price (fixed point, 10^8).
    pub ask: i64,
    /// Size at the best ask (fixed point, 10^8).
    pub ask_size: i64,
    /// Last trade price (fixed point, 10^8); 0 before the first trade.
    pub last: i64,
    /// Last trade size (fixed point, 10^8).
    pub last_size: i64,
    /// Cumulative traded volume (fixed point, 10^8).
    pub volume: i64,
    /// Event time at the source, ns since the Unix epoch.
    pub ts_event: u64,
    /// Gateway ingest time, ns since the Unix epoch, stamped by the feed thread.
    pub ts_gateway: u64,
    /// Trades of this symbol so far, this one included when the tick is a trade (the trade's
    /// ordinal: 1, 2, 3, …; 0 = none yet). Stamped by the gateway's feed thread unless the
    /// source (a NATS publisher) already did, so a trade lost anywhere upstream of a shard
    /// shows as a jump that clients are told about (`gap`).
    pub trades: u64,
    /// The venue's trade id, for a trade whose source has one (0 = none).
    pub trade_id: u64,
    /// The trade's aggressor side, where the source says.
    pub side: Side,
}

/// Number of 64-bit words a [`Tick`] packs into (see [`Tick::to_words`]).
pub const TICK_WORDS: usize = 13;

impl Tick {
    /// A [`TickKind::Book`] notice: book `seq` of `symbol`, whose levels from
    /// `first_changed` (0 = the touch) down changed.
    pub fn book_notice(symbol: u32, seq: u64, first_changed: usize, ts_event: u64, ts_gateway: u64) -> Tick {
        Tick {
            symbol,
            kind: TickKind::Book,
            seq,
            ts_event,
            ts_gateway,
            // A notice has no trades: the field carries the first changed level.
            trades: first_changed as u64,
            ..Tick::default()
        }
    }

    /// For a [`TickKind::Book`] notice, the shallowest level (per side, 0 = the touch) that
    /// changed: a client shown fewer levels than that saw no change.
    pub fn book_first_changed(&self) -> usize {
        usize::try_from(self.trades).unwrap_or(usize::MAX)
    }

    /// Packs the tick into 64-bit words, for storage in atomic cells (the ring and the
    /// last-value cache). Inverse of [`Tick::from_words`].
    #[inline]
    pub fn to_words(&self) -> [u64; TICK_WORDS] {
        [
            u64::from(self.symbol) | (u64::from(self.kind as u8) << 32) | (u64::from(self.side as u8) << 40),
            self.seq,
            self.bid as u64,
            self.bid_size as u64,
            self.ask as u64,
            self.ask_size as u64,
            self.last as u64,
            self.last_size as u64,
            self.volume as u64,
            self.ts_event,
            self.ts_gateway,
            self.trades,
            self.trade_id,
        ]
    }

    /// Unpacks words written by [`Tick::to_words`]. An unknown kind byte decodes as a quote
    /// (it cannot occur for words produced by `to_words`).
    #[inline]
    pub fn from_words(w: &[u64; TICK_WORDS]) -> Self {
        Tick {
            symbol: w[0] as u32,
            kind: TickKind::from_u8((w[0] >> 32) as u8).unwrap_or_default(),
            seq: w[1],
            bid: w[2] as i64,
            bid_size: w[3] as i64,
            ask: w[4] as i64,
            ask_size: w[5] as i64,
            last: w[6] as i64,
            last_size: w[7] as i64,
            volume: w[8] as i64,
            ts_event: w[9],
            ts_gateway: w[10],
            trades: w[11],
            trade_id: w[12],
            side: Side::from_u8((w[0] >> 40) as u8),
        }
    }
}

/// Numbers each symbol's trades (see [`Tick::trades`]): the one place a tick's trade count
/// is stamped, by the gateway's feed thread and by a NATS publisher.
#[derive(Debug, Clone, Default)]
pub struct TradeCounter {
    counts: Vec<u64>,
}

impl TradeCounter {
    /// Counters for `symbols` ids, all at 0.
    pub fn new(symbols: usize) -> Self {
        TradeCounter { counts: vec![0; symbols] }
    }

    /// Continues symbol `id`'s count from `trades` (a restarted publisher resuming from the
    /// bus's last tick).
    pub fn resume(&mut self, id: u32, trades: u64) {
        if let Some(c) = self.counts.get_mut(id as usize) {
            *c = (*c).max(trades);
        }
    }

    /// Stamps `t.trades`. A tick that already carries a count (stamped upstream, by the
    /// publisher of a NATS feed) keeps it, and the counter follows it, so a trade lost
    /// upstream stays visible as a jump; otherwise a trade takes the next number and a quote
    /// carries the count so far. Ids outside the counter are left as they are.
    #[inline]
    pub fn stamp(&mut self, t: &mut Tick) {
        let Some(c) = self.counts.get_mut(t.symbol as usize) else { return };
        if t.trades != 0 {
            *c = (*c).max(t.trades);
            return;
        }
        if t.kind == TickKind::Trade {
            *c += 1;
        }
        t.trades = *c;
    }
}

/// Appends the exact decimal form of a fixed-point value to `out`: no exponent, no rounding,
/// trailing zeros of the fraction trimmed (`18_912_000_000` → `189.12`, `100 * SCALE` → `100`).
#[inline]
pub fn format_fixed(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(FixedBuf::new().format(v));
}

/// A stack buffer that formats one fixed-point value (see [`format_fixed`]); for encoders
/// that assemble a message on the stack before copying it out once.
pub struct FixedBuf {
    bytes: [u8; 32],
}

impl Default for FixedBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl FixedBuf {
    /// An empty buffer.
    #[inline]
    pub fn new() -> FixedBuf {
        FixedBuf { bytes: [0; 32] }
    }

    /// Formats `v` exactly (as [`format_fixed`]) and returns the bytes.
    #[inline]
    pub fn format(&mut self, v: i64) -> &[u8] {
        let abs = v.unsigned_abs();
        let mut len = 0;
        if v < 0 {
            self.bytes[0] = b'-';
            len = 1;
        }
        let mut ib = itoa::Buffer::new();
        let int = ib.format(abs / SCALE as u64).as_bytes();
        self.bytes[len..len + int.len()].copy_from_slice(int);
        len += int.len();
        let frac = abs % SCALE as u64;
        if frac != 0 {
            // frac + 10^8 prints as '1' followed by exactly the 8 fraction digits,
            // zero-padded: one itoa call instead of a padding loop.
            let digits = &ib.format(frac + SCALE as u64).as_bytes()[1..];
            let end = digits.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
            self.bytes[len] = b'.';
            self.bytes[len + 1..len + 1 + end].copy_from_slice(&digits[..end]);
            len += 1 + end;
        }
        &self.bytes[..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(v: i64) -> String {
        let mut out = Vec::new();
        format_fixed(&mut out, v);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn fixed_point_formats_exactly() {
        let cases: &[(i64, &str)] = &[
            (0, "0"),
            (18_912_000_000, "189.12"),
            (100 * SCALE, "100"),
            (1, "0.00000001"),
            (-1, "-0.00000001"),
            (-18_912_000_000, "-189.12"),
            (12_345_678_901_234, "123456.78901234"),
            (10_000_000, "0.1"),
            (i64::MAX, "92233720368.54775807"),
            (i64::MIN, "-92233720368.54775808"),
        ];
        for (v, want) in cases {
            assert_eq!(fmt(*v), *want, "value {v}");
        }
    }

    #[test]
    fn trades_are_numbered_per_symbol_and_upstream_counts_are_kept() {
        let mut c = TradeCounter::new(2);
        let trade = |symbol| Tick { symbol, kind: TickKind::Trade, ..Tick::default() };
        let quote = |symbol| Tick { symbol, ..Tick::default() };
        let mut got = Vec::new();
        for mut t in
            [quote(0), trade(0), trade(1), quote(0), trade(0), Tick { trades: 7, ..trade(1) }, trade(1)]
        {
            c.stamp(&mut t);
            got.push((t.symbol, t.trades));
        }
        assert_eq!(got, [(0, 0), (0, 1), (1, 1), (0, 1), (0, 2), (1, 7), (1, 8)]);
        let mut far = Tick { symbol: 9, ..trade(0) };
        c.stamp(&mut far);
        assert_eq!(far.trades, 0, "an id outside the counter is left alone");
        c.resume(0, 40);
        let mut t = trade(0);
        c.stamp(&mut t);
        assert_eq!(t.trades, 41);
    }

    #[test]
    fn words_round_trip() {
        let t = Tick {
            symbol: 7,
            kind: TickKind::Trade,
            seq: 42,
            bid: -5,
            bid_size: 1,
            ask: i64::MAX,
            ask_size: i64::MIN,
            last: 3,
            last_size: 4,
            volume: 5,
            ts_event: u64::MAX,
            ts_gateway: 9,
            trades: 11,
            trade_id: u64::MAX,
            side: Side::Sell,
        };
        assert_eq!(Tick::from_words(&t.to_words()), t);
    }
}
