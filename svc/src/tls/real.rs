//! The real build's TLS: rustls with ring, files re-read when they change.

use super::{Listener, LoadError, TlsSection};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// TLS over a read buffer over TCP: rustls reads the socket 4 KiB at a time, so without the
/// buffer a 4 MiB piece cost a thousand `read` calls; with it, sixteen (`READ_BUFFER_BYTES`).
pub type ServerStream = tokio_rustls::server::TlsStream<BufReader<TcpStream>>;
pub type ClientStream = tokio_rustls::client::TlsStream<BufReader<TcpStream>>;

/// Bytes read from the socket at a time under TLS (see `ServerStream`).
const READ_BUFFER_BYTES: usize = 256 << 10;

/// The files are looked at (three `stat`s) at most this often.
const RECHECK_EVERY: Duration = Duration::from_secs(1);
/// A handshake not done by then is dropped (a client that connects and sends nothing
/// holds nothing for longer).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once on one gRPC listener; more connections are closed at once.
const MAX_PENDING_HANDSHAKES: usize = 256;
/// At most one refusal line per this period; the others are counted in the next line.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(1);

/// The loaded certificates of one component; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Tls(Arc<Inner>);

struct Inner {
    section: TlsSection,
    state: Mutex<State>,
    refused: [AtomicU64; 3],
    reloads: AtomicU64,
    refusal_log: Mutex<RefusalLog>,
}

struct State {
    stamps: [FileStamp; 3],
    checked: Instant,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    unlogged: u64,
}

/// What tells a changed file: its modification time, length and inode (a Kubernetes secret
/// volume swaps a symlink, which changes the inode even within one mtime tick).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp { modified: m.modified().ok(), len: m.len(), inode: m.ino() })
}

fn stamps(s: &TlsSection) -> [Option<FileStamp>; 3] {
    [stamp(&s.cert_file), stamp(&s.key_file), stamp(&s.ca_file)]
}

/// What `current` compares with: a file missing at the look is stamped as such, so its
/// return counts as a change.
fn as_seen(stamps: [Option<FileStamp>; 3]) -> [FileStamp; 3] {
    stamps.map(|s| s.unwrap_or(FileStamp { modified: None, len: 0, inode: 0 }))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.0.section;
        write!(f, "Tls(cert {}, key {}, ca {})", s.cert_file.display(), s.key_file.display(), s.ca_file.display())
    }
}

/// Two handles are equal when they share their files' state.
impl PartialEq for Tls {
    fn eq(&self, other: &Tls) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Tls {}

fn read_certs(path: &Path, key: &'static str) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| LoadError::new(key, format!("cannot read {}: {e}", path.display())))?;
    let certs: Vec<_> = iter
        .collect::<Result<_, _>>()
        .map_err(|e| LoadError::new(key, format!("{} is not PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(LoadError::new(
            key,
            format!("{} holds no `-----BEGIN CERTIFICATE-----` block; give a PEM certificate file", path.display()),
        ));
    }
    Ok(certs)
}

/// ring's suites with AES-128-GCM first: the fastest of them where the CPU has AES
/// instructions, and as strong as this traffic needs. Both sides use this order, and a
/// rustls server follows the client's.
fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::CipherSuite;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.sort_by_key(|s| match s.suite() {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
        CipherSuite::TLS13_AES_256_GCM_SHA384 => 1,
        _ => 2,
    });
    p
}

fn build(s: &TlsSection) -> Result<(Arc<ServerConfig>, Arc<ClientConfig>), LoadError> {
    let certs = read_certs(&s.cert_file, "cert_file")?;
    let key = PrivateKeyDer::from_pem_file(&s.key_file).map_err(|e| {
        let m =
            format!("{}: {e}; give the PEM private key (PKCS#8, PKCS#1 or SEC1) of cert_file", s.key_file.display());
        LoadError::new("key_file", m)
    })?;
    let mut roots = RootCertStore::empty();
    for (i, ca) in read_certs(&s.ca_file, "ca_file")?.into_iter().enumerate() {
        roots
            .add(ca)
            .map_err(|e| LoadError::new("ca_file", format!("certificate {} of {}: {e}", i + 1, s.ca_file.display())))?;
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| LoadError::new("ca_file", format!("{}: {e}", s.ca_file.display())))?;
    let mismatch = |e: rustls::Error| {
        let m = format!(
            "{e} (with key_file {}); is the key the one of the certificate {}?",
            s.key_file.display(),
            s.cert_file.display()
        );
        LoadError::new("key_file", m)
    };
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| LoadError::new("cert_file", e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(mismatch)?;
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LoadError::new("cert_file", e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(mismatch)?;
    Ok((Arc::new(server), Arc::new(client)))
}

impl Tls {
    /// Reads and checks the three files now; the error names the key and what to fix.
    pub fn load(section: &TlsSection) -> Result<Tls, LoadError> {
        if let Some(name) = &section.server_name {
            ServerName::try_from(name.clone()).map_err(|e| {
                LoadError::new("server_name", format!("{name:?}: {e}; give a DNS name the server certificates carry"))
            })?;
        }
        let before = stamps(section);
        let (server, client) = build(section)?;
        let stamps = as_seen(before);
        Ok(Tls(Arc::new(Inner {
            section: section.clone(),
            state: Mutex::new(State { stamps, checked: Instant::now(), server, client }),
            refused: Default::default(),
            reloads: AtomicU64::new(0),
            refusal_log: Mutex::new(RefusalLog::default()),
        })))
    }

    /// Re-reads the files if they changed since the last look (at most once a second).
    /// A change that does not load keeps the certificates in use and says why.
    fn current(&self) -> MutexGuard<'_, State> {
        let mut st = lock(&self.0.state);
        if st.checked.elapsed() < RECHECK_EVERY {
            return st;
        }
        st.checked = Instant::now();
        let now = stamps(&self.0.section);
        if now.iter().zip(&st.stamps).all(|(n, old)| n.as_ref() == Some(old)) {
            return st;
        }
        match build(&self.0.section) {
            Ok((server, client)) => {
                st.server = server;
                st.client = client;
                st.stamps = as_seen(now);
                self.0.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(cert = %self.0.section.cert_file.display(), "TLS files changed: new connections use the new certificates");
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS files changed but do not load; the previous certificates stay in use")
            }
        }
        st
    }

    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current().server.clone()
    }

    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.current().client.clone()
    }

    /// The name a server's certificate must carry when this side dialed `host`.
    pub fn server_name(&self, host: &str) -> io::Result<ServerName<'static>> {
        let name = self.0.section.server_name.clone().unwrap_or_else(|| host.trim_matches(['[', ']']).to_string());
        ServerName::try_from(name.clone()).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not a name TLS can check: {e}"))
        })
    }

    /// Handshakes that `listener` refused since the start.
    pub fn refused(&self, listener: Listener) -> u64 {
        self.0.refused[listener as usize].load(Ordering::Relaxed)
    }

    /// Times the files were re-read after a change.
    pub fn reloads(&self) -> u64 {
        self.0.reloads.load(Ordering::Relaxed)
    }

    /// The server side of a handshake on an accepted connection; a refusal is logged and
    /// counted, and gives None.
    pub async fn accept(&self, listener: Listener, tcp: TcpStream, from: SocketAddr) -> Option<ServerStream> {
        let handshake =
            TlsAcceptor::from(self.server_config()).accept(BufReader::with_capacity(READ_BUFFER_BYTES, tcp));
        let reason = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no handshake within {} s", HANDSHAKE_TIMEOUT.as_secs()),
        };
        self.0.refused[listener as usize].fetch_add(1, Ordering::Relaxed);
        let mut log = lock(&self.0.refusal_log);
        if log.last.is_some_and(|t| t.elapsed() < REFUSAL_LOG_EVERY) {
            log.unlogged += 1;
        } else {
            let also = std::mem::take(&mut log.unlogged);
            log.last = Some(Instant::now());
            tracing::warn!(
                listener = listener.name(),
                peer = %from,
                reason = %reason,
                refused_since_last_line = also,
                "TLS handshake refused: the client has no certificate from this cluster's CA (tls.ca_file) or did not finish the handshake"
            );
        }
        None
    }

    /// The client side: a handshake on `tcp`, checking the server against `host` (or
    /// `server_name`). The error says what failed (e.g. an unknown issuer).
    pub async fn connect(&self, tcp: TcpStream, host: &str) -> io::Result<ClientStream> {
        let name = self.server_name(host)?;
        let handshake =
            TlsConnector::from(self.client_config()).connect(name, BufReader::with_capacity(READ_BUFFER_BYTES, tcp));
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(io::Error::new(e.kind(), format!("TLS handshake with {host}: {e}"))),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("TLS handshake with {host}: no answer within {} s", HANDSHAKE_TIMEOUT.as_secs()),
            )),
        }
    }
}

/// An accepted, handshaken connection for tonic's `serve_with_incoming`.
pub struct GrpcConn {
    stream: ServerStream,
    info: tonic::transport::server::TcpConnectInfo,
}

impl tonic::transport::server::Connected for GrpcConn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for GrpcConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for GrpcConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Accepts on `listener` and hands tonic the connections whose handshake succeeded; each
/// handshake runs on its own task, so a slow one holds up no other. Ends when tonic drops
/// the stream.
pub fn grpc_incoming(
    listener: TcpListener,
    tls: Tls,
    which: Listener,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<GrpcConn>> {
    let (tx, rx) = mpsc::channel(64);
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (tcp, remote) = match accepted {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = pending.clone().try_acquire_owned() else {
                tls.0.refused[which as usize].fetch_add(1, Ordering::Relaxed);
                continue; // dropped: too many handshakes in progress
            };
            let _ = tcp.set_nodelay(true);
            let info = tonic::transport::server::TcpConnectInfo {
                local_addr: tcp.local_addr().ok(),
                remote_addr: Some(remote),
            };
            let (tls, tx) = (tls.clone(), tx.clone());
            tokio::spawn(async move {
                if let Some(stream) = tls.accept(which, tcp, remote).await {
                    drop(permit);
                    let _ = tx.send(Ok(GrpcConn { stream, info })).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A tonic channel connector that dials TCP and then TLS (`Endpoint::connect_with_connector_lazy`).
#[derive(Clone)]
pub struct GrpcConnector {
    tls: Tls,
}

impl GrpcConnector {
    pub fn new(tls: Tls) -> GrpcConnector {
        GrpcConnector { tls }
    }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<hyper_util::rt::TokioIo<ClientStream>>> + Send>>;

impl tower_service::Service<http::Uri> for GrpcConnector {
    type Response = hyper_util::rt::TokioIo<ClientStream>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Connecting {
        let tls = self.tls.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} has no host")))?
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
            let _ = tcp.set_nodelay(true);
            let stream = tls.connect(tcp, &host).await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}
