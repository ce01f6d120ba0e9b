//! `export`: snapshot directories (and optionally the head's image cache files) into a bundle
//! in exactly the layout and tar encoding microsandbox 0.6.2 writes (`docs/format-0.6.2.md` §8).
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
//!    a mismatch fails the export at the end of that upper. A file target is published with
//!    [`crate::publish`] (a temporary file beside it, fsynced, renamed into place only on
//!    success, the directory fsynced), so a failed export leaves no file; a stream target
//!    (standard output) gets no end-of-archive records and no zstd frame end after a failure,
//!    so a consumer sees a truncated, invalid bundle.
//!
//! With [`ExportOptions::sparse`], snapshot files with holes (the uppers, in practice) are written
//! as old-GNU sparse members (see [`crate::tar_writer`]): their holes are neither read, nor
//! written, nor compressed, only hashed when integrity is recorded. Such bundles import here and
//! extract with GNU tar, but microsandbox 0.6.2 rejects them; without the option the bundle is
//! byte for byte the 0.6.2 layout.
//!
//! [`export`] runs both. Deliberate differences from 0.6.2 are listed on [`plan`].
//!
//! The code: options, target and outcome types here; `plan.rs` builds the [`Plan`]; `member.rs`
//! reads a planned member with its checks ([`PlannedMember`], [`Plan::read_member`], also used
//! by push); `write.rs` streams the plan into [`crate::compress`].

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use snapbundle_core::cache_meta::CacheError;
use snapbundle_core::error::{Error as CoreError, LimitError};
use snapbundle_core::Limits;

use crate::compress::Compression;
use crate::error::{shown, HostError};
use crate::home::Home;
use crate::progress::Progress;

mod member;
mod plan;
mod write;

pub use crate::compress::{DEFAULT_LEVEL, DEFAULT_MAX_THREADS};
pub use member::PlannedMember;
pub use plan::{plan, Plan};

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

impl ExportOptions {
    /// The compression these options ask for.
    pub(crate) fn compression(&self) -> Compression {
        Compression { plain: self.plain_tar, level: self.level, threads: self.threads }
    }
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
}
