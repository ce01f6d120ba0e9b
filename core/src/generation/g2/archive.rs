//! The G2 layout state: what a released archive's members are, what is hashed while they stream
//! past, and the whole-archive checks at the end.
//!
//! Per member, at its header: the path is classified (descriptor, upper, image file,
//! `archive.json`, or one of the directories 0.7.13 accepts; a member shaped like another
//! generation's is refused as foreign, anything else as an unexpected path), checked component
//! by component and for duplicates, and its `msb-archive-member-blake3-v1` transport digest is
//! started from tar-derived values only. Descriptors (≤ `Limits::max_manifest_size`) and
//! `archive.json` (≤ 4 MiB) are buffered within `Limits::max_json_total`; image files are hashed
//! with SHA-256; an upper's recorded integrity is recomputed while it streams (only the
//! algorithm its descriptor records when the descriptor came first, all three otherwise, as in
//! G3). Unlike G3, `archive.json` may sit anywhere (0.7.13 reads it after the whole tar) and may
//! be absent (0.7.13 then loads the descriptors without any inventory check).
//!
//! No [`crate::Event`] is emitted and a sink that wants data is refused at the first member:
//! no front end imports a released archive.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use sha2::{Digest as _, Sha256};

use super::descriptor::ReleasedDescriptor;
use super::error::G2Error;
use super::inventory::{ReleasedInventory, MAX_INVENTORY_BYTES};
use crate::blake3_work::{Blake3Backend, Blake3Error, MemberBlake3};
use crate::cache_meta::CacheKind;
use crate::error::{Error, LimitError, Location, TarError};
use crate::events::Sink;
use crate::generation::g3::descriptor::{Integrity, LayerFormat};
use crate::generation::g3::inventory::EntryKind;
use crate::generation::g3::transport::TransportHasher;
use crate::generation::g3::MsbError;
use crate::generation::JsonBudget;
use crate::hex;
use crate::hex::blake3_digest;
use crate::integrity::{Hashes, MemberHasher, Sha256Backend};
use crate::limits::Limits;
use crate::merkle::{FileMerkle, MerkleRoot};
use crate::names;
use crate::report::{
    Container, Generation, LayerIntegrity, MsbImageFile, ReleasedReport, ReleasedSnapshot, Report,
};
use crate::tar::header::EntryType;
use crate::tar::Member;

/// What a released archive's member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Inventory,
    Descriptor,
    Upper,
    Image(EntryKind),
}

/// The content digests a member needs.
#[derive(Debug, Default)]
struct Digests {
    sha256: Option<[u8; 32]>,
    sparse_sha256: Option<[u8; 32]>,
    merkle: Option<MerkleRoot>,
}

/// One member seen (not `archive.json`), kept to the end.
#[derive(Debug)]
struct Seen {
    path: String,
    kind: Kind,
    encoded: u64,
    apparent: u64,
    sparse: bool,
    transport: String,
    digests: Digests,
}

/// The member being read.
#[derive(Debug)]
struct Current {
    loc: Location,
    path: String,
    kind: Kind,
    encoded: u64,
    apparent: u64,
    sparse: bool,
    hasher: Option<MemberHasher>,
    /// The transport digest and the Merkle root, on the BLAKE3 backend.
    blake3: Option<MemberBlake3>,
    buffer: Option<Vec<u8>>,
}

/// The G2 layout state of one archive.
#[derive(Debug)]
pub(crate) struct Archive {
    limits: Limits,
    sha256: &'static dyn Sha256Backend,
    blake3: &'static dyn Blake3Backend,
    keys: BTreeSet<String>,
    members: Vec<Seen>,
    /// Descriptors in archive order.
    descriptors: Vec<ReleasedDescriptor>,
    /// Upper path → the integrity its descriptor records.
    upper_integrity: BTreeMap<String, Option<Integrity>>,
    inventory: Option<ReleasedInventory>,
    current: Option<Current>,
    json: JsonBudget,
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether a first member named `name` opens a released archive: its path (a directory's
/// without the trailing `/`) starts with `snapshots/<64 lowercase hex>/` or
/// `files/<64 lowercase hex>/`, or is such a directory itself. A G1 archive never has a second
/// level under its prefix other than in `cache/`, and G3 snapshot directories are `snap_` ids.
pub(crate) fn opens(name: &[u8]) -> bool {
    let name = name.strip_suffix(b"/").unwrap_or(name);
    let Ok(path) = core::str::from_utf8(name) else { return false };
    let mut c = path.split('/');
    matches!(c.next(), Some("snapshots" | "files")) && c.next().is_some_and(is_hex64)
}

/// The directories 0.7.13 accepts in a released archive (`validate_archive_directory`).
fn is_directory(c: &[&str]) -> bool {
    match c {
        ["snapshots" | "files" | "images" | "cache"] => true,
        ["snapshots" | "files", hex] => is_hex64(hex),
        ["images" | "cache", kind] => matches!(*kind, "manifests" | "layers" | "fsmeta" | "vmdk"),
        _ => false,
    }
}

/// What a file member is, or why it has no place here.
fn classify(path: &str) -> Result<Kind, G2Error> {
    let c: Vec<&str> = path.split('/').collect();
    let foreign = |generation| Err(G2Error::Foreign { path: path.to_string(), generation });
    match c.as_slice() {
        ["archive.json"] => Ok(Kind::Inventory),
        ["snapshots", hex, "snapshot.json"] if is_hex64(hex) => Ok(Kind::Descriptor),
        ["files", hex, _] if is_hex64(hex) => Ok(Kind::Upper),
        ["images" | "cache", kind, file] if CacheKind::is_cache_file(kind, file) => {
            Ok(Kind::Image(if *kind == "manifests" {
                EntryKind::ImageMetadata
            } else {
                EntryKind::ImageObject
            }))
        }
        ["snapshots", id, ..] if id.starts_with("snap_") => foreign("0.7"),
        ["layers" | "checkpoints", ..] => foreign("0.7"),
        [_, "manifest.json" | "upper.ext4"] => foreign("0.6.2"),
        _ => Err(G2Error::UnexpectedPath(path.to_string())),
    }
}

fn g2(e: G2Error) -> Error {
    Error::MsbG2(e)
}

fn msb(e: MsbError) -> Error {
    Error::Msb(e)
}

/// `files/<hex>/<file>` of a descriptor.
fn upper_path(d: &ReleasedDescriptor) -> String {
    let hex = d.digest.strip_prefix("sha256:").unwrap_or_default();
    alloc::format!("files/{hex}/{}", d.upper_file)
}

impl Archive {
    /// An empty archive bounded by `limits`, hashing with `sha256`.
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
            upper_integrity: BTreeMap::new(),
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
        let raw = core::str::from_utf8(&m.name).map_err(|_| tar_err(TarError::NonUtf8Name))?;
        if sink.wants_data() {
            return Err(msb(MsbError::Unsupported {
                path: raw.to_string(),
                what: "writing the members of a released (0.6.7 – 0.6.16) archive (validation only) is",
            }));
        }
        let is_dir = m.entry_type == EntryType::Directory;
        let path = if is_dir { raw.strip_suffix('/').unwrap_or(raw) } else { raw };
        for c in path.split('/') {
            names::check_component(c).map_err(tar_err)?;
        }
        if !self.keys.insert(names::duplicate_key(path)) {
            return Err(tar_err(TarError::Duplicate));
        }
        if is_dir {
            let c: Vec<&str> = path.split('/').collect();
            if !is_directory(&c) {
                return Err(g2(G2Error::UnexpectedPath(raw.to_string())));
            }
            return Ok(());
        }
        let kind = classify(path).map_err(g2)?;
        if m.sparse && kind != Kind::Upper {
            return Err(tar_err(TarError::SparseNotAllowed("a released archive member other than an upper")));
        }
        let buffer = match kind {
            Kind::Inventory | Kind::Descriptor => {
                let limit = if kind == Kind::Inventory {
                    MAX_INVENTORY_BYTES as u64
                } else {
                    if self.descriptors.len() >= self.limits.max_snapshots as usize {
                        return Err(Error::Limit {
                            at: Some(at),
                            error: LimitError::Snapshots(self.limits.max_snapshots),
                        });
                    }
                    self.limits.max_manifest_size
                };
                if m.size > limit {
                    return Err(match kind {
                        Kind::Inventory => {
                            g2(G2Error::Inventory(super::inventory::ReleasedInventoryError::TooLarge(m.size)))
                        }
                        _ => Error::Limit {
                            at: Some(at),
                            error: LimitError::ManifestSize { size: m.size, max: limit },
                        },
                    });
                }
                Some(self.json.reserve(m.size, &at)?)
            }
            Kind::Upper | Kind::Image(_) => None,
        };
        let sha = |hashes| Some(MemberHasher::with_backend(self.sha256, m.size, hashes));
        let (hasher, merkle) = match kind {
            Kind::Inventory | Kind::Descriptor => (None, None),
            Kind::Image(_) => (sha(Hashes::SHA256), None),
            Kind::Upper => match self.upper_integrity.get(path) {
                Some(None) => (None, None),
                Some(Some(Integrity::Sha256 { .. })) => (sha(Hashes::SHA256), None),
                Some(Some(Integrity::SparseSha256V1 { .. })) => (sha(Hashes::SPARSE_SHA256), None),
                Some(Some(Integrity::FileMerkleBlake3V1 { .. })) => (None, Some(FileMerkle::new())),
                None => (sha(Hashes::BOTH), Some(FileMerkle::new())),
            },
        };
        let transport = match kind {
            Kind::Inventory => None,
            _ => EntryKind::of_path(path)
                .map(|k| TransportHasher::new(k.as_str(), path, m.stored_size, m.size, &m.sparse_map)),
        };
        self.current = Some(Current {
            loc: at,
            path: path.to_string(),
            kind,
            encoded: m.stored_size,
            apparent: m.size,
            sparse: m.sparse,
            hasher,
            blake3: MemberBlake3::start(self.blake3, transport, merkle),
            buffer,
        });
        Ok(())
    }

    /// Stored bytes of the current member.
    pub(crate) fn data(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let Some(cur) = self.current.as_mut() else {
            return Ok(());
        };
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
        Ok(())
    }

    /// A hole of the current (sparse) member.
    pub(crate) fn hole(&mut self, len: u64) -> Result<(), Error> {
        let Some(cur) = self.current.as_mut() else {
            return Ok(());
        };
        if cur.buffer.is_some() {
            return Err(Error::Tar {
                at: cur.loc.clone(),
                error: TarError::SparseNotAllowed("a buffered file"),
            });
        }
        if let Some(h) = cur.hasher.as_mut() {
            h.update_zeros(len);
        }
        if let Some(b) = cur.blake3.as_mut() {
            b.hole(len).map_err(|_| Error::Tar { at: cur.loc.clone(), error: TarError::SizeOverflow })?;
        }
        Ok(())
    }

    /// The end of the current member: finish its digests, parse what was buffered.
    pub(crate) fn member_end(&mut self) -> Result<(), Error> {
        let Some(cur) = self.current.take() else {
            return Ok(());
        };
        let bytes = cur.buffer.as_deref().unwrap_or(&[]);
        if cur.kind == Kind::Inventory {
            let inventory = ReleasedInventory::parse(bytes).map_err(|e| g2(G2Error::Inventory(e)))?;
            self.inventory = Some(inventory);
            return Ok(());
        }
        let b3 = cur.blake3.map(MemberBlake3::finish);
        let transport = match b3.as_ref().and_then(|b| b.transport) {
            Some(t) => t.map(|t| blake3_digest(&t)).map_err(|()| Error::Tar {
                at: cur.loc.clone(),
                error: TarError::Truncated("a member's stored data"),
            })?,
            None => String::new(),
        };
        let d = cur.hasher.map(MemberHasher::finish);
        let mut digests = Digests {
            sha256: d.as_ref().and_then(|d| d.sha256),
            sparse_sha256: d.as_ref().and_then(|d| d.sparse_sha256),
            merkle: b3.and_then(|b| b.merkle),
        };
        if cur.kind == Kind::Descriptor {
            let descriptor = ReleasedDescriptor::parse(bytes)
                .map_err(|error| g2(G2Error::Descriptor { path: cur.path.clone(), error }))?;
            let dir = cur.path.split('/').nth(1).unwrap_or_default();
            if descriptor.digest.strip_prefix("sha256:") != Some(dir) {
                return Err(g2(G2Error::DescriptorDirectory {
                    path: cur.path.clone(),
                    digest: descriptor.digest,
                }));
            }
            digests.sha256 = Some(Sha256::digest(bytes).into());
            self.upper_integrity.insert(upper_path(&descriptor), descriptor.integrity.clone());
            self.descriptors.push(descriptor);
        }
        self.members.push(Seen {
            path: cur.path,
            kind: cur.kind,
            encoded: cur.encoded,
            apparent: cur.apparent,
            sparse: cur.sparse,
            transport,
            digests,
        });
        Ok(())
    }
}

/// The digest a recorded integrity is compared with (`None` when it was not computed).
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

/// The inventory's checks against the tar members (0.7.13's `validate_released_archive_inventory`).
fn check_inventory(a: &Archive, inv: &ReleasedInventory) -> Result<(), Error> {
    let mut present = BTreeSet::new();
    for m in &a.members {
        let Some(e) = inv.entry(&m.path) else {
            return Err(msb(MsbError::NotInventoried(m.path.clone())));
        };
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
        if let Some(t) = &e.transport_digest {
            if *t != m.transport {
                return Err(msb(MsbError::TransportMismatch {
                    path: m.path.clone(),
                    recorded: t.clone(),
                    computed: m.transport.clone(),
                }));
            }
        }
        if m.kind != Kind::Upper {
            // The inventory's parse made sure every non-upper entry records a sha256.
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
        present.insert(m.path.as_str());
    }
    for e in &inv.entries {
        if !present.contains(e.path.as_str()) {
            return Err(msb(MsbError::MissingMember(e.path.clone())));
        }
    }
    Ok(())
}

/// The whole-archive checks once every member has been seen, and the report. `zstd_frames`: the
/// reader 0.7.13 uses decodes the first frame only, so more than one is refused.
pub(crate) fn conclude(a: &Archive, zstd_frames: u32) -> Result<Report, Error> {
    if zstd_frames > 1 {
        return Err(msb(MsbError::ZstdFrames(zstd_frames)));
    }
    if a.descriptors.is_empty() {
        return Err(g2(G2Error::NoSnapshot));
    }
    if let Some(inv) = &a.inventory {
        check_inventory(a, inv)?;
    }
    let members: BTreeMap<&str, &Seen> = a.members.iter().map(|m| (m.path.as_str(), m)).collect();
    // Uppers: each descriptor's is present with its size and recorded integrity (0.7.13's
    // `open_snapshot` checks presence and sizes; the integrity is recomputed here only).
    let mut snapshots = Vec::with_capacity(a.descriptors.len());
    let mut uppers = BTreeSet::new();
    for d in &a.descriptors {
        let path = upper_path(d);
        let upper = |why| g2(G2Error::Upper { path: path.clone(), why });
        let Some(m) = members.get(path.as_str()) else {
            return Err(upper("its descriptor's upper.file is not in the archive"));
        };
        if m.apparent != d.size_bytes && d.format == LayerFormat::Raw {
            return Err(upper("a raw upper's size differs from its descriptor's size_bytes"));
        }
        if m.apparent == 0 && d.format == LayerFormat::Qcow2 {
            return Err(upper("a qcow2 upper is empty"));
        }
        let integrity = match &d.integrity {
            None => LayerIntegrity::NotRecorded,
            Some(i) => {
                if let Integrity::FileMerkleBlake3V1 { logical_size, .. } = i {
                    if *logical_size != m.apparent {
                        return Err(upper("its integrity's logical_size differs from the file's size"));
                    }
                }
                let got = computed(i, &m.digests);
                if got.as_deref() != Some(recorded(i)) {
                    return Err(msb(MsbError::PayloadIntegrity {
                        path: path.clone(),
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
        uppers.insert(path.clone());
        snapshots.push(ReleasedSnapshot {
            digest: d.digest.clone(),
            snapshot_id: d.snapshot_id.clone(),
            parent: d.parent.clone(),
            parent_in_archive: false,
            is_head: false,
            created_at: d.created_at.clone(),
            image_ref: d.image_reference.clone(),
            image_manifest_digest: d.image_manifest_digest.clone(),
            format: d.format.as_str().to_string(),
            fstype: d.fstype.clone(),
            labels: d.labels.clone(),
            source_sandbox: d.source_sandbox.clone(),
            upper_path: path,
            size_bytes: d.size_bytes,
            encoded_size: m.encoded,
            sparse: m.sparse,
            integrity,
        });
    }
    for m in a.members.iter().filter(|m| m.kind == Kind::Upper) {
        if !uppers.contains(&m.path) {
            return Err(g2(G2Error::Upper {
                path: m.path.clone(),
                why: "no descriptor of the archive names this file",
            }));
        }
    }
    // The parent graph, by the 0.7 ids 0.7.13 gives the snapshots (`select_head_snapshot`).
    let mut by_id: BTreeMap<&str, &ReleasedDescriptor> = BTreeMap::new();
    for d in &a.descriptors {
        if by_id.insert(d.snapshot_id.as_str(), d).is_some() {
            return Err(g2(G2Error::IdCollision(d.snapshot_id.clone())));
        }
    }
    let parents: BTreeSet<&str> = a
        .descriptors
        .iter()
        .filter_map(|d| d.parent_id.as_deref())
        .filter(|p| by_id.contains_key(p))
        .collect();
    for d in &a.descriptors {
        let mut at = d;
        let mut steps = 0usize;
        while let Some(p) = at.parent_id.as_deref().and_then(|p| by_id.get(p)) {
            steps += 1;
            if steps > a.descriptors.len() {
                return Err(msb(MsbError::ParentCycle(d.digest.clone())));
            }
            at = p;
        }
    }
    let mut heads = a.descriptors.iter().filter(|d| !parents.contains(d.snapshot_id.as_str()));
    let head = match (heads.next(), heads.next()) {
        (Some(h), None) => h,
        (None, _) => return Err(g2(G2Error::Head("archive parent graph has no head"))),
        (Some(_), Some(_)) => return Err(g2(G2Error::Head("archive parent graph has multiple heads"))),
    };
    if a.inventory.as_ref().is_some_and(|inv| inv.head != head.digest) {
        return Err(g2(G2Error::Head("the inventory's head is not the head of the archive's parent graph")));
    }
    for s in &mut snapshots {
        s.is_head = s.digest == head.digest;
        let parent_id = by_id.get(s.snapshot_id.as_str()).and_then(|d| d.parent_id.as_deref());
        s.parent_in_archive = parent_id.is_some_and(|p| by_id.contains_key(p));
    }
    let images = a
        .members
        .iter()
        .filter_map(|m| match m.kind {
            Kind::Image(k) => Some(MsbImageFile {
                path: m.path.clone(),
                kind: k.as_str().to_string(),
                size: m.apparent,
                sha256: m.digests.sha256.as_ref().map(hex::sha256_digest).unwrap_or_default(),
            }),
            _ => None,
        })
        .collect();
    let inv = a.inventory.as_ref();
    Ok(Report {
        generation: Generation::G2,
        container: Container::Tar,
        zstd_frames: 0,
        compressed_bytes: 0,
        decompressed_bytes: 0,
        entries: 0,
        snapshots: Vec::new(),
        head: head.digest.clone(),
        head_prefix: head.snapshot_id.clone(),
        cache: None,
        files: Vec::new(),
        msb: None,
        released: Some(ReleasedReport {
            inventory: inv.is_some(),
            head: head.digest.clone(),
            suggested_name: inv.and_then(|i| i.suggested_name.clone()),
            with_parents: inv.map(|i| i.with_parents),
            with_image: inv.map(|i| i.with_image),
            requires: inv.map(|i| i.requires.clone()).unwrap_or_default(),
            snapshots,
            images,
        }),
    })
}
