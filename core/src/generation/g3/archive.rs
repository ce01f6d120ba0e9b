//! The G3 layout state: what a `.msb` archive's members are, what is hashed while they stream
//! past, and the whole-archive checks once `archive.json` (the last member) has been read.
//!
//! Per member, at its header: the path is classified ([`EntryKind::of_path`]; checkpoint and
//! owned-volume members are refused as not supported yet), checked component by component and
//! for duplicates, and the member's `msb-archive-member-blake3-v1` transport digest is started
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
//! every byte by `Limits::max_decompressed_bytes`.
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

use super::descriptor::{Descriptor, Integrity, State};
use super::error::MsbError;
use super::inventory::{
    Completeness, EntryKind, Inventory, InventoryError, INVENTORY_PATH, MAX_INVENTORY_BYTES,
};
use super::metadata;
use super::transport::TransportHasher;
use crate::error::{Error, LimitError, Location, TarError};
use crate::events::Sink;
use crate::generation::JsonBudget;
use crate::hex;
use crate::integrity::{Hashes, MemberHasher, Sha256Backend};
use crate::limits::Limits;
use crate::merkle::{FileMerkle, MerkleRoot};
use crate::names;
use crate::report::{
    Container, Generation, LayerIntegrity, MsbImageFile, MsbLayer, MsbReport, MsbSnapshot, Report,
};
use crate::tar::header::EntryType;
use crate::tar::Member;

/// The content digests a member needs.
#[derive(Debug, Default)]
struct Digests {
    sha256: Option<[u8; 32]>,
    sparse_sha256: Option<[u8; 32]>,
    merkle: Option<MerkleRoot>,
}

/// One member seen, kept until the inventory is read.
#[derive(Debug)]
struct Seen {
    path: String,
    kind: EntryKind,
    encoded: u64,
    apparent: u64,
    sparse: bool,
    /// BLAKE3 of the sparse map as stored (see [`ranges_digest`]).
    ranges: [u8; 32],
    transport: String,
    digests: Digests,
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
    transport: Option<TransportHasher>,
    hasher: Option<MemberHasher>,
    merkle: Option<FileMerkle>,
    buffer: Option<Vec<u8>>,
}

/// A parsed descriptor and the member it came from.
#[derive(Debug)]
struct Described {
    descriptor: Descriptor,
    digest: String,
}

/// The G3 layout state of one archive.
#[derive(Debug)]
pub(crate) struct Archive {
    limits: Limits,
    sha256: &'static dyn Sha256Backend,
    /// Duplicate keys of the paths seen.
    keys: BTreeSet<String>,
    members: Vec<Seen>,
    /// Descriptors in archive order.
    descriptors: Vec<Described>,
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

/// `layers/<layer_id>.<format>`.
fn payload_path(layer_id: &str, format: &str) -> String {
    let mut s = String::with_capacity(8 + layer_id.len() + format.len());
    s.push_str("layers/");
    s.push_str(layer_id);
    s.push('.');
    s.push_str(format);
    s
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

impl Archive {
    /// An empty archive bounded by `limits`, hashing with `sha256`.
    pub(crate) fn new(limits: Limits, sha256: &'static dyn Sha256Backend) -> Archive {
        Archive {
            limits,
            sha256,
            keys: BTreeSet::new(),
            members: Vec::new(),
            descriptors: Vec::new(),
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
        if sink.wants_data() {
            return Err(msb(MsbError::Unsupported {
                path: path.to_string(),
                what: "writing the members of a .msb archive (validation only) is",
            }));
        }
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
        let (kind, limit) = if path == INVENTORY_PATH {
            (None, MAX_INVENTORY_BYTES as u64)
        } else {
            let Some(kind) = EntryKind::of_path(path) else {
                return Err(tar_err(TarError::UnexpectedMember("not a path of a .msb archive")));
            };
            let limit =
                match kind {
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
                    EntryKind::FilePayload => return Err(msb(MsbError::Unsupported {
                        path: path.to_string(),
                        what:
                            "a payload outside layers/<layer_id>.raw|.qcow2 (the released files/ layout) is",
                    })),
                    EntryKind::ImageMetadata | EntryKind::ImageObject => u64::MAX,
                    _ => {
                        return Err(msb(MsbError::Unsupported {
                            path: path.to_string(),
                            what: "a checkpoint or owned-volume member is",
                        }))
                    }
                };
            (Some(kind), limit)
        };
        if m.sparse && kind != Some(EntryKind::FilePayload) {
            return Err(tar_err(TarError::SparseNotAllowed("a .msb member other than a layer payload")));
        }
        let buffered =
            !matches!(kind, Some(EntryKind::FilePayload | EntryKind::ImageMetadata | EntryKind::ImageObject));
        let buffer = if buffered {
            if m.size > limit {
                return Err(match kind {
                    None => msb(MsbError::Inventory(InventoryError::TooLarge(m.size))),
                    Some(EntryKind::SnapshotMetadata) => {
                        msb(MsbError::Metadata { path: path.to_string(), why: "larger than its limit" })
                    }
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
            Some(_) => (sha(Hashes::SHA256), None),
        };
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
            transport,
            hasher,
            merkle,
            buffer,
        });
        Ok(())
    }

    /// Stored bytes of the current member.
    pub(crate) fn data(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let Some(cur) = self.current.as_mut() else {
            return Ok(());
        };
        if let Some(t) = cur.transport.as_mut() {
            t.update(bytes).map_err(|_| Error::Tar {
                at: cur.loc.clone(),
                error: TarError::SparseMap("stored data past the member's size"),
            })?;
        }
        if let Some(h) = cur.hasher.as_mut() {
            h.update(bytes);
        }
        if let Some(mk) = cur.merkle.as_mut() {
            mk.update(bytes)
                .map_err(|_| Error::Tar { at: cur.loc.clone(), error: TarError::SizeOverflow })?;
        }
        if let Some(buf) = cur.buffer.as_mut() {
            buf.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// A hole of the current (sparse) member: zeros that are not stored.
    pub(crate) fn hole(&mut self, len: u64) -> Result<(), Error> {
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
        if let Some(h) = cur.hasher.as_mut() {
            h.update_zeros(len);
        }
        if let Some(mk) = cur.merkle.as_mut() {
            mk.update_zeros(len)
                .map_err(|_| Error::Tar { at: cur.loc.clone(), error: TarError::SizeOverflow })?;
        }
        Ok(())
    }

    /// The end of the current member: finish its digests, parse what was buffered.
    pub(crate) fn member_end(&mut self) -> Result<(), Error> {
        let Some(cur) = self.current.take() else {
            return Ok(());
        };
        let bytes = cur.buffer.as_deref().unwrap_or(&[]);
        let Some(kind) = cur.kind else {
            let inventory = Inventory::parse(bytes).map_err(|e| msb(MsbError::Inventory(e)))?;
            self.inventory = Some(inventory);
            return Ok(());
        };
        let transport = match cur.transport {
            Some(t) => t.finish().map_err(|_| Error::Tar {
                at: cur.loc.clone(),
                error: TarError::Truncated("a member's stored data"),
            })?,
            None => String::new(),
        };
        let d = cur.hasher.map(MemberHasher::finish);
        let digests = Digests {
            sha256: d.as_ref().and_then(|d| d.sha256),
            sparse_sha256: d.as_ref().and_then(|d| d.sparse_sha256),
            merkle: cur.merkle.map(FileMerkle::finish),
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
                        self.layer_integrity
                            .entry(payload_path(&l.layer_id, l.format.as_str()))
                            .or_insert_with(|| l.integrity.clone());
                    }
                }
                let digest = descriptor.digest();
                self.descriptors.push(Described { descriptor, digest });
            }
            EntryKind::SnapshotMetadata => {
                let labels = metadata::parse_labels(bytes)
                    .map_err(|why| msb(MsbError::Metadata { path: cur.path.clone(), why }))?;
                self.labels.insert(cur.path.clone(), labels);
            }
            _ => {}
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
        });
        Ok(())
    }
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
        if m.kind != EntryKind::FilePayload {
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
        let State::File(file) = &d.descriptor.state else {
            return Err(msb(MsbError::Unsupported {
                path: id.to_string(),
                what: "a checkpoint snapshot is",
            }));
        };
        for l in &file.layers {
            let path = payload_path(&l.layer_id, l.format.as_str());
            let binding = |why| msb(MsbError::LayerBinding { path: path.clone(), why });
            let Some(e) = entry_of(&path) else {
                return Err(binding("a descriptor's layer has no inventory entry"));
            };
            if e.integrity != l.integrity {
                return Err(binding("the inventory's integrity is not the descriptor's"));
            }
            listed.entry(path).or_default().insert(id);
        }
    }
    let mut layers = Vec::new();
    let mut images = Vec::new();
    let mut dependencies = Vec::new();
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
            (i, false) => {
                dependencies.push(e.path.clone());
                LayerIntegrity::NotIncluded {
                    algorithm: i.as_ref().map(|i| i.algorithm().to_string()),
                    digest: i.as_ref().map(|i| recorded(i).to_string()),
                }
            }
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
    let mut snapshots = Vec::with_capacity(a.descriptors.len());
    for d in &a.descriptors {
        let ds = &d.descriptor;
        let State::File(file) = &ds.state else { continue };
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
            filesystem: file.filesystem.clone(),
            disk_format: file.disk_format.as_str().to_string(),
            virtual_size: file.virtual_size,
            layers: file.layers.iter().map(|l| l.layer_id.clone()).collect(),
            labels: a.labels.get(&meta_path).cloned().unwrap_or_default(),
            requires: ds.requires.clone(),
            unsupported_requires: ds.unsupported_requires().map(str::to_string).collect(),
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
        }),
        released: None,
    })
}
