//! Upload sessions a push left unfinished, so that the next push of the same blob to the same
//! repository continues where the registry stands instead of from byte 0:
//! `<home>/cache/snapbundle/uploads/<key>`, the key being the sha256 of
//! `<registry>/<repository>@<digest>`, holding the session's location. A record is written after
//! every chunk the registry took and removed when the blob is complete. It is only a hint: the
//! registry is asked where the session stands (`GET <location>`, same origin only), and a
//! session it no longer knows starts over. A push's blob is the same bytes every time (fixed
//! zstd level, single-threaded, pledged size), which is what makes continuing it sound.
//! Registries purge unfinished uploads after a while (distribution: a week), so [`gc`] drops
//! records older than [`MAX_AGE`].

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use crate::home::Home;

/// Age past which [`gc`] removes a record: the distribution registry purges unfinished uploads
/// older than a week by default.
pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The most of a record read (a location is a URL).
const MAX_RECORD_BYTES: u64 = 8 << 10;

/// The upload-session records of a home.
#[derive(Debug, Clone)]
pub(crate) struct Sessions {
    dir: PathBuf,
}

impl Sessions {
    /// The records of `home`.
    pub(crate) fn new(home: &Home) -> Sessions {
        Sessions { dir: home.cache.join("snapbundle").join("uploads") }
    }

    fn path(&self, repository: &str, digest: &str) -> PathBuf {
        let key = Sha256::digest(format!("{repository}@{digest}").as_bytes());
        self.dir.join(snapbundle_core::hex::encode(&key))
    }

    /// The location recorded for `digest` in `repository` (`registry/repo`), if any.
    pub(crate) fn load(&self, repository: &str, digest: &str) -> Option<String> {
        let file = fs::File::open(self.path(repository, digest)).ok()?;
        let mut text = String::new();
        file.take(MAX_RECORD_BYTES).read_to_string(&mut text).ok()?;
        let text = text.trim();
        reqwest::Url::parse(text).ok().map(|_| text.to_string())
    }

    /// Records `location` for `digest` in `repository` (written whole, then renamed into
    /// place). A record that cannot be written only costs the resume.
    pub(crate) fn save(&self, repository: &str, digest: &str, location: &str) {
        let path = self.path(repository, digest);
        let write = || -> std::io::Result<()> {
            fs::create_dir_all(&self.dir)?;
            crate::publish::publish(&path, 0o600, |tmp| tmp.write_all(location.as_bytes()))
        };
        let _ = write();
    }

    /// Forgets the session of `digest` in `repository` (the blob is complete, or the session
    /// is gone); removes the directory when it is empty.
    pub(crate) fn remove(&self, repository: &str, digest: &str) {
        let _ = fs::remove_file(self.path(repository, digest));
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Removes the records of `home` last written more than `max_age` ago (and the directory when
/// it is empty); returns how many went. Names that are not records are left alone.
pub fn gc(home: &Home, max_age: std::time::Duration) -> std::io::Result<usize> {
    let dir = Sessions::new(home).dir;
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let is_record =
            name.to_str().is_some_and(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()));
        // A running push may finish (remove) a record meanwhile: a vanished one is no error.
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let old =
            meta.modified().ok().and_then(|m| now.duration_since(m).ok()).is_some_and(|age| age > max_age);
        if is_record && meta.is_file() && old {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    let _ = fs::remove_dir(&dir);
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_kept_per_repository_and_digest_and_must_be_a_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::at(dir.path());
        let s = Sessions::new(&home);
        assert_eq!(s.load("r/a", "sha256:1"), None);
        s.save("r/a", "sha256:1", "http://r/v2/a/blobs/uploads/u?_state=1");
        assert_eq!(s.load("r/a", "sha256:1").as_deref(), Some("http://r/v2/a/blobs/uploads/u?_state=1"));
        assert_eq!(s.load("r/b", "sha256:1"), None);
        assert_eq!(s.load("r/a", "sha256:2"), None);
        s.save("r/a", "sha256:2", "not a url");
        assert_eq!(s.load("r/a", "sha256:2"), None);
        s.remove("r/a", "sha256:1");
        s.remove("r/a", "sha256:2");
        assert_eq!(s.load("r/a", "sha256:1"), None);
        assert!(!dir.path().join("cache/snapbundle/uploads").exists());
    }

    #[test]
    fn gc_removes_only_records_older_than_the_age() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::at(dir.path());
        assert_eq!(gc(&home, MAX_AGE).ok(), Some(0), "no directory, nothing to do");
        let s = Sessions::new(&home);
        s.save("r/a", "sha256:old", "http://r/v2/a/blobs/uploads/1");
        s.save("r/a", "sha256:new", "http://r/v2/a/blobs/uploads/2");
        let week_ago = std::time::SystemTime::now() - MAX_AGE - std::time::Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(s.path("r/a", "sha256:old"))
            .and_then(|f| f.set_modified(week_ago))
            .expect("age the record");
        fs::write(s.dir.join("notes.txt"), b"not a record").expect("other file");
        assert_eq!(gc(&home, MAX_AGE).ok(), Some(1));
        assert_eq!(s.load("r/a", "sha256:old"), None);
        assert!(s.load("r/a", "sha256:new").is_some());
        assert!(s.dir.join("notes.txt").exists());
    }
}
