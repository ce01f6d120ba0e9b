//! The microsandbox home layout: `$MSB_HOME` or `~/.microsandbox`, with `snapshots/`, `cache/`
//! and `db/msb.db` (`docs/format-0.6.2.md` §4).

use std::path::{Path, PathBuf};

use crate::error::HostError;

/// snapbundle's cache directory: `$SNAPBUNDLE_CACHE_DIR`, else `$XDG_CACHE_HOME/snapbundle`, else
/// `~/.cache/snapbundle`; `None` if the environment names none of them.
pub fn user_cache_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("SNAPBUNDLE_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("snapbundle")))
        .or_else(|| env("HOME").map(|h| h.join(".cache").join("snapbundle")))
}

/// Resolved store directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    /// The home directory.
    pub root: PathBuf,
    /// Where snapshot directories live (`<home>/snapshots`, or an import `--dest`).
    pub snapshots: PathBuf,
    /// The global image cache (`<home>/cache`).
    pub cache: PathBuf,
}

impl Home {
    /// The home at `root` with the default layout.
    pub fn at(root: impl Into<PathBuf>) -> Home {
        let root = root.into();
        Home { snapshots: root.join("snapshots"), cache: root.join("cache"), root }
    }

    /// `--home` if given, else `$MSB_HOME`, else `~/.microsandbox`.
    pub fn resolve(explicit: Option<&Path>) -> Result<Home, HostError> {
        if let Some(p) = explicit {
            return Ok(Home::at(p));
        }
        if let Some(p) = std::env::var_os("MSB_HOME").filter(|v| !v.is_empty()) {
            return Ok(Home::at(PathBuf::from(p)));
        }
        match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => Ok(Home::at(PathBuf::from(h).join(".microsandbox"))),
            None => Err(HostError::Usage("cannot find the microsandbox home: set --home or MSB_HOME".into())),
        }
    }

    /// `--home` or `$MSB_HOME` if given, else `None`: a command that only needs scratch space
    /// (`pull -o`) then uses [`Home::scratch`] instead of creating `~/.microsandbox`.
    pub fn explicit(explicit: Option<&Path>) -> Option<Home> {
        explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("MSB_HOME").filter(|v| !v.is_empty()).map(PathBuf::from))
            .map(Home::at)
    }

    /// snapbundle's own scratch home under the user's cache directory ([`user_cache_dir`]
    /// `/home`): where `pull -o` keeps its blob cache (for resuming) when no microsandbox home
    /// was named, so that a pull to a file never creates or touches a store.
    pub fn scratch() -> Result<Home, HostError> {
        user_cache_dir().map(|d| Home::at(d.join("home"))).ok_or_else(|| {
            HostError::Usage("cannot find a cache directory: set --home, MSB_HOME or XDG_CACHE_HOME".into())
        })
    }

    /// Overrides the snapshots directory (import `--dest`).
    pub fn with_snapshots_dir(mut self, dest: Option<PathBuf>) -> Home {
        if let Some(d) = dest {
            self.snapshots = d;
        }
        self
    }

    /// The microsandbox index database.
    pub fn db_path(&self) -> PathBuf {
        self.root.join("db").join("msb.db")
    }
}
