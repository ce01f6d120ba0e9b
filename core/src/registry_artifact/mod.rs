//! snapbundle's OCI registry artifact: media types, annotations, the config blob, and the OCI
//! image manifest that ties them together (documented in `docs/registry-format.md`). The host
//! moves the bytes; every rule of the format is here.
//!
//! One pushed chain is one OCI image manifest (distribution spec v1.1) with
//! `artifactType` [`ARTIFACT_TYPE`], a config blob ([`ChainConfig`]) and **one layer per bundle
//! member**, in bundle order. Each layer's annotations carry the member path, its uncompressed
//! size and sha256, and the tar header fields, so the exact 0.6.2 tar stream can be rebuilt from
//! the layers alone ([`tar_len`] says how long it is). Everything read from a registry is
//! hostile: [`parse_manifest`] checks the manifest's shape, every digest's form, every number and
//! its range before a single blob is fetched, and [`parse_config`] checks the config against the
//! layers.

mod base64;
mod error;
mod manifest;
pub mod msb;
pub mod split;

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::cache_meta::CacheKind;
use crate::manifest::MANIFEST_FILENAME;
use crate::names::{self, Slot};
use crate::tar::layout::END_OF_ARCHIVE;
use crate::tar::write::{member_len, EntryMeta};

pub use error::{ArtifactError, LayerError};
pub use manifest::{kind_manifest_bytes, manifest_bytes, parse_config, parse_manifest, ArtifactKind, Parsed};
pub use msb::{
    parse_msb_config, store_raw, MsbConfig, MsbMember, MsbPlan, StreamDigest, StreamHasher, StreamSize,
    MSB_ARTIFACT_TYPE, MSB_CONFIG_MEDIA_TYPE, MSB_FORMAT,
};

/// base64 as the `.msb` config writes it (canonical, padded).
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::encode(bytes)
}

/// `artifactType` of a pushed snapshot chain.
pub const ARTIFACT_TYPE: &str = "application/vnd.snapbundle.snapshot.v1";
/// Media type of the config blob ([`ChainConfig`]).
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.snapbundle.snapshot.config.v1+json";
/// A member stored as is (manifests and image metadata: small JSON files).
pub const MEMBER_MEDIA_TYPE: &str = "application/vnd.snapbundle.member.v1";
/// A member stored as one zstd frame (uppers and image cache files).
pub const MEMBER_ZSTD_MEDIA_TYPE: &str = "application/vnd.snapbundle.member.v1+zstd";
/// The OCI image manifest media type.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Standard annotation: the member path (shown by registry UIs and `oras`).
pub const ANN_TITLE: &str = "org.opencontainers.image.title";
/// The member's path in the bundle.
pub const ANN_PATH: &str = "dev.snapbundle.member.path";
/// `sha256:<hex>` of the member's (uncompressed) bytes.
pub const ANN_SHA256: &str = "dev.snapbundle.member.sha256";
/// The member's uncompressed size, decimal.
pub const ANN_SIZE: &str = "dev.snapbundle.member.size";
/// The tar header's `mode` (full `st_mode`), decimal.
pub const ANN_MODE: &str = "dev.snapbundle.tar.mode";
/// The tar header's `uid`, decimal.
pub const ANN_UID: &str = "dev.snapbundle.tar.uid";
/// The tar header's `gid`, decimal.
pub const ANN_GID: &str = "dev.snapbundle.tar.gid";
/// The tar header's `mtime`, decimal seconds.
pub const ANN_MTIME: &str = "dev.snapbundle.tar.mtime";
/// Manifest annotation: the head snapshot's digest.
pub const ANN_HEAD: &str = "dev.snapbundle.head";

/// Largest `mode` annotation: the tar `mode` field holds 7 octal digits.
pub const MAX_MODE: u64 = 0o7_777_777;
/// Largest `uid`/`gid` annotation: the 8-byte tar field in GNU base-256 (7 value bytes).
pub const MAX_ID: u64 = (1 << 56) - 1;
/// Largest `mtime` (and `size`) annotation: the 12-byte tar fields in GNU base-256, up to the
/// largest value a strict reader accepts (`i64::MAX`).
pub const MAX_TIME: u64 = i64::MAX as u64;

/// `ChainConfig::format`: the bundle layout the layers rebuild.
pub const BUNDLE_FORMAT: &str = "microsandbox-0.6.2";
/// Largest manifest accepted from a registry (a chain of the default 64 snapshots with image
/// files is far below it).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Largest config blob accepted from a registry.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The config blob: what the artifact holds, for humans and tools (pull rebuilds the bundle
/// from the layers; the validation core decides what it is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Always 1.
    pub schema: u32,
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// The head snapshot's digest.
    pub head: String,
    /// The snapshots, root first, head last.
    pub snapshots: Vec<ConfigSnapshot>,
    /// One entry per layer, in layer order.
    pub members: Vec<ConfigMember>,
}

/// A snapshot of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSnapshot {
    /// Its manifest digest.
    pub digest: String,
    /// Its directory in the bundle (`sha256-<16 hex>`).
    pub prefix: String,
}

/// Which member a layer is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigMember {
    /// Member path in the bundle.
    pub path: String,
    /// `manifest`, `snapshot_file` (an upper) or `cache` (an image cache file).
    pub role: String,
}

/// One layer: a blob and the member it rebuilds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The blob's digest (`sha256:<64 hex>`), over the stored (possibly compressed) bytes.
    pub digest: String,
    /// The blob's size.
    pub size: u64,
    /// Whether the blob is a zstd frame ([`MEMBER_ZSTD_MEDIA_TYPE`]).
    pub zstd: bool,
    /// Member path in the bundle.
    pub path: String,
    /// `sha256:<hex>` of the member's bytes: a chain's layers carry it; a `.msb` archive's
    /// do not (its members are checked by the archive's own inventory, see [`msb`]).
    pub sha256: Option<String>,
    /// Tar header fields; `meta.size` is the member's size.
    pub meta: EntryMeta,
}

/// The slot of the bundle layout a member (a regular file) fills, by the core's name grammar;
/// `None` for a name outside it.
fn member_slot(path: &str) -> Option<Slot<'_>> {
    names::classify(path.as_bytes(), false).ok()
}

/// The role recorded in the config for a member path: `manifest` (a snapshot's
/// `manifest.json`), `snapshot_file` (the other file of a snapshot directory, its upper) or
/// `cache` (an image cache file); `None` for a name outside the bundle layout.
pub fn role(path: &str) -> Option<&'static str> {
    match member_slot(path)? {
        Slot::SnapshotFile { file, .. } if file == MANIFEST_FILENAME => Some("manifest"),
        Slot::SnapshotFile { .. } => Some("snapshot_file"),
        Slot::CacheFile { .. } => Some("cache"),
        Slot::SnapshotDir { .. } | Slot::CacheRoot | Slot::CacheDir { .. } | Slot::Msb { .. } => None,
    }
}

/// Whether a member is stored compressed: everything but the JSON files of the layout, snapshot
/// manifests and image metadata (`cache/manifests/*.json`). An upper is compressed whatever its
/// name, and so is a name outside the layout (never pushed: export plans only valid members).
pub fn compress_member(path: &str) -> bool {
    !matches!(
        member_slot(path),
        Some(Slot::SnapshotFile { file: MANIFEST_FILENAME, .. })
            | Some(Slot::CacheFile { kind: CacheKind::Manifests, .. })
    )
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    crate::hex::sha256_digest(&Sha256::digest(bytes).into())
}

/// Whether `d` is `sha256:` and 64 lowercase hex digits (the only digests used or accepted), by
/// the core's OCI digest parsing.
pub fn is_sha256_digest(d: &str) -> bool {
    crate::reference::parse_oci_digest(d).is_ok_and(|p| p.algorithm == "sha256")
}

/// Exact size of the tar stream the layers rebuild, or `None` on overflow.
pub fn tar_len(layers: &[Layer]) -> Option<u64> {
    let mut total = END_OF_ARCHIVE.len() as u64;
    for l in layers {
        total = total.checked_add(member_len(&l.path, l.meta.size)?)?;
    }
    Some(total)
}

/// The largest single zstd frame `n` bytes can compress to: libzstd's `ZSTD_COMPRESSBOUND`
/// (the data, 1/256 of it for block headers, and a margin for inputs under 128 KiB) plus 512
/// bytes for the frame header, checksum and any skippable frame (a saturating sum).
pub fn zstd_bound(n: u64) -> u64 {
    let small = (128u64 << 10).saturating_sub(n) >> 11;
    n.saturating_add(n >> 8).saturating_add(small).saturating_add(512)
}

#[cfg(test)]
mod tests {
    use alloc::format;
    use alloc::string::ToString;

    use super::*;

    #[test]
    fn digests_must_be_lowercase_sha256() {
        let d = sha256_digest(b"");
        assert_eq!(d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert!(is_sha256_digest(&d));
        assert!(!is_sha256_digest(&d.to_uppercase()));
        assert!(!is_sha256_digest(&format!("sha256:{}", d.get(7..).unwrap_or("").to_uppercase())));
        assert!(!is_sha256_digest(d.get(..d.len() - 1).unwrap_or("")));
        assert!(!is_sha256_digest(&format!("{d}0")));
        assert!(!is_sha256_digest(&format!("{d}:")));
        assert!(!is_sha256_digest(&format!("sha512:{}", "0".repeat(128))));
        assert!(!is_sha256_digest("sha512:00"));
        assert!(!is_sha256_digest(&d.replacen("sha256:", "sha256", 1)));
    }

    #[test]
    fn roles_and_compression_follow_the_layout() {
        let snap = "sha256-0011223344556677";
        assert_eq!(role(&format!("{snap}/manifest.json")), Some("manifest"));
        assert_eq!(role(&format!("{snap}/upper.ext4")), Some("snapshot_file"));
        assert_eq!(role("cache/layers/sha256_ab.erofs"), Some("cache"));
        assert_eq!(role("cache/manifests/sha256_ab.json"), Some("cache"));
        assert_eq!(role("cache/tmp/x"), None);
        assert_eq!(role("a/b/manifest.json"), None);
        assert!(!compress_member(&format!("{snap}/manifest.json")));
        assert!(!compress_member("cache/manifests/sha256_ab.json"));
        assert!(compress_member(&format!("{snap}/upper.ext4")));
        // An upper named like JSON is a disk image all the same.
        assert!(compress_member(&format!("{snap}/upper.json")));
        assert!(compress_member("cache/layers/sha256_ab.erofs"));
        assert!(compress_member("cache/vmdk/sha256_ab.vmdk"));
    }

    #[test]
    fn tar_len_counts_headers_data_padding_and_the_end() {
        let meta = EntryMeta { mode: 0o100644, uid: 0, gid: 0, mtime: 0, size: 5 };
        let layer = |path: &str, size: u64| Layer {
            digest: String::new(),
            size,
            zstd: false,
            path: path.to_string(),
            sha256: None,
            meta: EntryMeta { size, ..meta },
        };
        assert_eq!(tar_len(&[]), Some(1024));
        assert_eq!(tar_len(&[layer("a/manifest.json", 5)]), Some(512 + 512 + 1024));
        let long = "x".repeat(150);
        assert_eq!(tar_len(&[layer(&long, 0)]), Some(3 * 512 + 1024));
        assert_eq!(tar_len(&[layer("a", u64::MAX)]), None);
    }
}
