//! microsandbox 0.7 `.msb` archives written here: [`convert()`] of a 0.6.2 bundle (the archive
//! 0.7.13 would hold after loading it) and [`export_msb`] of stored snapshots, on
//! [`writer::MsbWriter`]. What an archive must be is the
//! core's ([`snapbundle_core::generation::g3`], [`snapbundle_core::generation::translate`]); the
//! format notes are in `docs/format-0.7.md`.

pub mod backward;
mod convert;
mod export;
pub mod forward;
pub mod writer;

pub use convert::{convert, ConvertOptions, ConvertOutcome, Generation};
pub use export::export_msb;
