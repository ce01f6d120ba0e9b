//! # snapbundle-core
//!
//! A sans-IO, `no_std` validator for microsandbox 0.6.2 snapshot bundles (`.tar.zst` or `.tar`),
//! the released archives of microsandbox 0.6.7 – 0.6.16 and microsandbox 0.7 `.msb` snapshot
//! archives (the last two validation only; see [`generation::g2`] and [`generation::g3`]).
//!
//! The caller pushes the bundle's bytes in chunks of any size into a [`Validator`]; the validator
//! emits [`Event`]s (members, data slices, holes) to a [`Sink`] as they stream by and, at the end,
//! returns a [`Report`] for a valid bundle or a typed [`Error`] that names the entry and the reason.
//! It never touches a file, a clock or a socket, so the same code runs natively, in the browser and
//! inside a wasmtime sandbox, and gives the same answer for every chunking of the same bytes.
//!
//! Layers, one module each:
//! - [`zstd`]: frames, window cap, checksums, trailing data (the zstd gate);
//! - [`tar`]: 512-byte records, numbers, long names, old-GNU sparse maps, end of archive (the
//!   record walker);
//! - [`names`]: the closed name grammar of the bundle layout (snapshot and cache slots);
//! - [`manifest`]: 0.6.2 manifest parsing, validation, canonical digest;
//! - [`integrity`]: `sha256` and `msb-sparse-sha256-v1` over streamed data; [`merkle`]:
//!   `msb-file-merkle-blake3-v1` (microsandbox 0.7 layers), holes at the cost of a few hashes;
//! - [`reference`](mod@reference) and [`cache_meta`]: OCI reference normalisation and image-cache rules;
//! - [`registry_artifact`]: snapbundle's own OCI registry artifact (media types, annotations, the
//!   manifest push writes, and the checks of one a registry serves);
//! - [`holes`]: zero-block detection so writers keep sparse files sparse;
//! - [`validator`]: the state machine that drives the zstd gate and the walker and hands each
//!   member to the archive generation's rules ([`generation`]: G1, the 0.6.2 bundle, G2, the
//!   released 0.6.7 – 0.6.16 archive, and G3, the 0.7 `.msb` archive, chosen on the first
//!   member), and
//!   [`report`]: the verdict.
//!
//! Sparse members (old-GNU `S` entries, as `snapbundle export --sparse` and `tar --sparse` write
//! them) are accepted for snapshot files other than `manifest.json`: their maps are checked by
//! [`tar::sparse`], their size everywhere is the logical size (`realsize`), their holes reach the
//! sink as [`Event::Hole`] and are hashed as zeros without being materialised, so a sparse bundle
//! gives the same report and digests as the dense bundle of the same snapshot. Hashing a hole
//! still costs SHA-256 time for every logical byte (twice for an upper: plain and
//! `msb-sparse-sha256-v1`), the same as the dense bundle without its decompression; the logical
//! sizes count against [`Limits::max_decompressed_bytes`], which bounds that work.
//!
//! Every resource bound is a field of [`Limits`].
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod blake3_work;
pub mod cache_meta;
pub mod error;
pub mod events;
pub mod generation;
pub mod hex;
pub mod holes;
pub mod integrity;
pub mod limits;
pub mod manifest;
pub mod merkle;
pub mod names;
pub mod reference;
pub mod registry_artifact;
pub mod report;
pub mod tar;
pub mod validator;
pub mod zstd;

pub use error::{Error, Location};
pub use events::{Event, MemberStart, NullSink, Sink, Stop};
pub use limits::Limits;
pub use manifest::Manifest;
pub use report::Report;
pub use validator::Validator;

/// Validates a whole in-memory bundle in one call.
pub fn validate(bundle: &[u8], limits: Limits) -> Result<Report, Error> {
    let mut v = Validator::new(limits);
    v.push(bundle, &mut NullSink)?;
    v.finish()
}
