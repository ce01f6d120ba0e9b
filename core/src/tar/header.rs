//! One 512-byte tar header record, decoded strictly.
//!
//! Rules enforced here (`docs/format-0.6.2.md` §6.2, §9.1):
//! - the magic is POSIX ustar (`ustar\0` `00`) or GNU (`ustar ` ` \0`); v7 headers are refused;
//! - the checksum is the **unsigned** byte sum with the checksum field read as spaces; the legacy
//!   signed sum is not accepted (every writer we interoperate with emits the unsigned one);
//! - numeric fields are octal digits (leading spaces allowed) closed by at least one NUL or space,
//!   or GNU base-256 with a first byte of exactly `0x80`; a missing terminator, a stray byte or a
//!   negative base-256 value is an error;
//! - name fields end at their first NUL and every byte after it must be NUL too (no "trim at NUL");
//! - in ustar headers the `prefix` field is joined to the name with `/`; GNU headers use that
//!   area for times and it is ignored.

use alloc::vec::Vec;
use core::ops::Range;

use super::layout::{
    CHKSUM, CONTIGUOUS, DIRECTORY, GID, GNU_LONG_NAME, GNU_MAGIC, GNU_SPARSE, GNU_VERSION, LINKNAME, MAGIC,
    MODE, MTIME, NAME, PREFIX, REGULAR, REGULAR_LEGACY, SIZE, TYPEFLAG, UID, USTAR_MAGIC, USTAR_VERSION,
    VERSION,
};
use crate::error::TarError;

pub use super::layout::BLOCK;

/// The entry types the walker distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    /// `0`, legacy NUL, or `7` (contiguous).
    Regular,
    /// `5`.
    Directory,
    /// GNU `L`: the data is the next member's name.
    GnuLongName,
    /// GNU `S`: old-GNU sparse file.
    GnuSparse,
    /// Anything else (rejected by the walker with the raw flag).
    Other(u8),
}

/// Which header dialect the record uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// POSIX ustar (`ustar\0` + `00`).
    Ustar,
    /// GNU (`ustar ` + ` \0`), as 0.6.2 export writes.
    Gnu,
}

/// A decoded header.
#[derive(Debug, Clone)]
pub struct Header {
    /// The raw name bytes: ustar prefix joined with name, NUL padding removed.
    pub name: Vec<u8>,
    /// Entry type.
    pub entry_type: EntryType,
    /// Header dialect.
    pub format: Format,
    /// Permission bits as stored (0.6.2 stores the full `st_mode`).
    pub mode: u64,
    /// Stored size of the data that follows.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Whether the link name field holds anything.
    pub has_link_name: bool,
    /// `uid` (or else `gid`) when that field is all NUL: no digit at all, so not a number. G1
    /// refuses it (`bad_numeric_field`); microsandbox 0.7 writes every `.msb` header that way, so a
    /// G3 archive may hold it (the walker asks its sink, [`super::TarSink::allows_unset_ids`]).
    pub unset_id: Option<&'static str>,
}

/// Whether a record is all zero bytes.
pub fn is_zero_block(block: &[u8; BLOCK]) -> bool {
    block.iter().all(|&b| b == 0)
}

fn field(block: &[u8; BLOCK], range: Range<usize>) -> &[u8] {
    block.get(range).unwrap_or(&[])
}

/// Decodes one non-zero header record.
pub fn parse(block: &[u8; BLOCK]) -> Result<Header, TarError> {
    let (magic, version) = (field(block, MAGIC), field(block, VERSION));
    let format = if magic == USTAR_MAGIC && version == USTAR_VERSION {
        Format::Ustar
    } else if magic == GNU_MAGIC && version == GNU_VERSION {
        Format::Gnu
    } else {
        return Err(TarError::UnknownFormat);
    };
    let stored = parse_number(field(block, CHKSUM), "chksum")?;
    let computed = checksum(block);
    if stored != computed {
        return Err(TarError::Checksum { stored, computed });
    }
    let entry_type = match block.get(TYPEFLAG).copied().unwrap_or(REGULAR_LEGACY) {
        REGULAR | REGULAR_LEGACY | CONTIGUOUS => EntryType::Regular,
        DIRECTORY => EntryType::Directory,
        GNU_LONG_NAME => EntryType::GnuLongName,
        GNU_SPARSE => EntryType::GnuSparse,
        other => EntryType::Other(other),
    };
    let mut name = Vec::new();
    if format == Format::Ustar {
        let prefix = c_string(field(block, PREFIX), "prefix")?;
        if !prefix.is_empty() {
            name.extend_from_slice(prefix);
            name.push(b'/');
        }
    }
    name.extend_from_slice(c_string(field(block, NAME), "name")?);
    let link = c_string(field(block, LINKNAME), "linkname")?;
    let size = parse_number(field(block, SIZE), "size")?;
    if size > i64::MAX as u64 {
        return Err(TarError::SizeOverflow);
    }
    let mode = parse_number(field(block, MODE), "mode")?;
    // An all-NUL uid or gid is not a number; it is reported in `unset_id` instead of failing here
    // (the walker asks the layout whether it may pass), and any later field error is still
    // reported as that field's, as if it had failed first.
    let unset = |range: Range<usize>| field(block, range).iter().all(|&b| b == 0);
    let unset_uid = unset(UID);
    if !unset_uid {
        parse_number(field(block, UID), "uid")?;
    }
    let unset_id = if unset_uid { Some("uid") } else { unset(GID).then_some("gid") };
    let first = |e: TarError| unset_id.map_or(e, TarError::BadNumber);
    if !unset(GID) {
        parse_number(field(block, GID), "gid").map_err(first)?;
    }
    let mtime = parse_number(field(block, MTIME), "mtime").map_err(first)?;
    Ok(Header { name, entry_type, format, mode, size, mtime, has_link_name: !link.is_empty(), unset_id })
}

/// The unsigned sum of the record with the checksum field counted as eight spaces.
pub fn checksum(block: &[u8; BLOCK]) -> u64 {
    block
        .iter()
        .enumerate()
        .map(|(i, &b)| if CHKSUM.contains(&i) { u64::from(b' ') } else { u64::from(b) })
        .sum()
}

/// The bytes of a NUL-padded string field; anything after the first NUL must be NUL.
pub fn c_string<'a>(raw: &'a [u8], name: &'static str) -> Result<&'a [u8], TarError> {
    match raw.iter().position(|&b| b == 0) {
        None => Ok(raw),
        Some(end) => {
            let (text, rest) = raw.split_at(end);
            if rest.iter().all(|&b| b == 0) {
                Ok(text)
            } else {
                Err(TarError::BytesAfterNul(name))
            }
        }
    }
}

/// Parses an octal (terminated) or GNU base-256 numeric field.
pub fn parse_number(raw: &[u8], name: &'static str) -> Result<u64, TarError> {
    let bad = TarError::BadNumber(name);
    match raw.first() {
        Some(0x80) => {
            let mut value: u64 = 0;
            for &b in raw.get(1..).unwrap_or(&[]) {
                value = value
                    .checked_mul(256)
                    .and_then(|v| v.checked_add(u64::from(b)))
                    .ok_or(TarError::SizeOverflow)?;
            }
            if value > i64::MAX as u64 {
                return Err(TarError::SizeOverflow);
            }
            Ok(value)
        }
        Some(b) if b & 0x80 != 0 => Err(if *b == 0xff { TarError::SizeOverflow } else { bad }),
        _ => {
            let mut rest = raw;
            while let Some((b' ', tail)) = rest.split_first() {
                rest = tail;
            }
            let digits = rest.iter().take_while(|b| (b'0'..=b'7').contains(*b)).count();
            let (num, term) = rest.split_at(digits);
            if num.is_empty() || term.is_empty() || !term.iter().all(|&b| b == 0 || b == b' ') {
                return Err(bad);
            }
            let mut value: u64 = 0;
            for &d in num {
                value = value
                    .checked_mul(8)
                    .and_then(|v| v.checked_add(u64::from(d - b'0')))
                    .ok_or(TarError::SizeOverflow)?;
            }
            Ok(value)
        }
    }
}

/// Size rounded up to whole records, or `None` on overflow.
pub fn padded(size: u64) -> Option<u64> {
    size.checked_add(BLOCK as u64 - 1).map(|s| s & !(BLOCK as u64 - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_needs_a_terminator() {
        assert_eq!(parse_number(b"00000000773\0", "size"), Ok(0o773));
        assert_eq!(parse_number(b"  17 \0", "size"), Ok(0o17));
        assert_eq!(parse_number(b"000000007730", "size"), Err(TarError::BadNumber("size")));
        assert_eq!(parse_number(b"0000000077x\0", "size"), Err(TarError::BadNumber("size")));
        assert_eq!(parse_number(b"\0\0\0\0", "size"), Err(TarError::BadNumber("size")));
        assert_eq!(parse_number(b"12 3\0", "size"), Err(TarError::BadNumber("size")));
    }

    #[test]
    fn base256_sizes() {
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[7] = 0x02; // 2 << 32 = 8 GiB
        assert_eq!(parse_number(&f, "size"), Ok(2 << 32));
        let mut neg = [0xffu8; 12];
        neg[11] = 0xfe;
        assert_eq!(parse_number(&neg, "size"), Err(TarError::SizeOverflow));
        let mut huge = [0xffu8; 12];
        huge[0] = 0x80;
        assert_eq!(parse_number(&huge, "size"), Err(TarError::SizeOverflow));
    }

    #[test]
    fn padding_is_checked() {
        assert_eq!(padded(0), Some(0));
        assert_eq!(padded(1), Some(512));
        assert_eq!(padded(512), Some(512));
        assert_eq!(padded(u64::MAX), None);
    }

    #[test]
    fn names_end_at_nul() {
        assert_eq!(c_string(b"abc\0\0\0", "name"), Ok(&b"abc"[..]));
        assert_eq!(c_string(b"abc\0x\0", "name"), Err(TarError::BytesAfterNul("name")));
    }
}
