//! The tar writer, sans IO: header records into a `Vec<u8>`, and the byte accounting of an
//! archive being written ([`Encoder`]); the caller moves the bytes.
//!
//! It is our own writer, not tar-rs', because export writes old-GNU sparse (`S`) members, which
//! tar-rs cannot write, and must know every member's exact size before writing a byte.
//!
//! It emits the exact records microsandbox 0.6.2 export writes. 0.6.2 builds its bundles with
//! `astral-tokio-tar` 0.6 (`Builder::append_path_with_name`, `HeaderMode::Complete`), whose header
//! code is tar-rs'. Every member is one GNU header (`docs/format-0.6.2.md` §6.2, §8):
//!
//! - magic `"ustar "` and version `" \0"`; entry type `'0'`;
//! - the name NUL-padded in the 100-byte name field; a longer name is preceded by a GNU
//!   `././@LongLink` (`'L'`) record whose data is the name plus one NUL, and the member's own name
//!   field then holds the first 100 bytes of the name (cut back to a UTF-8 boundary);
//! - `mode`: the full `st_mode` (file type bits included) as 7 octal digits and a NUL;
//! - `uid`, `gid`: 7 octal digits and a NUL, GNU base-256 from 2 097 152 (8^7) up;
//! - `size`, `mtime`: 11 octal digits and a NUL, GNU base-256 (first byte `0x80`) from 8 GiB up;
//! - the checksum as 7 octal digits and a NUL, summed with the checksum field as spaces;
//! - `devmajor`/`devminor` `"0000000\0"`; uname, gname, atime, ctime empty.
//!
//! The `././@LongLink` record itself has mode `0000644`, uid/gid 0, mtime 0, size = name + 1,
//! and all-zero device fields (tar-rs' `prepare_header` sets nothing else).
//!
//! Data is padded with zeros to 512 bytes and the archive ends with exactly two zero records,
//! without rounding up to a 10 240-byte tar record.
//!
//! A file with holes can become an old-GNU sparse member instead (`export --sparse`), as GNU tar
//! (`--sparse --format=gnu`) writes it: type `'S'`, `size` = the stored bytes, `realsize` = the
//! apparent size, the map's first 4 slots in the header with `isextended` set when more follow in
//! extension blocks of 21 slots (each with its own `isextended`), and GNU's last slot: a
//! zero-length segment at `realsize` (positions in [`super::layout`]). Numbers are written like
//! the other fields (octal, base-256 from 8 GiB up). The other header fields stay as for a regular
//! member, and the stored data follows the map, segment after segment, padded to a record once at
//! the end. microsandbox 0.6.2 rejects type `'S'`; GNU tar, tar-rs and snapbundle read it.
//!
//! A value that does not fit its field, an unusable name or map, and a size that overflows are
//! [`WriteError`]s, never a truncated field.

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use super::header::{checksum, padded};
use super::layout::{
    BLOCK, CHKSUM, DEVMAJOR, DEVMINOR, END_OF_ARCHIVE, EXTENSION_EXTENDED, EXTENSION_MAP, EXTENSION_SLOTS,
    GID, GNU_LONG_NAME, GNU_MAGIC, GNU_SPARSE, GNU_VERSION, INLINE_EXTENDED, INLINE_MAP, INLINE_SLOTS,
    LONG_LINK_NAME, MAGIC, MODE, MTIME, NAME, REAL_SIZE, REGULAR, SIZE, SLOT_LEN, SLOT_NUMBYTES, SLOT_OFFSET,
    TYPEFLAG, UID, VERSION,
};

/// From this value up, an 8-byte numeric field is written in base-256 (tar-rs: 8^7).
const BASE256_FROM_8: u64 = 1 << 21;
/// From this value up, a 12-byte numeric field is written in base-256 (tar-rs: 8^11, 8 GiB).
const BASE256_FROM_12: u64 = 1 << 33;
/// The mode of a `././@LongLink` record.
const LONG_LINK_MODE: u64 = 0o644;

/// The header fields 0.6.2 copies from the source file's `stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    /// Full `st_mode`, file type bits included (e.g. `0o100644`).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Data size in bytes (the logical size of a sparse member).
    pub size: u64,
}

/// Why the writer refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The member name is empty or holds a NUL byte.
    Name,
    /// A number does not fit its header field.
    Field {
        /// The field.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// The data segments of a sparse member overlap, are not sorted, or run past its size.
    SparseMap,
    /// A size overflows.
    Overflow,
    /// A member was begun, or the archive finished, while a member is still open.
    StillOpen,
    /// Member data, or a member's end, without an open member.
    NotOpen,
    /// More data than the member's header declares.
    TooMuchData,
    /// The member was closed this many bytes short of what its header declares.
    Short(u64),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Name => f.write_str("unusable tar member name (empty, or with a NUL byte)"),
            WriteError::Field { field, value } => write!(f, "{value} does not fit the tar {field} field"),
            WriteError::SparseMap => f.write_str("unusable sparse map"),
            WriteError::Overflow => f.write_str("member size overflows"),
            WriteError::StillOpen => f.write_str("a member is still open"),
            WriteError::NotOpen => f.write_str("no member is open"),
            WriteError::TooMuchData => f.write_str("more data than the header declares"),
            WriteError::Short(n) => write!(f, "member closed {n} bytes short"),
        }
    }
}

impl core::error::Error for WriteError {}

/// Zero bytes after `size` bytes of data, up to a whole record.
pub fn padding(size: u64) -> Result<u64, WriteError> {
    padded(size).map(|p| p - size).ok_or(WriteError::Overflow)
}

/// Bytes of header records (long-name record included) a member named `name` takes.
pub fn headers_len(name: &str) -> u64 {
    if name.len() <= NAME.len() {
        BLOCK as u64
    } else {
        // Header + name data with its NUL, padded + the member header.
        let data = padded(name.len() as u64 + 1).unwrap_or(u64::MAX);
        data.saturating_add(2 * BLOCK as u64)
    }
}

/// Number of header records (1, or 2 with a long-name record) a member named `name` takes.
pub fn header_count(name: &str) -> u32 {
    if name.len() <= NAME.len() {
        1
    } else {
        2
    }
}

/// Bytes a whole member (headers, data, padding) takes, or `None` on overflow.
pub fn member_len(name: &str, size: u64) -> Option<u64> {
    padded(size)?.checked_add(headers_len(name))
}

/// Extension blocks a sparse map of `segments` data segments (plus GNU's end marker) needs.
pub fn extension_blocks(segments: usize) -> usize {
    segments.saturating_add(1).saturating_sub(INLINE_SLOTS).div_ceil(EXTENSION_SLOTS)
}

/// Bytes the data segments `(offset, len)` of a sparse map store, or `None` on overflow.
pub fn stored_len(segments: &[(u64, u64)]) -> Option<u64> {
    segments.iter().try_fold(0u64, |sum, s| sum.checked_add(s.1))
}

/// Bytes a whole sparse member (headers, extension blocks, stored data, padding) takes, or
/// `None` on overflow.
pub fn sparse_member_len(name: &str, segments: &[(u64, u64)]) -> Option<u64> {
    let ext = u64::try_from(extension_blocks(segments.len())).ok()?.checked_mul(BLOCK as u64)?;
    padded(stored_len(segments)?)?.checked_add(headers_len(name))?.checked_add(ext)
}

fn field(block: &mut [u8; BLOCK], range: Range<usize>) -> &mut [u8] {
    block.get_mut(range).unwrap_or(&mut [])
}

/// tar-rs `octal_into`: right-aligned octal digits, zero-filled, closed by a NUL.
fn octal_into(dst: &mut [u8], value: u64, name: &'static str) -> Result<(), WriteError> {
    let too_big = WriteError::Field { field: name, value };
    let (nul, digits) = dst.split_last_mut().ok_or(too_big.clone())?;
    *nul = 0;
    let mut rest = value;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 8) as u8;
        rest /= 8;
    }
    if rest == 0 {
        Ok(())
    } else {
        Err(too_big)
    }
}

/// tar-rs `num_field_wrapper_into`: octal, or GNU base-256 (first byte `0x80`, then the value
/// big-endian) when the value does not fit; a value a strict reader would refuse (over
/// `i64::MAX`, or touching the first byte) is an error.
fn number_into(dst: &mut [u8], value: u64, name: &'static str) -> Result<(), WriteError> {
    let octal_below = if dst.len() == 8 { BASE256_FROM_8 } else { BASE256_FROM_12 };
    if value < octal_below {
        return octal_into(dst, value, name);
    }
    let too_big = WriteError::Field { field: name, value };
    let (first, rest) = dst.split_first_mut().ok_or(too_big.clone())?;
    let bytes = value.to_be_bytes();
    let skip = bytes.len().saturating_sub(rest.len());
    let (high, low) = bytes.split_at(skip);
    if value > i64::MAX as u64 || high.iter().any(|&b| b != 0) {
        return Err(too_big);
    }
    *first = 0x80;
    let pad = rest.len() - low.len();
    for (i, slot) in rest.iter_mut().enumerate() {
        *slot = i.checked_sub(pad).and_then(|j| low.get(j)).copied().unwrap_or(0);
    }
    Ok(())
}

/// A fresh GNU header: magic, version and mtime 0 (tar-rs `Header::new_gnu`).
fn new_gnu() -> Result<[u8; BLOCK], WriteError> {
    let mut b = [0u8; BLOCK];
    field(&mut b, MAGIC).copy_from_slice(GNU_MAGIC);
    field(&mut b, VERSION).copy_from_slice(GNU_VERSION);
    number_into(field(&mut b, MTIME), 0, "mtime")?;
    Ok(b)
}

/// Fills the checksum field (unsigned sum, checksum field counted as spaces).
fn set_checksum(b: &mut [u8; BLOCK]) -> Result<(), WriteError> {
    let sum = checksum(b);
    octal_into(field(b, CHKSUM), sum, "chksum")
}

/// Copies `bytes` into the name field, NUL-padded (no NUL when it fills the field).
fn set_name(b: &mut [u8; BLOCK], bytes: &[u8]) {
    let slot = field(b, NAME);
    slot.fill(0);
    for (s, v) in slot.iter_mut().zip(bytes) {
        *s = *v;
    }
}

/// Appends the GNU long-name records for `name`: a `././@LongLink` header whose data, the name
/// and a NUL, follows padded to a record.
pub fn long_name_records(out: &mut Vec<u8>, name: &[u8]) -> Result<(), WriteError> {
    let data_len =
        u64::try_from(name.len()).ok().and_then(|n| n.checked_add(1)).ok_or(WriteError::Overflow)?;
    let mut long = new_gnu()?;
    set_name(&mut long, LONG_LINK_NAME);
    octal_into(field(&mut long, MODE), LONG_LINK_MODE, "mode")?;
    number_into(field(&mut long, UID), 0, "uid")?;
    number_into(field(&mut long, GID), 0, "gid")?;
    number_into(field(&mut long, MTIME), 0, "mtime")?;
    number_into(field(&mut long, SIZE), data_len, "size")?;
    long[TYPEFLAG] = GNU_LONG_NAME;
    set_checksum(&mut long)?;
    out.extend_from_slice(&long);
    out.extend_from_slice(name);
    out.push(0);
    let pad = usize::try_from(padding(data_len)?).map_err(|_| WriteError::Overflow)?;
    out.resize(out.len().checked_add(pad).ok_or(WriteError::Overflow)?, 0);
    Ok(())
}

/// The header records of a regular-file member named `name`: the member header alone, or the
/// long-name records and the member header.
pub fn member_headers(name: &str, meta: &EntryMeta) -> Result<Vec<u8>, WriteError> {
    headers(name, meta, None)
}

/// The header records of an old-GNU sparse member named `name` of `meta.size` logical bytes
/// whose data is at `segments` (`(offset, len)`, sorted, not overlapping, inside the file; see
/// [`super::sparse_plan::sparse_map`]): as [`member_headers`], with type `'S'`, then its
/// extension blocks.
pub fn sparse_member_headers(
    name: &str,
    meta: &EntryMeta,
    segments: &[(u64, u64)],
) -> Result<Vec<u8>, WriteError> {
    headers(name, meta, Some(segments))
}

/// Writes `slots` into the 24-byte slot fields of `map`.
fn put_slots(map: &mut [u8], slots: &[(u64, u64)]) -> Result<(), WriteError> {
    for (slot, &(offset, len)) in map.chunks_mut(SLOT_LEN).zip(slots) {
        number_into(slot.get_mut(SLOT_OFFSET).unwrap_or(&mut []), offset, "sparse offset")?;
        number_into(slot.get_mut(SLOT_NUMBYTES).unwrap_or(&mut []), len, "sparse numbytes")?;
    }
    Ok(())
}

/// Whether `segments` are sorted, apart, and end within `size`.
fn usable_map(segments: &[(u64, u64)], size: u64) -> bool {
    let mut end = 0u64;
    for &(offset, len) in segments {
        match offset.checked_add(len) {
            Some(e) if offset >= end && e <= size => end = e,
            _ => return false,
        }
    }
    true
}

fn headers(name: &str, meta: &EntryMeta, sparse: Option<&[(u64, u64)]>) -> Result<Vec<u8>, WriteError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.contains(&0) {
        return Err(WriteError::Name);
    }
    let ext_blocks = sparse.map_or(0, |s| extension_blocks(s.len()));
    let capacity = headers_len(name).saturating_add((ext_blocks as u64).saturating_mul(BLOCK as u64));
    let mut out = Vec::with_capacity(usize::try_from(capacity).unwrap_or(BLOCK));
    let mut header = new_gnu()?;
    if bytes.len() > NAME.len() {
        long_name_records(&mut out, bytes)?;
        // The member's own name: the first 100 bytes, cut back to a character boundary.
        let cut = (0..=NAME.len()).rev().find(|&i| name.is_char_boundary(i)).unwrap_or(0);
        set_name(&mut header, bytes.get(..cut).unwrap_or(&[]));
    } else {
        set_name(&mut header, bytes);
    }
    number_into(field(&mut header, MTIME), meta.mtime, "mtime")?;
    number_into(field(&mut header, UID), meta.uid, "uid")?;
    number_into(field(&mut header, GID), meta.gid, "gid")?;
    octal_into(field(&mut header, MODE), u64::from(meta.mode), "mode")?;
    let mut extension_slots: &[(u64, u64)] = &[];
    let slots: Vec<(u64, u64)>;
    match sparse {
        None => {
            header[TYPEFLAG] = REGULAR;
            number_into(field(&mut header, SIZE), meta.size, "size")?;
        }
        Some(segments) => {
            if !usable_map(segments, meta.size) {
                return Err(WriteError::SparseMap);
            }
            // GNU tar ends every map with a zero-length segment at the real size.
            slots = segments.iter().copied().chain([(meta.size, 0)]).collect();
            let (inline, rest) = slots.split_at(slots.len().min(INLINE_SLOTS));
            header[TYPEFLAG] = GNU_SPARSE;
            let stored = stored_len(segments).ok_or(WriteError::Overflow)?;
            number_into(field(&mut header, SIZE), stored, "size")?;
            put_slots(field(&mut header, INLINE_MAP), inline)?;
            header[INLINE_EXTENDED] = u8::from(!rest.is_empty());
            number_into(field(&mut header, REAL_SIZE), meta.size, "realsize")?;
            extension_slots = rest;
        }
    }
    octal_into(field(&mut header, DEVMAJOR), 0, "devmajor")?;
    octal_into(field(&mut header, DEVMINOR), 0, "devminor")?;
    set_checksum(&mut header)?;
    out.extend_from_slice(&header);
    let mut chunks = extension_slots.chunks(EXTENSION_SLOTS).peekable();
    while let Some(chunk) = chunks.next() {
        let mut block = [0u8; BLOCK];
        put_slots(field(&mut block, EXTENSION_MAP), chunk)?;
        block[EXTENSION_EXTENDED] = u8::from(chunks.peek().is_some());
        out.extend_from_slice(&block);
    }
    Ok(out)
}

/// The accounting of an archive being written: each member gets exactly the data its header
/// declares, then its padding; the caller writes the bytes it is handed.
#[derive(Debug, Default)]
pub struct Encoder {
    /// Data bytes still owed to the open member, and its padding, if one is open.
    open: Option<(u64, u64)>,
}

impl Encoder {
    /// An encoder at the start of an archive.
    pub fn new() -> Self {
        Encoder { open: None }
    }

    fn closed(&self) -> Result<(), WriteError> {
        match self.open {
            Some(_) => Err(WriteError::StillOpen),
            None => Ok(()),
        }
    }

    /// Opens a regular member; returns its header records, which its `meta.size` data bytes
    /// must follow.
    pub fn begin(&mut self, name: &str, meta: &EntryMeta) -> Result<Vec<u8>, WriteError> {
        self.closed()?;
        let pad = padding(meta.size)?;
        let headers = member_headers(name, meta)?;
        self.open = Some((meta.size, pad));
        Ok(headers)
    }

    /// Opens an old-GNU sparse member of `meta.size` logical bytes whose data is at `segments`;
    /// returns its header records and map, which exactly the segments' bytes must follow, in
    /// order.
    pub fn begin_sparse(
        &mut self,
        name: &str,
        meta: &EntryMeta,
        segments: &[(u64, u64)],
    ) -> Result<Vec<u8>, WriteError> {
        self.closed()?;
        let stored = stored_len(segments).ok_or(WriteError::Overflow)?;
        let pad = padding(stored)?;
        let headers = sparse_member_headers(name, meta, segments)?;
        self.open = Some((stored, pad));
        Ok(headers)
    }

    /// Counts `n` bytes of the open member's data, before the caller writes them.
    pub fn data(&mut self, n: u64) -> Result<(), WriteError> {
        match self.open.as_mut() {
            Some((remaining, _)) if *remaining >= n => {
                *remaining -= n;
                Ok(())
            }
            Some(_) => Err(WriteError::TooMuchData),
            None => Err(WriteError::NotOpen),
        }
    }

    /// Closes the member once all its data is counted; returns the zero bytes of padding the
    /// caller writes next.
    pub fn end(&mut self) -> Result<u64, WriteError> {
        match self.open.take() {
            Some((0, pad)) => Ok(pad),
            Some((remaining, _)) => Err(WriteError::Short(remaining)),
            None => Err(WriteError::NotOpen),
        }
    }

    /// The end-of-archive records, once no member is open.
    pub fn finish(&self) -> Result<&'static [u8], WriteError> {
        self.closed()?;
        Ok(&END_OF_ARCHIVE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::header;
    use crate::tar::sparse::{MapReader, SparseMap};
    use alloc::format;
    use alloc::string::ToString;

    fn meta(size: u64) -> EntryMeta {
        EntryMeta { mode: 0o100644, uid: 0, gid: 0, mtime: 1, size }
    }

    #[test]
    fn numbers_follow_tar_rs() {
        let mut f = [0xffu8; 8];
        assert_eq!(octal_into(&mut f, 0o100644, "mode"), Ok(()));
        assert_eq!(&f, b"0100644\0");
        let mut s = [0u8; 12];
        assert_eq!(number_into(&mut s, 0o773, "size"), Ok(()));
        assert_eq!(&s, b"00000000773\0");
        assert_eq!(number_into(&mut s, 8 << 30, "size"), Ok(()));
        assert_eq!(s, [0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]);
        let mut u = [0u8; 8];
        assert_eq!(number_into(&mut u, 2_097_152, "uid"), Ok(()));
        assert_eq!(u, [0x80, 0, 0, 0, 0, 0x20, 0, 0]);
        assert_eq!(number_into(&mut u, 2_097_151, "uid"), Ok(()));
        assert_eq!(&u, b"7777777\0");
    }

    #[test]
    fn values_that_do_not_fit_are_errors() {
        let mut f = [0u8; 8];
        assert_eq!(
            octal_into(&mut f, 0o10000000, "mode"),
            Err(WriteError::Field { field: "mode", value: 0o10000000 })
        );
        assert_eq!(
            number_into(&mut f, 1 << 56, "uid"),
            Err(WriteError::Field { field: "uid", value: 1 << 56 })
        );
        let mut s = [0u8; 12];
        assert_eq!(
            number_into(&mut s, u64::MAX, "size"),
            Err(WriteError::Field { field: "size", value: u64::MAX })
        );
        assert_eq!(number_into(&mut s, i64::MAX as u64, "size"), Ok(()));
        assert_eq!(header::parse_number(&s, "size"), Ok(i64::MAX as u64));
        let big = EntryMeta { uid: 1 << 60, ..meta(0) };
        assert_eq!(member_headers("a", &big), Err(WriteError::Field { field: "uid", value: 1 << 60 }));
    }

    #[test]
    fn headers_read_back_with_the_reader() {
        let h = member_headers("a/b", &meta(3)).unwrap_or_default();
        let block: [u8; BLOCK] = h.as_slice().try_into().unwrap_or([0; BLOCK]);
        let hdr = header::parse(&block).expect("header");
        assert_eq!(hdr.name, b"a/b");
        assert_eq!((hdr.entry_type, hdr.format), (header::EntryType::Regular, header::Format::Gnu));
        assert_eq!((hdr.mode, hdr.size, hdr.mtime, hdr.has_link_name), (0o100644, 3, 1, false));
        assert_eq!(&h[DEVMAJOR], b"0000000\0");
        assert_eq!(&h[DEVMINOR], b"0000000\0");
        assert_eq!(member_headers("", &meta(3)), Err(WriteError::Name));
        assert_eq!(member_headers("a\0b", &meta(3)), Err(WriteError::Name));
    }

    #[test]
    fn long_names_get_a_long_link_record() {
        let short = "a".repeat(100);
        assert_eq!(member_headers(&short, &meta(3)).map(|h| h.len()).ok(), Some(BLOCK));
        let long = format!("{}/{}", "p".repeat(23), "é".repeat(60));
        let h = member_headers(&long, &meta(3)).unwrap_or_default();
        assert_eq!(h.len() as u64, headers_len(&long));
        assert_eq!(h.len(), 3 * BLOCK);
        assert_eq!(header_count(&long), 2);
        assert_eq!(&h[..13], LONG_LINK_NAME);
        assert_eq!(h[TYPEFLAG], GNU_LONG_NAME);
        assert_eq!(&h[SIZE], format!("{:011o}\0", long.len() + 1).as_bytes());
        assert_eq!(&h[512..512 + long.len()], long.as_bytes());
        // The member's name is cut at a character boundary before byte 100.
        let own = &h[1024..1124];
        let end = own.iter().position(|&b| b == 0).unwrap_or(100);
        assert!(end <= 100 && long.as_bytes().starts_with(&own[..end]));
        assert!(core::str::from_utf8(&own[..end]).is_ok());
    }

    /// Reads a sparse member's headers back with the core's strict map reader.
    fn read_map(h: &[u8]) -> SparseMap {
        let block =
            |i: usize| -> [u8; BLOCK] { h[i * BLOCK..(i + 1) * BLOCK].try_into().unwrap_or([0; BLOCK]) };
        let first = block(0);
        let hdr = header::parse(&first).expect("header");
        let mut r = MapReader::start(&first, hdr.format, hdr.size, 1000).expect("map");
        let mut i = 1;
        while r.needs_extension() {
            r.extension(&block(i)).expect("extension");
            i += 1;
        }
        assert_eq!(i * BLOCK, h.len(), "every block read");
        r.finish().expect("checked map")
    }

    #[test]
    fn sparse_headers_follow_gnu_tar() {
        // What GNU tar 1.34 writes for this file (see host/tests/sparse.rs for the comparison).
        let h =
            sparse_member_headers("a", &meta(1 << 20), &[(8192, 8192), (98304, 4096)]).unwrap_or_default();
        assert_eq!(h.len(), BLOCK);
        assert_eq!(h[TYPEFLAG], GNU_SPARSE);
        assert_eq!(&h[SIZE], b"00000030000\0");
        assert_eq!(&h[386..410], b"00000020000\x0000000020000\0");
        assert_eq!(&h[410..434], b"00000300000\x0000000010000\0");
        assert_eq!(&h[434..458], b"00004000000\x0000000000000\0");
        assert!(h[458..482].iter().all(|&b| b == 0));
        assert_eq!(h[482], 0);
        assert_eq!(&h[483..495], b"00004000000\0");
        let m = read_map(&h);
        assert_eq!((m.real_size(), m.stored_size(), m.segments().len()), (1 << 20, 12288, 2));
    }

    #[test]
    fn long_sparse_maps_get_extension_blocks() {
        for n in [3usize, 4, 24, 25, 46, 100] {
            let segs: Vec<(u64, u64)> = (0..n as u64).map(|i| (i * 8192, 4096)).collect();
            let h = sparse_member_headers("x/y", &meta(n as u64 * 8192 + 1), &segs).unwrap_or_default();
            assert_eq!(h.len(), (1 + extension_blocks(n)) * BLOCK, "{n}");
            let m = read_map(&h);
            let got: Vec<(u64, u64)> = m.segments().iter().map(|s| (s.offset, s.len)).collect();
            assert_eq!(got, segs, "{n}");
            assert_eq!(
                sparse_member_len("x/y", &segs),
                Some(h.len() as u64 + padded(n as u64 * 4096).unwrap_or(0))
            );
        }
        // 4 + 21 slots (24 segments and the marker) fill the header and one block exactly.
        assert_eq!(
            (extension_blocks(3), extension_blocks(4), extension_blocks(24), extension_blocks(25)),
            (0, 1, 1, 2)
        );
        // Base-256 from 8 GiB up, as GNU writes.
        let h = sparse_member_headers("z", &meta(9 << 30), &[(8 << 30, 4096)]).unwrap_or_default();
        assert_eq!(h[INLINE_MAP.start], 0x80);
        assert_eq!(h[REAL_SIZE.start], 0x80);
        assert_eq!(read_map(&h).real_size(), 9 << 30);
    }

    #[test]
    fn unusable_sparse_maps_are_refused() {
        let m = meta(10_000);
        assert_eq!(sparse_member_headers("a", &m, &[(0, 512), (100, 10)]), Err(WriteError::SparseMap));
        assert_eq!(sparse_member_headers("a", &m, &[(9999, 2)]), Err(WriteError::SparseMap));
        assert_eq!(sparse_member_headers("a", &m, &[(u64::MAX, 2)]), Err(WriteError::SparseMap));
        assert_eq!(stored_len(&[(0, u64::MAX), (0, 1)]), None);
        assert_eq!(sparse_member_len("a", &[(0, u64::MAX), (0, 1)]), None);
    }

    /// Runs `enc` over a whole member, collecting the bytes a caller would write.
    fn write_member(
        enc: &mut Encoder,
        out: &mut Vec<u8>,
        headers: Vec<u8>,
        data: &[u8],
    ) -> Result<(), WriteError> {
        out.extend_from_slice(&headers);
        enc.data(data.len() as u64)?;
        out.extend_from_slice(data);
        let pad = enc.end()?;
        out.resize(out.len() + pad as usize, 0);
        Ok(())
    }

    #[test]
    fn sparse_members_take_exactly_the_stored_bytes() {
        let m = EntryMeta { mtime: 0, ..meta(10_000) };
        let segs = [(0, 512), (9000, 1000)];
        let mut enc = Encoder::new();
        assert!(enc.begin_sparse("a/b", &m, &segs).is_ok());
        assert_eq!(enc.data(1000), Ok(()));
        assert_eq!(enc.end(), Err(WriteError::Short(512)));
        let mut enc = Encoder::new();
        let mut out = Vec::new();
        let headers = enc.begin_sparse("a/b", &m, &segs).unwrap_or_default();
        assert_eq!(write_member(&mut enc, &mut out, headers, &[1; 1512]), Ok(()));
        assert_eq!(Some(out.len() as u64), sparse_member_len("a/b", &segs));
        let mut enc = Encoder::new();
        assert_eq!(enc.begin_sparse("a/b", &m, &[(0, 512), (100, 10)]), Err(WriteError::SparseMap));
        assert_eq!(enc.begin_sparse("a/b", &m, &[(9999, 2)]), Err(WriteError::SparseMap));
    }

    #[test]
    fn the_encoder_enforces_sizes() {
        let m = EntryMeta { mtime: 0, ..meta(4) };
        let mut enc = Encoder::new();
        assert!(enc.begin("a/b", &m).is_ok());
        assert_eq!(enc.begin("a/c", &m), Err(WriteError::StillOpen));
        assert_eq!(enc.finish(), Err(WriteError::StillOpen));
        assert_eq!(enc.data(5), Err(WriteError::TooMuchData));
        assert_eq!(enc.data(2), Ok(()));
        assert_eq!(enc.end(), Err(WriteError::Short(2)));
        assert_eq!(enc.end(), Err(WriteError::NotOpen));
        assert_eq!(enc.data(1), Err(WriteError::NotOpen));
        let mut out = Vec::new();
        let headers = enc.begin("a/b", &m).unwrap_or_default();
        assert_eq!(write_member(&mut enc, &mut out, headers, b"abcd"), Ok(()));
        out.extend_from_slice(enc.finish().unwrap_or_default());
        assert_eq!(out.len(), 4 * BLOCK);
        assert_eq!(Some(out.len() as u64 - END_OF_ARCHIVE.len() as u64), member_len("a/b", 4));
        assert_eq!(padding(u64::MAX), Err(WriteError::Overflow));
        assert_eq!(enc.begin("a/b", &meta(u64::MAX)), Err(WriteError::Overflow));
        assert_eq!(WriteError::Short(2).to_string(), "member closed 2 bytes short");
    }
}
