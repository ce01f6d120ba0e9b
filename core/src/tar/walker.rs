//! The record state machine (see the module docs of [`crate::tar`]).
//!
//! Framing rules enforced here:
//! - a GNU `L` record must be named `././@LongLink`, hold a NUL-terminated name with no other NUL,
//!   fit `max_path_len`, and be followed directly by the regular or directory member it names,
//!   whose own name field must be a prefix of the long name; a second `L`, or end of archive,
//!   after it is an error;
//! - PAX `x`/`g`, GNU `K`, links, devices, FIFOs and every other type are rejected;
//! - the archive ends with two zero records; one zero record followed by a header is an error;
//!   after the end only zero bytes may follow (at most `max_trailing_zeros`);
//! - input that ends inside a record, a member, its padding, or before the end-of-archive records
//!   is truncated: a bundle cut exactly between members must not pass as a shorter bundle;
//! - every member's padded extent is checked against the decompressed budget before its data is read;
//! - an old-GNU sparse `S` member is a regular file whose map (header slots, then extension blocks)
//!   is read and checked by [`super::sparse`] before its member event; its data slices are passed
//!   at their logical offsets, with [`TarSink::hole`] for the gaps, and its logical size counts
//!   against the decompressed budget too ([`LimitError::LogicalBudget`]), so a huge `realsize`
//!   with no data fails at its header instead of costing hours of hashing zeros.

use alloc::string::String;
use alloc::vec::Vec;

use super::header::{self, EntryType, Format, BLOCK};
use super::sparse::{MapError, MapReader, Segment};
use crate::error::{Error, LimitError, Location, TarError};
use crate::limits::Limits;

/// A member header, after long-name resolution, before name grammar checks.
#[derive(Debug, Clone)]
pub struct Member {
    /// Index of this member's header record (long-name records count as entries too).
    pub index: u32,
    /// Offset of the header in the decompressed stream (the `L` record's offset when there is one).
    pub offset: u64,
    /// Raw name bytes.
    pub name: Vec<u8>,
    /// Regular or directory (other types never reach a sink; a sparse member is `Regular`).
    pub entry_type: EntryType,
    /// Header dialect.
    pub format: Format,
    /// Mode bits as stored.
    pub mode: u64,
    /// Logical size: the data size, or a sparse member's `realsize` (holes included).
    pub size: u64,
    /// Bytes stored in the archive (`size` unless the member is sparse).
    pub stored_size: u64,
    /// Whether this is an old-GNU sparse (`S`) member.
    pub sparse: bool,
    /// A sparse member's map as stored, `(offset, len)`: its data segments in order, then the
    /// zero-length end marker at `realsize` when the map has one; empty for a regular member.
    /// (G3 inventories record it and bind it by the member's transport digest.)
    pub sparse_map: Vec<(u64, u64)>,
    /// Modification time.
    pub mtime: u64,
}

/// Receives the walker's member events.
pub trait TarSink {
    /// A member starts; its data follows through [`TarSink::data`].
    fn member(&mut self, member: &Member) -> Result<(), Error>;
    /// The next slice of the current member's data.
    fn data(&mut self, bytes: &[u8]) -> Result<(), Error>;
    /// The next `len` bytes of the current member are a hole of a sparse member: zeros the
    /// archive does not store. Holes and data slices arrive in logical order.
    fn hole(&mut self, len: u64) -> Result<(), Error>;
    /// The current member's data is complete.
    fn member_end(&mut self) -> Result<(), Error>;
    /// Whether the header of a member named `name` (its GNU long name when one precedes it, else
    /// its name field) may leave `uid` or `gid` all NUL. No by default: such a field is
    /// `bad_numeric_field`.
    fn allows_unset_ids(&self, name: &[u8]) -> bool {
        let _ = name;
        false
    }
}

#[derive(Debug)]
enum State {
    /// Collecting a header record; `zero` says the previous record was a zero block.
    Header { zero: bool },
    /// Passing member data, then skipping its padding.
    Data { remaining: u64, pad: u64 },
    /// Collecting a GNU long name.
    LongName { remaining: u64, pad: u64 },
    /// Collecting the next extension block of a sparse map.
    SparseExtension,
    /// Passing a sparse member's stored data, then skipping its padding.
    SparseData { remaining: u64, pad: u64 },
    /// After the two end-of-archive records.
    End { zeros: u64 },
    /// An error was returned; nothing more is accepted.
    Failed,
}

/// Streaming tar record walker.
#[derive(Debug)]
pub struct Walker {
    limits: Limits,
    pos: u64,
    record: [u8; BLOCK],
    filled: usize,
    state: State,
    entries: u32,
    /// The pending long name (without its NUL), its record index and offset.
    long_name: Option<(Vec<u8>, u32, u64)>,
    /// Location of the member being read, for errors.
    current: Location,
    /// The sparse member whose map is being read.
    pending: Option<PendingSparse>,
    /// Where the stored data of the current sparse member goes.
    cursor: Option<Cursor>,
    /// Logical bytes of the members so far (sparse members at their `realsize`).
    logical: u64,
}

/// A sparse member whose map is still being read.
#[derive(Debug)]
struct PendingSparse {
    member: Member,
    at: Location,
    pad: u64,
    map: MapReader,
}

/// The place of the current sparse member's next stored byte.
#[derive(Debug)]
struct Cursor {
    segments: Vec<Segment>,
    /// Index of the next segment to open.
    next: usize,
    /// Bytes left in the open segment.
    left: u64,
    /// Logical offset of the next byte.
    logical: u64,
    real_size: u64,
}

fn map_error(at: Location, e: MapError) -> Error {
    match e {
        MapError::Tar(error) => Error::Tar { at, error },
        MapError::Limit(error) => Error::Limit { at: Some(at), error },
    }
}

fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl Walker {
    /// A walker bounded by `limits`.
    pub fn new(limits: Limits) -> Self {
        Walker {
            limits,
            pos: 0,
            record: [0; BLOCK],
            filled: 0,
            state: State::Header { zero: false },
            entries: 0,
            long_name: None,
            current: Location::default(),
            pending: None,
            cursor: None,
            logical: 0,
        }
    }

    /// Bytes consumed so far (the decompressed stream length at the end).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Header records seen.
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// Whether the end-of-archive records have been seen.
    pub fn is_ended(&self) -> bool {
        matches!(self.state, State::End { .. })
    }

    fn here(&self) -> Location {
        Location { offset: self.pos, index: None, name: None }
    }

    fn tar_err(&self, at: Location, error: TarError) -> Error {
        Error::Tar { at, error }
    }

    /// Feeds decompressed bytes.
    pub fn push<S: TarSink>(&mut self, mut input: &[u8], sink: &mut S) -> Result<(), Error> {
        let r = self.push_inner(&mut input, sink);
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    fn push_inner<S: TarSink>(&mut self, input: &mut &[u8], sink: &mut S) -> Result<(), Error> {
        while !input.is_empty() {
            match self.state {
                State::Failed => return Err(Error::Finished),
                State::Header { zero } => {
                    if self.fill_record(input) {
                        self.record_complete(zero, sink)?;
                    }
                }
                State::SparseExtension => {
                    if self.fill_record(input) {
                        self.extension_complete(sink)?;
                    }
                }
                State::SparseData { remaining, pad } => {
                    if remaining > 0 {
                        self.sparse_data(remaining, pad, input, sink)?;
                    } else if pad > 0 {
                        let take = usize::try_from(pad).unwrap_or(usize::MAX).min(input.len());
                        *input = input.get(take..).unwrap_or(&[]);
                        self.advance(take);
                        self.state = State::SparseData { remaining: 0, pad: pad - take as u64 };
                    } else {
                        self.state = State::Header { zero: false };
                    }
                }
                State::Data { remaining, pad } => {
                    if remaining > 0 {
                        let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(input.len());
                        let (head, rest) = input.split_at(take);
                        sink.data(head)?;
                        *input = rest;
                        self.advance(take);
                        let remaining = remaining - take as u64;
                        self.state = State::Data { remaining, pad };
                        if remaining == 0 {
                            sink.member_end()?;
                        }
                    } else if pad > 0 {
                        let take = usize::try_from(pad).unwrap_or(usize::MAX).min(input.len());
                        *input = input.get(take..).unwrap_or(&[]);
                        self.advance(take);
                        self.state = State::Data { remaining: 0, pad: pad - take as u64 };
                    } else {
                        self.state = State::Header { zero: false };
                    }
                }
                State::LongName { remaining, pad } => {
                    if remaining > 0 {
                        let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(input.len());
                        let (head, rest) = input.split_at(take);
                        if let Some((buf, _, _)) = self.long_name.as_mut() {
                            buf.extend_from_slice(head);
                        }
                        *input = rest;
                        self.advance(take);
                        self.state = State::LongName { remaining: remaining - take as u64, pad };
                    } else if pad > 0 {
                        let take = usize::try_from(pad).unwrap_or(usize::MAX).min(input.len());
                        *input = input.get(take..).unwrap_or(&[]);
                        self.advance(take);
                        self.state = State::LongName { remaining: 0, pad: pad - take as u64 };
                    } else {
                        self.finish_long_name()?;
                        self.state = State::Header { zero: false };
                    }
                }
                State::End { zeros } => {
                    // Judge byte by byte, whatever the chunking: the zeros before the first
                    // non-zero byte count against the cap first (the error is placed at the first
                    // zero beyond the cap), then a non-zero byte is trailing data.
                    let nonzero = input.iter().position(|&b| b != 0);
                    let run = nonzero.unwrap_or(input.len());
                    let max = self.limits.max_trailing_zeros;
                    if zeros.saturating_add(run as u64) > max {
                        self.pos = self.pos.saturating_add(max.saturating_sub(zeros));
                        return Err(Error::Limit {
                            at: Some(self.here()),
                            error: LimitError::TrailingZeros(max),
                        });
                    }
                    self.advance(run);
                    if nonzero.is_some() {
                        return Err(self.tar_err(self.here(), TarError::TrailingData));
                    }
                    self.state = State::End { zeros: zeros.saturating_add(run as u64) };
                    *input = &[];
                }
            }
        }
        // A member whose data and padding are both zero-length ends as soon as its header is read;
        // settle states that need no more input so that `finish` sees a clean boundary.
        match self.state {
            State::Data { remaining: 0, pad: 0 } | State::SparseData { remaining: 0, pad: 0 } => {
                self.state = State::Header { zero: false }
            }
            State::LongName { remaining: 0, pad: 0 } => {
                self.finish_long_name()?;
                self.state = State::Header { zero: false };
            }
            _ => {}
        }
        Ok(())
    }

    fn advance(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n as u64);
    }

    /// Copies input into the record buffer; true when a whole record is there.
    fn fill_record(&mut self, input: &mut &[u8]) -> bool {
        let take = (BLOCK - self.filled).min(input.len());
        let (head, rest) = input.split_at(take);
        if let Some(dst) = self.record.get_mut(self.filled..self.filled + take) {
            dst.copy_from_slice(head);
        }
        self.filled += take;
        *input = rest;
        if self.filled == BLOCK {
            self.filled = 0;
            true
        } else {
            false
        }
    }

    /// Adds a member's logical size to the running total, bounded by the decompressed budget.
    fn count_logical(&mut self, size: u64, at: &Location) -> Result<(), Error> {
        let max = self.limits.max_decompressed_bytes;
        match self.logical.checked_add(size) {
            Some(total) if total <= max => {
                self.logical = total;
                Ok(())
            }
            _ => Err(Error::Limit { at: Some(at.clone()), error: LimitError::LogicalBudget(max) }),
        }
    }

    /// One extension block of the pending sparse map is in `record`.
    fn extension_complete<S: TarSink>(&mut self, sink: &mut S) -> Result<(), Error> {
        self.advance(BLOCK);
        let Some(p) = self.pending.as_mut() else {
            return Err(self.tar_err(self.here(), TarError::SparseMap("an extension block without a member")));
        };
        if let Err(e) = p.map.extension(&self.record) {
            return Err(map_error(p.at.clone(), e));
        }
        let data = p.member.stored_size.saturating_add(p.pad);
        if self.pos.checked_add(data).is_none_or(|end| end > self.limits.max_decompressed_bytes) {
            return Err(Error::Limit {
                at: Some(p.at.clone()),
                error: LimitError::Budget(self.limits.max_decompressed_bytes),
            });
        }
        if p.map.needs_extension() {
            return Ok(());
        }
        self.begin_sparse(sink)
    }

    /// The pending sparse map is complete: checks it, announces the member, starts its data.
    fn begin_sparse<S: TarSink>(&mut self, sink: &mut S) -> Result<(), Error> {
        let Some(PendingSparse { mut member, at, pad, map }) = self.pending.take() else {
            return Err(self.tar_err(self.here(), TarError::SparseMap("no pending sparse member")));
        };
        let map = map.finish().map_err(|e| map_error(at.clone(), e))?;
        let (real, stored) = (map.real_size(), map.stored_size());
        self.count_logical(real, &at)?;
        member.size = real;
        member.stored_size = stored;
        member.sparse_map = map.stored_map();
        self.current = at;
        sink.member(&member)?;
        self.state = State::SparseData { remaining: stored, pad };
        if stored == 0 {
            if real > 0 {
                sink.hole(real)?;
            }
            sink.member_end()?;
        } else {
            self.cursor =
                Some(Cursor { segments: map.into_segments(), next: 0, left: 0, logical: 0, real_size: real });
        }
        Ok(())
    }

    /// Passes stored bytes of a sparse member at their logical places, each hole before the
    /// segment it precedes and the trailing hole before the member's end.
    fn sparse_data<S: TarSink>(
        &mut self,
        remaining: u64,
        pad: u64,
        input: &mut &[u8],
        sink: &mut S,
    ) -> Result<(), Error> {
        let past_map = TarError::SparseMap("stored data past the map");
        let Some(cur) = self.cursor.as_mut() else {
            return Err(Error::Tar { at: self.current.clone(), error: past_map });
        };
        if cur.left == 0 {
            let seg = cur.segments.get(cur.next).copied();
            let Some(gap) = seg.and_then(|s| s.offset.checked_sub(cur.logical)) else {
                return Err(Error::Tar { at: self.current.clone(), error: past_map });
            };
            cur.next += 1;
            cur.logical = cur.logical.saturating_add(gap);
            cur.left = seg.map_or(0, |s| s.len);
            if gap > 0 {
                sink.hole(gap)?;
            }
        }
        let take = usize::try_from(cur.left.min(remaining)).unwrap_or(usize::MAX).min(input.len());
        let (head, rest) = input.split_at(take);
        cur.left -= take as u64;
        cur.logical = cur.logical.saturating_add(take as u64);
        let remaining = remaining - take as u64;
        let tail = if remaining == 0 { cur.real_size.saturating_sub(cur.logical) } else { 0 };
        sink.data(head)?;
        *input = rest;
        self.advance(take);
        self.state = State::SparseData { remaining, pad };
        if remaining == 0 {
            self.cursor = None;
            if tail > 0 {
                sink.hole(tail)?;
            }
            sink.member_end()?;
        }
        Ok(())
    }

    fn finish_long_name(&mut self) -> Result<(), Error> {
        let Some((buf, index, offset)) = self.long_name.as_mut() else {
            return Ok(());
        };
        let at = Location { offset: *offset, index: Some(*index), name: None };
        match buf.split_last() {
            Some((0, text)) if !text.is_empty() && !text.contains(&0) => {
                buf.truncate(text.len());
                Ok(())
            }
            _ => Err(Error::Tar {
                at,
                error: TarError::LongName(
                    "the name must be non-empty, NUL-terminated and contain no other NUL",
                ),
            }),
        }
    }

    fn record_complete<S: TarSink>(&mut self, prev_zero: bool, sink: &mut S) -> Result<(), Error> {
        let offset = self.pos;
        self.advance(BLOCK);
        if header::is_zero_block(&self.record) {
            if let Some((_, index, offset)) = &self.long_name {
                let at = Location { offset: *offset, index: Some(*index), name: None };
                return Err(self.tar_err(at, TarError::LongName("followed by end of archive")));
            }
            self.state = if prev_zero { State::End { zeros: 0 } } else { State::Header { zero: true } };
            return Ok(());
        }
        let index = self.entries;
        let at = Location { offset, index: Some(index), name: None };
        if prev_zero {
            return Err(self.tar_err(at, TarError::LoneZeroBlock));
        }
        self.entries = self.entries.saturating_add(1);
        if self.entries > self.limits.max_entries {
            return Err(Error::Limit { at: Some(at), error: LimitError::Entries(self.limits.max_entries) });
        }
        let hdr = header::parse(&self.record).map_err(|e| self.tar_err(at.clone(), e))?;
        if let Some(field) = hdr.unset_id {
            // Decided on the member's whole name, as the generation is: a pending long name's.
            let name = self.long_name.as_ref().map_or(&hdr.name[..], |(n, _, _)| &n[..]);
            if !sink.allows_unset_ids(name) {
                return Err(self.tar_err(at, TarError::BadNumber(field)));
            }
        }
        let at = Location { offset, index: Some(index), name: Some(lossy(&hdr.name)) };
        let padded =
            header::padded(hdr.size).ok_or_else(|| self.tar_err(at.clone(), TarError::SizeOverflow))?;
        let end =
            self.pos.checked_add(padded).ok_or_else(|| self.tar_err(at.clone(), TarError::SizeOverflow))?;
        if end > self.limits.max_decompressed_bytes {
            return Err(Error::Limit {
                at: Some(at),
                error: LimitError::Budget(self.limits.max_decompressed_bytes),
            });
        }
        let pad = padded - hdr.size;
        if hdr.has_link_name
            && matches!(
                hdr.entry_type,
                EntryType::Regular | EntryType::Directory | EntryType::GnuLongName | EntryType::GnuSparse
            )
        {
            return Err(self.tar_err(at, TarError::LinkName));
        }
        match hdr.entry_type {
            EntryType::GnuLongName => {
                if self.long_name.is_some() {
                    return Err(self.tar_err(at, TarError::LongName("two long-name records in a row")));
                }
                if hdr.name != b"././@LongLink" {
                    return Err(self.tar_err(at, TarError::LongName("record is not named ././@LongLink")));
                }
                let max = u64::from(self.limits.max_path_len);
                if hdr.size > max.saturating_add(1) {
                    return Err(Error::Limit {
                        at: Some(at),
                        error: LimitError::PathLength {
                            len: hdr.size.saturating_sub(1),
                            max: self.limits.max_path_len,
                        },
                    });
                }
                self.long_name = Some((Vec::new(), index, offset));
                self.state = State::LongName { remaining: hdr.size, pad };
                Ok(())
            }
            EntryType::Regular | EntryType::Directory | EntryType::GnuSparse => {
                let (name, offset) = match self.long_name.take() {
                    Some((long, _, long_offset)) => {
                        if !long.starts_with(&hdr.name) {
                            return Err(self.tar_err(
                                at,
                                TarError::LongName("the member's own name is not a prefix of its long name"),
                            ));
                        }
                        (long, long_offset)
                    }
                    None => (hdr.name, offset),
                };
                let at = Location { offset, index: Some(index), name: Some(lossy(&name)) };
                if hdr.entry_type == EntryType::Directory && hdr.size != 0 {
                    return Err(self.tar_err(at, TarError::DirectoryData));
                }
                if name.len() > self.limits.max_path_len as usize {
                    return Err(Error::Limit {
                        at: Some(at),
                        error: LimitError::PathLength {
                            len: name.len() as u64,
                            max: self.limits.max_path_len,
                        },
                    });
                }
                let sparse = hdr.entry_type == EntryType::GnuSparse;
                let member = Member {
                    index,
                    offset,
                    name,
                    entry_type: if sparse { EntryType::Regular } else { hdr.entry_type },
                    format: hdr.format,
                    mode: hdr.mode,
                    size: hdr.size,
                    stored_size: hdr.size,
                    sparse,
                    sparse_map: Vec::new(),
                    mtime: hdr.mtime,
                };
                if sparse {
                    let map =
                        MapReader::start(&self.record, hdr.format, hdr.size, self.limits.max_sparse_segments)
                            .map_err(|e| map_error(at.clone(), e))?;
                    self.current = at.clone();
                    let more = map.needs_extension();
                    self.pending = Some(PendingSparse { member, at, pad, map });
                    if more {
                        self.state = State::SparseExtension;
                        return Ok(());
                    }
                    return self.begin_sparse(sink);
                }
                self.count_logical(hdr.size, &at)?;
                self.current = at;
                sink.member(&member)?;
                if hdr.size == 0 {
                    sink.member_end()?;
                }
                self.state = State::Data { remaining: hdr.size, pad };
                Ok(())
            }
            EntryType::Other(flag @ (b'x' | b'g')) => Err(self.tar_err(at, TarError::Pax(flag))),
            EntryType::Other(flag) => Err(self.tar_err(at, TarError::UnsupportedType(flag))),
        }
    }

    /// Location of the member being read (for errors raised by sinks).
    pub fn current(&self) -> &Location {
        &self.current
    }

    /// Declares the end of input; errors unless the archive ended cleanly.
    pub fn finish(&mut self) -> Result<(), Error> {
        let inside = match &self.state {
            State::End { .. } => return Ok(()),
            State::Failed => return Err(Error::Finished),
            State::Header { .. } if self.filled > 0 => "a header record",
            State::Header { zero: true } => {
                return Err(self.tar_err(self.here(), TarError::MissingEnd));
            }
            State::Header { zero: false } => {
                if let Some((_, index, offset)) = &self.long_name {
                    let at = Location { offset: *offset, index: Some(*index), name: None };
                    return Err(self.tar_err(at, TarError::LongName("followed by end of input")));
                }
                if self.pos == 0 {
                    return Err(self.tar_err(self.here(), TarError::Truncated("the first header")));
                }
                return Err(self.tar_err(self.here(), TarError::MissingEnd));
            }
            State::Data { remaining, .. } if *remaining > 0 => "member data",
            State::Data { .. } => "member padding",
            State::LongName { .. } => "a long-name record",
            State::SparseExtension => "a sparse map extension block",
            State::SparseData { remaining, .. } if *remaining > 0 => "member data",
            State::SparseData { .. } => "member padding",
        };
        let at = match self.state {
            State::Data { .. } | State::SparseData { .. } | State::SparseExtension => self.current.clone(),
            _ => self.here(),
        };
        self.state = State::Failed;
        Err(self.tar_err(at, TarError::Truncated(inside)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    struct Nothing;

    impl TarSink for Nothing {
        fn member(&mut self, _: &Member) -> Result<(), Error> {
            Ok(())
        }
        fn data(&mut self, _: &[u8]) -> Result<(), Error> {
            Ok(())
        }
        fn hole(&mut self, _: u64) -> Result<(), Error> {
            Ok(())
        }
        fn member_end(&mut self) -> Result<(), Error> {
            Ok(())
        }
    }

    fn walk(bytes: &[u8], chunk: usize) -> Result<(), Error> {
        let limits = Limits { max_trailing_zeros: 700, ..Limits::default() };
        let mut w = Walker::new(limits);
        for c in bytes.chunks(chunk) {
            w.push(c, &mut Nothing)?;
        }
        w.finish()
    }

    fn at(e: &Error) -> Option<u64> {
        match e {
            Error::Limit { at: Some(at), .. } | Error::Tar { at, .. } => Some(at.offset),
            _ => None,
        }
    }

    #[test]
    fn trailing_zero_cap_and_trailing_data_do_not_depend_on_chunking() {
        let mut over = vec![0u8; 1024 + 800];
        over.push(b'x');
        let mut under = vec![0u8; 1024 + 600];
        under.push(b'x');
        for chunk in [1, 7, 512, 1100, 1900, 4096] {
            let e = walk(&over, chunk).unwrap_err();
            assert_eq!((e.code(), at(&e)), ("trailing_zeros_too_long", Some(1024 + 700)), "chunk {chunk}");
            let e = walk(&under, chunk).unwrap_err();
            assert_eq!((e.code(), at(&e)), ("trailing_data", Some(1024 + 600)), "chunk {chunk}");
            assert_eq!(walk(&over[..1024 + 700], chunk), Ok(()), "chunk {chunk}");
        }
    }
}
