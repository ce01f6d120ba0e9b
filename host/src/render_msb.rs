//! What `inspect` and `verify` print for a microsandbox 0.7 `.msb` archive (the report's `msb`
//! section; `--json` prints the report itself).

use std::fmt::Write as _;

use snapbundle_core::report::{LayerIntegrity, MsbReport, Report};

use crate::display::{container, labels, short, size};
use crate::plural::count;

/// The one-line verdict of `verify` on a `.msb` archive.
pub fn verdict(name: &str, m: &MsbReport) -> String {
    let head_digest = m.snapshots.iter().find(|s| s.is_head).map_or("", |s| s.descriptor_digest.as_str());
    let dependent = if m.dependencies.is_empty() {
        String::new()
    } else {
        format!(", dependent: needs {} from its base", count(m.dependencies.len(), "payload", "payloads"))
    };
    format!(
        "valid: {name}: microsandbox 0.7 archive, {}, head {} ({head_digest}){dependent}\n",
        count(m.snapshots.len(), "snapshot", "snapshots"),
        m.head,
    )
}

/// The `inspect` table of a `.msb` archive.
pub fn inspect(name: &str, r: &Report, m: &MsbReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "archive    {name} (microsandbox 0.7 .msb; {}; {} in, {} of tar, {} entries)",
        container(r),
        size(r.compressed_bytes),
        size(r.decompressed_bytes),
        r.entries
    );
    let _ = writeln!(o, "snapshots  {} ({})", m.snapshots.len(), m.completeness);
    let _ = writeln!(
        o,
        "  {:<3} {:<38} {:<21} {:<38} {:>10}  layers",
        "#", "snapshot", "descriptor", "parent", "size"
    );
    for (i, s) in m.snapshots.iter().enumerate() {
        let parent = match &s.parent {
            None => "-".to_string(),
            Some(p) if s.parent_in_archive => p.clone(),
            Some(p) => format!("{p} (absent)"),
        };
        let _ = writeln!(
            o,
            "  {:<3} {:<38} {:<21} {:<38} {:>10}  {}{}",
            i + 1,
            s.snapshot_id,
            short(&s.descriptor_digest),
            parent,
            if s.scope == "checkpoint" { "checkpoint".to_string() } else { size(s.virtual_size) },
            s.layers.len(),
            if s.is_head { "  [head]" } else { "" }
        );
    }
    if let Some(h) = m.snapshots.iter().find(|s| s.is_head) {
        let _ = writeln!(o, "head       {} ({})", h.snapshot_id, h.descriptor_digest);
        let _ = writeln!(o, "image      {} @ {}", h.image_ref, short(&h.image_manifest_digest));
        if h.scope == "checkpoint" {
            let _ = writeln!(o, "state      checkpoint (see below)");
        } else {
            let _ = writeln!(o, "disk       {} {}, {}", h.disk_format, h.filesystem, size(h.virtual_size));
        }
        if !h.labels.is_empty() {
            let _ = writeln!(o, "labels     {}", labels(&h.labels));
        }
    }
    let _ = writeln!(o, "layers     {}", m.layers.len());
    for l in &m.layers {
        let stored =
            if l.sparse { format!(", sparse: {} stored", size(l.encoded_size)) } else { String::new() };
        let integrity = match &l.integrity {
            LayerIntegrity::NotRecorded => "integrity not recorded".to_string(),
            LayerIntegrity::Verified { algorithm, .. } => format!("{algorithm} verified"),
            LayerIntegrity::NotIncluded { algorithm, .. } => match algorithm {
                Some(a) => format!("not included: the base must provide it ({a})"),
                None => "not included: the base must provide it".to_string(),
            },
        };
        let _ = writeln!(
            o,
            "  {} {:<5} {:>10}{stored}  owner {}  {integrity}",
            l.layer_id,
            l.format,
            size(l.apparent_size),
            l.owner_snapshot
        );
    }
    for c in &m.checkpoints {
        let _ = writeln!(
            o,
            "checkpoint {} of {} ({}, {}): {}, {}, {}, {}{}",
            c.checkpoint_id,
            c.snapshot_id,
            c.architecture,
            c.capture_intent,
            count(c.objects as usize, "object", "objects"),
            count(c.disk_layers as usize, "disk layer", "disk layers"),
            count(c.owned_payloads as usize, "owned payload", "owned payloads"),
            size(c.bytes),
            if c.not_included > 0 { format!(", {} from its base", c.not_included) } else { String::new() }
        );
    }
    if !m.closure.is_empty() {
        let verified = m.closure.iter().filter(|x| x.verified.is_some()).count();
        let _ = writeln!(
            o,
            "closure    {}, {verified} with a verified content digest",
            count(m.closure.len(), "checkpoint or owned-volume member", "checkpoint or owned-volume members")
        );
    }
    if m.images.is_empty() {
        let _ = writeln!(o, "images     none (the image is not in the archive)");
    } else {
        let total: u64 = m.images.iter().map(|i| i.size).sum();
        let _ = writeln!(o, "images     {} ({})", count(m.images.len(), "file", "files"), size(total));
    }
    if !m.requires.is_empty() {
        let _ = writeln!(o, "requires   {}", m.requires.join(", "));
    }
    if !m.dependencies.is_empty() {
        let _ = writeln!(o, "depends on {} of its base:", count(m.dependencies.len(), "payload", "payloads"));
        for d in &m.dependencies {
            let _ = writeln!(o, "             {d}");
        }
    }
    let _ = writeln!(o, "verdict    valid");
    o
}

/// What `convert` (`verb` "converted") or `export --format msb` ("exported") wrote to `out`.
pub fn converted(o: &crate::msb::ConvertOutcome, out: &str, verb: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{verb} {} to a microsandbox {}: {out} ({})",
        count(o.snapshots.len(), "snapshot", "snapshots"),
        match o.to {
            crate::msb::Generation::V07 => "0.7 archive",
            crate::msb::Generation::V062 => "0.6.2 bundle",
        },
        size(o.bytes_written)
    );
    for c in &o.snapshots {
        let head = if c.snapshot_id == o.head { "  (head)" } else { "" };
        let _ = writeln!(
            s,
            "  {} -> {}  descriptor {}{head}",
            short(&c.digest),
            c.snapshot_id,
            short(&c.descriptor_digest)
        );
    }
    for d in &o.dropped {
        let _ = writeln!(s, "  left out: {d}");
    }
    s
}
