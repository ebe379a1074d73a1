//! # tickgate-loadtest: the client side of tickgate's benchmarks
//!
//! Opens thousands of WebSocket clients against a tickgate gateway, subscribes each to
//! some symbols, measures end-to-end latency in HDR histograms and checks the integrity of
//! everything that arrives. The binary is a thin shell over [`run()`]; tests call it
//! in-process against a gateway on port 0.
//!
//! # Layout
//!
//! The data flow, from the command line to the report:
//!
//! ```text
//! cli ─► options (validated) ─► run (coordinator, stage by stage)
//!                                 ├─ plan: srcaddr (127.0.0.x per run), the universe (`list`)
//!                                 ├─ worker × threads: ramp → connect (ws) → subscribe
//!                                 │     per connection, the worker does the socket I/O and
//!                                 │     its session (no I/O) the protocol:
//!                                 │     read into the thread's ReadBuf → session: ws::frame
//!                                 │     (in place) → decode (simd-json in place / 88-byte
//!                                 │     records) → checker (integrity) → events
//!                                 │     → stats (HDR histograms, counters)
//!                                 │     → once a second: interval → coordinator
//!                                 ├─ verify (--verify-final: /stats, /snapshot)
//!                                 └─ report (table, JSON, merge) ─► plot, HdrHistogram log
//! ```
//!
//! - [`cli`], [`options`], [`profile`]: flags → one validated [`Options`]; named workloads.
//! - [`run`](mod@run): the coordinator, stage by stage; [`worker`]: the threads, the
//!   connection tasks and their sockets; [`session`]: one connection's protocol as a state
//!   machine with no I/O (bytes and time in; bytes to write and events out).
//! - [`ws`]: WebSocket client (upgrade, frames), [`request`]: what clients send,
//!   [`decode`]: what they receive, [`http`]: `/stats` and `/snapshot`.
//! - [`checker`]: the integrity rules as plain logic (tests feed it crafted streams);
//!   [`verify`]: final values against the gateway's snapshot.
//! - [`stats`]: histograms and counters; [`report`]: the result, its table and `--merge`;
//!   [`plot`]: the percentile plot; [`progress`]: live progress ([`progress::LiveProgress`]).
//! - [`capacity`]: `--find-capacity`, the search for the most clients within a p99
//!   objective (a pure state machine, and its runner).
//! - [`picker`]: uniform and Zipf symbol picks; [`srcaddr`]: source-address rotation;
//!   [`sysinfo`]: machine, CPU, RSS, open-file limit.
//!
//! No `unsafe` (the workspace forbids it).

pub mod capacity;
pub mod checker;
pub mod cli;
pub mod decode;
pub mod dial;
pub mod http;
pub mod options;
pub mod picker;
pub mod plot;
pub mod profile;
pub mod progress;
pub mod report;
pub mod request;
pub mod run;
pub mod session;
pub mod srcaddr;
pub mod sse;
pub mod stats;
pub mod sysinfo;
pub mod verify;
pub mod worker;
pub mod ws;

pub use options::{FormatMode, Options, Transport};
pub use picker::Pick;
pub use profile::ProfileName;
pub use report::Report;
pub use run::{RunError, run};
