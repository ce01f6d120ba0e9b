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

/// The archive generation a report describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Generation {
    /// G1: a microsandbox 0.6.2 – 0.6.6 bundle.
    #[default]
    #[serde(rename = "0.6.2")]
    G1,
    /// G2: a released flat archive of microsandbox 0.6.7 – 0.6.16 (see [`Report::released`]).
    #[serde(rename = "0.6.7")]
    G2,
    /// G3: a microsandbox 0.7 `.msb` archive (see [`Report::msb`]).
    #[serde(rename = "0.7")]
    G3,
}

/// A layer payload's integrity verdict in a `.msb` archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LayerIntegrity {
    /// The descriptor records none (`payload.integrity: null`): only the transport digest binds
    /// the content.
    NotRecorded,
    /// The recorded integrity was recomputed over the content and matches.
    Verified {
        /// `sha256`, `msb-sparse-sha256-v1` or `msb-file-merkle-blake3-v1`.
        algorithm: String,
        /// The digest (the Merkle root for `msb-file-merkle-blake3-v1`).
        digest: String,
    },
    /// The payload is omitted (`included: false`, a dependent archive): the exact base must
    /// provide content with this integrity.
    NotIncluded {
        /// The recorded algorithm, when there is one.
        algorithm: Option<String>,
        /// The recorded digest or root, when there is one.
        digest: Option<String>,
    },
}

/// One layer payload of a `.msb` archive (`layers/<layer_id>.<format>`), in inventory order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsbLayer {
    /// `layer_` + 32 lowercase hex digits.
    pub layer_id: String,
    /// The member path.
    pub path: String,
    /// `raw` or `qcow2`.
    pub format: String,
    /// The snapshot whose entry it is.
    pub owner_snapshot: String,
    /// Whether the archive carries it (`false` in a dependent archive).
    pub included: bool,
    /// Bytes stored in the tar (a sparse member's data runs).
    pub encoded_size: u64,
    /// Logical size (holes included).
    pub apparent_size: u64,
    /// Whether it is stored as an old-GNU sparse member.
    pub sparse: bool,
    /// The recomputed integrity verdict.
    pub integrity: LayerIntegrity,
}

/// One snapshot of a `.msb` archive, in archive order (parents first as 0.7.13 writes them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsbSnapshot {
    /// `snap_` + 32 lowercase hex digits.
    pub snapshot_id: String,
    /// `sha256:<hex>` of the canonical `snapshot.json`.
    pub descriptor_digest: String,
    /// The logical parent, if any.
    pub parent: Option<String>,
    /// Whether the parent is also in this archive.
    pub parent_in_archive: bool,
    /// Whether this is the inventory's head.
    pub is_head: bool,
    /// `capture.created_at`, normalised.
    pub created_at: String,
    /// The image reference.
    pub image_ref: String,
    /// The image manifest digest.
    pub image_manifest_digest: String,
    /// `state.filesystem`.
    pub filesystem: String,
    /// `state.disk_format` (the head layer's format).
    pub disk_format: String,
    /// `state.virtual_size`.
    pub virtual_size: u64,
    /// Layer ids, oldest first (the last is the head layer).
    pub layers: Vec<String>,
    /// Labels from `metadata.json` (empty without one).
    pub labels: BTreeMap<String, String>,
    /// Must-understand extensions (`requires`), sorted.
    pub requires: Vec<String>,
    /// Those 0.7.13 does not implement: it would load the snapshot but refuse to restore it.
    pub unsupported_requires: Vec<String>,
    /// `file` (disk layers) or `checkpoint` (see [`MsbReport::checkpoints`]; the disk fields are
    /// then empty).
    #[serde(default)]
    pub scope: String,
    /// Owned volumes captured with it.
    #[serde(default)]
    pub owned_volumes: u32,
}

/// A checkpoint snapshot's closure (`checkpoints/<snap_id>/…`), in archive order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsbCheckpoint {
    /// The checkpoint snapshot.
    pub snapshot_id: String,
    /// `state.checkpoint_id` (equal to its `checkpoint.json`'s).
    pub checkpoint_id: String,
    /// `sha256:<hex>` of `checkpoint.json`, verified.
    pub checkpoint_root: String,
    /// Guest architecture.
    pub architecture: String,
    /// `full-snapshot`, `park` or `transparent-transfer`.
    pub capture_intent: String,
    /// Objects (`objects/sha256/…`) the closure references.
    pub objects: u32,
    /// Disk layers (`layers/…`) of its disk generations.
    pub disk_layers: u32,
    /// Owned-volume directory payloads (`owned/…`).
    pub owned_payloads: u32,
    /// Logical bytes of its members in the archive.
    pub bytes: u64,
    /// Members omitted from a dependent archive.
    pub not_included: u32,
}

/// A checkpoint or owned-volume member (kinds `checkpoint-root`, `checkpoint-object`,
/// `checkpoint-disk-layer`, `owned-directory-payload`, `owned-disk-layer`), in inventory order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsbClosureMember {
    /// The member path.
    pub path: String,
    /// The inventory kind.
    pub kind: String,
    /// The snapshot whose closure lists it.
    pub owner_snapshot: String,
    /// Whether the archive carries it (`false` in a dependent archive).
    pub included: bool,
    /// Bytes stored in the tar.
    pub encoded_size: u64,
    /// Logical size.
    pub apparent_size: u64,
    /// Whether it is stored as an old-GNU sparse member.
    pub sparse: bool,
    /// The content digest recomputed and found equal to what names or records it (`sha256:` for
    /// objects, owned payloads and `checkpoint.json`, `blake3:` for a disk layer's
    /// `integrity_root`); `None` when nothing records one or the member is not included.
    pub verified: Option<String>,
}

/// An image file of a `.msb` archive (`images/…`), in inventory order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsbImageFile {
    /// The member path.
    pub path: String,
    /// `image-metadata` or `image-object`.
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Its verified `sha256:<hex>`.
    pub sha256: String,
}

/// What a valid `.msb` archive (G3) holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsbReport {
    /// The inventory's head snapshot id.
    pub head: String,
    /// The inventory's `suggested_name`.
    pub suggested_name: Option<String>,
    /// `boot-complete` or `dependent`.
    pub completeness: String,
    /// The inventory's `requires`.
    pub requires: Vec<String>,
    /// Paths of the omitted (`included: false`) members a dependent archive needs from its base:
    /// disk layers, memory objects and owned-volume payloads.
    pub dependencies: Vec<String>,
    /// Snapshots, in archive order.
    pub snapshots: Vec<MsbSnapshot>,
    /// Layer payloads, in inventory order.
    pub layers: Vec<MsbLayer>,
    /// Image files, in inventory order.
    pub images: Vec<MsbImageFile>,
    /// Checkpoint snapshots' closures, in archive order.
    #[serde(default)]
    pub checkpoints: Vec<MsbCheckpoint>,
    /// Checkpoint and owned-volume members, in inventory order.
    #[serde(default)]
    pub closure: Vec<MsbClosureMember>,
}

/// One snapshot of a released (G2) archive, in archive order, with its upper file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedSnapshot {
    /// `sha256:<hex>` of its `snapshot.json` bytes: its identity in 0.6.7 – 0.6.16 (and its
    /// directory under `snapshots/` and `files/`).
    pub digest: String,
    /// The 0.7 snapshot id 0.7.13 gives it on load (`snap_` + the digest's first 32 hex digits).
    pub snapshot_id: String,
    /// `parent` as written: a released digest or a 0.7 `snap_` id.
    pub parent: Option<String>,
    /// Whether the parent is also in this archive.
    pub parent_in_archive: bool,
    /// Whether this is the head.
    pub is_head: bool,
    /// `created_at` as written.
    pub created_at: String,
    /// The image reference.
    pub image_ref: String,
    /// The image manifest digest.
    pub image_manifest_digest: String,
    /// `raw` or `qcow2`.
    pub format: String,
    /// Filesystem type.
    pub fstype: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Source sandbox.
    pub source_sandbox: Option<String>,
    /// The upper's member path, `files/<hex>/<upper_file>`.
    pub upper_path: String,
    /// The upper's logical size (`size_bytes`).
    pub size_bytes: u64,
    /// Bytes the upper stores in the tar (its data runs when sparse).
    pub encoded_size: u64,
    /// Whether the upper is stored as an old-GNU sparse member.
    pub sparse: bool,
    /// The recomputed integrity verdict of the upper.
    pub integrity: LayerIntegrity,
}

/// What a valid released archive (G2, microsandbox 0.6.7 – 0.6.16) holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedReport {
    /// Whether the archive carries an `archive.json` inventory (0.7.13 loads one without).
    pub inventory: bool,
    /// The head snapshot's digest.
    pub head: String,
    /// The inventory's `suggested_name`.
    pub suggested_name: Option<String>,
    /// The inventory's `with_parents` and `with_image` (absent without an inventory).
    pub with_parents: Option<bool>,
    /// See `with_parents`.
    pub with_image: Option<bool>,
    /// The inventory's `requires`.
    pub requires: Vec<String>,
    /// Snapshots, in archive order.
    pub snapshots: Vec<ReleasedSnapshot>,
    /// Image files (`images/…` or `cache/…`), in archive order.
    pub images: Vec<MsbImageFile>,
}

/// The verdict on a valid bundle.
///
/// For a `.msb` archive (`generation` `0.7`) the G3 content is in `msb`; `snapshots`, `cache` and
/// `files` describe a 0.6.2 bundle's import plan and stay empty (no front end writes G3 archives
/// yet); `head` is the head's descriptor digest and `head_prefix` its snapshot id (the head's
/// directory in a 0.7 store). A released archive (`generation` `0.6.7`) is described the same
/// way in `released`: `head` is the head's released digest, `head_prefix` the 0.7 id 0.7.13
/// gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The archive generation.
    #[serde(default)]
    pub generation: Generation,
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
    /// A `.msb` archive's content (absent for a 0.6.2 bundle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msb: Option<MsbReport>,
    /// A released (0.6.7 – 0.6.16) archive's content (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<ReleasedReport>,
}

impl Report {
    /// The head snapshot.
    pub fn head_snapshot(&self) -> Option<&SnapshotReport> {
        self.snapshots.iter().find(|s| s.is_head)
    }
}
