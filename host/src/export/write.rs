//! Phase two of an export: [`Plan::write`] streams the planned members as one tar stream into
//! the compressor, to a file (published atomically with [`crate::publish`]), standard output or
//! any writer.

use std::io::{self, BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::member::{open_member, read_checked};
use super::plan::{Content, Member, Plan};
use super::{changed, io_err, ExportOutcome, ExportTarget, ExportedSnapshot, IntegrityCheck};
use crate::compress::{compressor, Counting};
use crate::error::{shown, HostError};
use crate::progress::Progress;
use crate::publish::{output_parent, publish_new_output};
use crate::sparse::{self, Chunk};
use crate::tar_writer::{EntryMeta, FromMetadata as _, TarWriter, END_OF_ARCHIVE};
use crate::verified::Records;

impl Plan {
    fn outcome(&self, written: Written, path: Option<PathBuf>) -> ExportOutcome {
        ExportOutcome {
            snapshots: self
                .snapshots
                .iter()
                .zip(written.checks)
                .map(|(s, integrity)| ExportedSnapshot {
                    digest: s.snap.digest.clone(),
                    prefix: s.prefix.clone(),
                    source: s.snap.dir.clone(),
                    integrity,
                })
                .collect(),
            head: self.snapshots.last().map(|s| s.snap.digest.clone()).unwrap_or_default(),
            cache_files: self.cache_files.clone(),
            compressed: !self.opts.plain_tar,
            bytes_written: written.bytes,
            tar_bytes: self.tar_bytes,
            path,
        }
    }

    /// Writes the bundle to `target`, updating `progress` with tar bytes written.
    pub fn write(&self, target: ExportTarget<'_>, progress: &Progress) -> Result<ExportOutcome, HostError> {
        match target {
            ExportTarget::File(path) => self.write_file(path, progress),
            ExportTarget::Stdout => {
                let written = self.stream(io::stdout().lock(), "standard output", progress)?;
                Ok(self.outcome(written, None))
            }
            ExportTarget::Writer(w) => {
                let written = self.stream(w, "the output", progress)?;
                Ok(self.outcome(written, None))
            }
        }
    }

    /// Writes the bundle to the file at `path` with [`publish`]: nothing is at `path` until the
    /// whole bundle is, and a failed export leaves neither a file nor the directories it created.
    fn write_file(&self, path: &Path, progress: &Progress) -> Result<ExportOutcome, HostError> {
        let parent = output_parent(path)?;
        if let Ok(md) = std::fs::symlink_metadata(path) {
            if self.members().any(|m| m.identity == (md.dev(), md.ino())) {
                return Err(HostError::Usage(format!(
                    "refusing to replace {}: it is one of the files being exported",
                    shown(path)
                )));
            }
        }
        if let Ok(canon) = parent.canonicalize() {
            for s in &self.snapshots {
                if s.snap.dir.canonicalize().is_ok_and(|d| d == canon) {
                    return Err(HostError::Usage(format!(
                        "refusing to write {} inside the snapshot directory being exported",
                        shown(path)
                    )));
                }
            }
        }
        let label = shown(path);
        let written =
            publish_new_output(path, 0o666, Some(&self.outputs), |file| self.stream(file, &label, progress))?;
        Ok(self.outcome(written, Some(path.to_path_buf())))
    }

    /// Streams the whole bundle into `out`; returns the bytes written and how each upper was
    /// checked. On failure nothing more is written: no end-of-archive records and no end of the
    /// zstd frame.
    fn stream<W: Write>(&self, out: W, label: &str, progress: &Progress) -> Result<Written, HostError> {
        let wctx = format!("writing {label}");
        let buffered = BufWriter::with_capacity(1 << 20, Counting { inner: out, count: 0 });
        let sink = compressor(buffered, self.opts.compression(), Some(self.tar_bytes))
            .map_err(io_err("setting up zstd"))?;
        let mut tar = TarWriter::new(sink);
        let records = (!self.opts.rehash).then_some(&self.records);
        let mut checks = Vec::with_capacity(self.snapshots.len());
        for s in &self.snapshots {
            let mut check = IntegrityCheck::NotRecorded;
            for m in &s.members {
                if let Some(c) = write_member(&mut tar, m, &wctx, progress, records, &self.records)? {
                    check = c;
                }
            }
            checks.push(check);
        }
        for m in &self.cache {
            write_member(&mut tar, m, &wctx, progress, None, &self.records)?;
        }
        if tar.position().checked_add(END_OF_ARCHIVE.len() as u64) != Some(self.tar_bytes) {
            return Err(HostError::io(
                wctx,
                io::Error::other(format!(
                    "internal error: wrote {} tar bytes, planned {}",
                    tar.position(),
                    self.tar_bytes
                )),
            ));
        }
        let sink = tar.finish().map_err(io_err(wctx.clone()))?;
        progress.set(self.tar_bytes);
        let buffered = sink.finish().map_err(io_err(wctx.clone()))?;
        let counting = buffered.into_inner().map_err(|e| HostError::io(wctx.clone(), e.into_error()))?;
        let Counting { mut inner, count } = counting;
        inner.flush().map_err(io_err(wctx))?;
        Ok(Written { bytes: count, checks })
    }
}

/// What [`Plan::stream`] wrote.
struct Written {
    bytes: u64,
    /// How each snapshot's upper was checked, in plan order.
    checks: Vec<IntegrityCheck>,
}

/// Writes one member; a file is read by its data segments, an upper's integrity checked (see
/// [`read_checked`] for `trusted` and `records`). A sparse member's map must still be the
/// planned one (the plan sized the stream with it); its holes are only hashed.
fn write_member<W: Write>(
    tar: &mut TarWriter<W>,
    m: &Member,
    wctx: &str,
    progress: &Progress,
    trusted: Option<&Records>,
    records: &Records,
) -> Result<Option<IntegrityCheck>, HostError> {
    if let Content::Bytes(bytes) = &m.content {
        tar.append(&m.name, &m.meta, bytes).map_err(io_err(wctx))?;
        progress.set(tar.position());
        return Ok(None);
    }
    let (file, before) = open_member(m)?;
    // Header fields from this handle; only the size had to stay as planned.
    let meta = EntryMeta::from_metadata(&before);
    let reading = || format!("reading {}", shown(&m.source));
    let segments = match &m.sparse {
        Some(planned) => {
            let found = sparse::data_segments(&file, meta.size).map_err(io_err(reading()))?;
            let map = sparse::sparse_map(&found, meta.size, u32::MAX);
            // The same map, or a subset of it (holes punched since, or coalesced at planning).
            let covered = map.as_deref().unwrap_or(&[(0, meta.size)]).iter().all(|&(o, n)| {
                planned.iter().any(|&(po, pn)| po <= o && o.saturating_add(n) <= po.saturating_add(pn))
            });
            if !covered {
                return Err(changed(&m.source));
            }
            tar.begin_sparse(&m.name, &meta, planned).map_err(io_err(wctx))?;
            planned.clone()
        }
        None => {
            tar.begin(&m.name, &meta).map_err(io_err(wctx))?;
            sparse::data_segments(&file, meta.size).map_err(io_err(reading()))?
        }
    };
    let dense = m.sparse.is_none();
    let mut write_error: Option<io::Error> = None;
    let read = read_checked(m, &file, &before, &segments, trusted, records, &mut |chunk| {
        let written = match chunk {
            Chunk::Data(bytes) => tar.data(bytes),
            Chunk::Zeros(n) if dense => tar.zeros(n),
            Chunk::Zeros(_) => Ok(()),
        };
        match written {
            Ok(()) => {
                progress.set(tar.position());
                Ok(())
            }
            Err(e) => {
                write_error = Some(e);
                Err(io::Error::other("the output failed"))
            }
        }
    });
    if let Some(e) = write_error {
        return Err(HostError::io(wctx, e));
    }
    let check = read?;
    tar.end().map_err(io_err(wctx))?;
    Ok(check)
}
