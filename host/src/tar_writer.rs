//! A tar writer that emits the exact records microsandbox 0.6.2 export writes.
//!
//! 0.6.2 builds its bundles with `astral-tokio-tar` 0.6 (`Builder::append_path_with_name`,
//! `HeaderMode::Complete`), whose header code is tar-rs'. Every member is one GNU header
//! (spec §5.1):
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
//! With `export --sparse`, a file with holes becomes an old-GNU sparse member instead, as GNU tar
//! (`--sparse --format=gnu`) writes it: type `'S'`, `size` = the stored bytes, `realsize` (483) =
//! the apparent size, the map's first 4 slots (offset and length, 12 bytes each, from 386) in
//! the header with `isextended` (482) set when more follow in extension blocks of 21 slots (each
//! with its own `isextended` at 504), and GNU's last slot: a zero-length segment at `realsize`.
//! Numbers are written like the other fields (octal, base-256 from 8 GiB up). The other header
//! fields stay as for a regular member (tar-rs style `mode`, device fields), and the stored data
//! follows the map, segment after segment, padded to a record once at the end. microsandbox 0.6.2
//! rejects type `'S'`; GNU tar, tar-rs and snapbundle read it.

use std::fs::Metadata;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;

/// Size of a tar record.
pub const BLOCK: usize = 512;

/// The two zero records that end an archive.
pub const END_OF_ARCHIVE: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

/// The name GNU long-name records carry.
pub const LONG_LINK_NAME: &[u8] = b"././@LongLink";

/// Length of the header's name field.
const NAME_LEN: usize = 100;

/// Zeros for holes and padding.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

// Field offsets of the (old/GNU) header.
const MODE: usize = 100;
const UID: usize = 108;
const GID: usize = 116;
const SIZE: usize = 124;
const MTIME: usize = 136;
const CHKSUM: usize = 148;
const TYPEFLAG: usize = 156;
const MAGIC: usize = 257;
const VERSION: usize = 263;
const DEVMAJOR: usize = 329;
const DEVMINOR: usize = 337;
// Old-GNU sparse fields (GNU tar's `oldgnu_header` and `sparse_header`).
const SPARSE_MAP: usize = 386;
const SPARSE_EXTENDED: usize = 482;
const REAL_SIZE: usize = 483;
const INLINE_SLOTS: usize = 4;
const EXTENSION_SLOTS: usize = 21;
const SLOT: usize = 24;
const EXTENSION_EXTENDED: usize = 504;

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
    /// Data size in bytes.
    pub size: u64,
}

impl EntryMeta {
    /// The fields of a file's metadata. A modification time before the epoch is written as 0
    /// (0.6.2 would wrap it to a huge unsigned value that no strict reader accepts).
    pub fn from_metadata(meta: &Metadata) -> EntryMeta {
        EntryMeta {
            mode: meta.mode(),
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            mtime: u64::try_from(meta.mtime()).unwrap_or(0),
            size: meta.len(),
        }
    }
}

/// `size` rounded up to whole records, or `None` on overflow.
pub fn padded(size: u64) -> Option<u64> {
    size.checked_add(BLOCK as u64 - 1).map(|s| s & !(BLOCK as u64 - 1))
}

/// Bytes of header records (long-name record included) a member named `name` takes.
pub fn headers_len(name: &str) -> u64 {
    if name.len() <= NAME_LEN {
        BLOCK as u64
    } else {
        // Header + name data with its NUL, padded + the member header.
        let data = padded(name.len() as u64 + 1).unwrap_or(u64::MAX);
        data.saturating_add(2 * BLOCK as u64)
    }
}

/// Number of header records (1, or 2 with a long-name record) a member named `name` takes.
pub fn header_count(name: &str) -> u32 {
    if name.len() <= NAME_LEN {
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
    (segments + 1).saturating_sub(INLINE_SLOTS).div_ceil(EXTENSION_SLOTS)
}

/// Bytes the data segments of a sparse map store.
pub fn stored_len(segments: &[(u64, u64)]) -> u64 {
    segments.iter().map(|s| s.1).sum()
}

/// Bytes a whole sparse member (headers, extension blocks, stored data, padding) takes, or
/// `None` on overflow.
pub fn sparse_member_len(name: &str, segments: &[(u64, u64)]) -> Option<u64> {
    let ext = u64::try_from(extension_blocks(segments.len())).ok()?.checked_mul(BLOCK as u64)?;
    padded(stored_len(segments))?.checked_add(headers_len(name))?.checked_add(ext)
}

/// tar-rs `octal_into`: right-aligned octal digits, zero-filled, closed by a NUL.
fn octal_into(dst: &mut [u8], value: u64) {
    let digits = format!("{value:o}");
    let mut src = std::iter::once(b'\0').chain(digits.bytes().rev().chain(std::iter::repeat(b'0')));
    for slot in dst.iter_mut().rev() {
        *slot = src.next().unwrap_or(b'0');
    }
}

/// tar-rs `num_field_wrapper_into`: octal, or GNU base-256 when the value does not fit.
fn number_into(dst: &mut [u8], value: u64) {
    if value >= 8_589_934_592 || (value >= 2_097_152 && dst.len() == 8) {
        let len = dst.len();
        dst.fill(0);
        if let Some(tail) = dst.get_mut(len.saturating_sub(8)..) {
            for (slot, byte) in tail.iter_mut().zip(value.to_be_bytes()) {
                *slot = byte;
            }
        }
        if let Some(first) = dst.first_mut() {
            *first |= 0x80;
        }
    } else {
        octal_into(dst, value);
    }
}

fn field(block: &mut [u8; BLOCK], start: usize, len: usize) -> &mut [u8] {
    block.get_mut(start..start + len).unwrap_or(&mut [])
}

/// A fresh GNU header: magic, version and mtime 0 (tar-rs `Header::new_gnu`).
fn new_gnu() -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    field(&mut b, MAGIC, 6).copy_from_slice(b"ustar ");
    field(&mut b, VERSION, 2).copy_from_slice(b" \0");
    number_into(field(&mut b, MTIME, 12), 0);
    b
}

/// Fills the checksum field (unsigned sum, checksum field counted as spaces).
fn set_checksum(b: &mut [u8; BLOCK]) {
    let sum: u64 = b
        .iter()
        .enumerate()
        .map(|(i, &v)| if (CHKSUM..CHKSUM + 8).contains(&i) { u64::from(b' ') } else { u64::from(v) })
        .sum();
    octal_into(field(b, CHKSUM, 8), sum);
}

/// Copies `bytes` into the name field, NUL-padded (no NUL when it fills the field).
fn set_name(b: &mut [u8; BLOCK], bytes: &[u8]) {
    let slot = field(b, 0, NAME_LEN);
    slot.fill(0);
    for (s, v) in slot.iter_mut().zip(bytes) {
        *s = *v;
    }
}

/// The header records of a regular-file member named `name`: the member header alone, or a
/// `././@LongLink` record, its name data, and the member header.
pub fn member_headers(name: &str, meta: &EntryMeta) -> io::Result<Vec<u8>> {
    headers(name, meta, None)
}

/// The header records of an old-GNU sparse member named `name` of `meta.size` logical bytes
/// whose data is at `segments` (sorted, not overlapping, inside the file; see
/// [`crate::sparse::sparse_map`]): as [`member_headers`], with type `'S'`, then its extension
/// blocks.
pub fn sparse_member_headers(name: &str, meta: &EntryMeta, segments: &[(u64, u64)]) -> io::Result<Vec<u8>> {
    headers(name, meta, Some(segments))
}

/// Writes `slots` into 24-byte slot fields starting at `at`.
fn put_slots(b: &mut [u8; BLOCK], at: usize, slots: &[(u64, u64)]) {
    for (i, &(offset, len)) in slots.iter().enumerate() {
        number_into(field(b, at + i * SLOT, 12), offset);
        number_into(field(b, at + i * SLOT + 12, 12), len);
    }
}

fn headers(name: &str, meta: &EntryMeta, sparse: Option<&[(u64, u64)]>) -> io::Result<Vec<u8>> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unusable tar member name {name:?}"),
        ));
    }
    let ext_blocks = sparse.map_or(0, |s| extension_blocks(s.len()));
    let capacity = headers_len(name).saturating_add(ext_blocks as u64 * BLOCK as u64);
    let mut out = Vec::with_capacity(usize::try_from(capacity).unwrap_or(BLOCK));
    let mut header = new_gnu();
    if bytes.len() > NAME_LEN {
        let mut long = new_gnu();
        set_name(&mut long, LONG_LINK_NAME);
        octal_into(field(&mut long, MODE, 8), 0o644);
        number_into(field(&mut long, UID, 8), 0);
        number_into(field(&mut long, GID, 8), 0);
        number_into(field(&mut long, MTIME, 12), 0);
        number_into(field(&mut long, SIZE, 12), bytes.len() as u64 + 1);
        long[TYPEFLAG] = b'L';
        set_checksum(&mut long);
        out.extend_from_slice(&long);
        out.extend_from_slice(bytes);
        out.push(0);
        let pad = padded(out.len() as u64).unwrap_or(0);
        out.resize(usize::try_from(pad).unwrap_or(out.len()), 0);
        // The member's own name: the first 100 bytes, cut back to a character boundary.
        let mut cut = NAME_LEN;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        set_name(&mut header, bytes.get(..cut).unwrap_or(&[]));
    } else {
        set_name(&mut header, bytes);
    }
    number_into(field(&mut header, MTIME, 12), meta.mtime);
    number_into(field(&mut header, UID, 8), meta.uid);
    number_into(field(&mut header, GID, 8), meta.gid);
    octal_into(field(&mut header, MODE, 8), u64::from(meta.mode));
    let mut extension_slots: &[(u64, u64)] = &[];
    let slots: Vec<(u64, u64)>;
    match sparse {
        None => {
            header[TYPEFLAG] = b'0';
            number_into(field(&mut header, SIZE, 12), meta.size);
        }
        Some(segments) => {
            if segments.windows(2).any(|w| w[1].0 < w[0].0.saturating_add(w[0].1))
                || segments.last().is_some_and(|l| l.0.saturating_add(l.1) > meta.size)
            {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "unusable sparse map"));
            }
            // GNU tar ends every map with a zero-length segment at the real size.
            slots = segments.iter().copied().chain([(meta.size, 0)]).collect();
            let (inline, rest) = slots.split_at(slots.len().min(INLINE_SLOTS));
            header[TYPEFLAG] = b'S';
            number_into(field(&mut header, SIZE, 12), stored_len(segments));
            put_slots(&mut header, SPARSE_MAP, inline);
            header[SPARSE_EXTENDED] = u8::from(!rest.is_empty());
            number_into(field(&mut header, REAL_SIZE, 12), meta.size);
            extension_slots = rest;
        }
    }
    octal_into(field(&mut header, DEVMAJOR, 8), 0);
    octal_into(field(&mut header, DEVMINOR, 8), 0);
    set_checksum(&mut header);
    out.extend_from_slice(&header);
    let mut chunks = extension_slots.chunks(EXTENSION_SLOTS).peekable();
    while let Some(chunk) = chunks.next() {
        let mut block = [0u8; BLOCK];
        put_slots(&mut block, 0, chunk);
        block[EXTENSION_EXTENDED] = u8::from(chunks.peek().is_some());
        out.extend_from_slice(&block);
    }
    Ok(out)
}

/// Streams members into `inner`, checking that each gets exactly the data its header declares.
#[derive(Debug)]
pub struct TarWriter<W: Write> {
    inner: W,
    position: u64,
    /// Data bytes still owed to the open member and its padding, if one is open.
    open: Option<(u64, u64)>,
}

fn misuse(what: &str) -> io::Error {
    io::Error::other(format!("tar writer: {what}"))
}

impl<W: Write> TarWriter<W> {
    /// A writer at the start of an archive.
    pub fn new(inner: W) -> Self {
        TarWriter { inner, position: 0, open: None }
    }

    /// Bytes of tar written so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.position = self.position.saturating_add(bytes.len() as u64);
        Ok(())
    }

    /// Writes the header records of a member; its data must follow.
    pub fn begin(&mut self, name: &str, meta: &EntryMeta) -> io::Result<()> {
        if self.open.is_some() {
            return Err(misuse("a member is still open"));
        }
        let pad = padded(meta.size).ok_or_else(|| misuse("member size overflows"))? - meta.size;
        let headers = member_headers(name, meta)?;
        self.put(&headers)?;
        self.open = Some((meta.size, pad));
        Ok(())
    }

    fn take(&mut self, n: u64) -> io::Result<()> {
        match self.open.as_mut() {
            Some((remaining, _)) if *remaining >= n => {
                *remaining -= n;
                Ok(())
            }
            Some(_) => Err(misuse("more data than the header declares")),
            None => Err(misuse("data outside a member")),
        }
    }

    /// Writes the header records and the map of an old-GNU sparse member of `meta.size` logical
    /// bytes whose data is at `segments`; exactly the segments' bytes must follow, in order.
    pub fn begin_sparse(&mut self, name: &str, meta: &EntryMeta, segments: &[(u64, u64)]) -> io::Result<()> {
        if self.open.is_some() {
            return Err(misuse("a member is still open"));
        }
        let stored = stored_len(segments);
        let pad = padded(stored).ok_or_else(|| misuse("member size overflows"))? - stored;
        let headers = sparse_member_headers(name, meta, segments)?;
        self.put(&headers)?;
        self.open = Some((stored, pad));
        Ok(())
    }

    /// Writes member data.
    pub fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.take(bytes.len() as u64)?;
        self.put(bytes)
    }

    fn put_zeros(&mut self, mut n: u64) -> io::Result<()> {
        while n > 0 {
            let k = n.min(ZEROS.len() as u64);
            self.put(ZEROS.get(..usize::try_from(k).unwrap_or(0)).unwrap_or(&[]))?;
            n -= k;
        }
        Ok(())
    }

    /// Writes `n` zero bytes of member data (a hole).
    pub fn zeros(&mut self, n: u64) -> io::Result<()> {
        self.take(n)?;
        self.put_zeros(n)
    }

    /// Closes the member: all declared data must have been written; pads to a record.
    pub fn end(&mut self) -> io::Result<()> {
        match self.open.take() {
            Some((0, pad)) => self.put_zeros(pad),
            Some((remaining, _)) => Err(misuse(&format!("member closed {remaining} bytes short"))),
            None => Err(misuse("no member is open")),
        }
    }

    /// Writes a whole member from memory.
    pub fn append(&mut self, name: &str, meta: &EntryMeta, bytes: &[u8]) -> io::Result<()> {
        self.begin(name, meta)?;
        self.data(bytes)?;
        self.end()
    }

    /// Writes the two end-of-archive records and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.open.is_some() {
            return Err(misuse("a member is still open"));
        }
        self.put(&END_OF_ARCHIVE)?;
        Ok(self.inner)
    }

    /// The inner writer, without end-of-archive records (for abandoning a failed archive).
    pub fn into_inner_unfinished(self) -> W {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_tar_rs() {
        let mut f = [0xffu8; 8];
        octal_into(&mut f, 0o100644);
        assert_eq!(&f, b"0100644\0");
        let mut s = [0u8; 12];
        number_into(&mut s, 0o773);
        assert_eq!(&s, b"00000000773\0");
        number_into(&mut s, 8 << 30);
        assert_eq!(s, [0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]);
        let mut u = [0u8; 8];
        number_into(&mut u, 2_097_152);
        assert_eq!(u, [0x80, 0, 0, 0, 0, 0x20, 0, 0]);
        number_into(&mut u, 2_097_151);
        assert_eq!(&u, b"7777777\0");
    }

    #[test]
    fn long_names_get_a_long_link_record() {
        let meta = EntryMeta { mode: 0o100644, uid: 0, gid: 0, mtime: 1, size: 3 };
        let short = "a".repeat(100);
        assert_eq!(member_headers(&short, &meta).map(|h| h.len()).ok(), Some(BLOCK));
        let long = format!("{}/{}", "p".repeat(23), "é".repeat(60));
        let h = member_headers(&long, &meta).unwrap_or_default();
        assert_eq!(h.len() as u64, headers_len(&long));
        assert_eq!(h.len(), 3 * BLOCK);
        assert_eq!(&h[..13], LONG_LINK_NAME);
        assert_eq!(h[156], b'L');
        assert_eq!(&h[124..136], format!("{:011o}\0", long.len() + 1).as_bytes());
        assert_eq!(&h[512..512 + long.len()], long.as_bytes());
        // The member's name is cut at a character boundary before byte 100.
        let own = &h[1024..1124];
        let end = own.iter().position(|&b| b == 0).unwrap_or(100);
        assert!(end <= 100 && long.as_bytes().starts_with(&own[..end]));
        assert!(std::str::from_utf8(&own[..end]).is_ok());
    }

    /// Reads a sparse member's headers back with the core's strict map reader.
    fn read_map(h: &[u8]) -> snapbundle_core::tar::sparse::SparseMap {
        use snapbundle_core::tar::{header, sparse::MapReader};
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
        let meta = EntryMeta { mode: 0o100644, uid: 0, gid: 0, mtime: 1, size: 1 << 20 };
        // What GNU tar 1.34 writes for this file (see host/tests/sparse.rs for the comparison).
        let h = sparse_member_headers("a", &meta, &[(8192, 8192), (98304, 4096)]).unwrap_or_default();
        assert_eq!(h.len(), BLOCK);
        assert_eq!(h[156], b'S');
        assert_eq!(&h[124..136], b"00000030000\0");
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
            let meta = EntryMeta { mode: 0o100644, uid: 0, gid: 0, mtime: 1, size: n as u64 * 8192 + 1 };
            let h = sparse_member_headers("x/y", &meta, &segs).unwrap_or_default();
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
        let meta = EntryMeta { mode: 0o100644, uid: 0, gid: 0, mtime: 1, size: 9 << 30 };
        let h = sparse_member_headers("z", &meta, &[(8 << 30, 4096)]).unwrap_or_default();
        assert_eq!(h[386], 0x80);
        assert_eq!(h[483], 0x80);
        assert_eq!(read_map(&h).real_size(), 9 << 30);
    }

    #[test]
    fn sparse_writer_takes_exactly_the_stored_bytes() {
        let meta = EntryMeta { mode: 0o100644, uid: 0, gid: 0, mtime: 0, size: 10_000 };
        let mut w = TarWriter::new(Vec::new());
        assert!(w.begin_sparse("a/b", &meta, &[(0, 512), (9000, 1000)]).is_ok());
        assert!(w.data(&[1; 1000]).is_ok());
        assert!(w.end().is_err(), "512 bytes short");
        let mut w = TarWriter::new(Vec::new());
        assert!(w.begin_sparse("a/b", &meta, &[(0, 512), (9000, 1000)]).is_ok());
        assert!(w.data(&[1; 1512]).is_ok());
        assert!(w.end().is_ok());
        assert_eq!(w.position(), sparse_member_len("a/b", &[(0, 512), (9000, 1000)]).unwrap_or(0));
        let mut w = TarWriter::new(Vec::new());
        assert!(w.begin_sparse("a/b", &meta, &[(0, 512), (100, 10)]).is_err(), "overlap");
        assert!(w.begin_sparse("a/b", &meta, &[(9999, 2)]).is_err(), "past the end");
    }

    #[test]
    fn writer_enforces_sizes() {
        let meta = EntryMeta { mode: 0o100644, uid: 0, gid: 0, mtime: 0, size: 4 };
        let mut w = TarWriter::new(Vec::new());
        assert!(w.begin("a/b", &meta).is_ok());
        assert!(w.data(b"abcde").is_err());
        assert!(w.data(b"ab").is_ok());
        assert!(w.end().is_err());
        let mut w = TarWriter::new(Vec::new());
        assert!(w.append("a/b", &meta, b"abcd").is_ok());
        let out = w.finish().unwrap_or_default();
        assert_eq!(out.len(), 4 * BLOCK);
    }
}
