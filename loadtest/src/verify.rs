//! `--verify-final`: for a finite feed (the gateway started with `--ticks N`), wait until
//! the feed has ended (`GET /stats` → `feed_ended`) and updates have settled, then compare
//! every client's last value of every symbol it holds — all fields — with the gateway's
//! `GET /snapshot`. The comparison is plain logic ([`compare`]); the HTTP calls are thin.
//!
//! With `--depth N` the snapshot is asked for with `&depth=N` and every client's last **book**
//! of each symbol is compared too: its levels exactly and its stale flag. Not its `seq`: a
//! change deeper than N levels moves the gateway's book seq without sending the client a
//! book, so equal top-N levels may carry different seqs. A book that differs, or that only
//! one side has, counts in `book_mismatches` (the run's `final_book_mismatches`).

use std::collections::HashMap;
use std::time::Duration;

use tickgate::books::Levels;
use tickgate::feeds::Tick;

use crate::decode::{Decoded, JsonDecoder, SymbolTable};
use crate::report::VerifySummary;
use crate::worker::FinalValues;
use crate::ws::url::WsUrl;

/// Symbols per `GET /snapshot` request (keeps the URL short).
pub const SNAPSHOT_CHUNK: usize = 100;

/// Limit of one HTTP request.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest list of mismatch descriptions kept.
const MAX_SAMPLES: usize = 10;

/// What one gateway's `GET /snapshot` said about the symbols asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Symbol → its latest update.
    pub updates: HashMap<u32, Tick>,
    /// Symbol → its book (only when asked for with `&depth=N`), cut to N levels a side.
    pub books: HashMap<u32, Levels>,
}

/// Compares clients' last values (and books) with the gateway's snapshots (`snapshots[url]`:
/// what that URL's gateway holds).
pub fn compare(finals: &[FinalValues], snapshots: &[Snapshot], symbols: &SymbolTable) -> VerifySummary {
    let mut v = VerifySummary::default();
    let empty = Snapshot::default();
    for f in finals {
        let snap = snapshots.get(f.url).unwrap_or(&empty);
        for (sym, got) in &f.books {
            v.books_compared += 1;
            let problem = match (got, snap.books.get(sym)) {
                (Some(g), Some(w)) if g.bids == w.bids && g.asks == w.asks && g.stale == w.stale => None,
                (None, None) => None,
                (None, Some(w)) => Some(format!("never received a book; the gateway has book seq {}", w.seq)),
                (Some(g), None) => Some(format!("has book seq {} but the gateway has no book", g.seq)),
                (Some(g), Some(w)) => Some(format!(
                    "last book (seq {}, stale {}, bids {:?}, asks {:?}) differs from the gateway's (seq {}, \
                     stale {}, bids {:?}, asks {:?})",
                    g.seq, g.stale, g.bids, g.asks, w.seq, w.stale, w.bids, w.asks
                )),
            };
            if let Some(p) = problem {
                v.book_mismatches += 1;
                if v.samples.len() < MAX_SAMPLES {
                    v.samples.push(format!("client {} symbol {}: {p}", f.client, symbols.name(*sym)));
                }
            }
        }
        for (sym, got) in &f.values {
            v.compared += 1;
            let want = snap.updates.get(sym);
            let problem = match (got, want) {
                (Some(g), Some(w)) if g == w => None,
                (None, None) => None,
                (None, Some(w)) => {
                    v.missing += 1;
                    Some(format!("never received a value; the gateway has seq {}", w.seq))
                }
                (Some(g), None) => {
                    v.mismatches += 1;
                    Some(format!("has seq {} but the gateway has no value", g.seq))
                }
                (Some(g), Some(w)) => {
                    v.mismatches += 1;
                    Some(format!("last value {g:?} differs from the gateway's {w:?}"))
                }
            };
            if let Some(p) = problem
                && v.samples.len() < MAX_SAMPLES
            {
                v.samples.push(format!("client {} symbol {}: {p}", f.client, symbols.name(*sym)));
            }
        }
    }
    v
}

/// Polls `GET /stats` of `url`'s gateway until `feed_ended` is true, for at most `timeout`.
///
/// # Errors
///
/// A message if the gateway cannot be asked or the feed does not end in time.
pub async fn wait_feed_ended(url: &WsUrl, timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let r = crate::http::get(url.addr, &url.host, "/stats", HTTP_TIMEOUT).await?;
        if r.status != 200 {
            return Err(format!("GET http://{}/stats answered {}", url.host, r.status));
        }
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|e| format!("GET http://{}/stats: not JSON: {e}", url.host))?;
        if v.get("feed_ended").and_then(serde_json::Value::as_bool) == Some(true) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the feed of {} did not end within {timeout:?} (feed_ticks {}); --verify-final needs a \
                 finite feed: start the gateway with --ticks N",
                url.host,
                v.get("feed_ticks").map_or_else(|| "?".to_string(), |t| t.to_string())
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The latest value of each of `wanted` from `url`'s `GET /snapshot`, and with `depth` > 0
/// (`&depth=N`) its book.
///
/// # Errors
///
/// A message naming the request that failed.
pub async fn fetch_snapshots(
    url: &WsUrl,
    wanted: &[u32],
    symbols: &SymbolTable,
    depth: u16,
) -> Result<Snapshot, String> {
    let mut out = Snapshot { updates: HashMap::with_capacity(wanted.len()), books: HashMap::new() };
    let mut dec = JsonDecoder::new();
    for chunk in wanted.chunks(SNAPSHOT_CHUNK) {
        let names: Vec<&str> = chunk.iter().map(|&s| symbols.name(s)).collect();
        let mut path = format!("/snapshot?symbols={}", names.join(","));
        if depth > 0 {
            path.push_str(&format!("&depth={depth}"));
        }
        let mut r = crate::http::get(url.addr, &url.host, &path, HTTP_TIMEOUT).await?;
        if r.status != 200 {
            return Err(format!(
                "GET http://{}{path} answered {}: {}",
                url.host,
                r.status,
                String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
            ));
        }
        dec.decode_snapshot(&mut r.body, symbols, &mut |d| match d {
            Decoded::Update(u) => {
                out.updates.insert(u.tick.symbol, u.tick);
            }
            Decoded::Book(b) => {
                out.books.insert(b.symbol, b.book);
            }
        })
        .map_err(|e| format!("GET http://{}{path}: {e}", url.host))?;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn compares_every_field() {
        let syms = SymbolTable::new(vec!["A".into(), "B".into(), "C".into()]).unwrap();
        let t = |s: u32, seq: u64| Tick { symbol: s, seq, bid: 5, ..Tick::default() };
        let updates = HashMap::from([(0, t(0, 9)), (1, t(1, 3)), (2, Tick { bid: 6, ..t(2, 4) })]);
        let snaps = vec![Snapshot { updates, books: HashMap::new() }];
        let finals = vec![
            FinalValues { client: 0, url: 0, values: vec![(0, Some(t(0, 9))), (1, None)], books: vec![] },
            FinalValues {
                client: 1,
                url: 0,
                values: vec![(2, Some(t(2, 4))), (0, Some(t(0, 8)))],
                books: vec![],
            },
        ];
        let v = compare(&finals, &snaps, &syms);
        assert_eq!((v.compared, v.mismatches, v.missing), (4, 2, 1));
        assert_eq!((v.books_compared, v.book_mismatches), (0, 0));
        assert_eq!(v.samples.len(), 3);
        assert!(v.samples[0].contains("symbol B"), "{:?}", v.samples);
    }

    #[test]
    fn compares_books_by_levels_and_stale_flag_not_seq() {
        let syms = SymbolTable::new(vec!["A".into(), "B".into(), "C".into(), "D".into()]).unwrap();
        let book = |seq: u64, bid: i64, stale: bool| Levels {
            seq,
            stale,
            bids: vec![(bid, 5), (bid - 1, 7)],
            asks: vec![(bid + 1, 2)],
            ..Levels::default()
        };
        let snaps = vec![Snapshot {
            updates: HashMap::new(),
            books: HashMap::from([
                (0, book(9, 100, false)),
                (1, book(4, 100, true)),
                (2, book(3, 50, false)),
            ]),
        }];
        // (the client's last book of each symbol, book mismatches)
        type Case = (Vec<(u32, Option<Levels>)>, u64);
        let cases: Vec<Case> = vec![
            // Same levels and flag; a lower seq is fine (a change deeper than N was not sent).
            (vec![(0, Some(book(7, 100, false))), (1, Some(book(4, 100, true))), (3, None)], 0),
            (vec![(0, Some(book(9, 101, false)))], 1), // levels differ
            (vec![(1, Some(book(4, 100, false)))], 1), // stale flag differs
            (vec![(2, None)], 1),                      // never received the gateway's book
            (vec![(3, Some(book(1, 10, false)))], 1),  // a book the gateway does not have
            (vec![(0, Some(Levels { asks: vec![], ..book(9, 100, false) }))], 1),
        ];
        for (i, (books, want)) in cases.into_iter().enumerate() {
            let n = books.len() as u64;
            let finals = vec![FinalValues { client: 3, url: 0, values: vec![], books }];
            let v = compare(&finals, &snaps, &syms);
            assert_eq!((v.books_compared, v.book_mismatches), (n, want), "case {i}: {:?}", v.samples);
            assert_eq!(v.samples.len() as u64, want, "case {i}");
            assert!(v.samples.iter().all(|s| s.starts_with("client 3 symbol ")), "case {i}: {:?}", v.samples);
        }
    }
}
