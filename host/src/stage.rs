//! The stager: writes each member the core hands out beneath staging directory handles.
//!
//! Snapshot members go to `<stage>/snapshots/<prefix>/<file>`, cache members to
//! `<cache>/tmp/snapbundle-import-<token>/<kind>/<file>` (created on the first cache member, on
//! the cache's filesystem so that promotion is a rename). Every file is created with
//! `create_new` through a cap-std [`Dir`], so no path string and no symlink can redirect a write.
//! Holes the core reports are skipped, so sparse uppers stay sparse; the final length is set
//! with `set_len`. Writeback of written ranges starts while later data arrives
//! ([`crate::writeback`]); each finished file is fsynced and gets the header's mtime (0 becomes
//! 1, as in 0.6.2); modes are not applied (0.6.2 does not either).

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use cap_std::fs::{Dir, OpenOptions};
use snapbundle_core::names::Slot;
use snapbundle_core::{Event, Sink, Stop};

use crate::error::{shown, HostError};
use crate::fsutil::{self, Created};
use crate::verified::FileState;
use crate::writeback::Writeback;

/// Name prefix of cache staging directories under `<cache>/tmp`.
pub const CACHE_STAGE_PREFIX: &str = "snapbundle-import-";

/// Where the cache stage goes, created on demand.
#[derive(Debug)]
pub struct CacheStage {
    /// `<cache>` directory path.
    pub cache_dir: PathBuf,
    /// Staging directory name under `<cache>/tmp`.
    pub name: String,
    /// The open stage, once created.
    pub dir: Option<Dir>,
    /// Held while the import runs, so recovery never removes a live cache stage.
    pub lock: Option<fsutil::DirLock>,
}

impl CacheStage {
    /// `<cache>/tmp/<name>`.
    pub fn path(&self) -> PathBuf {
        self.cache_dir.join("tmp").join(&self.name)
    }
}

struct OpenFile {
    file: File,
    path: String,
    mtime: u64,
    cache: bool,
    writeback: Writeback,
}

/// A [`Sink`] that stages files.
pub struct Stager<'a> {
    snapshots: &'a Dir,
    cache: &'a mut CacheStage,
    created: &'a mut Created,
    dirs: HashSet<String>,
    current: Option<OpenFile>,
    error: Option<HostError>,
    files: u64,
    states: Vec<(String, FileState)>,
}

impl<'a> Stager<'a> {
    /// A stager writing snapshots beneath `snapshots` and cache files into `cache`.
    pub fn new(snapshots: &'a Dir, cache: &'a mut CacheStage, created: &'a mut Created) -> Self {
        Stager {
            snapshots,
            cache,
            created,
            dirs: HashSet::new(),
            current: None,
            error: None,
            files: 0,
            states: Vec::new(),
        }
    }

    /// The state of every staged snapshot file (path relative to the stage) once it was
    /// written and synced: what a verification record may vouch for (see
    /// [`crate::verified`]).
    pub fn into_states(self) -> Vec<(String, FileState)> {
        self.states
    }

    /// The error that made the stager stop.
    pub fn take_error(&mut self) -> HostError {
        self.error.take().unwrap_or_else(|| HostError::Usage("staging stopped".into()))
    }

    /// Files staged so far.
    pub fn files(&self) -> u64 {
        self.files
    }

    fn fail(&mut self, context: String, e: io::Error) -> Stop {
        self.error = Some(HostError::io(context, e));
        Stop
    }

    fn cache_dir(&mut self) -> io::Result<&Dir> {
        if self.cache.dir.is_none() {
            let tmp = self.cache.cache_dir.join("tmp");
            fsutil::create_dirs(&tmp, self.created)?;
            let parent = fsutil::open_dir(&tmp)?;
            // Recovery sweeps `<cache>/tmp` under this lock (and removes every stage it can lock),
            // so the stage must never be visible there unlocked outside it.
            let tmp_lock = fsutil::lock(&parent)?;
            parent.create_dir(&self.cache.name)?;
            let dir = parent.open_dir(&self.cache.name)?;
            self.cache.lock = Some(fsutil::lock(&dir)?);
            drop(tmp_lock);
            self.cache.dir = Some(dir);
        }
        self.cache.dir.as_ref().ok_or_else(|| io::Error::other("cache stage missing"))
    }

    /// fsyncs every directory the stager created, and the stage roots, so that the entries of the
    /// (already fsynced) files are durable before the journal commits the import: a snapshot
    /// directory renamed into the store after a crash must hold every file.
    pub fn sync_dirs(&self) -> io::Result<()> {
        for key in &self.dirs {
            let (root, name) = match key.strip_prefix("cache/") {
                Some(kind) => match self.cache.dir.as_ref() {
                    Some(d) => (d, kind),
                    None => continue,
                },
                None => (self.snapshots, key.as_str()),
            };
            fsutil::sync_dir(&root.open_dir(name)?)?;
        }
        fsutil::sync_dir(self.snapshots)?;
        if let Some(d) = self.cache.dir.as_ref() {
            fsutil::sync_dir(d)?;
        }
        Ok(())
    }

    /// Returns the directory handle and relative path for a slot, creating parent directories.
    fn place(&mut self, slot: Slot<'_>) -> io::Result<Option<(bool, String)>> {
        let (cache, dir, file) = match slot {
            Slot::SnapshotDir { prefix } => (false, prefix.to_string(), None),
            Slot::SnapshotFile { prefix, file } => (false, prefix.to_string(), Some(file)),
            Slot::CacheRoot => {
                self.cache_dir()?;
                return Ok(None);
            }
            Slot::CacheDir { kind } => (true, kind.as_str().to_string(), None),
            Slot::CacheFile { kind, file } => (true, kind.as_str().to_string(), Some(file)),
            // A 0.7 archive is imported through its 0.6.2 conversion, never staged as it is.
            Slot::Msb { .. } => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "a .msb member cannot be staged as it is",
                ))
            }
        };
        let key = format!("{}{dir}", if cache { "cache/" } else { "" });
        if !self.dirs.contains(&key) {
            let parent = if cache { self.cache_dir()? } else { self.snapshots };
            parent.create_dir(&dir)?;
            self.dirs.insert(key);
        }
        Ok(file.map(|f| (cache, format!("{dir}/{f}"))))
    }

    fn handle(&mut self, event: Event<'_>) -> Result<(), Stop> {
        match event {
            Event::Member(m) => {
                let placed = self.place(m.slot).map_err(|e| self.fail(format!("staging {}", m.path), e))?;
                if let Some((cache, rel)) = placed {
                    let dir = if cache { self.cache.dir.as_ref().ok_or(Stop)? } else { self.snapshots };
                    let mut opts = OpenOptions::new();
                    opts.write(true).create_new(true);
                    let file = dir
                        .open_with(&rel, &opts)
                        .map_err(|e| self.fail(format!("creating staged {rel}"), e))?;
                    let file = file.into_std();
                    let writeback = Writeback::default();
                    self.current = Some(OpenFile { file, path: rel, mtime: m.mtime, cache, writeback });
                }
                Ok(())
            }
            Event::Data { offset, bytes } => {
                let Some(cur) = self.current.as_mut() else { return Ok(()) };
                match cur.file.write_all_at(bytes, offset) {
                    Ok(()) => {
                        let end = offset.saturating_add(bytes.len() as u64);
                        cur.writeback.written(&cur.file, end);
                        Ok(())
                    }
                    Err(e) => {
                        let path = cur.path.clone();
                        Err(self.fail(format!("writing staged {path}"), e))
                    }
                }
            }
            Event::Hole { .. } => Ok(()),
            Event::FileEnd { size, .. } => {
                let Some(cur) = self.current.take() else { return Ok(()) };
                let mtime = UNIX_EPOCH + Duration::from_secs(cur.mtime.max(1));
                let r = cur
                    .file
                    .set_len(size)
                    .and_then(|()| cur.file.set_modified(mtime))
                    .and_then(|()| cur.file.sync_all())
                    .and_then(|()| cur.file.metadata());
                self.files += 1;
                if let Some(state) = r.as_ref().ok().filter(|_| !cur.cache).and_then(FileState::of) {
                    self.states.push((cur.path.clone(), state));
                }
                crate::crash::point("decode");
                r.map(|_| ()).map_err(|e| self.fail(format!("finishing staged {}", cur.path), e))
            }
        }
    }
}

impl Sink for Stager<'_> {
    fn event(&mut self, event: Event<'_>) -> Result<(), Stop> {
        self.handle(event)
    }
}

/// Removes a directory tree beneath `parent`, ignoring a missing one.
pub fn remove_tree(parent: &Dir, name: &str) -> io::Result<()> {
    match parent.remove_dir_all(name) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Removes a directory tree by path, ignoring a missing one.
pub fn remove_path(path: &Path) -> Result<(), HostError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(HostError::io(format!("removing {}", shown(path)), e))
        }
        _ => Ok(()),
    }
}
