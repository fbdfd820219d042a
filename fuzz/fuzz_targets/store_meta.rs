//! The store's `meta.json` (read back on every start; a file altered behind the daemon's back
//! is untrusted): a file that decodes re-encodes to one that decodes to the same metadata,
//! and what it describes is consistent (piece count, digests, finished bitmap).
#![no_main]
use libfuzzer_sys::fuzz_target;
use peer::storage::fuzzing::{decode_meta, encode_meta};

fuzz_target!(|data: &[u8]| {
    let Ok(meta) = decode_meta(data) else { return };
    let count = meta.piece_count();
    assert_eq!(meta.piece_digests.len(), count as usize, "one digest slot per piece");
    assert_eq!(meta.finished.len(), count, "the bitmap covers every piece");
    for piece in 0..count {
        if meta.finished.contains(piece) {
            assert!(meta.piece_digests[piece as usize].is_some(), "finished piece {piece} without a digest");
        }
    }
    assert!(!meta.completed || meta.finished.is_full(), "completed with unfinished pieces");
    let again = decode_meta(&encode_meta(&meta)).expect("re-encoded metadata decodes");
    assert_eq!(again, meta, "metadata round-trips");
});
