//! One HTTP/1.1 request to the scheduler's HTTP port (its `listen.http`), std only.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read (a listing of 100,000 peers is about 25 MB).
const MAX_BODY_BYTES: u64 = 256 << 20;

/// GET `path`: the body of a 200, or what went wrong.
pub fn get(addr: &str, path: &str) -> Result<String, String> {
    match request(addr, "GET", path, None, None)? {
        (200, body) => Ok(body),
        (status, body) => Err(refusal(addr, path, status, &body)),
    }
}

/// `method path` with an optional JSON body and `Authorization`: (status, body).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
    authorization: Option<&str>,
) -> Result<(u16, String), String> {
    let target = addr
        .to_socket_addrs()
        .map_err(|e| format!("--scheduler {addr}: not an address: {e}"))?
        .next()
        .ok_or_else(|| format!("--scheduler {addr}: resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&target, TIMEOUT).map_err(|e| {
        format!("cannot reach the scheduler at {addr}: {e} (is it running, and is this its listen.http?)")
    })?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(a) = authorization {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    let body = json.unwrap_or("");
    if json.is_some() {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .map_err(|e| format!("{addr}: sending the request: {e}"))?;
    let mut raw = Vec::new();
    stream.take(MAX_BODY_BYTES).read_to_end(&mut raw).map_err(|e| format!("{addr}: reading the answer: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("{addr}: not an HTTP answer"))?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, body.to_string()))
}

/// What a refusal says: the `error` of a JSON answer, else the body.
pub fn refusal(addr: &str, path: &str, status: u16, body: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string());
    format!("{addr}{path}: HTTP {status}: {message}")
}
