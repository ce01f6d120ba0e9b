//! `msb-file-merkle-blake3-v1`: the fixed-leaf BLAKE3 Merkle root microsandbox 0.7 records as a
//! layer's integrity (the shared spec `microsandbox-0.7.md` § Integrity; `verify.rs` of the
//! crate `microsandbox` 0.7.13).
//!
//! The file is cut into 64 KiB leaves (the last one zero-padded); the leaf count
//! `max(1, ceil(len / 64 KiB))` is rounded up to a power of two with zero leaves. A leaf hashes as
//! `BLAKE3("msb-file-merkle-blake3-v1\0leaf\0" ‖ 65536 bytes)`, a parent as
//! `BLAKE3("msb-file-merkle-blake3-v1\0parent\0" ‖ L ‖ R)`, and the root binds the size and shape:
//! `BLAKE3("msb-file-merkle-blake3-v1\0root\0" ‖ u64le(len) ‖ u32le(65536) ‖ u32le(height) ‖ top)`.
//!
//! [`FileMerkle`] computes it while the content streams by. Holes ([`FileMerkle::update_zeros`])
//! and leaves that turn out to be all zeros use precomputed zero-subtree roots, so a hole costs a
//! few parent hashes whatever its length (an 8 GiB hole is ~17 subtree pushes, not 131072 leaves).

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// The algorithm name recorded in a descriptor's layer integrity.
pub const FILE_MERKLE_BLAKE3_V1: &str = "msb-file-merkle-blake3-v1";
/// The fixed leaf size, recorded as `leaf_size`.
pub const LEAF_SIZE: u32 = 64 * 1024;

const LEAF: usize = 64 * 1024;
const LEAF_DOMAIN: &[u8] = b"msb-file-merkle-blake3-v1\0leaf\0";
const PARENT_DOMAIN: &[u8] = b"msb-file-merkle-blake3-v1\0parent\0";
const ROOT_DOMAIN: &[u8] = b"msb-file-merkle-blake3-v1\0root\0";

/// The three domain-separation prefixes of one Merkle construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Domain {
    leaf: &'static [u8],
    parent: &'static [u8],
    root: &'static [u8],
}

/// `msb-file-merkle-blake3-v1`, a layer's recorded integrity.
pub const MSB_FILE: Domain = Domain { leaf: LEAF_DOMAIN, parent: PARENT_DOMAIN, root: ROOT_DOMAIN };

/// `microsandbox.checkpoint-file/1`: the same tree with other prefixes, the `integrity_root` of a
/// checkpoint or owned disk layer (0.7.13 `checkpoint::sparse_file_integrity`).
pub const CHECKPOINT_FILE: Domain = Domain {
    leaf: b"microsandbox.checkpoint-file/1\0leaf\0",
    parent: b"microsandbox.checkpoint-file/1\0parent\0",
    root: b"microsandbox.checkpoint-file/1\0root\0",
};
/// A file of at most `u64::MAX` bytes has at most 2^48 leaves: subtrees up to height 48.
const MAX_HEIGHT: u32 = 48;

/// Why a Merkle computation cannot complete.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MerkleError {
    /// The logical size would pass `u64::MAX` bytes.
    SizeOverflow,
}

impl MerkleError {
    /// Stable identifier.
    pub fn code(&self) -> &'static str {
        match self {
            MerkleError::SizeOverflow => "merkle_size_overflow",
        }
    }
}

impl fmt::Display for MerkleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MerkleError::SizeOverflow => {
                f.write_str("msb-file-merkle-blake3-v1: the logical size passes 2^64 - 1 bytes")
            }
        }
    }
}

/// A finished `msb-file-merkle-blake3-v1` integrity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MerkleRoot {
    /// The root hash.
    pub root: [u8; 32],
    /// The number of logical bytes hashed (`logical_size`).
    pub logical_size: u64,
}

impl MerkleRoot {
    /// The root as recorded: `blake3:<64 lowercase hex>`.
    pub fn digest(&self) -> String {
        crate::hex::blake3_digest(&self.root)
    }
}

fn hash_leaf_in(domain: &Domain, bytes: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(domain.leaf);
    h.update(bytes);
    *h.finalize().as_bytes()
}

fn hash_parent_in(domain: &Domain, left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(domain.parent);
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

/// A streaming `msb-file-merkle-blake3-v1` computation: feed the logical content in order as
/// data ([`update`](Self::update)) and holes ([`update_zeros`](Self::update_zeros)), then
/// [`finish`](Self::finish).
#[derive(Clone)]
pub struct FileMerkle {
    /// The current partial leaf (`fill` bytes of it are content).
    leaf: Vec<u8>,
    fill: usize,
    /// Complete leaves pushed so far.
    leaves: u64,
    /// Logical bytes so far.
    len: u64,
    /// The construction's prefixes.
    domain: &'static Domain,
    /// Roots of complete subtrees, heights strictly decreasing from bottom to top.
    stack: Vec<(u32, [u8; 32])>,
    /// `zeros[h]`: the root of a subtree of height `h` whose leaves are all zero (computed lazily).
    zeros: Vec<[u8; 32]>,
}

impl fmt::Debug for FileMerkle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileMerkle").field("len", &self.len).field("leaves", &self.leaves).finish()
    }
}

impl Default for FileMerkle {
    fn default() -> Self {
        Self::new()
    }
}

impl FileMerkle {
    /// An empty `msb-file-merkle-blake3-v1` computation.
    pub fn new() -> Self {
        Self::in_domain(&MSB_FILE)
    }

    /// An empty computation of the tree with `domain`'s prefixes ([`CHECKPOINT_FILE`]).
    pub fn in_domain(domain: &'static Domain) -> Self {
        FileMerkle {
            leaf: vec![0; LEAF],
            fill: 0,
            leaves: 0,
            len: 0,
            domain,
            stack: Vec::new(),
            zeros: Vec::new(),
        }
    }

    /// The logical bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The root of an all-zero subtree of height `h` (at most [`MAX_HEIGHT`]).
    fn zero_root(&mut self, h: u32) -> [u8; 32] {
        if self.zeros.is_empty() {
            self.zeros.push(hash_leaf_in(self.domain, &vec![0u8; LEAF]));
        }
        while (self.zeros.len() as u64) <= u64::from(h) {
            let below = self.zeros.last().copied().unwrap_or([0; 32]);
            self.zeros.push(hash_parent_in(self.domain, &below, &below));
        }
        self.zeros.get(h as usize).copied().unwrap_or([0; 32])
    }

    /// Adds a complete subtree of height `h`; `self.leaves` is a multiple of `2^h`.
    fn push_subtree(&mut self, mut h: u32, mut node: [u8; 32]) {
        while let Some(&(top_h, top)) = self.stack.last() {
            if top_h != h {
                break;
            }
            self.stack.pop();
            node = hash_parent_in(self.domain, &top, &node);
            h += 1;
        }
        self.stack.push((h, node));
    }

    /// Adds one complete leaf; an all-zero leaf takes the precomputed hash.
    fn push_leaf(&mut self, bytes: &[u8]) {
        let hash =
            if crate::holes::is_zero(bytes) { self.zero_root(0) } else { hash_leaf_in(self.domain, bytes) };
        self.push_subtree(0, hash);
        self.leaves += 1;
    }

    /// Adds `count` zero leaves as aligned zero subtrees.
    fn push_zero_leaves(&mut self, count: u64) {
        let end = self.leaves.saturating_add(count);
        while self.leaves < end {
            let remaining = end - self.leaves;
            let fits = 63 - remaining.leading_zeros();
            let h = if self.leaves == 0 { fits } else { self.leaves.trailing_zeros().min(fits) };
            let h = h.min(MAX_HEIGHT);
            let node = self.zero_root(h);
            self.push_subtree(h, node);
            self.leaves += 1u64 << h;
        }
    }

    fn flush_leaf(&mut self) {
        let leaf = core::mem::take(&mut self.leaf);
        self.push_leaf(leaf.get(..LEAF).unwrap_or(&[]));
        self.leaf = leaf;
        self.fill = 0;
    }

    /// Adds content bytes.
    pub fn update(&mut self, mut bytes: &[u8]) -> Result<(), MerkleError> {
        self.len = self.len.checked_add(bytes.len() as u64).ok_or(MerkleError::SizeOverflow)?;
        while !bytes.is_empty() {
            if self.fill == 0 && bytes.len() >= LEAF {
                let (leaf, rest) = bytes.split_at(LEAF);
                self.push_leaf(leaf);
                bytes = rest;
                continue;
            }
            let n = bytes.len().min(LEAF - self.fill);
            let (head, rest) = bytes.split_at(n);
            if let Some(dst) = self.leaf.get_mut(self.fill..self.fill + n) {
                dst.copy_from_slice(head);
            }
            self.fill += n;
            bytes = rest;
            if self.fill == LEAF {
                self.flush_leaf();
            }
        }
        Ok(())
    }

    /// Adds `len` zero bytes (a hole) without materialising them.
    pub fn update_zeros(&mut self, len: u64) -> Result<(), MerkleError> {
        self.len = self.len.checked_add(len).ok_or(MerkleError::SizeOverflow)?;
        let mut left = len;
        if self.fill > 0 {
            let n = left.min((LEAF - self.fill) as u64) as usize;
            if let Some(dst) = self.leaf.get_mut(self.fill..self.fill + n) {
                dst.fill(0);
            }
            self.fill += n;
            left -= n as u64;
            if self.fill == LEAF {
                self.flush_leaf();
            }
        }
        if left == 0 {
            return Ok(());
        }
        self.push_zero_leaves(left / LEAF as u64);
        let rest = (left % LEAF as u64) as usize;
        if let Some(dst) = self.leaf.get_mut(..rest) {
            dst.fill(0);
        }
        self.fill = rest;
        Ok(())
    }

    /// The root over everything fed.
    pub fn finish(mut self) -> MerkleRoot {
        if self.fill > 0 {
            let fill = self.fill;
            if let Some(pad) = self.leaf.get_mut(fill..) {
                pad.fill(0);
            }
            self.flush_leaf();
        }
        let leaf_count = self.leaves.max(1);
        // At most 2^48 leaves, so the next power of two exists.
        let tree = leaf_count.checked_next_power_of_two().unwrap_or(1 << MAX_HEIGHT);
        let height = tree.trailing_zeros();
        self.push_zero_leaves(tree - self.leaves);
        let top = self.stack.last().map(|&(_, h)| h).unwrap_or([0; 32]);
        let mut h = blake3::Hasher::new();
        h.update(self.domain.root);
        h.update(&self.len.to_le_bytes());
        h.update(&LEAF_SIZE.to_le_bytes());
        h.update(&height.to_le_bytes());
        h.update(&top);
        MerkleRoot { root: *h.finalize().as_bytes(), logical_size: self.len }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_leaf(bytes: &[u8]) -> [u8; 32] {
        hash_leaf_in(&MSB_FILE, bytes)
    }

    fn hash_parent(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
        hash_parent_in(&MSB_FILE, left, right)
    }

    /// The definition, the slow way: every leaf materialised, the tree built level by level.
    fn reference(content: &[u8]) -> [u8; 32] {
        let count = content.len().div_ceil(LEAF).max(1).next_power_of_two();
        let mut level: Vec<[u8; 32]> = (0..count)
            .map(|i| {
                let mut leaf = vec![0u8; LEAF];
                let start = (i * LEAF).min(content.len());
                let end = ((i + 1) * LEAF).min(content.len());
                leaf[..end - start].copy_from_slice(&content[start..end]);
                hash_leaf(&leaf)
            })
            .collect();
        let height = count.trailing_zeros();
        while level.len() > 1 {
            level = level.chunks(2).map(|p| hash_parent(&p[0], &p[1])).collect();
        }
        let mut h = blake3::Hasher::new();
        h.update(ROOT_DOMAIN);
        h.update(&(content.len() as u64).to_le_bytes());
        h.update(&LEAF_SIZE.to_le_bytes());
        h.update(&height.to_le_bytes());
        h.update(&level[0]);
        *h.finalize().as_bytes()
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[2] | 1).collect()
    }

    #[test]
    fn matches_the_definition_for_every_shape() {
        for len in [0, 1, LEAF - 1, LEAF, LEAF + 1, 3 * LEAF, 3 * LEAF + 17, 5 * LEAF - 3, 8 * LEAF] {
            let content = pattern(len);
            let mut m = FileMerkle::new();
            m.update(&content).unwrap();
            let got = m.finish();
            assert_eq!(got.root, reference(&content), "len {len}");
            assert_eq!(got.logical_size, len as u64);
            // Any chunking gives the same root.
            let mut m = FileMerkle::new();
            for chunk in content.chunks(7919) {
                m.update(chunk).unwrap();
            }
            assert_eq!(m.finish().root, reference(&content), "chunked, len {len}");
        }
    }

    #[test]
    fn holes_equal_zero_data() {
        // data, hole across leaf boundaries, data, trailing hole: as data + holes and as dense bytes.
        let runs: [(bool, usize); 5] =
            [(true, 1000), (false, 3 * LEAF + 5), (true, LEAF + 9), (false, 2 * LEAF), (true, 3)];
        let mut dense = Vec::new();
        let mut sparse = FileMerkle::new();
        for (i, &(data, len)) in runs.iter().enumerate() {
            if data {
                let bytes = pattern(len + i)[i..].to_vec();
                sparse.update(&bytes).unwrap();
                dense.extend_from_slice(&bytes);
            } else {
                sparse.update_zeros(len as u64).unwrap();
                dense.resize(dense.len() + len, 0);
            }
        }
        let got = sparse.finish();
        assert_eq!(got.root, reference(&dense));
        assert_eq!(got.logical_size, dense.len() as u64);
        for len in [1usize, LEAF, 4 * LEAF + 1, 7 * LEAF] {
            let mut m = FileMerkle::new();
            m.update_zeros(len as u64).unwrap();
            assert_eq!(m.finish().root, reference(&vec![0u8; len]), "hole of {len}");
        }
    }

    #[test]
    fn a_two_terabyte_hole_completes_with_zero_subtrees() {
        // 2^40 bytes: 2^24 leaves; hashed leaf by leaf this would take hours. The root of a hole is
        // the root over zero leaves: the zero subtree of height 24 under the size-bound root.
        let len = 1u64 << 40;
        let mut m = FileMerkle::new();
        m.update_zeros(len).unwrap();
        let got = m.finish();
        let mut top = hash_leaf(&[0u8; LEAF]);
        for _ in 0..24 {
            top = hash_parent(&top, &top);
        }
        let mut h = blake3::Hasher::new();
        h.update(ROOT_DOMAIN);
        h.update(&len.to_le_bytes());
        h.update(&LEAF_SIZE.to_le_bytes());
        h.update(&24u32.to_le_bytes());
        h.update(&top);
        assert_eq!(got.root, *h.finalize().as_bytes());
        // The same construction at a size the slow reference can afford.
        let mut small = FileMerkle::new();
        small.update_zeros(4 * LEAF as u64).unwrap();
        assert_eq!(small.finish().root, reference(&vec![0u8; 4 * LEAF]));
        // Data after a huge hole, and a hole reaching the largest size.
        let mut m = FileMerkle::new();
        m.update_zeros(len - 1).unwrap();
        m.update(&[7]).unwrap();
        assert_eq!(m.finish().logical_size, len);
        let mut m = FileMerkle::new();
        m.update_zeros(u64::MAX).unwrap();
        assert_eq!(m.finish().logical_size, u64::MAX);
    }

    #[test]
    fn sizes_past_u64_are_refused() {
        let mut m = FileMerkle::new();
        m.update_zeros(u64::MAX).unwrap();
        assert_eq!(m.update(&[1]), Err(MerkleError::SizeOverflow));
        assert_eq!(m.update_zeros(1).unwrap_err().code(), "merkle_size_overflow");
    }

    #[test]
    fn digest_form() {
        let m = FileMerkle::new().finish();
        let d = m.digest();
        assert!(d.starts_with("blake3:") && d.len() == 71, "{d}");
    }
}
