//! The bundled trading dashboard: `GET /` and its assets, embedded in the binary at build
//! time (no build step, no Node at run time).
//!
//! - `/` — `web/index.html`, the watchlist page.
//! - `/app.js` — the page's script (rendering, merged once per animation frame).
//! - `/tickgate.js` — the dependency-free ES module client documented in docs/CLIENT.md,
//!   meant to be copied into dashboards of one's own.
//! - `/style.css` — the page's styles.
//!
//! Assets are served with a strong `ETag` (a hash of the bytes, computed once) so a browser
//! revalidates with `If-None-Match` and gets `304` until the gateway binary changes.

use std::sync::OnceLock;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderMap, HeaderValue};

use super::routes::Resp;

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset { path: "/", content_type: "text/html; charset=utf-8", body: include_str!("web/index.html") },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("web/app.js"),
    },
    Asset {
        path: "/tickgate.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("web/tickgate.js"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("web/style.css"),
    },
];

/// FNV-1a over the bytes: a stable content hash for the `ETag` (not a security boundary).
fn etag_of(body: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}\"")
}

fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| ASSETS.iter().map(|a| etag_of(a.body)).collect())
}

/// The response for an embedded asset at `path`, or `None` if there is none.
pub(crate) fn asset(path: &str, req_headers: &HeaderMap) -> Option<Resp> {
    let path = if path == "/index.html" { "/" } else { path };
    let i = ASSETS.iter().position(|a| a.path == path)?;
    let (a, tag) = (&ASSETS[i], &etags()[i]);
    let fresh = req_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut r = if fresh {
        let mut r = hyper::Response::new(super::routes::full(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = hyper::Response::new(super::routes::full(Bytes::from_static(a.body.as_bytes())));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type));
        r
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if path == "/" {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
                 style-src 'self'; script-src 'self'; frame-ancestors 'none'",
            ),
        );
    }
    Some(r)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_with_its_type_and_a_revalidating_etag() {
        for a in ASSETS {
            let r = asset(a.path, &HeaderMap::new()).unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{}", a.path);
            assert_eq!(r.headers()[header::CONTENT_TYPE], a.content_type);
            let tag = r.headers()[header::ETAG].clone();
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, tag);
            assert_eq!(asset(a.path, &h).unwrap().status(), StatusCode::NOT_MODIFIED, "{}", a.path);
        }
        assert!(asset("/nope.js", &HeaderMap::new()).is_none());
        assert_eq!(asset("/index.html", &HeaderMap::new()).unwrap().status(), StatusCode::OK);
    }
}
