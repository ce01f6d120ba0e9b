//! A `.msb` archive's tar stream split into what its registry artifact stores, and the header
//! records of a config read back: the exact header records of each member (GNU `././@LongLink`
//! records, the main header, old-GNU sparse extension records), the member's stored bytes
//! (for a sparse member its data runs, concatenated as the archive stores them), and the
//! trailer (end-of-archive records and any record padding). Rebuilding is concatenation:
//! header records, stored bytes, zeros to the next record, and after the last member the
//! trailer, so the split must hold that the padding and the trailer are zeros.
//!
//! On push the [`Splitter`] sees the bytes the validator has already walked
//! ([`crate::Validator::push_tapped`]); on pull [`HeaderRun`] checks a config's records with the
//! same grammar (the core's header parser), so a config cannot describe a member other than
//! the one its layer holds.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::error::TarError;
use crate::tar::header::{self, EntryType, BLOCK};
use crate::tar::layout::{EXTENSION_EXTENDED, INLINE_EXTENDED};

/// Why a tar stream cannot be split, or a config's header records are not one member's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SplitError {
    /// A header record the tar grammar refuses.
    Header(TarError),
    /// A long name that is empty, too long, or not followed by a member.
    LongName,
    /// A member type the artifact does not store (directories, links, …).
    Unsupported,
    /// A member's padding to the next record is not zeros.
    Padding,
    /// A byte after the end-of-archive records is not zero.
    Trailer,
    /// More trailer than the bound.
    TrailerTooLong(u64),
    /// The stream ended inside a member or before its end-of-archive records.
    Truncated,
    /// Header records that end before the member's header does, or go on after it.
    RecordCount,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitError::Header(e) => write!(f, "a header record is not valid tar: {e}"),
            SplitError::LongName => f.write_str("a GNU long name is empty, too long or names no member"),
            SplitError::Unsupported => f.write_str("a member that is not a regular or sparse file"),
            SplitError::Padding => f.write_str("a member's padding to the next 512-byte record is not zeros"),
            SplitError::Trailer => f.write_str("a byte after the end-of-archive records is not zero"),
            SplitError::TrailerTooLong(max) => write!(f, "more than {max} bytes after the last member"),
            SplitError::Truncated => f.write_str("the tar stream ends before its end-of-archive records"),
            SplitError::RecordCount => f.write_str("the header records are not exactly one member's"),
        }
    }
}

/// What a member's header records say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberHeader {
    /// The member's path (the long name when there is one).
    pub name: Vec<u8>,
    /// Bytes the archive stores after the headers (a sparse member's data runs).
    pub stored: u64,
    /// Whether it is an old-GNU sparse member.
    pub sparse: bool,
}

#[derive(Debug, Default)]
enum Run {
    /// Expecting a long-name or main header.
    #[default]
    Start,
    /// Reading a long name's data records.
    LongName { remaining: u64, size: u64, buf: Vec<u8> },
    /// Reading a sparse member's extension records.
    Extension(MemberHeader),
}

/// The header records of one member, a record at a time.
#[derive(Debug, Default)]
pub struct HeaderRun {
    run: Run,
    long_name: Option<Vec<u8>>,
    max_name: usize,
}

impl HeaderRun {
    /// A run whose long names are at most `max_name` bytes.
    pub fn new(max_name: usize) -> HeaderRun {
        HeaderRun { run: Run::Start, long_name: None, max_name }
    }

    /// Whether the run has taken no record of its member yet.
    pub fn is_empty(&self) -> bool {
        matches!(self.run, Run::Start) && self.long_name.is_none()
    }

    /// Takes the next record; the member's header once its last record is in (the run is then
    /// ready for the next member).
    pub fn record(&mut self, rec: &[u8; BLOCK]) -> Result<Option<MemberHeader>, SplitError> {
        match core::mem::take(&mut self.run) {
            Run::Start => {
                let h = header::parse(rec).map_err(SplitError::Header)?;
                match h.entry_type {
                    EntryType::GnuLongName => {
                        let size = h.size;
                        if self.long_name.is_some() || size == 0 || size > self.max_name as u64 + 1 {
                            return Err(SplitError::LongName);
                        }
                        let remaining = header::padded(size).ok_or(SplitError::LongName)? / BLOCK as u64;
                        self.run = Run::LongName { remaining, size, buf: Vec::new() };
                        Ok(None)
                    }
                    EntryType::Regular | EntryType::GnuSparse => {
                        let name = self.long_name.take().unwrap_or(h.name);
                        let sparse = h.entry_type == EntryType::GnuSparse;
                        let member = MemberHeader { name, stored: h.size, sparse };
                        if sparse && rec.get(INLINE_EXTENDED).is_some_and(|&b| b != 0) {
                            self.run = Run::Extension(member);
                            return Ok(None);
                        }
                        Ok(Some(member))
                    }
                    EntryType::Directory | EntryType::Other(_) => Err(SplitError::Unsupported),
                }
            }
            Run::LongName { remaining, size, mut buf } => {
                let want = usize::try_from(size).unwrap_or(usize::MAX).saturating_sub(buf.len()).min(BLOCK);
                buf.extend_from_slice(rec.get(..want).unwrap_or(&[]));
                if remaining > 1 {
                    self.run = Run::LongName { remaining: remaining - 1, size, buf };
                    return Ok(None);
                }
                let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                buf.truncate(end);
                if buf.is_empty() {
                    return Err(SplitError::LongName);
                }
                self.long_name = Some(buf);
                Ok(None)
            }
            Run::Extension(member) => {
                if rec.get(EXTENSION_EXTENDED).is_some_and(|&b| b != 0) {
                    self.run = Run::Extension(member);
                    return Ok(None);
                }
                Ok(Some(member))
            }
        }
    }

    /// The header of one member from exactly its records (a config's), or why not.
    pub fn parse_all(records: &[u8], max_name: usize) -> Result<MemberHeader, SplitError> {
        if records.is_empty() || !records.len().is_multiple_of(BLOCK) {
            return Err(SplitError::RecordCount);
        }
        let mut run = HeaderRun::new(max_name);
        let count = records.len() / BLOCK;
        for (i, chunk) in records.chunks(BLOCK).enumerate() {
            let rec: &[u8; BLOCK] = chunk.try_into().map_err(|_| SplitError::RecordCount)?;
            if let Some(m) = run.record(rec)? {
                return if i + 1 == count { Ok(m) } else { Err(SplitError::RecordCount) };
            }
        }
        Err(SplitError::RecordCount)
    }
}

/// A piece of the split stream, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// One header record of the next member.
    Record(&'a [u8; BLOCK]),
    /// The member's header records are complete.
    Begin(MemberHeader),
    /// Stored bytes of the current member.
    Data(&'a [u8]),
    /// The current member (its data and zero padding) is complete.
    End,
}

#[derive(Debug)]
enum State {
    Header,
    Data { remaining: u64, pad: u64 },
    Trailer,
}

/// Splits a tar stream pushed in any chunking into [`Piece`]s; [`Splitter::finish`] gives the
/// trailer's length (all zeros).
#[derive(Debug)]
pub struct Splitter {
    rec: [u8; BLOCK],
    filled: usize,
    state: State,
    run: HeaderRun,
    trailer: u64,
    max_trailer: u64,
}

impl Splitter {
    /// A splitter whose long names are at most `max_name` bytes and whose trailer is at most
    /// `max_trailer` bytes.
    pub fn new(max_name: usize, max_trailer: u64) -> Splitter {
        Splitter {
            rec: [0; BLOCK],
            filled: 0,
            state: State::Header,
            run: HeaderRun::new(max_name),
            trailer: 0,
            max_trailer,
        }
    }

    /// Feeds the next bytes of the tar stream.
    pub fn push(
        &mut self,
        mut input: &[u8],
        out: &mut dyn FnMut(Piece<'_>) -> Result<(), SplitError>,
    ) -> Result<(), SplitError> {
        while !input.is_empty() {
            match self.state {
                State::Header => {
                    let take = (BLOCK - self.filled).min(input.len());
                    let (head, rest) = input.split_at(take);
                    if let Some(dst) = self.rec.get_mut(self.filled..self.filled + take) {
                        dst.copy_from_slice(head);
                    }
                    self.filled += take;
                    input = rest;
                    if self.filled < BLOCK {
                        continue;
                    }
                    self.filled = 0;
                    if self.run.is_empty() && header::is_zero_block(&self.rec) {
                        self.state = State::Trailer;
                        self.trailer = BLOCK as u64;
                        continue;
                    }
                    out(Piece::Record(&self.rec))?;
                    if let Some(m) = self.run.record(&self.rec)? {
                        let stored = m.stored;
                        let pad = header::padded(stored).ok_or(SplitError::Truncated)? - stored;
                        out(Piece::Begin(m))?;
                        if stored == 0 {
                            out(Piece::End)?;
                        } else {
                            self.state = State::Data { remaining: stored, pad };
                        }
                    }
                }
                State::Data { remaining, pad } => {
                    if remaining > 0 {
                        let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(input.len());
                        let (head, rest) = input.split_at(take);
                        out(Piece::Data(head))?;
                        input = rest;
                        self.state = State::Data { remaining: remaining - take as u64, pad };
                    } else {
                        let take = usize::try_from(pad).unwrap_or(usize::MAX).min(input.len());
                        let (head, rest) = input.split_at(take);
                        if head.iter().any(|&b| b != 0) {
                            return Err(SplitError::Padding);
                        }
                        input = rest;
                        self.state = State::Data { remaining: 0, pad: pad - take as u64 };
                    }
                    if let State::Data { remaining: 0, pad: 0 } = self.state {
                        self.state = State::Header;
                        out(Piece::End)?;
                    }
                }
                State::Trailer => {
                    if input.iter().any(|&b| b != 0) {
                        return Err(SplitError::Trailer);
                    }
                    self.trailer = self.trailer.saturating_add(input.len() as u64);
                    if self.trailer > self.max_trailer {
                        return Err(SplitError::TrailerTooLong(self.max_trailer));
                    }
                    input = &[];
                }
            }
        }
        Ok(())
    }

    /// The end of the stream: the trailer's length (at least the two end-of-archive records).
    pub fn finish(&self) -> Result<u64, SplitError> {
        match self.state {
            State::Trailer if self.trailer >= 2 * BLOCK as u64 => Ok(self.trailer),
            _ => Err(SplitError::Truncated),
        }
    }
}

/// The path of a member header as text (`None`: not UTF-8).
pub fn name_text(m: &MemberHeader) -> Option<String> {
    core::str::from_utf8(&m.name).ok().map(String::from)
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;
    use crate::tar::write::{member_headers, sparse_member_headers, EntryMeta};

    fn meta(size: u64) -> EntryMeta {
        EntryMeta { mode: 0o100644, uid: 0, gid: 0, mtime: 1, size }
    }

    /// A tar of a short-named member, a long-named one and a sparse one with many segments,
    /// then `trailer` bytes; with the expected split.
    /// Per member: its header records and its stored bytes.
    type Members = Vec<(Vec<u8>, Vec<u8>)>;

    fn archive(trailer: usize) -> (Vec<u8>, Members) {
        let mut tar = Vec::new();
        let mut expected = Vec::new();
        let mut add = |headers: Vec<u8>, data: Vec<u8>| {
            tar.extend_from_slice(&headers);
            tar.extend_from_slice(&data);
            tar.resize(tar.len().div_ceil(BLOCK) * BLOCK, 0);
            expected.push((headers, data));
        };
        add(member_headers("snapshots/a/snapshot.json", &meta(5)).unwrap_or_default(), b"{...}".to_vec());
        let long = alloc::format!("images/{}", "x".repeat(150));
        add(member_headers(&long, &meta(600)).unwrap_or_default(), vec![7; 600]);
        let segments: Vec<(u64, u64)> = (0..30u64).map(|i| (i * 8192, 512)).collect();
        let headers = sparse_member_headers("layers/l.raw", &meta(30 * 8192), &segments).unwrap_or_default();
        add(headers, vec![9; 30 * 512]);
        tar.extend(vec![0u8; trailer]);
        (tar, expected)
    }

    fn split(tar: &[u8], step: usize) -> Result<(Members, u64), SplitError> {
        let mut s = Splitter::new(1024, 1 << 20);
        let mut out: Members = Vec::new();
        let mut records = Vec::new();
        for chunk in tar.chunks(step) {
            s.push(chunk, &mut |p| {
                match p {
                    Piece::Record(r) => records.extend_from_slice(r),
                    Piece::Begin(_) => out.push((core::mem::take(&mut records), Vec::new())),
                    Piece::Data(d) => {
                        if let Some(last) = out.last_mut() {
                            last.1.extend_from_slice(d);
                        }
                    }
                    Piece::End => {}
                }
                Ok(())
            })?;
        }
        Ok((out, s.finish()?))
    }

    #[test]
    fn a_stream_splits_into_exact_header_records_stored_bytes_and_trailer_in_any_chunking() {
        let (tar, expected) = archive(1024 + 3000);
        for step in [1, 7, 512, 4096, tar.len()] {
            let (got, trailer) = split(&tar, step).unwrap_or_else(|e| panic!("{step}: {e}"));
            assert_eq!(got, expected, "{step}");
            assert_eq!(trailer, 4024);
        }
        // Each member's records parse back alone to its name and stored size.
        let sparse = HeaderRun::parse_all(&expected[2].0, 1024).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (sparse.name.as_slice(), sparse.stored, sparse.sparse),
            (&b"layers/l.raw"[..], 30 * 512, true)
        );
        assert!(expected[2].0.len() > 2 * BLOCK, "the sparse map needs extension records");
        let long = HeaderRun::parse_all(&expected[1].0, 1024).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(long.name.len(), 157);
        let mut extra = expected[0].0.clone();
        extra.extend([0u8; BLOCK]);
        assert_eq!(HeaderRun::parse_all(&extra, 1024), Err(SplitError::RecordCount));
        assert_eq!(HeaderRun::parse_all(&expected[1].0[..BLOCK * 2], 1024), Err(SplitError::RecordCount));
        assert_eq!(HeaderRun::parse_all(&expected[1].0, 100), Err(SplitError::LongName));
    }

    #[test]
    fn non_zero_padding_or_trailer_and_a_short_end_are_refused() {
        let (tar, expected) = archive(1024);
        let pad_at = expected[0].0.len() + 5;
        let mut bad = tar.clone();
        bad[pad_at] = 1;
        assert_eq!(split(&bad, 100).err(), Some(SplitError::Padding));
        let mut bad = tar.clone();
        let n = bad.len();
        bad[n - 1] = 1;
        assert_eq!(split(&bad, 100).err(), Some(SplitError::Trailer));
        assert_eq!(split(&tar[..tar.len() - 600], 100).err(), Some(SplitError::Truncated));
        let mut s = Splitter::new(1024, 2048);
        let long = vec![0u8; 4096];
        let r = s.push(&[&tar[..tar.len() - 1024], &long[..]].concat(), &mut |_| Ok(()));
        assert_eq!(r, Err(SplitError::TrailerTooLong(2048)));
    }
}
