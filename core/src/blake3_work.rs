//! The BLAKE3 computations over one `.msb` member, and who performs them.
//!
//! A member's [`Blake3Work`] is its `msb-archive-member-blake3-v1` transport digest (over its
//! stored bytes: [`crate::generation::g3::transport`]) and/or a Merkle root over its logical
//! content ([`crate::merkle::FileMerkle`]; holes included). The validator builds the work at the
//! member's header, keeps the counts that decide its errors, and hands the
//! work to a [`Blake3Backend`], which feeds it the content and finishes it: by default inline on
//! the validator's thread ([`Inline`]); a host may run it on another thread
//! ([`crate::Validator::with_backends`]). Whoever runs it, the arithmetic is this module's, so
//! the digests are the same.

use alloc::boxed::Box;
use core::fmt;

use crate::generation::g3::transport::{TransportCount, TransportHasher};
use crate::merkle::{FileMerkle, MerkleRoot};

/// Zero bytes fed to a transport digest for stored zeros, 64 KiB a call.
static ZEROS: [u8; 1 << 16] = [0; 1 << 16];

/// The BLAKE3 computations of one member (see the module docs).
#[derive(Clone)]
pub struct Blake3Work {
    transport: Option<blake3::Hasher>,
    merkle: Option<FileMerkle>,
}

impl fmt::Debug for Blake3Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blake3Work")
            .field("transport", &self.transport.is_some())
            .field("merkle", &self.merkle)
            .finish()
    }
}

/// The finished BLAKE3 digests of one member: those its work asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blake3Digests {
    /// The transport digest.
    pub transport: Option<[u8; 32]>,
    /// The Merkle root.
    pub merkle: Option<MerkleRoot>,
}

impl Blake3Work {
    /// The work of `transport` and/or `merkle`, as far as they were fed. Only the hashing moves:
    /// whether the stored bytes add up to the declared size is the caller's to check, as the
    /// validator does ([`TransportHasher::update`] counts them).
    pub fn new(transport: Option<TransportHasher>, merkle: Option<FileMerkle>) -> Self {
        Blake3Work { transport: transport.map(TransportHasher::into_hasher), merkle }
    }

    /// Stored bytes: to both computations.
    pub fn update(&mut self, bytes: &[u8]) {
        if let Some(t) = self.transport.as_mut() {
            t.update(bytes);
        }
        if let Some(m) = self.merkle.as_mut() {
            // The validator counted the logical size before ([`MemberBlake3`]): it fits.
            let _ = m.update(bytes);
        }
    }

    /// `len` stored bytes that are all zero, without materialising them: the same digests as
    /// [`Blake3Work::update`] with them (the Merkle tree takes them as a hole).
    pub fn stored_zeros(&mut self, mut len: u64) {
        if let Some(m) = self.merkle.as_mut() {
            let _ = m.update_zeros(len);
        }
        if let Some(t) = self.transport.as_mut() {
            while len > 0 {
                let n = len.min(ZEROS.len() as u64) as usize;
                t.update(ZEROS.get(..n).unwrap_or(&[]));
                len -= n as u64;
            }
        }
    }

    /// A hole: `len` zeros that are not stored (the transport digest does not see them).
    pub fn hole(&mut self, len: u64) {
        if let Some(m) = self.merkle.as_mut() {
            let _ = m.update_zeros(len);
        }
    }

    /// The digests.
    pub fn finish(self) -> Blake3Digests {
        Blake3Digests {
            transport: self.transport.map(|t| *t.finalize().as_bytes()),
            merkle: self.merkle.map(FileMerkle::finish),
        }
    }

    /// Whether there is nothing to compute.
    pub fn is_empty(&self) -> bool {
        self.transport.is_none() && self.merkle.is_none()
    }
}

/// One member's BLAKE3 work in progress, wherever it runs.
pub trait Blake3State: Send {
    /// Adds stored bytes.
    fn update(&mut self, bytes: &[u8]);
    /// Adds a hole of `len` zero bytes.
    fn hole(&mut self, len: u64);
    /// The digests, once everything was fed.
    fn finish(self: Box<Self>) -> Blake3Digests;
}

/// Where the validator's BLAKE3 work runs.
pub trait Blake3Backend: Sync + fmt::Debug {
    /// Starts `work`; the state returned is fed the member's content.
    fn start(&self, work: Blake3Work) -> Box<dyn Blake3State>;
}

/// The default backend: the work runs on the validator's thread, as it is fed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inline;

impl Blake3State for Blake3Work {
    fn update(&mut self, bytes: &[u8]) {
        Blake3Work::update(self, bytes);
    }

    fn hole(&mut self, len: u64) {
        Blake3Work::hole(self, len);
    }

    fn finish(self: Box<Self>) -> Blake3Digests {
        Blake3Work::finish(*self)
    }
}

impl Blake3Backend for Inline {
    fn start(&self, work: Blake3Work) -> Box<dyn Blake3State> {
        Box::new(work)
    }
}

/// Why a member's content does not fit its BLAKE3 work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blake3Error {
    /// More stored bytes than declared.
    TooManyStored,
    /// The logical size passes `u64::MAX`.
    SizeOverflow,
}

/// The validator's side of a member's BLAKE3 work: the counts, checked as the content arrives,
/// and the state its backend runs.
pub(crate) struct MemberBlake3 {
    state: Box<dyn Blake3State>,
    stored: Option<TransportCount>,
    logical: u64,
}

impl fmt::Debug for MemberBlake3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberBlake3").field("stored", &self.stored).field("logical", &self.logical).finish()
    }
}

/// What [`MemberBlake3::finish`] gives: the transport digest (`None` if not computed or its
/// stored bytes fell short) and the Merkle root.
pub(crate) struct Finished {
    pub(crate) transport: Option<Result<[u8; 32], ()>>,
    pub(crate) merkle: Option<MerkleRoot>,
}

impl MemberBlake3 {
    /// The work of `transport` and/or `merkle` started on `backend`; `None` when there is none.
    pub(crate) fn start(
        backend: &dyn Blake3Backend,
        transport: Option<TransportHasher>,
        merkle: Option<FileMerkle>,
    ) -> Option<MemberBlake3> {
        let stored = transport.as_ref().map(TransportHasher::count);
        let work = Blake3Work::new(transport, merkle);
        if work.is_empty() {
            return None;
        }
        Some(MemberBlake3 { state: backend.start(work), stored, logical: 0 })
    }

    /// Stored bytes.
    pub(crate) fn update(&mut self, bytes: &[u8]) -> Result<(), Blake3Error> {
        let n = bytes.len() as u64;
        if let Some(c) = self.stored.as_mut() {
            c.add(n).map_err(|_| Blake3Error::TooManyStored)?;
        }
        self.logical = self.logical.checked_add(n).ok_or(Blake3Error::SizeOverflow)?;
        self.state.update(bytes);
        Ok(())
    }

    /// A hole.
    pub(crate) fn hole(&mut self, len: u64) -> Result<(), Blake3Error> {
        self.logical = self.logical.checked_add(len).ok_or(Blake3Error::SizeOverflow)?;
        self.state.hole(len);
        Ok(())
    }

    /// The digests.
    pub(crate) fn finish(self) -> Finished {
        let short = self.stored.map(|c| c.check().is_err());
        let d = self.state.finish();
        Finished {
            transport: d.transport.map(|t| if short == Some(true) { Err(()) } else { Ok(t) }),
            merkle: d.merkle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex::blake3_digest;
    use crate::merkle::CHECKPOINT_FILE;

    /// Feeds `parts` (stored bytes, stored zeros, holes) to a fresh work of both digests.
    fn run(parts: &[(u8, usize)]) {
        let stored: u64 = parts.iter().filter(|p| p.0 != 2).map(|p| p.1 as u64).sum();
        let logical: u64 = parts.iter().map(|p| p.1 as u64).sum();
        let mut t = TransportHasher::new("file-payload", "layers/x.raw", stored, logical, &[(0, 1)]);
        let mut m = FileMerkle::in_domain(&CHECKPOINT_FILE);
        let mut w = MemberBlake3::start(
            &Inline,
            Some(TransportHasher::new("file-payload", "layers/x.raw", stored, logical, &[(0, 1)])),
            Some(FileMerkle::in_domain(&CHECKPOINT_FILE)),
        )
        .unwrap();
        for &(what, len) in parts {
            let bytes: alloc::vec::Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
            match what {
                0 => {
                    t.update(&bytes).unwrap();
                    m.update(&bytes).unwrap();
                    w.update(&bytes).unwrap();
                }
                1 => {
                    let zeros = alloc::vec![0u8; len];
                    t.update(&zeros).unwrap();
                    m.update(&zeros).unwrap();
                    w.update(&zeros).unwrap();
                }
                _ => {
                    m.update_zeros(len as u64).unwrap();
                    w.hole(len as u64).unwrap();
                }
            }
        }
        let f = w.finish();
        let want = t.finish().map_err(|_| ());
        let got = f.transport.unwrap().map(|d| blake3_digest(&d));
        assert_eq!(got, want);
        assert_eq!(f.merkle, Some(m.finish()));
    }

    #[test]
    fn the_work_gives_the_digests_of_its_parts() {
        run(&[]);
        run(&[(0, 100), (2, 70_000), (1, 65_536), (0, 3), (2, 1), (1, 200_000)]);
    }

    #[test]
    fn stored_zeros_equal_zero_data() {
        let mut a = MemberBlake3::start(
            &Inline,
            Some(TransportHasher::new("k", "p", 70_003, 70_003, &[])),
            Some(FileMerkle::new()),
        )
        .unwrap();
        a.update(&[1, 2, 3]).unwrap();
        a.update(&alloc::vec![0u8; 70_000]).unwrap();
        let mut b = Blake3Work::new(
            Some(TransportHasher::new("k", "p", 70_003, 70_003, &[])),
            Some(FileMerkle::new()),
        );
        b.update(&[1, 2, 3]);
        b.stored_zeros(70_000);
        let (a, b) = (a.finish(), b.finish());
        assert_eq!(a.transport, Some(Ok(b.transport.unwrap())));
        assert_eq!(a.merkle, b.merkle);
    }

    #[test]
    fn counts_are_checked_where_the_bytes_arrive() {
        let mut w =
            MemberBlake3::start(&Inline, Some(TransportHasher::new("k", "p", 2, 2, &[])), None).unwrap();
        assert_eq!(w.update(&[0; 3]).unwrap_err(), Blake3Error::TooManyStored);
        w.update(&[0]).unwrap();
        assert_eq!(w.finish().transport, Some(Err(())));
        let mut w = MemberBlake3::start(&Inline, None, Some(FileMerkle::new())).unwrap();
        w.hole(u64::MAX).unwrap();
        assert_eq!(w.hole(1).unwrap_err(), Blake3Error::SizeOverflow);
        assert!(MemberBlake3::start(&Inline, None, None).is_none());
    }
}
