//! Verification keys from their three written forms — an HS256 secret, PEM public keys and
//! JWKS documents — each paired with the one algorithm it verifies.
//!
//! The algorithm is a property of the key, never of the token: a JWK's `alg` (or, without one,
//! its type and curve), a PEM key's `# kid=.. alg=..` annotation (or its type and curve), HS256
//! for a secret. [`compatible`] refuses a pairing the key cannot do (ES384 on a P-256 key, RS256
//! on an EC key, HS256 on anything public), so an RSA public key can never be used as an HMAC
//! secret. Keys that cannot be used (encryption keys, P-521, symmetric keys in a JWKS) are
//! skipped with a reason rather than failing the whole document.
//!
//! PEM public keys are `PUBLIC KEY` (SubjectPublicKeyInfo), `RSA PUBLIC KEY` (PKCS#1) or
//! `CERTIFICATE` blocks; the few DER structures involved are read by [`der`], a minimal
//! reader of definite-length TLVs that refuses anything else.

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Most keys one source may hold (bounds work on a hostile or broken document).
pub const MAX_KEYS_PER_SOURCE: usize = 64;

/// Largest key document read, bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// One verification key.
#[derive(Clone)]
pub struct Key {
    /// The one algorithm this key verifies.
    pub alg: Algorithm,
    /// Its key id, if it has one.
    pub kid: Option<String>,
    /// Where it came from, for logs and `tickgate token --verify`.
    pub source: String,
    pub(crate) key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?}, kid {:?}, {})", self.alg, self.kid, self.source)
    }
}

/// What a key is, as far as algorithms go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A shared secret (HMAC).
    Secret,
    /// An RSA public key.
    Rsa,
    /// An EC public key on P-256.
    P256,
    /// An EC public key on P-384.
    P384,
    /// An Ed25519 public key.
    Ed25519,
}

impl KeyKind {
    /// The algorithm a key of this kind verifies when nothing names one.
    pub fn default_alg(self) -> Algorithm {
        match self {
            KeyKind::Secret => Algorithm::HS256,
            KeyKind::Rsa => Algorithm::RS256,
            KeyKind::P256 => Algorithm::ES256,
            KeyKind::P384 => Algorithm::ES384,
            KeyKind::Ed25519 => Algorithm::EdDSA,
        }
    }
}

/// Whether a key of `kind` can verify `alg`.
pub fn compatible(alg: Algorithm, kind: KeyKind) -> bool {
    use Algorithm::*;
    matches!(
        (alg, kind),
        (HS256 | HS384 | HS512, KeyKind::Secret)
            | (RS256 | RS384 | RS512 | PS256 | PS384 | PS512, KeyKind::Rsa)
            | (ES256, KeyKind::P256)
            | (ES384, KeyKind::P384)
            | (EdDSA, KeyKind::Ed25519)
    )
}

/// The HS256 key of a shared secret.
///
/// # Errors
/// A secret shorter than [`super::MIN_SECRET_BYTES`].
pub fn from_secret(secret: &[u8], source: &str) -> Result<Key, String> {
    if secret.len() < super::MIN_SECRET_BYTES {
        return Err(format!("the token secret must be at least {} bytes", super::MIN_SECRET_BYTES));
    }
    Ok(Key {
        alg: Algorithm::HS256,
        kid: None,
        source: source.to_string(),
        key: DecodingKey::from_secret(secret),
    })
}

/// One PEM block: its label, DER content, and the annotation line before it.
pub(crate) struct PemBlock {
    pub label: String,
    pub der: Vec<u8>,
    pub kid: Option<String>,
    pub alg: Option<String>,
}

/// Splits PEM text into blocks. Text outside blocks is ignored, except a `# kid=ID alg=ALG`
/// line, which applies to the next block.
///
/// # Errors
/// An unterminated block, a mismatched END, or bad base64.
pub(crate) fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, String> {
    let mut out = Vec::new();
    let (mut kid, mut alg) = (None, None);
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if let Some(note) = line.strip_prefix('#') {
            for word in note.split_whitespace() {
                match word.split_once('=') {
                    Some(("kid", v)) if !v.is_empty() => kid = Some(v.to_string()),
                    Some(("alg", v)) if !v.is_empty() => alg = Some(v.to_string()),
                    _ => {}
                }
            }
            continue;
        }
        let Some(label) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut closed = false;
        for l in lines.by_ref() {
            if l == end {
                closed = true;
                break;
            }
            if l.starts_with("-----") {
                return Err(format!("PEM block {label}: found {l:?} before {end:?}"));
            }
            // RFC 1421 headers (`Proc-Type: ...`) mean an encrypted key: not a public key.
            if l.contains(':') {
                return Err(format!("PEM block {label}: headers (an encrypted key?) are not supported"));
            }
            body.push_str(l);
        }
        if !closed {
            return Err(format!("PEM block {label} has no {end:?}"));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| format!("PEM block {label}: bad base64: {e}"))?;
        out.push(PemBlock { label: label.to_string(), der, kid: kid.take(), alg: alg.take() });
        if out.len() > MAX_KEYS_PER_SOURCE {
            return Err(format!("more than {MAX_KEYS_PER_SOURCE} PEM blocks"));
        }
    }
    Ok(out)
}

/// Public keys from PEM text (see the module doc for the block types and annotations).
///
/// # Errors
/// Unreadable PEM, a block that is not a supported public key, an annotation naming an
/// algorithm the key cannot do, or no key at all.
pub fn from_pem(text: &str, source: &str) -> Result<Vec<Key>, String> {
    let mut keys = Vec::new();
    for (i, b) in pem_blocks(text)?.into_iter().enumerate() {
        let n = i + 1;
        let spki = match b.label.as_str() {
            "PUBLIC KEY" => der::spki(&b.der),
            "RSA PUBLIC KEY" => Ok((KeyKind::Rsa, b.der.as_slice())),
            "CERTIFICATE" => der::certificate_spki(&b.der).and_then(der::spki),
            other => Err(format!("{other} is not a public key (PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)")),
        };
        let (kind, raw) = spki.map_err(|e| format!("key #{n}: {e}"))?;
        let alg = match &b.alg {
            Some(a) => a.parse::<Algorithm>().map_err(|_| format!("key #{n}: unknown alg {a:?}"))?,
            None => kind.default_alg(),
        };
        if !compatible(alg, kind) {
            return Err(format!("key #{n}: a {kind:?} key cannot verify {alg:?}"));
        }
        let key = match kind {
            KeyKind::Rsa => DecodingKey::from_rsa_der(raw),
            KeyKind::P256 | KeyKind::P384 => DecodingKey::from_ec_der(raw),
            KeyKind::Ed25519 => DecodingKey::from_ed_der(raw),
            KeyKind::Secret => return Err(format!("key #{n}: not a public key")),
        };
        let label = match &b.kid {
            Some(k) => format!("{source} (kid {k})"),
            None => format!("{source} (key #{n})"),
        };
        keys.push(Key { alg, kid: b.kid, source: label, key });
    }
    if keys.is_empty() {
        return Err("no PEM public key found".into());
    }
    Ok(keys)
}

/// Signing keys of a JWKS document (`{"keys":[...]}`), and why each skipped key was skipped.
///
/// # Errors
/// Not JSON, no `keys` array, or more than [`MAX_KEYS_PER_SOURCE`] keys.
pub fn from_jwks(doc: &[u8], source: &str) -> Result<(Vec<Key>, Vec<String>), String> {
    if doc.len() > MAX_DOCUMENT_BYTES {
        return Err(format!("larger than {MAX_DOCUMENT_BYTES} bytes"));
    }
    #[derive(serde::Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let d: Doc = serde_json::from_slice(doc).map_err(|e| format!("not a JWKS document: {e}"))?;
    if d.keys.len() > MAX_KEYS_PER_SOURCE {
        return Err(format!("more than {MAX_KEYS_PER_SOURCE} keys"));
    }
    let (mut keys, mut skipped) = (Vec::new(), Vec::new());
    for (i, v) in d.keys.into_iter().enumerate() {
        let kid = v.get("kid").and_then(|k| k.as_str()).map(String::from);
        let name = kid.clone().map_or_else(|| format!("#{}", i + 1), |k| format!("kid {k}"));
        match jwk_key(v) {
            Ok((alg, key)) => keys.push(Key { alg, kid, source: format!("{source} ({name})"), key }),
            Err(why) => skipped.push(format!("{name}: {why}")),
        }
    }
    Ok((keys, skipped))
}

fn jwk_key(v: serde_json::Value) -> Result<(Algorithm, DecodingKey), String> {
    let jwk: Jwk = serde_json::from_value(v).map_err(|e| format!("unsupported key: {e}"))?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Err("an encryption key (use: enc)".into());
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            ref c => return Err(format!("curve {c:?} is not supported")),
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            ref c => return Err(format!("curve {c:?} is not supported")),
        },
        AlgorithmParameters::OctetKey(_) => {
            return Err("a symmetric key: shared secrets come from auth.secret_file only".into());
        }
    };
    let alg = match jwk.common.key_algorithm {
        None => kind.default_alg(),
        Some(a) => signing_alg(a).ok_or_else(|| format!("alg {a:?} is not a signature algorithm"))?,
    };
    if !compatible(alg, kind) {
        return Err(format!("a {kind:?} key cannot verify {alg:?}"));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("bad key material: {e}"))?;
    Ok((alg, key))
}

fn signing_alg(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        KeyAlgorithm::RSA1_5 | KeyAlgorithm::RSA_OAEP | KeyAlgorithm::RSA_OAEP_256 => return None,
    })
}

/// The few DER structures of public keys and certificates.
pub(crate) mod der {
    use super::KeyKind;

    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    const BIT_STRING: u8 = 0x03;
    const RSA_ENCRYPTION: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
    const EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
    const P256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x22];
    const ED25519: &[u8] = &[0x2B, 0x65, 0x70];

    /// One definite-length TLV: `(tag, content, rest)`.
    pub(crate) fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
        let short = || "truncated DER".to_string();
        let (&tag, rest) = input.split_first().ok_or_else(short)?;
        let (&first, mut rest) = rest.split_first().ok_or_else(short)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7F);
            if n == 0 || n > 3 || rest.len() < n {
                return Err("unsupported DER length".into());
            }
            let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(short());
        }
        Ok((tag, &rest[..len], &rest[len..]))
    }

    fn expect(input: &[u8], want: u8) -> Result<(&[u8], &[u8]), String> {
        let (tag, content, rest) = tlv(input)?;
        if tag != want {
            return Err(format!("unexpected DER tag {tag:#04x} (wanted {want:#04x})"));
        }
        Ok((content, rest))
    }

    /// A SubjectPublicKeyInfo: the key's kind and its raw key (PKCS#1 for RSA, the point for
    /// EC, 32 bytes for Ed25519).
    pub(crate) fn spki(der: &[u8]) -> Result<(KeyKind, &[u8]), String> {
        let (spki, _) = expect(der, SEQUENCE)?;
        let (alg_id, rest) = expect(spki, SEQUENCE)?;
        let (oid, params) = expect(alg_id, OID)?;
        let (bits, _) = expect(rest, BIT_STRING)?;
        let key = match bits.split_first() {
            Some((0, key)) if !key.is_empty() => key,
            _ => return Err("bad public key bit string".into()),
        };
        let kind = match oid {
            RSA_ENCRYPTION => KeyKind::Rsa,
            ED25519 => KeyKind::Ed25519,
            EC_PUBLIC_KEY => match expect(params, OID)?.0 {
                P256 => KeyKind::P256,
                P384 => KeyKind::P384,
                _ => return Err("EC curve not supported (P-256 and P-384 are)".into()),
            },
            _ => return Err("key type not supported (RSA, EC P-256/P-384 and Ed25519 are)".into()),
        };
        if kind == KeyKind::Ed25519 && key.len() != 32 {
            return Err("an Ed25519 key is 32 bytes".into());
        }
        Ok((kind, key))
    }

    /// The SubjectPublicKeyInfo (as DER, tag included) of an X.509 certificate.
    pub(crate) fn certificate_spki(der: &[u8]) -> Result<&[u8], String> {
        let (cert, _) = expect(der, SEQUENCE)?;
        let (mut tbs, _) = expect(cert, SEQUENCE)?;
        // version [0] (optional), serial, signature, issuer, validity, subject, then the SPKI.
        if tbs.first() == Some(&0xA0) {
            tbs = tlv(tbs)?.2;
        }
        for _ in 0..5 {
            tbs = tlv(tbs)?.2;
        }
        let (tag, _, rest) = tlv(tbs)?;
        if tag != SEQUENCE {
            return Err("no public key in the certificate".into());
        }
        // The whole TLV: the SPKI reader wants its header too.
        Ok(&tbs[..tbs.len() - rest.len()])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_is_by_key_kind() {
        assert!(compatible(Algorithm::RS256, KeyKind::Rsa));
        assert!(compatible(Algorithm::PS256, KeyKind::Rsa));
        assert!(!compatible(Algorithm::HS256, KeyKind::Rsa), "an RSA key is never an HMAC secret");
        assert!(!compatible(Algorithm::ES384, KeyKind::P256));
        assert!(!compatible(Algorithm::RS256, KeyKind::P256));
        assert!(!compatible(Algorithm::EdDSA, KeyKind::Secret));
    }

    #[test]
    fn jwks_skips_what_it_cannot_use_and_keeps_the_rest() {
        let doc = br#"{"keys":[
            {"kty":"EC","crv":"P-256","kid":"a","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"EC","crv":"P-256","kid":"b","alg":"ES384","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"RSA","kid":"enc","use":"enc","alg":"RSA-OAEP","n":"AQAB","e":"AQAB"},
            {"kty":"oct","kid":"s","k":"c2VjcmV0"},
            {"kty":"WAT"}
        ]}"#;
        let (keys, skipped) = from_jwks(doc, "test").unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].alg, Algorithm::ES256);
        assert_eq!(keys[0].kid.as_deref(), Some("a"));
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(skipped[0].contains("cannot verify ES384"), "{skipped:?}");
        assert!(from_jwks(b"not json", "t").is_err());
        assert!(from_jwks(br#"{"nokeys":[]}"#, "t").is_err());
    }

    #[test]
    fn pem_blocks_carry_their_annotations() {
        let text = "junk\n# kid=k1 alg=PS256\n-----BEGIN PUBLIC KEY-----\nAAEC\n-----END PUBLIC KEY-----\n\
                    -----BEGIN PUBLIC KEY-----\nAwQ=\n-----END PUBLIC KEY-----\n";
        let b = pem_blocks(text).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].kid.as_deref(), b[0].alg.as_deref()), (Some("k1"), Some("PS256")));
        assert_eq!(b[0].der, vec![0, 1, 2]);
        assert_eq!((b[1].kid.as_deref(), b[1].alg.as_deref()), (None, None));
        assert!(pem_blocks("-----BEGIN PUBLIC KEY-----\nAAEC\n").is_err());
        assert!(pem_blocks("-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----").is_err());
        assert!(from_pem("no pem here", "t").is_err());
        assert!(from_pem("-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----", "t").is_err());
    }

    #[test]
    fn der_reader_refuses_truncation_and_long_lengths() {
        assert!(der::tlv(&[]).is_err());
        assert!(der::tlv(&[0x30, 0x05, 1, 2]).is_err());
        assert!(der::tlv(&[0x30, 0x84, 0, 0, 0, 1, 0]).is_err());
        assert_eq!(der::tlv(&[0x30, 0x81, 0x01, 9, 7]).unwrap(), (0x30, &[9u8][..], &[7u8][..]));
        assert!(der::spki(&[0x30, 0x00]).is_err());
    }
}
