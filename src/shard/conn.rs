//! One task per connection, on its shard's thread.
//!
//! It reads and decodes client frames (control messages go to the shard core; replies are
//! flushed at once), answers pings, pings the client every `ping_interval`, waits for
//! writability when the shard found the socket full, and enforces the idle and
//! slow-consumer timeouts. Every wait is on readiness (`readable`/`writable`/`Notify`/timers),
//! which is cancel-safe, so the `select!` never loses data.
//!
//! Closing is bounded: queue the close frame, try to write it for at most
//! [`CLOSE_LINGER`], half-close, read (and discard) until the peer's close or EOF for at
//! most [`CLOSE_LINGER`], then drop the socket.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;

use super::handle::ConnectionGuard;
use super::io::{ConnIo, Shared};
use super::timers::{self, ConnTimers, Timeouts, TimerAction};
use crate::clock::now_ns;
use crate::protocol::frame::{self, CloseError, FrameDecoder, Message, OpCode, close_code};

/// The far future, for deadlines that are off.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Longest a closing connection lingers on each of its two close steps.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Bytes reserved per read. A typical subscribe is well under this; larger messages take
/// several reads.
const READ_CHUNK: usize = 1024;

/// Most bytes read from one socket per wake-up before yielding to the shard loop (bounds
/// the time one flooding client can take from the others).
const READ_BUDGET: usize = 64 * 1024;

/// Why a connection ends.
enum End {
    /// Send this close frame, then close.
    Close(u16, &'static str),
    /// The peer sent a close: echo its code.
    PeerClosed(Option<u16>),
    /// The socket is gone (EOF or error): nothing to send.
    Gone(&'static str),
}

/// What sort of connection a task runs.
pub(crate) struct Kind {
    /// The diagnostic echo route.
    pub(crate) echo: bool,
    /// Server-Sent Events: nothing is read from the client (its request was the whole of
    /// what it says), heartbeats are SSE comments, and it ends without a close frame.
    pub(crate) sse: bool,
    /// A control message to run first, as if the client had sent it.
    pub(crate) initial: Option<String>,
}

pub(crate) async fn run(
    shared: Rc<Shared>,
    key: usize,
    io: Rc<ConnIo>,
    mut buf: BytesMut,
    peer: SocketAddr,
    guard: ConnectionGuard,
    kind: Kind,
) {
    let Kind { echo, sse, initial } = kind;
    let mut live = shared.settings.live.watch();
    let mut decoder = FrameDecoder::new(shared.settings.max_message_bytes);
    // The deadlines run on a monotonic clock: ns since the connection opened.
    let opened = Instant::now();
    let mono = || opened.elapsed().as_nanos() as u64;
    let mut timeouts = || {
        let s = &live.get().server;
        Timeouts {
            ping_ns: s.ping_interval.as_nanos() as u64,
            // An SSE client never sends anything: it is alive while its stream is.
            idle_ns: if sse { timers::NEVER } else { s.idle_timeout.as_nanos() as u64 },
            slow_ns: s.slow_client_timeout.as_nanos() as u64,
        }
    };
    let sub_timeout = if echo || sse { 0 } else { shared.settings.subscribe_timeout.as_nanos() as u64 };
    let mut timers = ConnTimers::new(0, &timeouts(), sub_timeout);

    if let Some(msg) = initial {
        let mut payload = msg.into_bytes();
        shared.core.borrow_mut().handle_text(key, &mut payload, now_ns());
        shared.flush_client(key, &io, now_ns());
    }
    // Bytes that arrived with the handshake.
    let mut end =
        if buf.is_empty() || sse { None } else { process(&shared, key, &io, &mut decoder, &mut buf, echo) };

    while end.is_none() {
        if io.dead.get() {
            end = Some(End::Gone("write error"));
            break;
        }
        if let Some((code, reason)) = io.close_req.get() {
            end = Some(End::Close(code, reason));
            break;
        }
        let blocked = shared.core.borrow().client(key).is_some_and(|c| c.is_blocked()) || io.tls_pending();
        // Under token auth: the token's expiry, on the monotonic clock (it moves when the
        // client sends a fresh token). No leeway here: the gateway's own clock decides
        // (leeway is for the issuer's skew at verification).
        let token_deadline = |now: u64| {
            shared.core.borrow().token_expiry(key).map_or(timers::NEVER, |exp| {
                let left_s = exp.saturating_sub(now_ns() / 1_000_000_000);
                now.saturating_add(left_s.saturating_mul(1_000_000_000))
            })
        };
        let now = mono();
        let wake_at = timers.next(now, &timeouts(), blocked, token_deadline(now));
        let sleep_for = Duration::from_nanos(wake_at.saturating_sub(now)).min(NEVER);

        tokio::select! {
            biased;
            _ = io.wake.notified() => {}
            r = io.stream.writable(), if blocked => {
                if r.is_err() {
                    end = Some(End::Gone("socket error"));
                } else {
                    // Write what was left over; the client is back in the ready queue once it
                    // drains, and gets its fresh updates in its turn.
                    let sent_tls = io.flush_tls().unwrap_or(0);
                    if shared.write_out(key, &io).bytes > 0 || sent_tls > 0 {
                        timers.progressed(mono());
                    }
                }
            }
            r = io.stream.readable() => {
                if r.is_err() {
                    end = Some(End::Gone("socket error"));
                    continue;
                }
                match read_some(&io, &mut buf, decoder.buffered_limit()) {
                    Ok(0) => end = Some(End::Gone("peer closed the socket")),
                    // The HTTP side of an SSE stream writes nothing into the pair.
                    Ok(_) if sse => buf.clear(),
                    Ok(_) => {
                        timers.received(mono());
                        end = process(&shared, key, &io, &mut decoder, &mut buf, echo);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => end = Some(End::Gone("read error")),
                }
            }
            _ = tokio::time::sleep(sleep_for) => {
                let now = mono();
                let subscribed = shared.core.borrow().client(key).is_some_and(|c| !c.subs().is_empty());
                match timers.due(now, &timeouts(), blocked, subscribed, token_deadline(now)) {
                    Some(TimerAction::Close(code, reason)) => end = Some(End::Close(code, reason)),
                    Some(TimerAction::Ping) if sse => {
                        shared.core.borrow_mut().push_raw(key, crate::protocol::sse::PING);
                        shared.flush_client(key, &io, now_ns());
                    }
                    Some(TimerAction::Ping) => {
                        let mut f = Vec::with_capacity(16);
                        frame::write_frame(&mut f, OpCode::Ping, &now_ns().to_be_bytes());
                        shared.core.borrow_mut().push_raw(key, &f);
                        shared.flush_client(key, &io, now_ns());
                    }
                    None => {}
                }
            }
        }
    }

    let end = end.unwrap_or(End::Gone("unknown"));
    // From here on the client gets nothing but what is buffered and the close frame.
    shared.core.borrow_mut().begin_close(key);
    // Boxed: the close handshake's state (timers, a discard buffer) would otherwise be part of
    // every connection's future for its whole life; it is needed once, at the end.
    Box::pin(close(&shared, key, &io, end, peer, sse)).await;
    shared.conns.borrow_mut().remove(key);
    shared.core.borrow_mut().remove_client(key);
    shared.stats.clients.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    drop(guard);
}

/// Reads what the socket has, up to [`READ_BUDGET`] and never more than `limit` buffered.
fn read_some(io: &ConnIo, buf: &mut BytesMut, limit: usize) -> std::io::Result<usize> {
    let mut total = 0;
    while total < READ_BUDGET {
        // Client messages are small: read in small steps so an idle connection does not pin
        // a large buffer (memory per connection is the scaling limit at tens of thousands).
        let room = limit.saturating_sub(buf.len()).max(1);
        match io.read(buf, room.min(READ_CHUNK)) {
            Ok(0) if total == 0 => return Ok(0),
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && total > 0 => break,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::debug!(error = %e, "TLS error");
                return Ok(0);
            }
            Err(e) => return Err(e),
        }
        if buf.len() >= limit {
            break;
        }
    }
    Ok(total)
}

/// Decodes and handles every complete frame in `buf`, then flushes the replies with one
/// write. Returns how the connection must end, if it must.
fn process(
    shared: &Shared,
    key: usize,
    io: &ConnIo,
    decoder: &mut FrameDecoder,
    buf: &mut BytesMut,
    echo: bool,
) -> Option<End> {
    let mut end = None;
    loop {
        match decoder.decode(buf) {
            Ok(None) => break,
            Ok(Some(Message::Text(payload))) if echo => echo_back(shared, key, OpCode::Text, &payload),
            Ok(Some(Message::Binary(payload))) if echo => echo_back(shared, key, OpCode::Binary, &payload),
            Ok(Some(Message::Text(mut payload))) => {
                if shared.shutting_down.get() {
                    continue;
                }
                shared.core.borrow_mut().handle_text(key, &mut payload, now_ns());
            }
            Ok(Some(Message::Binary(_))) => {
                end = Some(End::Close(close_code::UNSUPPORTED_DATA, "binary messages are not accepted"));
                break;
            }
            Ok(Some(Message::Ping(p))) => {
                let mut f = Vec::with_capacity(2 + p.len());
                frame::write_frame(&mut f, OpCode::Pong, &p);
                shared.core.borrow_mut().push_raw(key, &f);
            }
            Ok(Some(Message::Pong(_))) => {}
            Ok(Some(Message::Close { code, .. })) => {
                end = Some(End::PeerClosed(code));
                break;
            }
            Err(CloseError { code, reason }) => {
                end = Some(End::Close(code, reason));
                break;
            }
        }
    }
    shared.flush_client(key, io, now_ns());
    if buf.is_empty() {
        // Nothing partial left: an idle connection holds no read buffer (clients send
        // little after subscribing; memory per connection is what limits a process).
        *buf = BytesMut::new();
    }
    end
}

/// The diagnostic echo route: the message goes back with its own opcode.
fn echo_back(shared: &Shared, key: usize, op: OpCode, payload: &[u8]) {
    let mut f = Vec::with_capacity(payload.len() + 10);
    frame::write_frame(&mut f, op, payload);
    shared.core.borrow_mut().push_raw(key, &f);
}

/// The bounded close handshake.
async fn close(shared: &Shared, key: usize, io: &ConnIo, end: End, peer: SocketAddr, sse: bool) {
    let (code, reason) = match end {
        End::Gone(why) => {
            tracing::debug!(%peer, key, why, "connection closed");
            return;
        }
        End::PeerClosed(code) => {
            tracing::debug!(%peer, key, ?code, "client closed");
            // Echo the client's code (RFC 6455 §5.5.1); an empty close is answered with 1000.
            (code.unwrap_or(close_code::NORMAL), "")
        }
        End::Close(code, reason) => {
            if code == close_code::GOING_AWAY || code == close_code::NORMAL {
                tracing::debug!(%peer, key, code, reason, "closing connection");
            } else {
                tracing::info!(%peer, key, code, reason, "closing connection");
            }
            shared.stats.count_close(code, reason);
            (code, reason)
        }
    };
    if !sse {
        // An SSE stream just ends (what is buffered goes first); EventSource reconnects.
        let mut f = Vec::with_capacity(4 + reason.len());
        frame::write_close(&mut f, code, reason);
        shared.core.borrow_mut().push_raw(key, &f);
    }
    // Write what is queued (including the close), waiting at most CLOSE_LINGER.
    let deadline = Instant::now() + CLOSE_LINGER;
    loop {
        let took = shared.write_out(key, io);
        if !took.wrote || io.dead.get() {
            break;
        }
        if took.bytes == 0 && tokio::time::timeout_at(deadline, io.stream.writable()).await.is_err() {
            return;
        }
    }
    if io.dead.get() {
        return;
    }
    // TLS: close_notify, and whatever records still wait.
    if let (Some(tls), Ok(tcp)) = (io.tls.borrow_mut().as_mut(), io.stream.tcp()) {
        tls.close(tcp);
    }
    while io.tls_pending() {
        if !matches!(io.flush_tls(), Ok(n) if n > 0)
            && tokio::time::timeout_at(deadline, io.stream.writable()).await.is_err()
        {
            break;
        }
    }
    let _ = io.stream.sock().shutdown(std::net::Shutdown::Write);
    // Wait for the peer's close frame or EOF, discarding data, for at most CLOSE_LINGER.
    let deadline = Instant::now() + CLOSE_LINGER;
    let mut sink = [0u8; 512];
    while let Ok(Ok(())) = tokio::time::timeout_at(deadline, io.stream.readable()).await {
        match io.stream.try_read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}
