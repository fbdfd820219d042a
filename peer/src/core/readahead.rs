//! What a client reading a task in order wants from the plan next: the pieces from its
//! read cursor up to a window ahead, never past the end of its range. The daemon's
//! registry mirror feeds them to `TaskDownload::want` as the cursor moves, so the plan
//! fetches the pieces the client waits for first (they become urgent) while the rest of a
//! full download goes on in the plan's own order.

use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAhead {
    /// One past the last piece of the reader's range.
    end: u32,
    window: u32,
    /// Pieces before this were asked for already.
    asked_to: u32,
}

impl ReadAhead {
    /// A reader of `pieces` that keeps `window_pieces` (at least 1) wanted ahead of it.
    pub fn new(pieces: Range<u32>, window_pieces: u32) -> ReadAhead {
        ReadAhead { end: pieces.end, window: window_pieces.max(1), asked_to: pieces.start }
    }

    /// The window in pieces for `readahead_bytes` of `piece_bytes` pieces (at least 1).
    pub fn window_pieces(readahead_bytes: u64, piece_bytes: u64) -> u32 {
        (readahead_bytes / piece_bytes.max(1)).clamp(1, u64::from(u32::MAX)) as u32
    }

    /// The reader's cursor is at piece `cursor`: the pieces to want now that were not
    /// asked for before (empty when the window is asked for already).
    pub fn advance(&mut self, cursor: u32) -> Range<u32> {
        let from = self.asked_to.max(cursor).min(self.end);
        let to = cursor.saturating_add(self.window).min(self.end);
        if to <= from {
            return from..from;
        }
        self.asked_to = to;
        from..to
    }

    /// One past the last piece of the reader's range.
    pub fn end(&self) -> u32 {
        self.end
    }

    /// Everything up to the end was asked for.
    pub fn is_exhausted(&self) -> bool {
        self.asked_to >= self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_the_window_once_then_only_what_the_cursor_uncovers() {
        let mut r = ReadAhead::new(2..10, 3);
        assert_eq!(r.advance(2), 2..5);
        assert!(r.advance(2).is_empty(), "nothing new at the same cursor");
        assert_eq!(r.advance(3), 5..6);
        assert_eq!(r.advance(6), 6..9);
        assert_eq!(r.advance(8), 9..10, "never past the end of the range");
        assert!(r.is_exhausted());
        assert!(r.advance(9).is_empty());
    }

    #[test]
    fn a_cursor_that_jumps_ahead_skips_the_pieces_behind_it() {
        let mut r = ReadAhead::new(0..100, 4);
        assert_eq!(r.advance(0), 0..4);
        assert_eq!(r.advance(50), 50..54);
        assert!(!r.is_exhausted());
    }

    #[test]
    fn window_is_at_least_one_piece() {
        assert_eq!(ReadAhead::window_pieces(0, 4 << 20), 1);
        assert_eq!(ReadAhead::window_pieces(64 << 20, 4 << 20), 16);
        assert_eq!(ReadAhead::window_pieces(10, 0), 10);
        let mut r = ReadAhead::new(0..3, 0);
        assert_eq!(r.advance(0), 0..1);
    }

    #[test]
    fn an_empty_range_asks_for_nothing() {
        let mut r = ReadAhead::new(5..5, 8);
        assert!(r.advance(5).is_empty());
        assert!(r.is_exhausted());
    }
}
