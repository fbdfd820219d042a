//! The wire format (pure encode/decode; the async reading lives in `io`).
//!
//! Connection start: each side sends `HELLO` = `b"P2PD"` + version (u16 BE) + 2 zero bytes
//! and checks the other's.
//!
//! Then frames, all integers big-endian:
//!
//! ```text
//! frame    = len:u32 kind:u8 request_id:u32 body        len = 5 + body length
//! requests (child -> parent)
//!   0x01 SyncPieces  task:[32] wait_ms:u32 known_count:u32 known_bitmap
//!   0x02 GetPiece    task:[32] piece:u32
//!   0x03 Grant       task:[32] host_id_len:u16 host_id (UTF-8) expires_unix_s:u64 mac:[32]
//! replies (parent -> child), with the request's id, in any order
//!   0x81 Pieces      content_bytes:u64 piece_bytes:u64 piece_count:u32 flags:u8
//!                    uploads_active:u32 finished_bitmap n:u32 n x (piece:u32 crc32:u32)
//!   0x82 Piece       piece:u32 crc32:u32 data (the rest of the frame)
//!   0xE0 Error       code:u8 message_len:u16 message (UTF-8)
//! ```
//!
//! Grant carries the scheduler's permission for the child's host to read the task
//! (`svc::grant`): it has no reply. A parent with a grant key answers SyncPieces and
//! GetPiece for a task only on a connection that presented a grant for it that checks out
//! and has not expired (else `Error` code 7, Unauthorized, saying why); a parent without a
//! key ignores grants. A child presents its grant before its first request for the task on
//! each connection, and again when it holds a fresher one. Version 3 is kept: peers that are
//! sent no grant send no Grant frame, so a cluster upgrades before it enables keys.
//!
//! A bitmap of `count` pieces is `ceil(count / 8)` bytes, piece `i` at bit `i % 8` of byte
//! `i / 8`. `known_count` is 0 when the child knows nothing yet, else the task's piece count.
//! `flags` bit 0: the parent has completed the task. `uploads_active`: piece uploads the
//! parent's host was running when it replied (a child may then ask it for more than its
//! stripes: `core::plan`).

use crate::storage::{PieceDigest, MAX_PIECE_BYTES, MAX_PIECE_COUNT};
use crate::task_id::TaskId;
use sched::core::PieceSet;
use svc::grant::{Grant, MAC_BYTES, MAX_HOST_ID_BYTES};

/// 3: Pieces replies carry the parent's uploads in progress (2: CRC32 piece digests,
/// 1: sha256).
pub const VERSION: u16 = 3;
pub const HELLO: [u8; 8] = [b'P', b'2', b'P', b'D', (VERSION >> 8) as u8, VERSION as u8, 0, 0];
/// len + kind + request id.
pub const HEADER_LEN: usize = 9;
/// piece + crc32 at the start of a Piece body.
pub const PIECE_PREFIX_LEN: usize = 8;
/// The largest request a parent reads: a SyncPieces with the biggest bitmap.
pub const MAX_REQUEST_BODY: usize = 32 + 8 + MAX_PIECE_COUNT as usize / 8;
/// The largest reply a child reads: a Piece reply of the largest piece (a Pieces reply is
/// smaller: its bitmap is at most 2 MiB and it carries at most `MAX_DIGESTS_PER_REPLY` digests).
pub const MAX_REPLY_BODY: usize = PIECE_PREFIX_LEN + MAX_PIECE_BYTES as usize;
/// Digests per Pieces reply; a child with more to learn asks again.
pub const MAX_DIGESTS_PER_REPLY: usize = 64 * 1024;

pub const KIND_SYNC_PIECES: u8 = 0x01;
pub const KIND_GET_PIECE: u8 = 0x02;
pub const KIND_GRANT: u8 = 0x03;
pub const KIND_PIECES: u8 = 0x81;
pub const KIND_PIECE: u8 = 0x82;
pub const KIND_ERROR: u8 = 0xE0;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("data-plane protocol: {0}")]
pub struct ProtocolError(pub String);

fn bad(reason: impl Into<String>) -> ProtocolError {
    ProtocolError(reason.into())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The parent's piece map; with `wait_ms` > 0 the parent holds the reply until its
    /// finished pieces differ from `known` (long poll) or the wait ends.
    SyncPieces {
        task: TaskId,
        wait_ms: u32,
        known: Option<PieceSet>,
    },
    GetPiece {
        task: TaskId,
        piece: u32,
    },
    /// Opens `grant.task` on this connection (no reply).
    Grant(Grant),
}

impl Request {
    /// The task a request reads; none for a Grant.
    pub fn reads_task(&self) -> Option<&TaskId> {
        match self {
            Request::SyncPieces { task, .. } | Request::GetPiece { task, .. } => Some(task),
            Request::Grant(_) => None,
        }
    }
}

/// A parent's answer to SyncPieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiecesReply {
    pub content_bytes: u64,
    pub piece_bytes: u64,
    pub piece_count: u32,
    pub completed: bool,
    /// Piece uploads the parent's host had in progress.
    pub uploads_active: u32,
    pub finished: PieceSet,
    /// Digests of finished pieces the child did not list as known, ascending.
    pub digests: Vec<(u32, PieceDigest)>,
}

/// Why a parent refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    TaskNotFound,
    PieceNotAvailable,
    /// No upload slot came free in time: try another parent.
    Busy,
    /// The parent found its copy corrupt and dropped it.
    CorruptPiece,
    BadRequest,
    Internal,
    /// The task needs a valid grant on this connection (none, expired, or it did not check
    /// out); the message says which.
    Unauthorized,
}

impl ErrorCode {
    fn to_wire(self) -> u8 {
        match self {
            ErrorCode::TaskNotFound => 1,
            ErrorCode::PieceNotAvailable => 2,
            ErrorCode::Busy => 3,
            ErrorCode::CorruptPiece => 4,
            ErrorCode::BadRequest => 5,
            ErrorCode::Internal => 6,
            ErrorCode::Unauthorized => 7,
        }
    }
    fn from_wire(code: u8) -> Result<ErrorCode, ProtocolError> {
        Ok(match code {
            1 => ErrorCode::TaskNotFound,
            2 => ErrorCode::PieceNotAvailable,
            3 => ErrorCode::Busy,
            4 => ErrorCode::CorruptPiece,
            5 => ErrorCode::BadRequest,
            6 => ErrorCode::Internal,
            7 => ErrorCode::Unauthorized,
            other => return Err(bad(format!("unknown error code {other}"))),
        })
    }
}

pub fn check_hello(hello: &[u8; 8]) -> Result<(), ProtocolError> {
    if hello[..4] != HELLO[..4] {
        return Err(bad(format!("not a p2pimg data-plane peer (greeting {:02x?})", &hello[..4])));
    }
    let version = u16::from_be_bytes([hello[4], hello[5]]);
    if version != VERSION {
        return Err(bad(format!("peer speaks version {version}, this peer version {VERSION}")));
    }
    Ok(())
}

/// The frame header; `body_len` is the body that follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub request_id: u32,
    pub body_len: usize,
}

pub fn encode_header(kind: u8, request_id: u32, body_len: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&((body_len + 5) as u32).to_be_bytes());
    h[4] = kind;
    h[5..].copy_from_slice(&request_id.to_be_bytes());
    h
}

pub fn decode_header(h: &[u8; HEADER_LEN]) -> Result<Header, ProtocolError> {
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    if len < 5 {
        return Err(bad(format!("frame length {len} is shorter than its header")));
    }
    Ok(Header { kind: h[4], request_id: u32::from_be_bytes([h[5], h[6], h[7], h[8]]), body_len: len - 5 })
}

fn frame(kind: u8, request_id: u32, body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&encode_header(kind, request_id, body.len()));
    out.extend_from_slice(&body);
    out
}

pub fn encode_request(request_id: u32, request: &Request) -> Vec<u8> {
    let mut body = Vec::new();
    match request {
        Request::SyncPieces { task, wait_ms, known } => {
            body.extend_from_slice(task.as_bytes());
            body.extend_from_slice(&wait_ms.to_be_bytes());
            match known {
                Some(set) => {
                    body.extend_from_slice(&set.len().to_be_bytes());
                    body.extend_from_slice(&encode_bitmap(set));
                }
                None => body.extend_from_slice(&0u32.to_be_bytes()),
            }
            frame(KIND_SYNC_PIECES, request_id, body)
        }
        Request::GetPiece { task, piece } => {
            body.extend_from_slice(task.as_bytes());
            body.extend_from_slice(&piece.to_be_bytes());
            frame(KIND_GET_PIECE, request_id, body)
        }
        Request::Grant(grant) => {
            // A longer host id is never minted (the scheduler refuses it); cut so the
            // frame stays decodable, and the MAC then fails at the parent.
            let host = &grant.host_id.as_bytes()[..grant.host_id.len().min(MAX_HOST_ID_BYTES)];
            body.extend_from_slice(&grant.task);
            body.extend_from_slice(&(host.len() as u16).to_be_bytes());
            body.extend_from_slice(host);
            body.extend_from_slice(&grant.expires_unix_s.to_be_bytes());
            body.extend_from_slice(&grant.mac);
            frame(KIND_GRANT, request_id, body)
        }
    }
}

pub fn decode_request(kind: u8, body: &[u8]) -> Result<Request, ProtocolError> {
    let mut r = Reader::new(body);
    let request = match kind {
        KIND_SYNC_PIECES => {
            let task = TaskId::from_bytes(r.array()?);
            let wait_ms = r.u32()?;
            let known_count = r.u32()?;
            let known = match known_count {
                0 => None,
                n if n > MAX_PIECE_COUNT => return Err(bad(format!("known bitmap of {n} pieces is over the limit"))),
                n => Some(decode_bitmap(n, r.bytes((n as usize).div_ceil(8))?)),
            };
            Request::SyncPieces { task, wait_ms, known }
        }
        KIND_GET_PIECE => Request::GetPiece { task: TaskId::from_bytes(r.array()?), piece: r.u32()? },
        KIND_GRANT => {
            let task = r.array()?;
            let host_len = r.u16()? as usize;
            if host_len > MAX_HOST_ID_BYTES {
                return Err(bad(format!("grant host id of {host_len} bytes is over the limit of {MAX_HOST_ID_BYTES}")));
            }
            let host_id =
                String::from_utf8(r.bytes(host_len)?.to_vec()).map_err(|_| bad("grant host id is not UTF-8"))?;
            let expires_unix_s = r.u64()?;
            let mac: [u8; MAC_BYTES] = r.array()?;
            Request::Grant(Grant { task, host_id, expires_unix_s, mac })
        }
        other => return Err(bad(format!("unknown request kind 0x{other:02x}"))),
    };
    r.finish()?;
    Ok(request)
}

pub fn encode_pieces(request_id: u32, reply: &PiecesReply) -> Vec<u8> {
    let bitmap = encode_bitmap(&reply.finished);
    let mut body = Vec::with_capacity(29 + bitmap.len() + 4 + reply.digests.len() * 8);
    body.extend_from_slice(&reply.content_bytes.to_be_bytes());
    body.extend_from_slice(&reply.piece_bytes.to_be_bytes());
    body.extend_from_slice(&reply.piece_count.to_be_bytes());
    body.push(reply.completed as u8);
    body.extend_from_slice(&reply.uploads_active.to_be_bytes());
    body.extend_from_slice(&bitmap);
    body.extend_from_slice(&(reply.digests.len() as u32).to_be_bytes());
    for (piece, digest) in &reply.digests {
        body.extend_from_slice(&piece.to_be_bytes());
        body.extend_from_slice(&digest.value().to_be_bytes());
    }
    frame(KIND_PIECES, request_id, body)
}

/// Decodes and checks a Pieces body: lengths agree, digests name finished pieces in order.
pub fn decode_pieces(body: &[u8]) -> Result<PiecesReply, ProtocolError> {
    let mut r = Reader::new(body);
    let content_bytes = r.u64()?;
    let piece_bytes = r.u64()?;
    let piece_count = r.u32()?;
    if piece_bytes == 0 || piece_bytes > MAX_PIECE_BYTES {
        return Err(bad(format!("piece length {piece_bytes} is not in 1..={MAX_PIECE_BYTES}")));
    }
    if content_bytes.div_ceil(piece_bytes) != piece_count as u64 || piece_count > MAX_PIECE_COUNT {
        return Err(bad(format!(
            "{piece_count} pieces do not fit content length {content_bytes} and piece length {piece_bytes}"
        )));
    }
    let completed = r.u8()? & 1 == 1;
    let uploads_active = r.u32()?;
    let finished = decode_bitmap(piece_count, r.bytes((piece_count as usize).div_ceil(8))?);
    let n = r.u32()? as usize;
    if n > finished.count() as usize || n > MAX_DIGESTS_PER_REPLY {
        return Err(bad(format!("{n} digests for {} finished pieces", finished.count())));
    }
    let mut digests = Vec::with_capacity(n);
    for _ in 0..n {
        let piece = r.u32()?;
        let digest = PieceDigest::from_u32(r.u32()?);
        if !finished.contains(piece) || digests.last().is_some_and(|&(prev, _)| prev >= piece) {
            return Err(bad(format!("digest for piece {piece}, which is unfinished or out of order")));
        }
        digests.push((piece, digest));
    }
    r.finish()?;
    if completed && !finished.is_full() {
        return Err(bad("task marked completed with unfinished pieces"));
    }
    Ok(PiecesReply { content_bytes, piece_bytes, piece_count, completed, uploads_active, finished, digests })
}

/// The header and prefix of a Piece reply; the data follows as is.
pub fn encode_piece_head(request_id: u32, piece: u32, digest: &PieceDigest, data_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + PIECE_PREFIX_LEN);
    out.extend_from_slice(&encode_header(KIND_PIECE, request_id, PIECE_PREFIX_LEN + data_len));
    out.extend_from_slice(&piece.to_be_bytes());
    out.extend_from_slice(&digest.value().to_be_bytes());
    out
}

pub fn decode_piece_prefix(prefix: &[u8; PIECE_PREFIX_LEN]) -> (u32, PieceDigest) {
    let piece = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let digest = u32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
    (piece, PieceDigest::from_u32(digest))
}

pub fn encode_error(request_id: u32, code: ErrorCode, message: &str) -> Vec<u8> {
    let mut cut = message.len().min(1024);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let message = &message[..cut];
    let mut body = Vec::with_capacity(3 + message.len());
    body.push(code.to_wire());
    body.extend_from_slice(&(message.len() as u16).to_be_bytes());
    body.extend_from_slice(message.as_bytes());
    frame(KIND_ERROR, request_id, body)
}

pub fn decode_error(body: &[u8]) -> Result<(ErrorCode, String), ProtocolError> {
    let mut r = Reader::new(body);
    let code = ErrorCode::from_wire(r.u8()?)?;
    let len = r.u16()? as usize;
    let message = String::from_utf8_lossy(r.bytes(len)?).into_owned();
    r.finish()?;
    Ok((code, message))
}

pub fn encode_bitmap(set: &PieceSet) -> Vec<u8> {
    let len = (set.len() as usize).div_ceil(8);
    let mut out: Vec<u8> = set.words().iter().flat_map(|w| w.to_le_bytes()).collect();
    out.truncate(len);
    out
}

/// Bits past `count` are ignored.
pub fn decode_bitmap(count: u32, bytes: &[u8]) -> PieceSet {
    let mut set = PieceSet::new(count);
    for (i, &byte) in bytes.iter().enumerate() {
        let mut bits = byte;
        while bits != 0 {
            let piece = i as u32 * 8 + bits.trailing_zeros();
            bits &= bits - 1;
            if piece < count {
                set.insert(piece);
            }
        }
    }
    set
}

/// A bounds-checked cursor over a body.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(body: &'a [u8]) -> Self {
        Reader { rest: body }
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.rest.len() < n {
            return Err(bad(format!("frame body ends {} bytes early", n - self.rest.len())));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, ProtocolError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn finish(&self) -> Result<(), ProtocolError> {
        if !self.rest.is_empty() {
            return Err(bad(format!("{} unexpected bytes at the end of a frame", self.rest.len())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(count: u32, pieces: &[u32]) -> PieceSet {
        let mut s = PieceSet::new(count);
        pieces.iter().for_each(|&p| {
            s.insert(p);
        });
        s
    }

    fn body(frame: &[u8]) -> (Header, &[u8]) {
        let h = decode_header(frame[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!(h.body_len, frame.len() - HEADER_LEN);
        (h, &frame[HEADER_LEN..])
    }

    #[test]
    fn requests_round_trip() {
        let task = TaskId::from_bytes([3; 32]);
        for request in [
            Request::SyncPieces { task, wait_ms: 500, known: Some(set(70, &[0, 9, 69])) },
            Request::SyncPieces { task, wait_ms: 0, known: None },
            Request::GetPiece { task, piece: 12 },
        ] {
            let bytes = encode_request(77, &request);
            let (h, b) = body(&bytes);
            assert_eq!(h.request_id, 77);
            assert_eq!(decode_request(h.kind, b).unwrap(), request);
        }
    }

    fn grant() -> Grant {
        Grant { task: [5; 32], host_id: "node-7".into(), expires_unix_s: 1_800_000_000, mac: [0xab; MAC_BYTES] }
    }

    #[test]
    fn grant_round_trips_and_bad_ones_are_refused() {
        let bytes = encode_request(9, &Request::Grant(grant()));
        let (h, b) = body(&bytes);
        assert_eq!((h.kind, h.request_id), (KIND_GRANT, 9));
        assert_eq!(b.len(), 32 + 2 + 6 + 8 + 32);
        assert_eq!(decode_request(h.kind, b).unwrap(), Request::Grant(grant()));
        assert_eq!(Request::Grant(grant()).reads_task(), None);
        // Truncated anywhere: an error, not a panic.
        for cut in 0..b.len() {
            assert!(decode_request(KIND_GRANT, &b[..cut]).unwrap_err().0.contains("early"), "cut at {cut}");
        }
        let mut long = b.to_vec();
        long.push(0);
        assert!(decode_request(KIND_GRANT, &long).unwrap_err().0.contains("unexpected bytes"));
        // A host id over the limit, by its length field.
        let mut oversize = b.to_vec();
        oversize[32..34].copy_from_slice(&(MAX_HOST_ID_BYTES as u16 + 1).to_be_bytes());
        assert!(decode_request(KIND_GRANT, &oversize).unwrap_err().0.contains("over the limit"));
        let mut not_utf8 = b.to_vec();
        not_utf8[34] = 0xff;
        assert!(decode_request(KIND_GRANT, &not_utf8).unwrap_err().0.contains("UTF-8"));
        // The longest host id fits in a request a parent reads.
        let longest = Grant { host_id: "h".repeat(MAX_HOST_ID_BYTES), ..grant() };
        let bytes = encode_request(1, &Request::Grant(longest.clone()));
        assert!(bytes.len() - HEADER_LEN <= MAX_REQUEST_BODY);
        assert_eq!(decode_request(KIND_GRANT, &bytes[HEADER_LEN..]).unwrap(), Request::Grant(longest));
        let e = encode_error(4, ErrorCode::Unauthorized, "task x: no grant");
        assert_eq!(decode_error(&e[HEADER_LEN..]).unwrap(), (ErrorCode::Unauthorized, "task x: no grant".into()));
    }

    #[test]
    fn replies_round_trip() {
        let reply = PiecesReply {
            content_bytes: 10,
            piece_bytes: 4,
            piece_count: 3,
            completed: false,
            uploads_active: 5,
            finished: set(3, &[0, 2]),
            digests: vec![(0, PieceDigest::of(b"a")), (2, PieceDigest::of(b"c"))],
        };
        let bytes = encode_pieces(1, &reply);
        let (h, b) = body(&bytes);
        assert_eq!(h.kind, KIND_PIECES);
        assert_eq!(decode_pieces(b).unwrap(), reply);

        let bytes = encode_error(2, ErrorCode::Busy, "no slot");
        let (h, b) = body(&bytes);
        assert_eq!((h.kind, decode_error(b).unwrap()), (KIND_ERROR, (ErrorCode::Busy, "no slot".into())));

        let d = PieceDigest::of(b"xyz");
        let head = encode_piece_head(3, 9, &d, 3);
        let (h, _) = (decode_header(head[..HEADER_LEN].try_into().unwrap()).unwrap(), ());
        assert_eq!((h.kind, h.body_len), (KIND_PIECE, PIECE_PREFIX_LEN + 3));
        assert_eq!(decode_piece_prefix(head[HEADER_LEN..].try_into().unwrap()), (9, d));
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        assert!(decode_header(&[0, 0, 0, 2, 1, 0, 0, 0, 0]).is_err());
        assert!(decode_request(0x7f, &[]).unwrap_err().0.contains("unknown request kind"));
        assert!(decode_request(KIND_GET_PIECE, &[0; 10]).unwrap_err().0.contains("early"));
        assert!(decode_request(KIND_GET_PIECE, &[0; 37]).unwrap_err().0.contains("unexpected bytes"));
        let mut huge = vec![0u8; 40];
        huge[36..40].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_request(KIND_SYNC_PIECES, &huge).unwrap_err().0.contains("over the limit"));
        // A Pieces reply whose counts disagree, or lists a digest for an unfinished piece.
        let mut reply = PiecesReply {
            content_bytes: 10,
            piece_bytes: 4,
            piece_count: 3,
            completed: false,
            uploads_active: 0,
            finished: set(3, &[0]),
            digests: vec![(1, PieceDigest::of(b"b"))],
        };
        let bytes = encode_pieces(1, &reply);
        assert!(decode_pieces(&bytes[HEADER_LEN..]).unwrap_err().0.contains("unfinished"));
        reply.piece_count = 4;
        reply.digests.clear();
        let bytes = encode_pieces(1, &reply);
        assert!(decode_pieces(&bytes[HEADER_LEN..]).is_err());
        assert!(decode_error(&[42, 0, 0]).unwrap_err().0.contains("unknown error code"));
        assert!(check_hello(b"HTTP/1.1").is_err());
        assert!(check_hello(&[b'P', b'2', b'P', b'D', 0, 9, 0, 0]).unwrap_err().0.contains("version 9"));
        check_hello(&HELLO).unwrap();
    }

    #[test]
    fn bitmaps_ignore_bits_past_the_count() {
        let s = decode_bitmap(10, &[0xff, 0xff]);
        assert_eq!(s.count(), 10);
        assert_eq!(encode_bitmap(&s), vec![0xff, 0x03]);
        assert_eq!(encode_bitmap(&PieceSet::new(0)), Vec::<u8>::new());
    }
}
