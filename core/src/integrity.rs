//! Digests computed while member data streams by (`docs/format-0.6.2.md` §3.2).
//!
//! - `sha256`: plain SHA-256 of the file.
//! - `msb-sparse-sha256-v1`: `SHA256(b"msb-sparse-sha256-v1\0" || u64_le(len) || content)`, where
//!   holes count as zero bytes. The length is known from the tar header before the data.
//!
//! A member is hashed once per algorithm it needs ([`Hashes`]): the one its snapshot records, or
//! plain SHA-256 when none is recorded; both only when the member comes before the manifest that
//! says which (`docs/format-0.6.2.md` §3.2).
//!
//! Who performs SHA-256 is a [`Sha256Backend`]: by default [`Sha2`] (the `sha2` crate, with the
//! CPU's SHA instructions natively when it has them, portable code in WebAssembly). A host that
//! runs the validator in a sandbox may provide its own ([`crate::Validator::with_sha256`]); the
//! validator still decides what is hashed and what the digests must be.

use alloc::boxed::Box;

use sha2::{Digest as _, Sha256};

use crate::manifest::{SHA256, SPARSE_SHA256_V1};

/// Zero bytes fed for holes, 64 KiB (1024 SHA-256 blocks) a call.
static ZEROS: [u8; 1 << 16] = [0; 1 << 16];

/// One SHA-256 computation in progress.
pub trait Sha256State: Send {
    /// Adds bytes.
    fn update(&mut self, bytes: &[u8]);
    /// Adds `len` zero bytes; by default 64 KiB of zeros at a time.
    fn update_zeros(&mut self, len: u64) {
        feed_zeros(len, &mut |b| self.update(b));
    }
    /// The digest.
    fn finish(self: Box<Self>) -> [u8; 32];
}

/// Where the validator's SHA-256 computations come from.
pub trait Sha256Backend: Sync + core::fmt::Debug {
    /// A fresh computation.
    fn start(&self) -> Box<dyn Sha256State>;
}

/// SHA-256 by the `sha2` crate: the default backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sha2;

/// A computation of [`Sha2`].
struct Sha2State(Sha256);

impl Sha256State for Sha2State {
    fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(self: Box<Self>) -> [u8; 32] {
        self.0.finalize().into()
    }
}

impl Sha256Backend for Sha2 {
    fn start(&self) -> Box<dyn Sha256State> {
        Box::new(Sha2State(Sha256::new()))
    }
}

/// Which digests of a member the validator computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hashes {
    /// Plain SHA-256 of the content.
    pub sha256: bool,
    /// `msb-sparse-sha256-v1` of the content.
    pub sparse_sha256: bool,
}

impl Hashes {
    /// Nothing (directories).
    pub const NONE: Hashes = Hashes { sha256: false, sparse_sha256: false };
    /// Plain SHA-256 only.
    pub const SHA256: Hashes = Hashes { sha256: true, sparse_sha256: false };
    /// `msb-sparse-sha256-v1` only.
    pub const SPARSE_SHA256: Hashes = Hashes { sha256: false, sparse_sha256: true };
    /// Both: the member's algorithm is not known yet when its data arrives.
    pub const BOTH: Hashes = Hashes { sha256: true, sparse_sha256: true };

    /// Just the one digest `algorithm` names.
    pub fn only(algorithm: Algorithm) -> Hashes {
        match algorithm {
            Algorithm::Sha256 => Hashes::SHA256,
            Algorithm::SparseSha256V1 => Hashes::SPARSE_SHA256,
        }
    }
}

/// The digests of one member, computed incrementally.
pub struct MemberHasher {
    plain: Option<Box<dyn Sha256State>>,
    sparse: Option<Box<dyn Sha256State>>,
}

impl core::fmt::Debug for MemberHasher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemberHasher")
            .field("sha256", &self.plain.is_some())
            .field("sparse", &self.sparse.is_some())
            .finish()
    }
}

/// Finished digests of one member: those its [`Hashes`] asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemberDigests {
    /// SHA-256 of the content.
    pub sha256: Option<[u8; 32]>,
    /// `msb-sparse-sha256-v1` of the content.
    pub sparse_sha256: Option<[u8; 32]>,
}

impl MemberDigests {
    /// The digest of `algorithm`, when it was computed.
    pub fn get(&self, algorithm: Algorithm) -> Option<&[u8; 32]> {
        match algorithm {
            Algorithm::Sha256 => self.sha256.as_ref(),
            Algorithm::SparseSha256V1 => self.sparse_sha256.as_ref(),
        }
    }

    /// Which digests these are.
    pub fn hashes(&self) -> Hashes {
        Hashes { sha256: self.sha256.is_some(), sparse_sha256: self.sparse_sha256.is_some() }
    }
}

/// The `msb-sparse-sha256-v1` prefix for `len` logical bytes.
fn sparse_prefix(len: u64, update: &mut impl FnMut(&[u8])) {
    update(SPARSE_SHA256_V1.as_bytes());
    update(&[0u8]);
    update(&len.to_le_bytes());
}

/// A SHA-256 state primed with the `msb-sparse-sha256-v1` prefix for `len` logical bytes.
fn sparse_state(len: u64) -> Sha256 {
    let mut h = Sha256::new();
    sparse_prefix(len, &mut |b| h.update(b));
    h
}

/// Feeds `len` zero bytes to `update`, a page at a time.
fn feed_zeros(mut len: u64, update: &mut impl FnMut(&[u8])) {
    while len > 0 {
        let n = len.min(ZEROS.len() as u64) as usize;
        update(ZEROS.get(..n).unwrap_or(&[]));
        len -= n as u64;
    }
}

/// A recorded integrity algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Algorithm {
    /// `sha256`: plain SHA-256 of the file.
    Sha256,
    /// `msb-sparse-sha256-v1`.
    SparseSha256V1,
}

impl Algorithm {
    /// The algorithm named in a manifest, if supported.
    pub fn parse(name: &str) -> Option<Algorithm> {
        match name {
            SHA256 => Some(Algorithm::Sha256),
            SPARSE_SHA256_V1 => Some(Algorithm::SparseSha256V1),
            _ => None,
        }
    }

    /// The name a manifest and a report use.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => SHA256,
            Algorithm::SparseSha256V1 => SPARSE_SHA256_V1,
        }
    }
}

/// Computes exactly one integrity digest of a file (what `verify` and export need).
#[derive(Clone)]
pub struct IntegrityHasher(Sha256);

impl core::fmt::Debug for IntegrityHasher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("IntegrityHasher")
    }
}

impl IntegrityHasher {
    /// A hasher for `algorithm` over `len` logical bytes.
    pub fn new(algorithm: Algorithm, len: u64) -> Self {
        IntegrityHasher(match algorithm {
            Algorithm::Sha256 => Sha256::new(),
            Algorithm::SparseSha256V1 => sparse_state(len),
        })
    }

    /// Adds content bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Adds `len` zero bytes (a hole) without materialising them.
    pub fn update_zeros(&mut self, len: u64) {
        feed_zeros(len, &mut |b| self.0.update(b));
    }

    /// The digest as `sha256:<hex>`.
    pub fn finish(self) -> alloc::string::String {
        crate::hex::sha256_digest(&self.0.finalize().into())
    }
}

impl MemberHasher {
    /// A hasher computing `hashes` of a member of `len` logical bytes.
    pub fn new(len: u64, hashes: Hashes) -> Self {
        Self::with_backend(&Sha2, len, hashes)
    }

    /// [`MemberHasher::new`] with SHA-256 from `backend`.
    pub fn with_backend(backend: &dyn Sha256Backend, len: u64, hashes: Hashes) -> Self {
        let sparse = hashes.sparse_sha256.then(|| {
            let mut h = backend.start();
            sparse_prefix(len, &mut |b| h.update(b));
            h
        });
        MemberHasher { plain: hashes.sha256.then(|| backend.start()), sparse }
    }

    /// Which digests this computes.
    pub fn hashes(&self) -> Hashes {
        Hashes { sha256: self.plain.is_some(), sparse_sha256: self.sparse.is_some() }
    }

    /// Adds content bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        for s in [self.plain.as_mut(), self.sparse.as_mut()].into_iter().flatten() {
            s.update(bytes);
        }
    }

    /// Adds `len` zero bytes (a hole) without materialising them.
    pub fn update_zeros(&mut self, len: u64) {
        for s in [self.plain.as_mut(), self.sparse.as_mut()].into_iter().flatten() {
            s.update_zeros(len);
        }
    }

    /// The finished digests.
    pub fn finish(self) -> MemberDigests {
        MemberDigests {
            sha256: self.plain.map(|s| s.finish()),
            sparse_sha256: self.sparse.map(|s| s.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_digest_matches_definition() {
        let data = [1u8, 2, 3, 0, 0, 0];
        let mut h = MemberHasher::new(6, Hashes::BOTH);
        h.update(&data[..3]);
        h.update_zeros(3);
        let d = h.finish();
        let mut want = Sha256::new();
        want.update(b"msb-sparse-sha256-v1\0");
        want.update(6u64.to_le_bytes());
        want.update(data);
        assert_eq!(d.sparse_sha256, Some(want.finalize().into()));
        assert_eq!(d.sha256, Some(<[u8; 32]>::from(Sha256::digest(data))));
        let mut one = IntegrityHasher::new(Algorithm::SparseSha256V1, 6);
        one.update(&data[..3]);
        one.update_zeros(3);
        assert_eq!(one.finish(), crate::hex::sha256_digest(&d.sparse_sha256.unwrap()));
        let mut plain = IntegrityHasher::new(Algorithm::Sha256, 6);
        plain.update(&data);
        assert_eq!(plain.finish(), crate::hex::sha256_digest(&d.sha256.unwrap()));
    }

    /// A backend that counts what it hashes and hands it to `Sha2`.
    #[derive(Debug)]
    struct Counting(core::sync::atomic::AtomicU64, core::sync::atomic::AtomicU64);

    struct CountingState(&'static Counting, Box<dyn Sha256State>);

    impl Sha256State for CountingState {
        fn update(&mut self, bytes: &[u8]) {
            self.0 .0.fetch_add(bytes.len() as u64, core::sync::atomic::Ordering::Relaxed);
            self.1.update(bytes);
        }
        fn update_zeros(&mut self, len: u64) {
            self.0 .1.fetch_add(len, core::sync::atomic::Ordering::Relaxed);
            self.1.update_zeros(len);
        }
        fn finish(self: Box<Self>) -> [u8; 32] {
            self.1.finish()
        }
    }

    static COUNTING: Counting =
        Counting(core::sync::atomic::AtomicU64::new(0), core::sync::atomic::AtomicU64::new(0));

    impl Sha256Backend for &'static Counting {
        fn start(&self) -> Box<dyn Sha256State> {
            Box::new(CountingState(self, Sha2.start()))
        }
    }

    #[test]
    fn a_backend_computes_every_digest_and_gives_the_same_digests() {
        let data = [7u8; 100];
        let mut want = MemberHasher::new(1100, Hashes::BOTH);
        let mut got = MemberHasher::with_backend(&&COUNTING, 1100, Hashes::BOTH);
        for h in [&mut want, &mut got] {
            h.update(&data);
            h.update_zeros(1000);
        }
        assert_eq!(got.finish(), want.finish());
        let prefix = (SPARSE_SHA256_V1.len() + 1 + 8) as u64;
        // Content twice (plain and sparse) plus the sparse prefix; holes as one call per state.
        assert_eq!(COUNTING.0.load(core::sync::atomic::Ordering::Relaxed), 2 * 100 + prefix);
        assert_eq!(COUNTING.1.load(core::sync::atomic::Ordering::Relaxed), 2 * 1000);
    }
}
