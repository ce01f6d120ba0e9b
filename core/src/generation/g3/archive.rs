//! The G3 layout state: what a `.msb` archive's members are, what is hashed while they stream
//! past, and the whole-archive checks once `archive.json` (the last member) has been read.
//!
//! Per member, at its header: the path is classified ([`EntryKind::of_path`]; a checkpoint or
//! owned-volume member must follow its snapshot's descriptor and, under `checkpoints/<id>/`, its
//! `checkpoint.json`, which says which objects are documents to buffer), checked component by
//! component and for duplicates, and the member's `msb-archive-member-blake3-v1` transport digest is started
//! from tar-derived values only (kind from the path, path, stored and logical sizes, the sparse
//! map as stored), so it can be compared with the inventory that arrives last. Descriptors
//! (≤ `Limits::max_manifest_size`), `metadata.json` (≤ 1 MiB and `Limits::max_metadata_size`) and
//! `archive.json` (≤ 4 MiB) are buffered, all of them together within `Limits::max_json_total`;
//! they and image files are hashed with SHA-256 (the inventory's `sha256` of every non-payload
//! entry).
//!
//! A layer payload's recorded integrity is recomputed while it streams (0.7.13 does not). The
//! descriptor that lists the layer normally precedes it (0.7.13 writes each snapshot's
//! `snapshot.json` before its layers), so its algorithm is known at the payload's header and only
//! that one is computed: `sha256` or `msb-sparse-sha256-v1` with the validator's SHA-256 backend,
//! `msb-file-merkle-blake3-v1` with [`crate::merkle::FileMerkle`] (holes cost a few hashes), none
//! when the descriptor records no integrity. A payload that comes before every descriptor listing
//! it (no writer does that, but the order is not a rule of the format) gets all three, so any
//! recorded integrity can still be checked: at most three hashes per logical byte, bounded like
//! every byte by `Limits::max_decompressed_bytes`. The transport digest and the Merkle root are
//! one [`crate::blake3_work::Blake3Work`] per member, run by the validator's BLAKE3 backend
//! (inline, or on a host's worker thread).
//!
//! Per-member bookkeeping kept to the end is bounded by the member count: the path, sizes, the
//! transport digest, a digest of the sparse map (never the map itself) and the content digests.
//!
//! No [`crate::Event`] is emitted for G3 members (the event vocabulary names G1 slots), and a
//! caller whose sink wants data (a writer) is refused at the first member: importing a `.msb`
//! archive is not implemented by any front end yet, and a writer must never see a plan it
//! cannot follow.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::checkpoint::{self, CheckpointManifest, DiskGeneration, DiskLayerRef, MemoryManifest};
use super::descriptor::{Descriptor, Integrity, State};
use super::error::MsbError;
use super::inventory::{
    Completeness, DiskIdentity, EntryKind, Inventory, InventoryError, OwnedDependency, OwnedIdentity,
    INVENTORY_PATH, MAX_INVENTORY_BYTES,
};
use super::metadata;
use super::owned::OwnedData;
use super::transport::TransportHasher;
use crate::blake3_work::{Blake3Backend, Blake3Error, MemberBlake3};
use crate::cache_meta::CacheKind;
use crate::error::{Error, LimitError, Location, TarError};
use crate::events::{Event, MemberStart, Sink};
use crate::generation::JsonBudget;
use crate::hex;
use crate::hex::blake3_digest;
use crate::holes::{HoleSplitter, Piece};
use crate::integrity::{Hashes, MemberDigests, MemberHasher, Sha256Backend};
use crate::limits::Limits;
use crate::merkle::{FileMerkle, MerkleRoot, CHECKPOINT_FILE};
use crate::names::{self, Slot};
use crate::report::{
    Container, Generation, LayerIntegrity, MsbImageFile, MsbLayer, MsbReport, MsbSnapshot, Report,
};

/// How many leading bytes of a disk layer are kept: a qcow2 header's size field ends at 32.
const HEAD_BYTES: usize = 32;
use crate::tar::header::EntryType;
use crate::tar::Member;

/// The content digests a member needs.
#[derive(Debug, Default)]
pub(super) struct Digests {
    pub(super) sha256: Option<[u8; 32]>,
    sparse_sha256: Option<[u8; 32]>,
    /// `msb-file-merkle-blake3-v1` for a layer payload, `microsandbox.checkpoint-file/1` for a
    /// checkpoint or owned disk layer.
    pub(super) merkle: Option<MerkleRoot>,
}

/// One member seen, kept until the inventory is read.
#[derive(Debug)]
pub(super) struct Seen {
    path: String,
    kind: EntryKind,
    encoded: u64,
    pub(super) apparent: u64,
    pub(super) sparse: bool,
    /// BLAKE3 of the sparse map as stored (see [`ranges_digest`]).
    ranges: [u8; 32],
    transport: String,
    pub(super) digests: Digests,
    /// The first [`HEAD_BYTES`] logical bytes of a disk layer (for its qcow2 header).
    pub(super) head: Vec<u8>,
}

/// Which closure document a buffered checkpoint member is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Doc {
    /// `checkpoint.json`.
    Root,
    /// The memory-manifest object.
    Memory,
    /// A disk-generation object (its id).
    Disk(String),
}

/// What the closure documents of one checkpoint snapshot said, as they streamed past.
#[derive(Debug, Default)]
pub(super) struct Closure {
    /// `checkpoint.json`, parsed.
    pub(super) root: Option<CheckpointManifest>,
    /// `sha256:<hex>` of `checkpoint.json`.
    pub(super) root_digest: String,
    /// The memory manifest, when its object was read.
    pub(super) memory: Option<MemoryManifest>,
    /// Disk generations read, by object id.
    pub(super) disks: BTreeMap<String, DiskGeneration>,
}

/// The member being read.
#[derive(Debug)]
struct Current {
    loc: Location,
    path: String,
    /// `None` for `archive.json`.
    kind: Option<EntryKind>,
    encoded: u64,
    apparent: u64,
    sparse: bool,
    ranges: [u8; 32],
    hasher: Option<MemberHasher>,
    /// The transport digest and the Merkle root, on the BLAKE3 backend.
    blake3: Option<MemberBlake3>,
    buffer: Option<Vec<u8>>,
    /// The closure document it is, and its snapshot.
    doc: Option<(Doc, String)>,
    head: Option<Vec<u8>>,
    /// Splits the content into data and holes for a sink that wants it.
    splitter: Option<HoleSplitter>,
}

/// A parsed descriptor and the member it came from.
#[derive(Debug)]
pub(super) struct Described {
    pub(super) descriptor: Descriptor,
    pub(super) digest: String,
}

/// The G3 layout state of one archive.
#[derive(Debug)]
pub(crate) struct Archive {
    limits: Limits,
    sha256: &'static dyn Sha256Backend,
    blake3: &'static dyn Blake3Backend,
    /// Duplicate keys of the paths seen.
    keys: BTreeSet<String>,
    members: Vec<Seen>,
    /// Descriptors in archive order.
    pub(super) descriptors: Vec<Described>,
    /// Snapshot id → index in `descriptors`.
    by_id: BTreeMap<String, usize>,
    /// Checkpoint snapshot id → its closure documents.
    pub(super) closures: BTreeMap<String, Closure>,
    /// Payload path → the integrity of the first descriptor seen that lists it.
    layer_integrity: BTreeMap<String, Option<Integrity>>,
    /// `metadata.json` path → labels.
    labels: BTreeMap<String, BTreeMap<String, String>>,
    inventory: Option<Inventory>,
    current: Option<Current>,
    json: JsonBudget,
}

/// A stable digest of a sparse map (`(offset, len)` pairs, little-endian), so members can be
/// compared with the inventory without keeping their maps.
fn ranges_digest(ranges: &[(u64, u64)]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&(ranges.len() as u64).to_le_bytes());
    for (o, l) in ranges {
        h.update(&o.to_le_bytes());
        h.update(&l.to_le_bytes());
    }
    *h.finalize().as_bytes()
}

fn msb(e: MsbError) -> Error {
    Error::Msb(e)
}

/// The checks 0.7.13 makes of a dependent archive's declarations against its own head only once
/// a base filled the omissions in (`delta::validate_resolved`), so that it refuses an archive
/// failing them on every load: the disk dependencies are the head's root-chain layers, oldest
/// first, each at its path and exactly as the head records it (a file snapshot's descriptor
/// layers; a checkpoint's root-device disk generations); every memory dependency is one of the
/// head's memory payload objects (an object a memory extent names, never the checkpoint's own
/// metadata objects); every owned-payload dependency is one of the head's owned payloads exactly as
/// recorded (a directory volume's content file, an owned disk layer with its integrity root), and
/// each owned disk omits only an oldest-first run of its layers.
fn dependency_identities(
    a: &Archive,
    inv: &Inventory,
    by_id: &BTreeMap<&str, &Described>,
) -> Result<(), Error> {
    let disks = inv.disk_dependencies();
    let memory: Vec<&str> = inv
        .entries
        .iter()
        .filter(|e| !e.included && e.kind == EntryKind::CheckpointObject)
        .map(|e| e.path.as_str())
        .collect();
    let owned = inv.owned_dependencies();
    if disks.is_empty() && memory.is_empty() && owned.is_empty() {
        return Ok(());
    }
    let wrong = |path: &str, why| Err(msb(MsbError::DependencyIdentity { path: path.to_string(), why }));
    let Some(head) = by_id.get(inv.head.as_str()).map(|d| &d.descriptor) else {
        return Ok(());
    };
    let closure = a.closures.get(inv.head.as_str());
    let root_chain: Vec<(String, DiskIdentity)> = match &head.state {
        State::File(file) => {
            file.layers.iter().map(|l| (l.payload_path(), DiskIdentity::File(l.clone()))).collect()
        }
        _ => {
            let generations = closure.and_then(|c| c.root.as_ref().map(|r| (c, r)));
            generations
                .map(|(c, r)| {
                    r.disks
                        .iter()
                        .filter_map(|id| c.disks.get(id))
                        .filter(|g| Some(g.device_id.as_str()) == head.root_device)
                        .flat_map(|g| g.layers.iter())
                        .map(|l| {
                            let path = alloc::format!("checkpoints/{}/layers/{}", inv.head, l.file_name());
                            (path, DiskIdentity::Checkpoint(l.clone()))
                        })
                        .collect()
                })
                .unwrap_or_default()
        }
    };
    for (i, d) in disks.iter().enumerate() {
        match root_chain.get(i) {
            Some((path, identity)) if *path == d.path && *identity == d.identity => {}
            Some(_) => {
                return wrong(&d.path, "not the head's root-chain layer at its position, exactly as recorded")
            }
            None => {
                return wrong(&d.path, "the head's root chain has fewer layers than its disk dependencies")
            }
        }
    }
    if !memory.is_empty() {
        let (root, manifest) = match closure.map(|c| (c.root.as_ref(), c.memory.as_ref())) {
            Some((Some(r), Some(m))) => (r, m),
            _ => {
                let path = memory.first().copied().unwrap_or_default();
                return wrong(path, "the head has no memory manifest whose objects it could be");
            }
        };
        let metadata = |id: &str| {
            id == root.memory
                || id == root.execution_state
                || root.disks.iter().any(|d| d == id)
                || root.devices.iter().any(|d| d.state == id)
        };
        for path in memory {
            let named = manifest
                .extents
                .iter()
                .filter_map(|e| e.object.as_ref())
                .any(|(id, _)| !metadata(id) && checkpoint::object_path(&inv.head, id) == path);
            if !named {
                return wrong(
                    path,
                    "not a memory payload object of the head (metadata objects stay included)",
                );
            }
        }
    }
    owned_dependency_identities(head, &owned)
}

/// 0.7.13 `delta::validate_resolved` for owned payloads: each owned dependency is one of the head's
/// owned payloads (`owned_payloads`: a directory volume's content files, never its
/// `directory.bin`; the layers of an owned disk that record an integrity root, as
/// `{integrity_root, virtual size}`), path and identity; and no owned disk omits a layer after
/// one it includes.
fn owned_dependency_identities(head: &Descriptor, owned: &[OwnedDependency]) -> Result<(), Error> {
    if owned.is_empty() {
        return Ok(());
    }
    let wrong = |path: &str, why| Err(msb(MsbError::DependencyIdentity { path: path.to_string(), why }));
    let prefix = match head.state {
        State::Checkpoint { .. } => alloc::format!("checkpoints/{}", head.snapshot_id),
        _ => alloc::format!("snapshots/{}", head.snapshot_id),
    };
    let layer_path = |l: &DiskLayerRef| alloc::format!("{prefix}/layers/{}", l.file_name());
    let mut payloads: Vec<(String, OwnedIdentity)> = Vec::new();
    for v in &head.owned_volumes {
        payloads.extend(v.directory_files().into_iter().map(|(rel, f)| {
            let identity = OwnedIdentity::Directory { digest: f.digest.clone(), bytes: f.bytes };
            (alloc::format!("{prefix}/{rel}"), identity)
        }));
        if let OwnedData::Disk(generation) = &v.data {
            payloads.extend(generation.layers.iter().filter_map(|l| {
                let root = l.integrity_root.clone()?;
                Some((layer_path(l), OwnedIdentity::Disk { integrity_root: root, bytes: l.virtual_size }))
            }));
        }
    }
    for d in owned {
        if !payloads.iter().any(|(path, identity)| *path == d.path && *identity == d.identity) {
            return wrong(&d.path, "not one of the head's owned payloads, exactly as recorded");
        }
    }
    for v in &head.owned_volumes {
        let OwnedData::Disk(generation) = &v.data else { continue };
        let mut included = false;
        for l in &generation.layers {
            let path = layer_path(l);
            if !owned.iter().any(|d| d.path == path) {
                included = true;
            } else if included {
                return wrong(&path, "omitted after a layer of its owned disk that is included (only an oldest-first run may be)");
            }
        }
    }
    Ok(())
}

/// Whether `path` is `layers/layer_<32 hex>.raw|.qcow2`.
fn is_layer_path(path: &str) -> bool {
    let Some(file) = path.strip_prefix("layers/") else { return false };
    let id = file.strip_suffix(".raw").or_else(|| file.strip_suffix(".qcow2"));
    id.is_some_and(|id| super::descriptor::is_id(id, "layer_"))
}

/// The snapshot id a `snapshots/<id>/…` path names.
fn snapshot_of(path: &str) -> Option<&str> {
    path.strip_prefix("snapshots/")?.split('/').next()
}

/// The snapshot id a `snapshots/<id>/…` or `checkpoints/<id>/…` path names.
fn snapshot_of_any(path: &str) -> Option<&str> {
    snapshot_of(path).or_else(|| path.strip_prefix("checkpoints/")?.split('/').next())
}

/// A disk layer's capacity as its payload states it: a raw file's size, a qcow2 header's size
/// field (big-endian at bytes 24..32 after the magic `QFI\xfb`); `None` for a qcow2 layer without
/// that header.
pub(super) fn capacity(format: &str, apparent: u64, head: &[u8]) -> Option<u64> {
    if format != "qcow2" {
        return Some(apparent);
    }
    if head.get(..4) != Some(b"QFI\xfb".as_slice()) {
        return None;
    }
    head.get(24..32).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes)
}

impl Archive {
    /// An empty archive bounded by `limits`, hashing with `sha256` and `blake3`.
    pub(crate) fn new(
        limits: Limits,
        sha256: &'static dyn Sha256Backend,
        blake3: &'static dyn Blake3Backend,
    ) -> Archive {
        Archive {
            limits,
            sha256,
            blake3,
            keys: BTreeSet::new(),
            members: Vec::new(),
            descriptors: Vec::new(),
            by_id: BTreeMap::new(),
            closures: BTreeMap::new(),
            layer_integrity: BTreeMap::new(),
            labels: BTreeMap::new(),
            inventory: None,
            current: None,
            json: JsonBudget::new(&limits),
        }
    }

    /// A member header: classify it, bound it, start its digests.
    pub(crate) fn member<S: Sink>(&mut self, m: &Member, sink: &mut S) -> Result<(), Error> {
        let at = Location {
            offset: m.offset,
            index: Some(m.index),
            name: Some(String::from_utf8_lossy(&m.name).into_owned()),
        };
        let tar_err = |error| Error::Tar { at: at.clone(), error };
        let path = core::str::from_utf8(&m.name).map_err(|_| tar_err(TarError::NonUtf8Name))?;
        if self.inventory.is_some() {
            return Err(msb(MsbError::InventoryNotLast(path.to_string())));
        }
        if m.entry_type == EntryType::Directory {
            return Err(tar_err(TarError::UnexpectedMember("a directory (.msb archives hold none)")));
        }
        for c in path.split('/') {
            names::check_component(c).map_err(tar_err)?;
        }
        if !self.keys.insert(names::duplicate_key(path)) {
            return Err(tar_err(TarError::Duplicate));
        }
        let mut doc = None;
        let (kind, limit) = if path == INVENTORY_PATH {
            (None, MAX_INVENTORY_BYTES as u64)
        } else {
            let Some(kind) = EntryKind::of_path(path) else {
                return Err(tar_err(TarError::UnexpectedMember("not a path of a .msb archive")));
            };
            let limit = match kind {
                EntryKind::SnapshotDescriptor if path.ends_with("/snapshot.json") => {
                    if self.descriptors.len() >= self.limits.max_snapshots as usize {
                        return Err(Error::Limit {
                            at: Some(at),
                            error: LimitError::Snapshots(self.limits.max_snapshots),
                        });
                    }
                    self.limits.max_manifest_size
                }
                EntryKind::SnapshotDescriptor => {
                    return Err(tar_err(TarError::UnexpectedMember(
                        "a snapshot directory holds only snapshot.json, metadata.json and layers",
                    )))
                }
                EntryKind::SnapshotMetadata => {
                    self.limits.max_metadata_size.min(metadata::MAX_METADATA_BYTES)
                }
                EntryKind::FilePayload if is_layer_path(path) => u64::MAX,
                EntryKind::FilePayload => {
                    return Err(msb(MsbError::Unsupported {
                        path: path.to_string(),
                        what:
                            "a payload outside layers/<layer_id>.raw|.qcow2 (the released files/ layout) is",
                    }))
                }
                EntryKind::ImageMetadata | EntryKind::ImageObject => {
                    // 0.7.13 places only `images/<kind>/<file>` of the cache kinds it knows.
                    let cache_file = match path.split('/').collect::<Vec<_>>().as_slice() {
                        ["images", dir, file] => CacheKind::is_cache_file(dir, file),
                        _ => false,
                    };
                    if !cache_file {
                        return Err(tar_err(TarError::UnexpectedMember(
                                "an image file other than images/manifests/*.json, images/layers|fsmeta/*.erofs or images/vmdk/*.vmdk",
                            )));
                    }
                    u64::MAX
                }
                closure => {
                    doc = self.closure_member(path, closure, &at)?;
                    if doc.is_some() {
                        (checkpoint::MAX_MANIFEST_BYTES as u64).min(self.limits.max_metadata_size)
                    } else {
                        u64::MAX
                    }
                }
            };
            (Some(kind), limit)
        };
        let buffered = match kind {
            None | Some(EntryKind::SnapshotDescriptor | EntryKind::SnapshotMetadata) => true,
            _ => doc.is_some(),
        };
        if m.sparse && (buffered || matches!(kind, Some(EntryKind::ImageMetadata | EntryKind::ImageObject))) {
            return Err(tar_err(TarError::SparseNotAllowed("a .msb member other than a payload")));
        }
        let buffer = if buffered {
            if m.size > limit {
                return Err(match kind {
                    None => msb(MsbError::Inventory(InventoryError::TooLarge(m.size))),
                    Some(EntryKind::SnapshotMetadata) => {
                        msb(MsbError::Metadata { path: path.to_string(), why: "larger than its limit" })
                    }
                    Some(_) if doc.is_some() => msb(MsbError::Checkpoint {
                        path: path.to_string(),
                        error: checkpoint::CheckpointError::TooLarge(m.size),
                    }),
                    _ => Error::Limit {
                        at: Some(at),
                        error: LimitError::ManifestSize { size: m.size, max: limit },
                    },
                });
            }
            Some(self.json.reserve(m.size, &at)?)
        } else {
            None
        };
        let sha = |hashes| Some(MemberHasher::with_backend(self.sha256, m.size, hashes));
        let (hasher, merkle) = match kind {
            None => (None, None),
            Some(EntryKind::FilePayload) => match self.layer_integrity.get(path) {
                Some(None) => (None, None),
                Some(Some(Integrity::Sha256 { .. })) => (sha(Hashes::SHA256), None),
                Some(Some(Integrity::SparseSha256V1 { .. })) => (sha(Hashes::SPARSE_SHA256), None),
                Some(Some(Integrity::FileMerkleBlake3V1 { .. })) => (None, Some(FileMerkle::new())),
                None => (sha(Hashes::BOTH), Some(FileMerkle::new())),
            },
            Some(EntryKind::CheckpointDiskLayer | EntryKind::OwnedDiskLayer) => {
                (None, Some(FileMerkle::in_domain(&CHECKPOINT_FILE)))
            }
            Some(_) => (sha(Hashes::SHA256), None),
        };
        let head = match kind {
            Some(EntryKind::FilePayload | EntryKind::CheckpointDiskLayer | EntryKind::OwnedDiskLayer) => {
                Some(Vec::with_capacity(HEAD_BYTES))
            }
            _ => None,
        };
        let doc = doc.map(|d| (d, snapshot_of_any(path).unwrap_or_default().to_string()));
        let transport =
            kind.map(|k| TransportHasher::new(k.as_str(), path, m.stored_size, m.size, &m.sparse_map));
        self.current = Some(Current {
            loc: at,
            path: path.to_string(),
            kind,
            encoded: m.stored_size,
            apparent: m.size,
            sparse: m.sparse,
            ranges: ranges_digest(&m.sparse_map),
            hasher,
            blake3: MemberBlake3::start(self.blake3, transport, merkle),
            buffer,
            doc,
            head,
            splitter: None,
        });
        if sink.wants_data() {
            let hashes = self
                .current
                .as_ref()
                .and_then(|c| c.hasher.as_ref())
                .map_or(Hashes::NONE, MemberHasher::hashes);
            let start = MemberStart {
                index: m.index,
                offset: m.offset,
                path,
                slot: Slot::Msb { kind },
                size: m.size,
                mtime: m.mtime,
                mode: m.mode,
                hashes,
            };
            sink.event(Event::Member(start)).map_err(|_| Error::Stopped)?;
            if let Some(cur) = self.current.as_mut() {
                cur.splitter = Some(HoleSplitter::new());
            }
        }
        Ok(())
    }

    /// The checks at the header of a checkpoint or owned-volume member: its path, and its
    /// snapshot already described (0.7.13 writes each snapshot's descriptor, then its members;
    /// a checkpoint's `checkpoint.json` sorts before its other members), checkpoint members owned
    /// by a checkpoint-scope snapshot, `snapshots/<id>/` owned members by a file-scope one. The
    /// closure document to buffer, if it is one.
    fn closure_member(&self, path: &str, kind: EntryKind, at: &Location) -> Result<Option<Doc>, Error> {
        let c: Vec<&str> = path.split('/').collect();
        let bad_path = |what| Error::Tar { at: at.clone(), error: TarError::UnexpectedMember(what) };
        let bind = |why| msb(MsbError::ClosureBinding { path: path.to_string(), why });
        let snap = c.get(1).copied().unwrap_or_default();
        let Some(described) = self.by_id.get(snap).and_then(|&i| self.descriptors.get(i)) else {
            return Err(bind(
                "comes before its snapshot's descriptor, or belongs to no snapshot of the archive",
            ));
        };
        let checkpoint_scope = matches!(described.descriptor.state, State::Checkpoint { .. });
        let under_checkpoints = c.first() == Some(&"checkpoints");
        if under_checkpoints && !checkpoint_scope {
            return Err(bind("a checkpoint member of a file-scope snapshot"));
        }
        if !under_checkpoints && checkpoint_scope {
            return Err(bind("a snapshots/<id>/ member of a checkpoint-scope snapshot (its members are under checkpoints/<id>/)"));
        }
        if kind == EntryKind::CheckpointRoot {
            return Ok(Some(Doc::Root));
        }
        let root = self.closures.get(snap).and_then(|c| c.root.as_ref());
        if under_checkpoints && root.is_none() {
            return Err(bind("comes before its checkpoint.json"));
        }
        let is_hex64 =
            |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match (kind, c.as_slice()) {
            (EntryKind::CheckpointObject, [_, _, _, _, shard, hex]) => {
                if !is_hex64(hex) || hex.get(..2) != Some(*shard) {
                    return Err(bad_path("a checkpoint object is objects/sha256/<first 2 hex>/<64 hex>"));
                }
                let id = alloc::format!("sha256:{hex}");
                Ok(root.and_then(|r| {
                    if r.memory == id {
                        Some(Doc::Memory)
                    } else if r.disks.contains(&id) {
                        Some(Doc::Disk(id))
                    } else {
                        None
                    }
                }))
            }
            (EntryKind::CheckpointDiskLayer | EntryKind::OwnedDiskLayer, [_, _, _, name]) => {
                let ok = name.rsplit_once('.').is_some_and(|(id, format)| {
                    checkpoint::is_member_id(id) && matches!(format, "raw" | "qcow2")
                });
                if !ok {
                    return Err(bad_path("a disk layer is layers/<id>.raw|.qcow2"));
                }
                Ok(None)
            }
            (EntryKind::OwnedDirectoryPayload, [_, _, _, tag, rest @ ..]) => {
                let ok = checkpoint::is_member_id(tag)
                    && match rest {
                        ["directory.bin"] => true,
                        ["files", hex] => is_hex64(hex),
                        _ => false,
                    };
                if !ok {
                    return Err(bad_path(
                        "an owned payload is owned/<tag>/directory.bin or owned/<tag>/files/<64 hex>",
                    ));
                }
                Ok(None)
            }
            _ => Err(bad_path("not a path of a .msb archive")),
        }
    }

    /// Stored bytes of the current member.
    pub(crate) fn data<S: Sink>(&mut self, bytes: &[u8], sink: &mut S) -> Result<(), Error> {
        let Some(cur) = self.current.as_mut() else {
            return Ok(());
        };
        if let Some(split) = cur.splitter.as_mut() {
            split.push(bytes, &mut |p| emit_piece(sink, p))?;
        }
        if let Some(b) = cur.blake3.as_mut() {
            b.update(bytes).map_err(|e| Error::Tar {
                at: cur.loc.clone(),
                error: match e {
                    Blake3Error::TooManyStored => TarError::SparseMap("stored data past the member's size"),
                    Blake3Error::SizeOverflow => TarError::SizeOverflow,
                },
            })?;
        }
        if let Some(h) = cur.hasher.as_mut() {
            h.update(bytes);
        }
        if let Some(buf) = cur.buffer.as_mut() {
            buf.extend_from_slice(bytes);
        }
        if let Some(head) = cur.head.as_mut() {
            let want = HEAD_BYTES.saturating_sub(head.len()).min(bytes.len());
            head.extend_from_slice(bytes.get(..want).unwrap_or_default());
        }
        Ok(())
    }

    /// A hole of the current (sparse) member: zeros that are not stored.
    pub(crate) fn hole<S: Sink>(&mut self, len: u64, sink: &mut S) -> Result<(), Error> {
        let Some(cur) = self.current.as_mut() else {
            return Ok(());
        };
        if cur.buffer.is_some() {
            // Buffered members are refused as sparse at their header.
            return Err(Error::Tar {
                at: cur.loc.clone(),
                error: TarError::SparseNotAllowed("a buffered file"),
            });
        }
        if let Some(split) = cur.splitter.as_mut() {
            split.hole(len, &mut |p| emit_piece(sink, p))?;
        }
        if let Some(h) = cur.hasher.as_mut() {
            h.update_zeros(len);
        }
        if let Some(b) = cur.blake3.as_mut() {
            b.hole(len).map_err(|_| Error::Tar { at: cur.loc.clone(), error: TarError::SizeOverflow })?;
        }
        if let Some(head) = cur.head.as_mut() {
            let want = HEAD_BYTES.saturating_sub(head.len()).min(usize::try_from(len).unwrap_or(HEAD_BYTES));
            head.resize(head.len().saturating_add(want), 0);
        }
        Ok(())
    }

    /// The end of the current member: finish its digests, parse what was buffered; a sink that
    /// wants data gets the member's end once it passed.
    pub(crate) fn member_end<S: Sink>(&mut self, sink: &mut S) -> Result<(), Error> {
        let Some(mut cur) = self.current.take() else {
            return Ok(());
        };
        if let Some(split) = cur.splitter.as_mut() {
            split.finish(&mut |p| emit_piece(sink, p))?;
        }
        let (wants, apparent) = (cur.splitter.is_some(), cur.apparent);
        let bytes = cur.buffer.as_deref().unwrap_or(&[]);
        let Some(kind) = cur.kind else {
            let inventory = Inventory::parse(bytes).map_err(|e| msb(MsbError::Inventory(e)))?;
            self.inventory = Some(inventory);
            return file_end(sink, wants, apparent, None);
        };
        let b3 = cur.blake3.take().map(MemberBlake3::finish);
        let transport = match b3.as_ref().and_then(|b| b.transport) {
            Some(t) => t.map(|t| blake3_digest(&t)).map_err(|()| Error::Tar {
                at: cur.loc.clone(),
                error: TarError::Truncated("a member's stored data"),
            })?,
            None => String::new(),
        };
        let d = cur.hasher.take().map(MemberHasher::finish);
        let digests = Digests {
            sha256: d.as_ref().and_then(|d| d.sha256),
            sparse_sha256: d.as_ref().and_then(|d| d.sparse_sha256),
            merkle: b3.and_then(|b| b.merkle),
        };
        match kind {
            EntryKind::SnapshotDescriptor => {
                let descriptor = Descriptor::parse(bytes)
                    .map_err(|error| msb(MsbError::Descriptor { path: cur.path.clone(), error }))?;
                if snapshot_of(&cur.path) != Some(descriptor.snapshot_id.as_str()) {
                    return Err(msb(MsbError::DescriptorPath(cur.path.clone())));
                }
                if let State::File(file) = &descriptor.state {
                    for l in &file.layers {
                        self.layer_integrity.entry(l.payload_path()).or_insert_with(|| l.integrity.clone());
                    }
                }
                let digest = descriptor.digest();
                self.by_id.insert(descriptor.snapshot_id.clone(), self.descriptors.len());
                self.descriptors.push(Described { descriptor, digest });
            }
            EntryKind::SnapshotMetadata => {
                let labels = metadata::parse_labels(bytes)
                    .map_err(|why| msb(MsbError::Metadata { path: cur.path.clone(), why }))?;
                self.labels.insert(cur.path.clone(), labels);
            }
            EntryKind::CheckpointObject | EntryKind::OwnedDirectoryPayload => {
                // Content-addressed by its name: `objects/sha256/<xx>/<hex>`, `files/<hex>`.
                let named = cur.path.rsplit('/').next().unwrap_or_default();
                let computed = digests.sha256.as_ref().map(|d| crate::hex::encode(d)).unwrap_or_default();
                let addressed = kind == EntryKind::CheckpointObject || cur.path.contains("/files/");
                if addressed && computed != named {
                    return Err(msb(MsbError::ContentDigest {
                        path: cur.path.clone(),
                        expected: alloc::format!("sha256:{named}"),
                        computed: alloc::format!("sha256:{computed}"),
                    }));
                }
            }
            _ => {}
        }
        if let Some((doc, snap)) = &cur.doc {
            let err = |error| msb(MsbError::Checkpoint { path: cur.path.clone(), error });
            let closure = self.closures.entry(snap.clone()).or_default();
            match doc {
                Doc::Root => {
                    closure.root = Some(CheckpointManifest::parse(bytes).map_err(err)?);
                    closure.root_digest = digests.sha256.as_ref().map(hex::sha256_digest).unwrap_or_default();
                }
                Doc::Memory => closure.memory = Some(MemoryManifest::parse(bytes).map_err(err)?),
                Doc::Disk(id) => {
                    closure.disks.insert(id.clone(), DiskGeneration::parse(bytes).map_err(err)?);
                }
            }
        }
        self.members.push(Seen {
            path: cur.path,
            kind,
            encoded: cur.encoded,
            apparent: cur.apparent,
            sparse: cur.sparse,
            ranges: cur.ranges,
            transport,
            digests,
            head: cur.head.unwrap_or_default(),
        });
        file_end(sink, wants, apparent, d)
    }
}

/// Hands a piece of a member's content to the sink.
fn emit_piece<S: Sink>(sink: &mut S, p: Piece<'_>) -> Result<(), Error> {
    let ev = match p {
        Piece::Data(offset, bytes) => Event::Data { offset, bytes },
        Piece::Hole(offset, len) => Event::Hole { offset, len },
    };
    sink.event(ev).map_err(|_| Error::Stopped)
}

/// The end of a member that passed, for a sink that `wants` data: its `size` and the digests
/// its start announced.
fn file_end<S: Sink>(
    sink: &mut S,
    wants: bool,
    size: u64,
    digests: Option<MemberDigests>,
) -> Result<(), Error> {
    if !wants {
        return Ok(());
    }
    let digests = digests.unwrap_or(MemberDigests { sha256: None, sparse_sha256: None });
    sink.event(Event::FileEnd { size, digests }).map_err(|_| Error::Stopped)
}

/// The digest a payload's recorded integrity is compared with, as recorded (`None` when it was
/// not computed).
fn computed(integrity: &Integrity, d: &Digests) -> Option<String> {
    match integrity {
        Integrity::Sha256 { .. } => d.sha256.as_ref().map(hex::sha256_digest),
        Integrity::SparseSha256V1 { .. } => d.sparse_sha256.as_ref().map(hex::sha256_digest),
        Integrity::FileMerkleBlake3V1 { .. } => d.merkle.as_ref().map(MerkleRoot::digest),
    }
}

/// The recorded digest (or root) of an integrity.
fn recorded(integrity: &Integrity) -> &str {
    match integrity {
        Integrity::Sha256 { digest } | Integrity::SparseSha256V1 { digest } => digest,
        Integrity::FileMerkleBlake3V1 { root, .. } => root,
    }
}

/// The whole-archive checks once every member has been seen, and the report. `zstd_frames`:
/// 0.7 writes one frame and its reader decodes only the first, so more than one is refused
/// (the tar 0.7.13 would read is not the one validated here).
pub(crate) fn conclude(a: &Archive, zstd_frames: u32) -> Result<Report, Error> {
    if zstd_frames > 1 {
        return Err(msb(MsbError::ZstdFrames(zstd_frames)));
    }
    let inv = a.inventory.as_ref().ok_or_else(|| msb(MsbError::NoInventory))?;
    let entry_of = |path: &str| {
        // Entries are strictly sorted by path bytes (checked by the inventory's parse).
        inv.entries
            .binary_search_by(|e| e.path.as_bytes().cmp(path.as_bytes()))
            .ok()
            .and_then(|i| inv.entries.get(i))
    };
    // 0.7.13's loader, per tar member: inventoried, sizes, sparse map, transport, sha256.
    let mut present = BTreeMap::new();
    for m in &a.members {
        let Some(e) = entry_of(&m.path) else {
            return Err(msb(MsbError::NotInventoried(m.path.clone())));
        };
        if !e.included {
            return Err(msb(MsbError::OmittedPresent(m.path.clone())));
        }
        let size = |field, recorded, member| MsbError::SizeMismatch {
            path: m.path.clone(),
            field,
            recorded,
            member,
        };
        if e.encoded_size != m.encoded {
            return Err(msb(size("encoded_size", e.encoded_size, m.encoded)));
        }
        if e.apparent_size != m.apparent {
            return Err(msb(size("apparent_size", e.apparent_size, m.apparent)));
        }
        if ranges_digest(&e.sparse_ranges) != m.ranges {
            return Err(msb(MsbError::SparseMapMismatch(m.path.clone())));
        }
        if let Some(t) = &e.transport_digest {
            if *t != m.transport {
                return Err(msb(MsbError::TransportMismatch {
                    path: m.path.clone(),
                    recorded: t.clone(),
                    computed: m.transport.clone(),
                }));
            }
        }
        let bound_by_sha256 = matches!(
            m.kind,
            EntryKind::SnapshotDescriptor
                | EntryKind::SnapshotMetadata
                | EntryKind::ImageMetadata
                | EntryKind::ImageObject
        );
        if bound_by_sha256 {
            let Some(Integrity::Sha256 { digest }) = &e.integrity else {
                return Err(msb(MsbError::EntryIntegrity(m.path.clone())));
            };
            let got = m.digests.sha256.as_ref().map(hex::sha256_digest).unwrap_or_default();
            if got != *digest {
                return Err(msb(MsbError::Sha256Mismatch {
                    path: m.path.clone(),
                    recorded: digest.clone(),
                    computed: got,
                }));
            }
        }
        present.insert(m.path.as_str(), m);
    }
    for e in inv.entries.iter().filter(|e| e.included) {
        if !present.contains_key(e.path.as_str()) {
            return Err(msb(MsbError::MissingMember(e.path.clone())));
        }
    }
    // Descriptor digests: every member's descriptor was read (its entry is included).
    let by_id: BTreeMap<&str, &Described> =
        a.descriptors.iter().map(|d| (d.descriptor.snapshot_id.as_str(), d)).collect();
    for m in &inv.members {
        let computed = by_id.get(m.snapshot_id.as_str()).map(|d| d.digest.clone()).unwrap_or_default();
        if computed != m.descriptor_digest {
            return Err(msb(MsbError::DescriptorDigest {
                snapshot: m.snapshot_id.clone(),
                recorded: m.descriptor_digest.clone(),
                computed,
            }));
        }
    }
    // Layers: every layer of every descriptor has a payload entry with its integrity, and every
    // payload entry is a layer of its owner.
    let mut listed: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for d in &a.descriptors {
        let id = d.descriptor.snapshot_id.as_str();
        let State::File(file) = &d.descriptor.state else { continue };
        for l in &file.layers {
            let path = l.payload_path();
            let binding = |why| msb(MsbError::LayerBinding { path: path.clone(), why });
            let Some(e) = entry_of(&path) else {
                return Err(binding("a descriptor's layer has no inventory entry"));
            };
            if e.integrity != l.integrity {
                return Err(binding("the inventory's integrity is not the descriptor's"));
            }
            if let Some(m) = present.get(path.as_str()) {
                let payload = capacity(l.format.as_str(), m.apparent, &m.head);
                if payload != Some(l.virtual_size) {
                    return Err(msb(MsbError::VirtualSize { path, recorded: l.virtual_size, payload }));
                }
            }
            listed.entry(path).or_default().insert(id);
        }
    }
    dependency_identities(a, inv, &by_id)?;
    let mut layers = Vec::new();
    let mut images = Vec::new();
    let dependencies: Vec<String> =
        inv.entries.iter().filter(|e| !e.included).map(|e| e.path.clone()).collect();
    for e in &inv.entries {
        match e.kind {
            EntryKind::FilePayload => {}
            EntryKind::ImageMetadata | EntryKind::ImageObject => {
                if let Some(Integrity::Sha256 { digest }) = &e.integrity {
                    images.push(MsbImageFile {
                        path: e.path.clone(),
                        kind: e.kind.as_str().to_string(),
                        size: e.apparent_size,
                        sha256: digest.clone(),
                    });
                }
                continue;
            }
            EntryKind::SnapshotMetadata => {
                let owned = snapshot_of(&e.path).is_some_and(|id| by_id.contains_key(id));
                if !owned || e.owner_snapshot.as_deref() != snapshot_of(&e.path) {
                    return Err(msb(MsbError::Metadata {
                        path: e.path.clone(),
                        why: "belongs to no snapshot of the archive",
                    }));
                }
                continue;
            }
            _ => continue,
        }
        let binding = |why| msb(MsbError::LayerBinding { path: e.path.clone(), why });
        let owners = listed.get(&e.path).ok_or_else(|| binding("no descriptor lists this layer"))?;
        let owner = e.owner_snapshot.as_deref().unwrap_or_default();
        if !owners.contains(owner) {
            return Err(binding("its owner_snapshot's descriptor does not list it"));
        }
        let integrity = match (&e.integrity, e.included) {
            (i, false) => LayerIntegrity::NotIncluded {
                algorithm: i.as_ref().map(|i| i.algorithm().to_string()),
                digest: i.as_ref().map(|i| recorded(i).to_string()),
            },
            (None, true) => LayerIntegrity::NotRecorded,
            (Some(i), true) => {
                let got = present.get(e.path.as_str()).and_then(|m| computed(i, &m.digests));
                let size_ok = match (i, present.get(e.path.as_str())) {
                    (Integrity::FileMerkleBlake3V1 { logical_size, .. }, Some(m)) => {
                        m.digests.merkle.as_ref().is_some_and(|r| r.logical_size == *logical_size)
                    }
                    _ => true,
                };
                if got.as_deref() != Some(recorded(i)) || !size_ok {
                    return Err(msb(MsbError::PayloadIntegrity {
                        path: e.path.clone(),
                        algorithm: i.algorithm(),
                        recorded: recorded(i).to_string(),
                        computed: got.unwrap_or_default(),
                    }));
                }
                LayerIntegrity::Verified {
                    algorithm: i.algorithm().to_string(),
                    digest: recorded(i).to_string(),
                }
            }
        };
        let file = e.path.strip_prefix("layers/").unwrap_or_default();
        let (layer_id, format) = file.rsplit_once('.').unwrap_or_default();
        layers.push(MsbLayer {
            layer_id: layer_id.to_string(),
            path: e.path.clone(),
            format: format.to_string(),
            owner_snapshot: owner.to_string(),
            included: e.included,
            encoded_size: e.encoded_size,
            apparent_size: e.apparent_size,
            sparse: present.get(e.path.as_str()).is_some_and(|m| m.sparse),
            integrity,
        });
    }
    // Parent links inside the archive must not loop (a chain is at most as long as the archive
    // has snapshots).
    for d in &a.descriptors {
        let mut at = d;
        let mut steps = 0usize;
        while let Some(p) = at.descriptor.parent.as_deref().and_then(|p| by_id.get(p)) {
            steps += 1;
            if steps > a.descriptors.len() {
                return Err(msb(MsbError::ParentCycle(d.descriptor.snapshot_id.clone())));
            }
            at = p;
        }
    }
    let (checkpoints, closure) = super::closure::check(a, inv, &present)?;
    let mut snapshots = Vec::with_capacity(a.descriptors.len());
    for d in &a.descriptors {
        let ds = &d.descriptor;
        let (scope, filesystem, disk_format, virtual_size, layers) = match &ds.state {
            State::File(file) => (
                "file",
                file.filesystem.clone(),
                file.disk_format.as_str().to_string(),
                file.virtual_size,
                file.layers.iter().map(|l| l.layer_id.clone()).collect(),
            ),
            State::Checkpoint { .. } => ("checkpoint", String::new(), String::new(), 0, Vec::new()),
        };
        let mut meta_path = String::from("snapshots/");
        meta_path.push_str(&ds.snapshot_id);
        meta_path.push_str("/metadata.json");
        snapshots.push(MsbSnapshot {
            snapshot_id: ds.snapshot_id.clone(),
            descriptor_digest: d.digest.clone(),
            parent: ds.parent.clone(),
            parent_in_archive: ds.parent.as_deref().is_some_and(|p| by_id.contains_key(p)),
            is_head: ds.snapshot_id == inv.head,
            created_at: ds.created_at.clone(),
            image_ref: ds.image_reference.clone(),
            image_manifest_digest: ds.image_manifest_digest.clone(),
            filesystem,
            disk_format,
            virtual_size,
            layers,
            labels: a.labels.get(&meta_path).cloned().unwrap_or_default(),
            requires: ds.requires.clone(),
            unsupported_requires: ds.unsupported_requires().map(str::to_string).collect(),
            scope: scope.to_string(),
            owned_volumes: u32::try_from(ds.owned_volumes.len()).unwrap_or(u32::MAX),
        });
    }
    let head_digest = by_id.get(inv.head.as_str()).map(|d| d.digest.clone()).unwrap_or_default();
    Ok(Report {
        generation: Generation::G3,
        container: Container::Tar,
        zstd_frames: 0,
        compressed_bytes: 0,
        decompressed_bytes: 0,
        entries: 0,
        snapshots: Vec::new(),
        head: head_digest,
        head_prefix: inv.head.clone(),
        cache: None,
        files: Vec::new(),
        msb: Some(MsbReport {
            head: inv.head.clone(),
            suggested_name: inv.suggested_name.clone(),
            completeness: match inv.completeness {
                Completeness::BootComplete => "boot-complete",
                Completeness::Dependent => "dependent",
            }
            .to_string(),
            requires: inv.requires.clone(),
            dependencies,
            snapshots,
            layers,
            images,
            checkpoints,
            closure,
        }),
        released: None,
    })
}
