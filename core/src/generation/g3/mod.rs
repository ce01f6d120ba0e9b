//! G3: the `.msb` archives of microsandbox 0.7.x (`msb snapshot save`; the shared spec
//! `microsandbox-0.7.md`).
//!
//! One tar stream (plain or one zstd frame) holding, per snapshot and parents first,
//! `snapshots/<snap_id>/snapshot.json` (the descriptor), an optional
//! `snapshots/<snap_id>/metadata.json` (labels) and the layer payloads `layers/<layer_id>.raw|.qcow2`
//! (holey ones as old-GNU sparse members), then image files `images/…`, and last `archive.json`
//! (the inventory), which lists every snapshot and file with sizes, sparse maps, integrity and a
//! per-member transport digest.
//!
//! The building blocks here are exact and tested against real 0.7.13 archives
//! (`tests/tests/msb_blocks.rs`):
//! - [`descriptor`]: `snapshot.json` strict parse, canonical bytes, descriptor digest;
//! - [`inventory`]: `archive.json` parse, canonical-bytes check and every static rule;
//! - [`transport`]: the `msb-archive-member-blake3-v1` member digest;
//! - [`crate::merkle`]: the `msb-file-merkle-blake3-v1` layer integrity (shared, not G3-only);
//! - `json` and `time`: the strict JSON tree and writers, RFC 3339 normalisation.
//!
//! Still to do (the next step of issue #16): a `Layout::G3` variant in [`super`] that the
//! validator selects on the first member (`snapshots/…`), classifies member paths, buffers the
//! descriptors (≤ 1 MiB) and the inventory (≤ 4 MiB, last), hashes every member's stored bytes with
//! [`transport::TransportHasher`] and payloads with [`crate::merkle::FileMerkle`] or SHA-256, and at
//! the end checks what 0.7.13's loader checks against the tar: every member inventoried and every
//! included entry present, sizes and sparse maps equal, transport digests equal, sha256 of every
//! non-payload entry, descriptor digests equal to the members'; plus the file-payload bindings to
//! the descriptors' layers, `metadata.json`, image entries, the head, a report shape for G3, and
//! the G2 (0.6.7 – 0.6.16, numeric schema 1) inventory. Memory and owned-volume dependencies of
//! dependent archives and the semantic schemas of descriptor extensions are not checked yet.

pub(crate) mod archive;
pub mod descriptor;
mod error;
pub mod inventory;
mod json;
pub mod metadata;
mod time;
pub mod transport;

pub use error::MsbError;
pub use json::JsonError;
