//! Connecting: binds a source address, connects, and drives a [`Session`]'s upgrade over a
//! tokio `TcpStream` ([`connect`]). The only I/O of the handshake; the logic is in
//! [`crate::ws::handshake`] and [`crate::session`].

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::session::{Event, Session};
use crate::ws::handshake::HandshakeError;
use crate::ws::url::WsUrl;

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

/// Connects to `url` (from `source:0` if given) and performs `session`'s upgrade: writes its
/// request, feeds it the response until it yields [`Event::Connected`]. Bytes the server
/// sent after the response (the first WebSocket frames) stay in the session
/// ([`Session::buffered`]).
///
/// # Errors
///
/// A [`ConnectError`] naming the target and the step that failed. The caller bounds the
/// time (the connection tasks use `--connect-timeout`).
pub async fn connect(
    url: &WsUrl,
    source: Option<IpAddr>,
    session: &mut Session,
) -> Result<TcpStream, ConnectError> {
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
    let mut request = Vec::new();
    if session.poll_transmit(&mut request) {
        stream.write_all(&request).await.map_err(io_err)?;
    }
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(io_err)?;
        if n == 0 {
            return Err(io_err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the upgrade")));
        }
        session.on_handshake_bytes(&chunk[..n]);
        match session.poll_event() {
            Some(Event::Connected) => return Ok(stream),
            Some(Event::HandshakeFailed(err)) => {
                return Err(ConnectError::Handshake { target: url.raw.clone(), err });
            }
            _ => {}
        }
    }
}
