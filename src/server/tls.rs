//! TLS for the public listener (rustls, ring backend): `https://` and `wss://` on the same
//! port when `server.tls_cert` and `server.tls_key` are set.
//!
//! - The certificate and key live in a [`Reloadable`] resolver: [`Reloadable::reload`]
//!   (called on SIGHUP) reads the files again and swaps them in for new handshakes; existing
//!   connections keep their session. A reload that fails (a missing file, a key that does not
//!   match) logs the reason and keeps the old certificate.
//! - The handshake and the HTTP upgrade run on tokio-rustls. After the upgrade the shard takes
//!   the socket and the `rustls::ServerConnection` apart ([`TlsState`]) and drives them
//!   synchronously on its non-blocking socket: a flush encrypts the whole batch and writes
//!   the resulting records with one vectored `write`, so "one write per client per flush"
//!   holds under TLS too.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use crate::config::TlsFiles;

/// Encrypted bytes one TLS session holds for a socket that cannot take them (beyond the
/// kernel's send buffer). Like the plaintext buffer, it fills only when a client is slow;
/// then the client is blocked and conflation takes over.
pub const BUFFER_LIMIT: usize = 64 * 1024;

/// Reads a certificate chain and key from PEM files and checks they belong together.
///
/// # Errors
/// Unreadable files, no certificate, no key, or a key that does not match the certificate.
pub fn load(files: &TlsFiles) -> Result<Arc<CertifiedKey>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("server.tls_cert {}: {e}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("server.tls_cert {}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!("server.tls_cert {}: no certificate in the file", files.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("server.tls_key {}: {e}", files.key.display()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("server.tls_key {}: {e}", files.key.display()))?;
    let ck = CertifiedKey::new(certs, signer);
    ck.keys_match().map_err(|e| format!("server.tls_key does not match server.tls_cert: {e}"))?;
    Ok(Arc::new(ck))
}

/// A certificate resolver whose certificate can be replaced while running.
#[derive(Debug)]
pub struct Reloadable {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Reloadable {
    /// Loads `files` once.
    ///
    /// # Errors
    /// As [`load`].
    pub fn new(files: TlsFiles) -> Result<Arc<Reloadable>, String> {
        let ck = load(&files)?;
        Ok(Arc::new(Reloadable { files, current: RwLock::new(ck) }))
    }

    /// Reads the files again; on success new handshakes use them.
    ///
    /// # Errors
    /// As [`load`]; the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), String> {
        let ck = load(&self.files)?;
        if let Ok(mut cur) = self.current.write() {
            *cur = ck;
        }
        Ok(())
    }

    /// The certificate file, for logs.
    pub fn cert_path(&self) -> &Path {
        &self.files.cert
    }
}

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

/// The server configuration: TLS 1.2 and 1.3, HTTP/1.1 over ALPN, certificate from `certs`.
///
/// # Errors
/// If the ring provider cannot be set up (it has no failure modes in practice).
pub fn server_config(certs: Arc<Reloadable>) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A `std::io` view of a non-blocking tokio socket (`WouldBlock` when it would wait), for
/// rustls' synchronous `read_tls`/`write_tls`.
pub(crate) struct SockIo<'a>(pub(crate) &'a TcpStream);

impl Read for SockIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for SockIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A TLS session taken over by a shard after the upgrade.
pub struct TlsState {
    conn: rustls::ServerConnection,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsState")
    }
}

impl TlsState {
    /// Wraps a session; `buffer_limit` bounds the encrypted bytes it holds for a slow socket.
    pub fn new(mut conn: rustls::ServerConnection, buffer_limit: usize) -> TlsState {
        conn.set_buffer_limit(Some(buffer_limit));
        TlsState { conn }
    }

    /// Encrypted bytes are waiting for the socket.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Writes pending records with one (vectored) write. Returns the bytes written.
    ///
    /// # Errors
    /// A socket error other than `WouldBlock`.
    pub fn write_tls(&mut self, sock: &TcpStream) -> io::Result<usize> {
        if !self.conn.wants_write() {
            return Ok(0);
        }
        match self.conn.write_tls(&mut SockIo(sock)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            r => r,
        }
    }

    /// Encrypts as much of `plain` as the session's buffer takes, then writes the records
    /// with one write. Returns the plaintext bytes taken (0 when earlier records still wait
    /// for the socket).
    ///
    /// # Errors
    /// A socket error.
    pub fn send(&mut self, sock: &TcpStream, plain: &[u8]) -> io::Result<usize> {
        // Older records first: a socket that is still full takes nothing new.
        self.write_tls(sock)?;
        if self.conn.wants_write() {
            return Ok(0);
        }
        let n = self.conn.writer().write(plain)?;
        self.write_tls(sock)?;
        Ok(n)
    }

    /// Reads what the socket has, decrypts it and appends the plaintext to `out`. Returns the
    /// plaintext bytes appended, or `Ok(0)` at the peer's EOF; `WouldBlock` when nothing came.
    ///
    /// # Errors
    /// A socket error, or a TLS protocol error (as `InvalidData`).
    pub fn recv(&mut self, sock: &TcpStream, out: &mut bytes::BytesMut, max: usize) -> io::Result<usize> {
        let got = match self.conn.read_tls(&mut SockIo(sock)) {
            Ok(n) => Some(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => return Err(e),
        };
        let state = self.conn.process_new_packets().map_err(|e| {
            // Best effort: tell the peer why (an alert), then fail.
            let _ = self.conn.write_tls(&mut SockIo(sock));
            io::Error::new(io::ErrorKind::InvalidData, e)
        })?;
        let mut taken = 0;
        let want = state.plaintext_bytes_to_read().min(max);
        if want > 0 {
            let start = out.len();
            out.resize(start + want, 0);
            let n = self.conn.reader().read(&mut out[start..])?;
            out.truncate(start + n);
            taken = n;
        }
        // Session tickets, key updates, alerts.
        self.write_tls(sock)?;
        if taken == 0 && (got == Some(0) || state.peer_has_closed()) {
            return Ok(0);
        }
        if taken == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    /// Appends plaintext the session already decrypted (bytes that came with the upgrade)
    /// to `out`, without touching the socket.
    pub fn take_buffered(&mut self, out: &mut bytes::BytesMut) {
        let Ok(state) = self.conn.process_new_packets() else { return };
        let want = state.plaintext_bytes_to_read();
        if want > 0 {
            let start = out.len();
            out.resize(start + want, 0);
            let n = self.conn.reader().read(&mut out[start..]).unwrap_or(0);
            out.truncate(start + n);
        }
    }

    /// Queues a close_notify alert and tries to send it.
    pub fn close(&mut self, sock: &TcpStream) {
        self.conn.send_close_notify();
        let _ = self.write_tls(sock);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_mismatched_files_are_refused_with_the_key_name() {
        let f = TlsFiles { cert: "/nonexistent/c.pem".into(), key: "/nonexistent/k.pem".into() };
        assert!(load(&f).unwrap_err().contains("server.tls_cert"));
        let dir = std::env::temp_dir().join(format!("tickgate-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.join("a.pem"), a.cert.pem()).unwrap();
        std::fs::write(dir.join("b.key"), b.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("a.key"), a.signing_key.serialize_pem()).unwrap();
        let bad = TlsFiles { cert: dir.join("a.pem"), key: dir.join("b.key") };
        assert!(load(&bad).unwrap_err().contains("does not match"));
        let good = TlsFiles { cert: dir.join("a.pem"), key: dir.join("a.key") };
        let r = Reloadable::new(good).unwrap();
        assert!(r.reload().is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }
}
