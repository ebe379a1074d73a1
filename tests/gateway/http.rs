//! The HTTP routes beside the WebSocket, the connection limit and graceful shutdown.

use std::time::Duration;

use crate::common::*;

const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                       Sec-WebSocket-Version: 13\r\n";

#[tokio::test]
async fn routes_answer_with_the_documented_statuses() {
    let gw = start(&[("feed.rate", "1000")]);
    let addr = gw.local_addr();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (s, t) = http_get(addr, "/healthz", "").await;
    assert_eq!((s, body(&t)), (200, "ok\n"));

    let (s, t) = http_get(addr, "/ws", "").await;
    assert_eq!(s, 426, "{t}");
    assert!(body(&t).contains("WebSocket"), "{t}");

    let (s, t) = http_get(addr, "/ws?format=xml", UPGRADE).await;
    assert_eq!(s, 400, "{t}");
    assert!(body(&t).contains("unknown format"), "{t}");

    let (s, t) =
        http_get(addr, "/ws", &format!("{UPGRADE}Sec-WebSocket-Protocol: tickgate.v9.json\r\n")).await;
    assert_eq!(s, 400, "{t}");

    let (s, t) = http_get(addr, "/snapshot?symbols=AAPL,NOPE,ZZZ", "").await;
    assert_eq!(s, 404, "{t}");
    let v: serde_json::Value = serde_json::from_str(body(&t)).unwrap();
    assert_eq!(v["symbols"], serde_json::json!(["NOPE", "ZZZ"]));

    let (s, _) = http_get(addr, "/snapshot", "").await;
    assert_eq!(s, 400);

    let snap = snapshot(addr, &["AAPL", "MSFT"]).await;
    assert_eq!(snap.len(), 2);
    assert!(snap["AAPL"].snapshot && snap["AAPL"].tick.seq > 0);

    let (s, _) = http_get(addr, "/nope", "").await;
    assert_eq!(s, 404);
    gw.shutdown();
}

#[tokio::test]
async fn upgrades_beyond_max_connections_get_503() {
    let gw = start(&[("feed.rate", "100"), ("server.max_connections", "2")]);
    let addr = gw.local_addr();
    let _a = Client::connect(addr, "").await;
    let _b = Client::connect(addr, "").await;
    let (s, t) = http_get(addr, "/ws", UPGRADE).await;
    assert_eq!(s, 503, "{t}");
    assert!(body(&t).contains("connection limit"), "{t}");
    drop(_a);
    // The slot frees up once the gateway notices the close.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if Client::connect_with(addr, "", None, None).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.shutdown();
}

#[tokio::test]
async fn shutdown_closes_every_client_with_1001() {
    let gw = start(&[("feed.rate", "2000"), ("server.shards", "2")]);
    let addr = gw.local_addr();
    let hot = gw.app().universe.name(0).to_string();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut c = Client::connect(addr, "").await;
        c.subscribe(&[&hot], "").await;
        clients.push(c);
    }
    let stopper = tokio::task::spawn_blocking(move || gw.shutdown());
    for c in &mut clients {
        let (code, reason) = c.expect_close().await;
        assert_eq!((code, reason.as_str()), (1001, "server shutting down"));
    }
    tokio::time::timeout(WAIT, stopper).await.expect("shutdown took too long").unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener still open after shutdown");
}
