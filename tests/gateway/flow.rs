//! The normal life of a connection: subscribe, snapshot, live updates, unsubscribe, list,
//! ping, heartbeats, both formats.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;

async fn universe(c: &mut Client) -> Vec<String> {
    c.send(r#"{"op":"list","id":3}"#).await;
    let v = c.json().await;
    assert_eq!(v["type"], "symbols");
    assert_eq!(v["id"], 3);
    v["symbols"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn subscribe_acks_ids_then_snapshots_then_only_subscribed_live_updates_until_unsubscribed() {
    let gw = start(&[("feed.symbols", "20")]);
    let addr = gw.local_addr();
    tokio::time::sleep(Duration::from_millis(300)).await; // let every symbol get a value
    let mut c = Client::connect(addr, "").await;
    let names = universe(&mut c).await;
    assert_eq!(names.len(), 20);
    let (a, b) = (names[0].as_str(), names[1].as_str());

    c.send(&format!(r#"{{"op":"subscribe","symbols":["{a}","{b}"],"id":1}}"#)).await;
    let ack = c.json().await;
    assert_eq!(ack["type"], "subscribed", "{ack}");
    assert_eq!(ack["id"], 1);
    assert_eq!(ack["symbols"][a], 0, "ids are the universe's dense ids");
    assert_eq!(ack["symbols"][b], 1);

    // One snapshot per symbol, before any live update.
    let mut snap: HashMap<String, u64> = HashMap::new();
    for _ in 0..2 {
        let u = json_update(&c.json().await).expect("snapshot update");
        assert!(u.snapshot, "{u:?}");
        snap.insert(u.symbol.clone(), u.tick.seq);
    }
    assert!(snap.contains_key(a) && snap.contains_key(b));

    // Live updates: only the two subscribed symbols, seq past the snapshot.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let names_by_id = HashMap::new();
    collect(&mut c, &names_by_id, Duration::from_millis(1500), |u| {
        assert!(!u.snapshot);
        assert!(u.symbol == a || u.symbol == b, "update for unsubscribed {}", u.symbol);
        assert!(u.tick.seq > snap[&u.symbol]);
        assert!(u.tick.bid < u.tick.ask && u.tick.bid > 0);
        *seen.entry(u.symbol.clone()).or_default() += 1;
    })
    .await;
    assert!(seen.get(a).copied().unwrap_or(0) > 0, "no live updates for {a}: {seen:?}");

    // Unsubscribe: the reply, then never another update for it.
    c.send(&format!(r#"{{"op":"unsubscribe","symbols":["{a}"],"id":2}}"#)).await;
    loop {
        let v = c.json().await;
        if v["type"] == "unsubscribed" {
            assert_eq!(v["id"], 2);
            assert_eq!(v["symbols"], serde_json::json!([a]));
            break;
        }
        assert_eq!(v["type"], "update");
    }
    let mut after = 0;
    collect(&mut c, &names_by_id, Duration::from_millis(1000), |u| {
        assert_eq!(u.symbol, b, "update for {} after unsubscribe", u.symbol);
        after += 1;
    })
    .await;
    assert!(after > 0, "the still-subscribed symbol kept updating");
    gw.shutdown();
}

/// Reads updates until the stream has been quiet for `quiet`.
async fn read_all(mut c: Client, names: HashMap<u32, String>, quiet: Duration) -> Vec<Update> {
    let mut all = Vec::new();
    loop {
        let before = all.len();
        collect(&mut c, &names, quiet, |u| all.push(u.clone())).await;
        if all.len() == before {
            return all;
        }
    }
}

#[tokio::test]
async fn json_batched_json_and_binary_carry_the_same_values_for_the_same_ticks() {
    let gw = start(&[("feed.symbols", "10"), ("feed.rate", "4000"), ("feed.ticks", "8000")]);
    let addr = gw.local_addr();
    let syms: Vec<String> = (0..10).map(|i| gw.app().universe.name(i).to_string()).collect();
    let refs: Vec<&str> = syms.iter().map(String::as_str).collect();

    let mut j = Client::connect(addr, "format=json").await;
    let mut jb = Client::connect(addr, "format=json-batch").await;
    let mut b = Client::connect(addr, "format=binary").await;
    j.subscribe(&refs, "").await;
    jb.subscribe(&refs, "").await;
    let ids = b.subscribe(&refs, "").await;
    let names: HashMap<u32, String> = ids.into_iter().map(|(k, v)| (v, k)).collect();

    let jt = tokio::spawn(read_all(j, HashMap::new(), Duration::from_millis(1500)));
    let jbt = tokio::spawn(read_all(jb, HashMap::new(), Duration::from_millis(1500)));
    let bt = tokio::spawn(read_all(b, names, Duration::from_millis(1500)));
    let (ju, jbu, bu) = (jt.await.unwrap(), jbt.await.unwrap(), bt.await.unwrap());

    let index = |v: &[Update]| -> HashMap<(String, u64), crate::common::Update> {
        v.iter().filter(|u| !u.snapshot).map(|u| ((u.symbol.clone(), u.tick.seq), u.clone())).collect()
    };
    let (ji, jbi, bi) = (index(&ju), index(&jbu), index(&bu));
    let mut common = 0;
    for (k, u) in &ji {
        if let Some(v) = bi.get(k) {
            assert_eq!(u.tick, v.tick, "JSON and binary differ for {k:?}");
            common += 1;
        }
        if let Some(v) = jbi.get(k) {
            assert_eq!(u.tick, v.tick, "JSON and batched JSON differ for {k:?}");
        }
    }
    assert!(jbi.len() > 500, "too few batched updates: {}", jbi.len());
    assert!(
        common > 500,
        "too few updates in common to compare: {common} (json {}, binary {})",
        ji.len(),
        bi.len()
    );

    // Both end on the feed's final state.
    let snap = snapshot(addr, &refs).await;
    for s in &syms {
        let last_j = ju.iter().rev().find(|u| &u.symbol == s).unwrap();
        let last_b = bu.iter().rev().find(|u| &u.symbol == s).unwrap();
        let last_jb = jbu.iter().rev().find(|u| &u.symbol == s).unwrap();
        assert_eq!(last_j.tick, snap[s].tick, "json final for {s}");
        assert_eq!(last_jb.tick, snap[s].tick, "batched json final for {s}");
        assert_eq!(last_b.tick, snap[s].tick, "binary final for {s}");
    }
    gw.shutdown();
}

#[tokio::test]
async fn subprotocol_selects_the_format_and_is_echoed() {
    let gw = start(&[("feed.symbols", "5")]);
    let addr = gw.local_addr();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = Client::connect_with(addr, "", Some("tickgate.v1.binary"), None).await.unwrap();
    let sym = gw.app().universe.name(0).to_string();
    c.subscribe(&[&sym], "").await;
    match c.next().await {
        Some(Frame::Records(r)) => {
            assert_eq!(r.len(), 1);
            assert!(r[0].snapshot);
        }
        other => panic!("expected a binary snapshot, got {other:?}"),
    }
    let mut c = Client::connect_with(addr, "", Some("tickgate.v1.json-batch"), None).await.unwrap();
    c.subscribe(&[&sym], "").await;
    match c.next().await {
        Some(Frame::Json(serde_json::Value::Array(a))) => {
            assert_eq!(a.len(), 1);
            assert_eq!(
                (&a[0]["type"], &a[0]["symbol"], &a[0]["snapshot"]),
                (&"update".into(), &sym.as_str().into(), &true.into())
            );
        }
        other => panic!("expected a batched snapshot, got {other:?}"),
    }
    // tungstenite verifies the echo; check the header explicitly too.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: chat, tickgate.v1.json\r\n\r\n"
            .to_string()
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("sec-websocket-protocol: tickgate.v1.json"), "{head}");
    gw.shutdown();
}

#[tokio::test]
async fn ping_op_gets_pong_and_server_sends_heartbeat_pings() {
    let gw = start(&[("feed.rate", "100"), ("server.ping_interval", "200ms"), ("server.idle_timeout", "5s")]);
    let mut c = Client::connect(gw.local_addr(), "").await;
    let before = tickgate::clock::now_ns();
    c.send(r#"{"op":"ping","id":4}"#).await;
    let v = c.json().await;
    assert_eq!(v["type"], "pong");
    assert_eq!(v["id"], 4);
    let ts = v["ts"].as_u64().unwrap();
    assert!(ts >= before && ts <= tickgate::clock::now_ns(), "pong ts {ts} not server time now");
    // Nothing else is subscribed: only pings arrive for a second.
    assert!(c.next_within(Duration::from_millis(1100)).await.is_none());
    assert!(c.pings >= 3, "server pinged {} times in 1.1 s at a 200 ms interval", c.pings);
    gw.shutdown();
}
