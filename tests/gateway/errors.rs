//! Every error reply and close code of protocol v1, each asserted on a real connection, while
//! a well-behaved client on the same gateway keeps receiving updates.

use std::time::Duration;

use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// A client subscribed to the hottest symbol, to prove others are unaffected.
async fn bystander(addr: std::net::SocketAddr, symbol: &str) -> Client {
    let mut c = Client::connect(addr, "").await;
    c.subscribe(&[symbol], "").await;
    c
}

async fn still_receiving(c: &mut Client) {
    let mut n = 0;
    collect(c, &Default::default(), Duration::from_millis(500), |_| n += 1).await;
    assert!(n > 0, "the bystander stopped receiving updates");
}

#[tokio::test]
async fn malformed_control_messages_get_the_right_error_code_and_echo_the_id() {
    let gw = start(&[("feed.rate", "2000")]);
    let addr = gw.local_addr();
    let hot = gw.app().universe.name(0).to_string();
    let mut other = bystander(addr, &hot).await;
    let mut c = Client::connect(addr, "").await;
    let cases: &[(&str, &str, Option<i64>)] = &[
        ("not json at all", "bad_request", None),
        ("[1,2,3]", "bad_request", None),
        ("\"subscribe\"", "bad_request", None),
        ("{}", "bad_request", None),
        (r#"{"op":5,"id":1}"#, "bad_request", Some(1)),
        (r#"{"op":"subscribe","id":2}"#, "bad_request", Some(2)),
        (r#"{"op":"subscribe","symbols":"AAPL","id":3}"#, "bad_request", Some(3)),
        (r#"{"op":"subscribe","symbols":[1,2],"id":4}"#, "bad_request", Some(4)),
        (r#"{"op":"subscribe","symbols":[],"id":5}"#, "bad_request", Some(5)),
        (r#"{"op":"subscribe","symbols":["AAPL"],"id":"x"}"#, "bad_request", None),
        (r#"{"op":"subscribe","symbols":["AAPL"],"id":6,"max_rate":-1}"#, "bad_request", Some(6)),
        (r#"{"op":"subscribe","symbols":["AAPL"],"id":7,"max_rate":"fast"}"#, "bad_request", Some(7)),
        (r#"{"op":"unsubscribe","id":8}"#, "bad_request", Some(8)),
        (r#"{"op":"dance","id":9}"#, "unknown_op", Some(9)),
        (r#"{"op":"subscribe","symbols":["NOPE1"],"id":10}"#, "unknown_symbol", Some(10)),
        (r#"{"op":"unsubscribe","symbols":["NOPE2"],"id":11}"#, "unknown_symbol", Some(11)),
    ];
    for (input, code, id) in cases {
        c.send(input).await;
        let v = c.json().await;
        assert_eq!(v["type"], "error", "{input} → {v}");
        assert_eq!(v["code"], *code, "{input} → {v}");
        assert!(!v["message"].as_str().unwrap().is_empty());
        match id {
            Some(id) => assert_eq!(v["id"], *id, "{input} → {v}"),
            None => assert!(v.get("id").is_none(), "{input} → {v}"),
        }
    }
    // The connection is still usable after all of that.
    c.send(r#"{"op":"ping","id":99}"#).await;
    assert_eq!(c.json().await["type"], "pong");
    still_receiving(&mut other).await;
    gw.shutdown();
}

#[tokio::test]
async fn unknown_symbols_are_listed_and_the_known_ones_still_subscribe() {
    let gw = start(&[("feed.rate", "2000"), ("feed.symbols", "5")]);
    let sym = gw.app().universe.name(0).to_string();
    let mut c = Client::connect(gw.local_addr(), "").await;
    c.send(&format!(r#"{{"op":"subscribe","symbols":["{sym}","NOPE","ZZZZ"],"id":1}}"#)).await;
    let ack = c.json().await;
    assert_eq!(ack["type"], "subscribed");
    assert_eq!(ack["symbols"].as_object().unwrap().len(), 1);
    let err = c.json().await;
    assert_eq!(err["code"], "unknown_symbol");
    assert_eq!(err["id"], 1);
    assert_eq!(err["symbols"], serde_json::json!(["NOPE", "ZZZZ"]));
    let mut n = 0;
    collect(&mut c, &Default::default(), Duration::from_millis(800), |u| {
        assert_eq!(u.symbol, sym);
        n += 1;
    })
    .await;
    assert!(n > 0);
    gw.shutdown();
}

#[tokio::test]
async fn too_many_symbols_is_refused_whole() {
    let gw = start(&[("feed.rate", "1000"), ("server.max_symbols_per_client", "2")]);
    let u = &gw.app().universe;
    let (a, b, c3) = (u.name(0).to_string(), u.name(1).to_string(), u.name(2).to_string());
    let mut c = Client::connect(gw.local_addr(), "").await;
    c.send(&format!(r#"{{"op":"subscribe","symbols":["{a}","{b}","{c3}"],"id":1}}"#)).await;
    let v = c.json().await;
    assert_eq!(v["code"], "too_many_symbols", "{v}");
    c.subscribe(&[&a, &b], "").await; // exactly at the limit is fine
    gw.shutdown();
}

#[tokio::test]
async fn flooding_client_is_rate_limited() {
    let gw = start(&[("feed.rate", "100"), ("server.max_client_msgs_per_sec", "5")]);
    let mut c = Client::connect(gw.local_addr(), "").await;
    for i in 0..15 {
        c.send(&format!(r#"{{"op":"ping","id":{i}}}"#)).await;
    }
    let (mut pongs, mut limited) = (0, 0);
    for _ in 0..15 {
        let v = c.json().await;
        match v["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") => {
                assert_eq!(v["code"], "rate_limited");
                assert!(v["id"].is_i64(), "rate_limited echoes the id: {v}");
                limited += 1;
            }
            _ => panic!("{v}"),
        }
    }
    assert!((5..=6).contains(&pongs), "{pongs} pongs with a 5/s budget");
    assert_eq!(pongs + limited, 15);
    gw.shutdown();
}

#[tokio::test]
async fn binary_frame_from_client_closes_1003() {
    let gw = start(&[("feed.rate", "100")]);
    let mut c = Client::connect(gw.local_addr(), "").await;
    c.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(c.expect_close().await.0, 1003);
    gw.shutdown();
}

#[tokio::test]
async fn oversized_message_closes_1009() {
    let gw = start(&[("feed.rate", "100"), ("server.max_message_bytes", "1024")]);
    let mut c = Client::connect(gw.local_addr(), "").await;
    let big = format!(r#"{{"op":"ping","pad":"{}"}}"#, "x".repeat(2000));
    c.send(&big).await;
    assert_eq!(c.expect_close().await.0, 1009);
    gw.shutdown();
}

#[tokio::test]
async fn protocol_violations_close_1002_and_bad_utf8_1007_without_hurting_others() {
    let gw = start(&[("feed.rate", "2000")]);
    let addr = gw.local_addr();
    let hot = gw.app().universe.name(0).to_string();
    let mut other = bystander(addr, &hot).await;
    let cases: &[(&str, Vec<u8>, u16)] = &[
        ("unmasked frame", vec![0x81, 0x02, b'h', b'i'], 1002),
        ("reserved bit", masked(0x81 | 0x40, b"{}"), 1002),
        ("reserved opcode", masked(0x83, b"{}"), 1002),
        ("fragmented ping", masked(0x09, b"x"), 1002),
        ("stray continuation", masked(0x80, b"x"), 1002),
        ("invalid UTF-8 text", masked(0x81, &[0xff, 0xfe, 0xfd]), 1007),
        ("bad close code", masked(0x88, &[0x03, 0xe4]), 1002),
    ];
    for (what, bytes, code) in cases {
        let mut s = raw_ws(addr).await;
        s.write_all(bytes).await.unwrap();
        assert_eq!(raw_close_code(&mut s).await, *code, "{what}");
    }
    still_receiving(&mut other).await;
    let st = stats(addr).await;
    assert!(st["shards"][0]["closes"]["1002"].as_u64().unwrap() >= 6, "{st}");
    gw.shutdown();
}

#[tokio::test]
async fn client_close_is_echoed() {
    let gw = start(&[("feed.rate", "100")]);
    let mut s = raw_ws(gw.local_addr()).await;
    s.write_all(&masked(0x88, &[0x0f, 0xa0, b'b', b'y', b'e'])).await.unwrap(); // 4000 "bye"
    assert_eq!(raw_close_code(&mut s).await, 4000);
    gw.shutdown();
}

#[tokio::test]
async fn silent_client_is_closed_1008_idle_timeout() {
    // tungstenite answers pings only while it is being read; this client reads nothing.
    let gw =
        start(&[("feed.rate", "100"), ("server.ping_interval", "200ms"), ("server.idle_timeout", "700ms")]);
    let mut c = Client::connect(gw.local_addr(), "").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (code, reason) = c.expect_close().await;
    assert_eq!((code, reason.as_str()), (1008, "idle timeout"));
    gw.shutdown();
}

#[tokio::test]
async fn slow_consumer_is_closed_1008_and_others_are_unaffected() {
    let gw = start(&[
        ("feed.symbols", "20"),
        ("feed.rate", "50000"),
        ("server.slow_client_timeout", "500ms"),
        ("server.idle_timeout", "30s"),
    ]);
    let addr = gw.local_addr();
    let syms: Vec<String> = (0..20).map(|i| gw.app().universe.name(i).to_string()).collect();
    let refs: Vec<&str> = syms.iter().map(String::as_str).collect();
    let mut other = bystander(addr, &syms[0]).await;
    let mut slow = Client::connect_with(addr, "", None, Some(4096)).await.unwrap();
    slow.subscribe(&refs, "").await;
    // Keep the bystander reading while the slow one does not.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        still_receiving(&mut other).await;
    }
    let st = stats(addr).await;
    assert!(st["shards"][0]["closes"]["1008"].as_u64().unwrap() >= 1, "slow consumer not closed: {st}");
    // The slow client's stream ends (its socket was full, so the close frame itself may not fit).
    let mut ended = false;
    for _ in 0..100_000 {
        match slow.next_within(Duration::from_secs(5)).await {
            Some(Some(Frame::Close(code, reason))) => {
                assert_eq!((code, reason.as_str()), (1008, "slow consumer"));
                ended = true;
                break;
            }
            Some(Some(_)) => continue,
            Some(None) => {
                ended = true;
                break;
            }
            None => break,
        }
    }
    assert!(ended, "the slow client's connection was not closed");
    still_receiving(&mut other).await;
    gw.shutdown();
}
