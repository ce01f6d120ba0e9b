//! Archive generations: the one seam between what every microsandbox archive shares and what a
//! generation defines (`docs/architecture.md` § The generation seam).
//!
//! Shared by every generation, outside this module: the container and the zstd gate
//! ([`crate::zstd`]), the tar record walker with its long names and old-GNU sparse maps
//! ([`crate::tar`]), the portable name-component rules and the duplicate key ([`crate::names`]),
//! the streamed hashes ([`crate::integrity`]), hole detection ([`crate::holes`]) and every bound
//! ([`crate::Limits`]). The [`Validator`](crate::Validator) drives them and hands each tar member
//! to a `Layout`.
//!
//! Specific to a generation, inside its own submodule: which member paths exist and in what order
//! (layout), the descriptor and its digest, which integrity a file records and how it is checked,
//! how the head snapshot is chosen, and what the report says about it. A generation sees the
//! walker's member headers, data, holes and member ends, and emits [`crate::Event`]s to the
//! caller's sink; at the end it concludes the whole-archive checks into a [`Report`].
//!
//! Today there is one generation, G1 (microsandbox 0.6.2 – 0.6.6, `g1`). A later one (0.6.7+
//! inventory archives, 0.7 `.msb`) is a new variant of `Layout` with its own submodule;
//! the first member's path tells the generations apart (a G1 archive starts with `<prefix>/`,
//! later ones with `snapshots/`), so the choice is made once, on the first member header.

use crate::error::Error;
use crate::events::Sink;
use crate::integrity::Sha256Backend;
use crate::limits::Limits;
use crate::report::Report;
use crate::tar::Member;

pub(crate) mod g1;
pub mod g3;

/// The generation-specific state of one archive being validated.
#[derive(Debug)]
pub(crate) enum Layout {
    /// G1: a microsandbox 0.6.2 bundle (`docs/format-0.6.2.md`).
    G1(g1::Bundle),
}

impl Layout {
    /// The layout state of a new archive.
    pub(crate) fn new(limits: Limits, sha256: &'static dyn Sha256Backend) -> Layout {
        Layout::G1(g1::Bundle::new(limits, sha256))
    }

    /// A member header from the walker.
    pub(crate) fn member<S: Sink>(&mut self, m: &Member, sink: &mut S) -> Result<(), Error> {
        match self {
            Layout::G1(b) => b.member(m, sink),
        }
    }

    /// A slice of the current member's data.
    pub(crate) fn data<S: Sink>(&mut self, bytes: &[u8], sink: &mut S) -> Result<(), Error> {
        match self {
            Layout::G1(b) => b.data(bytes, sink),
        }
    }

    /// A hole of `len` zero bytes in the current (sparse) member.
    pub(crate) fn hole<S: Sink>(&mut self, len: u64, sink: &mut S) -> Result<(), Error> {
        match self {
            Layout::G1(b) => b.hole(len, sink),
        }
    }

    /// The end of the current member.
    pub(crate) fn member_end<S: Sink>(&mut self, sink: &mut S) -> Result<(), Error> {
        match self {
            Layout::G1(b) => b.member_end(sink),
        }
    }

    /// The whole-archive checks once every member has been seen; the report of a valid archive
    /// (container fields are filled in by the validator).
    pub(crate) fn conclude(&self) -> Result<Report, Error> {
        match self {
            Layout::G1(b) => g1::conclude(b),
        }
    }
}
