//! Push's spool directories: `<home>/cache/snapbundle/tmp/push-XXXXXX/`, where a push keeps the
//! compressed blobs it is about to upload.
//!
//! A [`Spool`] holds an exclusive `flock` on its directory for its whole life and removes it
//! when dropped. A push that is killed cannot remove it, but its lock dies with the process, so
//! [`gc`] (run by `snapbundle gc`) removes every `push-*` directory whose lock it can take
//! without waiting, and leaves those of running pushes alone.
//!
//! Between creating its directory and locking it a new spool would look abandoned; so it holds
//! a shared `flock` on the `tmp` directory meanwhile, and [`gc`] takes that one exclusively
//! (waiting, the window is short) while it looks. Whoever takes a spool's lock after waiting
//! for it, or [`gc`] after finding it free, checks that the directory it locked is still the one
//! at the path before removing anything.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, Mode, OFlags};
use serde::Serialize;

use crate::error::{shown, HostError};
use crate::home::Home;

/// The prefix of a spool directory's name.
pub const PREFIX: &str = "push-";

/// Where the spool directories of `home` live: `<home>/cache/snapbundle/tmp`.
pub fn dir(home: &Home) -> PathBuf {
    home.cache.join("snapbundle").join("tmp")
}

/// A push's private spool directory, locked while the value lives and removed when dropped.
#[derive(Debug)]
pub struct Spool {
    // Dropped first: the directory is removed while the lock is still held.
    dir: tempfile::TempDir,
    _lock: OwnedFd,
}

impl Spool {
    /// Creates a fresh `push-XXXXXX` directory under [`dir`] (created if missing) and locks
    /// it.
    pub fn create(home: &Home) -> Result<Spool, HostError> {
        let parent = dir(home);
        let err = |what: &str, e: io::Error| HostError::io(format!("{what} {}", shown(&parent)), e);
        // A few tries: a pull finishing at the same moment may remove the empty
        // `cache/snapbundle` directory between our creating it and creating `tmp` in it.
        let mut tries = 0;
        let parent_lock = loop {
            tries += 1;
            let created = fs::create_dir_all(&parent);
            match (created, open_dir(&parent)) {
                (Ok(()), Ok(fd)) => break fd,
                (Err(e), _) | (Ok(()), Err(e)) if tries >= 3 || e.kind() != io::ErrorKind::NotFound => {
                    return Err(err("creating", e))
                }
                _ => {}
            }
        };
        rustix::fs::flock(&parent_lock, FlockOperation::LockShared).map_err(|e| err("locking", e.into()))?;
        let made = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(&parent)
            .map_err(|e| err("creating a spool directory in", e))?;
        let lock = open_dir(made.path())
            .and_then(|fd| {
                rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive)?;
                Ok(fd)
            })
            .map_err(|e| HostError::io(format!("locking the spool directory {}", shown(made.path())), e))?;
        drop(parent_lock);
        Ok(Spool { dir: made, _lock: lock })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// What [`gc`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SpoolGc {
    /// Spool directories of pushes that are gone (killed), removed.
    pub dirs_removed: usize,
    /// Bytes of the files they held.
    pub bytes_removed: u64,
    /// Spool directories of running pushes, left alone.
    pub in_use: usize,
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    Ok(rustix::fs::open(path, flags, Mode::empty())?)
}

/// Removes the `push-*` directories under [`dir`] that no live [`Spool`] holds (left by pushes
/// that were killed). Other names, and anything not a directory, are left alone.
pub fn gc(home: &Home) -> io::Result<SpoolGc> {
    let parent = dir(home);
    let mut out = SpoolGc::default();
    let parent_lock = match open_dir(&parent) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    // No spool is between its creation and its lock while we hold this.
    rustix::fs::flock(&parent_lock, FlockOperation::LockExclusive)?;
    for entry in fs::read_dir(&parent)? {
        let entry = entry?;
        let path = entry.path();
        let is_spool = entry.file_name().to_str().is_some_and(|n| n.starts_with(PREFIX));
        if !is_spool || !entry.file_type()?.is_dir() {
            continue;
        }
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", shown(&path)));
        let fd = match open_dir(&path) {
            Ok(fd) => fd,
            // Removed by its push meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(named(e)),
        };
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                out.in_use = out.in_use.saturating_add(1);
                continue;
            }
            Err(e) => return Err(named(e.into())),
        }
        let held = rustix::fs::fstat(&fd).map_err(|e| named(e.into()))?;
        match rustix::fs::lstat(&path) {
            Ok(now) if now.st_dev == held.st_dev && now.st_ino == held.st_ino => {}
            // Its push removed it (and maybe another took the name) while we locked it.
            Ok(_) | Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(named(e.into())),
        }
        let bytes = tree_bytes(&path).map_err(named)?;
        fs::remove_dir_all(&path).map_err(named)?;
        out.dirs_removed = out.dirs_removed.saturating_add(1);
        out.bytes_removed = out.bytes_removed.saturating_add(bytes);
    }
    Ok(out)
}

/// The sizes of the files under `dir` (symbolic links not followed).
fn tree_bytes(dir: &Path) -> io::Result<u64> {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> (tempfile::TempDir, Home) {
        let d = tempfile::tempdir().expect("temp home");
        let h = Home::at(d.path());
        (d, h)
    }

    #[test]
    fn a_spool_is_a_locked_push_directory_under_tmp_removed_when_dropped() {
        let (_d, home) = home();
        let spool = Spool::create(&home).expect("spool");
        let path = spool.path().to_path_buf();
        assert_eq!(path.parent(), Some(dir(&home).as_path()));
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(name.starts_with(PREFIX), "{name}");
        assert!(path.is_dir());
        let other = open_dir(&path).expect("open");
        assert_eq!(
            rustix::fs::flock(&other, FlockOperation::NonBlockingLockExclusive),
            Err(rustix::io::Errno::WOULDBLOCK),
            "the spool is not locked"
        );
        fs::write(path.join("0.zst"), b"spooled").expect("write");
        drop(spool);
        assert!(!path.exists(), "the spool stayed");
        assert!(rustix::fs::flock(&other, FlockOperation::NonBlockingLockExclusive).is_ok());
    }

    #[test]
    fn gc_without_a_tmp_directory_does_nothing() {
        let (d, home) = home();
        assert_eq!(gc(&home).expect("gc"), SpoolGc::default());
        assert!(fs::read_dir(d.path()).expect("read").next().is_none(), "gc created something");
    }

    #[test]
    fn tree_bytes_counts_files_in_subdirectories() {
        let d = tempfile::tempdir().expect("dir");
        fs::create_dir(d.path().join("sub")).expect("mkdir");
        fs::write(d.path().join("a"), [0u8; 3]).expect("write");
        fs::write(d.path().join("sub/b"), [0u8; 5]).expect("write");
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("link")).expect("symlink");
        assert_eq!(tree_bytes(d.path()).expect("bytes"), 8);
    }
}
