//! A fixed-size bit set of piece numbers.

use serde::{Deserialize, Serialize};
use smallvec::{smallvec, SmallVec};

/// Words kept inside the set itself: 512 pieces, more than the default piece sizing's 384
/// per blob. A simulated 10,000-node rollout updates a child's copy of a parent's set about
/// 120 million times, and the heap block behind each set was a cache miss per update
/// (`sched::core::bitset::PieceSet::insert` was 11 % of capacity-10k's time).
const INLINE_WORDS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct PieceSet {
    words: SmallVec<[u64; INLINE_WORDS]>,
    len: u32,
    count: u32,
}

impl PieceSet {
    pub fn new(len: u32) -> Self {
        PieceSet { words: smallvec![0; (len as usize).div_ceil(64)], len, count: 0 }
    }
    pub fn full(len: u32) -> Self {
        let mut s = PieceSet::new(len);
        for i in 0..len {
            s.insert(i);
        }
        s
    }
    #[inline]
    pub fn len(&self) -> u32 {
        self.len
    }
    #[inline]
    pub fn count(&self) -> u32 {
        self.count
    }
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    #[inline]
    pub fn is_full(&self) -> bool {
        self.count == self.len
    }
    #[inline]
    pub fn contains(&self, piece: u32) -> bool {
        piece < self.len && self.words[(piece / 64) as usize] & (1 << (piece % 64)) != 0
    }
    /// Returns true when the piece was not in the set.
    #[inline]
    pub fn insert(&mut self, piece: u32) -> bool {
        assert!(piece < self.len, "piece {piece} out of range 0..{}", self.len);
        let w = &mut self.words[(piece / 64) as usize];
        let bit = 1 << (piece % 64);
        if *w & bit == 0 {
            *w |= bit;
            self.count += 1;
            true
        } else {
            false
        }
    }
    #[inline]
    pub fn remove(&mut self, piece: u32) -> bool {
        if piece >= self.len {
            return false;
        }
        let w = &mut self.words[(piece / 64) as usize];
        let bit = 1 << (piece % 64);
        if *w & bit != 0 {
            *w &= !bit;
            self.count -= 1;
            true
        } else {
            false
        }
    }
    /// Pieces in `self` and not in `other`, in ascending order.
    pub fn iter_minus<'a>(&'a self, other: &'a PieceSet) -> impl Iterator<Item = u32> + 'a {
        self.words
            .iter()
            .enumerate()
            .flat_map(move |(i, w)| word_bits(i, w & !other.words.get(i).copied().unwrap_or(0)))
    }
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, w)| word_bits(i, *w))
    }
    /// The raw 64-bit words, piece `i` at bit `i % 64` of word `i / 64`.
    #[inline]
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Number of pieces in `self` that `other` lacks.
    pub fn count_minus(&self, other: &PieceSet) -> u32 {
        self.words.iter().enumerate().map(|(i, w)| (w & !other.words.get(i).copied().unwrap_or(0)).count_ones()).sum()
    }
}

/// The piece numbers set in word `index` of a set (bit b is piece index * 64 + b).
pub fn word_bits(index: usize, mut bits: u64) -> impl Iterator<Item = u32> {
    std::iter::from_fn(move || {
        if bits == 0 {
            return None;
        }
        let b = bits.trailing_zeros();
        bits &= bits - 1;
        Some(index as u32 * 64 + b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_count_and_difference() {
        let mut a = PieceSet::new(130);
        assert!(a.insert(0));
        assert!(!a.insert(0));
        a.insert(64);
        a.insert(129);
        assert_eq!(a.count(), 3);
        let mut b = PieceSet::new(130);
        b.insert(64);
        assert_eq!(a.iter_minus(&b).collect::<Vec<_>>(), vec![0, 129]);
        assert_eq!(a.count_minus(&b), 2);
        assert!(a.remove(0));
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![64, 129]);
        assert!(PieceSet::full(70).is_full());
    }
}
