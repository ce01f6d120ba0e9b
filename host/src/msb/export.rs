//! `export --format msb`: a snapshot of a 0.6.2 home as a microsandbox 0.7 `.msb` archive. The
//! 0.6.2 export ([`crate::export`], with all its checks) streams a plain tar through a pipe into
//! [`super::convert()`], so the archive is byte for byte what `convert --to 0.7` writes for the
//! bundle `export` writes of the same snapshots.

use super::convert::{convert, ConvertOptions, ConvertOutcome};
use crate::error::HostError;
use crate::export::{plan, ExportOptions, ExportTarget};
use crate::home::Home;
use crate::progress::Progress;
use crate::publish::OutputJournal;

/// Exports `snapshot_arg` (as [`crate::export::export`] takes it) to `target` as a `.msb`
/// archive; `export` chooses the snapshots (parents, image files), `convert` the archive's
/// compression and name.
pub fn export_msb(
    home: &Home,
    snapshot_arg: &str,
    target: ExportTarget<'_>,
    export: &ExportOptions,
    convert_opts: &ConvertOptions,
) -> Result<ConvertOutcome, HostError> {
    // Plain and sparse: holes are neither read nor piped; the conversion sees the same events
    // as from a dense member (holes are detected in both).
    let inner = ExportOptions { plain_tar: true, sparse: true, ..export.clone() };
    let plan = plan(home, snapshot_arg, &inner)?;
    let name = format!("snapshot {snapshot_arg}");
    let opts = ConvertOptions { input_len: Some(plan.tar_bytes()), ..convert_opts.clone() };
    let journal = OutputJournal::of(home);
    let plan = &plan;
    let (exported, converted) = crate::piped::read_here(
        |w| plan.write(ExportTarget::Writer(w), &Progress::hidden()),
        |r| convert(r, &name, target, &opts, Some(&journal)),
        "exporting",
    )?;
    // An export that failed (a file changed, an integrity mismatch) cut the stream short; its
    // own error says why, not the truncation the conversion saw.
    match (exported, converted) {
        (Err(e), Err(HostError::Invalid(_))) => Err(e),
        (_, c) => c,
    }
}
