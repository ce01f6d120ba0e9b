//! Phase one of an export: resolving the snapshot (and its parents, and the head's image cache
//! files) into a [`Plan`], with every check an export makes before anything is written.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use snapbundle_core::cache_meta::{self, CacheError};
use snapbundle_core::error::{Error as CoreError, LimitError, SnapshotError};
use snapbundle_core::integrity::Algorithm;
use snapbundle_core::manifest::{Manifest, MANIFEST_FILENAME};
use snapbundle_core::names::{self, Slot};
use snapbundle_core::{reference, Limits};

use super::{cache_err, changed, io_err, limit, open_nofollow, read_small, ExportOptions};
use crate::error::{shown, HostError};
use crate::home::Home;
use crate::sparse;
use crate::store::{self, Snapshot};
use crate::tar_writer::{self, EntryMeta, FromMetadata as _, END_OF_ARCHIVE};
use crate::verified::Records;

/// Integrity recorded for an upper, checked while it streams.
#[derive(Debug)]
pub(super) struct UpperCheck {
    pub(super) digest: String,
    pub(super) algorithm: Algorithm,
    /// The algorithm as the manifest names it.
    pub(super) algorithm_name: String,
    pub(super) dir: PathBuf,
}

#[derive(Debug)]
pub(super) enum Content {
    /// Held in memory since planning (manifests, cache metadata): exactly the bytes checked.
    Bytes(Vec<u8>),
    /// Streamed from the source file; an upper with recorded integrity carries its check.
    File { check: Option<UpperCheck> },
}

#[derive(Debug)]
pub(super) struct Member {
    /// Member name in the bundle.
    pub(super) name: String,
    /// The file it comes from.
    pub(super) source: PathBuf,
    /// Header fields from the planning `stat`.
    pub(super) meta: EntryMeta,
    /// `(st_dev, st_ino)` of the source, to notice a swapped file.
    pub(super) identity: (u64, u64),
    pub(super) content: Content,
    /// The data segments of its old-GNU sparse map, when it is written sparse.
    pub(super) sparse: Option<Vec<(u64, u64)>>,
}

impl Member {
    /// Bytes of tar the member takes, or `None` on overflow.
    pub(super) fn tar_len(&self) -> Option<u64> {
        match &self.sparse {
            Some(segments) => tar_writer::sparse_member_len(&self.name, segments),
            None => tar_writer::member_len(&self.name, self.meta.size),
        }
    }
}

#[derive(Debug)]
pub(super) struct PlannedSnapshot {
    pub(super) snap: Snapshot,
    pub(super) prefix: String,
    pub(super) members: Vec<Member>,
}

/// A checked export, ready to be written. See [`plan`].
#[derive(Debug)]
pub struct Plan {
    pub(super) opts: ExportOptions,
    pub(super) snapshots: Vec<PlannedSnapshot>,
    pub(super) cache: Vec<Member>,
    pub(super) cache_files: Vec<String>,
    pub(super) tar_bytes: u64,
    pub(super) entries: u32,
    pub(super) records: Records,
    /// Where the temporary file of a file target is noted for `gc`.
    pub(super) outputs: crate::publish::OutputJournal,
}

/// Checks a member name against the importer's grammar; `cache` says which area it must land in.
fn check_member_name(name: &str, cache: bool, source: &Path, limits: &Limits) -> Result<(), HostError> {
    match names::classify(name.as_bytes(), false) {
        Ok(Slot::SnapshotFile { .. }) if !cache => {}
        Ok(Slot::CacheFile { .. }) if cache => {}
        Ok(_) => {
            return Err(HostError::StoreFault(format!(
                "cannot export {}: the member name {name:?} would not be read back as intended",
                shown(source)
            )))
        }
        Err(e) => {
            return Err(HostError::StoreFault(format!(
                "cannot export {}: import would reject the member name {name:?}: {e}",
                shown(source)
            )))
        }
    }
    if name.len() > limits.max_path_len as usize {
        return Err(limit(LimitError::PathLength { len: name.len() as u64, max: limits.max_path_len }));
    }
    Ok(())
}

/// Builds the export plan: every check an export makes before writing anything.
///
/// Differences from 0.6.2's `export_snapshot`, each making the result something our own import
/// (and 0.6.2's) accepts, or making a failure leave nothing behind:
/// - snapshot arguments may also be `sha256:` digests or unique digest prefixes;
/// - parents are found by scanning the store's snapshot directories, not the SQLite index;
/// - the other files of a snapshot directory follow `manifest.json` sorted by name, not in
///   `read_dir` order, so the same snapshot always gives the same bundle;
/// - a subdirectory, symlink, special file, non-UTF-8 name, a name the member grammar rejects or
///   two names differing only in letter case is refused (0.6.2 writes a directory entry, follows
///   the symlink, or writes a bundle its own import rejects);
/// - with `with_image`, cache files must be regular files (not symlinks), EROFS files must be a
///   non-zero multiple of 4096 bytes, and the metadata must pass the import-side checks (raw
///   manifest and config digests), since import rejects bundles that break these;
/// - the bundle must fit `opts.limits` (entries, path length, JSON sizes, total size);
/// - integrity is verified while streaming rather than in a separate pass first;
/// - the zstd frame declares its content size and carries a content checksum (0.6.2: neither),
///   and is compressed with `opts.threads` workers; it is still one frame;
/// - a file target is written under a temporary name and renamed into place (0.6.2 truncates
///   the target in place and leaves a partial file on failure); a target that is one of the
///   exported files, or lies inside an exported snapshot directory, is refused;
/// - a modification time before the epoch is written as 0;
/// - with `opts.sparse`, files with holes are old-GNU sparse members (0.6.2 cannot read them).
pub fn plan(home: &Home, snapshot_arg: &str, opts: &ExportOptions) -> Result<Plan, HostError> {
    if !zstd::compression_level_range().contains(&opts.level) {
        return Err(HostError::Usage(format!(
            "zstd level {} is out of range ({}..={})",
            opts.level,
            zstd::compression_level_range().start(),
            zstd::compression_level_range().end()
        )));
    }
    let limits = &opts.limits;
    let head = store::resolve(home, snapshot_arg)?;
    let chain = chain(home, head, opts)?;
    let mut json_total: u64 = 0;
    let mut snapshots = Vec::with_capacity(chain.len());
    for snap in chain {
        snapshots.push(plan_snapshot(snap, limits, opts.sparse, &mut json_total)?);
    }
    let (cache, cache_files) = match (opts.with_image, snapshots.last()) {
        (true, Some(head)) => plan_cache(home, &head.snap, limits, &mut json_total)?,
        _ => (Vec::new(), Vec::new()),
    };
    if json_total > limits.max_json_total {
        return Err(limit(LimitError::JsonTotal(limits.max_json_total)));
    }
    let mut tar_bytes = END_OF_ARCHIVE.len() as u64;
    let mut entries: u32 = 0;
    let mut logical: u64 = 0;
    let overflow = || limit(LimitError::Budget(limits.max_decompressed_bytes));
    for m in snapshots.iter().flat_map(|s| s.members.iter()).chain(cache.iter()) {
        let len = m.tar_len().ok_or_else(overflow)?;
        tar_bytes = tar_bytes.checked_add(len).ok_or_else(overflow)?;
        entries = entries.saturating_add(tar_writer::header_count(&m.name));
        logical = logical.saturating_add(m.meta.size);
    }
    if entries > limits.max_entries {
        return Err(limit(LimitError::Entries(limits.max_entries)));
    }
    // The importer holds the files' logical sizes to the same budget (sparse holes included).
    if logical > limits.max_decompressed_bytes {
        return Err(limit(LimitError::LogicalBudget(limits.max_decompressed_bytes)));
    }
    // The importer counts members up to the end of their padded data, not the end records.
    if tar_bytes - END_OF_ARCHIVE.len() as u64 > limits.max_decompressed_bytes {
        return Err(overflow());
    }
    Ok(Plan {
        opts: opts.clone(),
        snapshots,
        cache,
        cache_files,
        tar_bytes,
        entries,
        records: Records::of(home),
        outputs: crate::publish::OutputJournal::of(home),
    })
}

/// The snapshots to export, root first: the head alone, or with `with_parents` the head and its
/// ancestors found in the store by digest.
fn chain(home: &Home, head: Snapshot, opts: &ExportOptions) -> Result<Vec<Snapshot>, HostError> {
    let mut chain = vec![head];
    if opts.with_parents {
        let mut by_digest: Option<(BTreeMap<String, Snapshot>, Vec<String>)> = None;
        while let Some(parent) = chain.last().and_then(|s| s.manifest.parent.clone()) {
            if chain.iter().any(|s| s.digest == parent) {
                return Err(HostError::StoreFault(format!("the parent chain loops at {parent}")));
            }
            if chain.len() >= opts.limits.max_snapshots as usize {
                return Err(limit(LimitError::Snapshots(opts.limits.max_snapshots)));
            }
            let (index, unreadable) = match &mut by_digest {
                Some(x) => x,
                None => by_digest.insert(store_index(home)?),
            };
            match index.remove(&parent) {
                Some(p) => chain.push(p),
                None => {
                    let child = chain.last().map(|s| shown(&s.dir)).unwrap_or_default();
                    let mut msg = format!(
                        "snapshot not found: parent {parent} of {child} is not in {}; import it first, or export without --with-parents",
                        shown(&home.snapshots)
                    );
                    if !unreadable.is_empty() {
                        msg.push_str(&format!(
                            " ({} there could not be opened: {})",
                            crate::plural::count(
                                unreadable.len(),
                                "snapshot directory",
                                "snapshot directories"
                            ),
                            unreadable.join("; ")
                        ));
                    }
                    return Err(HostError::NotFound(msg));
                }
            }
        }
    }
    chain.reverse();
    Ok(chain)
}

/// Every snapshot in the store by digest (the first directory by name wins for duplicates),
/// and the errors of those that did not open.
fn store_index(home: &Home) -> Result<(BTreeMap<String, Snapshot>, Vec<String>), HostError> {
    let mut index = BTreeMap::new();
    let mut unreadable = Vec::new();
    for (path, opened) in store::list(&home.snapshots)? {
        match opened {
            Ok(s) => {
                index.entry(s.digest.clone()).or_insert(s);
            }
            Err(e) => unreadable.push(format!("{}: {e}", shown(&path))),
        }
    }
    Ok((index, unreadable))
}

/// Lists one snapshot directory: `manifest.json` first, then the other files by name; with
/// `sparse`, finds the data segments of every other file.
fn plan_snapshot(
    snap: Snapshot,
    limits: &Limits,
    sparse: bool,
    json_total: &mut u64,
) -> Result<PlannedSnapshot, HostError> {
    let dir = snap.dir.clone();
    let prefix = Manifest::archive_prefix(&snap.digest);
    let refuse = |path: &Path, why: &str| {
        HostError::StoreFault(format!(
            "cannot export snapshot {}: {} {why}; a snapshot directory may hold only regular files",
            shown(&dir),
            shown(path)
        ))
    };
    let mut files: Vec<(String, PathBuf, Metadata)> = Vec::new();
    let mut lower = BTreeMap::new();
    let rd = std::fs::read_dir(&dir).map_err(io_err(format!("listing {}", shown(&dir))))?;
    for entry in rd {
        let entry = entry.map_err(io_err(format!("listing {}", shown(&dir))))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(HostError::StoreFault(format!(
                "cannot export snapshot {}: the file name {:?} is not UTF-8",
                shown(&dir),
                entry.file_name()
            )));
        };
        let md = std::fs::symlink_metadata(&path).map_err(io_err(format!("reading {}", shown(&path))))?;
        let ft = md.file_type();
        if ft.is_symlink() {
            return Err(refuse(&path, "is a symbolic link"));
        }
        if ft.is_dir() {
            return Err(refuse(&path, "is a directory"));
        }
        if !ft.is_file() {
            return Err(refuse(&path, "is not a regular file"));
        }
        if let Some(other) = lower.insert(names::duplicate_key(&name), name.clone()) {
            return Err(HostError::StoreFault(format!(
                "cannot export snapshot {}: {other:?} and {name:?} differ only in letter case, which import rejects as duplicates",
                shown(&dir)
            )));
        }
        files.push((name, path, md));
    }
    // manifest.json first, then by name (byte order).
    files.sort_by(|a, b| (a.0 != MANIFEST_FILENAME, &a.0).cmp(&(b.0 != MANIFEST_FILENAME, &b.0)));
    if files.first().map(|f| f.0.as_str()) != Some(MANIFEST_FILENAME) {
        return Err(HostError::NotFound(format!("snapshot not found: {} has no manifest.json", shown(&dir))));
    }
    if !files.iter().any(|f| f.0 == snap.manifest.upper.file) {
        return Err(HostError::Invalid(CoreError::Snapshot {
            prefix: shown(&dir),
            error: SnapshotError::MissingUpper(snap.manifest.upper.file.clone()),
        }));
    }
    let mut members = Vec::with_capacity(files.len());
    for (name, path, md) in files {
        let member_name = format!("{prefix}/{name}");
        check_member_name(&member_name, false, &path, limits)?;
        let identity = (md.dev(), md.ino());
        let (meta, content) = if name == MANIFEST_FILENAME {
            let (meta, bytes) = read_manifest(&snap, &path, limits)?;
            *json_total = json_total.saturating_add(meta.size);
            (meta, Content::Bytes(bytes))
        } else if name == snap.manifest.upper.file {
            let check = match &snap.manifest.upper.integrity {
                None => None,
                Some(i) => {
                    let algorithm = match Algorithm::parse(&i.algorithm) {
                        Some(a) => a,
                        None => {
                            return Err(HostError::Invalid(CoreError::Snapshot {
                                prefix: shown(&dir),
                                error: SnapshotError::UnsupportedAlgorithm(i.algorithm.clone()),
                            }))
                        }
                    };
                    Some(UpperCheck {
                        digest: i.digest.clone(),
                        algorithm,
                        algorithm_name: i.algorithm.clone(),
                        dir: dir.clone(),
                    })
                }
            };
            if md.len() != snap.manifest.upper.size_bytes {
                return Err(HostError::Invalid(CoreError::Snapshot {
                    prefix: shown(&dir),
                    error: SnapshotError::UpperSize {
                        manifest: snap.manifest.upper.size_bytes,
                        file: md.len(),
                    },
                }));
            }
            (EntryMeta::from_metadata(&md), Content::File { check })
        } else {
            (EntryMeta::from_metadata(&md), Content::File { check: None })
        };
        let map = match (&content, sparse) {
            (Content::File { .. }, true) => sparse_map_of(&path, identity, meta.size, limits)?,
            _ => None,
        };
        members.push(Member { name: member_name, source: path, meta, identity, content, sparse: map });
    }
    Ok(PlannedSnapshot { snap, prefix, members })
}

/// The sparse map of the file at `path` (which must still be `identity`, `len` bytes long), or
/// `None` when it has no hole.
fn sparse_map_of(
    path: &Path,
    identity: (u64, u64),
    len: u64,
    limits: &Limits,
) -> Result<Option<Vec<(u64, u64)>>, HostError> {
    let file = open_nofollow(path).map_err(io_err(format!("opening {}", shown(path))))?;
    let md = file.metadata().map_err(io_err(format!("reading {}", shown(path))))?;
    if !md.is_file() || (md.dev(), md.ino()) != identity || md.len() != len {
        return Err(changed(path));
    }
    let segments = sparse::data_segments(&file, len).map_err(io_err(format!("reading {}", shown(path))))?;
    Ok(sparse::sparse_map(&segments, len, limits.max_sparse_segments))
}

/// Reads `manifest.json` once more and keeps its bytes: they must still describe the snapshot
/// that was opened, and they are what the bundle carries.
fn read_manifest(snap: &Snapshot, path: &Path, limits: &Limits) -> Result<(EntryMeta, Vec<u8>), HostError> {
    let file = open_nofollow(path).map_err(io_err(format!("opening {}", shown(path))))?;
    let md = file.metadata().map_err(io_err(format!("reading {}", shown(path))))?;
    let bytes =
        read_small(&file, limits.max_manifest_size).map_err(io_err(format!("reading {}", shown(path))))?;
    if bytes.len() as u64 > limits.max_manifest_size {
        return Err(limit(LimitError::ManifestSize {
            size: bytes.len() as u64,
            max: limits.max_manifest_size,
        }));
    }
    if !md.is_file() || bytes.len() as u64 != md.len() {
        return Err(changed(path));
    }
    match Manifest::from_bytes(&bytes) {
        Ok(m) if m.digest() == snap.digest => {}
        _ => return Err(changed(path)),
    }
    Ok((EntryMeta::from_metadata(&md), bytes))
}

/// The head's image cache files in 0.6.2 order: metadata, fsmeta, VMDK, layers.
fn plan_cache(
    home: &Home,
    head: &Snapshot,
    limits: &Limits,
    json_total: &mut u64,
) -> Result<(Vec<Member>, Vec<String>), HostError> {
    let image_ref = head.manifest.image.reference.as_str();
    let normalized = cache_meta::normalized_reference(image_ref).map_err(cache_err)?;
    let meta_rel = format!("manifests/{}", reference::metadata_file_name(&normalized));
    let meta_path = home.cache.join(&meta_rel);
    let md = match std::fs::symlink_metadata(&meta_path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(HostError::NotFound(format!(
                "image metadata missing from cache for {image_ref}: {}",
                shown(&meta_path)
            )))
        }
        Err(e) => return Err(HostError::io(format!("reading {}", shown(&meta_path)), e)),
    };
    if !md.file_type().is_file() {
        return Err(HostError::NotFound(format!(
            "image metadata for {image_ref} is not a regular file: {}",
            shown(&meta_path)
        )));
    }
    let file = open_nofollow(&meta_path).map_err(io_err(format!("opening {}", shown(&meta_path))))?;
    let fmd = file.metadata().map_err(io_err(format!("reading {}", shown(&meta_path))))?;
    let bytes = read_small(&file, limits.max_metadata_size)
        .map_err(io_err(format!("reading {}", shown(&meta_path))))?;
    if bytes.len() as u64 > limits.max_metadata_size {
        return Err(limit(LimitError::MetadataSize {
            size: bytes.len() as u64,
            max: limits.max_metadata_size,
        }));
    }
    if !fmd.is_file() || bytes.len() as u64 != fmd.len() || (fmd.dev(), fmd.ino()) != (md.dev(), md.ino()) {
        return Err(changed(&meta_path));
    }
    *json_total = json_total.saturating_add(fmd.len());
    let meta = cache_meta::parse_metadata(&bytes).map_err(cache_err)?;
    cache_meta::validate_metadata(&meta, &head.manifest.image.manifest_digest).map_err(cache_err)?;
    let expected = cache_meta::expected_cache_files(image_ref, &meta).map_err(cache_err)?;
    let mut members = Vec::with_capacity(expected.len());
    let mut rels = Vec::with_capacity(expected.len());
    let mut meta_bytes = Some(bytes);
    for e in expected {
        let path = home.cache.join(&e.path);
        let name = e.archive_name();
        check_member_name(&name, true, &path, limits)?;
        if e.path == meta_rel {
            let Some(bytes) = meta_bytes.take() else { continue };
            members.push(Member {
                name,
                source: path,
                meta: EntryMeta::from_metadata(&fmd),
                identity: (fmd.dev(), fmd.ino()),
                content: Content::Bytes(bytes),
                sparse: None,
            });
            rels.push(e.path);
            continue;
        }
        let missing = |why: String| {
            HostError::NotFound(format!("required image cache artifact missing: {}{why}", shown(&path)))
        };
        let amd = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(missing(String::new())),
            Err(err) => return Err(HostError::io(format!("reading {}", shown(&path)), err)),
        };
        if amd.file_type().is_symlink() {
            return Err(missing(" (it is a symbolic link)".into()));
        }
        if !amd.file_type().is_file() {
            return Err(missing(" (it is not a regular file)".into()));
        }
        if !e.rule.check(amd.len()) {
            return Err(cache_err(CacheError::NotMaterialized { path: e.path.clone(), size: amd.len() }));
        }
        members.push(Member {
            name,
            source: path,
            meta: EntryMeta::from_metadata(&amd),
            identity: (amd.dev(), amd.ino()),
            content: Content::File { check: None },
            sparse: None,
        });
        rels.push(e.path);
    }
    if meta_bytes.is_some() {
        // expected_cache_files always lists the metadata file first; anything else is a bug.
        return Err(cache_err(CacheError::MissingArtifact(meta_rel)));
    }
    Ok((members, rels))
}

impl Plan {
    /// The head snapshot's digest.
    pub fn head(&self) -> &str {
        self.snapshots.last().map(|s| s.snap.digest.as_str()).unwrap_or_default()
    }

    /// Exact size of the tar stream (headers, data, padding, end-of-archive records).
    pub fn tar_bytes(&self) -> u64 {
        self.tar_bytes
    }

    /// Number of tar header records (long-name records included).
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// The snapshots to export, root first: `(digest, archive prefix)`.
    pub fn snapshots(&self) -> Vec<(String, String)> {
        self.snapshots.iter().map(|s| (s.snap.digest.clone(), s.prefix.clone())).collect()
    }

    /// The member names in archive order.
    pub fn member_names(&self) -> Vec<String> {
        self.members().map(|m| m.name.clone()).collect()
    }

    /// Every member in archive order: the snapshots' root first, then the cache files.
    pub(super) fn members(&self) -> impl Iterator<Item = &Member> {
        self.snapshots.iter().flat_map(|s| s.members.iter()).chain(self.cache.iter())
    }
}
