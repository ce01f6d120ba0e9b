//! Putting a file in place atomically: the one way snapbundle publishes a file (bundles written
//! by `export` and `pull -o`, the records under `<home>/cache/snapbundle/`, the sandbox's
//! compiled component).
//!
//! [`publish`] creates a temporary file beside the target, named
//! `.<target name>.<random>.snapbundle-tmp` (see [`is_temp_name`], so that a cleanup can find
//! what a killed process left), lets the caller write it, fsyncs it, renames it over the target
//! and fsyncs the directory. A reader sees the old file or the whole new one, never a part, and
//! once `publish` returns the new file survives a crash. On any failure the temporary file is
//! removed and the target is left as it was; the error names the path.

use std::ffi::OsString;
use std::fmt;
use std::fs::{File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{shown, HostError};
use crate::fsutil::{create_dirs, Created};
use crate::writeback::WritebackFile;

/// The temporary files [`publish`] is writing right now: what [`remove_pending`] removes when the
/// process is interrupted (a signal ends it without running destructors).
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Keeps a temporary file in [`PENDING`] for as long as it lives.
struct Pending(PathBuf);

impl Pending {
    fn new(path: &Path) -> Pending {
        if let Ok(mut p) = PENDING.lock() {
            p.push(path.to_path_buf());
        }
        Pending(path.to_path_buf())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Ok(mut p) = PENDING.lock() {
            p.retain(|q| q != &self.0);
        }
    }
}

/// Removes the temporary files of every [`publish`] in progress; returns how many it removed.
/// For a signal handler that is about to end the process: after it, those publishes fail.
pub fn remove_pending() -> usize {
    let Ok(pending) = PENDING.lock() else { return 0 };
    pending.iter().filter(|p| std::fs::remove_file(p).is_ok()).count()
}

/// The suffix of every temporary file [`publish`] creates.
pub const TEMP_SUFFIX: &str = ".snapbundle-tmp";

/// Whether `name` (a file name, not a path) is one of [`publish`]'s temporary files:
/// `.<target name>.<random>.snapbundle-tmp`.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

/// A step of [`publish`] that failed, with the path it concerned.
#[derive(Debug)]
pub struct PublishError {
    /// What was being done, naming the path (e.g. "syncing directory /x").
    pub context: String,
    /// The underlying error.
    pub source: io::Error,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl std::error::Error for PublishError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl From<PublishError> for HostError {
    fn from(e: PublishError) -> Self {
        HostError::io(e.context, e.source)
    }
}

impl From<PublishError> for io::Error {
    fn from(e: PublishError) -> Self {
        io::Error::new(e.source.kind(), e.to_string())
    }
}

fn failed(context: String) -> impl FnOnce(io::Error) -> PublishError {
    move |source| PublishError { context, source }
}

/// The directory `path` is in (`.` for a bare file name).
pub fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `path` atomically: `write` fills a new temporary file beside it (created with
/// permissions `mode`, less the umask), which is then fsynced, renamed over `path` and made
/// durable by fsyncing the directory. The directory must exist.
///
/// An error of `write` is returned as it is; the steps around it fail with a [`PublishError`]
/// converted into `E`. Either way the temporary file is gone and `path` untouched.
pub fn publish<T, E: From<PublishError>>(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut File) -> Result<T, E>,
) -> Result<T, E> {
    publish_in(path, mode, None, write)
}

/// [`publish`] for an output outside the home (`export -o`, `pull -o`): while the temporary file
/// exists, `journal` names it, so that `snapbundle gc` can remove it after a process that was
/// killed outright (SIGKILL, a crash) left it ([`OutputJournal::gc`]).
pub fn publish_output<T, E: From<PublishError>>(
    path: &Path,
    mode: u32,
    journal: &OutputJournal,
    write: impl FnOnce(&mut File) -> Result<T, E>,
) -> Result<T, E> {
    publish_in(path, mode, Some(journal), write)
}

/// The directory an output file at `path` goes in, once `path` names a file that is not a
/// directory (a usage error otherwise).
pub fn output_parent(path: &Path) -> Result<PathBuf, HostError> {
    if path.file_name().is_none() {
        return Err(HostError::Usage(format!("the output path {} does not name a file", shown(path))));
    }
    if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(HostError::Usage(format!("the output path {} is a directory", shown(path))));
    }
    Ok(parent_of(path))
}

/// An output file (`export -o`, `convert -o`, `pull -o`): checked with [`output_parent`], its
/// missing directories created, then written as [`publish_output`] does (as [`publish`] without
/// a journal), front to back with early writeback. The directories it created are removed again
/// when the write fails.
pub fn publish_new_output<T>(
    path: &Path,
    mode: u32,
    journal: Option<&OutputJournal>,
    write: impl FnOnce(&mut WritebackFile<'_>) -> Result<T, HostError>,
) -> Result<T, HostError> {
    let parent = output_parent(path)?;
    let mut created = Created::default();
    create_dirs(&parent, &mut created)
        .map_err(|e| HostError::io(format!("creating {}", shown(&parent)), e))?;
    let r = publish_in(path, mode, journal, |file| write(&mut WritebackFile::new(file)));
    match r {
        Ok(_) => created.keep(),
        Err(_) => created.undo(),
    }
    r
}

fn publish_in<T, E: From<PublishError>>(
    path: &Path,
    mode: u32,
    journal: Option<&OutputJournal>,
    write: impl FnOnce(&mut File) -> Result<T, E>,
) -> Result<T, E> {
    let Some(file_name) = path.file_name() else {
        return Err(PublishError {
            context: format!("writing {}", shown(path)),
            source: io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file"),
        }
        .into());
    };
    let parent = parent_of(path);
    let mut prefix = OsString::from(".");
    prefix.push(file_name);
    prefix.push(".");
    // Removed when dropped, i.e. on every path that does not rename it.
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(TEMP_SUFFIX)
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(&parent)
        .map_err(failed(format!("creating a temporary file in {}", shown(&parent))))?;
    let pending = Pending::new(tmp.path());
    let _entry = match journal {
        Some(j) => Some(j.enter(tmp.path())?),
        None => None,
    };
    let value = write(tmp.as_file_mut())?;
    tmp.as_file().sync_all().map_err(failed(format!("syncing {}", shown(tmp.path()))))?;
    tmp.persist(path).map_err(|e| PublishError {
        context: format!("renaming {} to {}", shown(e.file.path()), shown(path)),
        source: e.error,
    })?;
    drop(pending);
    sync_dir(&parent)?;
    Ok(value)
}

/// Ends the process on SIGINT, SIGTERM or SIGHUP with status 128 + the signal's number, after
/// removing the temporary files of the publishes in progress ([`remove_pending`]), so that an
/// interrupted `export -o FILE` or `pull -o FILE` leaves nothing beside its output. (Import
/// staging and pull's `.part` files are left as a crash leaves them: `snapbundle gc` and the next
/// pull take care of those.) Call once, early in `main`.
pub fn remove_pending_on_signal() -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Some(signal) = signals.forever().next() {
            remove_pending();
            std::process::exit(128 + signal);
        }
    })?;
    Ok(())
}

/// Where a home notes the temporary files of outputs being published outside it:
/// `<home>/cache/snapbundle/outputs/<pid>.<random>`, each holding one temporary file's path.
#[derive(Debug, Clone)]
pub struct OutputJournal {
    dir: PathBuf,
}

/// One journal entry, removed when dropped (the publish is over, whichever way).
struct Entry(PathBuf);

impl Drop for Entry {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The most of an entry read (a path).
const MAX_ENTRY: u64 = 16 << 10;

impl OutputJournal {
    /// The journal of `home`.
    pub fn of(home: &crate::home::Home) -> OutputJournal {
        OutputJournal { dir: home.cache.join("snapbundle").join("outputs") }
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn enter(&self, temp: &Path) -> Result<Entry, PublishError> {
        let context = || format!("noting {} in {}", shown(temp), shown(&self.dir));
        std::fs::create_dir_all(&self.dir).map_err(failed(context()))?;
        let entry = tempfile::Builder::new()
            .prefix(&format!("{}.", std::process::id()))
            .tempfile_in(&self.dir)
            .map_err(failed(context()))?;
        let abs = std::path::absolute(temp).map_err(failed(context()))?;
        let (mut file, path) =
            entry.keep().map_err(|e| PublishError { context: context(), source: e.error })?;
        let entry = Entry(path);
        io::Write::write_all(&mut file, abs.as_os_str().as_encoded_bytes())
            .and_then(|()| file.sync_all())
            .map_err(failed(context()))?;
        Ok(entry)
    }

    /// Removes the temporary files that entries of processes no longer running name (only
    /// files named like [`publish`]'s temporaries), and those entries; entries of running
    /// processes are left alone. Returns how many temporary files it removed.
    pub fn gc(&self) -> io::Result<usize> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let pid = name.to_str().and_then(|n| n.split('.').next()).and_then(|p| p.parse::<i32>().ok());
            let alive = pid
                .and_then(rustix::process::Pid::from_raw)
                .is_some_and(|p| rustix::process::test_kill_process(p).is_ok());
            if alive {
                continue;
            }
            let mut text = Vec::new();
            if let Ok(f) = File::open(entry.path()) {
                let _ = io::Read::read_to_end(&mut io::Read::take(f, MAX_ENTRY), &mut text);
            }
            let temp = PathBuf::from(String::from_utf8_lossy(&text).into_owned());
            let ours = temp.file_name().and_then(|n| n.to_str()).is_some_and(is_temp_name);
            if ours && std::fs::remove_file(&temp).is_ok() {
                removed += 1;
            }
            // Another gc may have removed it meanwhile.
            match std::fs::remove_file(entry.path()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(removed)
    }
}

/// fsyncs the directory at `dir`, so that a rename in it is durable.
fn sync_dir(dir: &Path) -> Result<(), PublishError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(failed(format!("syncing directory {}", shown(dir))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_target_is_replaced_whole_and_no_temporary_file_stays() {
        let dir = tempfile::tempdir().expect("dir");
        let target = dir.path().join("out.bin");
        std::fs::write(&target, b"old").expect("write old");
        let old_ino = std::fs::metadata(&target).expect("stat").ino();
        let seen_during = publish(&target, 0o600, |f| -> io::Result<Vec<String>> {
            f.write_all(b"new contents")?;
            // While it is being written, the target still holds the old bytes and the
            // temporary file follows the documented pattern.
            assert_eq!(std::fs::read(&target)?, b"old");
            Ok(names(dir.path()))
        })
        .expect("publish");
        let tmp: Vec<&String> = seen_during.iter().filter(|n| *n != "out.bin").collect();
        assert_eq!(tmp.len(), 1, "{seen_during:?}");
        assert!(tmp.iter().all(|n| n.starts_with(".out.bin.") && is_temp_name(n)), "{tmp:?}");
        assert_eq!(std::fs::read(&target).expect("read"), b"new contents");
        assert_ne!(std::fs::metadata(&target).expect("stat").ino(), old_ino, "renamed, not rewritten");
        assert_eq!(std::fs::metadata(&target).expect("stat").mode() & 0o777, 0o600);
        assert_eq!(names(dir.path()), ["out.bin"]);
    }

    #[test]
    fn a_writer_error_leaves_the_target_and_no_temporary_file() {
        let dir = tempfile::tempdir().expect("dir");
        let target = dir.path().join("out.bin");
        std::fs::write(&target, b"old").expect("write old");
        let r = publish(&target, 0o644, |f| -> io::Result<()> {
            f.write_all(b"partial")?;
            Err(io::Error::other("the writer failed"))
        });
        assert_eq!(r.expect_err("writer error").to_string(), "the writer failed");
        assert_eq!(std::fs::read(&target).expect("read"), b"old");
        assert_eq!(names(dir.path()), ["out.bin"]);
        // A new target is not created either.
        let fresh = dir.path().join("new.bin");
        let r = publish(&fresh, 0o644, |_| Err::<(), _>(io::Error::other("no")));
        assert!(r.is_err());
        assert_eq!(names(dir.path()), ["out.bin"]);
    }

    #[test]
    fn the_directory_is_synced_and_its_failure_names_it() {
        let dir = tempfile::tempdir().expect("dir");
        assert!(sync_dir(dir.path()).is_ok());
        let gone = dir.path().join("gone");
        let e = sync_dir(&gone).expect_err("missing directory");
        assert_eq!(e.context, format!("syncing directory {}", shown(&gone)));
        assert_eq!(e.source.kind(), io::ErrorKind::NotFound);
        // And a publish into a missing directory fails naming that directory, creating nothing.
        let e = publish(&gone.join("f"), 0o600, |_| Ok::<(), PublishError>(())).expect_err("no directory");
        assert!(e.context.contains(&shown(&gone)), "{e}");
        assert!(!gone.exists());
    }

    #[test]
    fn temporary_names_are_recognised() {
        assert!(is_temp_name(".bundle.tar.zst.a1B2c3.snapbundle-tmp"));
        assert!(!is_temp_name("bundle.tar.zst"));
        assert!(!is_temp_name(".record-x"));
        assert!(!is_temp_name("x.snapbundle-tmp"));
    }
}
