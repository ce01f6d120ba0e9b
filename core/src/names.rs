//! Member name grammar: which slot of the bundle layout a tar member fills.
//!
//! The layout (`docs/format-0.6.2.md` §6.4, closed as `docs/hostile-inputs.md` §1.1 asks):
//! - `<prefix>` directory and `<prefix>/<file>` regular files: a snapshot directory;
//! - `cache` and `cache/<kind>` directories, `cache/<kind>/<file>` regular files, with kind one of
//!   `manifests` (`*.json`), `layers` (`*.erofs`), `fsmeta` (`*.erofs`), `vmdk` (`*.vmdk`).
//!
//! Every component must be a plain, portable file name. Rejected, never normalised: absolute
//! names, `.`/`..`, empty components (`//`), backslashes, NUL and control characters, `:` and the
//! other characters Windows forbids, trailing dots or spaces, Windows device names (`CON`,
//! `NUL.txt`, `COM1`, ...), components over 255 bytes, and non-UTF-8. A directory may carry one
//! trailing `/` (GNU tar writes it); a regular file may not. A snapshot prefix may not start with
//! `.`: those names are reserved for staging directories in the store.

use crate::cache_meta::CacheKind;
use crate::error::TarError;

/// The slot a member fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot<'a> {
    /// A snapshot directory entry `<prefix>/`.
    SnapshotDir {
        /// The prefix.
        prefix: &'a str,
    },
    /// A file inside a snapshot directory.
    SnapshotFile {
        /// The prefix.
        prefix: &'a str,
        /// The file name.
        file: &'a str,
    },
    /// The `cache/` directory entry.
    CacheRoot,
    /// A `cache/<kind>/` directory entry.
    CacheDir {
        /// The kind.
        kind: CacheKind,
    },
    /// A file `cache/<kind>/<file>`.
    CacheFile {
        /// The kind.
        kind: CacheKind,
        /// The file name.
        file: &'a str,
    },
    /// A member of a microsandbox 0.7 `.msb` archive (its path is [`crate::MemberStart::path`]):
    /// its inventory kind, `None` for `archive.json`.
    Msb {
        /// The kind its path implies.
        kind: Option<crate::generation::g3::inventory::EntryKind>,
    },
}

impl Slot<'_> {
    /// Whether the slot is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self, Slot::SnapshotDir { .. } | Slot::CacheRoot | Slot::CacheDir { .. })
    }
}

const WINDOWS_DEVICES: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9",
    "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Checks one path component against the portable-name rules.
pub fn check_component(c: &str) -> Result<(), TarError> {
    if c.is_empty() {
        return Err(TarError::UnsafePath("empty path component (leading, doubled or trailing '/')"));
    }
    if c == "." || c == ".." {
        return Err(TarError::UnsafePath("'.' or '..' component"));
    }
    if c.len() > 255 {
        return Err(TarError::UnsafePath("component longer than 255 bytes"));
    }
    if c.contains('\\') {
        return Err(TarError::UnsafePath("backslash in name"));
    }
    if c.chars().any(|ch| ch.is_control()) {
        return Err(TarError::UnsafePath("control character in name"));
    }
    if c.contains([':', '<', '>', '"', '|', '?', '*']) {
        return Err(TarError::UnsafePath("character that Windows forbids in file names (: < > \" | ? *)"));
    }
    if c.ends_with('.') || c.ends_with(' ') {
        return Err(TarError::UnsafePath("name ends with a dot or a space"));
    }
    let stem = c.split('.').next().unwrap_or(c).trim_end_matches(' ');
    if WINDOWS_DEVICES.iter().any(|d| d.eq_ignore_ascii_case(stem)) {
        return Err(TarError::UnsafePath("Windows device name"));
    }
    Ok(())
}

/// The key under which two member paths count as duplicates: the path without a directory's
/// trailing `/`, ASCII letters folded to lower case. Two members with the same key would land on
/// the same file on a case-insensitive filesystem, so the validator rejects the second and export
/// refuses to write it.
pub fn duplicate_key(path: &str) -> alloc::string::String {
    path.strip_suffix('/').unwrap_or(path).to_ascii_lowercase()
}

/// Classifies a member name. `is_dir` says whether the entry is a directory.
pub fn classify(raw: &[u8], is_dir: bool) -> Result<Slot<'_>, TarError> {
    let name = core::str::from_utf8(raw).map_err(|_| TarError::NonUtf8Name)?;
    if name.is_empty() {
        return Err(TarError::UnsafePath("empty name"));
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Err(TarError::UnsafePath("absolute path"));
    }
    let body = if is_dir { name.strip_suffix('/').unwrap_or(name) } else { name };
    let mut parts = body.split('/');
    let first = parts.next().unwrap_or("");
    let second = parts.next();
    let third = parts.next();
    let fourth = parts.next();
    for c in [Some(first), second, third, fourth].into_iter().flatten() {
        check_component(c)?;
    }
    if fourth.is_some() {
        return Err(TarError::UnexpectedMember("too many path components"));
    }
    if first == "cache" {
        return match (second, third, is_dir) {
            (None, None, true) => Ok(Slot::CacheRoot),
            (Some(kind), None, true) => CacheKind::from_dir(kind).map(|kind| Slot::CacheDir { kind }).ok_or(
                TarError::UnexpectedMember("unknown cache kind (expected manifests, layers, fsmeta or vmdk)"),
            ),
            (Some(kind), Some(file), false) => {
                let kind = CacheKind::from_dir(kind).ok_or(TarError::UnexpectedMember(
                    "unknown cache kind (expected manifests, layers, fsmeta or vmdk)",
                ))?;
                let ext = match kind {
                    CacheKind::Manifests => ".json",
                    CacheKind::Layers | CacheKind::Fsmeta => ".erofs",
                    CacheKind::Vmdk => ".vmdk",
                };
                match file.strip_suffix(ext) {
                    Some(stem) if !stem.is_empty() && !stem.starts_with('.') => {
                        Ok(Slot::CacheFile { kind, file })
                    }
                    _ => Err(TarError::UnexpectedMember("cache file name does not fit its kind's extension")),
                }
            }
            (_, _, true) => Err(TarError::UnexpectedMember("cache directory deeper than cache/<kind>")),
            (_, _, false) => Err(TarError::UnexpectedMember("cache file outside cache/<kind>/<file>")),
        };
    }
    if first.starts_with('.') {
        return Err(TarError::UnexpectedMember("snapshot directory names may not start with '.'"));
    }
    match (second, third, is_dir) {
        (None, None, true) => Ok(Slot::SnapshotDir { prefix: first }),
        (Some(file), None, false) => Ok(Slot::SnapshotFile { prefix: first, file }),
        (None, None, false) => Err(TarError::UnexpectedMember("regular file at the top level")),
        (Some(_), _, true) => Err(TarError::UnexpectedMember("directory inside a snapshot directory")),
        (Some(_), Some(_), false) => {
            Err(TarError::UnexpectedMember("file nested below a snapshot directory"))
        }
        (None, Some(_), _) => Err(TarError::UnexpectedMember("malformed path")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(name: &str, dir: bool) -> &'static str {
        classify(name.as_bytes(), dir).map(|_| "ok").unwrap_or_else(|e| e.code())
    }

    #[test]
    fn duplicate_keys_fold_ascii_case_and_a_directory_slash() {
        assert_eq!(duplicate_key("Sha256-AB/Upper.EXT4"), "sha256-ab/upper.ext4");
        assert_eq!(duplicate_key("cache/"), duplicate_key("CACHE"));
        assert_ne!(duplicate_key("a/b"), duplicate_key("a/c"));
    }

    #[test]
    fn accepts_the_layout() {
        assert_eq!(
            classify(b"sha256-11edd65409da406c/manifest.json", false),
            Ok(Slot::SnapshotFile { prefix: "sha256-11edd65409da406c", file: "manifest.json" })
        );
        assert_eq!(classify(b"sha256-x/", true), Ok(Slot::SnapshotDir { prefix: "sha256-x" }));
        assert_eq!(classify(b"cache/", true), Ok(Slot::CacheRoot));
        assert_eq!(classify(b"cache/layers", true), Ok(Slot::CacheDir { kind: CacheKind::Layers }));
        assert_eq!(
            classify(b"cache/vmdk/sha256_ab.vmdk", false),
            Ok(Slot::CacheFile { kind: CacheKind::Vmdk, file: "sha256_ab.vmdk" })
        );
    }

    #[test]
    fn unsafe_paths_are_rejected() {
        for name in [
            "/x/manifest.json",
            "//x",
            "\\\\?\\x",
            "C:\\x",
            "a/../b",
            "../a",
            "./a/b",
            "a/./b",
            ".",
            "//////",
            "a//b",
            "a\\b",
            "CON/x",
            "a/NUL.txt",
            "a/b.",
            "a/b ",
            "a:b/c",
            "a/\u{1}b",
            "",
        ] {
            assert_eq!(err(name, false), "unsafe_path", "{name:?}");
        }
        assert_eq!(classify(b"a/\xff", false), Err(TarError::NonUtf8Name));
    }

    #[test]
    fn names_outside_the_grammar_are_unexpected() {
        for (name, dir) in [
            ("a/b/c", false),
            ("cache/layers/x.so", false),
            ("cache/tmp/x", false),
            ("cache/blobs/", true),
            ("cache/layers/x/", true),
            ("toplevel", false),
            ("snap/sub/", true),
            ("cache/manifests/.json", false),
            (".msb-snapshot-import-1/manifest.json", false),
            ("cache", false),
        ] {
            assert_eq!(err(name, dir), "unexpected_member", "{name:?}");
        }
    }

    #[test]
    fn regular_files_may_not_end_with_slash() {
        assert_eq!(err("snap/manifest.json/", false), "unsafe_path");
    }
}
