//! The atomics the ring is built from: `std`'s normally, loom's under `--features loom` so
//! the same code is model-checked.

#[cfg(feature = "loom")]
pub(crate) use loom::sync::Arc;
#[cfg(feature = "loom")]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering, fence};
#[cfg(feature = "loom")]
pub(crate) use loom::thread::yield_now;

#[cfg(not(feature = "loom"))]
pub(crate) use std::sync::Arc;
#[cfg(not(feature = "loom"))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering, fence};
#[cfg(not(feature = "loom"))]
pub(crate) use std::thread::yield_now;
