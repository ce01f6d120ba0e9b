//! The streaming tar walker: 512-byte records in, member events out.
//!
//! It never sees the whole archive. It keeps one partial header record, the bytes of a pending
//! GNU long name (bounded by `max_path_len`), the map of the current old-GNU sparse member
//! (bounded by `max_sparse_segments`), and a few counters. Member data passes through as
//! borrowed slices of the caller's input, exactly once; the holes of a sparse member are
//! reported by length, never materialised.

pub mod header;
pub mod sparse;
mod walker;

pub use walker::{Member, TarSink, Walker};
