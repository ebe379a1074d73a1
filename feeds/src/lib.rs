//! # tickgate-feeds: where ticks come from
//!
//! Everything upstream of the gateway's ring lives here, as plain synchronous
//! logic with no threads and no I/O beyond reading data files:
//!
//! - [`tick`]: the normalized Level-1 [`Tick`], fixed-point prices (10^8), no floats.
//! - [`universe`]: the [`Universe`] of symbols, names mapped to dense `u32` ids once at start-up.
//! - [`source`]: the [`FeedSource`] trait every source implements; the gateway's feed
//!   thread drives it with the clock passed in, so live and replayed sources share one path.
//! - [`simulator`]: the embedded default source (GBM mid prices, Zipf-skewed activity).
//! - [`binance`]: Binance capture lines (`<capture_ns> <json>`) normalized to L1 events.
//! - [`book`]: Level-2 order books rebuilt from Binance depth snapshots and diffs, with
//!   Binance's update-id continuity checks.
//! - [`replay`]: replayed sources: captures ([`CaptureReplay`]) and recorded tick files
//!   ([`TickReplay`]), paced by the recording's clock at any speed, optionally looped.
//! - [`tickfile`]: the compact recorded tick file format (`tickgate record`).
//! - [`codec`]: the compact tick encoding shared by tick files and the NATS bus payload.
//!
//! Data files (the symbol universe) live in `feeds/data/`; a recorded tick fixture in
//! `feeds/fixtures/`.

pub mod binance;
pub mod book;
pub mod codec;
pub mod replay;
pub mod simulator;
pub mod source;
pub mod tick;
pub mod tickfile;
pub mod universe;

pub use replay::{CaptureReplay, ReplayOptions, Speed, TickReplay};
pub use simulator::{InvalidSimConfig, SimConfig, SimField, Simulator};
pub use source::{BookHealth, FeedPoll, FeedSource};
pub use tick::{FixedBuf, SCALE, Side, Tick, TickKind, TradeCounter, format_fixed};
pub use universe::{SymbolInfo, Universe, UniverseError};
