//! Old-GNU sparse maps (type `S`), read strictly and with bounded memory.
//!
//! A sparse member stores only its data segments; the map says where each one goes in the file
//! of `realsize` logical bytes, and everything between them is a hole (zeros). The map lives in
//! the GNU header and, when it is longer, in extension blocks that follow the header directly,
//! before the data (GNU tar's `oldgnu_header` and `sparse_header`; the positions are in
//! [`super::layout`]).
//!
//! The header's `size` field is the number of stored bytes. Rules (`docs/format-0.6.2.md` §9.3):
//! - only a GNU header (`ustar  \0`) carries a map;
//! - `realsize`, offsets and lengths are numeric fields as everywhere (octal with a terminator,
//!   or GNU base-256), never negative;
//! - a slot whose length field starts with NUL is empty and ends the map, as GNU tar reads it;
//!   it must then be all zero, every later slot must be empty, and `isextended` must be 0
//!   (tar-rs skips empty slots and reads on: refusing what the two readers disagree on);
//! - `isextended` is exactly 0 or 1 (GNU tests for non-zero, tar-rs for 1); the bytes after it in an
//!   extension block are zero, and an extension block holds at least one segment (so the number
//!   of extension blocks is bounded by the segment limit);
//! - segments are sorted by offset and do not overlap (touching is allowed), and each ends at or
//!   before `realsize`;
//! - every data segment but the last has a length that is a multiple of 512 (tar-rs requires it;
//!   GNU tar's segments are filesystem blocks);
//! - the lengths sum exactly to the stored size;
//! - **zero-length segments**: GNU tar ends every map with a segment of length 0 at `realsize`.
//!   That end marker is accepted, as the last slot only; a zero-length segment anywhere else is
//!   an error. The map must reach `realsize`, through its last data segment or the end marker
//!   (tar-rs rejects a map that stops short of it), so the trailing hole is always explicit;
//! - at most `Limits::max_sparse_segments` slots (end marker included). Slots are stored one by
//!   one as they are read and checked against the limit first, so no count from the archive
//!   ever sizes an allocation (Go's CVE-2026-32288 was an unbounded sparse map).
//!
//! [`MapReader`] takes the header, then one extension block at a time, and yields a checked
//! [`SparseMap`].

use alloc::vec::Vec;

use super::header::{parse_number, Format};
use super::layout::{
    BLOCK, EXTENSION_EXTENDED, EXTENSION_MAP, EXTENSION_SLOTS, INLINE_EXTENDED, INLINE_MAP, INLINE_SLOTS,
    REAL_SIZE, SLOT_LEN, SLOT_NUMBYTES, SLOT_OFFSET,
};
use crate::error::{LimitError, TarError};

/// A run of stored bytes at a logical offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Offset in the logical file.
    pub offset: u64,
    /// Length in bytes (never 0 in a [`SparseMap`]).
    pub len: u64,
}

impl Segment {
    /// First byte after the segment.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
}

/// Why a map was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapError {
    /// The map breaks a rule (`invalid_sparse_map`, or a bad numeric field).
    Tar(TarError),
    /// More than `max_sparse_segments` slots.
    Limit(LimitError),
}

impl From<TarError> for MapError {
    fn from(e: TarError) -> Self {
        MapError::Tar(e)
    }
}

fn invalid(why: &'static str) -> MapError {
    MapError::Tar(TarError::SparseMap(why))
}

/// A checked map: the data segments in order, with the logical and stored sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseMap {
    real_size: u64,
    stored_size: u64,
    segments: Vec<Segment>,
    marker: bool,
}

impl SparseMap {
    /// The logical size (`realsize`).
    pub fn real_size(&self) -> u64 {
        self.real_size
    }

    /// Bytes stored in the archive (the header's `size`).
    pub fn stored_size(&self) -> u64 {
        self.stored_size
    }

    /// The data segments, sorted, non-empty, not overlapping (the end marker is not kept).
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether the map ends with GNU's zero-length end marker at `realsize`.
    pub fn has_end_marker(&self) -> bool {
        self.marker
    }

    /// The map as stored, `(offset, len)`: the data segments, then the end marker when present.
    pub fn stored_map(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::with_capacity(self.segments.len().saturating_add(1));
        out.extend(self.segments.iter().map(|s| (s.offset, s.len)));
        if self.marker {
            out.push((self.real_size, 0));
        }
        out
    }

    /// Takes the segments.
    pub fn into_segments(self) -> Vec<Segment> {
        self.segments
    }
}

/// Reads a map from the header and its extension blocks.
#[derive(Debug)]
pub struct MapReader {
    real_size: u64,
    stored_size: u64,
    max_slots: u32,
    slots: u32,
    segments: Vec<Segment>,
    /// Sum of the lengths so far.
    stored: u64,
    /// End of the last segment (the end marker included).
    end: u64,
    /// The zero-length end marker was read.
    marker: bool,
    /// Another extension block is expected.
    extended: bool,
}

fn flag(byte: Option<&u8>) -> Result<bool, MapError> {
    match byte.copied() {
        Some(0) => Ok(false),
        Some(1) => Ok(true),
        _ => Err(invalid("isextended is neither 0 nor 1")),
    }
}

impl MapReader {
    /// Starts with the header record of an `S` member whose `size` field is `stored_size`.
    /// `max_slots` is `Limits::max_sparse_segments`.
    pub fn start(
        block: &[u8; BLOCK],
        format: Format,
        stored_size: u64,
        max_slots: u32,
    ) -> Result<MapReader, MapError> {
        if format != Format::Gnu {
            return Err(invalid("an old-GNU sparse entry needs a GNU header (magic 'ustar  ')"));
        }
        let real = block.get(REAL_SIZE).unwrap_or(&[]);
        let real_size = parse_number(real, "realsize")?;
        let mut r = MapReader {
            real_size,
            stored_size,
            max_slots,
            slots: 0,
            segments: Vec::new(),
            stored: 0,
            end: 0,
            marker: false,
            extended: false,
        };
        let slots = block.get(INLINE_MAP).unwrap_or(&[]);
        r.read_slots(slots, INLINE_SLOTS, flag(block.get(INLINE_EXTENDED))?, false)?;
        Ok(r)
    }

    /// Whether an extension block must be read next.
    pub fn needs_extension(&self) -> bool {
        self.extended
    }

    /// The logical size the header declares.
    pub fn real_size(&self) -> u64 {
        self.real_size
    }

    /// Reads one extension block.
    pub fn extension(&mut self, block: &[u8; BLOCK]) -> Result<(), MapError> {
        if !self.extended {
            return Err(invalid("an extension block where none was announced"));
        }
        if block.get(EXTENSION_EXTENDED + 1..).is_some_and(|rest| rest.iter().any(|&b| b != 0)) {
            return Err(invalid("bytes after isextended in an extension block"));
        }
        let slots = block.get(EXTENSION_MAP).unwrap_or(&[]);
        self.read_slots(slots, EXTENSION_SLOTS, flag(block.get(EXTENSION_EXTENDED))?, true)
    }

    fn read_slots(
        &mut self,
        raw: &[u8],
        count: usize,
        extended: bool,
        in_extension: bool,
    ) -> Result<(), MapError> {
        for i in 0..count {
            let slot = raw.get(i * SLOT_LEN..(i + 1) * SLOT_LEN).unwrap_or(&[]);
            // GNU tar: a slot whose numbytes starts with NUL ends the map.
            if slot.get(SLOT_NUMBYTES.start).copied().unwrap_or(0) == 0 {
                if i == 0 && in_extension {
                    return Err(invalid("an extension block holds no segment"));
                }
                let rest = raw.get(i * SLOT_LEN..count * SLOT_LEN).unwrap_or(&[]);
                if rest.iter().any(|&b| b != 0) {
                    return Err(invalid("an empty slot, or a slot after it, holds bytes"));
                }
                if extended {
                    return Err(invalid("isextended is set after the map ended"));
                }
                self.extended = false;
                return Ok(());
            }
            let offset = parse_number(slot.get(SLOT_OFFSET).unwrap_or(&[]), "sparse offset")?;
            let len = parse_number(slot.get(SLOT_NUMBYTES).unwrap_or(&[]), "sparse numbytes")?;
            self.add(offset, len)?;
        }
        self.extended = extended;
        Ok(())
    }

    fn add(&mut self, offset: u64, len: u64) -> Result<(), MapError> {
        self.slots = self.slots.saturating_add(1);
        if self.slots > self.max_slots {
            return Err(MapError::Limit(LimitError::SparseSegments(self.max_slots)));
        }
        if self.marker {
            return Err(invalid("a segment follows the zero-length end marker"));
        }
        if let Some(prev) = self.segments.last() {
            if offset < prev.offset {
                return Err(invalid("segments are not sorted by offset"));
            }
            if offset < prev.end() {
                return Err(invalid("segments overlap"));
            }
        }
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.real_size)
            .ok_or(invalid("a segment extends past realsize"))?;
        if len == 0 {
            if offset != self.real_size {
                return Err(invalid("a zero-length segment before realsize (only the end marker is empty)"));
            }
            self.marker = true;
            self.end = end;
            return Ok(());
        }
        if !self.stored.is_multiple_of(BLOCK as u64) {
            return Err(invalid("a data segment other than the last is not a multiple of 512 bytes"));
        }
        self.stored = self
            .stored
            .checked_add(len)
            .filter(|&s| s <= self.stored_size)
            .ok_or(invalid("the segments hold more bytes than the header's size"))?;
        self.segments.push(Segment { offset, len });
        self.end = end;
        Ok(())
    }

    /// The checked map, once no extension block is pending.
    pub fn finish(self) -> Result<SparseMap, MapError> {
        if self.extended {
            return Err(invalid("the map ends before its last extension block"));
        }
        if self.stored != self.stored_size {
            return Err(invalid("the segment lengths do not sum to the header's size"));
        }
        if self.end != self.real_size {
            return Err(invalid(
                "the map does not reach realsize (GNU ends it with a zero-length segment there)",
            ));
        }
        Ok(SparseMap {
            real_size: self.real_size,
            stored_size: self.stored_size,
            segments: self.segments,
            marker: self.marker,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    fn num(dst: &mut [u8], v: u64) {
        let s = format!("{v:011o}\0");
        dst.copy_from_slice(s.as_bytes());
    }

    fn put_slots(dst: &mut [u8], slots: &[(u64, u64)]) {
        for (slot, &(o, n)) in dst.chunks_mut(SLOT_LEN).zip(slots) {
            num(&mut slot[SLOT_OFFSET], o);
            num(&mut slot[SLOT_NUMBYTES], n);
        }
    }

    fn header(real: u64, slots: &[(u64, u64)], extended: u8) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        num(&mut b[REAL_SIZE], real);
        put_slots(&mut b[INLINE_MAP], slots);
        b[INLINE_EXTENDED] = extended;
        b
    }

    fn extension(slots: &[(u64, u64)], extended: u8) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        put_slots(&mut b[EXTENSION_MAP], slots);
        b[EXTENSION_EXTENDED] = extended;
        b
    }

    fn read(h: &[u8; BLOCK], exts: &[[u8; BLOCK]], stored: u64, max: u32) -> Result<SparseMap, MapError> {
        let mut r = MapReader::start(h, Format::Gnu, stored, max)?;
        for e in exts {
            r.extension(e)?;
        }
        r.finish()
    }

    fn why(r: Result<SparseMap, MapError>) -> &'static str {
        match r {
            Err(MapError::Tar(TarError::SparseMap(w))) => w,
            Err(MapError::Tar(e)) => e.code(),
            Err(MapError::Limit(e)) => e.code(),
            Ok(_) => "ok",
        }
    }

    #[test]
    fn gnu_tar_maps_are_read() {
        // What GNU tar 1.34 writes for a 1 MiB file with two data blocks, and for a file that
        // ends with data: a zero-length marker at realsize either way.
        let m = read(&header(1 << 20, &[(8192, 8192), (98304, 4096), (1 << 20, 0)], 0), &[], 12288, 100);
        let m = m.expect("valid");
        assert_eq!(m.real_size(), 1 << 20);
        assert_eq!(
            m.segments(),
            &[Segment { offset: 8192, len: 8192 }, Segment { offset: 98304, len: 4096 }]
        );
        let m = read(&header(65536, &[(61440, 4096), (65536, 0)], 0), &[], 4096, 100).expect("valid");
        assert_eq!(m.segments().len(), 1);
        // All hole, and empty.
        assert!(read(&header(1 << 20, &[(1 << 20, 0)], 0), &[], 0, 100).is_ok());
        assert!(read(&header(0, &[], 0), &[], 0, 100).is_ok());
        // A map that reaches realsize with its last data segment needs no marker.
        assert!(read(&header(4096, &[(0, 4096)], 0), &[], 4096, 100).is_ok());
    }

    #[test]
    fn extension_blocks_are_chained() {
        let all: Vec<(u64, u64)> = (0..30).map(|i| (i * 8192, 4096)).chain([(30 * 8192, 0)]).collect();
        let h = header(30 * 8192, &all[..4], 1);
        let e1 = extension(&all[4..25], 1);
        let e2 = extension(&all[25..], 0);
        let m = read(&h, &[e1, e2], 30 * 4096, 100).expect("valid");
        assert_eq!(m.segments().len(), 30);
        assert_eq!(why(read(&h, &[e1, e2], 30 * 4096, 30)), "too_many_sparse_segments");
        // The reader says when it wants another block, and refuses to finish early.
        let mut r = MapReader::start(&h, Format::Gnu, 30 * 4096, 100).expect("start");
        assert!(r.needs_extension());
        r.extension(&e1).expect("e1");
        assert!(r.needs_extension());
        assert_eq!(why(r.finish()), "the map ends before its last extension block");
    }

    #[test]
    fn map_rules() {
        let r = |slots: &[(u64, u64)], real: u64, stored: u64| {
            why(read(&header(real, slots, 0), &[], stored, 100))
        };
        assert_eq!(r(&[(4096, 512), (0, 512), (8192, 0)], 8192, 1024), "segments are not sorted by offset");
        assert_eq!(r(&[(0, 1024), (512, 512), (8192, 0)], 8192, 1536), "segments overlap");
        assert_eq!(r(&[(0, 512), (512, 512), (8192, 0)], 8192, 1024), "ok");
        assert_eq!(r(&[(0, 512), (8000, 512)], 8192, 1024), "a segment extends past realsize");
        assert_eq!(r(&[(0o7777777777, 0o7777777777)], 8192, 0), "a segment extends past realsize");
        assert_eq!(
            r(&[(0, 512), (8192, 0)], 8192, 1024),
            "the segment lengths do not sum to the header's size"
        );
        assert_eq!(
            r(&[(0, 1024), (8192, 0)], 8192, 512),
            "the segments hold more bytes than the header's size"
        );
        assert_eq!(
            r(&[(0, 512)], 8192, 512),
            "the map does not reach realsize (GNU ends it with a zero-length segment there)"
        );
        assert_eq!(
            r(&[(0, 0), (8192, 0)], 8192, 0),
            "a zero-length segment before realsize (only the end marker is empty)"
        );
        assert_eq!(r(&[(8192, 0), (8192, 0)], 8192, 0), "a segment follows the zero-length end marker");
        assert_eq!(
            r(&[(0, 100), (4096, 512), (8192, 0)], 8192, 612),
            "a data segment other than the last is not a multiple of 512 bytes"
        );
        assert_eq!(r(&[(0, 512), (4096, 100), (8192, 0)], 8192, 612), "ok");
    }

    #[test]
    fn empty_slots_end_the_map_strictly() {
        let mut h = header(8192, &[(0, 512), (8192, 0)], 0);
        h[INLINE_MAP.start + 3 * SLOT_LEN + 5] = b'1';
        assert_eq!(why(read(&h, &[], 512, 100)), "an empty slot, or a slot after it, holds bytes");
        // An offset in a slot whose length starts with NUL (tar-rs reads it as empty, GNU stops).
        let mut h = header(8192, &[(0, 512), (8192, 0)], 0);
        h[INLINE_MAP.start + 2 * SLOT_LEN] = b'7';
        assert_eq!(why(read(&h, &[], 512, 100)), "an empty slot, or a slot after it, holds bytes");
        assert_eq!(
            why(read(&header(8192, &[(0, 512), (8192, 0)], 1), &[], 512, 100)),
            "isextended is set after the map ended"
        );
        assert_eq!(
            why(read(&header(8192, &[(0, 512), (8192, 0)], 2), &[], 512, 100)),
            "isextended is neither 0 nor 1"
        );
        let full: Vec<(u64, u64)> = (0..4).map(|i| (i * 1024, 512)).collect();
        let h = header(8192, &full, 1);
        assert_eq!(why(read(&h, &[extension(&[], 0)], 2048, 100)), "an extension block holds no segment");
        let mut e = extension(&[(8192, 0)], 0);
        e[510] = 1;
        assert_eq!(why(read(&h, &[e], 2048, 100)), "bytes after isextended in an extension block");
        assert_eq!(why(read(&h, &[extension(&[(8192, 0)], 0)], 2048, 100)), "ok");
    }

    #[test]
    fn numbers_are_checked() {
        let mut h = header(8192, &[(8192, 0)], 0);
        h[REAL_SIZE].copy_from_slice(&[0xff; 12]);
        assert_eq!(why(read(&h, &[], 0, 100)), "size_overflow");
        let mut h = header(8192, &[(8192, 0)], 0);
        h[INLINE_MAP.start + 3] = b'9';
        assert_eq!(why(read(&h, &[], 0, 100)), "bad_numeric_field");
        // Base-256 realsize and offsets, as GNU writes from 8 GiB up.
        let mut h = header(0, &[], 0);
        let big = 9u64 << 30;
        let mut b256 = [0u8; 12];
        b256[0] = 0x80;
        b256[4..].copy_from_slice(&big.to_be_bytes());
        h[REAL_SIZE].copy_from_slice(&b256);
        h[INLINE_MAP][SLOT_OFFSET].copy_from_slice(&b256);
        num(&mut h[INLINE_MAP][SLOT_NUMBYTES], 0);
        assert_eq!(read(&h, &[], 0, 100).map(|m| m.real_size()), Ok(big));
        assert_eq!(
            MapReader::start(&h, Format::Ustar, 0, 100).map(|_| ()),
            Err(invalid("an old-GNU sparse entry needs a GNU header (magic 'ustar  ')"))
        );
    }
}
