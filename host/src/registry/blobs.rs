//! The pull side's blob cache: `<home>/cache/snapbundle/blobs/sha256/<hex>`, a directory of
//! snapbundle's own beside microsandbox's cache kinds.
//!
//! A blob is downloaded into `<hex>.part` (resumed with a range request when a previous pull
//! was interrupted), hashed as its bytes arrive, and renamed to `<hex>` only when its sha256 is
//! the one it is named by; so a file named by a digest has been verified once. A blob that was
//! in the cache before (an earlier pull's, or one another pull fetched meanwhile) is hashed
//! again while the bundle is rebuilt from it, so a cache file changed on disk since is caught
//! too; one this pull downloaded itself was hashed as it was written, moments before, and is
//! read back from the page cache, so it is only counted (a second SHA-256 pass would check
//! those same pages against themselves). A blob whose bytes do not match (downloaded, or read
//! back from the cache) is deleted and fails the pull, naming it.
//!
//! Blobs are not fsynced: the cache only saves downloads, and a pull that succeeds removes its
//! blobs again, so syncing them would write every blob to disk just to discard it (on a
//! filesystem mounted with `discard`, each removal then also waits for the trim). A blob file a
//! crash left damaged fails that re-hash on its next use and is deleted, so the pull after
//! downloads it again.
//!
//! A running pull holds a shared `flock` on the `sha256` directory ([`BlobCache::hold`]) from
//! before its first download until it is done with its blobs; [`BlobCache::gc`] (run by
//! `snapbundle gc`) takes it exclusively without waiting, so it clears the cache (stale
//! `.part` files and verified blobs, kept by failed pulls for a resume, or left by pulls that
//! finished beside another one) only while no pull runs, and otherwise leaves it alone and says
//! so. The lock dies with its process, so a killed pull holds nothing. Whoever waited for the
//! lock checks that the directory it locked is still the one at the path (a finished pull
//! removes the empty directories) and otherwise starts over.
//!
//! Pulls into the same home may run at once and share blobs:
//!
//! - Only one of them downloads a blob: the downloader holds an exclusive `flock` on the
//!   `<hex>.part` file for as long as it writes it. Another pull that wants the same blob polls
//!   for the lock (without blocking its other downloads), and once it has it checks that the
//!   file it locked is still the one named `<hex>.part`; if it is not (the holder renamed it to
//!   `<hex>` when verified, or deleted it on a mismatch), it looks again: a verified blob is
//!   then taken from the cache ([`Fetched::Cached`]), and a missing one downloaded anew. A
//!   `.part` the holder gave up on (its pull failed) is resumed by the next one.
//! - A pull that has finished removes its blobs ([`BlobCache::finish`]) only if it can turn its
//!   shared lock into an exclusive one without waiting, that is when no other pull holds the
//!   cache (another pull may be reading the same blobs, or be about to find them cached). If
//!   one does, the finished pull leaves its blobs where they are: a later pull that finishes
//!   alone does not remove them (it removes only its own), but `snapbundle gc` does.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, Mode, OFlags};
use serde::Serialize;

use sha2::{Digest as _, Sha256};
use snapbundle_core::registry_artifact::Layer;

use crate::error::{shown, HostError, RegistryErrorCode};
use crate::home::Home;
use crate::progress::{ItemBar, Progress};
use crate::registry::client::Registry;
use crate::registry::fetch;
use crate::registry::http::{classify, error_text, Failure, RequestError};

/// The blob cache of a home.
#[derive(Debug, Clone)]
pub struct BlobCache {
    dir: PathBuf,
}

/// A running pull's shared lock on the blob cache ([`BlobCache::hold`]); released when dropped,
/// or ended by [`BlobCache::finish`].
#[derive(Debug)]
pub struct CacheHold(OwnedFd);

enum Lock {
    Held(OwnedFd),
    /// Another process holds it (non-blocking attempts only).
    Busy,
    /// The directory is not there (any more).
    Gone,
}

/// What [`BlobCache::gc`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CacheGc {
    /// Verified blobs removed.
    pub blobs_removed: usize,
    /// Partial downloads (`.part`) removed.
    pub parts_removed: usize,
    /// Bytes they held.
    pub bytes_removed: u64,
    /// A pull was running: the cache was left alone.
    pub in_use: bool,
}

/// How a blob got into the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// It was there already (an earlier, interrupted pull, or an earlier layer of the same
    /// artifact with the same blob).
    Cached,
    /// Downloaded whole.
    Downloaded,
    /// A partial download was resumed.
    Resumed,
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

impl BlobCache {
    /// The cache of `home`.
    pub fn new(home: &Home) -> BlobCache {
        BlobCache { dir: home.cache.join("snapbundle").join("blobs").join("sha256") }
    }

    /// Where a verified blob lives (`digest` is a checked `sha256:<64 hex>`).
    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(hex_of(digest))
    }

    fn part_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{}.part", hex_of(digest)))
    }

    /// Whether a verified blob of `size` bytes is in the cache.
    pub fn has(&self, digest: &str, size: u64) -> bool {
        fs::symlink_metadata(self.path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Removes a blob; a missing one is fine. Only for whoever knows that no pull needs it
    /// (a finishing pull goes through [`BlobCache::finish`]).
    pub fn remove(&self, digest: &str) {
        let _ = fs::remove_file(self.path(digest));
    }

    /// Ends a finished pull's `hold`: if no other pull holds the cache (the shared lock turns
    /// exclusive without waiting), removes the blobs named by `digests` and then the empty
    /// directories, and returns true; otherwise leaves them to `snapbundle gc` and returns
    /// false. Either way the hold is released.
    pub fn finish<'a>(&self, hold: CacheHold, digests: impl IntoIterator<Item = &'a str>) -> bool {
        // Linux gives up the shared lock when the conversion fails: the hold is over anyway.
        if rustix::fs::flock(&hold.0, FlockOperation::NonBlockingLockExclusive).is_err() {
            return false;
        }
        // Nobody removes the directory while we hold it shared, so the one locked is the one
        // at the path.
        for digest in digests {
            self.remove(digest);
        }
        self.remove_dirs_if_empty();
        drop(hold);
        true
    }

    /// Bytes the cache holds now (blobs and partial downloads; 0 if it does not exist).
    pub fn bytes(&self) -> u64 {
        let Ok(entries) = fs::read_dir(&self.dir) else { return 0 };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .fold(0u64, |sum, m| sum.saturating_add(m.len()))
    }

    /// Checks that `more` bytes of downloads fit: the cache would hold at most `quota` bytes
    /// (`None`: no cap of its own), and the filesystem has room for them. Refuses before
    /// anything is fetched, naming what is needed and what there is.
    pub fn check_room(&self, more: u64, quota: Option<u64>) -> Result<(), HostError> {
        if more == 0 {
            return Ok(());
        }
        let held = self.bytes();
        let full = |what: String| {
            HostError::io(
                format!("pulling into the blob cache {}", shown(&self.dir)),
                io::Error::new(io::ErrorKind::StorageFull, what),
            )
        };
        if let Some(q) = quota.filter(|q| held.saturating_add(more) > *q) {
            return Err(full(format!(
                "the pull needs {more} bytes of blobs and the cache holds {held}: over its quota of {q} bytes \
                 (--blob-cache-max-gib; `snapbundle gc` empties the cache)"
            )));
        }
        // The nearest existing ancestor: the cache directory may not exist yet.
        let existing = self.dir.ancestors().find(|d| d.exists()).unwrap_or(Path::new("/"));
        if let Ok(st) = rustix::fs::statvfs(existing) {
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            if more > free {
                return Err(full(format!(
                    "the pull needs {more} bytes of blobs and the filesystem has {free} free"
                )));
            }
        }
        Ok(())
    }

    /// The `sha256` directory the blobs live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes the cache's directories if they are empty (`sha256`, `blobs`, `snapbundle`) and
    /// no pull holds the cache.
    pub fn remove_empty_dirs(&self) {
        let Ok(Lock::Held(_held)) = self.lock(FlockOperation::NonBlockingLockExclusive) else { return };
        self.remove_dirs_if_empty();
    }

    /// With the cache locked exclusively: `sha256`, `blobs`, `snapbundle`, as long as each is
    /// empty.
    fn remove_dirs_if_empty(&self) {
        for dir in self.dir.ancestors().take(3) {
            if fs::remove_dir(dir).is_err() {
                return;
            }
        }
    }

    /// A running pull's hold on the cache (created if missing): a shared `flock` on its
    /// directory, released when dropped or when the process dies.
    pub fn hold(&self) -> io::Result<CacheHold> {
        loop {
            fs::create_dir_all(&self.dir)?;
            match self.lock(FlockOperation::LockShared)? {
                Lock::Held(fd) => return Ok(CacheHold(fd)),
                // Removed (or replaced) while we waited: once more, on the new one.
                Lock::Gone | Lock::Busy => continue,
            }
        }
    }

    fn lock(&self, op: FlockOperation) -> io::Result<Lock> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        match rustix::fs::open(&self.dir, flags, Mode::empty()) {
            Ok(fd) => lock_fd(fd, &self.dir, op),
            Err(rustix::io::Errno::NOENT) => Ok(Lock::Gone),
            Err(e) => Err(e.into()),
        }
    }

    /// Clears the cache unless a pull holds it: removes `<hex>.part` files (interrupted
    /// downloads) and verified blobs (`<hex>`), then the empty directories. Other names are
    /// left alone.
    pub fn gc(&self) -> io::Result<CacheGc> {
        let mut out = CacheGc::default();
        let _held = match self.lock(FlockOperation::NonBlockingLockExclusive)? {
            Lock::Held(fd) => fd,
            Lock::Gone => return Ok(out),
            Lock::Busy => {
                out.in_use = true;
                return Ok(out);
            }
        };
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let (hex, part) = match name.strip_suffix(".part") {
                Some(hex) => (hex, true),
                None => (name, false),
            };
            let is_digest = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            let meta = entry.metadata()?;
            if !is_digest || !meta.is_file() {
                continue;
            }
            fs::remove_file(entry.path())?;
            out.bytes_removed = out.bytes_removed.saturating_add(meta.len());
            if part {
                out.parts_removed += 1;
            } else {
                out.blobs_removed += 1;
            }
        }
        self.remove_dirs_if_empty();
        Ok(out)
    }

    /// Opens (creating it if missing) and locks `digest`'s `.part` file exclusively without
    /// waiting: `Held` when this caller is now its one downloader, `Busy` while another
    /// download holds it, `Gone` when the file locked is no longer the one at the path (renamed
    /// to the verified blob, or deleted, while the lock was being taken).
    fn lock_part(&self, digest: &str) -> io::Result<(Lock, PathBuf)> {
        let part = self.part_path(digest);
        let fd = open_part(&part)?;
        Ok((lock_fd(fd, &part, FlockOperation::NonBlockingLockExclusive)?, part))
    }

    /// Downloads `layer`'s blob into the cache unless it is there; see the module docs.
    pub(crate) async fn fetch(
        &self,
        reg: &Registry,
        layer: &Layer,
        progress: &Progress,
    ) -> Result<Fetched, HostError> {
        // The one downloader of this blob, or the blob verified by another pull (module docs).
        let mut looked = false;
        let (mut file, part) = loop {
            if self.has(&layer.digest, layer.size) {
                if looked {
                    // Another pull fetched it meanwhile: its share of the bar is done.
                    progress.inc(layer.size);
                }
                return Ok(Fetched::Cached);
            }
            looked = true;
            fs::create_dir_all(&self.dir)
                .map_err(|e| HostError::io(format!("creating {}", shown(&self.dir)), e))?;
            let (lock, part) = self.lock_part(&layer.digest).map_err(|e| {
                HostError::io(format!("locking {}", shown(&self.part_path(&layer.digest))), e)
            })?;
            match lock {
                Lock::Held(fd) => {
                    if self.has(&layer.digest, layer.size) {
                        // Verified by another pull after our first look: the `.part` (most
                        // likely one we just created) is not needed.
                        let _ = fs::remove_file(&part);
                        progress.inc(layer.size);
                        return Ok(Fetched::Cached);
                    }
                    break (File::from(fd), part);
                }
                // Another pull is downloading it: look again in a moment.
                Lock::Busy => tokio::time::sleep(PART_POLL).await,
                Lock::Gone => {}
            }
        };
        let what = format!("downloading blob {} ({}) from {}", layer.digest, layer.path, reg.repository());
        let mut resumed = false;
        let mut restarted = false;
        let mut attempt = 0;
        let mut shown_bytes =
            Shown { bar: progress.item(&format!("↓ {}", layer.path), layer.size), progress, counted: 0 };
        loop {
            attempt += 1;
            match self.download(reg, layer, &mut file, &part, &what, &mut shown_bytes).await {
                Ok((hasher, r)) => {
                    let got = format!("sha256:{}", snapbundle_core::hex::encode(&hasher.finalize()));
                    if got != layer.digest && r && !restarted {
                        // The prefix this attempt continued was wrong (a `.part` another registry,
                        // or a corrupted disk, left): start over from byte 0, once, instead of
                        // failing a pull from an honest registry.
                        restarted = true;
                        file.set_len(0)
                            .map_err(|e| HostError::io(format!("truncating {}", shown(&part)), e))?;
                        continue;
                    }
                    resumed |= r;
                    if got != layer.digest {
                        let _ = fs::remove_file(&part);
                        return Err(mismatch(layer, &got, reg));
                    }
                    fs::rename(&part, self.path(&layer.digest))
                        .map_err(|e| HostError::io(format!("renaming {}", shown(&part)), e))?;
                    return Ok(if resumed { Fetched::Resumed } else { Fetched::Downloaded });
                }
                Err(Step::Fatal(e)) => return Err(e),
                Err(Step::Retry(e)) if attempt >= 4 => {
                    return Err(HostError::Registry {
                        code: RegistryErrorCode::Unreachable,
                        message: format!(
                            "{what}: {e} (gave up after {attempt} attempts; run the pull again to resume)"
                        ),
                    })
                }
                Err(Step::Retry(_)) => {
                    tokio::time::sleep(std::time::Duration::from_millis(250 << attempt)).await;
                }
            }
        }
    }

    /// One download attempt into `file` (the locked `part`, opened for appending): resumes it
    /// with a range request if it holds a prefix.
    async fn download(
        &self,
        reg: &Registry,
        layer: &Layer,
        file: &mut File,
        part: &Path,
        what: &str,
        shown_bytes: &mut Shown<'_>,
    ) -> Result<(Sha256, bool), Step> {
        let io_fatal = |ctx: String| move |e: io::Error| Step::Fatal(HostError::io(ctx, e));
        // Hash what an earlier attempt left, so the blob is verified as a whole.
        let mut hasher = Sha256::new();
        let mut have = 0u64;
        let len = file.metadata().map_err(io_fatal(format!("reading {}", shown(part))))?.len();
        if len > 0 && len < layer.size {
            file.seek(SeekFrom::Start(0)).map_err(io_fatal(format!("reading {}", shown(part))))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf).map_err(io_fatal(format!("reading {}", shown(part))))?;
                let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else { break };
                hasher.update(chunk);
                have = have.saturating_add(n as u64);
            }
        } else if len != 0 {
            file.set_len(0).map_err(io_fatal(format!("truncating {}", shown(part))))?;
        }
        let fatal_or_retry = |e: RequestError| match classify(&e) {
            Failure::Transient => Step::Retry(error_text(&e)),
            f => Step::Fatal(reg.error(what, f, &e, 1)),
        };
        let mut response = fetch::get(
            &reg.http,
            &format!("blobs/{}", layer.digest),
            None,
            have,
            layer.size.saturating_sub(have),
        )
        .await
        .map_err(fatal_or_retry)?;
        // 206 from where we asked continues the part; anything else is the whole blob again.
        let continues = response.status() == reqwest::StatusCode::PARTIAL_CONTENT
            && response
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(&format!("bytes {have}-")));
        let resumed = have > 0 && continues;
        if have > 0 && !continues {
            file.set_len(0).map_err(io_fatal(format!("truncating {}", shown(part))))?;
            hasher = Sha256::new();
            have = 0;
        }
        if response.status() == reqwest::StatusCode::PARTIAL_CONTENT && !continues {
            return Err(Step::Retry("the registry answered a range that was not asked for".into()));
        }
        shown_bytes.at(have);
        while let Some(chunk) = response.chunk().await.map_err(|e| Step::Retry(error_text(&e)))? {
            have = have.saturating_add(chunk.len() as u64);
            if have > layer.size {
                let _ = fs::remove_file(part);
                return Err(Step::Fatal(HostError::Registry {
                    code: RegistryErrorCode::BlobDigestMismatch,
                    message: format!(
                        "blob {} ({}) from {}: the registry sent more than its {} bytes",
                        layer.digest,
                        layer.path,
                        reg.repository(),
                        layer.size
                    ),
                }));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).map_err(io_fatal(format!("writing {}", shown(part))))?;
            shown_bytes.at(have);
        }
        if have < layer.size {
            return Err(Step::Retry(format!("the registry sent {have} of {} bytes", layer.size)));
        }
        Ok((hasher, resumed))
    }
}

/// Opens a `.part` file for appending, creating it if missing (never through a symbolic link).
fn open_part(part: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDWR | OFlags::APPEND | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    Ok(rustix::fs::open(part, flags, Mode::from_raw_mode(0o644))?)
}

/// Locks `fd` with `op`, then checks that it is still the file at `path` (which may have been
/// renamed or removed, and another put in its place, while we waited).
fn lock_fd(fd: OwnedFd, path: &Path, op: FlockOperation) -> io::Result<Lock> {
    match rustix::fs::flock(&fd, op) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Ok(Lock::Busy),
        Err(e) => return Err(e.into()),
    }
    let held = rustix::fs::fstat(&fd)?;
    match rustix::fs::lstat(path) {
        Ok(now) if now.st_dev == held.st_dev && now.st_ino == held.st_ino => Ok(Lock::Held(fd)),
        Ok(_) | Err(rustix::io::Errno::NOENT) => Ok(Lock::Gone),
        Err(e) => Err(e.into()),
    }
}

/// How long a pull waits before looking again at a blob another pull is downloading.
const PART_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// A download's progress: its own bar, and its share of the overall one (each byte of the
/// blob counted once, however many attempts it took).
struct Shown<'a> {
    bar: ItemBar,
    progress: &'a Progress,
    counted: u64,
}

impl Shown<'_> {
    /// The download holds the blob's first `bytes` bytes.
    fn at(&mut self, bytes: u64) {
        self.bar.set(bytes);
        if bytes > self.counted {
            self.progress.inc(bytes - self.counted);
            self.counted = bytes;
        }
    }
}

enum Step {
    Retry(String),
    Fatal(HostError),
}

/// The error for a blob whose bytes are not the ones its digest names.
pub(crate) fn mismatch(layer: &Layer, got: &str, reg_name: &impl RepoName) -> HostError {
    HostError::Registry {
        code: RegistryErrorCode::BlobDigestMismatch,
        message: format!(
            "blob {} ({}) from {}: its bytes have digest {got}; nothing was imported",
            layer.digest,
            layer.path,
            reg_name.repo_name()
        ),
    }
}

/// Something that names a repository in messages.
pub(crate) trait RepoName {
    fn repo_name(&self) -> String;
}

impl RepoName for Registry {
    fn repo_name(&self) -> String {
        self.repository()
    }
}

impl RepoName for String {
    fn repo_name(&self) -> String {
        self.clone()
    }
}

/// A reader that counts what passes through it, and hashes it when it has a hasher.
pub(crate) struct HashingReader<R> {
    pub(crate) inner: R,
    pub(crate) hasher: Option<Sha256>,
    pub(crate) count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(buf.get(..n).unwrap_or(&[]));
        }
        self.count = self.count.saturating_add(n as u64);
        Ok(n)
    }
}

/// Opens a cached blob for reading.
pub(crate) fn open(cache: &BlobCache, digest: &str) -> Result<File, HostError> {
    let path = cache.path(digest);
    File::open(&path).map_err(|e| HostError::io(format!("opening {}", shown(&path)), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn cache() -> (tempfile::TempDir, BlobCache) {
        let d = tempfile::tempdir().expect("temp home");
        let c = BlobCache::new(&Home::at(d.path()));
        fs::create_dir_all(c.dir()).expect("cache dir");
        (d, c)
    }

    fn state(l: &Lock) -> &'static str {
        match l {
            Lock::Held(_) => "held",
            Lock::Busy => "busy",
            Lock::Gone => "gone",
        }
    }

    #[test]
    fn a_part_being_downloaded_is_busy_for_a_second_downloader_until_released() {
        let (_d, c) = cache();
        let (first, part) = c.lock_part(DIGEST).expect("lock");
        assert_eq!(state(&first), "held");
        assert_eq!(part, c.dir().join(format!("{}.part", hex_of(DIGEST))));
        let (second, _) = c.lock_part(DIGEST).expect("lock");
        assert_eq!(state(&second), "busy");
        // The first gave up (a failed pull): the next one takes over its part, to resume it.
        fs::write(&part, b"prefix").expect("write");
        drop(first);
        let (third, _) = c.lock_part(DIGEST).expect("lock");
        assert_eq!(state(&third), "held");
        assert_eq!(fs::read(&part).expect("read"), b"prefix", "the part was truncated");
    }

    #[test]
    fn a_part_renamed_to_the_verified_blob_while_waiting_is_gone_for_the_waiter() {
        let (_d, c) = cache();
        let (holder, part) = c.lock_part(DIGEST).expect("lock");
        assert_eq!(state(&holder), "held");
        // The waiter opened the part before the holder renamed it.
        let waiting = open_part(&part).expect("open");
        fs::rename(&part, c.path(DIGEST)).expect("rename");
        drop(holder);
        let l = lock_fd(waiting, &part, FlockOperation::NonBlockingLockExclusive).expect("lock");
        assert_eq!(state(&l), "gone");
        assert!(!part.exists(), "the waiter created a part");
    }

    #[test]
    fn a_part_deleted_and_created_anew_while_waiting_is_gone_for_the_waiter() {
        let (_d, c) = cache();
        let (holder, part) = c.lock_part(DIGEST).expect("lock");
        let waiting = open_part(&part).expect("open");
        // A mismatch: the holder deletes its part; a third downloader starts a new one.
        fs::remove_file(&part).expect("remove");
        drop(holder);
        let (third, _) = c.lock_part(DIGEST).expect("lock");
        assert_eq!(state(&third), "held");
        let l = lock_fd(waiting, &part, FlockOperation::NonBlockingLockExclusive).expect("lock");
        assert_eq!(state(&l), "gone");
    }

    #[test]
    fn a_symbolic_link_named_like_a_part_is_not_followed() {
        let (d, c) = cache();
        let target = d.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, c.part_path(DIGEST)).expect("symlink");
        let err = c.lock_part(DIGEST).err().expect("refused");
        assert_eq!(err.raw_os_error(), Some(rustix::io::Errno::LOOP.raw_os_error()), "{err}");
        assert!(!target.exists(), "created through the link");
    }
}
