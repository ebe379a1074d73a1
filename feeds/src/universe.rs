//! The symbol universe: every symbol a feed can produce, mapped to dense `u32` ids once at
//! start-up so that everything downstream (ring, last-value cache, subscription index,
//! binary records) works with array indices instead of strings.
//!
//! The default universe is `feeds/data/us_equities.csv` (embedded at build time):
//! `symbol,ref_price,tick_size` per line, prices as exact decimals. [`Universe::extend_to`]
//! adds generated names when more symbols are asked for than the file holds.

use std::collections::HashMap;

use crate::tick::SCALE;

/// The embedded default universe file.
pub const DEFAULT_UNIVERSE_CSV: &str = include_str!("../data/us_equities.csv");

/// Longest symbol name accepted, in bytes.
pub const MAX_SYMBOL_LEN: usize = 32;

/// Reference data of one symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolInfo {
    /// Ticker, e.g. `AAPL`: 1..=32 bytes of `A-Z a-z 0-9 . - _ /`.
    pub name: String,
    /// Reference (starting) price, fixed point 10^8; > 0.
    pub ref_price: i64,
    /// Minimum price increment, fixed point 10^8; > 0.
    pub tick_size: i64,
}

/// Why a universe could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UniverseError {
    /// A line of the universe file is malformed.
    #[error("universe line {line}: {reason}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The same symbol appears twice.
    #[error("universe line {line}: duplicate symbol {name:?}")]
    Duplicate {
        /// 1-based line number of the second occurrence.
        line: usize,
        /// The repeated name.
        name: String,
    },
    /// No symbols at all.
    #[error("universe is empty")]
    Empty,
}

/// The set of symbols, with dense ids `0..len()`.
#[derive(Clone, Debug, Default)]
pub struct Universe {
    symbols: Vec<SymbolInfo>,
    by_name: HashMap<String, u32>,
}

impl Universe {
    /// The embedded default universe (several hundred US equities).
    ///
    /// # Errors
    /// Only if the embedded file is malformed, which a unit test rules out.
    pub fn load_default() -> Result<Self, UniverseError> {
        Self::parse_csv(DEFAULT_UNIVERSE_CSV)
    }

    /// Parses `symbol,ref_price,tick_size` lines. Blank lines and lines starting with `#`
    /// are ignored; a header line starting with `symbol,` is skipped.
    ///
    /// # Errors
    /// A [`UniverseError`] naming the first bad line.
    pub fn parse_csv(text: &str) -> Result<Self, UniverseError> {
        let mut u = Universe::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with("symbol,") {
                continue;
            }
            let bad = |reason: String| UniverseError::BadLine { line, reason };
            let mut parts = l.split(',').map(str::trim);
            let (Some(name), Some(price), Some(tick), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad("expected 3 fields: symbol,ref_price,tick_size".into()));
            };
            validate_name(name).map_err(bad)?;
            let ref_price = parse_fixed(price)
                .filter(|p| *p > 0)
                .ok_or_else(|| bad(format!("ref_price {price:?} is not a positive decimal")))?;
            let tick_size = parse_fixed(tick)
                .filter(|p| *p > 0)
                .ok_or_else(|| bad(format!("tick_size {tick:?} is not a positive decimal")))?;
            if u.by_name.contains_key(name) {
                return Err(UniverseError::Duplicate { line, name: name.to_string() });
            }
            u.push(SymbolInfo { name: name.to_string(), ref_price, tick_size });
        }
        if u.symbols.is_empty() {
            return Err(UniverseError::Empty);
        }
        Ok(u)
    }

    /// Builds a universe from explicit symbols (used by replayed and bus sources).
    ///
    /// # Errors
    /// On a bad or duplicate name, or an empty list.
    pub fn from_symbols(symbols: Vec<SymbolInfo>) -> Result<Self, UniverseError> {
        let mut u = Universe::default();
        for (i, s) in symbols.into_iter().enumerate() {
            let line = i + 1;
            validate_name(&s.name).map_err(|reason| UniverseError::BadLine { line, reason })?;
            if u.by_name.contains_key(&s.name) {
                return Err(UniverseError::Duplicate { line, name: s.name });
            }
            u.push(s);
        }
        if u.symbols.is_empty() {
            return Err(UniverseError::Empty);
        }
        Ok(u)
    }

    fn push(&mut self, s: SymbolInfo) {
        self.by_name.insert(s.name.clone(), self.symbols.len() as u32);
        self.symbols.push(s);
    }

    /// Truncates or extends the universe to exactly `n` symbols (`n >= 1`). Extra symbols get
    /// generated names (`SYM0001`, `SYM0002`, ...) and reference prices cycled from the
    /// existing ones, so a large universe keeps a realistic price mix. Deterministic.
    pub fn extend_to(&mut self, n: usize) {
        let n = n.max(1);
        if n <= self.symbols.len() {
            for s in self.symbols.drain(n..) {
                self.by_name.remove(&s.name);
            }
            return;
        }
        let base = self.symbols.len().max(1);
        let mut k = 0usize;
        while self.symbols.len() < n {
            k += 1;
            let name = format!("SYM{k:04}");
            if self.by_name.contains_key(&name) {
                continue;
            }
            let (ref_price, tick_size) = match self.symbols.get(k % base) {
                Some(t) => (t.ref_price, t.tick_size),
                None => (100 * SCALE, SCALE / 100),
            };
            self.push(SymbolInfo { name, ref_price, tick_size });
        }
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// True if there are no symbols (never true for a successfully built universe).
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// The id of `name`, if known.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    /// Reference data of symbol `id`, if in range.
    pub fn get(&self, id: u32) -> Option<&SymbolInfo> {
        self.symbols.get(id as usize)
    }

    /// The name of symbol `id`, or `""` if out of range.
    pub fn name(&self, id: u32) -> &str {
        self.symbols.get(id as usize).map_or("", |s| s.name.as_str())
    }

    /// All symbols in id order.
    pub fn symbols(&self) -> &[SymbolInfo] {
        &self.symbols
    }
}

/// Whether `name` is acceptable as a symbol name (see [`SymbolInfo::name`]).
pub fn valid_name(name: &str) -> bool {
    validate_name(name).is_ok()
}

fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_SYMBOL_LEN {
        return Err(format!("symbol {name:?} must be 1..={MAX_SYMBOL_LEN} bytes"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b)) {
        return Err(format!("symbol {name:?} may only hold A-Z a-z 0-9 . - _ /"));
    }
    Ok(())
}

/// Parses an exact decimal (`"189.12"`, `"-0.5"`, `"3"`) into fixed point 10^8.
/// Returns `None` for anything else: exponents, more than 8 decimals, overflow, empty parts.
pub fn parse_fixed(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    if int.is_empty() || frac.len() > 8 || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if body.contains('.') && frac.is_empty() {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: i64 = int.parse::<i64>().ok()?.checked_mul(SCALE)?;
    let mut scale = SCALE / 10;
    for b in frac.bytes() {
        v = v.checked_add(i64::from(b - b'0') * scale)?;
        scale /= 10;
    }
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_universe_loads_with_several_hundred_symbols() {
        let u = Universe::load_default().unwrap_or_default();
        assert!(u.len() >= 300, "only {} symbols", u.len());
        assert_eq!(u.id(u.name(0)), Some(0));
        assert!(u.id("AAPL").is_some());
    }

    #[test]
    fn parse_fixed_is_exact_and_strict() {
        assert_eq!(parse_fixed("189.12"), Some(18_912_000_000));
        assert_eq!(parse_fixed("0.00000001"), Some(1));
        assert_eq!(parse_fixed("-2.5"), Some(-250_000_000));
        assert_eq!(parse_fixed("7"), Some(700_000_000));
        for bad in ["", ".", "1.", ".5", "1e3", "1.000000001", "abc", "1.2.3", "99999999999999"] {
            assert_eq!(parse_fixed(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bad_lines_are_named() {
        let e = Universe::parse_csv("AAPL,1,0.01\nMSFT,x,0.01\n").err();
        assert!(matches!(e, Some(UniverseError::BadLine { line: 2, .. })), "{e:?}");
        let e = Universe::parse_csv("AAPL,1,0.01\nAAPL,2,0.01\n").err();
        assert!(matches!(e, Some(UniverseError::Duplicate { line: 2, .. })), "{e:?}");
        assert_eq!(Universe::parse_csv("# nothing\n").err(), Some(UniverseError::Empty));
        let e = Universe::parse_csv("A A,1,0.01\n").err();
        assert!(matches!(e, Some(UniverseError::BadLine { line: 1, .. })), "{e:?}");
    }

    #[test]
    fn extend_and_truncate_keep_ids_dense() {
        let mut u = Universe::parse_csv("AAPL,189.12,0.01\nMSFT,410,0.01\n").unwrap_or_default();
        u.extend_to(5);
        assert_eq!(u.len(), 5);
        for id in 0..5u32 {
            assert_eq!(u.id(u.name(id)), Some(id));
        }
        u.extend_to(1);
        assert_eq!(u.len(), 1);
        assert_eq!(u.id("MSFT"), None);
    }
}
