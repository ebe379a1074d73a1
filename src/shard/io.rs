//! The shard's one write path, and the state its loop shares with its connection tasks.
//!
//! Every byte a shard sends goes through [`Shared::flush_client`] (fill the client's buffer
//! from the core, then one write) or, on the close path, [`Shared::write_out`] (the same
//! write without new updates). A write is one `sendmsg` on the raw socket, with no tokio
//! readiness check in front of it: the kernel says how much it took. When it took less
//! than offered (the socket is full), tokio's cached write readiness is cleared on the
//! spot, so the connection task's `writable()` waits for the kernel's next EPOLLOUT instead
//! of waking at once, writing again and learning about the full socket from an `EAGAIN`.
//! The clock is read when the write returns: that is the time latency is recorded at.

use std::cell::{Cell, RefCell};
use std::io::ErrorKind;
use std::rc::Rc;

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Notify;

use super::core::ShardCore;
use super::handle::ShardSettings;
use super::stats::ShardStats;
use crate::clock::now_ns;

/// A client's socket: a TCP connection (WebSocket), or this process's end of a socket pair
/// whose other end an HTTP response streams to the client (Server-Sent Events: the HTTP
/// layer frames and encrypts, the shard writes to the pair exactly as to a socket, and a full
/// pair is a slow client like any other).
pub(crate) enum Stream {
    /// A client's TCP connection.
    Tcp(TcpStream),
    /// The shard's end of an SSE response's socket pair.
    Pair(UnixStream),
}

impl Stream {
    /// Waits until the socket is writable.
    pub(crate) async fn writable(&self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.writable().await,
            Stream::Pair(s) => s.writable().await,
        }
    }

    /// Waits until the socket is readable (or at EOF).
    pub(crate) async fn readable(&self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.readable().await,
            Stream::Pair(s) => s.readable().await,
        }
    }

    /// Reads what is there without waiting.
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read(buf),
            Stream::Pair(s) => s.try_read(buf),
        }
    }

    fn try_read_buf(&self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read_buf(buf),
            Stream::Pair(s) => s.try_read_buf(buf),
        }
    }

    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> std::io::Result<R>) -> std::io::Result<R> {
        match self {
            Stream::Tcp(s) => s.try_io(interest, f),
            Stream::Pair(s) => s.try_io(interest, f),
        }
    }

    /// The socket, for socket options and raw sends.
    pub(crate) fn sock(&self) -> socket2::SockRef<'_> {
        match self {
            Stream::Tcp(s) => socket2::SockRef::from(s),
            Stream::Pair(s) => socket2::SockRef::from(s),
        }
    }

    /// The TCP stream (TLS runs only over TCP).
    pub(crate) fn tcp(&self) -> std::io::Result<&TcpStream> {
        match self {
            Stream::Tcp(s) => Ok(s),
            Stream::Pair(_) => Err(std::io::Error::other("TLS over a socket pair")),
        }
    }
}

/// Per-connection I/O state shared between the shard loop and the connection's task.
pub(crate) struct ConnIo {
    pub(crate) stream: Stream,
    /// The TLS session over `stream` (wss://), driven synchronously.
    pub(crate) tls: RefCell<Option<Box<crate::server::tls::TlsState>>>,
    /// Wakes the connection task (it became blocked, or must close).
    pub(crate) wake: Notify,
    /// A close the shard asks the connection to perform.
    pub(crate) close_req: Cell<Option<(u16, &'static str)>>,
    /// The socket failed; the connection task must tear down.
    pub(crate) dead: Cell<bool>,
}

/// Syscall-level and flush-loop counters of a shard (single-threaded).
#[derive(Default)]
pub(crate) struct IoCounters {
    /// Writes to client sockets.
    pub(crate) writes: Cell<u64>,
    /// Turns of the shard loop.
    pub(crate) turns: Cell<u64>,
    /// Flush slices run.
    pub(crate) slices: Cell<u64>,
    /// Time spent in flush slices, ns.
    pub(crate) slice_ns: Cell<u64>,
    /// Longest slice since housekeeping last read it, ns.
    pub(crate) slice_max_ns: Cell<u64>,
}

impl IoCounters {
    pub(crate) fn add(c: &Cell<u64>, n: u64) {
        c.set(c.get() + n);
    }
}

/// State shared by the shard loop and its connection tasks (one thread: `Rc`/`RefCell`;
/// no borrow is ever held across an `.await`).
pub(crate) struct Shared {
    pub(crate) core: RefCell<ShardCore>,
    /// Connections by the core's client key.
    pub(crate) conns: RefCell<ConnTable>,
    pub(crate) settings: ShardSettings,
    pub(crate) stats: std::sync::Arc<ShardStats>,
    /// Wakes the shard loop (a client became ready, or a deadline moved earlier).
    pub(crate) loop_wake: Notify,
    pub(crate) shutting_down: Cell<bool>,
    pub(crate) io: IoCounters,
}

/// Connections indexed by the core's client key (dense: the core's slab reuses keys).
#[derive(Default)]
pub(crate) struct ConnTable {
    slots: Vec<Option<Rc<ConnIo>>>,
    len: usize,
}

impl ConnTable {
    pub(crate) fn insert(&mut self, key: usize, io: Rc<ConnIo>) {
        if self.slots.len() <= key {
            self.slots.resize_with(key + 1, || None);
        }
        if self.slots[key].replace(io).is_none() {
            self.len += 1;
        }
    }

    pub(crate) fn remove(&mut self, key: usize) {
        if self.slots.get_mut(key).and_then(Option::take).is_some() {
            self.len -= 1;
        }
    }

    #[inline]
    pub(crate) fn get(&self, key: usize) -> Option<&Rc<ConnIo>> {
        self.slots.get(key).and_then(Option::as_ref)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Rc<ConnIo>> {
        self.slots.iter().flatten()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What a flush did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flushed {
    /// Bytes the socket took.
    pub(crate) bytes: usize,
    /// A write was attempted.
    pub(crate) wrote: bool,
    /// When the write returned (ns, wall clock), if one was attempted.
    pub(crate) at: Option<u64>,
}

impl Shared {
    /// Fills client `key`'s buffer with its due updates as of `now` and writes it with one
    /// write. [`Flushed::at`] is the time the write returned (the next client's `now`: one
    /// clock read per client flushed).
    pub(crate) fn flush_client(&self, key: usize, io: &ConnIo, now: u64) -> Flushed {
        self.write(key, io, Some(now))
    }

    /// Writes what client `key` has buffered (replies, a close frame), without adding
    /// updates: one write.
    pub(crate) fn write_out(&self, key: usize, io: &ConnIo) -> Flushed {
        self.write(key, io, None)
    }

    /// One write of client `key`'s buffer, filled first with its updates due at `fill_at`.
    fn write(&self, key: usize, io: &ConnIo, fill_at: Option<u64>) -> Flushed {
        let mut core = self.core.borrow_mut();
        if let Some(now) = fill_at {
            let earliest = core.next_deadline();
            core.fill(key, now);
            if core.next_deadline() != earliest {
                // A max_rate deadline now comes before the one the loop sleeps until.
                self.loop_wake.notify_one();
            }
        }
        let Some(client) = core.client(key) else { return Flushed::default() };
        if client.out().is_empty() {
            return Flushed::default();
        }
        IoCounters::add(&self.io.writes, 1);
        let result = io.write(client.out());
        let now = now_ns();
        let n = match result {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
            Err(_) => {
                // The socket is gone: nothing more will be written to it.
                core.discard_output(key);
                io.dead.set(true);
                io.wake.notify_one();
                return Flushed { bytes: 0, wrote: true, at: Some(now) };
            }
        };
        if core.written(key, n, now) {
            // Unblocked with updates pending: back in the ready queue; the loop may be parked.
            self.loop_wake.notify_one();
        }
        if core.client(key).is_some_and(|c| c.is_blocked()) || io.tls_pending() {
            io.wake.notify_one();
        }
        Flushed { bytes: n, wrote: true, at: Some(now) }
    }
}

impl ConnIo {
    /// Writes `plain` with one write: straight to the socket, or encrypted into TLS records
    /// and those written (a socket still holding earlier records takes nothing new).
    /// Returns the plaintext bytes taken.
    pub(crate) fn write(&self, plain: &[u8]) -> std::io::Result<usize> {
        if let Some(tls) = self.tls.borrow_mut().as_mut() {
            return tls.send(self.stream.tcp()?, plain);
        }
        // `send` with MSG_NOSIGNAL, straight on the socket: tokio's readiness is not
        // consulted (the kernel knows best whether there is room).
        match self.stream.sock().send(plain) {
            Ok(n) if n < plain.len() => {
                self.clear_write_readiness();
                Ok(n)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.clear_write_readiness();
                Err(e)
            }
            r => r,
        }
    }

    /// The socket is full: forget tokio's cached write readiness so `writable()` waits for
    /// the kernel's next EPOLLOUT. No event can be lost in between: the reactor runs on
    /// this same thread, and only after this returns.
    fn clear_write_readiness(&self) {
        let _ = self.stream.try_io(Interest::WRITABLE, || Err::<(), _>(ErrorKind::WouldBlock.into()));
    }

    /// Encrypted bytes wait for the socket (TLS only).
    pub(crate) fn tls_pending(&self) -> bool {
        self.tls.borrow().as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes waiting TLS records (no-op without TLS).
    pub(crate) fn flush_tls(&self) -> std::io::Result<usize> {
        match self.tls.borrow_mut().as_mut() {
            Some(tls) => tls.write_tls(self.stream.tcp()?),
            None => Ok(0),
        }
    }

    /// Reads what the socket has into `buf` (plaintext), at most `max` bytes.
    pub(crate) fn read(&self, buf: &mut BytesMut, max: usize) -> std::io::Result<usize> {
        match self.tls.borrow_mut().as_mut() {
            Some(tls) => tls.recv(self.stream.tcp()?, buf, max),
            None => {
                buf.reserve(max);
                self.stream.try_read_buf(buf)
            }
        }
    }
}
