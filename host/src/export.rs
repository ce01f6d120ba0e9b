//! `export`: snapshot directories (and optionally the head's image cache files) into a bundle
//! in exactly the layout and tar encoding microsandbox 0.6.2 writes (spec §5.1).
//!
//! Two phases, so that nothing is written for a request that cannot succeed:
//!
//! 1. [`plan`] resolves the snapshot, follows `parent` through the store (with `with_parents`),
//!    lists every snapshot directory and, with `with_image`, the head's pinned cache files. Every
//!    refusal happens here, before any output exists: a missing parent or cache file, a
//!    subdirectory, symlink or special file in a snapshot directory, a name our importer's
//!    grammar rejects, an unsupported integrity algorithm, a bundle over the default limits.
//!    The plan knows the exact size of the tar stream.
//! 2. [`Plan::write`] streams the members in one pass: uppers are read by their data segments
//!    (holes cost no reads and are written as zeros) while their recorded integrity is computed;
//!    a mismatch fails the export at the end of that upper. A file target is written to a
//!    temporary file beside it, fsynced and renamed into place only on success, so a failed
//!    export leaves no file; a stream target (standard output) gets no end-of-archive records
//!    and no zstd frame end after a failure, so a consumer sees a truncated, invalid bundle.
//!
//! With [`ExportOptions::sparse`], snapshot files with holes (the uppers, in practice) are written
//! as old-GNU sparse members (see [`crate::tar_writer`]): their holes are neither read, nor
//! written, nor compressed, only hashed when integrity is recorded. Such bundles import here and
//! extract with GNU tar, but microsandbox 0.6.2 rejects them; without the option the bundle is
//! byte for byte the 0.6.2 layout.
//!
//! [`export`] runs both. Deliberate differences from 0.6.2 are listed on [`plan`].

use std::collections::BTreeMap;
use std::fs::{File, Metadata};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use snapbundle_core::cache_meta::{self, CacheError};
use snapbundle_core::error::{Error as CoreError, LimitError, SnapshotError};
use snapbundle_core::integrity::{Algorithm, IntegrityHasher};
use snapbundle_core::manifest::{Manifest, MANIFEST_FILENAME};
use snapbundle_core::names::{self, Slot};
use snapbundle_core::{reference, Limits};

use crate::error::{shown, HostError};
use crate::fsutil::{create_dirs, Created};
use crate::home::Home;
use crate::progress::Progress;
use crate::sparse::{self, Chunk};
use crate::store::{self, Snapshot};
use crate::tar_writer::{self, EntryMeta, FromMetadata as _, TarWriter, END_OF_ARCHIVE};
use crate::verified::{FileState, Records};

/// The zstd level 0.6.2 uses (async-compression's default).
pub const DEFAULT_LEVEL: i32 = 3;
/// Most zstd workers used when the thread count is left at 0 (memory grows with each worker;
/// beyond four, reading and hashing the snapshot are the bottleneck anyway).
pub const DEFAULT_MAX_THREADS: usize = 4;
/// zstd job size for multithreaded compression.
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// Export settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// Also export every ancestor (`manifest.parent`, found in the store), root first.
    pub with_parents: bool,
    /// Also export the head's image cache files (metadata, fsmeta, VMDK, layers).
    pub with_image: bool,
    /// Write a plain tar instead of zstd.
    pub plain_tar: bool,
    /// Write snapshot files that have holes (found with SEEK_DATA/SEEK_HOLE) as old-GNU sparse
    /// members, as GNU tar and microsandbox 0.7 do. microsandbox 0.6.2 cannot import the result;
    /// manifests and image cache files are never sparse.
    pub sparse: bool,
    /// zstd level (default [`DEFAULT_LEVEL`]).
    pub level: i32,
    /// zstd worker threads; 0 uses one per available core, at most [`DEFAULT_MAX_THREADS`].
    pub threads: u32,
    /// The limits the bundle must stay within (the receiving importer's; default
    /// [`Limits::DEFAULT`]), checked before anything is written.
    pub limits: Limits,
    /// Hash every upper with recorded integrity, even one that a verification record shows
    /// unchanged since it was last verified (see [`crate::verified`]).
    pub rehash: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            with_parents: false,
            with_image: false,
            plain_tar: false,
            sparse: false,
            level: DEFAULT_LEVEL,
            threads: 0,
            limits: Limits::DEFAULT,
            rehash: false,
        }
    }
}

/// Where the bundle goes.
pub enum ExportTarget<'a> {
    /// A file, written beside itself under a temporary name and renamed into place on success.
    /// Missing parent directories are created (and removed again if the export fails).
    File(&'a Path),
    /// Standard output, streamed as it is produced.
    Stdout,
    /// Any writer, streamed like standard output.
    Writer(&'a mut dyn Write),
}

/// One exported snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportedSnapshot {
    /// Snapshot digest.
    pub digest: String,
    /// Its directory in the bundle (`sha256-<16 hex>`).
    pub prefix: String,
    /// The directory it was read from.
    pub source: PathBuf,
    /// How the upper's recorded integrity was checked.
    pub integrity: IntegrityCheck,
}

/// How an export checked an upper's recorded integrity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IntegrityCheck {
    /// The manifest records no integrity (0.6.2 exports it unchecked too).
    NotRecorded,
    /// The upper was hashed while it was written, and matched.
    Hashed,
    /// A verification record showed the upper unchanged since snapbundle last verified it
    /// (see [`crate::verified`]); it was not hashed again.
    Record,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportOutcome {
    /// Exported snapshots in archive order: root first, head last.
    pub snapshots: Vec<ExportedSnapshot>,
    /// The head snapshot's digest.
    pub head: String,
    /// Image cache files (relative to the cache directory), in archive order.
    pub cache_files: Vec<String>,
    /// Whether the bundle is zstd-compressed.
    pub compressed: bool,
    /// Bytes written to the target.
    pub bytes_written: u64,
    /// Bytes of the tar stream.
    pub tar_bytes: u64,
    /// The file written, for a file target.
    pub path: Option<PathBuf>,
}

/// Integrity recorded for an upper, checked while it streams.
#[derive(Debug)]
struct UpperCheck {
    digest: String,
    algorithm: Algorithm,
    /// The algorithm as the manifest names it.
    algorithm_name: String,
    dir: PathBuf,
}

#[derive(Debug)]
enum Content {
    /// Held in memory since planning (manifests, cache metadata): exactly the bytes checked.
    Bytes(Vec<u8>),
    /// Streamed from the source file; an upper with recorded integrity carries its check.
    File { check: Option<UpperCheck> },
}

#[derive(Debug)]
struct Member {
    /// Member name in the bundle.
    name: String,
    /// The file it comes from.
    source: PathBuf,
    /// Header fields from the planning `stat`.
    meta: EntryMeta,
    /// `(st_dev, st_ino)` of the source, to notice a swapped file.
    identity: (u64, u64),
    content: Content,
    /// The data segments of its old-GNU sparse map, when it is written sparse.
    sparse: Option<Vec<(u64, u64)>>,
}

impl Member {
    /// Bytes of tar the member takes, or `None` on overflow.
    fn tar_len(&self) -> Option<u64> {
        match &self.sparse {
            Some(segments) => tar_writer::sparse_member_len(&self.name, segments),
            None => tar_writer::member_len(&self.name, self.meta.size),
        }
    }
}

#[derive(Debug)]
struct PlannedSnapshot {
    snap: Snapshot,
    prefix: String,
    members: Vec<Member>,
}

/// A checked export, ready to be written. See [`plan`].
#[derive(Debug)]
pub struct Plan {
    opts: ExportOptions,
    snapshots: Vec<PlannedSnapshot>,
    cache: Vec<Member>,
    cache_files: Vec<String>,
    tar_bytes: u64,
    entries: u32,
    records: Records,
}

/// Exports `snapshot_arg` (a path, a name in the store, or a `sha256:` digest or unique prefix)
/// to `target`.
///
/// ```no_run
/// use snapbundle::export::{export, ExportOptions, ExportTarget};
/// use snapbundle::home::Home;
/// use snapbundle::progress::Progress;
///
/// let home = Home::resolve(None)?;
/// let opts = ExportOptions { with_parents: true, ..Default::default() };
/// let out = export(&home, "sha256:d04c4f19", ExportTarget::File("chain.tar.zst".as_ref()), &opts, &Progress::hidden())?;
/// println!("{} snapshots, head {}", out.snapshots.len(), out.head);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// It runs [`plan`] then [`Plan::write`]; `progress` gets the tar stream's total up front and
/// the bytes written as they go.
pub fn export(
    home: &Home,
    snapshot_arg: &str,
    target: ExportTarget<'_>,
    opts: &ExportOptions,
    progress: &Progress,
) -> Result<ExportOutcome, HostError> {
    let plan = plan(home, snapshot_arg, opts)?;
    progress.set_total(plan.tar_bytes());
    let outcome = plan.write(target, progress);
    progress.finish();
    outcome
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> HostError {
    let c = context.into();
    move |e| HostError::io(c, e)
}

fn limit(error: LimitError) -> HostError {
    HostError::Invalid(CoreError::Limit { at: None, error })
}

fn cache_err(error: CacheError) -> HostError {
    HostError::Invalid(CoreError::Cache(error))
}

/// Opens a file for reading without following a final symlink and without blocking on a FIFO.
pub(crate) fn open_nofollow(path: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

/// Reads a whole small file through `file`, refusing more than `max` bytes.
fn read_small(file: &File, max: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn changed(path: &Path) -> HostError {
    HostError::io(
        format!("reading {}", shown(path)),
        io::Error::other("the file changed while the export was running"),
    )
}

/// Checks a member name against the importer's grammar; `cache` says which area it must land in.
fn check_member_name(name: &str, cache: bool, source: &Path, limits: &Limits) -> Result<(), HostError> {
    match names::classify(name.as_bytes(), false) {
        Ok(Slot::SnapshotFile { .. }) if !cache => {}
        Ok(Slot::CacheFile { .. }) if cache => {}
        Ok(_) => {
            return Err(HostError::Usage(format!(
                "cannot export {}: the member name {name:?} would not be read back as intended",
                shown(source)
            )))
        }
        Err(e) => {
            return Err(HostError::Usage(format!(
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
                return Err(HostError::Usage(format!("the parent chain loops at {parent}")));
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
                            " ({} snapshot director{} there could not be opened: {})",
                            unreadable.len(),
                            if unreadable.len() == 1 { "y" } else { "ies" },
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
        HostError::Usage(format!(
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
            return Err(HostError::Usage(format!(
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
            return Err(HostError::Usage(format!(
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

/// Counts bytes on their way to the target.
pub(crate) struct Counting<W> {
    pub(crate) inner: W,
    pub(crate) count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count = self.count.saturating_add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The tar stream's destination: plain, or a zstd frame.
pub(crate) enum Compressor<W: Write> {
    Plain(W),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Plain(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.write_all(buf),
            Compressor::Zstd(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
        }
    }
}

impl<W: Write> Compressor<W> {
    /// Ends the zstd frame (if any) and returns the writer below.
    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Plain(w) => Ok(w),
            Compressor::Zstd(w) => w.finish(),
        }
    }
}

/// The bundle's compressor as `opts` ask for it (plain, or one zstd frame declaring
/// `tar_bytes` and carrying a checksum), so that the same tar stream always gives the same bytes.
pub(crate) fn compressor<W: Write>(
    out: W,
    opts: &ExportOptions,
    tar_bytes: u64,
) -> io::Result<Compressor<W>> {
    if opts.plain_tar {
        return Ok(Compressor::Plain(out));
    }
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(DEFAULT_MAX_THREADS),
        n => n as usize,
    };
    let threads = u32::try_from(threads).unwrap_or(u32::MAX);
    let mut enc = zstd::stream::write::Encoder::new(out, opts.level)?;
    enc.include_checksum(true)?;
    enc.set_pledged_src_size(Some(tar_bytes))?;
    enc.multithread(threads)?;
    // Small jobs keep memory flat (about 4 MiB per worker at level 3) at no measurable cost in
    // ratio or speed; the default job size (4x the window, larger still at high levels) tripled
    // peak RSS.
    enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
    Ok(Compressor::Zstd(enc))
}

/// One member of a [`Plan`], as [`crate::registry`] stores it (one blob per member).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMember {
    /// Member name in the bundle (`sha256-<16 hex>/manifest.json`, `cache/layers/…`).
    pub name: String,
    /// Its tar header fields (size = the file's apparent size).
    pub meta: EntryMeta,
    /// The file it is read from.
    pub source: PathBuf,
    /// `(st_dev, st_ino)` of the file when it was planned: reading it fails if that changed.
    pub identity: (u64, u64),
    /// For an upper with recorded integrity, `<algorithm> <digest>` as the manifest records it
    /// (reading it fails unless the bytes match).
    pub integrity: Option<String>,
    /// Whether it is read from its file (`false`: its bytes were read and checked at planning).
    pub from_file: bool,
}

impl Plan {
    /// The members in archive order, with the header fields the tar stream gives them.
    pub fn planned_members(&self) -> Vec<PlannedMember> {
        self.members()
            .map(|m| PlannedMember {
                name: m.name.clone(),
                meta: m.meta,
                source: m.source.clone(),
                identity: m.identity,
                integrity: match &m.content {
                    Content::File { check: Some(c) } => Some(format!("{} {}", c.algorithm_name, c.digest)),
                    _ => None,
                },
                from_file: matches!(m.content, Content::File { .. }),
            })
            .collect()
    }

    /// The head snapshot's digest.
    pub fn head(&self) -> &str {
        self.snapshots.last().map(|s| s.snap.digest.as_str()).unwrap_or_default()
    }

    /// Streams member `index` (of [`Plan::planned_members`]) into `f`, densely (holes as
    /// [`Chunk::Zeros`]), with the checks the bundle writer makes: the file must still be the
    /// planned one and an upper's recorded integrity must match.
    pub fn read_member(
        &self,
        index: usize,
        f: &mut dyn FnMut(Chunk<'_>) -> io::Result<()>,
    ) -> Result<(), HostError> {
        let Some(m) = self.members().nth(index) else {
            return Err(HostError::Usage(format!("no member #{index} in the export plan")));
        };
        if let Content::Bytes(bytes) = &m.content {
            return f(Chunk::Data(bytes)).map_err(io_err(format!("reading {}", shown(&m.source))));
        }
        let (file, before) = open_member(m)?;
        let segments = sparse::data_segments(&file, before.len())
            .map_err(io_err(format!("reading {}", shown(&m.source))))?;
        let trusted = (!self.opts.rehash).then_some(&self.records);
        read_checked(m, &file, &before, &segments, trusted, &self.records, f).map(|_| ())
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

    fn members(&self) -> impl Iterator<Item = &Member> {
        self.snapshots.iter().flat_map(|s| s.members.iter()).chain(self.cache.iter())
    }

    fn outcome(&self, written: Written, path: Option<PathBuf>) -> ExportOutcome {
        ExportOutcome {
            snapshots: self
                .snapshots
                .iter()
                .zip(written.checks)
                .map(|(s, integrity)| ExportedSnapshot {
                    digest: s.snap.digest.clone(),
                    prefix: s.prefix.clone(),
                    source: s.snap.dir.clone(),
                    integrity,
                })
                .collect(),
            head: self.snapshots.last().map(|s| s.snap.digest.clone()).unwrap_or_default(),
            cache_files: self.cache_files.clone(),
            compressed: !self.opts.plain_tar,
            bytes_written: written.bytes,
            tar_bytes: self.tar_bytes,
            path,
        }
    }

    /// Writes the bundle to `target`, updating `progress` with tar bytes written.
    pub fn write(&self, target: ExportTarget<'_>, progress: &Progress) -> Result<ExportOutcome, HostError> {
        match target {
            ExportTarget::File(path) => self.write_file(path, progress),
            ExportTarget::Stdout => {
                let written = self.stream(io::stdout().lock(), "standard output", progress)?;
                Ok(self.outcome(written, None))
            }
            ExportTarget::Writer(w) => {
                let written = self.stream(w, "the output", progress)?;
                Ok(self.outcome(written, None))
            }
        }
    }

    fn write_file(&self, path: &Path, progress: &Progress) -> Result<ExportOutcome, HostError> {
        let Some(file_name) = path.file_name() else {
            return Err(HostError::Usage(format!("the output path {} does not name a file", shown(path))));
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match std::fs::symlink_metadata(path) {
            Ok(md) if md.is_dir() => {
                return Err(HostError::Usage(format!("the output path {} is a directory", shown(path))));
            }
            Ok(md) if self.members().any(|m| m.identity == (md.dev(), md.ino())) => {
                return Err(HostError::Usage(format!(
                    "refusing to replace {}: it is one of the files being exported",
                    shown(path)
                )));
            }
            _ => {}
        }
        let mut created = Created::default();
        create_dirs(&parent, &mut created).map_err(io_err(format!("creating {}", shown(&parent))))?;
        let r = self.write_file_in(path, &parent, file_name, progress);
        match r {
            Ok(_) => created.keep(),
            Err(_) => created.undo(),
        }
        r
    }

    fn write_file_in(
        &self,
        path: &Path,
        parent: &Path,
        file_name: &std::ffi::OsStr,
        progress: &Progress,
    ) -> Result<ExportOutcome, HostError> {
        if let Ok(canon) = parent.canonicalize() {
            for s in &self.snapshots {
                if s.snap.dir.canonicalize().is_ok_and(|d| d == canon) {
                    return Err(HostError::Usage(format!(
                        "refusing to write {} inside the snapshot directory being exported",
                        shown(path)
                    )));
                }
            }
        }
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(file_name);
        prefix.push(".");
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".snapbundle-tmp")
            .permissions(std::fs::Permissions::from_mode(0o666))
            .tempfile_in(parent)
            .map_err(io_err(format!("creating a temporary file in {}", shown(parent))))?;
        let label = shown(path);
        let written = self.stream(tmp.as_file(), &label, progress)?;
        tmp.as_file().sync_all().map_err(io_err(format!("syncing {label}")))?;
        tmp.persist(path).map_err(|e| HostError::io(format!("renaming the bundle to {label}"), e.error))?;
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_err(format!("syncing directory {}", shown(parent))))?;
        Ok(self.outcome(written, Some(path.to_path_buf())))
    }

    /// Streams the whole bundle into `out`; returns the bytes written and how each upper was
    /// checked. On failure nothing more is written: no end-of-archive records and no end of the
    /// zstd frame.
    fn stream<W: Write>(&self, out: W, label: &str, progress: &Progress) -> Result<Written, HostError> {
        let wctx = format!("writing {label}");
        let buffered = BufWriter::with_capacity(1 << 20, Counting { inner: out, count: 0 });
        let sink = compressor(buffered, &self.opts, self.tar_bytes).map_err(io_err("setting up zstd"))?;
        let mut tar = TarWriter::new(sink);
        let records = (!self.opts.rehash).then_some(&self.records);
        let mut checks = Vec::with_capacity(self.snapshots.len());
        for s in &self.snapshots {
            let mut check = IntegrityCheck::NotRecorded;
            for m in &s.members {
                if let Some(c) = write_member(&mut tar, m, &wctx, progress, records, &self.records)? {
                    check = c;
                }
            }
            checks.push(check);
        }
        for m in &self.cache {
            write_member(&mut tar, m, &wctx, progress, None, &self.records)?;
        }
        if tar.position().checked_add(END_OF_ARCHIVE.len() as u64) != Some(self.tar_bytes) {
            return Err(HostError::io(
                wctx,
                io::Error::other(format!(
                    "internal error: wrote {} tar bytes, planned {}",
                    tar.position(),
                    self.tar_bytes
                )),
            ));
        }
        let sink = tar.finish().map_err(io_err(wctx.clone()))?;
        progress.set(self.tar_bytes);
        let buffered = sink.finish().map_err(io_err(wctx.clone()))?;
        let counting = buffered.into_inner().map_err(|e| HostError::io(wctx.clone(), e.into_error()))?;
        let Counting { mut inner, count } = counting;
        inner.flush().map_err(io_err(wctx))?;
        Ok(Written { bytes: count, checks })
    }
}

/// What [`Plan::stream`] wrote.
struct Written {
    bytes: u64,
    /// How each snapshot's upper was checked, in plan order.
    checks: Vec<IntegrityCheck>,
}

/// Writes one member; a file is read by its data segments, an upper's integrity checked (see
/// [`read_checked`] for `trusted` and `records`). A sparse member's map must still be the
/// planned one (the plan sized the stream with it); its holes are only hashed.
fn write_member<W: Write>(
    tar: &mut TarWriter<W>,
    m: &Member,
    wctx: &str,
    progress: &Progress,
    trusted: Option<&Records>,
    records: &Records,
) -> Result<Option<IntegrityCheck>, HostError> {
    if let Content::Bytes(bytes) = &m.content {
        tar.append(&m.name, &m.meta, bytes).map_err(io_err(wctx))?;
        progress.set(tar.position());
        return Ok(None);
    }
    let (file, before) = open_member(m)?;
    // Header fields from this handle; only the size had to stay as planned.
    let meta = EntryMeta::from_metadata(&before);
    let reading = || format!("reading {}", shown(&m.source));
    let segments = match &m.sparse {
        Some(planned) => {
            let found = sparse::data_segments(&file, meta.size).map_err(io_err(reading()))?;
            let map = sparse::sparse_map(&found, meta.size, u32::MAX);
            // The same map, or a subset of it (holes punched since, or coalesced at planning).
            let covered = map.as_deref().unwrap_or(&[(0, meta.size)]).iter().all(|&(o, n)| {
                planned.iter().any(|&(po, pn)| po <= o && o.saturating_add(n) <= po.saturating_add(pn))
            });
            if !covered {
                return Err(changed(&m.source));
            }
            tar.begin_sparse(&m.name, &meta, planned).map_err(io_err(wctx))?;
            planned.clone()
        }
        None => {
            tar.begin(&m.name, &meta).map_err(io_err(wctx))?;
            sparse::data_segments(&file, meta.size).map_err(io_err(reading()))?
        }
    };
    let dense = m.sparse.is_none();
    let mut write_error: Option<io::Error> = None;
    let read = read_checked(m, &file, &before, &segments, trusted, records, &mut |chunk| {
        let written = match chunk {
            Chunk::Data(bytes) => tar.data(bytes),
            Chunk::Zeros(n) if dense => tar.zeros(n),
            Chunk::Zeros(_) => Ok(()),
        };
        match written {
            Ok(()) => {
                progress.set(tar.position());
                Ok(())
            }
            Err(e) => {
                write_error = Some(e);
                Err(io::Error::other("the output failed"))
            }
        }
    });
    if let Some(e) = write_error {
        return Err(HostError::io(wctx, e));
    }
    let check = read?;
    tar.end().map_err(io_err(wctx))?;
    Ok(check)
}

/// Opens a file member's source and checks it is still the planned file with the planned size.
fn open_member(m: &Member) -> Result<(File, Metadata), HostError> {
    let file = open_nofollow(&m.source).map_err(io_err(format!("opening {}", shown(&m.source))))?;
    let before = file.metadata().map_err(io_err(format!("reading {}", shown(&m.source))))?;
    if !before.is_file() || (before.dev(), before.ino()) != m.identity || before.len() != m.meta.size {
        return Err(changed(&m.source));
    }
    Ok((file, before))
}

/// Reads a file member by `segments` (holes as [`Chunk::Zeros`]) into `f`, hashing it when its
/// integrity is recorded, unless a record among `trusted` vouches for it; fails if the file
/// changed during the read or its digest does not match. A successful hash is noted in
/// `records`. Returns how an upper with recorded integrity was checked (`None` for any other
/// member).
fn read_checked(
    m: &Member,
    file: &File,
    before: &Metadata,
    segments: &[(u64, u64)],
    trusted: Option<&Records>,
    records: &Records,
    f: &mut dyn FnMut(Chunk<'_>) -> io::Result<()>,
) -> Result<Option<IntegrityCheck>, HostError> {
    let check = match &m.content {
        Content::File { check } => check.as_ref(),
        Content::Bytes(_) => None,
    };
    let size = before.len();
    let vouched =
        check.is_some_and(|c| trusted.is_some_and(|t| t.vouches_for(before, &c.algorithm_name, &c.digest)));
    let mut hasher = check.filter(|_| !vouched).map(|c| IntegrityHasher::new(c.algorithm, size));
    sparse::read_segments(file, segments, size, &mut |chunk| {
        if let Some(h) = hasher.as_mut() {
            match chunk {
                Chunk::Data(bytes) => h.update(bytes),
                Chunk::Zeros(n) => h.update_zeros(n),
            }
        }
        f(chunk)
    })
    .map_err(io_err(format!("reading {}", shown(&m.source))))?;
    let after = file.metadata().map_err(io_err(format!("reading {}", shown(&m.source))))?;
    if after.len() != before.len()
        || after.mtime() != before.mtime()
        || after.mtime_nsec() != before.mtime_nsec()
        || after.ctime() != before.ctime()
        || after.ctime_nsec() != before.ctime_nsec()
    {
        return Err(changed(&m.source));
    }
    let Some(c) = check else { return Ok(None) };
    let Some(h) = hasher else { return Ok(Some(IntegrityCheck::Record)) };
    let computed = h.finish();
    if computed != c.digest {
        return Err(HostError::Invalid(CoreError::Snapshot {
            prefix: shown(&c.dir),
            error: SnapshotError::DigestMismatch { manifest: c.digest.clone(), file: computed },
        }));
    }
    // Best effort: a record that cannot be written only means hashing again next time.
    if let Some(state) = FileState::of(before) {
        let _ = records.record(file, &m.source, &state, &c.algorithm_name, &c.digest);
    }
    Ok(Some(IntegrityCheck::Hashed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_0_6_2() {
        let o = ExportOptions::default();
        assert!(!o.with_parents && !o.with_image && !o.plain_tar && !o.sparse);
        assert_eq!(o.level, 3);
        assert_eq!(o.threads, 0);
    }

    #[test]
    fn counting_counts() {
        let mut c = Counting { inner: Vec::new(), count: 0 };
        assert!(c.write_all(b"hello").is_ok());
        assert_eq!(c.count, 5);
    }
}
