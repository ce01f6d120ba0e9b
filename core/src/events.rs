//! What the validator tells its caller while bytes stream through.
//!
//! The caller implements [`Sink`]. Events arrive in archive order; data slices are borrowed from
//! the caller's input or from the zstd window and are never kept by the core. A member's events
//! are emitted only after its header passed every check that can be made at that point, so a
//! caller that writes files never creates anything for a rejected member. Whether the staged
//! files may be used is decided by the final [`crate::Report`]: an error at any later point means
//! everything staged must be discarded.

use crate::integrity::{Hashes, MemberDigests};
use crate::names::Slot;

/// One event of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A member begins. Directory members have no further events.
    Member(MemberStart<'a>),
    /// Content of the current file at byte `offset` of the file.
    Data {
        /// Offset in the file.
        offset: u64,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// `len` zero bytes of the current file at `offset` that a writer may leave as a hole:
    /// whole 4 KiB blocks aligned to the file offset, or the file's final partial block.
    Hole {
        /// Offset in the file.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
    /// The current file is complete: `size` bytes with the digests its
    /// [`MemberStart::hashes`] announced.
    FileEnd {
        /// Apparent size.
        size: u64,
        /// The content's digests.
        digests: MemberDigests,
    },
}

/// A member header that passed the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberStart<'a> {
    /// Index of the header record.
    pub index: u32,
    /// Offset of the header in the decompressed stream.
    pub offset: u64,
    /// The member's path as stored (directories may end with `/`).
    pub path: &'a str,
    /// Where it goes.
    pub slot: Slot<'a>,
    /// Size in bytes; for an old-GNU sparse member the logical size, holes included (its holes
    /// arrive as [`Event::Hole`]s like the zero blocks of a dense member, so a writer needs to
    /// know nothing else).
    pub size: u64,
    /// Modification time (seconds since the epoch).
    pub mtime: u64,
    /// Mode bits as stored.
    pub mode: u64,
    /// The digests the validator computes of this file (none for a directory): one per
    /// algorithm the format needs, both only for a snapshot file that comes before its
    /// manifest.
    pub hashes: Hashes,
}

/// Returned by a sink to stop validation; the sink keeps its own reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop;

/// Receives [`Event`]s.
pub trait Sink {
    /// Whether [`Event::Data`] and [`Event::Hole`] are wanted. A validation-only caller returns
    /// `false` and the core skips hole detection.
    fn wants_data(&self) -> bool {
        true
    }

    /// Handles one event.
    fn event(&mut self, event: Event<'_>) -> Result<(), Stop>;
}

/// A sink that wants nothing: plain validation.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink;

impl Sink for NullSink {
    fn wants_data(&self) -> bool {
        false
    }

    fn event(&mut self, _event: Event<'_>) -> Result<(), Stop> {
        Ok(())
    }
}
