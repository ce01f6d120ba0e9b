//! Snapshot directories in a store: open (metadata check), verify (content check), list, resolve.
//!
//! `open` follows 0.6.2 `open_snapshot` (`docs/format-0.6.2.md` §3.1): parse and validate
//! `manifest.json`, compute the digest, require the upper to be a regular file (a symlink is not)
//! of the manifest's size.
//! `verify` follows `verify_snapshot`, reading the upper by its data segments.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use snapbundle_core::error::{Error as CoreError, SnapshotError};
use snapbundle_core::integrity::{Algorithm, IntegrityHasher};
use snapbundle_core::manifest::{Manifest, MANIFEST_FILENAME};
use snapbundle_core::report::IntegrityStatus;
use snapbundle_core::Limits;

use crate::error::{shown, HostError};
use crate::home::Home;
use crate::sparse::{self, Chunk};
use crate::verified::{FileState, Records};

/// An opened snapshot directory.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The directory.
    pub dir: PathBuf,
    /// Its parsed manifest.
    pub manifest: Manifest,
    /// The snapshot digest.
    pub digest: String,
}

impl Snapshot {
    /// The upper file's path.
    pub fn upper_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.upper.file)
    }

    /// The directory's name.
    pub fn name(&self) -> String {
        self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

fn invalid(dir: &Path, error: SnapshotError) -> HostError {
    HostError::Invalid(CoreError::Snapshot { prefix: shown(dir), error })
}

/// Opens and checks the metadata of the snapshot in `dir`.
pub fn open(dir: &Path) -> Result<Snapshot, HostError> {
    let meta = std::fs::metadata(dir)
        .map_err(|_| HostError::NotFound(format!("snapshot not found: {}", shown(dir))))?;
    if !meta.is_dir() {
        return Err(HostError::NotFound(format!("snapshot not found: {} is not a directory", shown(dir))));
    }
    let mpath = dir.join(MANIFEST_FILENAME);
    let file = File::open(&mpath)
        .map_err(|e| HostError::NotFound(format!("snapshot not found: {}: {e}", shown(&mpath))))?;
    let max = Limits::DEFAULT.max_manifest_size;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| HostError::io(format!("reading {}", shown(&mpath)), e))?;
    if bytes.len() as u64 > max {
        return Err(HostError::Invalid(CoreError::Limit {
            at: None,
            error: snapbundle_core::error::LimitError::ManifestSize { size: bytes.len() as u64, max },
        }));
    }
    let manifest = Manifest::from_bytes(&bytes)
        .map_err(|error| HostError::Invalid(CoreError::Manifest { prefix: shown(dir), error }))?;
    let digest = manifest.digest();
    let snap = Snapshot { dir: dir.to_path_buf(), manifest, digest };
    let upper = snap.upper_path();
    let um = std::fs::symlink_metadata(&upper)
        .map_err(|e| invalid(dir, SnapshotError::MissingUpper(format!("{}: {e}", shown(&upper)))))?;
    if !um.file_type().is_file() {
        return Err(invalid(
            dir,
            SnapshotError::MissingUpper(format!("{} is not a regular file", shown(&upper))),
        ));
    }
    if um.len() != snap.manifest.upper.size_bytes {
        return Err(invalid(
            dir,
            SnapshotError::UpperSize { manifest: snap.manifest.upper.size_bytes, file: um.len() },
        ));
    }
    Ok(snap)
}

/// Checks the recorded integrity of the upper (0.6.2 `verify`): always hashes it. On a match,
/// and if the upper did not change while it was read, the verification is noted in `records`
/// (best effort; see [`crate::verified`]).
pub fn verify(snap: &Snapshot, records: Option<&Records>) -> Result<IntegrityStatus, HostError> {
    let Some(integrity) = &snap.manifest.upper.integrity else {
        return Ok(IntegrityStatus::NotRecorded);
    };
    let Some(algorithm) = Algorithm::parse(&integrity.algorithm) else {
        return Err(invalid(&snap.dir, SnapshotError::UnsupportedAlgorithm(integrity.algorithm.clone())));
    };
    let upper = snap.upper_path();
    let file = File::open(&upper).map_err(|e| HostError::io(format!("opening {}", shown(&upper)), e))?;
    // The state before hashing: `Records::record` re-reads it and records nothing if it changed.
    let before = file.metadata().ok().and_then(|md| FileState::of(&md));
    let mut h = IntegrityHasher::new(algorithm, snap.manifest.upper.size_bytes);
    sparse::read_logical(&file, snap.manifest.upper.size_bytes, &mut |c| {
        match c {
            Chunk::Data(b) => h.update(b),
            Chunk::Zeros(n) => h.update_zeros(n),
        }
        Ok(())
    })
    .map_err(|e| HostError::io(format!("reading {}", shown(&upper)), e))?;
    let computed = h.finish();
    if computed != integrity.digest {
        return Err(invalid(
            &snap.dir,
            SnapshotError::DigestMismatch { manifest: integrity.digest.clone(), file: computed },
        ));
    }
    if let (Some(records), Some(state)) = (records, before) {
        let _ = records.record(&file, &upper, &state, &integrity.algorithm, &computed);
    }
    Ok(IntegrityStatus::Verified { algorithm: integrity.algorithm.clone(), digest: computed })
}

/// A listed snapshot directory, opened or with the reason it did not open.
pub type Listed = (PathBuf, Result<Snapshot, HostError>);

/// Every snapshot directory directly under `dir` that has a `manifest.json` (names starting with
/// `.` are staging areas and skipped), in name order, each opened or with its error.
pub fn list(dir: &Path) -> Result<Vec<Listed>, HostError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(HostError::io(format!("listing {}", shown(dir)), e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| HostError::io(format!("listing {}", shown(dir)), e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() && path.join(MANIFEST_FILENAME).is_file() {
            let opened = open(&path);
            out.push((path, opened));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Whether 0.6.2 treats `arg` as a path: it contains `/` or starts with `.` or `~`.
pub fn is_path_like(arg: &str) -> bool {
    arg.contains('/') || arg.starts_with('.') || arg.starts_with('~')
}

/// Resolves a snapshot argument: a path, a digest (`sha256:…`, full or a unique prefix), or a
/// name under the snapshots directory.
pub fn resolve(home: &Home, arg: &str) -> Result<Snapshot, HostError> {
    if arg.is_empty() {
        return Err(HostError::Usage("snapshot path or name must not be empty".into()));
    }
    if let Some(hex_part) = arg.strip_prefix("sha256:") {
        if hex_part.is_empty() || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(HostError::Usage(format!("not a digest or digest prefix: {arg}")));
        }
        let needle = arg.to_ascii_lowercase();
        let matches: Vec<Snapshot> = list(&home.snapshots)?
            .into_iter()
            .filter_map(|(_, s)| s.ok())
            .filter(|s| s.digest.starts_with(&needle))
            .collect();
        return match matches.len() {
            0 => Err(HostError::NotFound(format!(
                "snapshot not found: no snapshot in {} has digest {arg}",
                shown(&home.snapshots)
            ))),
            1 => matches.into_iter().next().ok_or_else(|| HostError::NotFound(arg.to_string())),
            _ => {
                let names: Vec<String> =
                    matches.iter().map(|s| format!("{} ({})", s.digest, s.name())).collect();
                if matches.iter().all(|s| s.digest == matches[0].digest) {
                    // The same snapshot stored twice: any copy will do; take the first by name.
                    return matches.into_iter().next().ok_or_else(|| HostError::NotFound(arg.to_string()));
                }
                Err(HostError::Usage(format!("digest prefix {arg} is ambiguous: {}", names.join(", "))))
            }
        };
    }
    let dir = if is_path_like(arg) { PathBuf::from(arg) } else { home.snapshots.join(arg) };
    open(&dir)
}
