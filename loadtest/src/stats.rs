//! Measurements: HDR histograms with fixed bounds (so any two can be merged), their
//! percentiles, their serialized form (V2 + deflate, base64) for the JSON report, and the
//! plain counters each worker thread keeps.
//!
//! Each worker thread records into its own histograms without locks; once a second it
//! swaps them for empty ones and sends the full ones to the coordinator, which merges them
//! (`Histogram::add`) into the per-second interval and the run total
//! (`quinn-rs/quinn : perf/src/stats.rs` does the same).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize, Serializer};

/// Lowest latency distinguished: 1 ns.
pub const LOWEST_NS: u64 = 1;
/// Highest latency tracked: 60 s (larger values are clamped to it).
pub const HIGHEST_NS: u64 = tickgate::stats::LATENCY_MAX_NS;
/// Significant figures: 3 (values are accurate to 0.1%).
pub const SIGFIG: u8 = 3;
/// Per-client delivered rates are recorded in milli-updates per second, up to 10^9
/// updates/s.
pub const RATE_SCALE: f64 = 1000.0;
const RATE_HIGHEST: u64 = 1_000_000_000_000;

/// An empty latency histogram (1 ns – 60 s, 3 significant figures, about 216 KiB): the
/// gateway's own constructor, so the two sides' histograms have the same shape.
pub use tickgate::stats::latency_histogram;

/// An empty per-client rate histogram (milli-updates/s, up to 10^9 updates/s).
///
/// # Panics
///
/// Never: the bounds are constants (a unit test builds one).
pub fn rate_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, RATE_HIGHEST, SIGFIG) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds rejected: {e:?}"),
    }
}

/// Records `ns` (clamped into the histogram's range).
#[inline]
pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.clamp(LOWEST_NS, HIGHEST_NS));
}

/// Percentiles of a latency distribution, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th.
    pub p99: u64,
    /// 99.9th.
    pub p999: u64,
    /// 99.99th.
    pub p9999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// The percentiles of `h` (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// A histogram that serializes as a base64 string of its V2 + deflate encoding (the format
/// of HdrHistogram's interval logs), so a JSON report carries the full distribution and
/// reports can be merged exactly.
#[derive(Clone)]
pub struct Hist(pub Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Hist(latency_histogram())
    }
}

impl fmt::Debug for Hist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hist({} samples)", self.0.len())
    }
}

impl PartialEq for Hist {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

/// Encodes `h` as base64 of V2 + deflate.
///
/// # Errors
///
/// If the serializer fails (it does not for a valid histogram).
pub fn encode(h: &Histogram<u64>) -> Result<String, String> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| format!("serializing a histogram: {e:?}"))?;
    Ok(B64.encode(buf))
}

/// Decodes a histogram written by [`encode`] (V2 with or without deflate).
///
/// # Errors
///
/// Bad base64 or a bad histogram encoding.
pub fn decode(s: &str) -> Result<Histogram<u64>, String> {
    let bytes = B64.decode(s.trim()).map_err(|e| format!("histogram is not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("histogram is not a valid V2 encoding: {e:?}"))
}

impl Serialize for Hist {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(&self.0).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        decode(&s).map(Hist).map_err(serde::de::Error::custom)
    }
}

/// Adds `from` into `into`; a histogram whose values do not fit is reported, not lost
/// silently.
///
/// # Errors
///
/// If `from` holds values beyond `into`'s range.
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) -> Result<(), String> {
    into.add(from).map_err(|e| format!("merging histograms: {e:?}"))
}

/// Plain counters of one worker thread over one interval (or summed over many).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Live updates received during measurement.
    pub updates: u64,
    /// Snapshots received during measurement.
    pub snapshots: u64,
    /// Live updates whose seq jumped by more than 1 (intermediate updates conflated).
    pub conflated: u64,
    /// Bytes read from sockets during measurement (frames and headers).
    pub bytes: u64,
    /// Data frames received during measurement.
    pub frames: u64,
    /// Server pings answered.
    pub pings: u64,
    /// Churn operations (unsubscribe one symbol + subscribe another) sent.
    pub churn_ops: u64,
    /// Order books received during measurement (`--depth`; not counted as updates).
    #[serde(default)]
    pub books: u64,
}

impl Counters {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &Counters) {
        self.updates += o.updates;
        self.snapshots += o.snapshots;
        self.conflated += o.conflated;
        self.bytes += o.bytes;
        self.frames += o.frames;
        self.pings += o.pings;
        self.churn_ops += o.churn_ops;
        self.books += o.books;
    }
}

/// Formats nanoseconds for a table: `850ns`, `12.3µs`, `4.56ms`, `1.20s`.
pub fn fmt_ns(ns: u64) -> String {
    let v = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}µs", v / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2}ms", v / 1e6)
    } else {
        format!("{:.2}s", v / 1e9)
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_valid_and_round_trip() {
        let mut h = latency_histogram();
        assert_eq!(h.high(), HIGHEST_NS);
        for v in [0u64, 1, 999, 1_000_000, HIGHEST_NS, u64::MAX] {
            record_ns(&mut h, v);
        }
        let back = decode(&encode(&h).unwrap()).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.max(), h.max());
        let p = Percentiles::of(&h);
        assert!(p.p50 <= p.p99 && p.p99 <= p.max);
        assert_eq!(Percentiles::of(&latency_histogram()), Percentiles::default());
        let mut r = rate_histogram();
        r.saturating_record(0);
        r.saturating_record(5_000_000);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn percentiles_survive_a_json_round_trip_exactly() {
        // A report read back (`loadtest merge`, `--baseline`) must equal what was written,
        // means included: CI once saw this mean come back one ulp off.
        for mean in [418334.22791566723, 0.1 + 0.2, 1e-300, 123456789.98765433, f64::MAX] {
            let p = Percentiles { mean, ..Percentiles::default() };
            let back: Percentiles = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
            assert_eq!(back.mean.to_bits(), mean.to_bits(), "{mean}");
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_ns(850), "850ns");
        assert_eq!(fmt_ns(12_345), "12.3µs");
        assert_eq!(fmt_ns(4_560_000), "4.56ms");
        assert_eq!(fmt_ns(1_200_000_000), "1.20s");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(100), "100");
    }
}
