//! The streaming tar walker: 512-byte records in, member events out.
//!
//! It never sees the whole archive. It keeps one partial header record, the bytes of a pending
//! GNU long name (bounded by `max_path_len`), and a few counters. Member data passes through as
//! borrowed slices of the caller's input, exactly once.

pub mod header;
mod walker;

pub use walker::{Member, TarSink, Walker};
