//! Behind real proxies: nginx terminating TLS and writing X-Forwarded-For, and HAProxy passing
//! TLS through with a PROXY protocol v2 header. Test clients get distinct source addresses in
//! 127.0.0.0/8, so the per-IP guard can be seen counting the addresses the proxies report.
//!
//! Through nginx the dashboards carry an identity provider's RS256 token.
//!
//! Needs the Debian `nginx` and `haproxy` packages (installed by `.ci/run`). Without them the
//! tests say so and pass, except under CI, where they fail.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::common::*;

/// A proxy process, stopped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The tool's path, or `None` (with a note) when it is not installed outside CI.
fn tool(name: &str) -> Option<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return Some(p);
        }
    }
    assert!(std::env::var_os("CI").is_none(), "{name} is not installed (apt-get install {name})");
    eprintln!("SKIPPED: {name} is not installed (apt-get install {name})");
    None
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tickgate-edge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("tmp")).unwrap();
    d
}

/// A self-signed certificate for 127.0.0.1/localhost in `dir` (cert.pem, key.pem); returns it.
fn certificate(dir: &Path) -> CertificateDer<'static> {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), c.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), c.signing_key.serialize_pem()).unwrap();
    c.cert.der().clone()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_listening(addr: SocketAddr, log: &Path) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the proxy did not listen on {addr}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type Wss = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// A wss:// WebSocket to `addr` from source address `src`, optionally with extra headers.
async fn wss_from(
    addr: SocketAddr,
    src: IpAddr,
    trust: &CertificateDer<'static>,
    headers: &[(&str, &str)],
    query: &str,
) -> Result<Wss, WsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tcp_from(addr, src).await;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(WsError::Io)?;
    let mut req = format!("wss://localhost:{}/ws?{query}", addr.port()).into_client_request()?;
    for (k, v) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, HeaderValue::from_str(v).unwrap());
    }
    Ok(tokio_tungstenite::client_async(req, tls).await?.0)
}

fn status(r: &Result<Wss, WsError>) -> u16 {
    match r {
        Ok(_) => 101,
        Err(WsError::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("handshake failed without an HTTP status: {e}"),
    }
}

/// Subscribes to AAPL and waits for an update.
async fn receives_updates(ws: &mut Wss) {
    ws.send(Message::text(r#"{"op":"subscribe","symbols":["AAPL"],"id":1}"#)).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next()).await.expect("no update through the proxy");
        if let Some(Ok(Message::Text(t))) = m
            && t.contains(r#""type":"update""#)
        {
            return;
        }
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The peers of `/stats` `top_clients` (refreshed every `server.stats_interval`), once it
/// lists at least `n`.
async fn top_client_peers(admin: SocketAddr, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = stats(admin).await;
        let peers: Vec<String> = s["top_clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["peer"].as_str().unwrap().to_string())
            .collect();
        if peers.len() >= n || tokio::time::Instant::now() > deadline {
            return peers;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_the_per_ip_guard_counts_the_clients_it_reports() {
    let Some(nginx) = tool("nginx") else { return };
    let dir = scratch("nginx");
    let cert = certificate(&dir);
    // The dashboards log in through an identity provider that signs RS256 tokens.
    let idp = crate::idp::TestKey::new(&dir, "rsa", "edge-1");
    let keys = dir.join("idp.pem");
    std::fs::write(&keys, format!("# kid=edge-1\n{}", idp.public_pem)).unwrap();
    let token = idp.sign(&crate::idp::claims("https://idp.example/", &["AAPL"]));
    let q = format!("token={token}");
    let g = start(&[
        ("auth.mode", "token"),
        ("auth.public_key_file", keys.to_str().unwrap()),
        ("auth.issuer", "https://idp.example/"),
        ("auth.audience", "tickgate"),
        ("auth.symbols_claim", "https://tickgate.example/symbols"),
        ("server.trusted_proxies", "127.0.0.1"),
        ("server.max_connections_per_ip", "2"),
        ("server.connection_rate_per_ip", "0"),
        ("feed.rate", "500"),
        ("server.stats_interval", "200ms"),
    ]);
    let gw = g.local_addr();
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;\n\
           uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
           map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}\n\
           server {{\n\
             listen 127.0.0.1:{port} ssl;\n\
             ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem;\n\
             location / {{\n\
               proxy_pass http://{gw};\n\
               proxy_http_version 1.1;\n\
               proxy_set_header Upgrade $http_upgrade;\n\
               proxy_set_header Connection $connection_upgrade;\n\
               proxy_set_header Host $host;\n\
               proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
               proxy_read_timeout 1h;\n\
             }}\n\
           }}\n\
         }}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let log = dir.join("error.log");
    let _nginx = Proc(
        Command::new(nginx)
            .args([
                "-p",
                &d.to_string(),
                "-e",
                log.to_str().unwrap(),
                "-c",
                dir.join("nginx.conf").to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let edge: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(edge, &log).await;
    assert_eq!(status(&wss_from(edge, ip("127.0.0.9"), &cert, &[], "").await), 401, "no token");

    // Two connections from 127.0.0.2 through nginx; the third is over its per-IP limit.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(wss_from(edge, ip("127.0.0.2"), &cert, &[], &q).await.unwrap());
    }
    let third = wss_from(edge, ip("127.0.0.2"), &cert, &[], &q).await;
    assert_eq!(status(&third), 429, "the third connection of 127.0.0.2 through nginx");
    // Another client behind the same nginx is not affected (without trusted_proxies it would
    // be: every connection would be nginx's 127.0.0.1).
    let mut other = wss_from(edge, ip("127.0.0.3"), &cert, &[], &q).await.unwrap();
    receives_updates(&mut other).await;
    receives_updates(&mut held[0]).await;
    held.push(other);

    // A client's own X-Forwarded-For is kept by nginx on the left of the list; the gateway
    // takes the right-most address that is not a trusted proxy: the client's real one.
    for spoof in ["10.1.1.1", "10.2.2.2"] {
        held.push(wss_from(edge, ip("127.0.0.4"), &cert, &[("x-forwarded-for", spoof)], &q).await.unwrap());
    }
    let spoofed = wss_from(edge, ip("127.0.0.4"), &cert, &[("x-forwarded-for", "10.3.3.3")], &q).await;
    assert_eq!(status(&spoofed), 429, "a spoofed X-Forwarded-For must not reset the per-IP count");

    // Straight to the gateway, from a peer that is not a trusted proxy: its header is ignored.
    let mut direct = Vec::new();
    for spoof in ["10.4.4.4", "10.5.5.5"] {
        let c = connect_with_xff(gw, ip("127.0.0.5"), spoof, &q).await;
        direct.push(c.unwrap());
    }
    let c = connect_with_xff(gw, ip("127.0.0.5"), "10.6.6.6", &q).await;
    match c {
        Err(WsError::Http(r)) => assert_eq!(r.status(), 429),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("X-Forwarded-For from an untrusted peer was believed"),
    }

    let admin = g.admin_addr().unwrap();
    let peers = top_client_peers(admin, 7).await;
    for want in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        assert!(peers.iter().any(|p| p.starts_with(want)), "{want} not among {peers:?}");
    }
    assert!(!peers.iter().any(|p| p.starts_with("10.")), "a spoofed address shows: {peers:?}");
    assert!(!peers.iter().any(|p| p.starts_with("127.0.0.1:")), "the proxy's address shows: {peers:?}");
    let s = stats(admin).await;
    assert_eq!(s["rejections"]["ip_connections"], 3, "{}", s["rejections"]);
}

async fn connect_with_xff(addr: SocketAddr, src: IpAddr, xff: &str, query: &str) -> Result<Client, WsError> {
    let mut req = format!("ws://{addr}/ws?{query}").into_client_request()?;
    req.headers_mut().insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
    let stream = tcp_from(addr, src).await;
    let (ws, _) = tokio_tungstenite::client_async(req, stream).await?;
    Ok(Client { ws, pings: 0 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_the_proxy_protocol_v2_header_names_the_client() {
    let Some(haproxy) = tool("haproxy") else { return };
    let dir = scratch("haproxy");
    let cert = certificate(&dir);
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    let g = start(&[
        ("server.tls_cert", c.to_str().unwrap()),
        ("server.tls_key", k.to_str().unwrap()),
        ("server.proxy_protocol", "v2"),
        ("server.trusted_proxies", "127.0.0.1"),
        ("server.max_connections_per_ip", "2"),
        ("server.connection_rate_per_ip", "0"),
        ("server.handshake_timeout", "1s"),
        ("feed.rate", "500"),
        ("server.stats_interval", "200ms"),
    ]);
    let gw = g.local_addr();
    let port = free_port();
    // TLS passes through HAProxy: the PROXY header comes first, then the client's TLS.
    let conf = format!(
        "global\n  maxconn 256\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
         frontend edge\n  bind 127.0.0.1:{port}\n  default_backend gateways\n\
         backend gateways\n  server gw1 {gw} send-proxy-v2\n"
    );
    std::fs::write(dir.join("haproxy.cfg"), conf).unwrap();
    let log = dir.join("haproxy.log");
    let out = std::fs::File::create(&log).unwrap();
    let _haproxy = Proc(
        Command::new(haproxy)
            .args(["-db", "-f", dir.join("haproxy.cfg").to_str().unwrap()])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    );
    let edge: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(edge, &log).await;

    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(wss_from(edge, ip("127.0.0.6"), &cert, &[], "").await.unwrap());
    }
    assert_eq!(status(&wss_from(edge, ip("127.0.0.6"), &cert, &[], "").await), 429);
    let mut other = wss_from(edge, ip("127.0.0.7"), &cert, &[], "").await.unwrap();
    receives_updates(&mut other).await;
    receives_updates(&mut held[1]).await;
    let admin = g.admin_addr().unwrap();
    let peers = top_client_peers(admin, 3).await;
    assert!(peers.iter().any(|p| p.starts_with("127.0.0.6:")), "{peers:?}");
    assert!(peers.iter().any(|p| p.starts_with("127.0.0.7:")), "{peers:?}");

    // A connection that skips the balancer (no PROXY header) is closed: its TLS hello is not
    // a PROXY header.
    let direct = wss_from(gw, ip("127.0.0.8"), &cert, &[], "").await;
    assert!(direct.is_err(), "a connection without a PROXY header was served");
    // One that sends nothing is closed after the handshake timeout.
    let mut idle = tcp_from(gw, ip("127.0.0.8")).await;
    let _ = idle.write_all(b"").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = stats(admin).await;
    assert!(s["rejections"]["proxy_protocol"].as_u64().unwrap() >= 2, "{}", s["rejections"]);
    assert_eq!(s["rejections"]["ip_connections"], 1, "{}", s["rejections"]);
}
