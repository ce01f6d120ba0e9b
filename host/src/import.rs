//! `import`: one streaming pass from bundle bytes to a promoted snapshot chain.
//!
//! read → core validator → stager (files beneath staging handles, holes skipped) → verdict →
//! target checks under the store lock → journal commit → renames → index. Nothing outside the
//! stages is written before the verdict and the target checks; see [`crate::promote`] for the
//! crash-safety argument.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use serde::Serialize;
use snapbundle_core::integrity::{Algorithm, IntegrityHasher};
use snapbundle_core::report::{Area, Generation, IntegrityStatus, Role};
use snapbundle_core::{Limits, Report};

use crate::check;
use crate::error::{shown, HostError};
use crate::export::ExportTarget;
use crate::fsutil::{self, create_dirs, Created};
use crate::home::Home;
use crate::index::{self, IndexOutcome};
use crate::msb::{ConvertOptions, Generation as ConvertTo};
use crate::progress::Progress;
use crate::promote::{self, Journal, Move, Recovery, Tree, STAGED_SNAPSHOTS, STAGE_PREFIX};
use crate::stage::{remove_tree, CacheStage, Stager, CACHE_STAGE_PREFIX};
use crate::verified::{FileState, Records};

/// Import settings.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Validator limits.
    pub limits: Limits,
    /// Draw no progress bar.
    pub quiet: bool,
    /// Length of the bundle when known (for the progress bar's total and ETA).
    pub input_len: Option<u64>,
    /// Validate inside the wasmtime sandbox with these bounds (files are still written here,
    /// from the sandbox's checked events, and promoted only on its verdict and file plan).
    #[cfg(feature = "sandbox")]
    pub sandbox: Option<crate::sandbox::SandboxOptions>,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportOutcome {
    /// Head snapshot digest.
    pub head_digest: String,
    /// Head snapshot name (its directory name).
    pub head_name: String,
    /// Head snapshot directory.
    pub head_path: PathBuf,
    /// Every promoted snapshot directory, in archive order.
    pub snapshots: Vec<PathBuf>,
    /// Cache files installed (relative to the cache directory).
    pub cache_installed: Vec<String>,
    /// Cache files already present with identical bytes.
    pub cache_reused: Vec<String>,
    /// What happened to the microsandbox index.
    pub index: IndexOutcome,
    /// Stale stages of earlier imports that were cleaned up first.
    pub recovered: Recovery,
    /// The validation report.
    pub report: Report,
    /// For a 0.7 `.msb` archive: its snapshots as converted (0.6.2 digest, 0.7 id and
    /// descriptor digest), parents first; empty for a 0.6.2 bundle.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub converted: Vec<crate::msb::forward::Converted>,
}

/// Imports a bundle from `reader` into `home`.
///
/// ```no_run
/// use snapbundle::home::Home;
/// use snapbundle::import::{import, ImportOptions};
///
/// let home = Home::resolve(None)?; // $MSB_HOME or ~/.microsandbox
/// let mut bundle = std::fs::File::open("chain.tar.zst")?;
/// let out = import(&mut bundle, "chain.tar.zst", &home, &ImportOptions { quiet: true, ..Default::default() })?;
/// println!("head {} at {}", out.head_digest, out.head_path.display());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn import(
    reader: &mut dyn Read,
    name: &str,
    home: &Home,
    opts: &ImportOptions,
) -> Result<ImportOutcome, HostError> {
    let peeked =
        crate::input::peek_generation(reader, opts.limits).map_err(io_err(format!("reading {name}")))?;
    let mut reader = peeked.reader;
    match peeked.generation {
        Some(Generation::G3) => import_converted(&mut reader, name, home, opts),
        Some(Generation::G2) => Err(crate::input::released_refusal(name, "import")),
        _ => import_bundle(&mut reader, name, home, opts),
    }
}

/// Imports a 0.6.2 bundle.
fn import_bundle(
    reader: &mut dyn Read,
    name: &str,
    home: &Home,
    opts: &ImportOptions,
) -> Result<ImportOutcome, HostError> {
    let mut created = Created::default();
    let r = import_inner(reader, name, home, opts, &mut created);
    match r {
        Ok(_) => created.keep(),
        Err(_) => created.undo(),
    }
    r
}

/// Imports a 0.7 `.msb` archive: converted to a 0.6.2 bundle on the fly ([`crate::msb`],
/// validated as `verify` does), piped into the import of that bundle with all its guarantees
/// (staged, verified again, all-or-nothing). The conversion runs here, the import beside it.
fn import_converted(
    reader: &mut dyn Read,
    name: &str,
    home: &Home,
    opts: &ImportOptions,
) -> Result<ImportOutcome, HostError> {
    let inner_name = format!("{name} (converted to 0.6.2)");
    let inner_opts = ImportOptions { quiet: true, input_len: None, ..opts.clone() };
    let convert_opts = ConvertOptions {
        to: ConvertTo::V062,
        limits: opts.limits,
        plain_tar: true,
        input_len: opts.input_len,
        quiet: opts.quiet,
        ..ConvertOptions::default()
    };
    let (converted, imported) = crate::piped::write_here(
        |w| crate::msb::convert(reader, name, ExportTarget::Writer(w), &convert_opts, None),
        // A conversion that failed cut the bundle short: the import refuses it, writes nothing.
        |r| import_bundle(r, &inner_name, home, &inner_opts),
        "importing",
    )?;
    match (converted, imported) {
        (Ok(c), Ok(mut i)) => {
            i.converted = c.snapshots;
            Ok(i)
        }
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e),
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> HostError {
    let c = context.into();
    move |e| HostError::io(c, e)
}

/// Runs recovery of stale stages under the store lock.
pub fn recover(home: &Home) -> Result<Recovery, HostError> {
    let snaps = match fsutil::open_dir(&home.snapshots) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Recovery::default()),
        Err(e) => return Err(HostError::io(format!("opening {}", shown(&home.snapshots)), e)),
    };
    let _lock = fsutil::lock(&snaps).map_err(io_err("locking the store"))?;
    promote::recover(&home.snapshots, &snaps, &home.cache)
}

fn import_inner(
    reader: &mut dyn Read,
    name: &str,
    home: &Home,
    opts: &ImportOptions,
    created: &mut Created,
) -> Result<ImportOutcome, HostError> {
    create_dirs(&home.snapshots, created).map_err(io_err(format!("creating {}", shown(&home.snapshots))))?;
    let snaps =
        fsutil::open_dir(&home.snapshots).map_err(io_err(format!("opening {}", shown(&home.snapshots))))?;
    let token = fsutil::token();
    let stage_name = format!("{STAGE_PREFIX}{token}");
    // Recovery, and creating and locking our stage, under one hold of the store lock: recovery
    // (of any process) removes every stage it can lock, so a stage must never be visible unlocked
    // outside the store lock.
    let (recovered, stage, stage_lock) = {
        let _store_lock = fsutil::lock(&snaps).map_err(io_err("locking the store"))?;
        let recovered = promote::recover(&home.snapshots, &snaps, &home.cache)?;
        snaps.create_dir(&stage_name).map_err(io_err(format!("creating stage {stage_name}")))?;
        let stage = snaps.open_dir(&stage_name).map_err(io_err("opening stage"))?;
        let stage_lock = fsutil::lock(&stage).map_err(io_err("locking stage"))?;
        (recovered, stage, stage_lock)
    };
    let mut cache_stage = CacheStage {
        cache_dir: home.cache.clone(),
        name: format!("{CACHE_STAGE_PREFIX}{token}"),
        dir: None,
        lock: None,
    };
    let result = stage_and_promote(reader, name, home, opts, &snaps, &stage, &mut cache_stage, created);
    // A failure after the commit point (a rename that failed) keeps both stages: they hold the
    // journal and the rest of the bundle, which recovery rolls forward. Removing them would leave
    // the bundle half promoted for good.
    let result = match result {
        Err(e) if matches!(promote::read_journal(&stage), Ok(Some(_))) => {
            return Err(committed_but_failed(e))
        }
        r => r,
    };
    // Otherwise the stages go: promoted items were renamed out of them already.
    if let Some(d) = cache_stage.dir.take() {
        drop(d);
        cache_stage.lock = None;
        if let Ok(tmp) = fsutil::open_dir(&home.cache.join("tmp")) {
            let _ = remove_tree(&tmp, &cache_stage.name);
        }
    }
    drop(stage);
    drop(stage_lock);
    let _ = remove_tree(&snaps, &stage_name);
    let Staged { report, journal, reused: cache_reused, states } = result?;
    record_verified(home, &report, &states);
    let index = index::update(home, &report);
    let snapshots: Vec<PathBuf> = report.snapshots.iter().map(|s| home.snapshots.join(&s.prefix)).collect();
    let cache_installed =
        journal.moves.iter().filter(|m| m.tree == Tree::Cache).map(|m| m.to.clone()).collect();
    Ok(ImportOutcome {
        head_digest: report.head.clone(),
        head_name: report.head_prefix.clone(),
        head_path: home.snapshots.join(&report.head_prefix),
        snapshots,
        cache_installed,
        cache_reused,
        index,
        recovered,
        report,
        converted: Vec::new(),
    })
}

#[allow(clippy::too_many_arguments)]
fn stage_and_promote(
    reader: &mut dyn Read,
    name: &str,
    home: &Home,
    opts: &ImportOptions,
    snaps: &cap_std::fs::Dir,
    stage: &cap_std::fs::Dir,
    cache_stage: &mut CacheStage,
    created: &mut Created,
) -> Result<Staged, HostError> {
    stage.create_dir(STAGED_SNAPSHOTS).map_err(io_err("creating stage"))?;
    let staged = stage.open_dir(STAGED_SNAPSHOTS).map_err(io_err("opening stage"))?;
    let progress = Progress::new("importing", opts.input_len, opts.quiet);
    let (report, states) = {
        let mut stager = Stager::new(&staged, cache_stage, created);
        let r = validate_into(reader, name, opts, &mut stager, &progress);
        progress.finish();
        let report = r?;
        stager.sync_dirs().map_err(io_err("syncing stage"))?;
        (report, stager.into_states())
    };
    crate::crash::point("staged");

    // Target checks and promotion, serialised with every other snapbundle writer of this store.
    let _store_lock = fsutil::lock(snaps).map_err(io_err("locking the store"))?;
    let mut moves = Vec::new();
    let mut reused = Vec::new();
    if let Some(cache) = &report.cache {
        let cache_dir =
            fsutil::open_dir(&home.cache).map_err(io_err(format!("opening {}", shown(&home.cache))))?;
        let mut metadata = None;
        // Each `cache/<kind>` must be a real directory (or absent): never write through a symlink.
        let mut kinds: Vec<&str> =
            cache.files.iter().filter_map(|r| r.split_once('/').map(|k| k.0)).collect();
        kinds.dedup();
        for kind in kinds {
            match cache_dir.symlink_metadata(kind) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(HostError::Conflict(format!(
                        "cache directory is not a directory (a symlink?), refusing to write through it: {}",
                        shown(&home.cache.join(kind))
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(HostError::io(format!("checking {}", shown(&home.cache.join(kind))), e))
                }
            }
        }
        for rel in &cache.files {
            let planned = report.files.iter().find(|f| f.area == Area::Cache && &f.path == rel);
            let Some(planned) = planned else { continue };
            if target_matches(&cache_dir, rel, planned, &home.cache)? {
                reused.push(rel.clone());
                continue;
            }
            let m = Move { tree: Tree::Cache, from: rel.clone(), to: rel.clone() };
            if planned.role == Role::CacheMetadata {
                metadata = Some(m);
            } else {
                moves.push(m);
            }
        }
        // The metadata goes last: microsandbox treats an image as cached once it is there.
        moves.extend(metadata);
    }
    let mut snapshot_moves = Vec::new();
    // Parents first, in archive order; the head last.
    let (heads, others): (Vec<_>, Vec<_>) = report.snapshots.iter().partition(|s| s.is_head);
    for s in others.into_iter().chain(heads) {
        if snaps.symlink_metadata(&s.prefix).is_ok() {
            return Err(HostError::Conflict(format!(
                "snapshot already exists: {}",
                shown(&home.snapshots.join(&s.prefix))
            )));
        }
        snapshot_moves.push(Move { tree: Tree::Snapshots, from: s.prefix.clone(), to: s.prefix.clone() });
    }
    moves.extend(snapshot_moves);
    let journal = Journal {
        version: 1,
        cache_dir: home.cache.clone(),
        cache_stage: cache_stage.dir.as_ref().map(|_| cache_stage.name.clone()),
        moves,
    };
    promote::commit(stage, &journal)?;
    crate::crash::point("journal");
    promote::apply(&journal, stage, snaps, |n| {
        if n == 1 {
            crate::crash::point("promote-1");
        }
    })?;
    crate::crash::point("promoted");
    Ok(Staged { report, journal, reused, states })
}

/// What [`stage_and_promote`] did.
struct Staged {
    report: Report,
    journal: Journal,
    /// Cache files already present with identical bytes.
    reused: Vec<String>,
    /// Each staged snapshot file's state once written, by path relative to the store.
    states: Vec<(String, FileState)>,
}

/// Notes every promoted upper whose recorded integrity the import verified (see
/// [`crate::verified`]): the bytes written are the bytes hashed, and the file must still be in
/// the state it had when it was written and synced. Best effort.
fn record_verified(home: &Home, report: &Report, states: &[(String, FileState)]) {
    let records = Records::of(home);
    for s in &report.snapshots {
        let IntegrityStatus::Verified { algorithm, digest } = &s.integrity else { continue };
        let rel = format!("{}/{}", s.prefix, s.upper_file);
        let Some((_, state)) = states.iter().find(|(p, _)| *p == rel) else { continue };
        let path = home.snapshots.join(&rel);
        if let Ok(file) = File::open(&path) {
            let _ = records.record(&file, &path, state, algorithm, digest);
        }
    }
}

/// Streams the bundle through the validator (native, or sandboxed when asked) into the stager.
fn validate_into(
    reader: &mut dyn Read,
    name: &str,
    opts: &ImportOptions,
    stager: &mut Stager<'_>,
    progress: &Progress,
) -> Result<Report, HostError> {
    #[cfg(feature = "sandbox")]
    if let Some(sandbox) = &opts.sandbox {
        return crate::sandbox::run(reader, name, opts.limits, sandbox, stager, progress, &mut |s| {
            s.take_error()
        });
    }
    check::run(reader, name, opts.limits, stager, progress, &mut |s| s.take_error())
}

/// Whether a cache target already holds exactly the planned bytes; a conflict if it holds others.
fn target_matches(
    cache_dir: &cap_std::fs::Dir,
    rel: &str,
    planned: &snapbundle_core::report::PlannedFile,
    cache_path: &std::path::Path,
) -> Result<bool, HostError> {
    let size = planned.size;
    let shown_target = shown(&cache_path.join(rel));
    let meta = match cache_dir.symlink_metadata(rel) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(HostError::io(format!("checking {shown_target}"), e)),
    };
    if !meta.is_file() {
        return Err(HostError::Conflict(format!("cache target is not a regular file: {shown_target}")));
    }
    if meta.len() == size {
        let mut f = cache_dir.open(rel).map_err(io_err(format!("reading {shown_target}")))?;
        let Some(algorithm) = Algorithm::parse(&planned.algorithm) else {
            return Err(HostError::Usage(format!("the plan names an unknown algorithm for {rel}")));
        };
        let mut h = IntegrityHasher::new(algorithm, size);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(io_err(format!("reading {shown_target}")))?;
            if n == 0 {
                break;
            }
            h.update(buf.get(..n).unwrap_or(&[]));
        }
        if h.finish() == planned.digest {
            return Ok(true);
        }
    }
    Err(HostError::Conflict(format!("cache target already exists with different content: {shown_target}")))
}

/// An error raised after the journal was committed: the import completes on recovery.
fn committed_but_failed(e: HostError) -> HostError {
    const NOTE: &str = "the import is committed; `snapbundle gc` or the next import completes it";
    match e {
        HostError::Io { context, source } => HostError::Io { context: format!("{context} ({NOTE})"), source },
        other => other,
    }
}
