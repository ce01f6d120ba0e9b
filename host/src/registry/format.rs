//! The registry artifact: media types, annotations, the config blob, and the OCI image manifest
//! that ties them together (documented in `docs/registry-format.md`).
//!
//! One pushed chain is one OCI image manifest (distribution spec v1.1) with
//! `artifactType` [`ARTIFACT_TYPE`], a config blob ([`ChainConfig`]) and **one layer per bundle
//! member**, in bundle order. Each layer's annotations carry the member path, its uncompressed
//! size and sha256, and the tar header fields, so the exact 0.6.2 tar stream can be rebuilt from
//! the layers alone. Everything read from a registry is hostile: [`parse_manifest`] checks the
//! manifest's shape, every digest's form and every number before a single blob is fetched.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use snapbundle_core::cache_meta::CacheKind;
use snapbundle_core::manifest::MANIFEST_FILENAME;
use snapbundle_core::names::{self, Slot};
use snapbundle_core::Limits;

use crate::error::{HostError, RegistryErrorCode};
use crate::tar_writer::{self, EntryMeta, END_OF_ARCHIVE};

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
    /// `sha256:<hex>` of the member's bytes.
    pub sha256: String,
    /// Tar header fields; `meta.size` is the member's size.
    pub meta: EntryMeta,
}

impl Layer {
    /// The layer's OCI descriptor.
    fn descriptor(&self) -> serde_json::Value {
        let mut ann = BTreeMap::new();
        ann.insert(ANN_TITLE, self.path.clone());
        ann.insert(ANN_PATH, self.path.clone());
        ann.insert(ANN_SHA256, self.sha256.clone());
        ann.insert(ANN_SIZE, self.meta.size.to_string());
        ann.insert(ANN_MODE, self.meta.mode.to_string());
        ann.insert(ANN_UID, self.meta.uid.to_string());
        ann.insert(ANN_GID, self.meta.gid.to_string());
        ann.insert(ANN_MTIME, self.meta.mtime.to_string());
        serde_json::json!({
            "mediaType": if self.zstd { MEMBER_ZSTD_MEDIA_TYPE } else { MEMBER_MEDIA_TYPE },
            "digest": self.digest,
            "size": self.size,
            "annotations": ann,
        })
    }
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
        Slot::SnapshotDir { .. } | Slot::CacheRoot | Slot::CacheDir { .. } => None,
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

/// The OCI image manifest bytes for a config blob and layers (compact JSON, keys in a fixed
/// order, so the same chain always gives the same manifest digest).
pub fn manifest_bytes(config_digest: &str, config_size: u64, layers: &[Layer], head: &str) -> Vec<u8> {
    let layers: Vec<_> = layers.iter().map(Layer::descriptor).collect();
    let mut ann = BTreeMap::new();
    ann.insert("dev.snapbundle.head", head.to_string());
    let v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": { "mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config_size },
        "layers": layers,
        "annotations": ann,
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", snapbundle_core::hex::encode(&sha2::Sha256::digest(bytes)))
}

/// Whether `d` is `sha256:` and 64 lowercase hex digits (the only digests used or accepted), by
/// the core's OCI digest parsing.
pub fn is_sha256_digest(d: &str) -> bool {
    snapbundle_core::reference::parse_oci_digest(d).is_ok_and(|p| p.algorithm == "sha256")
}

/// Exact size of the tar stream the layers rebuild, or `None` on overflow.
pub fn tar_len(layers: &[Layer]) -> Option<u64> {
    let mut total = END_OF_ARCHIVE.len() as u64;
    for l in layers {
        total = total.checked_add(tar_writer::member_len(&l.path, l.meta.size)?)?;
    }
    Some(total)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: u32,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: RawDescriptor,
    layers: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The config descriptor and the layers of a manifest served by a registry.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// Config blob digest.
    pub config_digest: String,
    /// Config blob size.
    pub config_size: u64,
    /// Layers in order.
    pub layers: Vec<Layer>,
}

fn invalid(message: String) -> HostError {
    HostError::Registry { code: RegistryErrorCode::InvalidArtifact, message }
}

/// Parses and checks a manifest from a registry: a snapbundle artifact, sha256 digests only,
/// every annotation present and numeric where it must be, at most `limits.max_entries` layers,
/// sizes within `limits.max_decompressed_bytes`, and a raw layer's digest equal to its member's.
pub fn parse_manifest(bytes: &[u8], what: &str, limits: &Limits) -> Result<Parsed, HostError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(invalid(format!("{what}: the manifest is larger than {MAX_MANIFEST_BYTES} bytes")));
    }
    let raw: RawManifest = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("{what}: not an OCI image manifest: {e}")))?;
    if raw.schema_version != 2 || raw.media_type.as_deref().is_some_and(|m| m != OCI_MANIFEST_MEDIA_TYPE) {
        return Err(invalid(format!(
            "{what}: not an OCI image manifest (schemaVersion 2, {OCI_MANIFEST_MEDIA_TYPE})"
        )));
    }
    if raw.artifact_type.as_deref() != Some(ARTIFACT_TYPE) || raw.config.media_type != CONFIG_MEDIA_TYPE {
        return Err(invalid(format!(
            "{what}: not a snapbundle snapshot (artifactType {:?}, config {:?}; expected {ARTIFACT_TYPE})",
            raw.artifact_type.as_deref().unwrap_or(""),
            raw.config.media_type
        )));
    }
    if !is_sha256_digest(&raw.config.digest) || raw.config.size > MAX_CONFIG_BYTES {
        return Err(invalid(format!("{what}: bad config descriptor {}", raw.config.digest)));
    }
    if raw.layers.is_empty() || raw.layers.len() > limits.max_entries as usize {
        return Err(invalid(format!(
            "{what}: {} layers (1 to {} allowed)",
            raw.layers.len(),
            limits.max_entries
        )));
    }
    let mut layers = Vec::with_capacity(raw.layers.len());
    for (i, d) in raw.layers.into_iter().enumerate() {
        layers.push(parse_layer(d, i, what, limits)?);
    }
    if tar_len(&layers).is_none_or(|n| n > limits.max_decompressed_bytes) {
        return Err(invalid(format!(
            "{what}: the members add up to more than {} bytes",
            limits.max_decompressed_bytes
        )));
    }
    Ok(Parsed { config_digest: raw.config.digest, config_size: raw.config.size, layers })
}

fn parse_layer(d: RawDescriptor, i: usize, what: &str, limits: &Limits) -> Result<Layer, HostError> {
    let at = |why: String| invalid(format!("{what}: layer #{i} ({}): {why}", d.digest));
    let zstd = match d.media_type.as_str() {
        MEMBER_MEDIA_TYPE => false,
        MEMBER_ZSTD_MEDIA_TYPE => true,
        other => return Err(at(format!("unknown media type {other:?}"))),
    };
    if !is_sha256_digest(&d.digest) {
        return Err(at("the digest is not sha256:<64 lowercase hex>".into()));
    }
    let text =
        |key: &str| d.annotations.get(key).cloned().ok_or_else(|| at(format!("annotation {key} missing")));
    let number = |key: &str| -> Result<u64, HostError> {
        let v = text(key)?;
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(at(format!("annotation {key} is not a decimal number: {v:?}")));
        }
        v.parse::<u64>().map_err(|_| at(format!("annotation {key} is out of range: {v:?}")))
    };
    let path = text(ANN_PATH)?;
    if path.is_empty() || path.len() > limits.max_path_len as usize {
        return Err(at(format!("member path of {} bytes", path.len())));
    }
    let sha256 = text(ANN_SHA256)?;
    if !is_sha256_digest(&sha256) {
        return Err(at(format!("annotation {ANN_SHA256} is not sha256:<64 lowercase hex>")));
    }
    let mode =
        u32::try_from(number(ANN_MODE)?).map_err(|_| at(format!("annotation {ANN_MODE} out of range")))?;
    let meta = EntryMeta {
        mode,
        uid: number(ANN_UID)?,
        gid: number(ANN_GID)?,
        mtime: number(ANN_MTIME)?,
        size: number(ANN_SIZE)?,
    };
    if meta.size > limits.max_decompressed_bytes {
        return Err(at(format!("member size {} over the limit", meta.size)));
    }
    if !zstd && (d.size != meta.size || d.digest != sha256) {
        return Err(at("a raw layer's size and digest must be its member's".into()));
    }
    Ok(Layer { digest: d.digest, size: d.size, zstd, path, sha256, meta })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(path: &str, zstd: bool) -> Layer {
        let d = sha256_digest(path.as_bytes());
        Layer {
            digest: d.clone(),
            size: 5,
            zstd,
            path: path.into(),
            sha256: d,
            meta: EntryMeta { mode: 0o100644, uid: 0, gid: 0, mtime: 1, size: 5 },
        }
    }

    #[test]
    fn manifest_round_trips() {
        let layers =
            vec![layer("sha256-0011223344556677/manifest.json", false), layer("cache/layers/x.erofs", true)];
        let cfg = sha256_digest(b"{}");
        let bytes = manifest_bytes(&cfg, 2, &layers, "sha256:00");
        let parsed = parse_manifest(&bytes, "t", &Limits::DEFAULT).map_err(|e| e.to_string());
        let parsed = parsed.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.layers, layers);
        assert_eq!(parsed.config_digest, cfg);
    }

    #[test]
    fn rejects_other_artifacts_and_bad_annotations() {
        let layers = vec![layer("a/manifest.json", false)];
        let bytes = manifest_bytes(&sha256_digest(b"{}"), 2, &layers, "h");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let other = text.replace(ARTIFACT_TYPE, "application/vnd.other");
        let e = parse_manifest(other.as_bytes(), "t", &Limits::DEFAULT).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("not a snapbundle snapshot")));
        let bad = text.replace("\"dev.snapbundle.tar.mode\":\"33188\"", "\"dev.snapbundle.tar.mode\":\"-1\"");
        assert_ne!(bad, text);
        let e = parse_manifest(bad.as_bytes(), "t", &Limits::DEFAULT).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("not a decimal number")), "{bad}");
        let upper = text.replace("\"size\":5}", "\"size\":6}");
        assert_ne!(upper, text);
        let e = parse_manifest(upper.as_bytes(), "t", &Limits::DEFAULT).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("raw layer")));
    }

    #[test]
    fn digests_must_be_lowercase_sha256() {
        let d = sha256_digest(b"");
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
}
