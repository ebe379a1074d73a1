//! Token verification cost per algorithm: what one core spends per authenticated handshake
//! on the signature and claim checks (HS256, RS256 with a 2048-bit key, ES256, EdDSA).
//!
//! Keys come from the `openssl` tool at start (as in the gateway tests); each token is
//! verified by a [`tickgate::auth::Verifier`] built from a PEM file or the HS256 secret, the
//! same path a handshake takes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use tickgate::auth::Verifier;
use tickgate::auth::sign::{SigningKey, TokenClaims, sign};

fn openssl(args: &[&str]) {
    let o = Command::new("openssl").args(args).output().expect("the openssl tool");
    assert!(o.status.success(), "openssl {args:?}");
}

fn claims() -> TokenClaims {
    TokenClaims {
        sub: "bench".into(),
        symbols: vec!["AAPL".into(), "BTC*".into()],
        symbols_claim: "symbols".into(),
        exp: tickgate::clock::now_ns() / 1_000_000_000 + 3600,
        iss: None,
        aud: None,
    }
}

/// A verifier holding `kind`'s public key, and a token it accepts.
fn pair(dir: &Path, kind: &str) -> (Verifier, String) {
    let key = dir.join(format!("{kind}.key"));
    let public = dir.join(format!("{kind}.pem"));
    let (k, p) = (key.to_str().unwrap(), public.to_str().unwrap());
    match kind {
        "rsa" => openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", k]),
        "ec" => openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", k]),
        _ => openssl(&["genpkey", "-algorithm", "ED25519", "-out", k]),
    }
    openssl(&["pkey", "-in", k, "-pubout", "-out", p]);
    let signing = SigningKey::pem(&std::fs::read_to_string(&key).unwrap(), None).unwrap();
    let token = sign(&signing, &claims()).unwrap();
    let mut c = tickgate::config::Config::default().auth;
    c.public_key_file = Some(public);
    (Verifier::from_config(&c).unwrap(), token)
}

fn verify(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("tickgate-bench-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = b"an HS256 secret of at least 32 bytes!";
    let hs = (Verifier::new(secret).unwrap(), sign(&SigningKey::secret(secret).unwrap(), &claims()).unwrap());
    let mut g = c.benchmark_group("verify");
    for (name, (v, token)) in [
        ("HS256", hs),
        ("RS256", pair(&dir, "rsa")),
        ("ES256", pair(&dir, "ec")),
        ("EdDSA", pair(&dir, "ed")),
    ] {
        assert!(v.verify(&token).is_ok(), "{name}");
        g.bench_function(name, |b| b.iter(|| v.verify(std::hint::black_box(&token))));
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, verify);
criterion_main!(benches);
