//! The simulated origin: a node serving blobs over madsim's TCP with a tiny ranged protocol,
//! faults injected on request (5xx, 429, connections reset mid-body, throttling), and a
//! client implementing `peer::origin::Origin`, which the daemons use instead of HTTP.
//!
//! Protocol (one request per connection): the client sends `HEAD <path>\n` or
//! `GET <path> <start> <end>\n` (end exclusive); the origin answers `<status> <length>\n`
//! and, for a 206, exactly `end - start` bytes.

use bytes::Bytes;
use peer::dataplane::{RateLimit, TokenBucket};
use peer::origin::{BodyChunks, ContentInfo, Origin, OriginBody, OriginError, OriginFuture, OriginRequest};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Bytes per write of a response body (and per token-bucket charge).
const CHUNK_BYTES: usize = 256 << 10;

/// Faults the origin injects, per request (probabilities in [0, 1]).
#[derive(Debug, Clone, Default)]
pub struct OriginFaults {
    /// Answer 503.
    pub p_server_error: f64,
    /// Answer 429.
    pub p_throttled: f64,
    /// Close the connection after a random part of the body.
    pub p_reset: f64,
}

/// What the origin served, per blob path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Body bytes written (every response, cut ones included).
    pub bytes_sent: u64,
    /// Body bytes of responses the origin cut on purpose (injected resets).
    pub bytes_cut: u64,
    /// Body bytes written per client address.
    pub bytes_by_client: BTreeMap<IpAddr, u64>,
    pub requests: u64,
    pub injected: u64,
}

/// The origin's content, faults and counters. Shared by the test (which changes faults and
/// reads counters) and the origin node (which serves).
pub struct OriginState {
    blobs: BTreeMap<String, Arc<Vec<u8>>>,
    faults: Mutex<OriginFaults>,
    egress: Mutex<Option<Arc<TokenBucket>>>,
    traffic: Mutex<BTreeMap<String, Traffic>>,
}

impl OriginState {
    pub fn new(blobs: BTreeMap<String, Arc<Vec<u8>>>) -> Arc<OriginState> {
        Arc::new(OriginState {
            blobs,
            faults: Mutex::new(OriginFaults::default()),
            egress: Mutex::new(None),
            traffic: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn set_faults(&self, faults: OriginFaults) {
        *self.faults.lock().unwrap() = faults;
    }

    /// The origin's egress capacity (one token bucket for all connections); None: unlimited.
    pub fn set_egress(&self, limit: Option<RateLimit>) {
        let bucket = limit.map(|l| Arc::new(TokenBucket::new(l, "origin egress").expect("valid origin rate")));
        *self.egress.lock().unwrap() = bucket;
    }

    pub fn traffic(&self, path: &str) -> Traffic {
        self.traffic.lock().unwrap().get(path).cloned().unwrap_or_default()
    }

    fn count(&self, path: &str, f: impl FnOnce(&mut Traffic)) {
        f(self.traffic.lock().unwrap().entry(path.to_string()).or_default());
    }

    /// Serves on `addr` until the node is killed.
    pub async fn serve(self: Arc<Self>, addr: SocketAddr) {
        let listener = TcpListener::bind(addr).await.expect("origin binds its port");
        loop {
            let Ok((stream, peer)) = listener.accept().await else { continue };
            let me = self.clone();
            tokio::spawn(async move {
                let _ = me.answer(stream, peer.ip()).await;
            });
        }
    }

    async fn answer(&self, stream: TcpStream, client: IpAddr) -> std::io::Result<()> {
        let mut stream = BufReader::new(stream);
        let mut line = String::new();
        stream.read_line(&mut line).await?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let (path, range) = match words.as_slice() {
            ["HEAD", path] => (path.to_string(), None),
            ["GET", path, start, end] => match (start.parse::<u64>(), end.parse::<u64>()) {
                (Ok(s), Ok(e)) if s < e => (path.to_string(), Some(s..e)),
                _ => return reply(&mut stream, 400, 0).await,
            },
            _ => return reply(&mut stream, 400, 0).await,
        };
        self.count(&path, |t| t.requests += 1);
        let Some(blob) = self.blobs.get(&path).cloned() else { return reply(&mut stream, 404, 0).await };
        let Some(range) = range else { return reply(&mut stream, 200, blob.len() as u64).await };
        if range.end > blob.len() as u64 {
            return reply(&mut stream, 416, 0).await;
        }
        let faults = self.faults.lock().unwrap().clone();
        let draw: f64 = madsim::rand::random();
        if draw < faults.p_server_error {
            self.count(&path, |t| t.injected += 1);
            return reply(&mut stream, 503, 0).await;
        }
        if draw < faults.p_server_error + faults.p_throttled {
            self.count(&path, |t| t.injected += 1);
            return reply(&mut stream, 429, 0).await;
        }
        let len = range.end - range.start;
        let cut_at = (madsim::rand::random::<f64>() < faults.p_reset).then(|| madsim::rand::random::<u64>() % len);
        reply(&mut stream, 206, len).await?;
        let mut at = range.start;
        while at < range.end {
            let n = (range.end - at).min(CHUNK_BYTES as u64);
            let n = match cut_at {
                Some(cut) if at - range.start + n > cut => cut - (at - range.start),
                _ => n,
            };
            if n == 0 {
                break;
            }
            let bucket = self.egress.lock().unwrap().clone();
            if let Some(b) = bucket {
                b.take(n).await;
            }
            let chunk = &blob[at as usize..(at + n) as usize];
            stream.get_mut().write_all(chunk).await?;
            stream.get_mut().flush().await?;
            self.count(&path, |t| {
                t.bytes_sent += n;
                *t.bytes_by_client.entry(client).or_default() += n;
                if cut_at.is_some() {
                    t.bytes_cut += n;
                }
            });
            at += n;
        }
        if cut_at.is_some() {
            self.count(&path, |t| t.injected += 1);
        }
        Ok(())
    }
}

async fn reply(stream: &mut BufReader<TcpStream>, status: u16, len: u64) -> std::io::Result<()> {
    stream.get_mut().write_all(format!("{status} {len}\n").as_bytes()).await?;
    stream.get_mut().flush().await
}

/// The daemon's side: `Origin` over the protocol above. URLs are `http://<any host>/<path>`;
/// every request goes to `addr`.
pub struct SimOriginClient {
    pub addr: SocketAddr,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

impl SimOriginClient {
    async fn request(&self, url: &str, line: String) -> Result<(u16, u64, BufReader<TcpStream>), OriginError> {
        let unreachable = |reason: String| OriginError::Unreachable { url: url.to_string(), reason };
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| unreachable("connect timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let mut stream = BufReader::new(stream);
        let io = |e: std::io::Error| unreachable(e.to_string());
        stream.get_mut().write_all(line.as_bytes()).await.map_err(io)?;
        stream.get_mut().flush().await.map_err(io)?;
        let mut head = String::new();
        let read = tokio::time::timeout(self.read_timeout, stream.read_line(&mut head)).await;
        match read {
            Err(_) => {
                return Err(OriginError::Timeout {
                    url: url.to_string(),
                    after_ms: self.read_timeout.as_millis() as u64,
                })
            }
            Ok(Err(e)) => return Err(io(e)),
            Ok(Ok(0)) => return Err(unreachable("connection closed before the status".into())),
            Ok(Ok(_)) => {}
        }
        let mut words = head.split_whitespace();
        let status = words.next().and_then(|w| w.parse().ok());
        let len = words.next().and_then(|w| w.parse().ok());
        match (status, len) {
            (Some(s), Some(l)) => Ok((s, l, stream)),
            _ => Err(OriginError::Other { url: url.to_string(), reason: format!("bad status line {head:?}") }),
        }
    }
}

fn path_of(url: &str) -> Result<String, OriginError> {
    let parsed =
        url::Url::parse(url).map_err(|e| OriginError::InvalidUrl { url: url.to_string(), reason: e.to_string() })?;
    Ok(parsed.path().to_string())
}

impl Origin for SimOriginClient {
    fn stat<'a>(&'a self, request: &'a OriginRequest) -> OriginFuture<'a, ContentInfo> {
        Box::pin(async move {
            let path = path_of(&request.url)?;
            let (status, len, _) = self.request(&request.url, format!("HEAD {path}\n")).await?;
            if status != 200 {
                return Err(OriginError::from_status(&request.url, status));
            }
            Ok(ContentInfo { content_bytes: len })
        })
    }

    fn open_range<'a>(&'a self, request: &'a OriginRequest, range: Range<u64>) -> OriginFuture<'a, OriginBody> {
        Box::pin(async move {
            let path = path_of(&request.url)?;
            let line = format!("GET {path} {} {}\n", range.start, range.end);
            let (status, len, stream) = self.request(&request.url, line).await?;
            if status != 206 {
                return Err(OriginError::from_status(&request.url, status));
            }
            let chunks = Chunks { stream, left: len, read_timeout: self.read_timeout, url: request.url.clone() };
            Ok(OriginBody::new(request.url.clone(), range.end - range.start, Box::new(chunks)))
        })
    }
}

struct Chunks {
    stream: BufReader<TcpStream>,
    left: u64,
    read_timeout: Duration,
    url: String,
}

impl BodyChunks for Chunks {
    fn next_chunk(&mut self) -> OriginFuture<'_, Option<Bytes>> {
        Box::pin(async move {
            if self.left == 0 {
                return Ok(None);
            }
            let mut buf = vec![0u8; (self.left as usize).min(CHUNK_BYTES)];
            let n = match tokio::time::timeout(self.read_timeout, self.stream.read(&mut buf)).await {
                Err(_) => {
                    return Err(OriginError::Timeout {
                        url: self.url.clone(),
                        after_ms: self.read_timeout.as_millis() as u64,
                    })
                }
                Ok(Err(e)) => return Err(OriginError::Unreachable { url: self.url.clone(), reason: e.to_string() }),
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            self.left -= n as u64;
            Ok(Some(Bytes::from(buf)))
        })
    }
}
