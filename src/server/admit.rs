//! Admission: whether a WebSocket handshake may become a connection, decided from what the
//! request presents (peer IP, Origin, Host, token) and the guards' state, without touching
//! the socket. [`admit`] returns the connection's grant and its counted slot, or a
//! [`Denied`] that knows its HTTP status, body and headers; `routes` only answers it and, if
//! admitted, performs the upgrade and hands the socket to a shard.
//!
//! The checks run in this order, each refusal counted under its reason: shutting down (503),
//! Origin (403), token (401), per-IP connections and rate (429), capacity (503).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hyper::StatusCode;

use super::guard::Refusal;
use super::{Guards, Rejections};
use crate::auth::{AuthError, Grant};
use crate::shard::ConnectionGuard;

/// What a handshake presents, as far as admission cares.
#[derive(Clone, Debug)]
pub struct Handshake<'a> {
    /// The peer's address.
    pub ip: IpAddr,
    /// The `Origin` header, if any (browsers send it; other clients usually not).
    pub origin: Option<&'a str>,
    /// The `Host` header (empty if missing).
    pub host: &'a str,
    /// The token, from `?token=`, `Authorization: Bearer` or the subprotocol.
    pub token: Option<String>,
    /// The diagnostic `/echo` route, which needs no token.
    pub echo_route: bool,
}

/// An admitted handshake: the token's grant (under token auth) and the counted connection.
pub struct Admitted {
    /// The token's grant; `None` without token auth or on `/echo`.
    pub grant: Option<Grant>,
    /// Holds the connection's place in the gateway's and its IP's counts until dropped.
    pub guard: ConnectionGuard,
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted").field("grant", &self.grant).finish_non_exhaustive()
    }
}

/// Why a handshake is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// The gateway is shutting down (503).
    ShuttingDown,
    /// The Origin is not in `server.allowed_origins` (403).
    Origin,
    /// No valid token under `auth.mode = token` (401).
    Token(AuthError),
    /// The IP holds `max` connections already (429).
    IpConnections {
        /// The peer.
        ip: IpAddr,
        /// `server.max_connections_per_ip`.
        max: u32,
    },
    /// The IP opens connections too fast (429).
    IpRate {
        /// The peer.
        ip: IpAddr,
        /// Seconds until it may try again.
        retry_after_secs: u64,
    },
    /// The gateway holds `max` connections (503).
    Capacity {
        /// The connection limit in force.
        max: usize,
    },
}

impl Denied {
    /// The HTTP status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            Denied::ShuttingDown | Denied::Capacity { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Denied::Origin => StatusCode::FORBIDDEN,
            Denied::Token(_) => StatusCode::UNAUTHORIZED,
            Denied::IpConnections { .. } | Denied::IpRate { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The response body (one line).
    pub fn body(&self) -> String {
        match self {
            Denied::ShuttingDown => "server shutting down\n".into(),
            Denied::Origin => "origin not allowed (server.allowed_origins)\n".into(),
            Denied::Token(e) => format!("{e}\n"),
            Denied::IpConnections { ip, max } => format!("too many connections from {ip} (at most {max})\n"),
            Denied::IpRate { ip, .. } => format!("too many new connections from {ip}; retry later\n"),
            Denied::Capacity { max } => {
                format!("connection limit reached ({max} connections); try again later\n")
            }
        }
    }

    /// A short machine-readable name of the reason (the `error` of a JSON refusal).
    pub fn code(&self) -> &'static str {
        match self {
            Denied::ShuttingDown => "shutting_down",
            Denied::Origin => "origin_not_allowed",
            Denied::Token(_) => "unauthorized",
            Denied::IpConnections { .. } => "too_many_connections",
            Denied::IpRate { .. } => "rate_limited",
            Denied::Capacity { .. } => "capacity",
        }
    }

    /// The refusal as an HTTP response: its status, a body made by `body` from the
    /// refusal, `Retry-After` when there is one, and `WWW-Authenticate` for a missing or bad
    /// token. Counted under its reason.
    pub fn respond<B>(
        &self,
        rejections: &Rejections,
        body: impl FnOnce(&Denied) -> hyper::Response<B>,
    ) -> hyper::Response<B> {
        self.count(rejections);
        let mut r = body(self);
        *r.status_mut() = self.status();
        if let Some(v) =
            self.retry_after().and_then(|s| hyper::header::HeaderValue::from_str(&s.to_string()).ok())
        {
            r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
        }
        if matches!(self, Denied::Token(_)) {
            r.headers_mut()
                .insert(hyper::header::WWW_AUTHENTICATE, hyper::header::HeaderValue::from_static("Bearer"));
        }
        r
    }

    /// The `Retry-After` seconds to send, if any.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Denied::IpConnections { .. } => Some(5),
            Denied::IpRate { retry_after_secs, .. } => Some(*retry_after_secs),
            Denied::Capacity { .. } => Some(1),
            Denied::ShuttingDown | Denied::Origin | Denied::Token(_) => None,
        }
    }

    /// Counts the refusal under its reason (`/stats` rejections, `/metrics`
    /// `tickgate_handshakes_rejected`). Shutting down is not counted.
    pub fn count(&self, r: &Rejections) {
        let c = match self {
            Denied::ShuttingDown => return,
            Denied::Origin => &r.origin,
            Denied::Token(_) => &r.auth,
            Denied::IpConnections { .. } => &r.ip_connections,
            Denied::IpRate { .. } => &r.ip_rate,
            Denied::Capacity { .. } => &r.capacity,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The gateway's state admission reads: the guards, whether it is shutting down, the open
/// connections and the limit in force.
pub struct Gate<'a> {
    /// Origins, token verifier, per-IP limits.
    pub guards: &'a Guards,
    /// Set once shutdown began.
    pub shutting_down: bool,
    /// Open WebSocket connections (an admitted handshake counts itself here at once).
    pub connections: &'a Arc<AtomicUsize>,
    /// `server.max_connections` in force.
    pub max_connections: usize,
}

/// Decides whether the handshake may connect at `now_ns`.
///
/// # Errors
/// The first check that fails, as a [`Denied`] (not yet counted: see [`Denied::count`]).
pub fn admit(h: &Handshake<'_>, gate: &Gate<'_>, now_ns: u64) -> Result<Admitted, Denied> {
    let g = gate.guards;
    if gate.shutting_down {
        return Err(Denied::ShuttingDown);
    }
    if !origin_allowed(h.origin, h.host, &g.allowed_origins) {
        return Err(Denied::Origin);
    }
    let grant = match &g.verifier {
        Some(v) if !h.echo_route => {
            let token = h.token.as_deref().ok_or(AuthError::Missing).map_err(Denied::Token)?;
            Some(v.verify(token).map_err(Denied::Token)?)
        }
        _ => None,
    };
    let ip_slot = g.ips.admit(h.ip, now_ns).map_err(|refusal| match refusal {
        Refusal::TooManyConnections { max } => Denied::IpConnections { ip: h.ip, max },
        Refusal::RateLimited { retry_after_secs } => Denied::IpRate { ip: h.ip, retry_after_secs },
    })?;
    // Count the connection before answering so concurrent handshakes cannot overshoot.
    let guard = ConnectionGuard::new(gate.connections.clone()).with_ip(ip_slot);
    if gate.connections.load(Ordering::Acquire) > gate.max_connections {
        return Err(Denied::Capacity { max: gate.max_connections });
    }
    Ok(Admitted { grant, guard })
}

/// Whether `origin` is allowed. Non-browser clients send none; the gateway's own page
/// (Origin host = Host) is always allowed; an empty list allows any.
pub fn origin_allowed(origin: Option<&str>, host: &str, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    match origin {
        None => true,
        Some(o) => {
            let o = o.trim();
            // The bundled dashboard, served by this gateway: same origin is always allowed.
            let same =
                o.split_once("://").is_some_and(|(_, h)| !host.is_empty() && h.eq_ignore_ascii_case(host));
            same || allowed.iter().any(|a| a.eq_ignore_ascii_case(o))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::auth::{Verifier, mint};
    use crate::config::Config;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn guards(token_auth: bool, per_ip: u32, rate: u32, origins: &[&str]) -> Guards {
        let mut c = Config::default().server;
        c.max_connections_per_ip = per_ip;
        c.connection_rate_per_ip = rate;
        c.allowed_origins = origins.iter().map(ToString::to_string).collect();
        let verifier = token_auth.then(|| Arc::new(Verifier::new(SECRET).unwrap()));
        Guards::from_config(&c, verifier)
    }

    fn hs(origin: Option<&str>, token: Option<String>) -> Handshake<'_> {
        Handshake { ip: [10, 0, 0, 1].into(), origin, host: "gw.example:9000", token, echo_route: false }
    }

    #[test]
    fn each_check_refuses_with_its_status_and_reason() {
        let conns = Arc::new(AtomicUsize::new(0));
        let open = guards(false, 0, 0, &[]);
        let gate = |g, shutting_down, max| Gate {
            guards: g,
            shutting_down,
            connections: &conns,
            max_connections: max,
        };
        let valid =
            mint(SECRET, "alice", &["AAPL".into()], crate::clock::now_ns() / 1_000_000_000 + 60).unwrap();

        let e = admit(&hs(None, None), &gate(&open, true, 10), 0).unwrap_err();
        assert_eq!((e.status(), e.retry_after()), (StatusCode::SERVICE_UNAVAILABLE, None));

        let origins = guards(false, 0, 0, &["https://app.example.com"]);
        assert_eq!(
            admit(&hs(Some("https://evil.example"), None), &gate(&origins, false, 10), 0).unwrap_err(),
            Denied::Origin
        );
        assert!(admit(&hs(Some("https://APP.example.com"), None), &gate(&origins, false, 10), 0).is_ok());
        assert!(
            admit(&hs(Some("http://gw.example:9000"), None), &gate(&origins, false, 10), 0).is_ok(),
            "same origin"
        );
        assert!(admit(&hs(None, None), &gate(&origins, false, 10), 0).is_ok(), "no Origin: not a browser");

        let tokens = guards(true, 0, 0, &[]);
        let e = admit(&hs(None, None), &gate(&tokens, false, 10), 0).unwrap_err();
        assert_eq!(e, Denied::Token(AuthError::Missing));
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        assert!(matches!(
            admit(&hs(None, Some("x.y.z".into())), &gate(&tokens, false, 10), 0),
            Err(Denied::Token(_))
        ));
        let ok = admit(&hs(None, Some(valid.clone())), &gate(&tokens, false, 10), 0).unwrap();
        assert_eq!(ok.grant.map(|g| g.sub), Some("alice".to_string()));
        let echo = Handshake { echo_route: true, ..hs(None, None) };
        assert!(admit(&echo, &gate(&tokens, false, 10), 0).unwrap().grant.is_none(), "/echo needs no token");

        let per_ip = guards(false, 1, 0, &[]);
        let first = admit(&hs(None, None), &gate(&per_ip, false, 10), 0).unwrap();
        let e = admit(&hs(None, None), &gate(&per_ip, false, 10), 0).unwrap_err();
        assert_eq!((e.status(), e.retry_after()), (StatusCode::TOO_MANY_REQUESTS, Some(5)));
        assert!(e.body().contains("10.0.0.1") && e.body().contains("at most 1"), "{}", e.body());
        drop(first);
        assert!(admit(&hs(None, None), &gate(&per_ip, false, 10), 0).is_ok(), "the slot is released on drop");

        let rate = guards(false, 0, 1, &[]);
        let _a = admit(&hs(None, None), &gate(&rate, false, 10), 0).unwrap();
        let e = admit(&hs(None, None), &gate(&rate, false, 10), 1).unwrap_err();
        assert!(matches!(e, Denied::IpRate { retry_after_secs: 1, .. }), "{e:?}");
    }

    #[test]
    fn capacity_counts_the_admitted_and_releases_the_refused() {
        let conns = Arc::new(AtomicUsize::new(0));
        let g = guards(false, 0, 0, &[]);
        let gate = Gate { guards: &g, shutting_down: false, connections: &conns, max_connections: 2 };
        let a = admit(&hs(None, None), &gate, 0).unwrap();
        let b = admit(&hs(None, None), &gate, 0).unwrap();
        assert_eq!(conns.load(Ordering::Relaxed), 2);
        let e = admit(&hs(None, None), &gate, 0).unwrap_err();
        assert_eq!((e.status(), e.retry_after()), (StatusCode::SERVICE_UNAVAILABLE, Some(1)));
        assert_eq!(conns.load(Ordering::Relaxed), 2, "a refused handshake does not stay counted");
        drop((a, b));
        assert_eq!(conns.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn refusals_are_counted_under_their_reason() {
        let r = Rejections::default();
        for d in
            [Denied::ShuttingDown, Denied::Origin, Denied::Capacity { max: 1 }, Denied::Capacity { max: 1 }]
        {
            d.count(&r);
        }
        assert_eq!((r.origin.load(Ordering::Relaxed), r.capacity.load(Ordering::Relaxed)), (1, 2));
        assert_eq!(r.auth.load(Ordering::Relaxed), 0);
    }
}
