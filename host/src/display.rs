//! Small text forms every rendering shares: sizes, shortened digests, the container.

use snapbundle_core::report::Report;

use crate::plural::count;

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

/// A digest shortened for a table: `sha256:` and the first 12 hex digits, then `…`.
pub fn short(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}…", &hex[..12]),
        _ => digest.to_string(),
    }
}

/// `zstd, 1 frame` or `plain tar`.
pub fn container(r: &Report) -> String {
    match r.container {
        snapbundle_core::report::Container::Zstd => {
            format!("zstd, {}", count(r.zstd_frames, "frame", "frames"))
        }
        snapbundle_core::report::Container::Tar => "plain tar".to_string(),
    }
}

/// Labels as `key=value, …`, escaped (they are data from the archive).
pub fn labels(labels: &std::collections::BTreeMap<String, String>) -> String {
    let parts: Vec<String> =
        labels.iter().map(|(k, v)| format!("{}={}", k.escape_debug(), v.escape_debug())).collect();
    parts.join(", ")
}
