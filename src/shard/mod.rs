//! Shards: the WebSocket writer threads.
//!
//! Each shard is one OS thread running its own current-thread tokio runtime (optionally
//! pinned to a core). A connection is handed to one shard after its upgrade and lives there
//! for its whole life; the acceptor picks the shard with the fewest connections at that
//! moment. Inside a shard nothing is shared across threads except the ring (read-only), the
//! last-value cache (read-only) and the stats atomics, so there are no locks on the data path.
//!
//! - [`index`]: symbol → subscribers.
//! - [`conflate`]: per-client conflation slots and `max_rate` pacing.
//! - [`cache`]: per-symbol latest tick with its encoded frames (encode once per format).
//! - [`core`]: the deterministic shard logic tying those together (no I/O).
//! - `driver`: the shard's loop: ring → core → one write per ready client per turn.
//! - `conn`: one task per connection: reads client frames, heartbeats, timeouts, closes.

pub mod cache;
pub mod conflate;
mod conn;
pub mod core;
mod driver;
pub mod index;

pub use driver::{
    COUNTED_CLOSE_CODES, ConnectionGuard, NewConnection, Session, ShardHandle, ShardSettings, ShardStats,
    spawn_shard,
};
