//! Reading frames off a stream, and running blocking work (disk, hashing) off the reactor.

use super::frame::{self, Header, ProtocolError, HEADER_LEN};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A data-plane connection: plain TCP, or TLS over it (`[tls]`). Boxed so the reader and
/// writer loops are written once; the indirection is one call per 64-256 KiB.
pub(crate) trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}
pub(crate) type Stream = Box<dyn Duplex>;

/// The parent's side of an accepted connection: TLS first when `tls` is set (a refused
/// handshake is logged and counted by `tls`, and gives None).
#[cfg(not(madsim))]
pub(crate) async fn server_stream(
    tls: Option<&svc::tls::Tls>,
    tcp: tokio::net::TcpStream,
    from: std::net::SocketAddr,
) -> Option<Stream> {
    match tls {
        Some(tls) => Some(Box::new(tls.accept(svc::tls::Listener::Data, tcp, from).await?)),
        None => Some(Box::new(tcp)),
    }
}

/// Under madsim `[tls]` never loads, so `tls` is always None.
#[cfg(madsim)]
pub(crate) async fn server_stream(
    _tls: Option<&svc::tls::Tls>,
    tcp: tokio::net::TcpStream,
    _from: std::net::SocketAddr,
) -> Option<Stream> {
    Some(Box::new(tcp))
}

/// The child's side: TLS over `tcp` when `tls` is set, checking the parent's certificate.
#[cfg(not(madsim))]
pub(crate) async fn client_stream(
    tls: Option<&svc::tls::Tls>,
    tcp: tokio::net::TcpStream,
    parent: std::net::SocketAddr,
) -> io::Result<Stream> {
    match tls {
        Some(tls) => Ok(Box::new(tls.connect(tcp, &parent.ip().to_string()).await?)),
        None => Ok(Box::new(tcp)),
    }
}

#[cfg(madsim)]
pub(crate) async fn client_stream(
    _tls: Option<&svc::tls::Tls>,
    tcp: tokio::net::TcpStream,
    _parent: std::net::SocketAddr,
) -> io::Result<Stream> {
    Ok(Box::new(tcp))
}

/// Why reading a frame failed.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    Protocol(ProtocolError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Protocol(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// The next frame header; `None` when the peer closed the connection between frames.
pub async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Header>, ReadError> {
    let mut buf = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        let n = r.read(&mut buf[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(ReadError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-frame")));
        }
        filled += n;
    }
    frame::decode_header(&buf).map(Some).map_err(ReadError::Protocol)
}

/// Memory a body read takes before any of its bytes arrived: the buffer grows with what is
/// received, never from the length a frame announces (a sender announcing the largest
/// body and sending nothing would otherwise hold that much per connection).
const BODY_FIRST_BYTES: usize = 16 << 10;

/// Reads a body of `len` bytes, refusing bodies longer than `max`.
pub async fn read_body<R: AsyncRead + Unpin>(r: &mut R, len: usize, max: usize) -> Result<Vec<u8>, ReadError> {
    if len > max {
        return Err(ReadError::Protocol(ProtocolError(format!(
            "frame body of {len} bytes exceeds the limit of {max}"
        ))));
    }
    let mut body = Vec::with_capacity(len.min(BODY_FIRST_BYTES));
    (&mut *r).take(len as u64).read_to_end(&mut body).await?;
    if body.len() < len {
        return Err(ReadError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-frame")));
    }
    Ok(body)
}

/// Writes a whole frame and flushes it (under madsim a write is only sent on flush).
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

/// Runs `f` on a blocking thread (a simulation runs it inline: madsim has one thread).
pub async fn blocking<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    #[cfg(not(madsim))]
    {
        tokio::task::spawn_blocking(f).await.map_err(|e| io::Error::other(format!("blocking task failed: {e}")))
    }
    #[cfg(madsim)]
    {
        Ok(f())
    }
}
