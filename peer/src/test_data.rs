//! Test data shared by the I/O modules' tests.

/// `len` bytes from an xorshift stream seeded by `seed`: not periodic, so no two pieces
/// of one blob are alike, and different seeds give different blobs.
pub(crate) fn content(len: u64, seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
