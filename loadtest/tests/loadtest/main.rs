//! Integration tests of the load generator: one test binary (so the gateway library is
//! linked once), a module per concern. Real sockets on 127.0.0.1:0 (the session tests need
//! none: they feed it bytes); nothing is mocked.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod checker;
mod cli;
mod common;
mod decode;
mod e2e;
mod fake;
mod merge;
mod session;
