//! Data-plane frames as a peer reads them from a socket: the greeting, then frames (header,
//! body) of every kind, requests (what a parent reads) and replies (what a child reads).
//! A frame that decodes re-encodes to one that decodes to the same value, and respects the
//! limits the reader allocates by.
#![no_main]
use libfuzzer_sys::fuzz_target;
use peer::dataplane::frame::{self, Request, HEADER_LEN, PIECE_PREFIX_LEN};

fuzz_target!(|data: &[u8]| {
    if let Some(hello) = data.first_chunk::<8>() {
        let _ = frame::check_hello(hello);
    }
    let mut rest = data;
    while let Some(head) = rest.first_chunk::<HEADER_LEN>() {
        rest = &rest[HEADER_LEN..];
        let Ok(h) = frame::decode_header(head) else { return };
        assert_eq!(&frame::encode_header(h.kind, h.request_id, h.body_len), head, "header round-trips");
        // The reader refuses a longer body before reading it; here the input ends it.
        let body = &rest[..h.body_len.min(rest.len())];
        rest = &rest[body.len()..];
        body_of(h.kind, h.request_id, body);
    }
});

fn body_of(kind: u8, id: u32, body: &[u8]) {
    match kind {
        frame::KIND_SYNC_PIECES | frame::KIND_GET_PIECE | frame::KIND_GRANT => {
            let Ok(request) = frame::decode_request(kind, body) else { return };
            assert!(body.len() <= frame::MAX_REQUEST_BODY, "a request of {} bytes decoded", body.len());
            if let Request::SyncPieces { known: Some(known), .. } = &request {
                assert!(known.len() > 0, "an empty known bitmap is sent as none");
            }
            let wire = frame::encode_request(id, &request);
            let h = frame::decode_header(wire.first_chunk().expect("a header")).expect("own header decodes");
            assert_eq!((h.kind, h.request_id, h.body_len), (kind, id, wire.len() - HEADER_LEN));
            let again = frame::decode_request(kind, &wire[HEADER_LEN..]).expect("re-encoded request decodes");
            assert_eq!(again, request, "request round-trips");
        }
        frame::KIND_PIECES => {
            let Ok(reply) = frame::decode_pieces(body) else { return };
            assert!(reply.digests.len() <= frame::MAX_DIGESTS_PER_REPLY);
            assert!(reply.digests.len() <= reply.finished.count() as usize);
            assert_eq!(reply.finished.len(), reply.piece_count);
            assert!(reply.digests.windows(2).all(|w| w[0].0 < w[1].0), "digests ascending");
            let wire = frame::encode_pieces(id, &reply);
            let again = frame::decode_pieces(&wire[HEADER_LEN..]).expect("re-encoded Pieces decodes");
            assert_eq!(again, reply, "Pieces round-trips");
        }
        frame::KIND_PIECE => {
            let Some(prefix) = body.first_chunk::<PIECE_PREFIX_LEN>() else { return };
            let (piece, digest) = frame::decode_piece_prefix(prefix);
            let head = frame::encode_piece_head(id, piece, &digest, body.len() - PIECE_PREFIX_LEN);
            assert_eq!(&head[HEADER_LEN..], prefix, "Piece prefix round-trips");
        }
        frame::KIND_ERROR => {
            let Ok((code, message)) = frame::decode_error(body) else { return };
            let wire = frame::encode_error(id, code, &message);
            let (code2, message2) = frame::decode_error(&wire[HEADER_LEN..]).expect("re-encoded Error decodes");
            assert_eq!(code2, code);
            // The sender cuts messages at 1 KiB on a character boundary.
            assert!(message.starts_with(&message2) && message2.len() <= 1024, "Error message round-trips");
            if message.len() <= 1024 {
                assert_eq!(message2, message);
            }
        }
        _ => {}
    }
}
