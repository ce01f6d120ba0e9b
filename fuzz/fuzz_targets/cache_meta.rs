//! The image-cache metadata parser and rules: parse, validate against its own digest, list the
//! expected files; then the bytes as the metadata of a bundle that carries every expected file,
//! through the whole validator (both chunkings agree).
#![no_main]
use libfuzzer_sys::fuzz_target;
use snapbundle_core::cache_meta::{expected_cache_files, parse_metadata, validate_metadata};
use snapbundle_fuzz::{begin, check_validator};
use std::sync::OnceLock;

use snapbundle_tests::builder::{ImageCache, Integrity, Snapshot, Tar};

const REF: &str = "docker.io/library/alpine:3.20";

/// What does not depend on the input, built once: the cache (its digest and metadata path) and
/// a snapshot with a 4 KiB upper (the upper's content is not what this target explores).
fn base() -> &'static (ImageCache, Snapshot) {
    static BASE: OnceLock<(ImageCache, Snapshot)> = OnceLock::new();
    BASE.get_or_init(|| (ImageCache::new(REF, 1), Snapshot::new(vec![0x5a; 4096], Integrity::Sparse)))
}

fuzz_target!(|data: &[u8]| {
    begin(data);
    let (cache, base) = base();
    let mut digest = cache.manifest_digest();
    let mut files = Vec::new();
    if let Ok(meta) = parse_metadata(data) {
        digest = meta.manifest_digest.clone();
        if validate_metadata(&meta, &meta.manifest_digest).is_ok() {
            if let Ok(expected) = expected_cache_files(REF, &meta) {
                files = expected.into_iter().take(16).map(|e| e.archive_name()).collect();
            }
        }
    }
    let snap = base.clone().image(REF, &digest);
    let mut tar = Tar::new().snapshot(&snap).file(&cache.metadata_path(), data);
    for name in files.iter().filter(|n| !n.starts_with("cache/manifests/")) {
        if name.len() <= 100 {
            tar = tar.file(name, &vec![0xabu8; 4096]);
        } else {
            tar = tar.long_file(name, &vec![0xabu8; 4096]);
        }
    }
    let _ = check_validator(&tar.end().build());
});
