//! A plain HTTP/1.1 origin for the end-to-end suites: serves in-memory files with HEAD,
//! GET and `Range`, keeps connections alive, and counts what it sent per path (the
//! "origin served exactly one copy" checks read these counters).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Counters {
    body_bytes: AtomicU64,
    requests: AtomicU64,
}

#[derive(Default)]
struct Files {
    files: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    /// Bytes/s per path, for reads slow enough to interrupt.
    rates: Mutex<HashMap<String, u64>>,
    counters: Mutex<HashMap<String, Arc<Counters>>>,
    /// Paths answered 401 (with a `WWW-Authenticate` challenge) unless the request carries
    /// this `Authorization` value.
    auth: Mutex<HashMap<String, String>>,
}

/// The challenge a protected path answers with.
pub const CHALLENGE: &str =
    "Bearer realm=\"http://auth.invalid/token\",service=\"e2e\",scope=\"repository:e2e/private:pull\"";

/// The server runs on its own thread and runtime until dropped with the process.
pub struct Origin {
    pub addr: SocketAddr,
    files: Arc<Files>,
}

impl Origin {
    pub fn start() -> Origin {
        let files = Arc::new(Files::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let served = files.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let files = served.clone();
                    tokio::spawn(async move {
                        let _ = serve(stream, files).await;
                    });
                }
            });
        });
        let addr = rx.recv().expect("origin listening");
        Origin { addr, files }
    }

    /// Serves `data` at `path` (e.g. "/blobs/a.bin"); returns its URL.
    pub fn put(&self, path: &str, data: Arc<Vec<u8>>) -> String {
        self.files.files.lock().unwrap().insert(path.to_string(), data);
        format!("http://{}{}", self.addr, path)
    }

    /// Like `put`, but every response body of `path` goes at most `bytes_per_s`.
    pub fn put_throttled(&self, path: &str, data: Arc<Vec<u8>>, bytes_per_s: u64) -> String {
        self.files.rates.lock().unwrap().insert(path.to_string(), bytes_per_s);
        self.put(path, data)
    }

    /// Requests of `path` without `Authorization: authorization` get 401 and `CHALLENGE`.
    pub fn require_authorization(&self, path: &str, authorization: &str) {
        self.files.auth.lock().unwrap().insert(path.to_string(), authorization.to_string());
    }

    /// Body bytes sent for `path` so far (GET, ranged or not).
    pub fn bytes_served(&self, path: &str) -> u64 {
        self.counter(path).body_bytes.load(Ordering::SeqCst)
    }

    pub fn requests(&self, path: &str) -> u64 {
        self.counter(path).requests.load(Ordering::SeqCst)
    }

    fn counter(&self, path: &str) -> Arc<Counters> {
        self.files.counters.lock().unwrap().entry(path.to_string()).or_default().clone()
    }
}

async fn serve(mut stream: TcpStream, files: Arc<Files>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        // Read one request head.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 64 << 10 {
                return Ok(());
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        buf.drain(..head_end);
        let mut lines = head.lines();
        let mut first = lines.next().unwrap_or("").split_whitespace();
        let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
        // A query (a signed URL's signature) does not name another file, as on object stores.
        let path = target.split('?').next().unwrap_or("").to_string();
        let header = |name: &str| {
            head.lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        };
        let range = header("range");
        let authorization = header("authorization");
        let _ = lines;
        let file = files.files.lock().unwrap().get(&path).cloned();
        let counters = files.counters.lock().unwrap().entry(path.clone()).or_default().clone();
        counters.requests.fetch_add(1, Ordering::SeqCst);
        let required = files.auth.lock().unwrap().get(&path).cloned();
        if required.is_some() && required != authorization {
            let body = "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\"}]}";
            let h = format!(
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {CHALLENGE}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(h.as_bytes()).await?;
            if method != "HEAD" {
                stream.write_all(body.as_bytes()).await?;
            }
            continue;
        }
        let Some(file) = file else {
            stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await?;
            continue;
        };
        let len = file.len() as u64;
        let (status, start, end) = match range.as_deref().and_then(|r| parse_range(r, len)) {
            Some((a, b)) => ("206 Partial Content", a, b),
            None if range.is_some() => {
                let h = format!(
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n\r\n"
                );
                stream.write_all(h.as_bytes()).await?;
                continue;
            }
            None => ("200 OK", 0, len),
        };
        let mut h = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\n", end - start);
        if status.starts_with("206") {
            h.push_str(&format!("Content-Range: bytes {}-{}/{len}\r\n", start, end.saturating_sub(1)));
        }
        h.push_str("\r\n");
        stream.write_all(h.as_bytes()).await?;
        if method == "GET" {
            let rate = files.rates.lock().unwrap().get(&path).copied();
            let began = tokio::time::Instant::now();
            let mut sent = 0u64;
            // In slices, counting as they go, so an aborted read counts what left.
            for chunk in file[start as usize..end as usize].chunks(64 << 10) {
                if let Some(rate) = rate {
                    let due = began + std::time::Duration::from_secs_f64(sent as f64 / rate as f64);
                    tokio::time::sleep_until(due).await;
                }
                stream.write_all(chunk).await?;
                sent += chunk.len() as u64;
                counters.body_bytes.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
    }
}

/// `bytes=a-b` or `bytes=a-` within `len`: [a, b+1).
fn parse_range(v: &str, len: u64) -> Option<(u64, u64)> {
    let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
    let a: u64 = a.trim().parse().ok()?;
    let b: u64 = if b.trim().is_empty() { len.checked_sub(1)? } else { b.trim().parse::<u64>().ok()?.min(len - 1) };
    (a <= b && a < len).then_some((a, b + 1))
}
