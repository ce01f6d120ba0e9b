//! Verification records: proof that an upper's recorded integrity was checked, tied to the
//! exact file state it was checked in, so that `export` need not hash the same unchanged bytes
//! again.
//!
//! Verifying an 8 GiB upper means hashing 8 GiB of logical bytes (holes as zeros), whatever the
//! file holds. When snapbundle has verified an upper in full (an import that wrote it, a
//! `verify` of the snapshot, an export that hashed it), it writes a record under
//! `<home>/cache/snapbundle/verified/<st_dev>-<st_ino>.json` with the file's path, size, mtime,
//! ctime, the algorithm and the digest. A later export trusts the record, and skips hashing,
//! only if the file's current `stat` matches every field and the manifest still names the same
//! algorithm and digest; `export --rehash` ignores records.
//!
//! Why a matching `stat` is enough: every write, truncation, `chmod` or `utimes` sets the
//! inode's ctime to the current time, and no system call sets ctime to a chosen value (only
//! changing the system clock or editing the filesystem offline does). The one race is a change
//! within the same timestamp tick as the state that was recorded (timestamps are taken from a
//! coarse clock). A record is therefore written only when its file's ctime is at least
//! [`RACY_MARGIN`] older than the clock read before the final `stat`, waiting out the rest of
//! the margin if needed (as git does with its "racily clean" entries): any change after that
//! `stat` gets a newer ctime. A record is an optimisation: a missing, unreadable, stale or
//! malformed record only means the upper is hashed again, and writing one is best effort.
//!
//! What a record does not cover: corruption below the filesystem (bit rot) that leaves the
//! inode untouched. `snapbundle verify <snapshot>` always hashes, and so does `export --rehash`.

use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::home::Home;
use crate::publish::{is_temp_name, publish};

/// How much older than the clock a file's ctime must be for its state to be recorded: two
/// ticks of the coarsest kernel clock that stamps ctimes (`HZ` is at least 100, so a tick is at
/// most 10 ms, and the coarse clock lags the fine one by less than a tick). A change after the
/// final `stat` then always gets a later ctime. Every import waits out what is left of it after
/// the upper's last change, so it is no larger than it needs to be.
pub const RACY_MARGIN: Duration = Duration::from_millis(20);

/// Largest record file read back (records are a few hundred bytes).
const MAX_RECORD: u64 = 4096;

/// The record format's version.
const VERSION: u32 = 1;

/// The `stat` fields a record is tied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// Apparent size.
    pub size: u64,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// Status change time, seconds and nanoseconds.
    pub ctime: (i64, i64),
}

impl FileState {
    /// The state of a regular file, from its metadata (`None` for anything else).
    pub fn of(md: &Metadata) -> Option<FileState> {
        md.is_file().then(|| FileState {
            dev: md.dev(),
            ino: md.ino(),
            size: md.len(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        })
    }

    /// The state of the regular file at `path` now (symlinks not followed), if there is one.
    pub fn at(path: &Path) -> Option<FileState> {
        FileState::of(&fs::symlink_metadata(path).ok()?)
    }
}

/// One verification record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Format version (1).
    pub version: u32,
    /// The file that was verified (informational, and for pruning).
    pub path: PathBuf,
    /// Its state when it was verified.
    pub state: FileState,
    /// The integrity algorithm, as the manifest names it.
    pub algorithm: String,
    /// The digest that was computed and matched the manifest.
    pub digest: String,
    /// The clock, read before the final `stat` of the file.
    pub verified_at: (i64, u32),
}

impl Record {
    /// Whether the record vouches for a file now in `state` whose manifest records
    /// `algorithm` and `digest`: every field equal, and the ctime older than the moment of
    /// verification by the margin.
    pub fn vouches_for(&self, state: &FileState, algorithm: &str, digest: &str) -> bool {
        self.version == VERSION
            && self.state == *state
            && self.algorithm == algorithm
            && self.digest == digest
            && settled(self.state.ctime, self.verified_at)
    }
}

/// Whether `ctime` is at least [`RACY_MARGIN`] before `at` (seconds, nanoseconds).
pub(crate) fn settled(ctime: (i64, i64), at: (i64, u32)) -> bool {
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    ns(at.0, i64::from(at.1)) - ns(ctime.0, ctime.1) >= RACY_MARGIN.as_nanos() as i128
}

/// How long until `ctime` is settled at clock `at`: the rest of [`RACY_MARGIN`] (a whole one if
/// the ctime is ahead of the clock), plus a millisecond for the clock's own step.
fn rest_of_margin(ctime: (i64, i64), at: (i64, u32)) -> Duration {
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    let age = ns(at.0, i64::from(at.1)) - ns(ctime.0, ctime.1);
    let margin = RACY_MARGIN.as_nanos() as i128;
    let rest = if age < 0 { margin } else { margin.saturating_sub(age).max(0) };
    Duration::from_nanos(u64::try_from(rest).unwrap_or(0)) + Duration::from_millis(1)
}

fn now() -> (i64, u32) {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => (i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos()),
        Err(_) => (0, 0),
    }
}

/// The JSON record stored at `path`, if it can be read (at most [`MAX_RECORD`] bytes) and
/// parses.
pub(crate) fn read_json<R: serde::de::DeserializeOwned>(path: &Path) -> Option<R> {
    let mut bytes = Vec::new();
    File::open(path).ok()?.take(MAX_RECORD).read_to_end(&mut bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The verification records of one microsandbox home.
#[derive(Debug, Clone)]
pub struct Records {
    dir: RecordDir,
}

impl Records {
    /// The records of `home` (`<home>/cache/snapbundle/verified`).
    pub fn of(home: &Home) -> Records {
        Records { dir: RecordDir::of(home, "verified") }
    }

    /// The directory the records live in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The record for the file in `state`, if one exists and parses.
    pub fn get(&self, state: &FileState) -> Option<Record> {
        self.dir.read(state)
    }

    /// Whether a record vouches for `file` (opened, in the state `md`) carrying `algorithm`
    /// and `digest`.
    pub fn vouches_for(&self, md: &Metadata, algorithm: &str, digest: &str) -> bool {
        let Some(state) = FileState::of(md) else { return false };
        self.get(&state).is_some_and(|r| r.vouches_for(&state, algorithm, digest))
    }

    /// Records that `file` (at `path`) was verified against `algorithm` / `digest` while it was
    /// in the state `verified`, the state seen before hashing began and still seen after it
    /// ended. Re-reads the state: if the file changed, nothing is recorded. Waits at most
    /// [`RACY_MARGIN`] so that the ctime is settled. Returns whether a record was written.
    pub fn record(
        &self,
        file: &File,
        path: &Path,
        verified: &FileState,
        algorithm: &str,
        digest: &str,
    ) -> io::Result<bool> {
        let Some(at) = settle(file, verified)? else { return Ok(false) };
        let record = Record {
            version: VERSION,
            path: path.to_path_buf(),
            state: *verified,
            algorithm: algorithm.to_string(),
            digest: digest.to_string(),
            verified_at: at,
        };
        self.dir.write(verified, &record)?;
        Ok(true)
    }

    /// Removes records that no longer vouch for anything: the file at their path is gone or
    /// changed, or the record does not parse. Returns how many were removed.
    pub fn prune(&self) -> io::Result<usize> {
        self.dir.prune::<Record>()
    }
}

/// Waits until the ctime of `file`, recorded as `state`, is settled ([`RACY_MARGIN`] older
/// than the clock; only the rest of the margin, at most one margin), then re-reads its state:
/// the clock reading to store with a record of `state`, or `None` if the file changed or its
/// ctime is in the future.
pub(crate) fn settle(file: &File, state: &FileState) -> io::Result<Option<(i64, u32)>> {
    let mut at = now();
    if !settled(state.ctime, at) {
        std::thread::sleep(rest_of_margin(state.ctime, at));
        at = now();
    }
    let current = file.metadata()?;
    Ok((FileState::of(&current).as_ref() == Some(state) && settled(state.ctime, at)).then_some(at))
}

/// What a record is about: a file's path and the state it was in.
pub(crate) trait AboutFile {
    /// The file and its recorded state.
    fn about(&self) -> (&Path, &FileState);
}

impl AboutFile for Record {
    fn about(&self) -> (&Path, &FileState) {
        (&self.path, &self.state)
    }
}

/// How old a temporary record file must be before [`RecordDir::prune`] takes it for a leftover
/// of a killed writer (a live writer renames its file into place within milliseconds).
const LEFTOVER_AGE: Duration = Duration::from_secs(3600);

/// A directory of per-file records (these, and [`crate::registry::known`]'s), each named
/// `<st_dev>-<st_ino>.json` after the file it is about.
#[derive(Debug, Clone)]
pub(crate) struct RecordDir {
    dir: PathBuf,
}

impl RecordDir {
    /// `<home>/cache/snapbundle/<name>`.
    pub(crate) fn of(home: &Home, name: &str) -> RecordDir {
        RecordDir { dir: home.cache.join("snapbundle").join(name) }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    fn path_for(&self, state: &FileState) -> PathBuf {
        self.dir.join(format!("{}-{}.json", state.dev, state.ino))
    }

    /// The record of the file in `state`, if one exists and parses.
    pub(crate) fn read<R: serde::de::DeserializeOwned>(&self, state: &FileState) -> Option<R> {
        read_json(&self.path_for(state))
    }

    /// Writes the record of the file in `state` atomically ([`publish`]: readable by the user
    /// only).
    pub(crate) fn write<R: Serialize>(&self, state: &FileState, record: &R) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let json = serde_json::to_vec(record).map_err(io::Error::other)?;
        publish(&self.path_for(state), 0o600, |f| f.write_all(&json))
    }

    /// Removes the records that no longer vouch for anything (unreadable, stored under another
    /// file's name, or their file gone or changed) and temporary files older than
    /// [`LEFTOVER_AGE`]; returns how many were removed. Safe beside running writers: their
    /// fresh temporary files are left alone, and a file that vanished meanwhile (renamed into
    /// place or removed by another gc) is not an error.
    pub(crate) fn prune<R: serde::de::DeserializeOwned + AboutFile>(&self) -> io::Result<usize> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // `.record-*`: the temporary files of earlier versions.
            let stale = if is_temp_name(name) || name.starts_with(".record-") {
                let age =
                    entry.metadata().ok().and_then(|md| md.modified().ok()).and_then(|m| m.elapsed().ok());
                age.is_some_and(|a| a >= LEFTOVER_AGE)
            } else if name.ends_with(".json") {
                let path = entry.path();
                !read_json::<R>(&path).is_some_and(|r| {
                    let (file, state) = r.about();
                    self.path_for(state) == path && FileState::at(file).as_ref() == Some(state)
                })
            } else {
                false
            };
            if stale {
                match fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(ctime: (i64, i64)) -> FileState {
        FileState { dev: 1, ino: 2, size: 3, mtime: (4, 5), ctime }
    }

    fn record(ctime: (i64, i64), at: (i64, u32)) -> Record {
        Record {
            version: VERSION,
            path: "/x".into(),
            state: state(ctime),
            algorithm: "sha256".into(),
            digest: "sha256:ab".into(),
            verified_at: at,
        }
    }

    #[test]
    fn a_record_vouches_only_for_the_same_state_algorithm_and_digest() {
        let r = record((100, 0), (101, 0));
        assert!(r.vouches_for(&state((100, 0)), "sha256", "sha256:ab"));
        assert!(!r.vouches_for(&state((100, 1)), "sha256", "sha256:ab"), "ctime differs");
        assert!(!r.vouches_for(&FileState { size: 4, ..state((100, 0)) }, "sha256", "sha256:ab"));
        assert!(!r.vouches_for(&FileState { mtime: (4, 6), ..state((100, 0)) }, "sha256", "sha256:ab"));
        assert!(!r.vouches_for(&FileState { ino: 9, ..state((100, 0)) }, "sha256", "sha256:ab"));
        assert!(!r.vouches_for(&state((100, 0)), "msb-sparse-sha256-v1", "sha256:ab"));
        assert!(!r.vouches_for(&state((100, 0)), "sha256", "sha256:cd"));
        assert!(!Record { version: 2, ..r }.vouches_for(&state((100, 0)), "sha256", "sha256:ab"));
    }

    #[test]
    fn a_racily_recent_ctime_is_not_trusted() {
        // Verified 19 ms after the last change: a change in the same clock tick could hide.
        let racy = record((100, 981_000_000), (101, 0));
        assert!(!racy.vouches_for(&state((100, 981_000_000)), "sha256", "sha256:ab"));
        let settled = record((100, 980_000_000), (101, 0));
        assert!(settled.vouches_for(&state((100, 980_000_000)), "sha256", "sha256:ab"));
        // Waiting: the rest of the margin only, a whole one for a ctime ahead of the clock.
        let ms = Duration::from_millis;
        assert_eq!(rest_of_margin((100, 995_000_000), (101, 0)), RACY_MARGIN - ms(5) + ms(1));
        assert_eq!(rest_of_margin((100, 0), (101, 0)), ms(1));
        assert_eq!(rest_of_margin((102, 0), (101, 0)), RACY_MARGIN + ms(1));
        // A clock behind the ctime (stepped back) never vouches.
        let behind = record((200, 0), (101, 0));
        assert!(!behind.vouches_for(&state((200, 0)), "sha256", "sha256:ab"));
    }

    #[test]
    fn pruning_removes_old_temporary_files_but_not_a_running_writers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fresh = dir.path().join(".1-2.json.a1b2c3.snapbundle-tmp");
        let old = dir.path().join(".1-2.json.d4e5f6.snapbundle-tmp");
        let older_version = dir.path().join(".record-old");
        let other = dir.path().join("notes.txt");
        for p in [&fresh, &old, &older_version, &other] {
            fs::write(p, b"{").expect("write");
        }
        let aged = std::time::SystemTime::now() - LEFTOVER_AGE - Duration::from_secs(1);
        for p in [&old, &older_version] {
            fs::File::options().write(true).open(p).and_then(|f| f.set_modified(aged)).expect("age");
        }
        let removed = RecordDir { dir: dir.path().to_path_buf() }.prune::<Record>().expect("prune");
        assert_eq!(removed, 2);
        assert!(fresh.exists() && other.exists() && !old.exists() && !older_version.exists());
    }
}
