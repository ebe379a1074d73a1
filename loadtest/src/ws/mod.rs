//! The client side of WebSocket, written for many connections at once over plain tokio
//! `TcpStream`s: [`url`] (targets), [`handshake`] (the upgrade, plain logic), [`frame`]
//! (server frames parsed in place, masked client frames; plain logic) and [`connect`],
//! which binds a source address, connects and upgrades.
//!
//! There is no per-connection reader object: the worker thread's connection tasks read into
//! one shared scratch buffer per thread and keep only an unfinished frame's bytes per
//! connection (see [`crate::worker`]), which keeps 18,000 connections small.

pub mod frame;
pub mod handshake;
pub mod url;

use std::io;
use std::net::{IpAddr, SocketAddr};

use tickgate::protocol::Format;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use self::handshake::{HandshakeError, MAX_RESPONSE_HEADER};
use self::url::WsUrl;

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Creating, binding or connecting the socket failed.
    #[error("connect to {target} from {from}: {err}")]
    Tcp {
        /// The target.
        target: SocketAddr,
        /// The source address bound (or "any").
        from: String,
        /// The error.
        err: io::Error,
    },
    /// The upgrade was refused or malformed.
    #[error("upgrade at {target}: {err}")]
    Handshake {
        /// The target URL.
        target: String,
        /// The error.
        err: HandshakeError,
    },
    /// The socket failed or closed during the upgrade.
    #[error("upgrade at {target}: {err}")]
    Io {
        /// The target URL.
        target: String,
        /// The error.
        err: io::Error,
    },
}

/// Connects to `url` (from `source:0` if given), performs the upgrade for `format` and
/// returns the stream and any bytes the server sent after the handshake (the first
/// WebSocket frames).
///
/// # Errors
///
/// A [`ConnectError`] naming the target and the step that failed. The caller bounds the
/// time (the connection tasks use `--connect-timeout`).
pub async fn connect(
    url: &WsUrl,
    source: Option<IpAddr>,
    format: Format,
    key_rng: &mut fastrand::Rng,
) -> Result<(TcpStream, Vec<u8>), ConnectError> {
    let tcp_err = |err| ConnectError::Tcp {
        target: url.addr,
        from: source.map_or_else(|| "any".to_string(), |s| s.to_string()),
        err,
    };
    let sock = if url.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(tcp_err)?;
    if let Some(ip) = source {
        sock.bind(SocketAddr::new(ip, 0)).map_err(tcp_err)?;
    }
    let mut stream = sock.connect(url.addr).await.map_err(tcp_err)?;
    stream.set_nodelay(true).map_err(tcp_err)?;
    let io_err = |err| ConnectError::Io { target: url.raw.clone(), err };
    let key = handshake::random_key(key_rng);
    let sub = format.subprotocol();
    stream.write_all(&handshake::request(&url.host, &url.path_and_query, &key, sub)).await.map_err(io_err)?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = stream.read(&mut chunk).await.map_err(io_err)?;
        if n == 0 {
            return Err(io_err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the upgrade")));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = handshake::header_end(&buf) {
            break end;
        }
        if buf.len() > MAX_RESPONSE_HEADER {
            return Err(ConnectError::Handshake { target: url.raw.clone(), err: HandshakeError::TooLarge });
        }
    };
    handshake::check_response(&buf[..end], &buf[end..], &key, sub)
        .map_err(|err| ConnectError::Handshake { target: url.raw.clone(), err })?;
    let leftover = buf.split_off(end);
    Ok((stream, leftover))
}
