//! All-or-nothing promotion of a staged import, and recovery after a crash.
//!
//! # Why the store ends up with none or all of a bundle
//!
//! 1. Every staged file is written beneath the stage and fsynced, and so is every staged
//!    directory, before the journal is written.
//! 2. Under the store lock (an exclusive `flock` on the snapshots directory itself, so no lock
//!    file is ever created in the store) every target is checked: no snapshot directory of the
//!    same name, no cache file with different bytes.
//! 3. The journal — the ordered list of renames — is written to `journal.json.tmp`, fsynced,
//!    renamed to `journal.json` and the stage directory fsynced. **This rename is the commit
//!    point.** Before it, the store holds nothing of the bundle; after it, the bundle is
//!    committed and only needs to be rolled forward.
//! 4. The renames run in journal order (cache artifacts, cache metadata, then snapshots with the
//!    head last), each `renameat2(RENAME_NOREPLACE)`, then the target directories are fsynced.
//! 5. The stage is removed.
//!
//! A process killed before step 3 leaves only its stage (a `.snapbundle-import-<token>`
//! directory that microsandbox never lists, and `<cache>/tmp/snapbundle-import-<token>`); the
//! next import or `snapbundle gc` removes it. A process killed after step 3 leaves a journal;
//! recovery renames every move whose source is still staged (a move whose source is gone was
//! done before the crash), so the store ends with all of the bundle. Every renamed item is a
//! complete, fsynced file or directory, so a snapshot directory is never visible half-written.
//!
//! A running import holds an `flock` on its stage directory (and its cache stage) for its whole
//! life; recovery skips any stage it cannot lock, so it never touches a live import. The kernel
//! drops the lock when the process dies, however it dies.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use cap_fs_ext::DirExt;
use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};

use crate::error::{shown, HostError};
use crate::fsutil::{self, rename_noreplace, sync_dir};
use crate::stage::{remove_tree, CACHE_STAGE_PREFIX};

/// Name prefix of snapshot staging directories inside the snapshots directory.
pub const STAGE_PREFIX: &str = ".snapbundle-import-";
/// The journal's file name inside a stage.
pub const JOURNAL: &str = "journal.json";
/// The subdirectory of a stage that holds staged snapshot directories.
pub const STAGED_SNAPSHOTS: &str = "snapshots";

/// Which tree a move belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tree {
    /// From `<stage>/snapshots/<from>` to `<snapshots>/<to>`.
    Snapshots,
    /// From `<cache>/tmp/<cache stage>/<from>` to `<cache>/<to>`.
    Cache,
}

/// One rename.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// Tree.
    pub tree: Tree,
    /// Relative source.
    pub from: String,
    /// Relative target.
    pub to: String,
}

/// The promotion journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// Format version (1).
    pub version: u32,
    /// The cache directory.
    pub cache_dir: PathBuf,
    /// Name of the cache stage under `<cache>/tmp`, if the bundle had cache files.
    pub cache_stage: Option<String>,
    /// Renames in order.
    pub moves: Vec<Move>,
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> HostError {
    let c = context.into();
    move |e| HostError::io(c, e)
}

/// Writes and commits the journal inside `stage` (the commit point).
pub fn commit(stage: &Dir, journal: &Journal) -> Result<(), HostError> {
    let bytes = serde_json::to_vec_pretty(journal)
        .map_err(|e| HostError::io("encoding journal", io::Error::other(e)))?;
    let tmp = format!("{JOURNAL}.tmp");
    let mut f = stage.create(&tmp).map_err(io_err("writing journal"))?;
    f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(io_err("writing journal"))?;
    drop(f);
    stage.rename(&tmp, stage, JOURNAL).map_err(io_err("committing journal"))?;
    sync_dir(stage).map_err(io_err("syncing stage"))
}

/// Reads a committed journal, if any.
pub fn read_journal(stage: &Dir) -> Result<Option<Journal>, HostError> {
    let mut f = match stage.open(JOURNAL) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(HostError::io("opening journal", e)),
    };
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(io_err("reading journal"))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| HostError::io("parsing journal", io::Error::other(e)))
}

fn exists(dir: &Dir, rel: &str) -> io::Result<bool> {
    match dir.symlink_metadata(rel) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Applies the journal's moves, skipping those already done. Returns how many renames ran.
pub fn apply(
    journal: &Journal,
    stage: &Dir,
    snapshots: &Dir,
    mut on_move: impl FnMut(usize),
) -> Result<usize, HostError> {
    let staged = match stage.open_dir(STAGED_SNAPSHOTS) {
        Ok(d) => Some(d),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(HostError::io("opening staged snapshots", e)),
    };
    let cache = match &journal.cache_stage {
        Some(name) => {
            let cache_dir = fsutil::open_dir(&journal.cache_dir)
                .map_err(io_err(format!("opening {}", shown(&journal.cache_dir))))?;
            let cstage = match cache_dir.open_dir(Path::new("tmp").join(name)) {
                Ok(d) => Some(d),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(HostError::io("opening cache stage", e)),
            };
            Some((cache_dir, cstage))
        }
        None => None,
    };
    let mut done = 0;
    let mut touched_kinds = Vec::new();
    for m in &journal.moves {
        let (src, dst) = match m.tree {
            Tree::Snapshots => (staged.as_ref(), snapshots),
            Tree::Cache => match &cache {
                Some((cache_dir, cstage)) => (cstage.as_ref(), cache_dir),
                None => continue,
            },
        };
        let Some(src) = src else { continue };
        if !exists(src, &m.from).map_err(io_err(format!("checking staged {}", m.from)))? {
            continue;
        }
        // A cache target `<kind>/<file>` is renamed into a handle of `<kind>` opened without
        // following a symlink, so nothing is ever written through a symlinked `cache/<kind>`.
        let mut kind_dir = None;
        let mut to = m.to.as_str();
        if m.tree == Tree::Cache {
            if let Some((kind, file)) = m.to.split_once('/') {
                match dst.create_dir(kind) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                        return Err(HostError::io(format!("creating cache/{kind}"), e))
                    }
                    _ => {}
                }
                let d = dst.open_dir_nofollow(kind).map_err(io_err(format!("opening cache/{kind}")))?;
                kind_dir = Some(d);
                to = file;
                if !touched_kinds.contains(&kind) {
                    touched_kinds.push(kind);
                }
            }
        }
        match rename_noreplace(src, &m.from, kind_dir.as_ref().unwrap_or(dst), to) {
            Ok(()) => {
                done += 1;
                on_move(done);
            }
            // Content-addressed names: whoever put it there put the same thing there.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(HostError::io(format!("promoting {}", m.to), e)),
        }
    }
    sync_dir(snapshots).map_err(io_err("syncing snapshots directory"))?;
    if let Some((cache_dir, _)) = &cache {
        for kind in touched_kinds {
            if let Ok(d) = cache_dir.open_dir(kind) {
                sync_dir(&d).map_err(io_err(format!("syncing cache/{kind}")))?;
            }
        }
    }
    Ok(done)
}

/// What recovery found.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Recovery {
    /// Stages of dead imports that had committed, rolled forward.
    pub rolled_forward: Vec<String>,
    /// Stages of dead imports that had not committed, removed.
    pub removed: Vec<String>,
    /// Stages of imports still running, left alone.
    pub running: Vec<String>,
}

/// Recovers every stale stage of the store. The caller holds the store lock.
pub fn recover(snapshots_path: &Path, snapshots: &Dir, cache_dir: &Path) -> Result<Recovery, HostError> {
    let mut rec = Recovery::default();
    let mut names = Vec::new();
    for entry in snapshots.entries().map_err(io_err(format!("listing {}", shown(snapshots_path))))? {
        let entry = entry.map_err(io_err("listing snapshots"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(STAGE_PREFIX) {
            names.push(name);
        }
    }
    names.sort();
    for name in names {
        let stage = match snapshots.open_dir(&name) {
            Ok(d) => d,
            Err(_) => continue,
        };
        let Some(stage_lock) = fsutil::try_lock(&stage).map_err(io_err(format!("locking {name}")))? else {
            rec.running.push(name);
            continue;
        };
        let token = name.trim_start_matches(STAGE_PREFIX);
        let cache_stage_name = format!("{CACHE_STAGE_PREFIX}{token}");
        match read_journal(&stage)? {
            Some(journal) => {
                apply(&journal, &stage, snapshots, |_| {})?;
                remove_cache_stage(&journal.cache_dir, &cache_stage_name)?;
                rec.rolled_forward.push(name.clone());
            }
            None => {
                remove_cache_stage(cache_dir, &cache_stage_name)?;
                rec.removed.push(name.clone());
            }
        }
        drop(stage);
        drop(stage_lock);
        remove_tree(snapshots, &name).map_err(io_err(format!("removing {name}")))?;
    }
    // Cache stages whose import died before creating (or after removing) its snapshot stage,
    // or whose snapshot stage lives in another directory: removed when nobody holds their lock.
    let tmp = cache_dir.join("tmp");
    if let Ok(tmp_dir) = fsutil::open_dir(&tmp) {
        // Importers create and lock their cache stages under this lock (see `stage.rs`).
        let _tmp_lock = fsutil::lock(&tmp_dir).map_err(io_err(format!("locking {}", shown(&tmp))))?;
        for entry in tmp_dir.entries().map_err(io_err(format!("listing {}", shown(&tmp))))? {
            let entry = entry.map_err(io_err("listing cache tmp"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(CACHE_STAGE_PREFIX) {
                continue;
            }
            let token = name.trim_start_matches(CACHE_STAGE_PREFIX);
            if snapshots.symlink_metadata(format!("{STAGE_PREFIX}{token}")).is_ok() {
                continue;
            }
            let Ok(d) = tmp_dir.open_dir(&name) else { continue };
            if let Some(l) = fsutil::try_lock(&d).map_err(io_err(format!("locking {name}")))? {
                drop(d);
                drop(l);
                remove_tree(&tmp_dir, &name).map_err(io_err(format!("removing {name}")))?;
                rec.removed.push(format!("cache/tmp/{name}"));
            } else {
                rec.running.push(format!("cache/tmp/{name}"));
            }
        }
    }
    Ok(rec)
}

fn remove_cache_stage(cache_dir: &Path, name: &str) -> Result<(), HostError> {
    let tmp = cache_dir.join("tmp");
    match fsutil::open_dir(&tmp) {
        Ok(d) => remove_tree(&d, name).map_err(io_err(format!("removing cache stage {name}"))),
        Err(_) => Ok(()),
    }
}
