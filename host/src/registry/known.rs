//! Known blobs: which blob an earlier push made of a local file, so that a push need not read
//! and compress a file again only to learn a digest the registry already holds.
//!
//! Pushing a child whose parents are in the registry would otherwise read and compress every
//! parent's upper (gigabytes) just to learn the digests that HEAD then finds. When a push has
//! compressed a member read from a file, it records
//! `<home>/cache/snapbundle/pushed/<st_dev>-<st_ino>.json`: the file's path and state, the
//! upper's recorded integrity (if any), the zstd level, and the blob (digest, size, sha256 of
//! the uncompressed bytes). A later push at the same level whose planned member is still that
//! file in exactly that state, with the same recorded integrity, asks the registry for that
//! blob first: if the repository has it, or a mount brings it, the file is not read at all;
//! otherwise it is read and compressed as usual and the record renewed.
//!
//! The trust is that of a verification record ([`crate::verified`], which explains why an
//! unchanged `stat` means unchanged bytes, and the racy-ctime margin applied here too): the
//! file was read in full, its integrity checked, and it has not changed since. What a skip gives
//! up is a re-read of bytes the registry already holds under their digest. A missing, stale or
//! malformed record only means the file is read again.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use snapbundle_core::registry_artifact::{is_sha256_digest, Layer};

use crate::export::PlannedMember;
use crate::home::Home;
use crate::verified::{self, AboutFile, FileState, RecordDir};

/// The record format's version.
const VERSION: u32 = 1;

/// What an earlier push made of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownBlob {
    /// Format version (1).
    pub version: u32,
    /// The file (informational, and for pruning).
    pub path: PathBuf,
    /// Its state when it was read.
    pub state: FileState,
    /// The clock after the read, once the state was settled (see [`crate::verified`]).
    pub settled_at: (i64, u32),
    /// The upper's recorded integrity the read was checked against (`<algorithm> <digest>`).
    pub integrity: Option<String>,
    /// The zstd level it was compressed at.
    pub level: i32,
    /// The blob's digest.
    pub digest: String,
    /// The blob's size.
    pub size: u64,
    /// `sha256:<hex>` of the file's bytes.
    pub sha256: String,
}

impl AboutFile for KnownBlob {
    fn about(&self) -> (&Path, &FileState) {
        (&self.path, &self.state)
    }
}

/// The known-blob records of one microsandbox home.
#[derive(Debug, Clone)]
pub struct KnownBlobs {
    dir: RecordDir,
}

impl KnownBlobs {
    /// The records of `home` (`<home>/cache/snapbundle/pushed`).
    pub fn of(home: &Home) -> KnownBlobs {
        KnownBlobs { dir: RecordDir::of(home, "pushed") }
    }

    /// The directory the records live in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The blob an earlier push made of `member` at `level`, if a record vouches that the
    /// member's file has not changed since.
    pub fn lookup(&self, member: &PlannedMember, level: i32) -> Option<KnownBlob> {
        let state = FileState::at(&member.source).filter(|s| is_planned_file(member, s))?;
        let r: KnownBlob = self.dir.read(&state)?;
        let vouches = r.version == VERSION
            && r.state == state
            && verified::settled(state.ctime, r.settled_at)
            && r.integrity == member.integrity
            && r.level == level
            && is_sha256_digest(&r.digest)
            && is_sha256_digest(&r.sha256);
        vouches.then_some(r)
    }

    /// Records that `member`, in the state `before` when its read began, was read in full and
    /// compressed at `level` into `layer`. Nothing is recorded if the file is not the planned
    /// one or changed since `before` (waits at most [`verified::RACY_MARGIN`] for a settled
    /// ctime). Returns whether a record was written.
    pub fn record(
        &self,
        member: &PlannedMember,
        before: &FileState,
        level: i32,
        layer: &Layer,
    ) -> io::Result<bool> {
        // A chain's layer always has its member digest; one without vouches for nothing.
        let Some(sha256) = layer.sha256.clone() else { return Ok(false) };
        if !is_planned_file(member, before) {
            return Ok(false);
        }
        let file = crate::export::open_nofollow(&member.source)?;
        let Some(settled_at) = verified::settle(&file, before)? else { return Ok(false) };
        let record = KnownBlob {
            version: VERSION,
            path: member.source.clone(),
            state: *before,
            settled_at,
            integrity: member.integrity.clone(),
            level,
            digest: layer.digest.clone(),
            size: layer.size,
            sha256,
        };
        self.dir.write(before, &record)?;
        Ok(true)
    }

    /// Removes records that no longer vouch for anything (the file gone or changed, or the
    /// record unreadable). Returns how many were removed.
    pub fn prune(&self) -> io::Result<usize> {
        self.dir.prune::<KnownBlob>()
    }
}

/// Whether `state` is that of the file `member` was planned to be read from.
fn is_planned_file(member: &PlannedMember, state: &FileState) -> bool {
    member.from_file && (state.dev, state.ino) == member.identity && state.size == member.meta.size
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar_writer::{EntryMeta, FromMetadata as _};
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn member(path: &Path, integrity: Option<&str>) -> PlannedMember {
        let md = fs::metadata(path).expect("stat");
        PlannedMember {
            name: "sha256-0123456789abcdef/upper.ext4".into(),
            meta: EntryMeta::from_metadata(&md),
            source: path.to_path_buf(),
            identity: (md.dev(), md.ino()),
            integrity: integrity.map(String::from),
            from_file: true,
        }
    }

    fn layer() -> Layer {
        Layer {
            digest: digest('a'),
            size: 7,
            zstd: true,
            path: "sha256-0123456789abcdef/upper.ext4".into(),
            sha256: Some(digest('b')),
            meta: EntryMeta { mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 4 },
        }
    }

    /// A home, a file in it recorded as pushed at level 3, and its planned member.
    fn recorded() -> (tempfile::TempDir, KnownBlobs, PlannedMember) {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = Home::at(dir.path());
        let file = dir.path().join("upper.ext4");
        fs::write(&file, b"data").expect("write");
        let m = member(&file, Some("sha256 sha256:00"));
        let known = KnownBlobs::of(&home);
        let before = FileState::of(&fs::metadata(&file).expect("stat")).expect("a file");
        assert!(known.record(&m, &before, 3, &layer()).expect("record"));
        (dir, known, m)
    }

    #[test]
    fn a_record_gives_the_blob_for_the_same_file_state_integrity_and_level() {
        let (_d, known, m) = recorded();
        let r = known.lookup(&m, 3).expect("a known blob");
        assert_eq!(
            (r.digest.as_str(), r.size, r.sha256.as_str()),
            (digest('a').as_str(), 7, digest('b').as_str())
        );
        assert!(known.lookup(&m, 19).is_none(), "another level makes another blob");
        let other = PlannedMember { integrity: Some("sha256 sha256:11".into()), ..m.clone() };
        assert!(known.lookup(&other, 3).is_none(), "the manifest records other integrity");
        let swapped = PlannedMember { identity: (m.identity.0, m.identity.1 + 1), ..m.clone() };
        assert!(known.lookup(&swapped, 3).is_none(), "not the planned file");
        let in_memory = PlannedMember { from_file: false, ..m };
        assert!(known.lookup(&in_memory, 3).is_none(), "a member not read from its file");
    }

    #[test]
    fn a_changed_file_is_not_vouched_for_and_its_record_is_pruned() {
        let (_d, known, m) = recorded();
        // Same size, same bytes even: the write alone moves the ctime.
        fs::write(&m.source, b"data").expect("rewrite");
        assert!(known.lookup(&m, 3).is_none());
        assert_eq!(known.prune().expect("prune"), 1);
        assert!(fs::read_dir(known.dir()).expect("dir").next().is_none());
    }

    #[test]
    fn a_racy_malformed_or_foreign_record_is_ignored() {
        let (_d, known, m) = recorded();
        let path = fs::read_dir(known.dir()).expect("dir").next().expect("a record").expect("entry").path();
        let good: KnownBlob = verified::read_json(&path).expect("parses");
        let rewrite = |r: &KnownBlob| fs::write(&path, serde_json::to_vec(r).expect("json")).expect("write");
        // Settled before the ctime: a change within the same clock tick could hide.
        rewrite(&KnownBlob { settled_at: (good.state.ctime.0, 0), ..good.clone() });
        assert!(known.lookup(&m, 3).is_none(), "racy");
        rewrite(&KnownBlob { digest: "sha256:../../x".into(), ..good.clone() });
        assert!(known.lookup(&m, 3).is_none(), "not a digest");
        rewrite(&KnownBlob { version: 2, ..good.clone() });
        assert!(known.lookup(&m, 3).is_none(), "another version");
        fs::write(&path, b"{").expect("write");
        assert!(known.lookup(&m, 3).is_none(), "malformed");
        rewrite(&good);
        assert!(known.lookup(&m, 3).is_some(), "the same record, restored");
    }

    #[test]
    fn nothing_is_recorded_for_a_file_that_changed_since_its_read_began() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("upper.ext4");
        fs::write(&file, b"data").expect("write");
        let m = member(&file, None);
        let before = FileState::of(&fs::metadata(&file).expect("stat")).expect("a file");
        fs::write(&file, b"DATA").expect("rewrite");
        let known = KnownBlobs::of(&Home::at(dir.path()));
        assert!(!known.record(&m, &before, 3, &layer()).expect("record"));
        assert!(known.lookup(&member(&file, None), 3).is_none());
    }
}
