//! Why a G3 (`.msb`) archive is refused once its members are read: the descriptor and inventory
//! errors of the building blocks, and the checks that bind the inventory to the tar members and
//! the descriptors to their layers.

use alloc::string::String;
use core::fmt;

use super::checkpoint::CheckpointError;
use super::descriptor::DescriptorError;
use super::inventory::InventoryError;

/// A G3 archive breaks a rule (`Error::Msb`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MsbError {
    /// A `snapshot.json` does not parse or validate.
    Descriptor {
        /// The member path.
        path: String,
        /// What was wrong.
        error: DescriptorError,
    },
    /// `archive.json` does not parse or breaks a static rule.
    Inventory(InventoryError),
    /// A `metadata.json` is not `{"schema":"microsandbox.snapshot-metadata/1","labels":{…}}`, is
    /// too large or belongs to no snapshot of the archive.
    Metadata {
        /// The member path.
        path: String,
        /// Why.
        why: &'static str,
    },
    /// The input holds more than one zstd frame: 0.7 writes one and reads only the first.
    ZstdFrames(u32),
    /// A member follows `archive.json`, which must be the last member.
    InventoryNotLast(String),
    /// The archive has no `archive.json`.
    NoInventory,
    /// A tar member the inventory does not list (0.7.13: "non-inventoried file").
    NotInventoried(String),
    /// A member the inventory marks `included: false` is in the tar.
    OmittedPresent(String),
    /// An included inventory entry has no tar member (0.7.13: "inventoried entry is missing").
    MissingMember(String),
    /// A member's stored or logical size differs from its entry's.
    SizeMismatch {
        /// The member path.
        path: String,
        /// `encoded_size` or `apparent_size`.
        field: &'static str,
        /// The inventory's value.
        recorded: u64,
        /// The member's.
        member: u64,
    },
    /// A member's sparse map differs from its entry's `sparse_ranges`.
    SparseMapMismatch(String),
    /// A member's `msb-archive-member-blake3-v1` digest differs from its entry's.
    TransportMismatch {
        /// The member path.
        path: String,
        /// Recorded in the inventory.
        recorded: String,
        /// Computed over the member.
        computed: String,
    },
    /// A non-payload entry records no `sha256` integrity.
    EntryIntegrity(String),
    /// A non-payload member's SHA-256 differs from its entry's.
    Sha256Mismatch {
        /// The member path.
        path: String,
        /// Recorded in the inventory.
        recorded: String,
        /// Computed over the member.
        computed: String,
    },
    /// A descriptor's digest differs from its inventory member's `descriptor_digest`.
    DescriptorDigest {
        /// The snapshot id.
        snapshot: String,
        /// Recorded in the inventory.
        recorded: String,
        /// Computed from `snapshot.json`.
        computed: String,
    },
    /// A `snapshot.json`'s `snapshot_id` is not the one its path names.
    DescriptorPath(String),
    /// A layer and its payload entry do not match (missing entry, other integrity, an owner that
    /// does not list it, a payload no descriptor lists).
    LayerBinding {
        /// The payload path.
        path: String,
        /// Why.
        why: &'static str,
    },
    /// A layer payload's content does not have its recorded integrity (0.7.13 does not check
    /// this on load).
    PayloadIntegrity {
        /// The payload path.
        path: String,
        /// The algorithm.
        algorithm: &'static str,
        /// Recorded in the descriptor and the inventory.
        recorded: String,
        /// Computed over the member.
        computed: String,
    },
    /// The descriptors' `parent` links inside the archive form a cycle.
    ParentCycle(String),
    /// A `checkpoint.json`, memory manifest or disk generation does not parse or validate.
    Checkpoint {
        /// The member path.
        path: String,
        /// What was wrong.
        error: CheckpointError,
    },
    /// A content-addressed member's bytes are not what names or records them: an object's
    /// SHA-256 is not its name, `checkpoint.json`'s not the descriptor's `checkpoint_root`, an
    /// owned payload's not its recorded digest, a disk layer's Merkle root not its
    /// `integrity_root`.
    ContentDigest {
        /// The member path.
        path: String,
        /// What names or records it.
        expected: String,
        /// Computed over the member.
        computed: String,
    },
    /// A checkpoint or owned-volume member is not bound as its closure says (owner, order, size,
    /// epoch, the two owned-volume inventories, …).
    ClosureBinding {
        /// The member path (or snapshot id).
        path: String,
        /// Why.
        why: &'static str,
    },
    /// A member a checkpoint or owned-volume closure references has no inventory entry.
    ClosureMissing(String),
    /// A checkpoint or owned-volume entry no closure of the archive references.
    ClosureUnreferenced(String),
    /// A disk layer's capacity (a raw file's size, a qcow2 header's size) is not its recorded
    /// `virtual_size`.
    VirtualSize {
        /// The member path.
        path: String,
        /// Recorded.
        recorded: u64,
        /// The payload's, `None` when a qcow2 layer has no qcow2 header.
        payload: Option<u64>,
    },
    /// A dependent archive's declared dependency is not what the head itself records there
    /// (0.7.13 checks this only once a base filled the omissions in, so it refuses such an
    /// archive on every load).
    DependencyIdentity {
        /// The omitted member.
        path: String,
        /// Why.
        why: &'static str,
    },
    /// Something this validator does not read yet (released `files/…` payload paths, writing).
    Unsupported {
        /// The member path or snapshot id.
        path: String,
        /// What.
        what: &'static str,
    },
}

impl MsbError {
    /// Stable identifier.
    pub fn code(&self) -> &'static str {
        match self {
            MsbError::Descriptor { error, .. } => error.code(),
            MsbError::Inventory(error) => error.code(),
            MsbError::Metadata { .. } => "msb_metadata",
            MsbError::ZstdFrames(_) => "msb_zstd_frames",
            MsbError::InventoryNotLast(_) => "msb_inventory_not_last",
            MsbError::NoInventory => "msb_no_inventory",
            MsbError::NotInventoried(_) => "msb_member_not_inventoried",
            MsbError::OmittedPresent(_) => "msb_omitted_member_present",
            MsbError::MissingMember(_) => "msb_member_missing",
            MsbError::SizeMismatch { .. } => "msb_size_mismatch",
            MsbError::SparseMapMismatch(_) => "msb_sparse_map_mismatch",
            MsbError::TransportMismatch { .. } => "msb_transport_mismatch",
            MsbError::EntryIntegrity(_) => "msb_entry_integrity",
            MsbError::Sha256Mismatch { .. } => "msb_sha256_mismatch",
            MsbError::DescriptorDigest { .. } => "msb_descriptor_digest_mismatch",
            MsbError::DescriptorPath(_) => "msb_descriptor_path",
            MsbError::LayerBinding { .. } => "msb_layer_binding",
            MsbError::PayloadIntegrity { .. } => "msb_payload_integrity_mismatch",
            MsbError::ParentCycle(_) => "msb_parent_cycle",
            MsbError::Checkpoint { error, .. } => error.code(),
            MsbError::ContentDigest { .. } => "msb_content_digest_mismatch",
            MsbError::ClosureBinding { .. } => "msb_closure_binding",
            MsbError::ClosureMissing(_) => "msb_closure_member_missing",
            MsbError::ClosureUnreferenced(_) => "msb_closure_member_unreferenced",
            MsbError::VirtualSize { .. } => "msb_virtual_size",
            MsbError::DependencyIdentity { .. } => "msb_dependency_identity",
            MsbError::Unsupported { .. } => "msb_unsupported",
        }
    }
}

impl fmt::Display for MsbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsbError::Descriptor { path, error } => write!(f, "'{}': {error}", path.escape_debug()),
            MsbError::Inventory(error) => write!(f, "{error}"),
            MsbError::Metadata { path, why } => {
                write!(f, "'{}': snapshot metadata: {why}", path.escape_debug())
            }
            MsbError::ZstdFrames(n) => {
                write!(f, "{n} zstd frames: microsandbox 0.7 writes one and reads only the first")
            }
            MsbError::InventoryNotLast(path) => {
                write!(f, "member '{}' follows archive.json, which must be last", path.escape_debug())
            }
            MsbError::NoInventory => f.write_str("the archive has no archive.json inventory"),
            MsbError::NotInventoried(path) => {
                write!(f, "archive contains a non-inventoried file: '{}'", path.escape_debug())
            }
            MsbError::OmittedPresent(path) => write!(
                f,
                "'{}' is in the archive but its inventory entry says it is not included",
                path.escape_debug()
            ),
            MsbError::MissingMember(path) => {
                write!(f, "inventoried entry is missing: '{}'", path.escape_debug())
            }
            MsbError::SizeMismatch { path, field, recorded, member } => write!(
                f,
                "'{}': {field} is {recorded} in the inventory, {member} in the archive",
                path.escape_debug()
            ),
            MsbError::SparseMapMismatch(path) => {
                write!(
                    f,
                    "'{}': the sparse map differs from the inventory's sparse_ranges",
                    path.escape_debug()
                )
            }
            MsbError::TransportMismatch { path, recorded, computed } => write!(
                f,
                "archive member transport integrity mismatch: '{}': inventory={recorded}, member={computed}",
                path.escape_debug()
            ),
            MsbError::EntryIntegrity(path) => {
                write!(f, "'{}': the inventory records no sha256 integrity for it", path.escape_debug())
            }
            MsbError::Sha256Mismatch { path, recorded, computed } => write!(
                f,
                "'{}': sha256 mismatch: inventory={recorded}, member={computed}",
                path.escape_debug()
            ),
            MsbError::DescriptorDigest { snapshot, recorded, computed } => write!(
                f,
                "snapshot {}: descriptor digest mismatch: inventory={recorded}, snapshot.json={computed}",
                snapshot.escape_debug()
            ),
            MsbError::DescriptorPath(path) => {
                write!(f, "'{}': snapshot_id is not the id its path names", path.escape_debug())
            }
            MsbError::LayerBinding { path, why } => {
                write!(f, "layer payload '{}': {why}", path.escape_debug())
            }
            MsbError::PayloadIntegrity { path, algorithm, recorded, computed } => write!(
                f,
                "layer payload '{}': {algorithm} integrity mismatch: recorded={recorded}, content={computed}",
                path.escape_debug()
            ),
            MsbError::ParentCycle(id) => {
                write!(f, "snapshot {}: its parent links loop back to it", id.escape_debug())
            }
            MsbError::Checkpoint { path, error } => {
                write!(f, "'{}': checkpoint manifest: {error}", path.escape_debug())
            }
            MsbError::ContentDigest { path, expected, computed } => write!(
                f,
                "'{}': content digest mismatch: expected {expected}, content {computed}",
                path.escape_debug()
            ),
            MsbError::ClosureBinding { path, why } => {
                write!(f, "checkpoint or owned-volume member '{}': {why}", path.escape_debug())
            }
            MsbError::ClosureMissing(path) => write!(
                f,
                "'{}' is referenced by a checkpoint or owned-volume closure but has no inventory entry",
                path.escape_debug()
            ),
            MsbError::ClosureUnreferenced(path) => {
                write!(f, "checkpoint closure member is not referenced: '{}'", path.escape_debug())
            }
            MsbError::VirtualSize { path, recorded, payload } => match payload {
                Some(p) => write!(
                    f,
                    "disk layer '{}': virtual_size is {recorded}, its payload's capacity {p}",
                    path.escape_debug()
                ),
                None => {
                    write!(f, "disk layer '{}': a qcow2 layer without a qcow2 header", path.escape_debug())
                }
            },
            MsbError::DependencyIdentity { path, why } => {
                write!(f, "dependency '{}': {why}", path.escape_debug())
            }
            MsbError::Unsupported { path, what } => {
                write!(f, "'{}': {what} not supported yet", path.escape_debug())
            }
        }
    }
}
