//! Shards: the WebSocket writer threads.
//!
//! Each shard is one OS thread running its own current-thread tokio runtime (optionally
//! pinned to a core). A connection is handed to one shard after its upgrade and lives there
//! for its whole life; the acceptor picks the shard with the fewest connections at that
//! moment. Inside a shard nothing is shared across threads except the ring (read-only), the
//! last-value cache (read-only) and the stats atomics, so there are no locks on the data path.
//!
//! Deterministic logic (no sockets, no clock of its own; tested and benchmarked alone):
//! - [`index`]: symbol → subscriber count and the clients armed to be woken by its next tick.
//! - [`conflate`]: per-client dense slots (latest seq sent, `max_rate` pacing).
//! - [`cache`]: per-symbol latest tick with its encoded frames (encode once per format).
//! - [`trades`]: per-symbol logs of recent trades (encoded once), read from per-client cursors.
//! - [`core`]: ties those together: O(1) intake, the FIFO ready queue, `max_rate`
//!   deadlines, fill, latency, the control protocol.
//! - [`timers`]: a connection's deadlines (ping, idle, slow consumer, subscribe, token).
//!
//! I/O, split by concern:
//! - `handle`: what the gateway holds ([`ShardHandle`]), what it hands over
//!   ([`NewConnection`]), and the thread ([`spawn_shard`]).
//! - `driver`: the shard's loop: ring intake → bounded flush slices → park.
//! - `io`: the one write path (fill, one `sendmsg`, readiness, latency stamp).
//! - `conn`: one task per connection: reads client frames, heartbeats, timeouts, closes.
//! - `stats`: the shard's counters and gauges ([`ShardStats`]).

pub mod cache;
pub mod conflate;
mod conn;
pub mod core;
pub mod depth;
mod driver;
mod handle;
pub mod index;
mod io;
mod stats;
pub mod timers;
pub mod trades;

pub use driver::{MAX_TICK_AGE, SLICE_BUDGET, SLICE_MAX_CLIENTS};
pub use handle::{ConnectionGuard, NewConnection, Session, ShardHandle, ShardSettings, Socket, spawn_shard};
pub use stats::{COUNTED_CLOSE_CODES, FlushTotals, FlushWindow, ShardStats, TopClient};
