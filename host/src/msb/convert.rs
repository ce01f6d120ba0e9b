//! `convert`: an archive of one generation into the other, in one streaming pass (0.6.2 → 0.7:
//! [`super::forward`]; 0.7 → 0.6.2: [`super::backward`]). The input is
//! validated as `verify` validates it while the output is written; a file output is published
//! atomically ([`crate::publish`]) only once the input was found valid, a stream output is cut
//! short (no inventory, no end of archive, no end of the zstd frame) when it was not.

use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use snapbundle_core::report::Generation as ReportGeneration;
use snapbundle_core::{Limits, Report};

use super::backward::Backwarder;
use super::forward::{Converted, ForwardFailure, Forwarder};
use super::writer::MsbWriter;
use crate::check;
use crate::compress::{compressor, Compression, Counting, DEFAULT_LEVEL};
use crate::error::{shown, HostError};
use crate::export::ExportTarget;
use crate::progress::Progress;
use crate::publish::{output_parent, publish_new_output, OutputJournal};
use crate::tar_writer::TarWriter;

/// An archive generation `convert` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Generation {
    /// A microsandbox 0.6.2 bundle.
    #[serde(rename = "0.6.2")]
    V062,
    /// A microsandbox 0.7 `.msb` archive.
    #[serde(rename = "0.7")]
    V07,
}

/// Conversion settings.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// The generation to write.
    pub to: Generation,
    /// Limits the input must stay within (and the output's sparse maps).
    pub limits: Limits,
    /// Write a plain tar instead of one zstd frame.
    pub plain_tar: bool,
    /// zstd level (0.7.13 writes 3).
    pub level: i32,
    /// zstd worker threads (0: one per core, at most four).
    pub threads: u32,
    /// The `.msb` archive's `suggested_name` (the group name 0.7 proposes on load).
    pub suggested_name: Option<String>,
    /// Length of the input when known (progress).
    pub input_len: Option<u64>,
    /// Draw no progress bar.
    pub quiet: bool,
    /// 0.7 → 0.6.2: carry each snapshot's 0.7 descriptor in its directory, so that converting
    /// back gives the same ids (0.6.2 keeps the extra file; 0.7.13 refuses a bundle with it).
    pub carry: bool,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            to: Generation::V07,
            limits: Limits::DEFAULT,
            plain_tar: false,
            level: DEFAULT_LEVEL,
            threads: 0,
            suggested_name: None,
            input_len: None,
            quiet: true,
            carry: true,
        }
    }
}

/// What a conversion did.
#[derive(Debug, Clone, Serialize)]
pub struct ConvertOutcome {
    /// The input's generation.
    pub from: ReportGeneration,
    /// The output's generation.
    pub to: Generation,
    /// Every snapshot, parents first.
    pub snapshots: Vec<Converted>,
    /// The head's id in the output.
    pub head: String,
    /// Bytes of output written.
    pub bytes_written: u64,
    /// Bytes of the output's tar stream.
    pub tar_bytes: u64,
    /// The output file, if any.
    pub path: Option<PathBuf>,
    /// Members of the input the output leaves out, by path: files of a 0.6.2 snapshot
    /// directory other than its manifest and upper (0.7 has no place for them), payloads of a
    /// 0.7 archive no snapshot uses.
    pub dropped: Vec<String>,
    /// The input's validation report.
    pub report: Report,
}

/// What [`stream`] produced.
struct Streamed {
    report: Report,
    snapshots: Vec<Converted>,
    dropped: Vec<String>,
    bytes: u64,
    tar_bytes: u64,
}

/// Converts the archive read from `reader` (named `name` in messages) into `target`.
/// `journal` notes a file output's temporary file while it exists (see [`OutputJournal`]).
pub fn convert(
    reader: &mut dyn Read,
    name: &str,
    target: ExportTarget<'_>,
    opts: &ConvertOptions,
    journal: Option<&OutputJournal>,
) -> Result<ConvertOutcome, HostError> {
    let mut peeked = crate::input::peek_generation(reader, opts.limits)
        .map_err(|e| HostError::io(format!("reading {name}"), e))?;
    if peeked.generation == Some(ReportGeneration::G2) {
        return Err(crate::input::released_refusal(name, "convert"));
    }
    let reader = &mut peeked.reader;
    let progress = Progress::new("converting", opts.input_len, opts.quiet);
    let (streamed, path) = match target {
        ExportTarget::File(path) => {
            (to_file(reader, name, path, opts, journal, &progress)?, Some(path.to_path_buf()))
        }
        ExportTarget::Stdout => {
            (stream(reader, name, io::stdout().lock(), opts, &std::env::temp_dir(), &progress)?, None)
        }
        ExportTarget::Writer(w) => (stream(reader, name, w, opts, &std::env::temp_dir(), &progress)?, None),
    };
    progress.finish();
    let head = streamed.snapshots.last().map(|s| s.snapshot_id.clone()).unwrap_or_default();
    Ok(ConvertOutcome {
        from: streamed.report.generation,
        to: opts.to,
        snapshots: streamed.snapshots,
        head,
        bytes_written: streamed.bytes,
        tar_bytes: streamed.tar_bytes,
        path,
        dropped: streamed.dropped,
        report: streamed.report,
    })
}

fn to_file(
    reader: &mut dyn Read,
    name: &str,
    path: &Path,
    opts: &ConvertOptions,
    journal: Option<&OutputJournal>,
    progress: &Progress,
) -> Result<Streamed, HostError> {
    let parent = output_parent(path)?;
    let label = shown(path);
    let r =
        publish_new_output(path, 0o666, journal, |file| stream(reader, name, file, opts, &parent, progress));
    r.map_err(|e| match e {
        HostError::Io { context, source } if context == WRITING => {
            HostError::io(format!("writing {label}"), source)
        }
        e => e,
    })
}

/// Validates the input while writing the converted archive into `out`; spools go to
/// `spool_dir`. On failure nothing more is written (the output is cut short).
fn stream<W: Write>(
    reader: &mut dyn Read,
    name: &str,
    out: W,
    opts: &ConvertOptions,
    spool_dir: &Path,
    progress: &Progress,
) -> Result<Streamed, HostError> {
    let how = Compression { plain: opts.plain_tar, level: opts.level, threads: opts.threads };
    let buffered = BufWriter::with_capacity(1 << 20, Counting { inner: out, count: 0 });
    let sink = compressor(buffered, how, None).map_err(|e| HostError::io("setting up zstd", e))?;
    let fail = |f| failure(name, f);
    let (sink, report, snapshots, dropped, tar_bytes) = match opts.to {
        Generation::V07 => {
            let writer = MsbWriter::new(sink, opts.limits.max_sparse_segments);
            let mut fwd = Forwarder::new(writer, spool_dir.to_path_buf());
            let report =
                check::run(reader, name, opts.limits, &mut fwd, progress, &mut |f| fail(f.take_failure()))?;
            let (sink, tar_bytes, snapshots, dropped) =
                fwd.finish(&report, opts.suggested_name.as_deref()).map_err(|f| fail(Some(f)))?;
            (sink, report, snapshots, dropped, tar_bytes)
        }
        Generation::V062 => {
            let mut back = Backwarder::new(spool_dir.to_path_buf(), opts.carry);
            let report =
                check::run(reader, name, opts.limits, &mut back, progress, &mut |b| fail(b.take_failure()))?;
            let mut tar = TarWriter::new(sink);
            let (snapshots, dropped) = back.finish(&mut tar).map_err(|f| fail(Some(f)))?;
            let tar_bytes = tar.position().saturating_add(crate::tar_writer::END_OF_ARCHIVE.len() as u64);
            let sink = tar.finish().map_err(|e| HostError::io(WRITING, e))?;
            (sink, report, snapshots, dropped, tar_bytes)
        }
    };
    let buffered = sink.finish().map_err(|e| HostError::io(WRITING, e))?;
    let counting = buffered.into_inner().map_err(|e| HostError::io(WRITING, e.into_error()))?;
    let Counting { mut inner, count } = counting;
    inner.flush().map_err(|e| HostError::io(WRITING, e))?;
    Ok(Streamed { report, snapshots, dropped, bytes: count, tar_bytes })
}

/// The context of an error writing the output (renamed for a file output by [`to_file`]).
const WRITING: &str = "writing the output";

fn failure(name: &str, f: Option<ForwardFailure>) -> HostError {
    match f {
        Some(ForwardFailure::Unrepresentable { snapshot, reason }) => {
            HostError::Unrepresentable { snapshot, reason }
        }
        Some(ForwardFailure::Io(e)) => HostError::io(WRITING, e),
        Some(ForwardFailure::WrongGeneration(what)) => HostError::Usage(format!("{name} {what}")),
        None => HostError::Usage("the conversion stopped".into()),
    }
}
