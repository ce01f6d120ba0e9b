//! The streaming tar walker: 512-byte records in, member events out.
//!
//! It never sees the whole archive. It keeps one partial header record, the bytes of a pending
//! GNU long name (bounded by `max_path_len`), the map of the current old-GNU sparse member
//! (bounded by `max_sparse_segments`), and a few counters. Member data passes through as
//! borrowed slices of the caller's input, exactly once; the holes of a sparse member are
//! reported by length, never materialised.
//!
//! The writer ([`write`](mod@write), with [`sparse_plan`] for the maps of files with holes)
//! shares the reader's field positions ([`layout`]) and rules.

pub mod header;
pub mod layout;
pub mod sparse;
pub mod sparse_plan;
mod walker;
pub mod write;

pub use walker::{Member, TarSink, Walker};
