//! wss:// and https:// with a test certificate (rcgen), a real rustls client, and a
//! certificate reload while connections stay up.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::*;

struct Certs {
    dir: PathBuf,
    der: CertificateDer<'static>,
}

/// A self-signed certificate for localhost/127.0.0.1, written as cert.pem and key.pem.
fn make_certs(dir: &Path) -> Certs {
    std::fs::create_dir_all(dir).unwrap();
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), c.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), c.signing_key.serialize_pem()).unwrap();
    Certs { dir: dir.to_path_buf(), der: c.cert.der().clone() }
}

fn connector(trust: &[&CertificateDer<'static>]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in trust {
        roots.add((*c).clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls_connect(
    addr: std::net::SocketAddr,
    trust: &[&CertificateDer<'static>],
) -> Result<Tls, std::io::Error> {
    let tcp = TcpStream::connect(addr).await?;
    connector(trust).connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

fn peer_cert(s: &Tls) -> CertificateDer<'static> {
    s.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_and_https_work_and_a_reload_keeps_existing_connections() {
    let dir = std::env::temp_dir().join(format!("tickgate-tls-test-{}", std::process::id()));
    let a = make_certs(&dir);
    let (cert, key) = (a.dir.join("cert.pem"), a.dir.join("key.pem"));
    let g = start(&[("server.tls_cert", cert.to_str().unwrap()), ("server.tls_key", key.to_str().unwrap())]);
    let addr = g.local_addr();

    // https://
    let mut s = tls_connect(addr, &[&a.der]).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut resp = String::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_string(&mut resp)).await;
    assert!(resp.starts_with("HTTP/1.1 200") && resp.ends_with("ok\n"), "{resp}");

    // wss://, both formats, over the shard's own TLS driving.
    let mut clients = Vec::new();
    for q in ["format=json", "format=binary"] {
        let stream = tls_connect(addr, &[&a.der]).await.unwrap();
        let req = format!("wss://localhost:{}/ws?{q}", addr.port()).into_client_request().unwrap();
        let (ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
        let mut c = TlsClient { ws };
        let ids = c.subscribe(&["AAPL", "MSFT", "NVDA"]).await;
        clients.push((c, ids));
    }
    for (c, ids) in &mut clients {
        assert!(c.updates(ids, Duration::from_millis(800)).await > 3, "few updates over TLS");
    }

    // Plain HTTP on the TLS port is not served.
    let (code, _) = http_get(addr, "/healthz", "").await;
    assert_ne!(code, 200);

    // Reload: new handshakes get the new certificate; the open connections keep streaming.
    let b = make_certs(&dir);
    assert_eq!(g.reload_tls(), Ok(true));
    let fresh = tls_connect(addr, &[&a.der, &b.der]).await.unwrap();
    assert_eq!(peer_cert(&fresh), b.der, "a handshake after the reload gets the new certificate");
    assert!(tls_connect(addr, &[&a.der]).await.is_err(), "the old certificate is no longer served");
    for (c, ids) in &mut clients {
        assert!(
            c.updates(ids, Duration::from_millis(800)).await > 3,
            "an existing connection stopped after reload"
        );
    }
    // A broken reload keeps the current certificate.
    std::fs::write(&key, "not a key").unwrap();
    assert!(g.reload_tls().unwrap_err().contains("server.tls_key"));
    let again = tls_connect(addr, &[&b.der]).await.unwrap();
    assert_eq!(peer_cert(&again), b.der);
    g.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

/// A WebSocket client over TLS (the harness's `Client` is plain TCP).
struct TlsClient {
    ws: tokio_tungstenite::WebSocketStream<Tls>,
}

impl TlsClient {
    async fn subscribe(&mut self, symbols: &[&str]) -> std::collections::HashMap<u32, String> {
        use futures_util::{SinkExt, StreamExt};
        let list = symbols.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(",");
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::text(format!(
                r#"{{"op":"subscribe","symbols":[{list}]}}"#
            )))
            .await
            .unwrap();
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next()).await.unwrap().unwrap().unwrap();
            if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "subscribed" {
                    return v["symbols"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (v.as_u64().unwrap() as u32, k.clone()))
                        .collect();
                }
            }
        }
    }

    /// Counts updates (JSON or binary records) arriving within `d`.
    async fn updates(&mut self, ids: &std::collections::HashMap<u32, String>, d: Duration) -> usize {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + d;
        let mut n = 0;
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            match m {
                tokio_tungstenite::tungstenite::Message::Text(t) if t.contains("\"update\"") => n += 1,
                tokio_tungstenite::tungstenite::Message::Binary(b) => {
                    for r in tickgate::protocol::binary::decode_frame(&b) {
                        assert!(ids.contains_key(&r.unwrap().tick.symbol));
                        n += 1;
                    }
                }
                _ => {}
            }
        }
        n
    }
}
