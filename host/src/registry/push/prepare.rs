//! Reading a member into the blob push sends: JSON members as they are, in memory; everything
//! else as one zstd frame written to the push's spool directory. Both forms are hashed as they
//! are made (the blob's digest, and the member's own sha256 for its annotation).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest as _, Sha256};
use snapbundle_core::registry_artifact::{self as artifact, Layer};

use crate::error::{shown, HostError};
use crate::export::{Plan, PlannedMember};
use crate::progress::Progress;
use crate::registry::known::KnownBlobs;
use crate::sparse::Chunk;
use crate::verified::FileState;

/// A member ready to send.
pub(super) struct Prepared {
    /// Its place among the members.
    pub(super) index: usize,
    /// The blob and the member it rebuilds.
    pub(super) layer: Layer,
    /// The blob's bytes.
    pub(super) data: Data,
}

/// Where a prepared blob's bytes are.
pub(super) enum Data {
    /// In memory (a JSON member, or the config blob).
    Bytes(bytes::Bytes),
    /// Compressed into the spool directory.
    Spooled(PathBuf),
    /// Not read: the digest came from a [`KnownBlob`](crate::registry::known::KnownBlob) and the repository had the blob.
    Unread,
}

impl Prepared {
    /// Bytes `[offset, offset + len)` of the blob.
    pub(super) fn read_at(&self, offset: u64, len: u64) -> Result<bytes::Bytes, HostError> {
        let range = || {
            let start = usize::try_from(offset).ok()?;
            Some(start..start.checked_add(usize::try_from(len).ok()?)?)
        };
        match &self.data {
            Data::Bytes(b) => range()
                .and_then(|r| b.get(r))
                .map(bytes::Bytes::copy_from_slice)
                .ok_or_else(|| HostError::io("reading a blob", io::Error::other("range outside the blob"))),
            Data::Unread => Err(HostError::io("reading a blob", io::Error::other("the blob was not read"))),
            Data::Spooled(path) => {
                let ctx = || format!("reading {}", shown(path));
                let n = usize::try_from(len)
                    .map_err(|_| HostError::io(ctx(), io::Error::other("chunk too large")))?;
                let mut buf = vec![0u8; n];
                File::open(path)
                    .and_then(|f| f.read_exact_at(&mut buf, offset))
                    .map_err(|e| HostError::io(ctx(), e))?;
                Ok(bytes::Bytes::from(buf))
            }
        }
    }
}

/// A blob's zstd frame: single-threaded at `level`, `size` pledged in the frame header, no
/// checksum, so that the same bytes always give the same blob (the artifact's dedupe rests on
/// it; `docs/registry-format.md`).
pub(super) fn blob_encoder<W: Write>(
    sink: W,
    level: i32,
    size: u64,
) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut enc = zstd::stream::write::Encoder::new(sink, level)?;
    enc.set_pledged_src_size(Some(size))?;
    Ok(enc)
}

/// A writer that hashes and counts what passes through it.
pub(super) struct HashingWriter<W> {
    pub(super) inner: W,
    pub(super) hasher: Sha256,
    pub(super) count: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or(&[]));
        self.count = self.count.saturating_add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Reads member `index` (`member`, with export's checks) into a blob: in memory as is, or
/// compressed into the spool directory, noting in `known` which blob the file made; hashes
/// both forms.
#[allow(clippy::too_many_arguments)]
pub(super) fn prepare(
    plan: &Plan,
    index: usize,
    member: &PlannedMember,
    spool: &Path,
    level: i32,
    known: &KnownBlobs,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<Prepared, HostError> {
    let mut member_hash = Sha256::new();
    let cancelled = || io::Error::other("the push failed elsewhere");
    if !artifact::compress_member(&member.name) {
        let mut bytes = Vec::new();
        plan.read_member(index, &mut |chunk| {
            match chunk {
                Chunk::Data(b) => bytes.extend_from_slice(b),
                Chunk::Zeros(n) => {
                    bytes.resize(bytes.len().saturating_add(usize::try_from(n).unwrap_or(usize::MAX)), 0)
                }
            }
            Ok(())
        })?;
        progress.inc(bytes.len() as u64);
        let digest = artifact::sha256_digest(&bytes);
        let layer = Layer {
            digest: digest.clone(),
            size: bytes.len() as u64,
            zstd: false,
            path: member.name.clone(),
            sha256: Some(digest),
            meta: member.meta,
        };
        return Ok(Prepared { index, layer, data: Data::Bytes(bytes.into()) });
    }
    let path = spool.join(format!("{index}.zst"));
    let ctx = || format!("writing {}", shown(&path));
    let file = File::create(&path).map_err(|e| HostError::io(ctx(), e))?;
    let sink =
        HashingWriter { inner: BufWriter::with_capacity(1 << 20, file), hasher: Sha256::new(), count: 0 };
    let mut enc =
        blob_encoder(sink, level, member.meta.size).map_err(|e| HostError::io("setting up zstd", e))?;
    // The file's state as the read begins, for the known-blob record.
    let before = FileState::at(&member.source);
    let mut write_error = None;
    let read = plan.read_member(index, &mut |chunk| {
        if cancel.load(Ordering::Relaxed) {
            return Err(cancelled());
        }
        let r = match chunk {
            Chunk::Data(b) => {
                member_hash.update(b);
                progress.inc(b.len() as u64);
                enc.write_all(b)
            }
            Chunk::Zeros(mut n) => {
                progress.inc(n);
                let mut r = Ok(());
                while n > 0 && r.is_ok() {
                    let k = usize::try_from(n.min(ZEROS.len() as u64)).unwrap_or(ZEROS.len());
                    let z = ZEROS.get(..k).unwrap_or(&[]);
                    member_hash.update(z);
                    r = enc.write_all(z);
                    n -= k as u64;
                }
                r
            }
        };
        r.map_err(|e| {
            write_error = Some(e);
            io::Error::other("the spool write failed")
        })
    });
    if let Some(e) = write_error {
        return Err(HostError::io(ctx(), e));
    }
    read?;
    let sink = enc.finish().map_err(|e| HostError::io(ctx(), e))?;
    let HashingWriter { inner, hasher, count } = sink;
    let file = inner.into_inner().map_err(|e| HostError::io(ctx(), e.into_error()))?;
    file.sync_all().map_err(|e| HostError::io(ctx(), e))?;
    let layer = Layer {
        digest: format!("sha256:{}", snapbundle_core::hex::encode(&hasher.finalize())),
        size: count,
        zstd: true,
        path: member.name.clone(),
        sha256: Some(format!("sha256:{}", snapbundle_core::hex::encode(&member_hash.finalize()))),
        meta: member.meta,
    };
    if let Some(before) = before {
        // Best effort: without a record the next push reads the file again.
        let _ = known.record(member, &before, level, &layer);
    }
    Ok(Prepared { index, layer, data: Data::Spooled(path) })
}
