//! # tickgate: a real-time market data push gateway
//!
//! A tick travels through these modules in this order (see `ARCHITECTURE.md`):
//!
//! ```text
//! tickgate_feeds (FeedSource) ──► feed (feed thread: stamp, last-value cache, publish)
//!                                  │
//!                                  ▼
//!                     ring (lock-free SPMC broadcast ring) + ring::Lvc (latest per symbol)
//!                                  │   every shard reads every tick, in order
//!                                  ▼
//!   shard (one thread + current-thread tokio runtime per shard):
//!       shard::index (symbol → subscribers) → shard::conflate (per-client pending slots)
//!       → protocol::{json, binary} (encode once per format) → shard::conn (one write per flush)
//!                                  │
//!                                  ▼
//!                          WebSocket clients
//! ```
//!
//! Sources: the simulator, capture and tick-file replays (all in `tickgate_feeds`), or the
//! NATS bus ([`bus`]: `tickgate feed --publish` on one machine, `serve --feed nats://` on many).
//! [`record`] writes any source to a tick file.
//!
//! - [`cli`]: the `tickgate` commands, one module each (`serve`, `record`, `feed`, `config`,
//!   `token`, `stats`, `tune`); [`signal`]: SIGINT/SIGTERM/SIGHUP handling for them.
//! - [`config`]: the key table and the one validated [`config::Config`] built from defaults,
//!   file, env and flags.
//! - [`feed`]: builds the [`feed::Feed`] `feed.source` names and runs the feed thread.
//! - [`books`]: the published top levels of every symbol's order book (Level 2), written by
//!   the feed thread, encoded by the shards, announced on the ring.
//! - [`ring`]: the broadcast ring and the last-value cache (seqlock slots of atomic words).
//! - [`protocol`]: protocol v1 — control messages, JSON and binary frames, WebSocket framing.
//! - [`shard`]: per-shard state and the writer loop.
//! - [`server`]: listener, HTTP routes, admission, WebSocket upgrade, hand-off of sockets to
//!   shards; `/stats` and `/metrics` ([`server::metrics`]).
//! - [`counters`]: the table of per-shard figures that drives both `/stats` and `/metrics`.
//! - [`stats`]: HDR latency histograms merged off the hot path; the periodic summary line.
//! - [`live`]: settings that can change while running; [`ops`]: the operator commands'
//!   client side (`tickgate stats`, `tickgate tune`).
//! - [`gateway`]: wires it all together; [`gateway::Gateway::start`] is the library entry point.
//!
//! - [`alloc`]: the allocator's settings: the one module with `unsafe` (two calls into
//!   mimalloc's C API). The ring is built from atomic words, without `unsafe` (see [`ring`]).

pub mod alloc;
pub mod auth;
pub mod books;
pub mod bus;
pub mod cli;
pub mod clock;
pub mod config;
pub mod counters;
pub mod feed;
pub mod gateway;
pub mod interest;
pub mod live;
pub mod ops;
pub mod protocol;
pub mod record;
pub mod ring;
pub mod server;
pub mod shard;
pub mod signal;
pub mod stats;

pub use tickgate_feeds as feeds;
