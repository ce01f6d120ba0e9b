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
//! Three generations are implemented: G1 (microsandbox 0.6.2 – 0.6.6, `g1`), G2 (the released
//! flat archives of 0.6.7 – 0.6.16, [`g2`]) and G3 (microsandbox 0.7 `.msb`, [`g3`]). The first
//! member's path tells them apart, so the choice is made once, on the first member header:
//! `Layout` starts `Pending` and becomes `G1`, `G2` or `G3`. A G2 archive starts under
//! `snapshots/<64 lowercase hex>/` or `files/<64 lowercase hex>/` (a directory record of either
//! counts), a G3 one with any other `snapshots/<id>/…`, and everything else is G1 (`<prefix>/…`,
//! `cache/…`).

use alloc::vec::Vec;

use crate::blake3_work::Blake3Backend;
use crate::error::Error;
use crate::events::Sink;
use crate::integrity::Sha256Backend;
use crate::limits::Limits;
use crate::report::{Generation, Report};
use crate::tar::Member;

pub(crate) mod g1;
pub mod g2;
pub mod g3;
pub mod translate;

/// The buffered JSON of one archive (descriptors, metadata, inventory), counted against
/// `Limits::max_json_total` whatever the generation.
#[derive(Debug)]
pub(crate) struct JsonBudget {
    used: u64,
    max: u64,
}

impl JsonBudget {
    /// An empty budget of `limits.max_json_total` bytes.
    pub(crate) fn new(limits: &Limits) -> JsonBudget {
        JsonBudget { used: 0, max: limits.max_json_total }
    }

    /// Counts `size` more bytes of the member at `at`; the buffer to fill.
    pub(crate) fn reserve(&mut self, size: u64, at: &crate::error::Location) -> Result<Vec<u8>, Error> {
        self.used = self.used.saturating_add(size);
        if self.used > self.max {
            return Err(Error::Limit {
                at: Some(at.clone()),
                error: crate::error::LimitError::JsonTotal(self.max),
            });
        }
        Ok(Vec::with_capacity(usize::try_from(size).unwrap_or(0)))
    }
}

/// The generation-specific state of one archive being validated.
#[derive(Debug)]
pub(crate) enum Layout {
    /// No member yet: the first member header chooses the generation.
    Pending {
        /// The bounds to hand on.
        limits: Limits,
        /// The SHA-256 backend to hand on.
        sha256: &'static dyn Sha256Backend,
        /// The BLAKE3 backend to hand on (G3).
        blake3: &'static dyn Blake3Backend,
    },
    /// G1: a microsandbox 0.6.2 bundle (`docs/format-0.6.2.md`).
    G1(alloc::boxed::Box<g1::Bundle>),
    /// G2: a released 0.6.7 – 0.6.16 archive (`g2`).
    G2(alloc::boxed::Box<g2::archive::Archive>),
    /// G3: a microsandbox 0.7 `.msb` archive (`g3`).
    G3(alloc::boxed::Box<g3::archive::Archive>),
}

/// The generation a first member named `name` opens.
fn opens(name: &[u8]) -> Generation {
    if g2::archive::opens(name) {
        Generation::G2
    } else if opens_g3(name) {
        Generation::G3
    } else {
        Generation::G1
    }
}

/// Whether a first member named `name` opens a G3 archive: `snapshots/<id>/<file>` or deeper.
/// G1 names are `<prefix>`, `<prefix>/<file>` or `cache/<kind>/<file>`, so a G1 archive never
/// starts with three components under `snapshots/` (a G1 snapshot directory may be named
/// `snapshots`, and stays G1).
fn opens_g3(name: &[u8]) -> bool {
    name.strip_prefix(b"snapshots/").is_some_and(|rest| rest.contains(&b'/'))
}

impl Layout {
    /// The layout state of a new archive: the generation is chosen on its first member.
    pub(crate) fn new(
        limits: Limits,
        sha256: &'static dyn Sha256Backend,
        blake3: &'static dyn Blake3Backend,
    ) -> Layout {
        Layout::Pending { limits, sha256, blake3 }
    }

    /// A member header from the walker.
    pub(crate) fn member<S: Sink>(&mut self, m: &Member, sink: &mut S) -> Result<(), Error> {
        if let Layout::Pending { limits, sha256, blake3 } = *self {
            *self = match opens(&m.name) {
                Generation::G1 => Layout::G1(alloc::boxed::Box::new(g1::Bundle::new(limits, sha256))),
                Generation::G2 => {
                    Layout::G2(alloc::boxed::Box::new(g2::archive::Archive::new(limits, sha256, blake3)))
                }
                Generation::G3 => {
                    Layout::G3(alloc::boxed::Box::new(g3::archive::Archive::new(limits, sha256, blake3)))
                }
            };
        }
        match self {
            Layout::Pending { .. } => Ok(()),
            Layout::G1(b) => b.member(m, sink),
            Layout::G2(a) => a.member(m, sink),
            Layout::G3(a) => a.member(m, sink),
        }
    }

    /// Whether a header named `name` may leave its `uid`/`gid` all NUL: only in a G2 or G3
    /// archive (0.7 writes them so, 0.7.13's own released-archive test too, and its reader
    /// ignores them; G1 refuses them as before), decided for the first header as
    /// [`Layout::member`] will decide the generation.
    pub(crate) fn allows_unset_ids(&self, name: &[u8]) -> bool {
        match self {
            Layout::Pending { .. } => opens(name) != Generation::G1,
            Layout::G1(_) => false,
            Layout::G2(_) | Layout::G3(_) => true,
        }
    }

    /// The generation, once the first member decided it.
    pub(crate) fn generation(&self) -> Option<crate::report::Generation> {
        match self {
            Layout::Pending { .. } => None,
            Layout::G1(_) => Some(crate::report::Generation::G1),
            Layout::G2(_) => Some(crate::report::Generation::G2),
            Layout::G3(_) => Some(crate::report::Generation::G3),
        }
    }

    /// A slice of the current member's data.
    pub(crate) fn data<S: Sink>(&mut self, bytes: &[u8], sink: &mut S) -> Result<(), Error> {
        match self {
            Layout::Pending { .. } => Ok(()),
            Layout::G1(b) => b.data(bytes, sink),
            Layout::G2(a) => a.data(bytes),
            Layout::G3(a) => a.data(bytes, sink),
        }
    }

    /// A hole of `len` zero bytes in the current (sparse) member.
    pub(crate) fn hole<S: Sink>(&mut self, len: u64, sink: &mut S) -> Result<(), Error> {
        match self {
            Layout::Pending { .. } => Ok(()),
            Layout::G1(b) => b.hole(len, sink),
            Layout::G2(a) => a.hole(len),
            Layout::G3(a) => a.hole(len, sink),
        }
    }

    /// The end of the current member.
    pub(crate) fn member_end<S: Sink>(&mut self, sink: &mut S) -> Result<(), Error> {
        match self {
            Layout::Pending { .. } => Ok(()),
            Layout::G1(b) => b.member_end(sink),
            Layout::G2(a) => a.member_end(),
            Layout::G3(a) => a.member_end(sink),
        }
    }

    /// The whole-archive checks once every member has been seen; the report of a valid archive
    /// (container fields are filled in by the validator). `zstd_frames` is the number of zstd
    /// frames the input held (0 for plain tar). An archive without members is judged as G1 (as
    /// before the generations were told apart).
    pub(crate) fn conclude(&self, zstd_frames: u32) -> Result<Report, Error> {
        match self {
            Layout::Pending { limits, sha256, .. } => g1::conclude(&g1::Bundle::new(*limits, *sha256)),
            Layout::G1(b) => g1::conclude(b),
            Layout::G2(a) => g2::archive::conclude(a, zstd_frames),
            Layout::G3(a) => g3::archive::conclude(a, zstd_frames),
        }
    }
}
