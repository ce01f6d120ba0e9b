//! Old-GNU sparse (`S`) members, written byte by byte as GNU tar writes them, for tests that
//! need exactly the map they are named for.
//!
//! [`Sparse::of`] gives GNU tar's map for some content (the non-zero 4 KiB blocks, merged, then a
//! zero-length end marker at the real size); tests then break the slots, the sizes or the header
//! fields. [`Sparse::append`] writes the header record, the extension blocks (21 slots each) and
//! the stored data.

use crate::builder::{base256, flag, octal, Format, Header, Tar, BLOCK};

/// The map's positions, as the core reads and writes them.
pub use snapbundle_core::tar::layout::{
    EXTENSION_EXTENDED, EXTENSION_SLOTS, INLINE_EXTENDED, INLINE_MAP, INLINE_SLOTS, REAL_SIZE,
};

/// One sparse member under construction.
#[derive(Debug, Clone)]
pub struct Sparse {
    /// Member name (at most 100 bytes).
    pub name: String,
    /// `realsize`.
    pub real_size: u64,
    /// The slots as written, in order: `(offset, numbytes)`.
    pub slots: Vec<(u64, u64)>,
    /// The stored data that follows the map.
    pub data: Vec<u8>,
    /// The header's `size` field (the stored size unless a test lies).
    pub size: u64,
    /// Write `realsize` in GNU base-256 form.
    pub real_size_base256: bool,
}

/// GNU tar's data segments of `content`: runs of 4 KiB blocks holding a non-zero byte, the last
/// one cut at the end of the content.
pub fn data_segments(content: &[u8]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (i, block) in content.chunks(4096).enumerate() {
        if block.iter().all(|&b| b == 0) {
            continue;
        }
        let (off, len) = ((i * 4096) as u64, block.len() as u64);
        match out.last_mut() {
            Some(last) if last.0 + last.1 == off => last.1 += len,
            _ => out.push((off, len)),
        }
    }
    out
}

/// Content of `len` bytes for sparse tests: zero except 4 KiB data blocks at the given block
/// numbers and the last byte (so GNU tar's map ends with a short data segment).
pub fn holed(len: usize, blocks: &[usize], seed: u8) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for (i, &b) in blocks.iter().enumerate() {
        if let Some(block) = v.get_mut(b * 4096..(b + 1) * 4096) {
            for (j, byte) in block.iter_mut().enumerate() {
                *byte = (j as u8).wrapping_mul(31).wrapping_add(seed).wrapping_add(i as u8) | 1;
            }
        }
    }
    if let Some(last) = v.last_mut() {
        *last = seed | 1;
    }
    v
}

/// The stored bytes of `content` under `slots` (zero-length slots store nothing).
pub fn stored(content: &[u8], slots: &[(u64, u64)]) -> Vec<u8> {
    let data = slots.iter().filter(|s| s.1 > 0);
    data.flat_map(|&(o, n)| content[o as usize..(o + n) as usize].iter().copied()).collect()
}

impl Sparse {
    /// What GNU tar writes for `content`: its data segments, then `(len, 0)`.
    pub fn of(name: &str, content: &[u8]) -> Sparse {
        let mut slots = data_segments(content);
        slots.push((content.len() as u64, 0));
        let data = stored(content, &slots);
        Sparse::with(name, content.len() as u64, slots, data)
    }

    /// A member with exactly these slots and stored data; `size` is the data's length.
    pub fn with(name: &str, real_size: u64, slots: Vec<(u64, u64)>, data: Vec<u8>) -> Sparse {
        let size = data.len() as u64;
        Sparse { name: name.into(), real_size, slots, data, size, real_size_base256: false }
    }

    /// The header record (first 4 slots, `isextended` when there are more, `realsize`).
    pub fn header(&self) -> Header {
        let real = if self.real_size_base256 { base256(self.real_size, 12) } else { num(self.real_size) };
        let extended = u8::from(self.slots.len() > INLINE_SLOTS);
        Header::new(Format::Gnu, self.name.as_bytes(), flag::GNU_SPARSE, self.size)
            .raw(INLINE_MAP.start, &slot_bytes(&self.slots[..self.slots.len().min(INLINE_SLOTS)]))
            .raw(INLINE_EXTENDED, &[extended])
            .raw(REAL_SIZE.start, &real)
    }

    /// The extension blocks: 21 slots each, `isextended` on all but the last.
    pub fn extension_blocks(&self) -> Vec<[u8; BLOCK]> {
        let rest = self.slots.get(INLINE_SLOTS..).unwrap_or(&[]);
        let chunks: Vec<&[(u64, u64)]> = rest.chunks(EXTENSION_SLOTS).collect();
        chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut b = [0u8; BLOCK];
                let s = slot_bytes(c);
                b[..s.len()].copy_from_slice(&s);
                b[EXTENSION_EXTENDED] = u8::from(i + 1 < chunks.len());
                b
            })
            .collect()
    }

    /// Appends the member to `t`: header, extension blocks, data and padding.
    pub fn append(&self, t: Tar) -> Tar {
        self.append_with(t, |h| h)
    }

    /// Like [`Sparse::append`], with the header edited by `edit` (the checksum stays right).
    pub fn append_with(&self, t: Tar, edit: impl FnOnce(Header) -> Header) -> Tar {
        let t = t.header(&edit(self.header()));
        self.extension_blocks().iter().fold(t, |t, b| t.raw(b)).data(&self.data)
    }
}

/// A numeric field as GNU tar writes it: 11 octal digits and a NUL, base-256 from 8 GiB up.
pub fn num(value: u64) -> Vec<u8> {
    if value >= 1 << 33 {
        base256(value, 12)
    } else {
        octal(value, 12)
    }
}

/// Slots as bytes, 24 each.
pub fn slot_bytes(slots: &[(u64, u64)]) -> Vec<u8> {
    slots.iter().flat_map(|&(o, n)| [num(o), num(n)].concat()).collect()
}
