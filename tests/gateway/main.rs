//! End-to-end tests of the gateway: a real server on 127.0.0.1:0, real WebSocket clients.
//!
//! - `flow`: subscribe → ack → snapshot → live updates → unsubscribe; formats; heartbeats.
//! - `delivery`: conflation under a stalled client, convergence of a finite feed, ring
//!   overrun healing, max_rate.
//! - `edge`: behind real nginx (TLS, X-Forwarded-For) and HAProxy (PROXY protocol v2): the
//!   per-IP guard counts the client addresses they report; spoofed headers are ignored.
//! - `errors`: every error reply and close code of protocol v1.
//! - `http`: the routes beside the WebSocket, limits, shutdown.
//! - `feeds`: capture and tick-file replays through the gateway, replay pacing.
//! - `fleet`: the NATS feed bus: a publisher, several gateways, an outage (needs nats-server).
//! - `abuse`: malformed messages and frames, floods, slow handshakes, connection floods.
//! - `security`: token auth and entitlements, the Origin allow-list, the diagnostic echo.
//! - `idp`: identity-provider tokens (RS256/ES256/EdDSA from a JWKS over HTTP(S)), key
//!   rotation, an outage, two issuers sharing a kid, PEM files, a table of bad tokens.
//! - `tls`: wss:// and https://, and a certificate reload under live connections.
//! - `sse`: Server-Sent Events: snapshots, updates, trades, heartbeats, reconnects, a stalled
//!   reader, refusals.
//! - `trades`: every trade in order from a real capture, gap accounting for a stalled client,
//!   the per-client bandwidth cap.
//! - `ops`: `/metrics`, `/stats`, live tuning, and the real `tickgate tune` / `tickgate stats`.
//! - `common`: the helpers: a gateway on port 0, clients, readers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod abuse;
mod common;
mod delivery;
mod depth;
mod edge;
mod errors;
mod feeds;
mod fleet;
mod flow;
mod http;
mod idp;
mod ops;
mod security;
mod sse;
mod tls;
mod trades;
