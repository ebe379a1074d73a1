//! Wall-clock time in nanoseconds since the Unix epoch, the unit of every timestamp tickgate
//! puts on the wire (`ts_event`, `ts_gateway`, pong `ts`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in ns since the Unix epoch. A clock before 1970 reads as 0.
#[inline]
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
