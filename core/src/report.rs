//! The validation report: everything a host needs to stage and promote without re-reading.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

/// The outer container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    /// One or more zstd frames around a tar stream.
    Zstd,
    /// A plain tar stream.
    Tar,
}

/// Result of the upper integrity check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum IntegrityStatus {
    /// `upper.integrity` is `null`: only metadata checks apply.
    NotRecorded,
    /// The recorded digest matches the content.
    Verified {
        /// `sha256` or `msb-sparse-sha256-v1`.
        algorithm: String,
        /// The matching digest.
        digest: String,
    },
}

/// One snapshot of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotReport {
    /// Archive prefix (becomes the snapshot's directory name).
    pub prefix: String,
    /// Snapshot digest `sha256:<hex>` of the canonical manifest.
    pub digest: String,
    /// Whether `prefix` is the `sha256-<16 hex>` name 0.6.2 export gives this digest.
    pub prefix_matches_digest: bool,
    /// Parent digest, if any.
    pub parent: Option<String>,
    /// Whether the parent is also in this bundle.
    pub parent_in_bundle: bool,
    /// Whether this is the head.
    pub is_head: bool,
    /// Image reference.
    pub image_ref: String,
    /// Image manifest digest.
    pub image_manifest_digest: String,
    /// `raw` or `qcow2`.
    pub format: String,
    /// Filesystem type.
    pub fstype: String,
    /// Creation time string.
    pub created_at: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Source sandbox.
    pub source_sandbox: Option<String>,
    /// Upper file name.
    pub upper_file: String,
    /// Upper apparent size.
    pub size_bytes: u64,
    /// Integrity verdict.
    pub integrity: IntegrityStatus,
}

/// Where a planned file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    /// Under the snapshots directory.
    Snapshots,
    /// Under the image cache directory.
    Cache,
}

/// What a planned file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A snapshot's `manifest.json`.
    Manifest,
    /// A snapshot's upper disk image.
    Upper,
    /// Another file in a snapshot directory (0.6.2 keeps these).
    Extra,
    /// Image cache metadata (`manifests/*.json`).
    CacheMetadata,
    /// Image cache artifact (layer, fsmeta, vmdk).
    CacheArtifact,
}

/// One file an import writes, in archive order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedFile {
    /// Index of the member's header record.
    pub index: u32,
    /// Destination area.
    pub area: Area,
    /// Path relative to the area: `<prefix>/<file>` or `<kind>/<file>`.
    pub path: String,
    /// What it is.
    pub role: Role,
    /// Size in bytes.
    pub size: u64,
    /// The algorithm of `digest`: `msb-sparse-sha256-v1` for an upper whose manifest records
    /// it (its integrity digest), `sha256` for every other file. Each file is hashed once.
    pub algorithm: String,
    /// The content's digest by `algorithm`, `sha256:<hex>`: what the file's bytes must hash to.
    pub digest: String,
    /// Modification time from the header.
    pub mtime: u64,
}

/// The image cache part of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheReport {
    /// The head's image reference, normalised.
    pub image_ref: String,
    /// The image manifest digest.
    pub manifest_digest: String,
    /// Number of layers.
    pub layers: u32,
    /// Paths (relative to the cache directory) of the expected files, in install order.
    pub files: Vec<String>,
}

/// The verdict on a valid bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Outer container.
    pub container: Container,
    /// zstd frames decoded (0 for plain tar).
    pub zstd_frames: u32,
    /// Bytes of input.
    pub compressed_bytes: u64,
    /// Bytes of the tar stream.
    pub decompressed_bytes: u64,
    /// Tar header records.
    pub entries: u32,
    /// Snapshots in archive order.
    pub snapshots: Vec<SnapshotReport>,
    /// The head snapshot's digest.
    pub head: String,
    /// The head snapshot's prefix.
    pub head_prefix: String,
    /// Image cache files, if the bundle carries any.
    pub cache: Option<CacheReport>,
    /// Every file an import writes, in archive order.
    pub files: Vec<PlannedFile>,
}

impl Report {
    /// The head snapshot.
    pub fn head_snapshot(&self) -> Option<&SnapshotReport> {
        self.snapshots.iter().find(|s| s.is_head)
    }
}
