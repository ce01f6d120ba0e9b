//! 0.7 `.msb` archive → 0.6.2 bundle, in the validator's one pass: [`Backwarder`] is the sink
//! that collects a validated archive's members and, once the archive is found valid, writes the
//! bundle 0.6.2 imports (manifests from [`snapbundle_core::generation::translate::backward`]).
//!
//! The manifests can only be written at the end: `archive.json`, which may carry the original
//! 0.6.2 manifests (and so the snapshots' 0.6.2 digests and directory names), is the archive's
//! last member. Payloads and image files are therefore spooled (sparse temporary files: their
//! data, not their holes) and written after it: `<prefix>/manifest.json`, the carried 0.7
//! descriptor ([`translate::CARRIED_DESCRIPTOR`], unless the manifest is the carried original or
//! carrying is off) and `<prefix>/upper.ext4` per snapshot, parents first, dense as 0.6.2 reads
//! them, then `cache/<kind>/<file>` per image file.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::PathBuf;

use snapbundle_core::generation::g3::descriptor::{Descriptor, Integrity};
use snapbundle_core::generation::g3::inventory::{Completeness, EntryKind, Inventory};
use snapbundle_core::generation::g3::metadata;
use snapbundle_core::generation::translate::{self, Backward};
use snapbundle_core::integrity::{Hashes, MemberHasher};
use snapbundle_core::manifest::{Manifest, MANIFEST_FILENAME};
use snapbundle_core::names::Slot;
use snapbundle_core::{Event, MemberStart, Sink, Stop};

use super::forward::{Converted, ForwardFailure};
use super::writer::Spool;
use crate::sparse::Chunk;
use crate::tar_writer::{EntryMeta, TarWriter};

/// A spooled file: its content and its header fields.
struct Spooled {
    spool: Spool,
    meta: EntryMeta,
    /// `msb-sparse-sha256-v1` of the content, computed for a layer whose integrity is (or may
    /// be) Merkle-BLAKE3: 0.6.2 does not know that algorithm.
    sparse_sha256: Option<String>,
}

/// The member being received.
enum Current {
    None,
    Json { path: String, kind: Option<EntryKind>, bytes: Vec<u8> },
    File { path: String, spooled: Spooled, hasher: Option<MemberHasher> },
}

/// The sink of a 0.7 → 0.6.2 conversion.
pub struct Backwarder {
    spool_dir: PathBuf,
    current: Current,
    /// Descriptors in archive order.
    descriptors: Vec<Descriptor>,
    /// Labels by snapshot id.
    labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Spooled payloads and image files by path.
    files: BTreeMap<String, Spooled>,
    inventory: Option<Vec<u8>>,
    failure: Option<ForwardFailure>,
    /// Whether to carry each snapshot's 0.7 descriptor ([`translate::CARRIED_DESCRIPTOR`]).
    carry: bool,
    /// The first member 0.6.2 cannot hold, reported by [`Backwarder::finish`].
    unrepresentable: Option<ForwardFailure>,
}

impl Backwarder {
    /// A backwarder spooling in `spool_dir`; with `carry`, a snapshot whose manifest is not the
    /// carried original also gets its 0.7 descriptor beside it (see
    /// [`translate::CARRIED_DESCRIPTOR`]).
    pub fn new(spool_dir: PathBuf, carry: bool) -> Self {
        Backwarder {
            spool_dir,
            current: Current::None,
            descriptors: Vec::new(),
            labels: BTreeMap::new(),
            files: BTreeMap::new(),
            inventory: None,
            failure: None,
            carry,
            unrepresentable: None,
        }
    }

    /// Why it stopped, once.
    pub fn take_failure(&mut self) -> Option<ForwardFailure> {
        self.failure.take()
    }

    fn fail(&mut self, failure: ForwardFailure) -> Stop {
        self.failure = Some(failure);
        Stop
    }

    /// Whether the layer at `path` must also get its `msb-sparse-sha256-v1` computed.
    fn needs_sparse_sha256(&self, path: &str) -> bool {
        let mut listed = false;
        for d in &self.descriptors {
            if let snapbundle_core::generation::g3::descriptor::State::File(f) = &d.state {
                for l in &f.layers {
                    if l.payload_path() == path {
                        listed = true;
                        if matches!(l.integrity, Some(Integrity::FileMerkleBlake3V1 { .. })) {
                            return true;
                        }
                    }
                }
            }
        }
        !listed
    }

    fn member(&mut self, m: &MemberStart<'_>) -> Result<(), Stop> {
        let Slot::Msb { kind } = m.slot else {
            return Err(self.fail(ForwardFailure::WrongGeneration(
                "is already a microsandbox 0.6.2 bundle; convert --to 0.6.2 takes a 0.7 archive",
            )));
        };
        self.current = match kind {
            None | Some(EntryKind::SnapshotDescriptor | EntryKind::SnapshotMetadata) => {
                Current::Json { path: m.path.to_string(), kind, bytes: Vec::new() }
            }
            Some(EntryKind::FilePayload | EntryKind::ImageMetadata | EntryKind::ImageObject) => {
                let spool = match Spool::new_in(&self.spool_dir) {
                    Ok(s) => s,
                    Err(e) => return Err(self.fail(ForwardFailure::Io(e))),
                };
                let hasher =
                    (kind == Some(EntryKind::FilePayload) && self.needs_sparse_sha256(m.path)).then(|| {
                        MemberHasher::with_backend(
                            crate::hash_thread::backend(),
                            m.size,
                            Hashes::SPARSE_SHA256,
                        )
                    });
                let meta = EntryMeta {
                    mode: u32::try_from(m.mode).unwrap_or(0o644),
                    uid: 0,
                    gid: 0,
                    mtime: m.mtime,
                    size: m.size,
                };
                Current::File {
                    path: m.path.to_string(),
                    spooled: Spooled { spool, meta, sparse_sha256: None },
                    hasher,
                }
            }
            Some(_) => {
                // Refused once the archive is known valid (an invalid one gets its own error).
                self.unrepresentable.get_or_insert_with(|| ForwardFailure::Unrepresentable {
                    snapshot: m.path.to_string(),
                    reason: "a checkpoint or owned-volume member: 0.6.2 snapshots are disk files only".into(),
                });
                Current::None
            }
        };
        Ok(())
    }

    fn data(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        match &mut self.current {
            Current::Json { bytes: b, .. } => b.extend_from_slice(bytes),
            Current::File { spooled, hasher, .. } => {
                spooled.spool.data(offset, bytes)?;
                if let Some(h) = hasher {
                    h.update(bytes);
                }
            }
            Current::None => {}
        }
        Ok(())
    }

    fn hole(&mut self, offset: u64, len: u64) -> io::Result<()> {
        match &mut self.current {
            Current::Json { bytes, .. } => {
                let len = usize::try_from(len).map_err(io::Error::other)?;
                bytes.resize(bytes.len().saturating_add(len), 0);
            }
            Current::File { spooled, hasher, .. } => {
                spooled.spool.hole(offset, len);
                if let Some(h) = hasher {
                    h.update_zeros(len);
                }
            }
            Current::None => {}
        }
        Ok(())
    }

    fn file_end(&mut self) -> Result<(), Stop> {
        match std::mem::replace(&mut self.current, Current::None) {
            Current::Json { path, kind, bytes } => match kind {
                None => self.inventory = Some(bytes),
                Some(EntryKind::SnapshotDescriptor) => {
                    // One that does not parse, the validator refuses with the reason.
                    if let Ok(d) = Descriptor::parse(&bytes) {
                        self.descriptors.push(d);
                    }
                }
                Some(_) => {
                    if let (Some(snap), Ok(labels)) = (
                        path.strip_prefix("snapshots/").and_then(|p| p.split('/').next()),
                        metadata::parse_labels(&bytes),
                    ) {
                        self.labels.insert(snap.to_string(), labels);
                    }
                }
            },
            Current::File { path, mut spooled, hasher } => {
                spooled.sparse_sha256 = hasher
                    .and_then(|h| h.finish().sparse_sha256)
                    .map(|d| snapbundle_core::hex::sha256_digest(&d));
                self.files.insert(path, spooled);
            }
            Current::None => {}
        }
        Ok(())
    }

    /// Writes the 0.6.2 bundle into `tar` once the archive was found valid; returns the
    /// snapshots (0.6.2 digest, 0.7 id and descriptor digest), parents first, and what was left
    /// out.
    pub fn finish<W: Write>(
        mut self,
        tar: &mut TarWriter<W>,
    ) -> Result<(Vec<Converted>, Vec<String>), ForwardFailure> {
        let io = ForwardFailure::Io;
        let unrep = |snapshot: &str, reason: &str| ForwardFailure::Unrepresentable {
            snapshot: snapshot.to_string(),
            reason: reason.to_string(),
        };
        if let Some(f) = self.unrepresentable.take() {
            return Err(f);
        }
        let inventory_bytes = self.inventory.take().ok_or_else(|| unrep("archive", "no archive.json"))?;
        let inventory = Inventory::parse(&inventory_bytes)
            .map_err(|e| io(io::Error::other(format!("internal error: archive.json: {e}"))))?;
        if inventory.completeness == Completeness::Dependent {
            return Err(unrep(
                &inventory.head,
                "the archive is dependent (saved with --since): its omitted layers come from a base 0.6.2 cannot name",
            ));
        }
        let carried: BTreeMap<String, String> = inventory
            .extension(translate::LEGACY_MANIFESTS)
            .and_then(|text| serde_json::from_slice(&text).ok())
            .unwrap_or_default();
        // Parents first, whatever the archive's order.
        let order = parents_first(&self.descriptors).map_err(|id| unrep(&id, "its parent links loop"))?;
        let mut digests: BTreeMap<String, String> = BTreeMap::new();
        let mut out = Vec::new();
        let empty = BTreeMap::new();
        for i in order {
            let Some(d) = self.descriptors.get(i) else { continue };
            let labels = self.labels.get(&d.snapshot_id).unwrap_or(&empty);
            let parent_digest = d.parent.as_ref().and_then(|p| digests.get(p)).map(String::as_str);
            let layer = match &d.state {
                snapbundle_core::generation::g3::descriptor::State::File(f) => {
                    f.layers.first().map(|l| l.payload_path())
                }
                _ => None,
            };
            let spooled = layer.as_ref().and_then(|p| self.files.get(p));
            let b: Backward = translate::backward(
                d,
                labels,
                parent_digest,
                spooled.and_then(|s| s.sparse_sha256.as_deref()),
                carried.get(&d.snapshot_id).map(String::as_bytes),
            )
            .map_err(|e| unrep(&d.snapshot_id, &e.to_string()))?;
            let Some(spooled) = spooled else {
                return Err(unrep(&d.snapshot_id, "its layer is not in the archive"));
            };
            let prefix = Manifest::archive_prefix(&b.digest);
            let meta = EntryMeta {
                mode: 0o100644,
                uid: 0,
                gid: 0,
                mtime: spooled.meta.mtime,
                size: b.bytes.len() as u64,
            };
            tar.append(&format!("{prefix}/{MANIFEST_FILENAME}"), &meta, &b.bytes).map_err(io)?;
            if self.carry && !b.carried {
                let bytes = d.canonical_bytes();
                let meta = EntryMeta { size: bytes.len() as u64, ..meta };
                tar.append(&format!("{prefix}/{}", translate::CARRIED_DESCRIPTOR), &meta, bytes)
                    .map_err(io)?;
            }
            let upper_meta = EntryMeta { size: spooled.spool.len(), ..spooled.meta };
            write_dense(tar, &format!("{prefix}/{}", b.manifest.upper.file), &upper_meta, &spooled.spool)
                .map_err(io)?;
            digests.insert(d.snapshot_id.clone(), b.digest.clone());
            out.push(Converted {
                digest: b.digest,
                snapshot_id: d.snapshot_id.clone(),
                descriptor_digest: d.digest(),
                layer: layer.unwrap_or_default(),
            });
        }
        let mut dropped = Vec::new();
        for (path, spooled) in &self.files {
            if let Some(rest) = path.strip_prefix("images/") {
                write_dense(tar, &format!("cache/{rest}"), &spooled.meta, &spooled.spool).map_err(io)?;
            } else if !out.iter().any(|c| c.layer == *path) {
                dropped.push(path.clone());
            }
        }
        Ok((out, dropped))
    }
}

/// Indices of `ds` with every parent in `ds` before its children; a loop gives the id in it.
fn parents_first(ds: &[Descriptor]) -> Result<Vec<usize>, String> {
    let index: BTreeMap<&str, usize> =
        ds.iter().enumerate().map(|(i, d)| (d.snapshot_id.as_str(), i)).collect();
    let mut done = BTreeSet::new();
    let mut order = Vec::with_capacity(ds.len());
    for start in 0..ds.len() {
        let mut chain = Vec::new();
        let mut at = Some(start);
        while let Some(i) = at.filter(|i| !done.contains(i)) {
            if chain.contains(&i) {
                return Err(ds.get(i).map(|d| d.snapshot_id.clone()).unwrap_or_default());
            }
            chain.push(i);
            at = ds.get(i).and_then(|d| d.parent.as_deref()).and_then(|p| index.get(p).copied());
        }
        for i in chain.into_iter().rev() {
            done.insert(i);
            order.push(i);
        }
    }
    Ok(order)
}

/// Writes a spooled file as a regular (dense) member: 0.6.2 reads no sparse member.
fn write_dense<W: Write>(
    tar: &mut TarWriter<W>,
    name: &str,
    meta: &EntryMeta,
    spool: &Spool,
) -> io::Result<()> {
    tar.begin(name, meta)?;
    spool.read(&mut |c| {
        match c {
            Chunk::Data(b) => tar.data(b)?,
            Chunk::Zeros(n) => tar.zeros(n)?,
        }
        Ok(())
    })?;
    tar.end()
}

impl Sink for Backwarder {
    fn event(&mut self, event: Event<'_>) -> Result<(), Stop> {
        match event {
            Event::Member(m) => self.member(&m),
            Event::Data { offset, bytes } => {
                self.data(offset, bytes).map_err(|e| self.fail(ForwardFailure::Io(e)))
            }
            Event::Hole { offset, len } => {
                self.hole(offset, len).map_err(|e| self.fail(ForwardFailure::Io(e)))
            }
            Event::FileEnd { .. } => self.file_end(),
        }
    }
}
