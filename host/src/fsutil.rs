//! Small filesystem helpers shared by import, export and recovery.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use cap_std::fs::Dir;
use rustix::fs::{FlockOperation, RenameFlags};

/// Directories created by [`create_dirs`], removed again by [`Created::undo`] when an operation
/// fails, so a rejected bundle leaves no trace.
#[derive(Debug, Default)]
pub struct Created(Vec<PathBuf>);

impl Created {
    /// Removes the created directories that are still empty, deepest first.
    pub fn undo(&mut self) {
        for d in self.0.drain(..).rev() {
            let _ = std::fs::remove_dir(d);
        }
    }

    /// Forgets the directories (they stay).
    pub fn keep(&mut self) {
        self.0.clear();
    }
}

/// `create_dir_all` that records every directory it creates.
pub fn create_dirs(path: &Path, created: &mut Created) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(path);
    while let Some(p) = cur {
        if std::fs::symlink_metadata(p).is_ok() {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent().filter(|x| !x.as_os_str().is_empty());
    }
    for p in missing.into_iter().rev() {
        match std::fs::create_dir(&p) {
            Ok(()) => created.0.push(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Opens a directory by path (following symlinks in it, as the user's own configuration may).
pub fn open_dir(path: &Path) -> io::Result<Dir> {
    Dir::open_ambient_dir(path, cap_std::ambient_authority())
}

/// An exclusive `flock` on a directory, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DirLock(#[allow(dead_code)] OwnedFd);

fn read_fd(dir: &Dir) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        ".",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?)
}

/// Takes an exclusive `flock` on a directory, waiting for it.
pub fn lock(dir: &Dir) -> io::Result<DirLock> {
    let fd = read_fd(dir)?;
    rustix::fs::flock(&fd, FlockOperation::LockExclusive)?;
    Ok(DirLock(fd))
}

/// Tries an exclusive `flock` without waiting; `None` when another process holds it.
pub fn try_lock(dir: &Dir) -> io::Result<Option<DirLock>> {
    let fd = read_fd(dir)?;
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(DirLock(fd))),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `renameat2(RENAME_NOREPLACE)` between two directory handles: fails with `AlreadyExists`
/// instead of replacing a target that appeared since it was checked.
pub fn rename_noreplace(from_dir: &Dir, from: &str, to_dir: &Dir, to: &str) -> io::Result<()> {
    rustix::fs::renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE).map_err(io::Error::from)
}

/// fsyncs a directory so renames and creations in it are durable.
pub fn sync_dir(dir: &Dir) -> io::Result<()> {
    File::from(read_fd(dir)?).sync_all()
}

/// A random token for staging names.
pub fn token() -> String {
    let mut b = [0u8; 8];
    let t =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let seed = t ^ (u128::from(std::process::id()) << 64);
    let mut x = (seed as u64) ^ ((seed >> 64) as u64) ^ 0x9e37_79b9_7f4a_7c15;
    for v in b.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *v = x as u8;
    }
    snapbundle_core::hex::encode(&b)
}
