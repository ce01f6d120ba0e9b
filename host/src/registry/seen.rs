//! Where this home has seen blobs in a registry, so that a push to another repository of the
//! same registry can mount them instead of uploading them (as Docker's blob-info cache does;
//! distribution has no way to ask which repositories hold a blob).
//!
//! One file per registry: `<home>/cache/snapbundle/seen/<sha256 of the registry>`, lines of
//! `<digest> <repository>`, appended by every push (each blob is in the target repository
//! after it) and every pull (each blob is in the source repository). A push reads it once
//! (at most [`MAX_BYTES`]; a larger file keeps its newer half), asks for pull access to the
//! [`MAX_SOURCES`] most recently used other repositories when the registry wants tokens, and
//! tries, for a blob the target lacks, a mount from the repositories that had it, newest first
//! ([`MAX_TRIES`] at most). The record is only a hint: a repository that lost the blob, or one
//! the credentials may not read, answers the mount with a new upload session, which the push
//! then uses.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};
use snapbundle_core::registry_artifact::is_sha256_digest;

use crate::home::Home;

/// The most of a registry's record read; when it grows past this, its older half is dropped.
pub const MAX_BYTES: u64 = 4 << 20;
/// Other repositories a push asks token access to.
pub const MAX_SOURCES: usize = 8;
/// Mounts tried per blob.
pub const MAX_TRIES: usize = 3;

/// The record of one registry in one home.
#[derive(Debug, Clone)]
pub struct Seen {
    path: PathBuf,
    /// Repositories by digest, newest last.
    by_digest: HashMap<String, Vec<String>>,
    /// Repositories, most recently recorded last.
    recent: Vec<String>,
}

fn valid_repository(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 255
        && r.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'/'))
}

impl Seen {
    /// Reads the record of `registry` (`host[:port]`); an absent or unreadable one is empty.
    pub fn load(home: &Home, registry: &str) -> Seen {
        let key = snapbundle_core::hex::encode(&Sha256::digest(registry.as_bytes()));
        let path = home.cache.join("snapbundle").join("seen").join(key);
        let mut seen = Seen { path, by_digest: HashMap::new(), recent: Vec::new() };
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(&seen.path) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)));
            let _ = f.take(MAX_BYTES).read_to_string(&mut text);
        }
        for line in text.lines() {
            let Some((digest, repo)) = line.split_once(' ') else { continue };
            if !is_sha256_digest(digest) || !valid_repository(repo) {
                continue;
            }
            let repos = seen.by_digest.entry(digest.to_string()).or_default();
            repos.retain(|r| r != repo);
            repos.push(repo.to_string());
            seen.recent.retain(|r| r != repo);
            seen.recent.push(repo.to_string());
        }
        seen
    }

    /// Up to [`MAX_SOURCES`] repositories other than `target`, most recently recorded first.
    pub fn sources(&self, target: &str) -> Vec<String> {
        self.recent.iter().rev().filter(|r| r.as_str() != target).take(MAX_SOURCES).cloned().collect()
    }

    /// Up to [`MAX_TRIES`] repositories other than `target` that had `digest`, newest first,
    /// among `allowed` (the ones the token covers).
    pub fn holders(&self, digest: &str, target: &str, allowed: &[String]) -> Vec<String> {
        self.by_digest
            .get(digest)
            .map(|repos| {
                repos
                    .iter()
                    .rev()
                    .filter(|r| r.as_str() != target && allowed.contains(r))
                    .take(MAX_TRIES)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Appends that `repository` holds each of `digests`. A record that cannot be written only
    /// costs later mounts; one past [`MAX_BYTES`] is cut to its newer half first.
    pub fn record<'a>(&self, repository: &str, digests: impl IntoIterator<Item = &'a str>) {
        if !valid_repository(repository) {
            return;
        }
        let lines: String = digests
            .into_iter()
            .filter(|d| is_sha256_digest(d))
            .map(|d| format!("{d} {repository}\n"))
            .collect();
        if lines.is_empty() {
            return;
        }
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.path.parent() {
                fs::create_dir_all(dir)?;
            }
            if fs::metadata(&self.path).is_ok_and(|m| m.len() > MAX_BYTES) {
                self.halve()?;
            }
            let mut f = OpenOptions::new().create(true).append(true).open(&self.path)?;
            // One write per call: appends of concurrent pushes do not interleave within a line.
            f.write_all(lines.as_bytes())
        };
        let _ = write();
    }

    /// Keeps the newer half of the record (whole lines), written aside and renamed over it.
    fn halve(&self) -> std::io::Result<()> {
        let mut f = fs::File::open(&self.path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES / 2)))?;
        let mut tail = Vec::new();
        f.take(MAX_BYTES / 2).read_to_end(&mut tail)?;
        let start = tail.iter().position(|b| *b == b'\n').map_or(tail.len(), |i| i + 1);
        crate::publish::publish(&self.path, 0o600, |tmp| tmp.write_all(tail.get(start..).unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn holders_are_the_newest_other_repositories_the_token_covers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::at(dir.path());
        let seen = Seen::load(&home, "r:5000");
        seen.record("snaps/a", [d(1).as_str(), d(2).as_str()]);
        seen.record("snaps/b", [d(1).as_str()]);
        seen.record("snaps/c", [d(3).as_str(), "not-a-digest"]);
        seen.record("Bad Repo", [d(1).as_str()]);
        let seen = Seen::load(&home, "r:5000");
        assert_eq!(seen.sources("snaps/b"), ["snaps/c", "snaps/a"]);
        let all = seen.sources("x");
        assert_eq!(seen.holders(&d(1), "snaps/c", &all), ["snaps/b", "snaps/a"]);
        assert_eq!(seen.holders(&d(1), "snaps/b", &all), ["snaps/a"]);
        assert_eq!(seen.holders(&d(1), "snaps/c", &["snaps/a".to_string()]), ["snaps/a"]);
        assert!(seen.holders(&d(9), "snaps/c", &all).is_empty());
        // Another registry has its own record.
        assert!(Seen::load(&home, "other:5000").sources("x").is_empty());
    }

    #[test]
    fn a_record_past_its_limit_keeps_its_newer_half() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::at(dir.path());
        let seen = Seen::load(&home, "r");
        let line_len = d(0).len() as u64 + " snaps/old\n".len() as u64;
        let n = usize::try_from(MAX_BYTES / line_len + 2).expect("count");
        let old = d(7);
        seen.record("snaps/old", std::iter::repeat_n(old.as_str(), n));
        seen.record("snaps/new", [d(8).as_str()]);
        let len = fs::metadata(&seen.path).expect("record").len();
        assert!(len <= MAX_BYTES / 2 + 128, "{len}");
        let seen = Seen::load(&home, "r");
        assert_eq!(seen.sources("x"), ["snaps/new", "snaps/old"]);
    }
}
