//! G2: the "released flat" archives of microsandbox 0.6.7 – 0.6.16, as microsandbox 0.7.13 loads
//! them (the shared spec `microsandbox-0.7.md`, table "Generations"; `docs/format-0.7.md` § G2).
//!
//! One tar stream (plain or one zstd frame) holding, per snapshot,
//! `snapshots/<hex>/snapshot.json` (the released flat descriptor, whose SHA-256 is `<hex>`) and
//! its upper `files/<hex>/<upper.file>` (holey ones as old-GNU sparse members), image files
//! `images/<kind>/<file>` or `cache/<kind>/<file>`, and usually `archive.json`, the released
//! inventory (numeric schema 1), which lists every snapshot and file with sizes, integrity and an
//! optional per-member transport digest.
//!
//! Detection: the first member decides ([`crate::generation`]). A path (a directory's without
//! its trailing `/`) under `snapshots/<64 lowercase hex>/` or `files/<64 lowercase hex>/`, or that
//! directory itself, opens a G2 archive; `snapshots/<anything else>/…` opens G3; everything else
//! G1. A released archive whose first member is `archive.json`, an image file or a bare
//! top-level directory is therefore judged as G1 and refused (0.7.13's own released-archive test
//! writes the head's descriptor first).
//!
//! - [`descriptor`]: `snapshot.json` strict parse and 0.7.13's translation rules;
//! - [`inventory`]: `archive.json` parse, canonical-bytes check and every static rule;
//! - `archive`: the `Layout::G2` state (path classification, hashing while the bytes stream,
//!   the whole-archive checks); `error`: [`G2Error`].
//!
//! Shared with G3: the JSON tree and writers, the integrity type and its rules, the transport
//! digest, the entry kinds, the Merkle and SHA-256 hashers, the tar walker and name rules.
//!
//! Beyond 0.7.13's loader: the upper's recorded integrity is recomputed; the descriptor's
//! directory must be its digest even without an inventory; every `files/…` member must be the
//! upper its descriptor names; the inventory's head must be the parent graph's head (0.7.13
//! ignores it and takes the graph's); parent links may not loop; members of another generation
//! are refused; and the inventory's own stricter rules (see [`inventory`]).

pub(crate) mod archive;
pub mod descriptor;
mod error;
pub mod inventory;

pub use error::G2Error;
