//! A connection to the API port: TLS (the default) or plain TCP (`--insecure-http`), with what
//! its client certificate established, and the bytes read ahead to decide who serves it.
//!
//! A TLS stream cannot be peeked, so the look at a connection's first request head (is it a
//! SPDY upgrade of a pod stream? see [`crate::stream::raw`]) reads those bytes and the
//! connection hands them again to whoever reads it next.

use crate::authn::Channel;
use crate::tls::ServerTls;
use bytes::{Buf, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// What Go's HTTPS server answers a plain HTTP request with, and so upstream's.
const PLAIN_HTTP_REFUSED: &[u8] = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// The socket, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An accepted connection, after its TLS handshake.
pub struct Connection {
    io: Box<dyn Io>,
    /// Bytes read ahead, read again before the socket's.
    replay: BytesMut,
    pub channel: Channel,
}

impl Connection {
    /// Accepts `tcp`: the TLS handshake when `tls` is set (`Err` for a client that fails it or
    /// takes too long), else plain.
    pub async fn accept(tcp: TcpStream, tls: Option<&ServerTls>) -> io::Result<Connection> {
        let _ = tcp.set_nodelay(true);
        let Some(tls) = tls else {
            return Ok(Connection { io: Box::new(tcp), replay: BytesMut::new(), channel: Channel::Unsecured });
        };
        let handshake = async {
            // A TLS client starts with a handshake record (0x16); plain HTTP with a method name.
            // It is told what went wrong in Go's words, as upstream's server tells it.
            let mut first = [0u8; 1];
            if tcp.peek(&mut first).await? == 1 && first[0].is_ascii_uppercase() {
                let mut tcp = tcp;
                let _ = tcp.write_all(PLAIN_HTTP_REFUSED).await;
                let _ = tcp.shutdown().await;
                return Err(io::Error::new(io::ErrorKind::InvalidData, "plain HTTP on the HTTPS port"));
            }
            tokio_rustls::TlsAcceptor::from(tls.config.clone()).accept(tcp).await
        };
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let peer = tls.peer_auth(stream.get_ref().1.peer_certificates());
        Ok(Connection { io: Box::new(stream), replay: BytesMut::new(), channel: Channel::Tls(peer) })
    }

    /// Reads more of the connection into the bytes to replay; `Ok(0)` at its end.
    pub async fn read_ahead(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 4096];
        let n = self.io.read(&mut chunk).await?;
        self.replay.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The bytes read ahead and not yet read again.
    pub fn ahead(&self) -> &[u8] {
        &self.replay
    }
}

impl AsyncRead for Connection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_read_ahead_are_read_again_first() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /version HTTP/1.1\r\n\r\nrest").await.unwrap();
            s
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let _client = client.await.unwrap();
        let mut conn = Connection::accept(tcp, None).await.unwrap();
        assert_eq!(conn.channel, Channel::Unsecured);
        while conn.ahead().len() < 29 {
            assert!(conn.read_ahead().await.unwrap() > 0);
        }
        let mut all = vec![0u8; 29];
        conn.read_exact(&mut all).await.unwrap();
        assert_eq!(&all, b"GET /version HTTP/1.1\r\n\r\nrest");
        assert!(conn.ahead().is_empty());
    }
}
