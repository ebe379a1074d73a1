//! The integrity checker fed crafted streams: every rule can fail, and churn semantics.

use tickgate::books::Levels;
use tickgate::feeds::Tick;
use tickgate::protocol::binary::BookRecord;
use tickgate_loadtest::checker::{Checker, Verdict, book_problem};
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

/// A book of `symbol` at `seq`, `depth` asked, with these levels.
fn book(symbol: u32, seq: u64, depth: u16, bids: &[(i64, i64)], asks: &[(i64, i64)]) -> BookRecord {
    BookRecord {
        symbol,
        depth,
        book: Levels { seq, bids: bids.to_vec(), asks: asks.to_vec(), ..Levels::default() },
    }
}

/// A sane two-level book at `seq` (depth 2).
fn sane(symbol: u32, seq: u64) -> BookRecord {
    book(symbol, seq, 2, &[(100, 1), (99, 4)], &[(101, 2), (103, 1)])
}

#[test]
fn book_seq_must_strictly_rise_per_connection_and_symbol() {
    let mut c = holding(&[1, 2]);
    for (symbol, seq) in [(1, 1), (1, 2), (1, 9), (2, 1), (2, 5)] {
        c.book(0, 2, sane(symbol, seq));
    }
    assert_eq!(c.violations.total(), 0, "{:?}", c.samples);
    assert_eq!(c.books.books, 5);
    c.book(0, 2, sane(1, 9)); // repeated
    c.book(0, 2, sane(1, 3)); // backwards
    assert_eq!(c.violations.book_order, 2);
    assert!(c.samples[0].contains("book seq 9 after 9"), "{:?}", c.samples);
    // An out-of-order book does not move the history: 10 is still in order after 9.
    c.book(0, 2, sane(1, 10));
    assert_eq!(c.violations.book_order, 2);
    // Connections are independent.
    let other = c.add_conn();
    c.subscribed(other, &[1]);
    c.book(other, 2, sane(1, 1));
    assert_eq!(c.violations.total(), 2);
}

#[test]
fn malformed_books_are_invalid() {
    // (bids, asks, depth asked, depth field, invalid)
    type Case = (&'static [(i64, i64)], &'static [(i64, i64)], u16, u16, bool);
    let cases: &[Case] = &[
        (&[(100, 1), (99, 1)], &[(101, 1), (102, 1)], 2, 2, false),
        (&[], &[], 2, 2, false),                          // an empty book
        (&[(100, 1)], &[], 2, 2, false),                  // one side only
        (&[], &[(5, 1)], 1, 1, false),                    // at exactly the depth
        (&[(99, 1), (100, 1)], &[(101, 1)], 2, 2, true),  // bids ascending
        (&[(100, 1), (100, 2)], &[(101, 1)], 2, 2, true), // bids repeated
        (&[(100, 1)], &[(102, 1), (101, 1)], 2, 2, true), // asks descending
        (&[(100, 1)], &[(101, 1), (101, 1)], 2, 2, true), // asks repeated
        (&[(101, 1)], &[(101, 1)], 2, 2, true),           // locked
        (&[(102, 1)], &[(101, 1)], 2, 2, true),           // crossed
        (&[(100, 1), (99, 1), (98, 1)], &[], 2, 2, true), // more bids than the depth
        (&[], &[(1, 1), (2, 1)], 1, 1, true),             // more asks than the depth
        (&[(100, 1)], &[(101, 1)], 2, 3, true),           // depth field differs
        (&[(100, 1)], &[(101, 1)], 0, 0, true),           // no books were asked for
    ];
    for (i, &(bids, asks, asked, field, invalid)) in cases.iter().enumerate() {
        let b = book(1, 1, field, bids, asks);
        assert_eq!(book_problem(&b, asked).is_some(), invalid, "case {i}: {:?}", book_problem(&b, asked));
        let mut c = holding(&[1]);
        c.book(0, asked, b);
        assert_eq!(c.violations.book_invalid, u64::from(invalid), "case {i}");
        assert_eq!(c.violations.total(), u64::from(invalid), "case {i}");
    }
    let mut c = holding(&[1]);
    c.book(0, 2, book(1, 1, 2, &[(102, 1)], &[(101, 1)]));
    assert!(c.samples[0].contains("crossed"), "{:?}", c.samples);
}

#[test]
fn books_follow_the_subscription_and_are_kept_for_verify_final() {
    let mut c = holding(&[1]);
    c.keep_books(true);
    c.book(0, 2, sane(7, 1)); // never subscribed
    c.subscribe_sent(0, &[8]);
    c.book(0, 2, sane(8, 1)); // not acknowledged yet
    assert_eq!(c.violations.unsubscribed, 2);
    c.subscribed(0, &[8]);
    let stale = BookRecord { book: Levels { stale: true, ..sane(8, 4).book }, ..sane(8, 4) };
    c.book(0, 2, sane(8, 3));
    c.book(0, 2, stale.clone());
    c.book(0, 2, sane(8, 2)); // out of order: not kept
    assert_eq!((c.books.books, c.books.stale), (5, 1));
    assert_eq!(c.final_books(0), [(1, None), (8, Some(stale.book.clone()))]);
    // Between unsubscribe and its reply books are legal, after it they are not; a
    // re-subscribed symbol starts its book history again.
    c.unsubscribe_sent(0, &[8]);
    c.book(0, 2, sane(8, 5));
    c.unsubscribed(0, &[8]);
    c.book(0, 2, sane(8, 6));
    assert_eq!(c.violations.unsubscribed, 3);
    c.subscribe_sent(0, &[8]);
    c.subscribed(0, &[8]);
    assert_eq!(c.final_books(0), [(1, None), (8, None)]);
    c.book(0, 2, sane(8, 5));
    assert_eq!(c.violations.book_order, 1);
    // Without keep_books only the seq is followed.
    let mut c = holding(&[1]);
    c.book(0, 2, sane(1, 1));
    assert_eq!(c.final_books(0), [(1, None)]);
}
