//! Every resource bound of the validator, in one place.
//!
//! The same [`Limits`] value drives the native host, the browser package and the wasmtime plugin,
//! so a bundle is judged identically everywhere. Defaults are safe for untrusted input.

use serde::{Deserialize, Serialize};

/// Resource bounds applied while validating one bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest zstd window (bytes) a frame may declare; checked before anything is allocated.
    pub max_window_size: u64,
    /// Hard ceiling on the decompressed tar stream (bytes), checked against every member's
    /// declared size before its data is read, so a zero bomb fails at its header. The members'
    /// logical sizes (a sparse member's `realsize`, holes included) are held to the same ceiling,
    /// as if the bundle were dense: that bounds the hashing a few bytes of sparse map can ask for.
    pub max_decompressed_bytes: u64,
    /// Most tar members (headers, including directories and GNU long-name records).
    pub max_entries: u32,
    /// Longest member path in bytes.
    pub max_path_len: u32,
    /// Largest `manifest.json` (G1) or `snapshot.json` (G3) in bytes.
    pub max_manifest_size: u64,
    /// Largest image-cache metadata file (`cache/manifests/*.json`) in bytes; also bounds a G3
    /// `metadata.json` (which the format caps at 1 MiB).
    pub max_metadata_size: u64,
    /// Most snapshots (manifests or `snapshot.json` descriptors) in one bundle.
    pub max_snapshots: u32,
    /// Most zero bytes accepted after the end-of-archive marker (record padding).
    pub max_trailing_zeros: u64,
    /// Most segments in one old-GNU sparse map (slots read, the zero-length end marker
    /// included). Each extension block must hold a segment, so this bounds them too.
    pub max_sparse_segments: u32,
    /// Most bytes of JSON (manifests and cache metadata together; in G3 descriptors,
    /// `metadata.json` and `archive.json`) held in memory at once.
    pub max_json_total: u64,
}

impl Limits {
    /// The defaults: 128 MiB window, 1 TiB decompressed, 10 000 entries, 1 KiB paths,
    /// 1 MiB manifests, 16 MiB cache metadata, 1 024 snapshots, 1 MiB trailing zeros,
    /// 65 536 sparse segments, 32 MiB of JSON in total.
    pub const DEFAULT: Limits = Limits {
        max_window_size: 128 << 20,
        max_decompressed_bytes: 1 << 40,
        max_entries: 10_000,
        max_path_len: 1024,
        max_manifest_size: 1 << 20,
        max_metadata_size: 16 << 20,
        max_snapshots: 1024,
        max_trailing_zeros: 1 << 20,
        max_sparse_segments: 65_536,
        max_json_total: 32 << 20,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
