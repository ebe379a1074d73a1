//! The client side of WebSocket as plain logic, no I/O: [`url`] (targets), [`handshake`] (the
//! upgrade request and the check of its response) and [`frame`] (server frames parsed in
//! place, masked client frames). [`crate::session`] builds on them; [`crate::dial`] does the
//! connecting.
//!
//! There is no per-connection reader object: the worker thread's connection tasks read into
//! one shared [`ReadBuf`](crate::session::ReadBuf) per thread and each
//! [`Session`](crate::session::Session) keeps only an unfinished frame's bytes (see
//! [`crate::session`]), which keeps 18,000 connections small.

pub mod frame;
pub mod handshake;
pub mod url;
