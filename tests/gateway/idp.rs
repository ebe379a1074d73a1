//! Identity-provider tokens: RS256, ES256 and EdDSA keys (made by the `openssl` tool) published
//! as a JWKS by an HTTP(S) server in the test, key rotation without a restart, an identity
//! provider that goes down, two issuers sharing a `kid`, PEM key files, and a table of bad
//! tokens answered 401 with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::*;

const CLAIM: &str = "https://tickgate.example/symbols";

fn now() -> u64 {
    tickgate::clock::now_ns() / 1_000_000_000
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tickgate-idp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out =
        Command::new("openssl").args(args).output().expect("the openssl tool (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// A key pair made by openssl: its private PEM (to sign), public PEM and JWK.
#[derive(Clone)]
pub(crate) struct TestKey {
    kid: String,
    alg: Algorithm,
    private_pem: Vec<u8>,
    pub(crate) public_pem: String,
    jwk: Value,
}

impl TestKey {
    pub(crate) fn new(dir: &Path, kind: &str, kid: &str) -> TestKey {
        let private = dir.join(format!("{kid}-{kind}.key"));
        let p = private.to_str().unwrap();
        match kind {
            "rsa" => {
                openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", p])
            }
            "ec" => {
                openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", p])
            }
            "ed" => openssl(&["genpkey", "-algorithm", "ED25519", "-out", p]),
            _ => unreachable!(),
        };
        let public_pem = String::from_utf8(openssl(&["pkey", "-in", p, "-pubout"])).unwrap();
        let der: Vec<u8> = STANDARD
            .decode(public_pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>())
            .unwrap();
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let (alg, jwk) = match kind {
            "rsa" => {
                let modulus = String::from_utf8(openssl(&["rsa", "-in", p, "-modulus", "-noout"])).unwrap();
                let hex = modulus.trim().strip_prefix("Modulus=").unwrap();
                let n: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                (
                    Algorithm::RS256,
                    json!({"kty":"RSA","use":"sig","alg":"RS256","kid":kid,"n":b64(&n),"e":"AQAB"}),
                )
            }
            "ec" => {
                let point = &der[der.len() - 65..];
                assert_eq!(point[0], 4);
                (
                    Algorithm::ES256,
                    json!({"kty":"EC","crv":"P-256","alg":"ES256","kid":kid,"x":b64(&point[1..33]),"y":b64(&point[33..])}),
                )
            }
            _ => (
                Algorithm::EdDSA,
                json!({"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":kid,"x":b64(&der[der.len() - 32..])}),
            ),
        };
        TestKey { kid: kid.into(), alg, private_pem: std::fs::read(&private).unwrap(), public_pem, jwk }
    }

    fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&self.private_pem).unwrap(),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&self.private_pem).unwrap(),
            _ => EncodingKey::from_ed_pem(&self.private_pem).unwrap(),
        }
    }

    /// A token with `claims`, signed by this key, naming its kid.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.encoding_key()).unwrap()
    }
}

pub(crate) fn claims(iss: &str, symbols: &[&str]) -> Value {
    json!({"iss": iss, "aud": "tickgate", "sub": "dashboard-7", "exp": now() + 600, CLAIM: symbols})
}

/// An identity provider's JWKS endpoint: serves `doc`, counts requests, can go down.
struct Jwks {
    url: String,
    doc: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl Jwks {
    async fn start(keys: &[&TestKey], tls: Option<tokio_rustls::TlsAcceptor>) -> Jwks {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let doc = Arc::new(Mutex::new(String::new()));
        let (hits, down) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let j = Jwks { url: format!("{scheme}://127.0.0.1:{}/certs", addr.port()), doc, hits, down };
        j.publish(keys);
        let (doc, hits, down) = (j.doc.clone(), j.hits.clone(), j.down.clone());
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else { return };
                let (doc, hits, down, tls) = (doc.clone(), hits.clone(), down.clone(), tls.clone());
                tokio::spawn(async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    if down.load(Ordering::SeqCst) {
                        return; // closed without an answer
                    }
                    let body = doc.lock().unwrap().clone();
                    match tls {
                        Some(t) => {
                            if let Ok(s) = t.accept(s).await {
                                serve(s, &body).await;
                            }
                        }
                        None => serve(s, &body).await,
                    }
                });
            }
        });
        j
    }

    fn publish(&self, keys: &[&TestKey]) {
        let v = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
        *self.doc.lock().unwrap() = v.to_string();
    }
}

async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S, body: &str) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// A WebSocket handshake with `token`: `(101, "")` when accepted, else the status and body.
async fn handshake(addr: std::net::SocketAddr, token: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /ws?token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            // The connection stays open (an upgrade, or keep-alive): stop at the end of the
            // head of a 101, or of the body of anything else.
            let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if head.starts_with("http/1.1 101") || body.len() >= len {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(WAIT, read).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, if status == 101 { String::new() } else { body(&text).trim().to_string() })
}

async fn subscribes(addr: std::net::SocketAddr, token: &str, symbol: &str) {
    let mut c = Client::connect(addr, &format!("token={token}")).await;
    let acks = c.subscribe(&[symbol], "").await;
    assert!(acks.contains_key(symbol), "{acks:?}");
}

fn idp_gateway(extra: &[(&str, &str)]) -> tickgate::gateway::Gateway {
    let mut o = vec![
        ("auth.mode", "token"),
        ("auth.audience", "tickgate"),
        ("auth.symbols_claim", CLAIM),
        ("feed.rate", "200"),
    ];
    o.extend_from_slice(extra);
    start(&o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_es256_and_eddsa_tokens_verify_from_a_jwks_url() {
    let dir = scratch("algs");
    let (rsa, ec, ed) =
        (TestKey::new(&dir, "rsa", "r1"), TestKey::new(&dir, "ec", "e1"), TestKey::new(&dir, "ed", "d1"));
    let idp = Jwks::start(&[&rsa, &ec, &ed], None).await;
    let iss = "https://idp.example/realms/trading";
    let g = idp_gateway(&[("auth.issuer", iss), ("auth.jwks_url", &idp.url)]);
    let addr = g.local_addr();
    for k in [&rsa, &ec, &ed] {
        let t = k.sign(&claims(iss, &["AAPL", "MS*"]));
        subscribes(addr, &t, "MSFT").await;
        // Entitlements come from the namespaced claim: NVDA is not granted.
        let mut c = Client::connect(addr, &format!("token={t}")).await;
        c.send(r#"{"op":"subscribe","symbols":["NVDA"],"id":2}"#).await;
        let mut refused = false;
        for _ in 0..3 {
            let v = c.json().await;
            if v["type"] == "error" {
                assert_eq!(v["code"], "not_entitled", "{v}");
                refused = true;
                break;
            }
        }
        assert!(refused, "{:?} token: NVDA must be refused", k.alg);
    }
    let s = stats(addr).await;
    assert_eq!(s["auth"]["keys"], 3, "{}", s["auth"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_over_https_from_a_private_ca_verifies() {
    let dir = scratch("https");
    let key = TestKey::new(&dir, "ec", "tls-1");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let key_der = tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key_der)
    .unwrap();
    let idp = Jwks::start(&[&key], Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))).await;
    assert!(idp.url.starts_with("https://"));
    let ca_file = dir.join("ca.pem");
    let g = idp_gateway(&[("auth.jwks_url", &idp.url), ("auth.jwks_ca_file", ca_file.to_str().unwrap())]);
    subscribes(g.local_addr(), &key.sign(&claims("any", &["*"])), "AAPL").await;
    // Without the private CA the endpoint is not trusted: no keys, every token refused.
    let g2 = idp_gateway(&[("auth.jwks_url", &idp.url)]);
    let (code, reason) = handshake(g2.local_addr(), &key.sign(&claims("any", &["*"]))).await;
    assert_eq!(code, 401, "{reason}");
    let s = stats(g2.local_addr()).await;
    assert!(s["auth"]["jwks_fetch_errors"].as_u64().unwrap() >= 1, "{}", s["auth"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_without_a_restart_and_survive_an_idp_outage() {
    let dir = scratch("rotate");
    let (old, new) = (TestKey::new(&dir, "rsa", "2026-11"), TestKey::new(&dir, "rsa", "2026-12"));
    let idp = Jwks::start(&[&old], None).await;
    let iss = "https://idp.example/";
    let g = idp_gateway(&[
        ("auth.issuer", iss),
        ("auth.jwks_url", &idp.url),
        ("auth.jwks_refresh", "1s"),
        ("auth.jwks_min_refresh", "1s"),
    ]);
    let addr = g.local_addr();
    let old_token = old.sign(&claims(iss, &["*"]));
    subscribes(addr, &old_token, "AAPL").await;

    // The provider publishes the new key and signs with it at once: the first handshake with
    // an unknown kid triggers one refetch and is accepted.
    idp.publish(&[&old, &new]);
    let new_token = new.sign(&claims(iss, &["*"]));
    subscribes(addr, &new_token, "AAPL").await;
    subscribes(addr, &old_token, "AAPL").await;

    // The old key is retired: within a refresh period its tokens are refused.
    idp.publish(&[&new]);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (code, reason) = handshake(addr, &old_token).await;
        if code == 401 {
            assert!(reason.contains("unknown key"), "{reason}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the retired key still verifies");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    subscribes(addr, &new_token, "AAPL").await;

    // The provider goes down: fetches fail, the last good keys stay in use.
    idp.down.store(true, Ordering::SeqCst);
    let errors_before = stats(addr).await["auth"]["jwks_fetch_errors"].as_u64().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while stats(addr).await["auth"]["jwks_fetch_errors"].as_u64().unwrap() < errors_before + 2 {
        assert!(tokio::time::Instant::now() < deadline, "no failed fetch counted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    subscribes(addr, &new_token, "AAPL").await;
    assert_eq!(stats(addr).await["auth"]["keys"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_issuers_with_the_same_kid_cannot_verify_each_others_tokens() {
    let dir = scratch("issuers");
    let (a, b) = (TestKey::new(&dir, "ec", "1"), TestKey::new(&dir, "ec", "1"));
    let (idp_a, idp_b) = (Jwks::start(&[&a], None).await, Jwks::start(&[&b], None).await);
    let issuers = format!("https://a.example/ {},https://b.example/ {}", idp_a.url, idp_b.url);
    let g = idp_gateway(&[("auth.issuers", &issuers)]);
    let addr = g.local_addr();
    subscribes(addr, &a.sign(&claims("https://a.example/", &["*"])), "AAPL").await;
    subscribes(addr, &b.sign(&claims("https://b.example/", &["*"])), "AAPL").await;
    // Issuer B's key, kid "1", claiming to be issuer A (and the other way round): refused.
    for (key, iss) in [(&b, "https://a.example/"), (&a, "https://b.example/")] {
        let (code, reason) = handshake(addr, &key.sign(&claims(iss, &["*"]))).await;
        assert_eq!(code, 401, "{reason}");
        assert!(reason.contains("bad signature"), "{reason}");
    }
    let (code, reason) = handshake(addr, &a.sign(&claims("https://c.example/", &["*"]))).await;
    assert_eq!((code, reason.contains("not accepted")), (401, true), "{reason}");
}

fn b64json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_the_reason_and_change_nothing() {
    let dir = scratch("bad");
    let rsa = TestKey::new(&dir, "rsa", "k1");
    let idp = Jwks::start(&[&rsa], None).await;
    let iss = "https://idp.example/";
    let g =
        idp_gateway(&[("auth.issuer", iss), ("auth.jwks_url", &idp.url), ("auth.jwks_min_refresh", "60s")]);
    let addr = g.local_addr();
    let good = rsa.sign(&claims(iss, &["*"]));
    subscribes(addr, &good, "AAPL").await;
    let fetches = idp.hits.load(Ordering::SeqCst);

    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(iss, &["*"]);
        f(&mut c);
        rsa.sign(&c)
    };
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some("k1".into());
    let hs_with_public_key = jsonwebtoken::encode(
        &hs_header,
        &claims(iss, &["*"]),
        &EncodingKey::from_secret(rsa.public_pem.as_bytes()),
    )
    .unwrap();
    let hs_no_kid = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(iss, &["*"]),
        &EncodingKey::from_secret(rsa.public_pem.as_bytes()),
    )
    .unwrap();
    let mut rs384 = Header::new(Algorithm::RS384);
    rs384.kid = Some("k1".into());
    let wrong_alg = jsonwebtoken::encode(&rs384, &claims(iss, &["*"]), &rsa.encoding_key()).unwrap();
    let alg_none =
        format!("{}.{}.", b64json(&json!({"alg":"none","typ":"JWT"})), b64json(&claims(iss, &["*"])));
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], b64json(&claims(iss, &["*", "EXTRA"])), parts[2]);
    let truncated = good[..good.len() - 20].to_string();
    let oversized = format!(
        "{}.{}.{}",
        b64json(&json!({"alg":"RS256","kid":"k1","pad":"x".repeat(3000)})),
        parts[1],
        parts[2]
    );
    let non_json = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode("hello, world"), parts[2]);
    let table: Vec<(&str, String, &str)> = vec![
        ("alg none", alg_none, "not supported"),
        (
            "HS256 signed with the RSA public key, kid of the RSA key",
            hs_with_public_key,
            "algorithm comes from the key",
        ),
        (
            "HS256 signed with the RSA public key, no kid",
            hs_no_kid,
            "no key of this issuer verifies alg HS256",
        ),
        ("RS384 with the RS256 key's kid", wrong_alg, "algorithm comes from the key"),
        ("expired", with(&|c| c["exp"] = json!(now() - 3600)), "token expired"),
        ("not yet valid", with(&|c| c["nbf"] = json!(now() + 3600)), "not valid yet"),
        ("wrong iss", with(&|c| c["iss"] = json!("https://evil.example/")), "not accepted"),
        ("wrong aud", with(&|c| c["aud"] = json!("someone-else")), "wrong audience"),
        (
            "no aud",
            with(&|c| c.as_object_mut().unwrap().remove("aud").map(|_| ()).unwrap_or(())),
            "missing claim aud",
        ),
        (
            "no symbols claim",
            with(&|c| c.as_object_mut().unwrap().remove(CLAIM).map(|_| ()).unwrap_or(())),
            "grants no symbols",
        ),
        ("tampered payload", tampered, "bad signature"),
        ("truncated", truncated, "invalid token"),
        ("oversized header", oversized, "header longer than"),
        ("non-JSON payload", non_json, "not a JSON object"),
        ("not a JWT", "abc.def".into(), "not a JWT"),
    ];
    for (name, token, why) in &table {
        let (code, reason) = handshake(addr, token).await;
        assert_eq!(code, 401, "{name}: {reason}");
        assert!(reason.contains(why), "{name}: {reason:?} should say {why:?}");
        eprintln!("{name:58} -> 401 {reason}");
    }
    // A flood of made-up kids: at most one refetch per auth.jwks_min_refresh.
    for i in 0..50 {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(format!("made-up-{i}"));
        let t = jsonwebtoken::encode(&h, &claims(iss, &["*"]), &rsa.encoding_key()).unwrap();
        let (code, reason) = handshake(addr, &t).await;
        assert_eq!(code, 401);
        assert!(reason.contains("unknown key"), "{reason}");
    }
    let refetches = idp.hits.load(Ordering::SeqCst) - fetches;
    assert!(refetches <= 1, "{refetches} fetches for 50 unknown kids");
    let s = stats(addr).await;
    assert_eq!(s["rejections"]["auth"].as_u64().unwrap(), table.len() as u64 + 50, "{s}");
    assert!(s["auth"]["kid_refetches_throttled"].as_u64().unwrap() >= 49, "{}", s["auth"]);
    // Nothing else changed: the good token still works, no connection was left open.
    subscribes(addr, &good, "AAPL").await;
    assert_eq!(s["auth"]["keys"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pem_key_files_reload_on_change_and_on_sighup() {
    let dir = scratch("pem");
    let (one, two) = (TestKey::new(&dir, "ed", "p1"), TestKey::new(&dir, "rsa", "p2"));
    let file = dir.join("keys.pem");
    std::fs::write(&file, format!("# kid=p1\n{}", one.public_pem)).unwrap();
    let g = idp_gateway(&[("auth.public_key_file", file.to_str().unwrap())]);
    let addr = g.local_addr();
    let (t1, t2) = (one.sign(&claims("x", &["*"])), two.sign(&claims("x", &["*"])));
    subscribes(addr, &t1, "AAPL").await;
    assert_eq!(handshake(addr, &t2).await.0, 401);
    // A broken file keeps the last good keys.
    std::fs::write(&file, "-----BEGIN PUBLIC KEY-----\nnot base64!\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    subscribes(addr, &t1, "AAPL").await;
    assert!(stats(addr).await["auth"]["reload_errors"].as_u64().unwrap() >= 1);
    // Rotation: the file now holds the new key only; picked up on change (and on SIGHUP).
    std::fs::write(&file, format!("# kid=p2 alg=RS256\n{}", two.public_pem)).unwrap();
    assert!(g.reload_keys());
    subscribes(addr, &t2, "AAPL").await;
    assert_eq!(handshake(addr, &t1).await.0, 401);
}
