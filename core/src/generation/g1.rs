//! Generation 1: the bundle microsandbox 0.6.2 – 0.6.6 writes (`docs/format-0.6.2.md`).
//!
//! What is specific to this generation sits here, behind the seam of [`super`]: the layout
//! (`<prefix>/manifest.json`, `<prefix>/<file>`, `cache/<kind>/<file>`, classified by
//! [`crate::names`]), the descriptor ([`crate::manifest`]: the snapshot digest is the canonical
//! manifest's SHA-256), the upper's integrity (`sha256` or `msb-sparse-sha256-v1`), the head rule
//! (the last snapshot in archive order that is no other's parent) and the image-cache rules
//! ([`crate::cache_meta`]). The tar records, sparse maps, name components, hashing and the zstd
//! gate are shared by every generation and live outside.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::cache_meta::{self, CacheError, CacheKind};
use crate::error::{BundleError, Error, LimitError, Location, SnapshotError, TarError};
use crate::events::{Event, MemberStart, Sink};
use crate::generation::JsonBudget;
use crate::hex;
use crate::holes::{HoleSplitter, Piece};
use crate::integrity::{Algorithm, Hashes, MemberDigests, MemberHasher, Sha256Backend};
use crate::limits::Limits;
use crate::manifest::{Manifest, MANIFEST_FILENAME};
use crate::names::{self, Slot};
use crate::report::{
    Area, CacheReport, Container, Generation, IntegrityStatus, PlannedFile, Report, Role, SnapshotReport,
};
use crate::tar::header::EntryType;
use crate::tar::Member;

#[derive(Debug)]
struct ParsedManifest {
    manifest: Manifest,
    digest: String,
}

#[derive(Debug)]
struct Prefix {
    name: String,
    manifest: Option<ParsedManifest>,
    /// Indices into `files`.
    files: Vec<usize>,
}

#[derive(Debug)]
struct FileEntry {
    index: u32,
    area: Area,
    /// Prefix index for snapshot files.
    prefix: Option<usize>,
    kind: Option<CacheKind>,
    name: String,
    size: u64,
    mtime: u64,
    digests: MemberDigests,
    /// Buffered content (manifests and cache metadata only).
    content: Option<Vec<u8>>,
}

#[derive(Debug)]
enum Target {
    Dir,
    SnapshotFile { prefix: usize, name: String },
    CacheFile { kind: CacheKind, name: String },
}

#[derive(Debug)]
struct Current {
    loc: Location,
    target: Target,
    size: u64,
    mtime: u64,
    hasher: Option<MemberHasher>,
    buffer: Option<Vec<u8>>,
    splitter: Option<HoleSplitter>,
}

/// Bundle-level bookkeeping, shared by the member callbacks.
#[derive(Debug)]
pub(crate) struct Bundle {
    limits: Limits,
    sha256: &'static dyn Sha256Backend,
    seen: BTreeSet<String>,
    prefixes: Vec<Prefix>,
    prefix_by_name: BTreeMap<String, usize>,
    /// Prefix indices in the order their manifests appeared.
    manifest_order: Vec<usize>,
    files: Vec<FileEntry>,
    current: Option<Current>,
    json: JsonBudget,
}

fn stop(_: crate::events::Stop) -> Error {
    Error::Stopped
}

impl Bundle {
    /// An empty bundle bounded by `limits`, hashing with `sha256`.
    pub(crate) fn new(limits: Limits, sha256: &'static dyn Sha256Backend) -> Bundle {
        Bundle {
            limits,
            sha256,
            seen: BTreeSet::new(),
            prefixes: Vec::new(),
            prefix_by_name: BTreeMap::new(),
            manifest_order: Vec::new(),
            files: Vec::new(),
            current: None,
            json: JsonBudget::new(&limits),
        }
    }

    fn prefix(&mut self, name: &str) -> usize {
        if let Some(&i) = self.prefix_by_name.get(name) {
            return i;
        }
        let i = self.prefixes.len();
        self.prefixes.push(Prefix { name: name.to_string(), manifest: None, files: Vec::new() });
        self.prefix_by_name.insert(name.to_string(), i);
        i
    }
}

impl Bundle {
    /// A member header: classify it, check it against what is known, start hashing it.
    pub(crate) fn member<S: Sink>(&mut self, m: &Member, sink: &mut S) -> Result<(), Error> {
        let b = &mut *self;
        let at = Location {
            offset: m.offset,
            index: Some(m.index),
            name: Some(String::from_utf8_lossy(&m.name).into_owned()),
        };
        let tar_err = |error| Error::Tar { at: at.clone(), error };
        let is_dir = m.entry_type == EntryType::Directory;
        let slot = names::classify(&m.name, is_dir).map_err(tar_err)?;
        if m.sparse {
            // Only the snapshot files that are disk images may be sparse: manifests and cache
            // metadata are buffered JSON, and cache artifacts go to a shared cache that compares
            // them byte for byte; neither 0.6.2 nor our export writes them sparse.
            match slot {
                Slot::SnapshotFile { file, .. } if file == MANIFEST_FILENAME => {
                    return Err(tar_err(TarError::SparseNotAllowed("manifest.json")));
                }
                Slot::SnapshotFile { .. } => {}
                _ => return Err(tar_err(TarError::SparseNotAllowed("an image cache file"))),
            }
        }
        let path = core::str::from_utf8(&m.name).map_err(|_| tar_err(TarError::NonUtf8Name))?;
        let key = names::duplicate_key(path);
        if !b.seen.insert(key) {
            return Err(tar_err(TarError::Duplicate));
        }
        let wants = sink.wants_data();
        let sha256 = b.sha256;
        let hashed = |hashes: Hashes| Some(MemberHasher::with_backend(sha256, m.size, hashes));
        let (target, hasher, buffer) = match slot {
            Slot::SnapshotDir { prefix } => {
                b.prefix(prefix);
                (Target::Dir, None, None)
            }
            Slot::CacheRoot | Slot::CacheDir { .. } => (Target::Dir, None, None),
            // `classify` gives 0.6.2 slots only.
            Slot::Msb { .. } => {
                return Err(tar_err(TarError::UnexpectedMember("a .msb member in a 0.6.2 bundle")))
            }
            Slot::SnapshotFile { prefix, file } => {
                let p = b.prefix(prefix);
                if file == MANIFEST_FILENAME {
                    if m.size > b.limits.max_manifest_size {
                        return Err(Error::Limit {
                            at: Some(at),
                            error: LimitError::ManifestSize { size: m.size, max: b.limits.max_manifest_size },
                        });
                    }
                    if b.manifest_order.len() >= b.limits.max_snapshots as usize {
                        return Err(Error::Limit {
                            at: Some(at),
                            error: LimitError::Snapshots(b.limits.max_snapshots),
                        });
                    }
                    let buf = b.json.reserve(m.size, &at)?;
                    (
                        Target::SnapshotFile { prefix: p, name: file.to_string() },
                        hashed(Hashes::SHA256),
                        Some(buf),
                    )
                } else {
                    // One hash per algorithm the file needs: its recorded integrity's if it is
                    // the upper, else plain SHA-256 (the plan's digest, format §3.2).
                    let hashes = match b.prefixes.get(p).and_then(|x| x.manifest.as_ref()) {
                        Some(pm) if pm.manifest.upper.file == file => {
                            if pm.manifest.upper.size_bytes != m.size {
                                return Err(Error::Snapshot {
                                    prefix: prefix.to_string(),
                                    error: SnapshotError::UpperSize {
                                        manifest: pm.manifest.upper.size_bytes,
                                        file: m.size,
                                    },
                                });
                            }
                            Hashes::only(plan_algorithm(&pm.manifest))
                        }
                        Some(_) => Hashes::SHA256,
                        // The manifest has not been seen yet: this may be the upper, and its
                        // algorithm is not known before its data.
                        None => Hashes::BOTH,
                    };
                    (Target::SnapshotFile { prefix: p, name: file.to_string() }, hashed(hashes), None)
                }
            }
            Slot::CacheFile { kind, file } => {
                let buffer = if kind == CacheKind::Manifests {
                    if m.size > b.limits.max_metadata_size {
                        return Err(Error::Limit {
                            at: Some(at),
                            error: LimitError::MetadataSize { size: m.size, max: b.limits.max_metadata_size },
                        });
                    }
                    Some(b.json.reserve(m.size, &at)?)
                } else {
                    None
                };
                (Target::CacheFile { kind, name: file.to_string() }, hashed(Hashes::SHA256), buffer)
            }
        };
        let start = MemberStart {
            index: m.index,
            offset: m.offset,
            path,
            slot,
            size: m.size,
            mtime: m.mtime,
            mode: m.mode,
            hashes: hasher.as_ref().map_or(Hashes::NONE, MemberHasher::hashes),
        };
        sink.event(Event::Member(start)).map_err(stop)?;
        let splitter = (wants && hasher.is_some()).then(HoleSplitter::new);
        self.current =
            Some(Current { loc: at, target, size: m.size, mtime: m.mtime, hasher, buffer, splitter });
        Ok(())
    }

    /// A slice of the current member's data.
    pub(crate) fn data<S: Sink>(&mut self, bytes: &[u8], sink: &mut S) -> Result<(), Error> {
        let Some(cur) = self.current.as_mut() else {
            return Ok(());
        };
        if let Some(buf) = cur.buffer.as_mut() {
            buf.extend_from_slice(bytes);
        }
        match cur.splitter.as_mut() {
            // Hashed from the pieces: a zero block the splitter found is hashed as a length of
            // zeros (no copy for a hashing thread), in file order like every piece.
            Some(split) => {
                let (sink, mut hasher) = (&mut *sink, cur.hasher.as_mut());
                split.push(bytes, &mut |p| emit_piece(sink, hasher.as_deref_mut(), p))?;
            }
            None => {
                if let Some(h) = cur.hasher.as_mut() {
                    h.update(bytes);
                }
            }
        }
        Ok(())
    }

    /// A hole (zeros) in the current sparse member.
    pub(crate) fn hole<S: Sink>(&mut self, len: u64, sink: &mut S) -> Result<(), Error> {
        let Some(cur) = self.current.as_mut() else {
            return Ok(());
        };
        if cur.buffer.is_some() {
            // Buffered slots (manifests, cache metadata) are refused as sparse in `member`; never
            // grow a buffer from a hole's length.
            return Err(Error::Tar {
                at: cur.loc.clone(),
                error: TarError::SparseNotAllowed("a buffered file"),
            });
        }
        match cur.splitter.as_mut() {
            Some(split) => {
                let (sink, mut hasher) = (&mut *sink, cur.hasher.as_mut());
                split.hole(len, &mut |p| emit_piece(sink, hasher.as_deref_mut(), p))?;
            }
            None => {
                if let Some(h) = cur.hasher.as_mut() {
                    h.update_zeros(len);
                }
            }
        }
        Ok(())
    }

    /// The end of the current member's data.
    pub(crate) fn member_end<S: Sink>(&mut self, sink: &mut S) -> Result<(), Error> {
        let Some(mut cur) = self.current.take() else {
            return Ok(());
        };
        if let Some(split) = cur.splitter.as_mut() {
            let (sink, mut hasher) = (&mut *sink, cur.hasher.as_mut());
            split.finish(&mut |p| emit_piece(sink, hasher.as_deref_mut(), p))?;
        }
        let Some(hasher) = cur.hasher.take() else {
            return Ok(());
        };
        let digests = hasher.finish();
        sink.event(Event::FileEnd { size: cur.size, digests }).map_err(stop)?;
        let b = &mut *self;
        let file_idx = b.files.len();
        let (area, prefix, kind, name) = match cur.target {
            Target::Dir => return Ok(()),
            Target::SnapshotFile { prefix, name } => (Area::Snapshots, Some(prefix), None, name),
            Target::CacheFile { kind, name } => (Area::Cache, None, Some(kind), name),
        };
        let index = cur.loc.index.unwrap_or(0);
        if let (Some(p), true) = (prefix, name == MANIFEST_FILENAME) {
            let bytes = cur.buffer.as_deref().unwrap_or(&[]);
            let prefix_name = b.prefixes.get(p).map(|x| x.name.clone()).unwrap_or_default();
            let manifest = Manifest::from_bytes(bytes)
                .map_err(|error| Error::Manifest { prefix: prefix_name, error })?;
            let digest = manifest.digest();
            if let Some(px) = b.prefixes.get_mut(p) {
                px.manifest = Some(ParsedManifest { manifest, digest });
            }
            b.manifest_order.push(p);
            cur.buffer = None;
        }
        if let Some(px) = prefix.and_then(|p| b.prefixes.get_mut(p)) {
            px.files.push(file_idx);
        }
        b.files.push(FileEntry {
            index,
            area,
            prefix,
            kind,
            name,
            size: cur.size,
            mtime: cur.mtime,
            digests,
            content: cur.buffer,
        });
        Ok(())
    }
}

/// The algorithm an upper is hashed with and the plan binds it by: its recorded integrity's
/// when that is `msb-sparse-sha256-v1`, else plain SHA-256 (format §3.2).
fn plan_algorithm(m: &Manifest) -> Algorithm {
    match m.upper.integrity.as_ref().and_then(|i| Algorithm::parse(&i.algorithm)) {
        Some(Algorithm::SparseSha256V1) => Algorithm::SparseSha256V1,
        _ => Algorithm::Sha256,
    }
}

/// Hands a piece to the sink, and to the hasher when the member is hashed from its pieces.
fn emit_piece<S: Sink>(sink: &mut S, hasher: Option<&mut MemberHasher>, p: Piece<'_>) -> Result<(), Error> {
    let ev = match p {
        Piece::Data(offset, bytes) => {
            if let Some(h) = hasher {
                h.update(bytes);
            }
            Event::Data { offset, bytes }
        }
        Piece::Hole(offset, len) => {
            if let Some(h) = hasher {
                h.update_zeros(len);
            }
            Event::Hole { offset, len }
        }
    };
    sink.event(ev).map_err(stop)
}

fn file_path(b: &Bundle, f: &FileEntry) -> String {
    let dir = match (f.prefix, f.kind) {
        (Some(p), _) => b.prefixes.get(p).map(|x| x.name.as_str()).unwrap_or(""),
        (None, Some(k)) => k.as_str(),
        (None, None) => "",
    };
    let mut s = String::with_capacity(dir.len() + 1 + f.name.len());
    s.push_str(dir);
    s.push('/');
    s.push_str(&f.name);
    s
}

fn snapshot_err(prefix: &str, error: SnapshotError) -> Error {
    Error::Snapshot { prefix: prefix.to_string(), error }
}

/// Whole-bundle checks once every member has been seen.
pub(crate) fn conclude(b: &Bundle) -> Result<Report, Error> {
    if b.manifest_order.is_empty() {
        return Err(Error::Bundle(BundleError::NoManifest));
    }
    if let Some(p) = b.prefixes.iter().find(|p| p.manifest.is_none()) {
        return Err(snapshot_err(&p.name, SnapshotError::NoManifest));
    }
    let mut snapshots = Vec::with_capacity(b.manifest_order.len());
    // Upper file index -> the algorithm the plan binds it with.
    let mut plan_algorithms = BTreeMap::new();
    for &pi in &b.manifest_order {
        let Some(p) = b.prefixes.get(pi) else { continue };
        let Some(pm) = p.manifest.as_ref() else { continue };
        let m = &pm.manifest;
        let upper = p
            .files
            .iter()
            .filter_map(|&i| b.files.get(i).map(|f| (i, f)))
            .find(|(_, f)| f.name == m.upper.file);
        let Some((upper_idx, upper)) = upper else {
            return Err(snapshot_err(&p.name, SnapshotError::MissingUpper(m.upper.file.clone())));
        };
        plan_algorithms.insert(upper_idx, plan_algorithm(m));
        if upper.size != m.upper.size_bytes {
            return Err(snapshot_err(
                &p.name,
                SnapshotError::UpperSize { manifest: m.upper.size_bytes, file: upper.size },
            ));
        }
        let integrity = match &m.upper.integrity {
            None => IntegrityStatus::NotRecorded,
            Some(i) => {
                let Some(algorithm) = Algorithm::parse(&i.algorithm) else {
                    return Err(snapshot_err(
                        &p.name,
                        SnapshotError::UnsupportedAlgorithm(i.algorithm.clone()),
                    ));
                };
                let computed = upper.digests.get(algorithm).map(hex::sha256_digest).unwrap_or_default();
                if computed != i.digest {
                    return Err(snapshot_err(
                        &p.name,
                        SnapshotError::DigestMismatch { manifest: i.digest.clone(), file: computed },
                    ));
                }
                IntegrityStatus::Verified { algorithm: i.algorithm.clone(), digest: i.digest.clone() }
            }
        };
        snapshots.push(SnapshotReport {
            prefix: p.name.clone(),
            digest: pm.digest.clone(),
            prefix_matches_digest: Manifest::archive_prefix(&pm.digest) == p.name,
            parent: m.parent.clone(),
            parent_in_bundle: false,
            is_head: false,
            image_ref: m.image.reference.clone(),
            image_manifest_digest: m.image.manifest_digest.clone(),
            format: m.format.as_str().to_string(),
            fstype: m.fstype.clone(),
            created_at: m.created_at.clone(),
            labels: m.labels.clone(),
            source_sandbox: m.source_sandbox.clone(),
            upper_file: m.upper.file.clone(),
            size_bytes: m.upper.size_bytes,
            integrity,
        });
    }
    // Head: the last snapshot in archive order that is no imported snapshot's parent.
    // (Sets filled by insert, not collect: collect sorts first, which adds a stable sort of
    // strings to the WebAssembly modules for nothing.)
    let mut digests = BTreeSet::new();
    for s in snapshots.iter() {
        digests.insert(s.digest.clone());
    }
    let mut parents = BTreeSet::new();
    for p in snapshots.iter().filter_map(|s| s.parent.as_ref()) {
        if digests.contains(p) {
            parents.insert(p.clone());
        }
    }
    let head_pos = snapshots
        .iter()
        .rposition(|s| !parents.contains(&s.digest))
        .ok_or(Error::Bundle(BundleError::NoHead))?;
    for s in snapshots.iter_mut() {
        s.parent_in_bundle = s.parent.as_ref().is_some_and(|p| digests.contains(p));
    }
    if let Some(h) = snapshots.get_mut(head_pos) {
        h.is_head = true;
    }
    let (head, head_prefix, head_ref, head_image_digest) = match snapshots.get(head_pos) {
        Some(h) => (h.digest.clone(), h.prefix.clone(), h.image_ref.clone(), h.image_manifest_digest.clone()),
        None => return Err(Error::Bundle(BundleError::NoHead)),
    };
    let cache = check_cache(b, &head_ref, &head_image_digest)?;
    let files = b
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let algorithm = plan_algorithms.get(&i).copied().unwrap_or(Algorithm::Sha256);
            PlannedFile {
                index: f.index,
                area: f.area,
                path: file_path(b, f),
                role: match (f.area, f.kind) {
                    (Area::Cache, Some(CacheKind::Manifests)) => Role::CacheMetadata,
                    (Area::Cache, _) => Role::CacheArtifact,
                    _ if f.name == MANIFEST_FILENAME => Role::Manifest,
                    _ if plan_algorithms.contains_key(&i) => Role::Upper,
                    _ => Role::Extra,
                },
                size: f.size,
                algorithm: algorithm.name().to_string(),
                digest: f.digests.get(algorithm).map(hex::sha256_digest).unwrap_or_default(),
                mtime: f.mtime,
            }
        })
        .collect();
    Ok(Report {
        generation: Generation::G1,
        container: Container::Tar,
        zstd_frames: 0,
        compressed_bytes: 0,
        decompressed_bytes: 0,
        entries: 0,
        snapshots,
        head,
        head_prefix,
        cache,
        files,
        msb: None,
        released: None,
    })
}

/// 0.6.2 `install_staged_cache` checks, run only when the bundle carries cache files.
fn check_cache(b: &Bundle, image_ref: &str, image_digest: &str) -> Result<Option<CacheReport>, Error> {
    let staged: Vec<&FileEntry> = b.files.iter().filter(|f| f.area == Area::Cache).collect();
    if staged.is_empty() {
        return Ok(None);
    }
    let normalized = cache_meta::normalized_reference(image_ref).map_err(Error::Cache)?;
    let meta_name = crate::reference::metadata_file_name(&normalized);
    let missing = || Error::Cache(CacheError::MetadataMissing(image_ref.to_string()));
    let meta_file = staged
        .iter()
        .find(|f| f.kind == Some(CacheKind::Manifests) && f.name == meta_name)
        .ok_or_else(missing)?;
    let meta =
        cache_meta::parse_metadata(meta_file.content.as_deref().unwrap_or(&[])).map_err(|_| missing())?;
    cache_meta::validate_metadata(&meta, image_digest).map_err(Error::Cache)?;
    let expected = cache_meta::expected_cache_files(image_ref, &meta).map_err(Error::Cache)?;
    let mut paths = Vec::with_capacity(expected.len());
    for e in &expected {
        let found = staged
            .iter()
            .find(|f| f.kind.map(|k| k.as_str()) == Some(e.kind.as_str()) && file_path(b, f) == e.path);
        match found {
            None => return Err(Error::Cache(CacheError::MissingArtifact(e.path.clone()))),
            Some(f) if !e.rule.check(f.size) => {
                return Err(Error::Cache(CacheError::NotMaterialized { path: e.path.clone(), size: f.size }))
            }
            Some(_) => paths.push(e.path.clone()),
        }
    }
    for f in &staged {
        let p = file_path(b, f);
        if !paths.contains(&p) {
            return Err(Error::Cache(CacheError::UnexpectedArtifact(p)));
        }
    }
    Ok(Some(CacheReport {
        image_ref: normalized,
        manifest_digest: meta.manifest_digest.clone(),
        layers: u32::try_from(meta.layers.len()).unwrap_or(u32::MAX),
        files: paths,
    }))
}
