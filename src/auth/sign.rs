//! Signing tokens, for operators testing a deployment without an identity provider and for
//! tests (`tickgate token --key-file`): a PEM private key (PKCS#8 RSA, EC P-256/P-384 or
//! Ed25519, or PKCS#1 RSA) or an HS256 secret, with the claims a gateway checks.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use super::keys::{self, KeyKind};
use super::{MIN_SECRET_BYTES, Pattern};

/// A key to sign with, and the one algorithm it signs.
pub struct SigningKey {
    alg: Algorithm,
    kid: Option<String>,
    key: EncodingKey,
}

impl SigningKey {
    /// An HS256 key from a shared secret.
    ///
    /// # Errors
    /// A secret shorter than [`MIN_SECRET_BYTES`].
    pub fn secret(secret: &[u8]) -> Result<SigningKey, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!("the token secret must be at least {MIN_SECRET_BYTES} bytes"));
        }
        Ok(SigningKey { alg: Algorithm::HS256, kid: None, key: EncodingKey::from_secret(secret) })
    }

    /// A key from a PEM private key. `alg` defaults to the key's (RS256 for RSA, ES256/ES384
    /// by curve, EdDSA); one the key cannot do is refused.
    ///
    /// # Errors
    /// Not a supported private key, or an algorithm it cannot sign.
    pub fn pem(pem: &str, alg: Option<Algorithm>) -> Result<SigningKey, String> {
        let blocks = keys::pem_blocks(pem)?;
        let block = match blocks.as_slice() {
            [b] => b,
            [] => return Err("no PEM block found".into()),
            _ => return Err("more than one PEM block: give one private key".into()),
        };
        let bytes = pem.as_bytes();
        let (kind, key) = match block.label.as_str() {
            "RSA PRIVATE KEY" => (KeyKind::Rsa, EncodingKey::from_rsa_pem(bytes)),
            "PRIVATE KEY" => {
                let has = |oid: &[u8]| block.der.windows(oid.len()).any(|w| w == oid);
                if has(&[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01]) {
                    (KeyKind::Rsa, EncodingKey::from_rsa_pem(bytes))
                } else if has(&[0x06, 0x03, 0x2B, 0x65, 0x70]) {
                    (KeyKind::Ed25519, EncodingKey::from_ed_pem(bytes))
                } else if has(&[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07]) {
                    (KeyKind::P256, EncodingKey::from_ec_pem(bytes))
                } else if has(&[0x2B, 0x81, 0x04, 0x00, 0x22]) {
                    (KeyKind::P384, EncodingKey::from_ec_pem(bytes))
                } else {
                    return Err("a private key of a type not supported (RSA, EC P-256/P-384, Ed25519)".into());
                }
            }
            "EC PRIVATE KEY" => {
                return Err("a SEC1 EC key: convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt)".into());
            }
            other => return Err(format!("{other} is not a private key")),
        };
        let key = key.map_err(|e| format!("unreadable private key: {e}"))?;
        let alg = alg.unwrap_or(kind.default_alg());
        if !keys::compatible(alg, kind) {
            return Err(format!("a {kind:?} key cannot sign {alg:?}"));
        }
        Ok(SigningKey { alg, kid: None, key })
    }

    /// Names the key in the token header (`kid`).
    #[must_use]
    pub fn with_kid(mut self, kid: Option<String>) -> SigningKey {
        self.kid = kid;
        self
    }

    /// The algorithm it signs.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }
}

/// What a token says.
#[derive(Clone, Debug, Default)]
pub struct TokenClaims {
    /// `sub`.
    pub sub: String,
    /// Entitlement patterns.
    pub symbols: Vec<String>,
    /// The claim the patterns go in (`symbols` unless the gateway's `auth.symbols_claim` says
    /// otherwise).
    pub symbols_claim: String,
    /// `exp`, Unix seconds.
    pub exp: u64,
    /// `iss`, if any.
    pub iss: Option<String>,
    /// `aud`, if any.
    pub aud: Option<String>,
}

/// Signs `claims` with `key`.
///
/// # Errors
/// A bad symbol pattern, or a signing failure.
pub fn sign(key: &SigningKey, claims: &TokenClaims) -> Result<String, String> {
    for p in &claims.symbols {
        Pattern::parse(p)?;
    }
    let mut body = Map::new();
    body.insert("sub".into(), json!(claims.sub));
    body.insert("exp".into(), json!(claims.exp));
    body.insert("iat".into(), json!(crate::clock::now_ns() / 1_000_000_000));
    let name = if claims.symbols_claim.is_empty() { "symbols" } else { claims.symbols_claim.as_str() };
    body.insert(name.into(), json!(claims.symbols));
    if let Some(i) = &claims.iss {
        body.insert("iss".into(), json!(i));
    }
    if let Some(a) = &claims.aud {
        body.insert("aud".into(), json!(a));
    }
    let mut header = Header::new(key.alg);
    header.kid = key.kid.clone();
    jsonwebtoken::encode(&header, &Value::Object(body), &key.key).map_err(|e| e.to_string())
}
