//! The compiled component, cached on disk, so that a command-line run on a small bundle does
//! not pay Cranelift's compilation of the component (about half a second) every time.
//!
//! Where: `$SNAPBUNDLE_CACHE_DIR`, else `$XDG_CACHE_HOME/snapbundle`, else
//! `~/.cache/snapbundle`; one file `component-<sha256 of the component>-<engine hash>.cwasm`.
//! Any failure to read or use the cache falls back to compiling; failing to write it is ignored.
//!
//! Why loading it is sound. Wasmtime's `Component::deserialize` is `unsafe`: the bytes become
//! machine code that runs without further checks, so they must be what
//! `Component::serialize` wrote for this component with a compatible engine. We only load a file
//! - from our own cache directory (created `0700`), refusing the file if it or the directory is
//!   owned by another user, writable by group or others, or not a plain file/directory (no
//!   symbolic links followed), so that, say, root never runs code another user wrote;
//! - that was written completely: written to a temporary file in the same directory, flushed to
//!   disk, then renamed into place, so a reader sees the whole file or none;
//! - whose name carries the SHA-256 of the embedded component's bytes and a hash of wasmtime's
//!   compatibility key (its version and the engine configuration), so it was compiled from these
//!   exact bytes by a compatible engine (wasmtime also checks the version and configuration
//!   recorded in the file and refuses a mismatch).
//!
//! Whoever can write into that directory is the user (or root) and can change the user's
//! programs anyway; the cache adds no way in for the bundles being validated, which never
//! reach it.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use snapbundle_core::integrity::{Algorithm, IntegrityHasher};
use wasmtime::component::Component;
use wasmtime::Engine;

/// The cache directory, if the environment names one ([`crate::home::user_cache_dir`]).
pub fn dir() -> Option<PathBuf> {
    crate::home::user_cache_dir()
}

/// The cache file for `component` compiled by `engine`.
fn file_name(engine: &Engine, component: &[u8]) -> String {
    let mut h = IntegrityHasher::new(Algorithm::Sha256, component.len() as u64);
    h.update(component);
    let digest = h.finish();
    let hex = digest.strip_prefix("sha256:").unwrap_or(&digest);
    let mut compat = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    format!("component-{hex}-{:016x}.cwasm", compat.finish())
}

/// Whether `path` is a plain file or directory (not a link), owned by the user this process
/// runs as, that nobody else may write.
fn private(path: &Path, want_dir: bool) -> bool {
    let me = rustix::process::geteuid().as_raw();
    fs::symlink_metadata(path).is_ok_and(|m| {
        (if want_dir { m.is_dir() } else { m.is_file() }) && m.uid() == me && m.mode() & 0o022 == 0
    })
}

/// The component compiled by `engine`: from the cache when a usable entry exists, else compiled
/// (and stored). The flag says whether it came from the cache.
#[allow(unsafe_code)] // `Component::deserialize`: see the SAFETY comment in the body.
pub fn load_or_compile(engine: &Engine, component: &[u8]) -> Result<(Component, bool), String> {
    let path = dir().map(|d| {
        let name = file_name(engine, component);
        (d.join(&name), d)
    });
    if let Some((file, d)) = &path {
        if private(d, true) && private(file, false) {
            if let Ok(bytes) = fs::read(file) {
                // SAFETY: see the module docs: our own private directory, files written
                // atomically by `store` below, named by the component's SHA-256 and the
                // engine's compatibility hash; wasmtime checks version and configuration too.
                if let Ok(c) = unsafe { Component::deserialize(engine, &bytes) } {
                    return Ok((c, true));
                }
            }
        }
    }
    let c = Component::new(engine, component).map_err(|e| format!("compiling the sandbox component: {e}"))?;
    if let Some((file, d)) = &path {
        if let Ok(bytes) = c.serialize() {
            let _ = store(d, file, &bytes);
        }
    }
    Ok((c, false))
}

/// Writes `bytes` to `file` in `dir` atomically ([`crate::publish`]), readable by the user only.
fn store(dir: &Path, file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    if !private(dir, true) {
        return Ok(());
    }
    crate::publish::publish(file, 0o600, |f| f.write_all(bytes))
}
