//! A planned member's bytes, read with the checks the bundle writer makes: still the planned
//! file, unchanged while read, and an upper's recorded integrity matching. The writer streams
//! members through [`read_checked`]; [`crate::registry`]'s push reads them one at a time through
//! [`PlannedMember`] and [`Plan::read_member`].

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use snapbundle_core::error::{Error as CoreError, SnapshotError};
use snapbundle_core::integrity::IntegrityHasher;

use super::plan::{Content, Member, Plan};
use super::{changed, io_err, open_nofollow, IntegrityCheck};
use crate::error::{shown, HostError};
use crate::sparse::{self, Chunk};
use crate::tar_writer::EntryMeta;
use crate::verified::{FileState, Records};

/// One member of a [`Plan`], as [`crate::registry`] stores it (one blob per member).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMember {
    /// Member name in the bundle (`sha256-<16 hex>/manifest.json`, `cache/layers/…`).
    pub name: String,
    /// Its tar header fields (size = the file's apparent size).
    pub meta: EntryMeta,
    /// The file it is read from.
    pub source: PathBuf,
    /// `(st_dev, st_ino)` of the file when it was planned: reading it fails if that changed.
    pub identity: (u64, u64),
    /// For an upper with recorded integrity, `<algorithm> <digest>` as the manifest records it
    /// (reading it fails unless the bytes match).
    pub integrity: Option<String>,
    /// Whether it is read from its file (`false`: its bytes were read and checked at planning).
    pub from_file: bool,
}

impl Plan {
    /// The members in archive order, with the header fields the tar stream gives them.
    pub fn planned_members(&self) -> Vec<PlannedMember> {
        self.members()
            .map(|m| PlannedMember {
                name: m.name.clone(),
                meta: m.meta,
                source: m.source.clone(),
                identity: m.identity,
                integrity: match &m.content {
                    Content::File { check: Some(c) } => Some(format!("{} {}", c.algorithm_name, c.digest)),
                    _ => None,
                },
                from_file: matches!(m.content, Content::File { .. }),
            })
            .collect()
    }

    /// Streams member `index` (of [`Plan::planned_members`]) into `f`, densely (holes as
    /// [`Chunk::Zeros`]), with the checks the bundle writer makes: the file must still be the
    /// planned one and an upper's recorded integrity must match.
    pub fn read_member(
        &self,
        index: usize,
        f: &mut dyn FnMut(Chunk<'_>) -> io::Result<()>,
    ) -> Result<(), HostError> {
        let Some(m) = self.members().nth(index) else {
            return Err(HostError::Usage(format!("no member #{index} in the export plan")));
        };
        if let Content::Bytes(bytes) = &m.content {
            return f(Chunk::Data(bytes)).map_err(io_err(format!("reading {}", shown(&m.source))));
        }
        let (file, before) = open_member(m)?;
        let segments = sparse::data_segments(&file, before.len())
            .map_err(io_err(format!("reading {}", shown(&m.source))))?;
        let trusted = (!self.opts.rehash).then_some(&self.records);
        read_checked(m, &file, &before, &segments, trusted, &self.records, f).map(|_| ())
    }
}

/// Opens a file member's source and checks it is still the planned file with the planned size.
pub(super) fn open_member(m: &Member) -> Result<(File, Metadata), HostError> {
    let file = open_nofollow(&m.source).map_err(io_err(format!("opening {}", shown(&m.source))))?;
    let before = file.metadata().map_err(io_err(format!("reading {}", shown(&m.source))))?;
    if !before.is_file() || (before.dev(), before.ino()) != m.identity || before.len() != m.meta.size {
        return Err(changed(&m.source));
    }
    Ok((file, before))
}

/// Reads a file member by `segments` (holes as [`Chunk::Zeros`]) into `f`, hashing it when its
/// integrity is recorded, unless a record among `trusted` vouches for it; fails if the file
/// changed during the read or its digest does not match. A successful hash is noted in
/// `records`. Returns how an upper with recorded integrity was checked (`None` for any other
/// member).
pub(super) fn read_checked(
    m: &Member,
    file: &File,
    before: &Metadata,
    segments: &[(u64, u64)],
    trusted: Option<&Records>,
    records: &Records,
    f: &mut dyn FnMut(Chunk<'_>) -> io::Result<()>,
) -> Result<Option<IntegrityCheck>, HostError> {
    let check = match &m.content {
        Content::File { check } => check.as_ref(),
        Content::Bytes(_) => None,
    };
    let size = before.len();
    let vouched =
        check.is_some_and(|c| trusted.is_some_and(|t| t.vouches_for(before, &c.algorithm_name, &c.digest)));
    let mut hasher = check.filter(|_| !vouched).map(|c| IntegrityHasher::new(c.algorithm, size));
    sparse::read_segments(file, segments, size, &mut |chunk| {
        if let Some(h) = hasher.as_mut() {
            match chunk {
                Chunk::Data(bytes) => h.update(bytes),
                Chunk::Zeros(n) => h.update_zeros(n),
            }
        }
        f(chunk)
    })
    .map_err(io_err(format!("reading {}", shown(&m.source))))?;
    let after = file.metadata().map_err(io_err(format!("reading {}", shown(&m.source))))?;
    if after.len() != before.len()
        || after.mtime() != before.mtime()
        || after.mtime_nsec() != before.mtime_nsec()
        || after.ctime() != before.ctime()
        || after.ctime_nsec() != before.ctime_nsec()
    {
        return Err(changed(&m.source));
    }
    let Some(c) = check else { return Ok(None) };
    let Some(h) = hasher else { return Ok(Some(IntegrityCheck::Record)) };
    let computed = h.finish();
    if computed != c.digest {
        return Err(HostError::Invalid(CoreError::Snapshot {
            prefix: shown(&c.dir),
            error: SnapshotError::DigestMismatch { manifest: c.digest.clone(), file: computed },
        }));
    }
    // Best effort: a record that cannot be written only means hashing again next time.
    if let Some(state) = FileState::of(before) {
        let _ = records.record(file, &m.source, &state, &c.algorithm_name, &c.digest);
    }
    Ok(Some(IntegrityCheck::Hashed))
}
