//! Human-readable rendering: reports and the text every command prints on standard output.

use std::fmt::Write as _;

use crate::display::{container, labels};
pub use crate::display::{short, size};
use crate::plural::count;

use snapbundle_core::report::{IntegrityStatus, Report};

use crate::export::{ExportOutcome, IntegrityCheck};
use crate::import::ImportOutcome;
use crate::index::IndexOutcome;
use crate::promote::Recovery;
use crate::registry::blobs::CacheGc;
use crate::registry::spool::SpoolGc;
use crate::registry::{PullOutcome, PushOutcome};
use crate::store::Listed;

/// The `inspect` table.
pub fn inspect(name: &str, r: &Report) -> String {
    if let Some(m) = &r.msb {
        return crate::render_msb::inspect(name, r, m);
    }
    if let Some(g) = &r.released {
        return crate::render_released::inspect(name, r, g);
    }
    let mut o = String::new();
    let container = container(r);
    let _ = writeln!(
        o,
        "bundle     {name} ({container}; {} in, {} of tar, {} entries)",
        size(r.compressed_bytes),
        size(r.decompressed_bytes),
        r.entries
    );
    let _ = writeln!(o, "snapshots  {}", r.snapshots.len());
    let _ = writeln!(
        o,
        "  {:<3} {:<24} {:<21} {:<21} {:>10}  integrity",
        "#", "directory", "digest", "parent", "upper"
    );
    for (i, s) in r.snapshots.iter().enumerate() {
        let parent = match &s.parent {
            None => "-".to_string(),
            Some(p) if s.parent_in_bundle => short(p),
            Some(p) => format!("{} (absent)", short(p)),
        };
        let integrity = match &s.integrity {
            IntegrityStatus::NotRecorded => "not recorded".to_string(),
            IntegrityStatus::Verified { algorithm, .. } => format!("{algorithm} verified"),
        };
        let _ = writeln!(
            o,
            "  {:<3} {:<24} {:<21} {:<21} {:>10}  {integrity}{}",
            i + 1,
            s.prefix,
            short(&s.digest),
            parent,
            size(s.size_bytes),
            if s.is_head { "  [head]" } else { "" }
        );
    }
    let chain = chain(r);
    let _ = writeln!(o, "chain      {chain}");
    if let Some(h) = r.head_snapshot() {
        let _ = writeln!(o, "head       {} ({})", h.digest, h.prefix);
        let _ = writeln!(o, "image      {} @ {}", h.image_ref, short(&h.image_manifest_digest));
        if !h.labels.is_empty() {
            let _ = writeln!(o, "labels     {}", labels(&h.labels));
        }
    }
    match &r.cache {
        None => {
            let _ = writeln!(o, "cache      none (the image is not bundled)");
        }
        Some(c) => {
            let _ = writeln!(
                o,
                "cache      {} ({}, {} files)",
                c.image_ref,
                count(c.layers, "layer", "layers"),
                c.files.len()
            );
            for f in &c.files {
                let _ = writeln!(o, "             {f}");
            }
        }
    }
    let _ = writeln!(o, "verdict    valid");
    o
}

/// The chain from root to head, e.g. `a → b → c (head)`.
pub fn chain(r: &Report) -> String {
    let mut parts = Vec::new();
    let mut cur = r.head_snapshot();
    while let Some(s) = cur {
        parts.push(s.prefix.clone());
        cur = s
            .parent
            .as_ref()
            .filter(|_| s.parent_in_bundle)
            .and_then(|p| r.snapshots.iter().find(|x| &x.digest == p));
        if parts.len() > r.snapshots.len() {
            break;
        }
    }
    let root_has_absent_parent = r
        .snapshots
        .iter()
        .find(|s| Some(&s.prefix) == parts.last())
        .is_some_and(|s| s.parent.is_some() && !s.parent_in_bundle);
    parts.reverse();
    let mut text = parts.join(" → ");
    if root_has_absent_parent {
        text = format!("(parent not bundled) → {text}");
    }
    text.push_str(" (head)");
    text
}

/// The one-line verdict of `verify` on a bundle.
pub fn verdict(name: &str, r: &Report) -> String {
    if let Some(m) = &r.msb {
        return crate::render_msb::verdict(name, m);
    }
    if let Some(g) = &r.released {
        return crate::render_released::verdict(name, g);
    }
    format!(
        "valid: {name}: {}, head {} ({}){}\n",
        count(r.snapshots.len(), "snapshot", "snapshots"),
        r.head,
        r.head_prefix,
        if r.cache.is_some() { ", with image cache" } else { "" }
    )
}

/// The verdict of `verify` on a stored snapshot.
pub fn integrity(status: &IntegrityStatus) -> String {
    match status {
        IntegrityStatus::Verified { algorithm, digest } => format!("verified ({algorithm} {digest})\n"),
        IntegrityStatus::NotRecorded => "not recorded (metadata checks only)\n".to_string(),
    }
}

/// What an import put in place: the snapshots and the head (as `import` and `pull` print it).
pub fn imported(out: &ImportOutcome) -> String {
    format!(
        "imported {}\nhead   {}\nname   {}\npath   {}\n",
        count(out.snapshots.len(), "snapshot", "snapshots"),
        out.head_digest,
        out.head_name,
        out.head_path.display()
    )
}

/// What `import` prints: [`imported`], then the image cache and the index. A failed index
/// update is only referred to here: the caller warns about it on standard error.
pub fn import(out: &ImportOutcome) -> String {
    let mut text = imported(out);
    if !out.cache_installed.is_empty() || !out.cache_reused.is_empty() {
        let _ = writeln!(
            text,
            "cache  {} installed, {} already present",
            out.cache_installed.len(),
            out.cache_reused.len()
        );
    }
    let _ = match &out.index {
        IndexOutcome::Updated { rows } => writeln!(text, "index  {} updated", count(*rows, "row", "rows")),
        IndexOutcome::Absent { hint } => writeln!(text, "index  {hint}"),
        IndexOutcome::Failed { .. } => writeln!(text, "index  not updated (see the warning)"),
    };
    text
}

/// What `export` prints for a bundle written to `path`.
pub fn export(out: &ExportOutcome, path: &str) -> String {
    let mut text = format!(
        "exported {} ({} of tar, {} written{})\n",
        count(out.snapshots.len(), "snapshot", "snapshots"),
        size(out.tar_bytes),
        size(out.bytes_written),
        if out.cache_files.is_empty() {
            String::new()
        } else {
            format!(", {}", count(out.cache_files.len(), "cache file", "cache files"))
        }
    );
    for s in &out.snapshots {
        let how = match s.integrity {
            IntegrityCheck::NotRecorded => "integrity not recorded",
            IntegrityCheck::Hashed => "integrity verified (hashed)",
            IntegrityCheck::Record => "integrity verified earlier, upper unchanged since (--rehash to hash)",
        };
        let _ = writeln!(text, "{}  {how}", s.prefix);
    }
    let _ = writeln!(text, "head   {}\n{path}", out.head);
    text
}

/// What `push` prints.
pub fn push(out: &PushOutcome) -> String {
    let mounted = if out.mounted > 0 { format!(", {} mounted", out.mounted) } else { String::new() };
    let resumed = if out.resumed > 0 {
        format!(
            "; {} continued where the registry stood ({} sent)",
            count(out.resumed, "upload", "uploads"),
            size(out.bytes_sent)
        )
    } else {
        String::new()
    };
    let mut text = format!(
        "pushed {} to {}\nhead     {}\nmanifest {}\nblobs    {} uploaded ({}), {} already there{mounted}{resumed}; read {} of {}, {:.1} s\n",
        count(out.snapshots.len(), "snapshot", "snapshots"),
        out.reference,
        out.head,
        out.manifest_digest,
        out.uploaded,
        size(out.bytes_uploaded),
        out.skipped,
        size(out.bytes_read),
        size(out.member_bytes),
        out.seconds
    );
    credentials_line(&mut text, out.credentials_sent_to.as_deref());
    text
}

/// Says where the credentials went when the registry's token endpoint is another host.
fn credentials_line(text: &mut String, sent_to: Option<&str>) {
    if let Some(host) = sent_to {
        let _ = writeln!(text, "auth     credentials sent to the registry's token endpoint at {host}");
    }
}

/// What `pull` prints; `output` is the `-o` file, if any.
pub fn pull(out: &PullOutcome, output: Option<&str>) -> String {
    let mut text = format!(
        "pulled {} ({} blobs: {} downloaded, {} resumed, {} from the cache; {} in {:.1} s)\n",
        out.reference,
        out.blobs,
        out.downloaded,
        out.resumed,
        out.cached,
        size(out.bytes_downloaded),
        out.seconds
    );
    if let Some(i) = &out.import {
        text.push_str(&imported(i));
    }
    if let Some(b) = &out.bundle {
        let _ = writeln!(text, "head   {}\n{}", b.head, output.unwrap_or_default());
    }
    credentials_line(&mut text, out.credentials_sent_to.as_deref());
    text
}

/// The `list` table (`quiet`: digests only). Columns are as wide as their widest cell (at
/// least as wide as they always were), so that they line up whatever the names, sizes and
/// timestamps.
pub fn list(entries: &[Listed], quiet: bool) -> String {
    if quiet {
        return entries
            .iter()
            .filter_map(|(_, s)| s.as_ref().ok())
            .map(|s| format!("{}\n", s.digest))
            .collect();
    }
    let rows: Vec<Result<[String; 5], (String, String)>> = entries
        .iter()
        .map(|(path, opened)| match opened {
            Ok(s) => Ok([
                s.name(),
                short(&s.digest),
                size(s.manifest.upper.size_bytes),
                s.manifest.created_at.clone(),
                s.manifest.image.reference.clone(),
            ]),
            Err(e) => Err((
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                e.to_string(),
            )),
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let header = ["NAME", "DIGEST", "SIZE", "CREATED", "IMAGE"].map(String::from);
    let mut widths = [28, 21, 10, 25, 0];
    for cells in rows.iter().filter_map(|r| r.as_ref().ok()).chain([&header]) {
        for (w, cell) in widths.iter_mut().zip(cells) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for (name, _) in rows.iter().filter_map(|r| r.as_ref().err()) {
        widths[0] = widths[0].max(name.chars().count());
    }
    let [name_w, digest_w, size_w, created_w, _] = widths;
    let line = |[name, digest, size, created, image]: &[String; 5]| {
        format!("{name:<name_w$} {digest:<digest_w$} {size:>size_w$}  {created:<created_w$} {image}\n")
    };
    let mut text = line(&header);
    for row in &rows {
        match row {
            Ok(cells) => text.push_str(&line(cells)),
            Err((name, error)) => {
                let _ = writeln!(text, "{name:<name_w$} invalid: {error}");
            }
        }
    }
    text
}

/// What `gc` prints: the stages it recovered, then each kind of record and cache it cleaned.
pub fn gc(
    rec: &Recovery,
    verification_records: usize,
    push_records: usize,
    pulled: &CacheGc,
    spooled: &SpoolGc,
    sessions: usize,
    outputs: usize,
) -> String {
    let cache = if pulled.in_use {
        "left the pull blob cache alone (a pull is running)".to_string()
    } else {
        format!(
            "removed {} and {} ({}) from the pull cache",
            count(pulled.blobs_removed, "pulled blob", "pulled blobs"),
            count(pulled.parts_removed, "partial download", "partial downloads"),
            count(pulled.bytes_removed, "byte", "bytes")
        )
    };
    let running = match spooled.in_use {
        0 => String::new(),
        n => format!(", left {n} of running pushes"),
    };
    format!(
        "rolled forward {}, removed {}, left {} running; removed {} and {}; {cache}; removed {} ({}){running}; removed {}; removed {}\n",
        rec.rolled_forward.len(),
        rec.removed.len(),
        rec.running.len(),
        count(verification_records, "stale verification record", "stale verification records"),
        count(push_records, "stale push record", "stale push records"),
        count(spooled.dirs_removed, "push spool directory", "push spool directories"),
        count(spooled.bytes_removed, "byte", "bytes"),
        count(sessions, "week-old upload session record", "week-old upload session records"),
        count(outputs, "temporary output file of a killed process", "temporary output files of killed processes"),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::size(0), "0 B");
        assert_eq!(super::size(1536), "1.5 KiB");
        assert_eq!(super::size(8 << 20), "8.0 MiB");
    }

    #[test]
    fn counts() {
        assert_eq!(super::count(0usize, "snapshot", "snapshots"), "0 snapshots");
        assert_eq!(super::count(1u32, "snapshot", "snapshots"), "1 snapshot");
        assert_eq!(super::count(2u64, "directory", "directories"), "2 directories");
    }
}
