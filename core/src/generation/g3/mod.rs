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
//! - `json` and `time`: the strict JSON tree and writers, RFC 3339 normalisation;
//! - [`metadata`]: `metadata.json` (labels);
//! - `archive`: the `Layout::G3` state the validator selects on the first member
//!   (`snapshots/<id>/…`): path classification, bounded buffering of the JSON members, transport
//!   digests and payload integrity computed while the bytes stream, and the whole-archive checks
//!   (see its module doc); `error`: [`MsbError`].
//!
//! Beyond 0.7.13's loader, the recorded payload integrity and every layer's `virtual_size` are
//! checked, every checkpoint object against its name, every descriptor layer is
//! bound to its payload entry (same integrity, listed by its owner), `metadata.json` must belong
//! to a snapshot of the archive, parent links inside the archive may not loop, and the input may
//! hold one zstd frame only.
//!
//! Checkpoint snapshots: [`checkpoint`] and [`owned`] parse `checkpoint.json`, memory manifests,
//! disk generations and owned volumes; `closure` binds checkpoint and owned-volume members to them.
//!
//! A sink that wants data gets every member as events (`Slot::Msb`): `convert --to 0.6.2` and the
//! import of a `.msb` archive are built on them. Not done yet: the semantic schemas of the other
//! descriptor extensions. Every front end shows the `msb`
//! report section; `docs/format-0.7.md` says what is checked and where it is stricter than 0.7.13.

pub(crate) mod archive;
pub mod checkpoint;
mod closure;
pub mod descriptor;
mod error;
pub mod inventory;
pub(crate) mod json;
pub mod metadata;
pub mod owned;
pub(crate) mod time;
pub mod transport;

pub use error::MsbError;
pub use json::JsonError;
