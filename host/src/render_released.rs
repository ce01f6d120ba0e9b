//! What `inspect` and `verify` print for a released archive of microsandbox 0.6.7 – 0.6.16 (the
//! report's `released` section; `--json` prints the report itself).

use std::fmt::Write as _;

use snapbundle_core::report::{LayerIntegrity, ReleasedReport, Report};

use crate::display::{container, labels, short, size};
use crate::plural::count;

/// The one-line verdict of `verify` on a released archive.
pub fn verdict(name: &str, g: &ReleasedReport) -> String {
    let id = g.snapshots.iter().find(|s| s.is_head).map_or("", |s| s.snapshot_id.as_str());
    let inventory = if g.inventory { "" } else { ", no archive.json inventory" };
    format!(
        "valid: {name}: microsandbox 0.6.7 - 0.6.16 released archive, {}, head {} ({id}){inventory}\n",
        count(g.snapshots.len(), "snapshot", "snapshots"),
        g.head,
    )
}

/// The `inspect` table of a released archive.
pub fn inspect(name: &str, r: &Report, g: &ReleasedReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "archive    {name} (microsandbox 0.6.7 - 0.6.16 released archive; {}; {} in, {} of tar, {} entries)",
        container(r),
        size(r.compressed_bytes),
        size(r.decompressed_bytes),
        r.entries
    );
    let inventory = if g.inventory {
        "archive.json inventory checked"
    } else {
        "no archive.json: members are bound by their descriptors only"
    };
    let _ = writeln!(o, "snapshots  {} ({inventory})", g.snapshots.len());
    let _ = writeln!(
        o,
        "  {:<3} {:<21} {:<38} {:<21} {:>10}  integrity",
        "#", "digest", "0.7 id", "parent", "upper"
    );
    for (i, s) in g.snapshots.iter().enumerate() {
        let parent = match &s.parent {
            None => "-".to_string(),
            Some(p) if s.parent_in_archive => short(p),
            Some(p) => format!("{} (absent)", short(p)),
        };
        let integrity = match &s.integrity {
            LayerIntegrity::Verified { algorithm, .. } => format!("{algorithm} verified"),
            LayerIntegrity::NotRecorded | LayerIntegrity::NotIncluded { .. } => "not recorded".to_string(),
        };
        let _ = writeln!(
            o,
            "  {:<3} {:<21} {:<38} {:<21} {:>10}  {integrity}{}{}",
            i + 1,
            short(&s.digest),
            s.snapshot_id,
            parent,
            size(s.size_bytes),
            if s.sparse { format!(" (sparse: {} stored)", size(s.encoded_size)) } else { String::new() },
            if s.is_head { "  [head]" } else { "" }
        );
    }
    if let Some(h) = g.snapshots.iter().find(|s| s.is_head) {
        let _ = writeln!(o, "head       {} ({})", h.digest, h.snapshot_id);
        let _ = writeln!(o, "image      {} @ {}", h.image_ref, short(&h.image_manifest_digest));
        let _ = writeln!(o, "disk       {} {}, upper {}", h.format, h.fstype, h.upper_path);
        if !h.labels.is_empty() {
            let _ = writeln!(o, "labels     {}", labels(&h.labels));
        }
    }
    if g.images.is_empty() {
        let _ = writeln!(o, "images     none (the image is not in the archive)");
    } else {
        let total: u64 = g.images.iter().map(|i| i.size).sum();
        let _ = writeln!(o, "images     {} ({})", count(g.images.len(), "file", "files"), size(total));
    }
    if !g.requires.is_empty() {
        let _ = writeln!(o, "requires   {}", g.requires.join(", "));
    }
    let _ = writeln!(o, "verdict    valid");
    o
}
