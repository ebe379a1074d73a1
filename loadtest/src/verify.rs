//! `--verify-final`: for a finite feed (the gateway started with `--ticks N`), wait until
//! the feed has ended (`GET /stats` → `feed_ended`) and updates have settled, then compare
//! every client's last value of every symbol it holds — all fields — with the gateway's
//! `GET /snapshot`. The comparison is plain logic ([`compare`]); the HTTP calls are thin.

use std::collections::HashMap;
use std::time::Duration;

use tickgate::feeds::Tick;

use crate::decode::{JsonDecoder, SymbolTable};
use crate::report::VerifySummary;
use crate::worker::FinalValues;
use crate::ws::url::WsUrl;

/// Symbols per `GET /snapshot` request (keeps the URL short).
pub const SNAPSHOT_CHUNK: usize = 100;

/// Limit of one HTTP request.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest list of mismatch descriptions kept.
const MAX_SAMPLES: usize = 10;

/// Compares clients' last values with the gateway's snapshots (`snapshots[url]`: symbol →
/// latest tick of that URL's gateway).
pub fn compare(
    finals: &[FinalValues],
    snapshots: &[HashMap<u32, Tick>],
    symbols: &SymbolTable,
) -> VerifySummary {
    let mut v = VerifySummary::default();
    let empty = HashMap::new();
    for f in finals {
        let snap = snapshots.get(f.url).unwrap_or(&empty);
        for (sym, got) in &f.values {
            v.compared += 1;
            let want = snap.get(sym);
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

/// The latest value of each of `wanted` from `url`'s `GET /snapshot`.
///
/// # Errors
///
/// A message naming the request that failed.
pub async fn fetch_snapshots(
    url: &WsUrl,
    wanted: &[u32],
    symbols: &SymbolTable,
) -> Result<HashMap<u32, Tick>, String> {
    let mut out = HashMap::with_capacity(wanted.len());
    let mut dec = JsonDecoder::new();
    for chunk in wanted.chunks(SNAPSHOT_CHUNK) {
        let names: Vec<&str> = chunk.iter().map(|&s| symbols.name(s)).collect();
        let path = format!("/snapshot?symbols={}", names.join(","));
        let mut r = crate::http::get(url.addr, &url.host, &path, HTTP_TIMEOUT).await?;
        if r.status != 200 {
            return Err(format!(
                "GET http://{}{path} answered {}: {}",
                url.host,
                r.status,
                String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
            ));
        }
        dec.decode_update_array(&mut r.body, symbols, &mut |u| {
            out.insert(u.tick.symbol, u.tick);
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
        let snaps = vec![HashMap::from([(0, t(0, 9)), (1, t(1, 3)), (2, Tick { bid: 6, ..t(2, 4) })])];
        let finals = vec![
            FinalValues { client: 0, url: 0, values: vec![(0, Some(t(0, 9))), (1, None)] },
            FinalValues { client: 1, url: 0, values: vec![(2, Some(t(2, 4))), (0, Some(t(0, 8)))] },
        ];
        let v = compare(&finals, &snaps, &syms);
        assert_eq!((v.compared, v.mismatches, v.missing), (4, 2, 1));
        assert_eq!(v.samples.len(), 3);
        assert!(v.samples[0].contains("symbol B"), "{:?}", v.samples);
    }
}
