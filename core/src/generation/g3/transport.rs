//! `msb-archive-member-blake3-v1`: the per-member transport digest a G3 inventory records.
//!
//! `BLAKE3("msb-archive-member-blake3-v1\0" ‖ u64le(|kind|) ‖ kind ‖ u64le(|path|) ‖ path ‖
//! u64le(encoded) ‖ u64le(apparent) ‖ u64le(nranges) ‖ Σ(u64le(off) ‖ u64le(len)) ‖ stored bytes)`,
//! shown as `blake3:<hex>`. For an old-GNU sparse member the ranges are its sparse map as stored
//! (the trailing `(realsize, 0)` terminator included when present), `encoded` is the number of
//! stored data bytes and only those bytes are hashed; for a regular member there are no ranges and
//! `encoded == apparent`.

use alloc::string::String;
use core::fmt;

/// The algorithm name recorded in `transport_integrity.algorithm`.
pub const ARCHIVE_MEMBER_BLAKE3_V1: &str = "msb-archive-member-blake3-v1";
const DOMAIN: &[u8] = b"msb-archive-member-blake3-v1\0";

/// Why a transport digest cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportError {
    /// More stored bytes were fed than the declared encoded size.
    TooManyBytes {
        /// The declared encoded size.
        encoded: u64,
    },
    /// Fewer stored bytes were fed than the declared encoded size.
    TooFewBytes {
        /// The declared encoded size.
        encoded: u64,
        /// Bytes fed.
        fed: u64,
    },
}

impl TransportError {
    /// Stable identifier.
    pub fn code(&self) -> &'static str {
        match self {
            TransportError::TooManyBytes { .. } => "transport_too_many_bytes",
            TransportError::TooFewBytes { .. } => "transport_too_few_bytes",
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::TooManyBytes { encoded } => {
                write!(f, "member transport digest: more than the declared {encoded} stored bytes")
            }
            TransportError::TooFewBytes { encoded, fed } => {
                write!(f, "member transport digest: {fed} stored bytes, {encoded} declared")
            }
        }
    }
}

/// The count of one member's stored bytes against its declared encoded size: the half of a
/// transport digest that stays with the validator when the hashing runs elsewhere
/// ([`crate::blake3_work`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportCount {
    encoded: u64,
    fed: u64,
}

impl TransportCount {
    /// Nothing fed yet of `encoded` declared stored bytes.
    pub fn new(encoded: u64) -> Self {
        TransportCount { encoded, fed: 0 }
    }

    /// Counts `n` more stored bytes; refuses more than declared.
    pub fn add(&mut self, n: u64) -> Result<(), TransportError> {
        self.fed = self
            .fed
            .checked_add(n)
            .filter(|&fed| fed <= self.encoded)
            .ok_or(TransportError::TooManyBytes { encoded: self.encoded })?;
        Ok(())
    }

    /// Whether exactly the declared stored bytes were fed.
    pub fn check(&self) -> Result<(), TransportError> {
        if self.fed != self.encoded {
            return Err(TransportError::TooFewBytes { encoded: self.encoded, fed: self.fed });
        }
        Ok(())
    }
}

/// A streaming `msb-archive-member-blake3-v1` computation over one member's stored bytes.
#[derive(Clone)]
pub struct TransportHasher {
    hasher: blake3::Hasher,
    count: TransportCount,
}

impl fmt::Debug for TransportHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportHasher").field("count", &self.count).finish()
    }
}

fn text(h: &mut blake3::Hasher, s: &str) {
    h.update(&(s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

impl TransportHasher {
    /// Starts the digest of the member at `path` of `kind` (the inventory's entry kind), with
    /// `encoded` stored bytes, `apparent` logical bytes and its sparse `ranges` (`(offset, len)`).
    pub fn new(kind: &str, path: &str, encoded: u64, apparent: u64, ranges: &[(u64, u64)]) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(DOMAIN);
        text(&mut hasher, kind);
        text(&mut hasher, path);
        hasher.update(&encoded.to_le_bytes());
        hasher.update(&apparent.to_le_bytes());
        hasher.update(&(ranges.len() as u64).to_le_bytes());
        for (offset, len) in ranges {
            hasher.update(&offset.to_le_bytes());
            hasher.update(&len.to_le_bytes());
        }
        TransportHasher { hasher, count: TransportCount::new(encoded) }
    }

    /// Adds stored bytes (a sparse member's data runs, in order; never its holes).
    pub fn update(&mut self, stored: &[u8]) -> Result<(), TransportError> {
        self.count.add(stored.len() as u64)?;
        self.hasher.update(stored);
        Ok(())
    }

    /// The digest, `blake3:<hex>`, once exactly the declared stored bytes were fed.
    pub fn finish(self) -> Result<String, TransportError> {
        self.count.check()?;
        Ok(crate::hex::blake3_digest(self.hasher.finalize().as_bytes()))
    }

    /// The count of stored bytes so far: it stays with the validator when the hashing runs
    /// elsewhere ([`crate::blake3_work`]).
    pub(crate) fn count(&self) -> TransportCount {
        self.count
    }

    /// The hashing, primed with the member's header fields and the stored bytes so far.
    pub(crate) fn into_hasher(self) -> blake3::Hasher {
        self.hasher
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition() {
        let mut h = TransportHasher::new("file-payload", "layers/a.raw", 3, 10, &[(0, 2), (9, 1), (10, 0)]);
        h.update(&[1, 2]).unwrap();
        h.update(&[3]).unwrap();
        let mut want = blake3::Hasher::new();
        want.update(b"msb-archive-member-blake3-v1\0");
        want.update(&12u64.to_le_bytes());
        want.update(b"file-payload");
        want.update(&12u64.to_le_bytes());
        want.update(b"layers/a.raw");
        for n in [3u64, 10, 3, 0, 2, 9, 1, 10, 0] {
            want.update(&n.to_le_bytes());
        }
        want.update(&[1, 2, 3]);
        let want = alloc::format!("blake3:{}", crate::hex::encode(want.finalize().as_bytes()));
        assert_eq!(h.finish().unwrap(), want);
    }

    #[test]
    fn stored_bytes_must_match_the_encoded_size() {
        let mut h = TransportHasher::new("k", "p", 2, 2, &[]);
        assert_eq!(h.update(&[0; 3]).unwrap_err().code(), "transport_too_many_bytes");
        h.update(&[0]).unwrap();
        assert_eq!(h.finish().unwrap_err(), TransportError::TooFewBytes { encoded: 2, fed: 1 });
    }
}
