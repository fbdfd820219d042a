//! Digests: sha256 for whole contents (OCI blob digests), CRC32 for pieces, and
//! `VerifiedPiece`, bytes whose piece digest this process computed itself.
//!
//! A piece's digest guards against corruption (a disk, a bug, a bad link), not against a
//! lying peer: a parent advertises the digests its child checks against, so a peer that
//! sends wrong bytes can send a digest to match, whatever the algorithm. Against that stands
//! the content's sha256, known for every OCI blob and checked over the whole content before
//! anyone gets it. So pieces use CRC32 (IEEE, as Dragonfly's Rust client and Kraken do),
//! which the CPU computes at over 10 GB/s, instead of a second sha256 pass over every byte
//! (1.8 GB/s per core here: with the whole-content hash, two thirds of a peer's CPU).
//!
//! The piece path checks each byte once per hop on the receiving side: the data-plane client
//! checks what it received and hands a `VerifiedPiece` to the store, which compares digests
//! instead of computing them again. A `VerifiedPiece` can only be built by computing, so a
//! digest it carries is never one a peer merely claimed.

use super::PieceBuf;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// A sha256 digest (32 bytes). Displays as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sha256 digest {input:?}: {reason}")]
pub struct DigestParseError {
    /// The offending text, cut to 80 characters.
    pub input: String,
    pub reason: &'static str,
}

impl Sha256Digest {
    pub fn of(data: &[u8]) -> Sha256Digest {
        Sha256Digest(Sha256::digest(data).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Sha256Digest {
        Sha256Digest(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }

    /// 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Result<Sha256Digest, DigestParseError> {
        let err = |reason| DigestParseError { input: text.chars().take(80).collect(), reason };
        if text.len() != 64 {
            return Err(err("expected 64 hex digits"));
        }
        let mut out = [0u8; 32];
        hex_decode_into(text, &mut out).map_err(|_| err("not a hex digit"))?;
        Ok(Sha256Digest(out))
    }

    /// An OCI digest, `sha256:<64 hex digits>`. OCI requires lowercase hex; uppercase is
    /// refused so that one blob has one spelling.
    pub fn from_oci(text: &str) -> Result<Sha256Digest, DigestParseError> {
        let err = |reason| DigestParseError { input: text.chars().take(80).collect(), reason };
        let Some((algorithm, hex)) = text.split_once(':') else {
            return Err(err("expected sha256:<64 hex digits>"));
        };
        if algorithm != "sha256" {
            return Err(err("only the sha256 algorithm is supported"));
        }
        if hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err("OCI digests use lowercase hex"));
        }
        Sha256Digest::from_hex(hex).map_err(|e| err(e.reason))
    }

    /// `sha256:<hex>`.
    pub fn to_oci(&self) -> String {
        format!("sha256:{}", self.to_hex())
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Sha256Digest::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// A piece's CRC32 (IEEE polynomial, as zlib and Kraken). Displays as `crc32:` and 8
/// lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PieceDigest(u32);

impl PieceDigest {
    pub fn of(data: &[u8]) -> PieceDigest {
        PieceDigest(crc32fast::hash(data))
    }

    pub fn from_u32(value: u32) -> PieceDigest {
        PieceDigest(value)
    }

    pub fn value(&self) -> u32 {
        self.0
    }

    pub fn to_hex(&self) -> String {
        format!("{:08x}", self.0)
    }

    /// 8 hex digits (either case).
    pub fn from_hex(text: &str) -> Result<PieceDigest, DigestParseError> {
        let err = |reason| DigestParseError { input: text.chars().take(80).collect(), reason };
        let mut out = [0u8; 4];
        if text.len() != 8 {
            return Err(err("expected a crc32 of 8 hex digits"));
        }
        hex_decode_into(text, &mut out).map_err(|_| err("not a hex digit"))?;
        Ok(PieceDigest(u32::from_be_bytes(out)))
    }
}

impl fmt::Display for PieceDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "crc32:{:08x}", self.0)
    }
}

impl fmt::Debug for PieceDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for PieceDigest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PieceDigest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        PieceDigest::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// Piece bytes and the piece digest this process computed over them.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedPiece {
    data: PieceBuf,
    digest: PieceDigest,
}

impl VerifiedPiece {
    /// Computes the digest of `data` (a `Vec` is copied into aligned memory).
    pub fn new(data: impl Into<PieceBuf>) -> VerifiedPiece {
        let data = data.into();
        let digest = PieceDigest::of(&data);
        VerifiedPiece { data, digest }
    }

    /// Computes the digest of `data` and accepts it only if it matches `expected`;
    /// otherwise returns the digest it actually has.
    pub fn check(data: impl Into<PieceBuf>, expected: &PieceDigest) -> Result<VerifiedPiece, PieceDigest> {
        let piece = VerifiedPiece::new(data);
        if piece.digest == *expected {
            Ok(piece)
        } else {
            Err(piece.digest)
        }
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }
    pub fn digest(&self) -> &PieceDigest {
        &self.digest
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub fn into_data(self) -> PieceBuf {
        self.data
    }
}

impl fmt::Debug for VerifiedPiece {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedPiece").field("len", &self.data.len()).field("digest", &self.digest).finish()
    }
}

pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Decodes exactly `out.len() * 2` hex digits of `text` into `out`.
pub(crate) fn hex_decode_into(text: &str, out: &mut [u8]) -> Result<(), ()> {
    let digits = text.as_bytes();
    if digits.len() != out.len() * 2 {
        return Err(());
    }
    fn nibble(c: u8) -> Result<u8, ()> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(()),
        }
    }
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn known_digest_and_hex_round_trip() {
        let d = Sha256Digest::of(b"");
        assert_eq!(d.to_hex(), EMPTY);
        assert_eq!(Sha256Digest::from_hex(EMPTY).unwrap(), d);
        assert_eq!(Sha256Digest::from_hex(&EMPTY.to_uppercase()).unwrap(), d);
        assert_eq!(Sha256Digest::from_oci(&d.to_oci()).unwrap(), d);
    }

    #[test]
    fn bad_digests_are_refused_with_a_reason() {
        assert!(Sha256Digest::from_hex("abc").unwrap_err().reason.contains("64"));
        assert!(Sha256Digest::from_hex(&"g".repeat(64)).unwrap_err().reason.contains("hex"));
        assert!(Sha256Digest::from_oci(EMPTY).unwrap_err().reason.contains("sha256:"));
        assert!(Sha256Digest::from_oci(&format!("sha512:{EMPTY}")).unwrap_err().reason.contains("sha256"));
        assert!(Sha256Digest::from_oci(&format!("sha256:{}", EMPTY.to_uppercase())).is_err());
        // Multi-byte characters must not panic the length check.
        assert!(Sha256Digest::from_hex(&"é".repeat(32)).is_err());
    }

    #[test]
    fn verified_piece_checks_its_digest() {
        let good = PieceDigest::of(b"abc");
        assert_eq!(VerifiedPiece::check(b"abc".to_vec(), &good).unwrap().digest(), &good);
        assert_eq!(VerifiedPiece::check(b"abd".to_vec(), &good).unwrap_err(), PieceDigest::of(b"abd"));
    }

    #[test]
    fn piece_digest_is_the_standard_crc32() {
        // The check value of CRC-32/ISO-HDLC (zlib's crc32).
        let d = PieceDigest::of(b"123456789");
        assert_eq!(d.value(), 0xcbf4_3926);
        assert_eq!(d.to_string(), "crc32:cbf43926");
        assert_eq!(PieceDigest::from_hex(&d.to_hex()).unwrap(), d);
        assert_eq!(PieceDigest::from_hex("CBF43926").unwrap(), d);
        assert!(PieceDigest::from_hex(EMPTY).unwrap_err().reason.contains("8 hex"));
        assert!(PieceDigest::from_hex("cbf4392g").unwrap_err().reason.contains("hex"));
        assert!(PieceDigest::from_hex("éééé").is_err());
    }
}
