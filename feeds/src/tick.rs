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
}

impl TickKind {
    /// Decodes the wire/storage byte; unknown values are `None`.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Quote),
            1 => Some(Self::Trade),
            _ => None,
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
}

/// Number of 64-bit words a [`Tick`] packs into (see [`Tick::to_words`]).
pub const TICK_WORDS: usize = 11;

impl Tick {
    /// Packs the tick into 64-bit words, for storage in atomic cells (the ring and the
    /// last-value cache). Inverse of [`Tick::from_words`].
    #[inline]
    pub fn to_words(&self) -> [u64; TICK_WORDS] {
        [
            u64::from(self.symbol) | (u64::from(self.kind as u8) << 32),
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
        }
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
        };
        assert_eq!(Tick::from_words(&t.to_words()), t);
    }
}
