//! Handshake-time security: token auth and entitlements, the Origin allow-list, and the
//! diagnostic echo route (off unless enabled).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::common::*;

const SECRET: &str = "an HS256 secret of at least 32 bytes!";

fn secret_file() -> String {
    let p = std::env::temp_dir().join(format!("tickgate-secret-{}", std::process::id()));
    std::fs::write(&p, format!("{SECRET}\n")).unwrap();
    p.display().to_string()
}

fn token(symbols: &[&str], ttl_secs: i64) -> String {
    let now = (tickgate::clock::now_ns() / 1_000_000_000) as i64;
    let syms: Vec<String> = symbols.iter().map(|s| s.to_string()).collect();
    tickgate::auth::mint(SECRET.as_bytes(), "alice", &syms, (now + ttl_secs) as u64).unwrap()
}

/// Extra request headers of a WebSocket upgrade (for `http_get`), plus `extra`.
fn upgrade_head(extra: &str) -> String {
    format!(
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_gates_the_handshake_and_entitlements_gate_symbols() {
    let file = secret_file();
    let g = start(&[("auth.mode", "token"), ("auth.secret_file", &file)]);
    let addr = g.local_addr();
    // No token, a forged one, an expired one: 401 with the reason, before any upgrade.
    let (code, resp) = http_get(addr, "/ws", &upgrade_head("")).await;
    assert_eq!(code, 401, "{resp}");
    assert!(body(&resp).contains("missing token"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("www-authenticate: bearer"), "{resp}");
    let forged =
        tickgate::auth::mint(b"some other secret, also 32 bytes long", "eve", &["*".into()], u64::MAX / 2)
            .unwrap();
    let (code, resp) = http_get(addr, &format!("/ws?token={forged}"), &upgrade_head("")).await;
    assert_eq!(code, 401, "{resp}");
    assert!(body(&resp).contains("invalid token"), "{resp}");
    let (code, resp) = http_get(addr, &format!("/ws?token={}", token(&["*"], -60)), &upgrade_head("")).await;
    assert_eq!((code, body(&resp).trim()), (401, "token expired"), "{resp}");

    // ?token=: entitled symbols subscribe, others get not_entitled; list is filtered.
    let t = token(&["AAPL", "MS*"], 3600);
    let mut c = Client::connect(addr, &format!("token={t}")).await;
    c.send(r#"{"op":"subscribe","symbols":["AAPL","MSFT","NVDA"],"id":1}"#).await;
    let ack = c.json().await;
    assert_eq!(ack["type"], "subscribed");
    assert_eq!(ack["symbols"].as_object().unwrap().len(), 2, "{ack}");
    let mut saw_error = false;
    for _ in 0..4 {
        let v = c.json().await;
        if v["type"] == "error" {
            assert_eq!(
                (v["code"].as_str(), v["symbols"][0].as_str()),
                (Some("not_entitled"), Some("NVDA")),
                "{v}"
            );
            saw_error = true;
            break;
        }
    }
    assert!(saw_error);
    c.send(r#"{"op":"list","id":2}"#).await;
    loop {
        let v = c.json().await;
        if v["type"] == "symbols" {
            let names: Vec<&str> =
                v["symbols"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
            assert!(
                names.contains(&"AAPL") && names.iter().all(|n| *n == "AAPL" || n.starts_with("MS")),
                "{names:?}"
            );
            break;
        }
    }

    // Authorization: Bearer, and a subprotocol entry (browsers) next to the format.
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {t}")).unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_ok());
    let proto = format!("tickgate.v1.binary, tickgate.token.{t}");
    let c2 = Client::connect_with(addr, "", Some(&proto), None).await;
    assert!(c2.is_ok(), "subprotocol token refused: {:?}", c2.err());
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_closes_1008_unless_refreshed() {
    let file = secret_file();
    let g = start(&[("auth.mode", "token"), ("auth.secret_file", &file)]);
    let addr = g.local_addr();
    let mut lapsing = Client::connect(addr, &format!("token={}", token(&["*"], 2))).await;
    lapsing.subscribe(&["AAPL"], "").await;
    let mut renewed = Client::connect(addr, &format!("token={}", token(&["*"], 2))).await;
    renewed.subscribe(&["AAPL"], "").await;
    renewed.send(&format!(r#"{{"op":"auth","token":"{}","id":9}}"#, token(&["*"], 3600))).await;
    let started = std::time::Instant::now();
    let (code, reason) = lapsing.expect_close().await;
    assert_eq!((code, reason.as_str()), (1008, "token expired"));
    assert!(started.elapsed() < Duration::from_secs(5));
    // The renewed one is still served after the first token's expiry.
    let mut got_auth = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        match renewed.next_within(Duration::from_millis(200)).await {
            Some(Some(Frame::Json(v))) if v["type"] == "authenticated" => got_auth = true,
            Some(Some(Frame::Close(c, r))) => panic!("renewed client closed: {c} {r}"),
            _ => {}
        }
    }
    assert!(got_auth);
    let s = stats(addr).await;
    assert_eq!(s["shards"][0]["token_expired_closes"], 1, "{s}");
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_origins_may_open_websockets() {
    let g = start(&[("server.allowed_origins", "https://good.example, https://also.example:8443")]);
    let addr = g.local_addr();
    let (code, resp) = http_get(addr, "/ws", &upgrade_head("Origin: https://evil.example\r\n")).await;
    assert_eq!(code, 403, "{resp}");
    for origin in ["https://good.example", "HTTPS://ALSO.EXAMPLE:8443"] {
        let (code, resp) = http_get(addr, "/ws", &upgrade_head(&format!("Origin: {origin}\r\n"))).await;
        assert_eq!(code, 101, "{origin}: {resp}");
    }
    // The gateway's own page (same origin as the Host) is always allowed.
    let (code, resp) = http_get(addr, "/ws", &upgrade_head(&format!("Origin: http://{addr}\r\n"))).await;
    assert_eq!(code, 101, "same origin: {resp}");
    // Programs send no Origin: allowed.
    let (code, _) = http_get(addr, "/ws", &upgrade_head("")).await;
    assert_eq!(code, 101);
    g.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_route_exists_only_when_enabled() {
    let g = start(&[]);
    let (code, _) = http_get(g.local_addr(), "/echo", &upgrade_head("")).await;
    assert_eq!(code, 404);
    g.shutdown();
    let g = start(&[("server.diagnostic_echo", "true")]);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/echo", g.local_addr())).await.unwrap();
    ws.send(Message::text("héllo")).await.unwrap();
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    let a = tokio::time::timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    let b = tokio::time::timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(a, Message::text("héllo"));
    assert_eq!(b, Message::binary(vec![0u8, 1, 2, 255]));
    g.shutdown();
}
