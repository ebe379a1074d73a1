//! The integrity checker fed crafted streams: every rule can fail, and churn semantics.

use tickgate::feeds::Tick;
use tickgate_loadtest::checker::{Checker, Verdict};
use tickgate_loadtest::decode::Update;

fn up(symbol: u32, seq: u64) -> Update {
    Update { tick: Tick { symbol, seq, ..Tick::default() }, snapshot: false }
}

fn snap(symbol: u32, seq: u64) -> Update {
    Update { snapshot: true, ..up(symbol, seq) }
}

/// A checker with connection 0 holding `symbols`.
fn holding(symbols: &[u32]) -> Checker {
    let mut c = Checker::new();
    let conn = c.add_conn();
    c.subscribe_sent(conn, symbols);
    c.subscribed(conn, symbols);
    c
}

#[test]
fn a_clean_stream_passes_and_gaps_count_as_conflation() {
    let mut c = holding(&[1, 2]);
    let stream =
        [(snap(1, 10), false), (up(1, 11), false), (up(1, 15), true), (up(2, 3), false), (up(2, 4), false)];
    for (u, conflated) in stream {
        assert_eq!(c.update(0, &u), Verdict::Ok { conflated });
    }
    assert_eq!(c.violations.total(), 0);
}

#[test]
fn seq_going_backwards_is_caught() {
    let mut c = holding(&[1]);
    c.update(0, &up(1, 10));
    assert_eq!(c.update(0, &up(1, 9)), Verdict::SeqBackwards);
    assert_eq!(c.update(0, &up(1, 10)), Verdict::SeqRepeated, "a live update must be newer");
    assert_eq!(c.update(0, &snap(1, 5)), Verdict::SeqBackwards, "a snapshot may not go back either");
    assert_eq!(c.violations.seq_backwards, 2);
    assert_eq!(c.violations.seq_repeated, 1);
    assert_eq!(c.violations.total(), 3);
    assert!(c.samples[0].contains("seq went back 10 -> 9"), "{:?}", c.samples);
    // Connections are independent: seq 1 on another connection is fine.
    let other = c.add_conn();
    c.subscribed(other, &[1]);
    assert_eq!(c.update(other, &up(1, 1)), Verdict::Ok { conflated: false });
}

#[test]
fn updates_for_symbols_not_subscribed_are_caught() {
    let mut c = holding(&[1]);
    assert_eq!(c.update(0, &up(7, 1)), Verdict::Unsubscribed);
    // Subscribe sent but not acknowledged: the gateway acknowledges before any update.
    c.subscribe_sent(0, &[8]);
    assert_eq!(c.update(0, &up(8, 1)), Verdict::Unsubscribed);
    c.unknown_symbol(0, "NOPE");
    assert_eq!(c.violations.unsubscribed, 3);
    c.subscribed(0, &[8]);
    assert_eq!(c.update(0, &up(8, 2)), Verdict::Ok { conflated: false });
}

#[test]
fn churn_updates_before_the_unsubscribed_reply_are_legal_after_it_not() {
    let mut c = holding(&[1, 2]);
    c.update(0, &up(1, 5));
    c.unsubscribe_sent(0, &[1]);
    // In flight: still legal, and still seq-checked.
    assert_eq!(c.update(0, &up(1, 6)), Verdict::Ok { conflated: false });
    assert_eq!(c.update(0, &up(1, 4)), Verdict::SeqBackwards);
    c.unsubscribed(0, &[1]);
    assert_eq!(c.update(0, &up(1, 7)), Verdict::Unsubscribed);
    assert_eq!(c.violations.unsubscribed, 1);
    assert_eq!(c.violations.seq_backwards, 1);
}

#[test]
fn a_resubscribed_symbol_starts_again_with_a_snapshot() {
    let mut c = holding(&[1]);
    c.update(0, &up(1, 50));
    c.unsubscribe_sent(0, &[1]);
    c.unsubscribed(0, &[1]);
    c.subscribe_sent(0, &[1]);
    c.subscribed(0, &[1]);
    // History is reset: a snapshot at any seq starts it again, no gap counted.
    assert_eq!(c.update(0, &snap(1, 60)), Verdict::Ok { conflated: false });
    assert_eq!(c.update(0, &up(1, 61)), Verdict::Ok { conflated: false });
    // Errors undo requests: a refused unsubscribe keeps the symbol held.
    c.unsubscribe_sent(0, &[1]);
    c.unsubscribe_failed(0, &[1]);
    assert_eq!(c.update(0, &up(1, 62)), Verdict::Ok { conflated: false });
    c.subscribe_sent(0, &[9]);
    c.subscribe_failed(0, &[9]);
    assert!(!c.knows(0, 9));
    assert_eq!(c.violations.total(), 0);
    assert_eq!(c.final_values(0), vec![(1, Some(up(1, 62).tick))]);
}

#[test]
fn trades_must_rise_per_symbol_and_gaps_are_accounted() {
    let mut c = holding(&[1, 2]);
    c.trade(0, 1, 5);
    c.trade(0, 1, 7);
    c.trade(0, 2, 3);
    c.gap(0, 1, 4);
    c.trade(0, 1, 12);
    assert_eq!(c.violations.total(), 0);
    assert_eq!((c.trades.trades, c.trades.gaps, c.trades.missed), (4, 1, 4));
    c.trade(0, 1, 12);
    c.trade(0, 1, 11);
    assert_eq!(c.violations.trade_order, 2);
    c.trade(0, 9, 1);
    c.gap(0, 9, 1);
    assert_eq!(c.violations.unsubscribed, 2);
}
