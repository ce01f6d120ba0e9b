//! Human-readable rendering of reports.

use std::fmt::Write as _;

use snapbundle_core::report::{IntegrityStatus, Report};

/// `1536` → `1.5 KiB`.
pub fn size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn short(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}…", &hex[..12]),
        _ => digest.to_string(),
    }
}

/// The `inspect` table.
pub fn inspect(name: &str, r: &Report) -> String {
    let mut o = String::new();
    let container = match r.container {
        snapbundle_core::report::Container::Zstd => {
            format!("zstd, {} frame{}", r.zstd_frames, if r.zstd_frames == 1 { "" } else { "s" })
        }
        snapbundle_core::report::Container::Tar => "plain tar".to_string(),
    };
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
            let labels: Vec<String> =
                h.labels.iter().map(|(k, v)| format!("{}={}", k.escape_debug(), v.escape_debug())).collect();
            let _ = writeln!(o, "labels     {}", labels.join(", "));
        }
    }
    match &r.cache {
        None => {
            let _ = writeln!(o, "cache      none (the image is not bundled)");
        }
        Some(c) => {
            let _ = writeln!(
                o,
                "cache      {} ({} layer{}, {} files)",
                c.image_ref,
                c.layers,
                if c.layers == 1 { "" } else { "s" },
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

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::size(0), "0 B");
        assert_eq!(super::size(1536), "1.5 KiB");
        assert_eq!(super::size(8 << 20), "8.0 MiB");
    }
}
