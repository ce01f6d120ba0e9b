//! Bundled image-cache metadata and the cache files it pins (microsandbox 0.6.2).
//!
//! A bundle exported with `--with-image` carries `cache/manifests/<sha256(ref)>.json` (a
//! [`CachedImageMetadata`]) plus the fsmeta, VMDK and per-layer EROFS files it implies. On import,
//! 0.6.2's `install_staged_cache` parses that metadata, checks it against the head snapshot's
//! pinned image digest and the raw manifest/config bytes it embeds ([`validate_metadata`]), and
//! accepts exactly the cache files listed by [`expected_cache_files`], each subject to its
//! [`SizeRule`].

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::reference::{self, DigestError, ReferenceError};

/// Cached metadata for a pulled image reference (`microsandbox_image::CachedImageMetadata`).
///
/// Unknown keys are ignored; every non-`Option` key is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedImageMetadata {
    /// `sha256:<hex>` of `raw_manifest_json`; must equal the snapshot's `image.manifest_digest`.
    pub manifest_digest: String,
    /// `sha256:<hex>` of `raw_config_json`.
    pub config_digest: String,
    /// The resolved OCI manifest, verbatim, as a JSON string.
    pub raw_manifest_json: String,
    /// The OCI image config blob, verbatim, as a JSON string.
    pub raw_config_json: String,
    /// The parsed runtime configuration.
    pub config: ImageConfig,
    /// Layers, bottom to top.
    pub layers: Vec<CachedLayerMetadata>,
}

/// One cached layer descriptor (`microsandbox_image::CachedLayerMetadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedLayerMetadata {
    /// Compressed blob digest from the manifest.
    pub digest: String,
    /// OCI media type of the blob; written as `null` when absent.
    pub media_type: Option<String>,
    /// Compressed blob size in bytes.
    pub size_bytes: Option<u64>,
    /// Uncompressed diff_id from the config; names the layer's EROFS file.
    pub diff_id: String,
}

/// Runtime configuration parsed from the image config (`microsandbox_image::ImageConfig`).
///
/// No `#[serde(default)]`: the `Vec` and map keys are required, `Option` keys may be omitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Environment variables, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Default command.
    pub cmd: Option<Vec<String>>,
    /// Entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Working directory of the default process.
    pub working_dir: Option<String>,
    /// Default user.
    pub user: Option<String>,
    /// Declared exposed ports.
    pub exposed_ports: Vec<String>,
    /// Declared volume mount points.
    pub volumes: Vec<String>,
    /// Image labels (a `HashMap` in microsandbox, so its serialized key order is not stable).
    pub labels: BTreeMap<String, String>,
    /// Signal for graceful shutdown.
    pub stop_signal: Option<String>,
}

/// A directory of the image cache that a bundle may carry files in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CacheKind {
    /// `manifests/`: image metadata JSON.
    Manifests,
    /// `layers/`: per-layer EROFS images keyed by diff_id.
    Layers,
    /// `fsmeta/`: the image's fsmeta EROFS keyed by manifest digest.
    Fsmeta,
    /// `vmdk/`: the image's VMDK descriptor keyed by manifest digest.
    Vmdk,
}

impl CacheKind {
    /// The directory name, e.g. `layers`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CacheKind::Manifests => "manifests",
            CacheKind::Layers => "layers",
            CacheKind::Fsmeta => "fsmeta",
            CacheKind::Vmdk => "vmdk",
        }
    }

    /// The kind named by a cache directory, or `None` for any other name.
    pub fn from_dir(dir: &str) -> Option<CacheKind> {
        match dir {
            "manifests" => Some(CacheKind::Manifests),
            "layers" => Some(CacheKind::Layers),
            "fsmeta" => Some(CacheKind::Fsmeta),
            "vmdk" => Some(CacheKind::Vmdk),
            _ => None,
        }
    }

    /// Whether `file` in cache directory `dir` is an image cache file microsandbox takes
    /// (0.6.2's unpack rule, 0.7.13's `is_supported_cache_file` for `images/<dir>/<file>`).
    pub fn is_cache_file(dir: &str, file: &str) -> bool {
        CacheKind::from_dir(dir).is_some_and(|k| file.ends_with(k.file_suffix()))
    }

    /// The suffix a file in this directory must end with to be unpacked (`.json`, `.erofs`,
    /// `.vmdk`; 0.6.2 checks `ends_with`, so the bare suffix is accepted too).
    pub fn file_suffix(&self) -> &'static str {
        match self {
            CacheKind::Manifests => ".json",
            CacheKind::Layers | CacheKind::Fsmeta => ".erofs",
            CacheKind::Vmdk => ".vmdk",
        }
    }
}

impl fmt::Display for CacheKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What size a staged cache file must have for 0.6.2 to accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SizeRule {
    /// Any size (metadata: `is_file`; VMDK: `exists`).
    Any,
    /// Greater than zero and a multiple of 4096 (`is_*_materialized` for EROFS files).
    NonZeroMultipleOf4096,
}

impl SizeRule {
    /// Whether a file of `size` bytes satisfies the rule.
    pub fn check(&self, size: u64) -> bool {
        match self {
            SizeRule::Any => true,
            SizeRule::NonZeroMultipleOf4096 => size > 0 && size.checked_rem(EROFS_ALIGNMENT) == Some(0),
        }
    }
}

/// Block size EROFS files must be a multiple of.
const EROFS_ALIGNMENT: u64 = 4096;

/// One cache file a bundle's metadata requires.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExpectedCacheFile {
    /// The cache directory it lives in.
    pub kind: CacheKind,
    /// Path relative to the cache directory, e.g. `layers/sha256_<hex>.erofs`.
    pub path: String,
    /// The size it must have.
    pub rule: SizeRule,
}

impl ExpectedCacheFile {
    /// The member name this file has in a bundle: `cache/` + [`Self::path`].
    pub fn archive_name(&self) -> String {
        let mut name = String::from("cache/");
        name.push_str(&self.path);
        name
    }

    /// Checks the bundled copy of this file: `None` when the bundle lacks it, else its size.
    pub fn check_staged(&self, size: Option<u64>) -> Result<(), CacheError> {
        match size {
            None => Err(CacheError::MissingArtifact(self.path.clone())),
            Some(size) if !self.rule.check(size) => {
                Err(CacheError::NotMaterialized { path: self.path.clone(), size })
            }
            Some(_) => Ok(()),
        }
    }
}

/// Why the bundled image cache was rejected. `Display` follows microsandbox 0.6.2's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheError {
    /// The head snapshot's `image.ref` is not a valid reference.
    InvalidImageReference {
        /// The reference as written in the manifest.
        reference: String,
        /// Why it was rejected.
        error: ReferenceError,
    },
    /// The pinned image digest (`image.manifest_digest`, equal to the metadata's) does not parse.
    InvalidImageDigest {
        /// Why it was rejected.
        error: DigestError,
    },
    /// The bundle has cache files but no metadata file for the head's image, holding the
    /// reference as written in the manifest (0.6.2 also reports an unparseable file this way).
    MetadataMissing(String),
    /// The metadata file is not UTF-8 (0.6.2 fails with an I/O error while reading it).
    MetadataNotUtf8,
    /// The metadata file is not a valid [`CachedImageMetadata`] (0.6.2 treats it as missing).
    MetadataParse {
        /// The JSON parser's message.
        message: String,
    },
    /// The metadata's `manifest_digest` differs from the snapshot's pinned image digest.
    MetadataDigestMismatch {
        /// The snapshot manifest's `image.manifest_digest`.
        snapshot: String,
        /// The metadata's `manifest_digest`.
        cache: String,
    },
    /// `manifest_digest` does not start with `sha256:`.
    ManifestDigestNotSha256 {
        /// The digest.
        digest: String,
    },
    /// `sha256(raw_manifest_json)` differs from `manifest_digest`.
    RawManifestDigestMismatch {
        /// Hex recorded in `manifest_digest` (after `sha256:`).
        expected: String,
        /// Hex computed from `raw_manifest_json`.
        actual: String,
    },
    /// `config_digest` does not start with `sha256:`.
    ConfigDigestNotSha256 {
        /// The digest.
        digest: String,
    },
    /// `sha256(raw_config_json)` differs from `config_digest`.
    ConfigDigestMismatch {
        /// Hex recorded in `config_digest` (after `sha256:`).
        expected: String,
        /// Hex computed from `raw_config_json`.
        actual: String,
    },
    /// A layer's blob `digest` does not parse.
    InvalidLayerDigest {
        /// Zero-based layer index.
        index: usize,
        /// Why it was rejected.
        error: DigestError,
    },
    /// A layer's `diff_id` does not parse.
    InvalidLayerDiffId {
        /// Zero-based layer index.
        index: usize,
        /// Why it was rejected.
        error: DigestError,
    },
    /// A required cache file (path relative to the cache directory) is not in the bundle.
    MissingArtifact(String),
    /// A required EROFS file is present but its size breaks [`SizeRule::NonZeroMultipleOf4096`]
    /// (0.6.2 reports it as missing, since it is not "materialized").
    NotMaterialized {
        /// Path relative to the cache directory.
        path: String,
        /// Its size in bytes.
        size: u64,
    },
    /// A bundled cache file (path relative to the cache directory) is not an expected one.
    UnexpectedArtifact(String),
}

impl CacheError {
    /// Stable snake_case identifier of the failure.
    pub fn code(&self) -> &'static str {
        match self {
            CacheError::InvalidImageReference { .. } => "cache_invalid_image_reference",
            CacheError::InvalidImageDigest { .. } => "cache_invalid_image_digest",
            CacheError::MetadataMissing(_) => "cache_metadata_missing",
            CacheError::MetadataNotUtf8 => "cache_metadata_not_utf8",
            CacheError::MetadataParse { .. } => "cache_metadata_parse",
            CacheError::MetadataDigestMismatch { .. } => "cache_metadata_digest_mismatch",
            CacheError::ManifestDigestNotSha256 { .. } => "cache_manifest_digest_not_sha256",
            CacheError::RawManifestDigestMismatch { .. } => "cache_raw_manifest_digest_mismatch",
            CacheError::ConfigDigestNotSha256 { .. } => "cache_config_digest_not_sha256",
            CacheError::ConfigDigestMismatch { .. } => "cache_config_digest_mismatch",
            CacheError::InvalidLayerDigest { .. } => "cache_invalid_layer_digest",
            CacheError::InvalidLayerDiffId { .. } => "cache_invalid_layer_diff_id",
            CacheError::MissingArtifact(_) => "cache_missing_artifact",
            CacheError::NotMaterialized { .. } => "cache_artifact_not_materialized",
            CacheError::UnexpectedArtifact(_) => "cache_unexpected_artifact",
        }
    }
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::InvalidImageReference { error, .. } => {
                write!(f, "invalid snapshot image reference: {error}")
            }
            CacheError::InvalidImageDigest { error } => {
                write!(f, "invalid snapshot image digest: manifest parse error: {error}")
            }
            CacheError::MetadataMissing(reference) => {
                write!(f, "snapshot image cache metadata missing for {reference}")
            }
            CacheError::MetadataNotUtf8 => f.write_str("snapshot image cache metadata is not valid UTF-8"),
            CacheError::MetadataParse { message } => {
                write!(f, "snapshot image cache metadata does not parse: {message}")
            }
            CacheError::MetadataDigestMismatch { snapshot, cache } => {
                write!(f, "snapshot image metadata digest mismatch: snapshot={snapshot}, cache={cache}")
            }
            CacheError::ManifestDigestNotSha256 { digest } => {
                write!(f, "raw manifest digest must use sha256: {digest}")
            }
            CacheError::RawManifestDigestMismatch { expected, actual } => {
                write!(f, "raw manifest digest mismatch: expected sha256:{expected}, got sha256:{actual}")
            }
            CacheError::ConfigDigestNotSha256 { digest } => {
                write!(f, "image config digest must use sha256: {digest}")
            }
            CacheError::ConfigDigestMismatch { expected, actual } => {
                write!(f, "image config digest mismatch: expected sha256:{expected}, got sha256:{actual}")
            }
            CacheError::InvalidLayerDigest { error, .. } => {
                write!(f, "invalid cached layer digest: manifest parse error: {error}")
            }
            CacheError::InvalidLayerDiffId { error, .. } => {
                write!(f, "invalid cached layer diff_id: manifest parse error: {error}")
            }
            CacheError::MissingArtifact(path) => {
                write!(f, "missing staged {}: {path}", staged_what(path))
            }
            CacheError::NotMaterialized { path, size } => write!(
                f,
                "missing staged {}: {path} ({size} bytes, not a non-zero multiple of {EROFS_ALIGNMENT})",
                staged_what(path)
            ),
            CacheError::UnexpectedArtifact(path) => {
                write!(f, "archive contains unexpected cache artifact: {path}")
            }
        }
    }
}

impl core::error::Error for CacheError {}

/// The noun 0.6.2 uses for a missing staged file, from the path's cache directory.
fn staged_what(path: &str) -> &'static str {
    match path.split('/').next().and_then(CacheKind::from_dir) {
        Some(CacheKind::Manifests) => "image metadata",
        Some(CacheKind::Fsmeta) => "fsmeta artifact",
        Some(CacheKind::Vmdk) => "VMDK artifact",
        Some(CacheKind::Layers) => "layer artifact",
        None => "cache artifact",
    }
}

/// Normalizes the snapshot's `image.ref` as [`reference::normalize_reference`], reporting failure
/// as 0.6.2 does (`invalid snapshot image reference: …`).
pub fn normalized_reference(image_ref: &str) -> Result<String, CacheError> {
    reference::normalize_reference(image_ref)
        .map_err(|error| CacheError::InvalidImageReference { reference: String::from(image_ref), error })
}

/// Parses a cached metadata file as 0.6.2 does (`read_to_string` then `serde_json::from_str`).
///
/// Once the bytes are known to be UTF-8, `from_slice` accepts and rejects exactly what
/// `from_str` does, with the same messages; it is used because the manifest parser uses it too,
/// so the WebAssembly modules carry one JSON reader instead of two (about 10 KB).
pub fn parse_metadata(bytes: &[u8]) -> Result<CachedImageMetadata, CacheError> {
    core::str::from_utf8(bytes).map_err(|_| CacheError::MetadataNotUtf8)?;
    serde_json::from_slice(bytes).map_err(|e| CacheError::MetadataParse { message: e.to_string() })
}

/// Checks metadata against the head snapshot's pinned image digest, in 0.6.2's order
/// (`validate_cached_metadata`): digest equality; `manifest_digest` is `sha256:` and matches
/// `raw_manifest_json`; `config_digest` is `sha256:` and matches `raw_config_json`; then every
/// layer's `digest` and `diff_id` parse with [`reference::parse_digest`].
pub fn validate_metadata(meta: &CachedImageMetadata, snapshot_image_digest: &str) -> Result<(), CacheError> {
    if meta.manifest_digest != snapshot_image_digest {
        return Err(CacheError::MetadataDigestMismatch {
            snapshot: String::from(snapshot_image_digest),
            cache: meta.manifest_digest.clone(),
        });
    }
    let Some(expected) = meta.manifest_digest.strip_prefix("sha256:") else {
        return Err(CacheError::ManifestDigestNotSha256 { digest: meta.manifest_digest.clone() });
    };
    let actual = sha256_hex(meta.raw_manifest_json.as_bytes());
    if actual != expected {
        return Err(CacheError::RawManifestDigestMismatch { expected: String::from(expected), actual });
    }
    let Some(expected) = meta.config_digest.strip_prefix("sha256:") else {
        return Err(CacheError::ConfigDigestNotSha256 { digest: meta.config_digest.clone() });
    };
    let actual = sha256_hex(meta.raw_config_json.as_bytes());
    if actual != expected {
        return Err(CacheError::ConfigDigestMismatch { expected: String::from(expected), actual });
    }
    for (index, layer) in meta.layers.iter().enumerate() {
        reference::parse_digest(&layer.digest)
            .map_err(|error| CacheError::InvalidLayerDigest { index, error })?;
        reference::parse_digest(&layer.diff_id)
            .map_err(|error| CacheError::InvalidLayerDiffId { index, error })?;
    }
    Ok(())
}

/// The cache files (relative to the cache directory) that `image_ref`'s metadata pins, in 0.6.2
/// export order: `manifests/<sha256(normalized ref)>.json`, `fsmeta/<manifest>.erofs`,
/// `vmdk/<manifest>.vmdk`, then `layers/<diff_id>.erofs` per layer with repeats dropped.
///
/// `image_ref` is the snapshot manifest's `image.ref` as written. Passing an already normalized
/// reference gives the same files, except for refs whose first component is an uppercase
/// "domain" (`Foo/bar`): their normalized form `docker.io/Foo/bar:latest` does not parse again.
/// Call after [`validate_metadata`], which makes `meta.manifest_digest` the snapshot's pinned
/// digest.
pub fn expected_cache_files(
    image_ref: &str,
    meta: &CachedImageMetadata,
) -> Result<Vec<ExpectedCacheFile>, CacheError> {
    let normalized = normalized_reference(image_ref)?;
    let manifest_digest = reference::parse_digest(&meta.manifest_digest)
        .map_err(|error| CacheError::InvalidImageDigest { error })?;
    let manifest_stem = manifest_digest.path_safe();

    let mut files = Vec::with_capacity(meta.layers.len().saturating_add(3));
    files.push(ExpectedCacheFile {
        kind: CacheKind::Manifests,
        path: join(CacheKind::Manifests, &reference::metadata_file_name(&normalized), ""),
        rule: SizeRule::Any,
    });
    files.push(ExpectedCacheFile {
        kind: CacheKind::Fsmeta,
        path: join(CacheKind::Fsmeta, &manifest_stem, ".erofs"),
        rule: SizeRule::NonZeroMultipleOf4096,
    });
    files.push(ExpectedCacheFile {
        kind: CacheKind::Vmdk,
        path: join(CacheKind::Vmdk, &manifest_stem, ".vmdk"),
        rule: SizeRule::Any,
    });
    let mut seen_layers = BTreeSet::new();
    for (index, layer) in meta.layers.iter().enumerate() {
        let diff_id = reference::parse_digest(&layer.diff_id)
            .map_err(|error| CacheError::InvalidLayerDiffId { index, error })?;
        let path = join(CacheKind::Layers, &diff_id.path_safe(), ".erofs");
        if seen_layers.insert(path.clone()) {
            files.push(ExpectedCacheFile {
                kind: CacheKind::Layers,
                path,
                rule: SizeRule::NonZeroMultipleOf4096,
            });
        }
    }
    Ok(files)
}

/// `<kind>/<stem><suffix>`.
fn join(kind: CacheKind, stem: &str, suffix: &str) -> String {
    let mut path = String::from(kind.as_str());
    path.push('/');
    path.push_str(stem);
    path.push_str(suffix);
    path
}

/// Lowercase hex SHA-256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    crate::hex::encode(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    /// `cache/manifests/9f39de2c….json` from the 0.6.2 fixture `d-with-image-2layers.tar.zst`.
    const FIXTURE_METADATA: &str = r#"{"manifest_digest":"sha256:ef7217ae813dbb9b1ef3d5b51d7d7d2048b924e914739376fa48f61793bce80f","config_digest":"sha256:e0dd27862138fa529d0819341f360b78e57b4094d22df93afc859de71b0eb533","raw_manifest_json":"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:e0dd27862138fa529d0819341f360b78e57b4094d22df93afc859de71b0eb533\",\"size\":287},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:3ef3994f57954ec7474bff4a4aa5f5f4e5b1c02aa5a1ab0cf3c4837ea7ed01a7\",\"size\":8192},{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:84d09ee87f08b965bae98c9aebca3ee6c0775ea6ba5eff9d3b1b2c05c8755640\",\"size\":12288}]}","raw_config_json":"{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/usr/bin\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:ab29346d11370c4405f9c9ee177080147caca428e7a61a2a908084cbbf8d3fca\",\"sha256:282df5f2f0cf60d6663a925eef8323c63fdf1889f6bcfbef6cf44474007d116c\"]},\"comment\":\"python-2layers\"}","config":{"env":[],"cmd":null,"entrypoint":null,"working_dir":null,"user":null,"exposed_ports":[],"volumes":[],"labels":{},"stop_signal":null},"layers":[{"digest":"sha256:3ef3994f57954ec7474bff4a4aa5f5f4e5b1c02aa5a1ab0cf3c4837ea7ed01a7","media_type":"application/vnd.oci.image.layer.v1.tar+gzip","size_bytes":8192,"diff_id":"sha256:ab29346d11370c4405f9c9ee177080147caca428e7a61a2a908084cbbf8d3fca"},{"digest":"sha256:84d09ee87f08b965bae98c9aebca3ee6c0775ea6ba5eff9d3b1b2c05c8755640","media_type":"application/vnd.oci.image.layer.v1.tar+gzip","size_bytes":12288,"diff_id":"sha256:282df5f2f0cf60d6663a925eef8323c63fdf1889f6bcfbef6cf44474007d116c"}]}"#;

    const FIXTURE_REF: &str = "docker.io/library/python:3.12";
    const FIXTURE_DIGEST: &str = "sha256:ef7217ae813dbb9b1ef3d5b51d7d7d2048b924e914739376fa48f61793bce80f";

    /// Member names of the fixture's cache entries, in archive order (from its expect.json).
    const FIXTURE_CACHE_ENTRIES: [&str; 5] = [
        "cache/manifests/9f39de2cc07aeb65b0c8d87b811d86acce5f86cd7b201b9e906d875b03aa70ff.json",
        "cache/fsmeta/sha256_ef7217ae813dbb9b1ef3d5b51d7d7d2048b924e914739376fa48f61793bce80f.erofs",
        "cache/vmdk/sha256_ef7217ae813dbb9b1ef3d5b51d7d7d2048b924e914739376fa48f61793bce80f.vmdk",
        "cache/layers/sha256_ab29346d11370c4405f9c9ee177080147caca428e7a61a2a908084cbbf8d3fca.erofs",
        "cache/layers/sha256_282df5f2f0cf60d6663a925eef8323c63fdf1889f6bcfbef6cf44474007d116c.erofs",
    ];

    fn fixture() -> CachedImageMetadata {
        parse_metadata(FIXTURE_METADATA.as_bytes()).unwrap_or_else(|e| panic!("fixture: {e}"))
    }

    fn code<T>(r: Result<T, CacheError>) -> Option<&'static str> {
        r.err().map(|e| e.code())
    }

    fn text<T>(r: &Result<T, CacheError>) -> Option<String> {
        r.as_ref().err().map(ToString::to_string)
    }

    #[test]
    fn parses_fixture_metadata() {
        let meta = fixture();
        assert_eq!(meta.manifest_digest, FIXTURE_DIGEST);
        assert_eq!(
            meta.config_digest,
            "sha256:e0dd27862138fa529d0819341f360b78e57b4094d22df93afc859de71b0eb533"
        );
        assert!(meta.raw_manifest_json.starts_with("{\"schemaVersion\":2,"));
        assert_eq!(meta.config, ImageConfig::default());
        assert_eq!(meta.layers.len(), 2);
        assert_eq!(
            meta.layers.first(),
            Some(&CachedLayerMetadata {
                digest: "sha256:3ef3994f57954ec7474bff4a4aa5f5f4e5b1c02aa5a1ab0cf3c4837ea7ed01a7".into(),
                media_type: Some("application/vnd.oci.image.layer.v1.tar+gzip".into()),
                size_bytes: Some(8192),
                diff_id: "sha256:ab29346d11370c4405f9c9ee177080147caca428e7a61a2a908084cbbf8d3fca".into(),
            })
        );
        // Field order and `null` handling match what 0.6.2 writes: re-serializing is byte-identical.
        assert_eq!(serde_json::to_string(&meta).ok().as_deref(), Some(FIXTURE_METADATA));
    }

    #[test]
    fn parse_rules() {
        let full_config = r#"{"env":["A=1"],"cmd":["sh"],"entrypoint":null,"working_dir":"/","user":"0","exposed_ports":["80/tcp"],"volumes":[],"labels":{"b":"2","a":"1"},"stop_signal":"SIGTERM"}"#;
        let doc = |config: &str, layers: &str| {
            format!(
                r#"{{"manifest_digest":"sha256:x","config_digest":"sha256:y","raw_manifest_json":"","raw_config_json":"","config":{config},"layers":{layers}}}"#
            )
        };
        let meta = parse_metadata(doc(full_config, "[]").as_bytes());
        assert_eq!(meta.as_ref().map(|m| m.config.labels.len()), Ok(2));
        assert_eq!(meta.as_ref().map(|m| m.config.cmd.clone()), Ok(Some(alloc::vec!["sh".into()])));
        // Option keys may be omitted; unknown keys are ignored everywhere.
        let minimal = r#"{"env":[],"exposed_ports":[],"volumes":[],"labels":{},"extra":1}"#;
        let layer = r#"[{"digest":"sha256:a","diff_id":"sha256:b","future":true}]"#;
        let meta = parse_metadata(doc(minimal, layer).as_bytes());
        assert_eq!(
            meta.map(|m| m.layers),
            Ok(alloc::vec![CachedLayerMetadata {
                digest: "sha256:a".into(),
                media_type: None,
                size_bytes: None,
                diff_id: "sha256:b".into(),
            }])
        );
        // Required keys: every Vec/map of ImageConfig, every String of the layer and the top level.
        for config in [
            r#"{"exposed_ports":[],"volumes":[],"labels":{}}"#,
            r#"{"env":[],"volumes":[],"labels":{}}"#,
            r#"{"env":[],"exposed_ports":[],"labels":{}}"#,
            r#"{"env":[],"exposed_ports":[],"volumes":[]}"#,
            r#"{"env":null,"exposed_ports":[],"volumes":[],"labels":{}}"#,
        ] {
            assert_eq!(
                code(parse_metadata(doc(config, "[]").as_bytes())),
                Some("cache_metadata_parse"),
                "{config}"
            );
        }
        assert_eq!(
            code(parse_metadata(doc(minimal, r#"[{"digest":"sha256:a"}]"#).as_bytes())),
            Some("cache_metadata_parse")
        );
        assert_eq!(
            code(parse_metadata(
                doc(minimal, r#"[{"digest":"a","diff_id":"b","size_bytes":-1}]"#).as_bytes()
            )),
            Some("cache_metadata_parse")
        );
        assert_eq!(code(parse_metadata(br#"{"manifest_digest":"sha256:x"}"#)), Some("cache_metadata_parse"));
        assert_eq!(
            code(parse_metadata(&[FIXTURE_METADATA.as_bytes(), b"x"].concat())),
            Some("cache_metadata_parse")
        );
        assert!(parse_metadata(&[FIXTURE_METADATA.as_bytes(), b"\n"].concat()).is_ok());
        assert_eq!(code(parse_metadata(b"{\"manifest_digest\":\"\xff\"}")), Some("cache_metadata_not_utf8"));
        let err = parse_metadata(br#"{"manifest_digest":"sha256:x"}"#).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("missing field `config_digest`")));
    }

    #[test]
    fn validate_happy_path() {
        assert_eq!(validate_metadata(&fixture(), FIXTURE_DIGEST), Ok(()));
    }

    #[test]
    fn validate_digest_mismatch_matches_0_6_2_text() {
        // From r-cache-metadata-digest-mismatch.tar.zst.expect.json.
        let snapshot = "sha256:abababababababababababababababababababababababababababababababab";
        let err = validate_metadata(&fixture(), snapshot);
        assert_eq!(
            text(&err),
            Some(format!(
                "snapshot image metadata digest mismatch: snapshot={snapshot}, cache={FIXTURE_DIGEST}"
            ))
        );
        assert_eq!(code(err), Some("cache_metadata_digest_mismatch"));
    }

    #[test]
    fn validate_failures_in_order() {
        let mut meta = fixture();
        meta.manifest_digest = "sha512:abc".into();
        let err = validate_metadata(&meta, "sha512:abc");
        assert_eq!(text(&err), Some("raw manifest digest must use sha256: sha512:abc".into()));
        assert_eq!(code(err), Some("cache_manifest_digest_not_sha256"));

        let mut meta = fixture();
        meta.raw_manifest_json.push(' ');
        let err = validate_metadata(&meta, FIXTURE_DIGEST);
        let actual = sha256_hex(meta.raw_manifest_json.as_bytes());
        assert_eq!(
            text(&err),
            Some(format!("raw manifest digest mismatch: expected {FIXTURE_DIGEST}, got sha256:{actual}"))
        );
        assert_eq!(code(err), Some("cache_raw_manifest_digest_mismatch"));

        // Uppercase hex is a mismatch: 0.6.2 compares the strings.
        let mut meta = fixture();
        meta.manifest_digest = meta.manifest_digest.to_uppercase().replacen("SHA256", "sha256", 1);
        let pinned = meta.manifest_digest.clone();
        assert_eq!(code(validate_metadata(&meta, &pinned)), Some("cache_raw_manifest_digest_mismatch"));

        let mut meta = fixture();
        meta.config_digest = "md5:abc".into();
        let err = validate_metadata(&meta, FIXTURE_DIGEST);
        assert_eq!(text(&err), Some("image config digest must use sha256: md5:abc".into()));
        assert_eq!(code(err), Some("cache_config_digest_not_sha256"));

        let mut meta = fixture();
        meta.raw_config_json.clear();
        let err = validate_metadata(&meta, FIXTURE_DIGEST);
        assert_eq!(
            text(&err),
            Some("image config digest mismatch: expected sha256:e0dd27862138fa529d0819341f360b78e57b4094d22df93afc859de71b0eb533, got sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into())
        );
        assert_eq!(code(err), Some("cache_config_digest_mismatch"));

        let mut meta = fixture();
        if let Some(layer) = meta.layers.get_mut(1) {
            layer.digest = "SHA256:abc".into();
        }
        let err = validate_metadata(&meta, FIXTURE_DIGEST);
        assert_eq!(
            err,
            Err(CacheError::InvalidLayerDigest {
                index: 1,
                error: DigestError::InvalidAlgorithm { input: "SHA256:abc".into() }
            })
        );
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("invalid cached layer digest: manifest parse error: invalid digest algorithm: SHA256:abc"
                .into())
        );

        let mut meta = fixture();
        if let Some(layer) = meta.layers.get_mut(0) {
            layer.diff_id = "sha256".into();
        }
        let err = validate_metadata(&meta, FIXTURE_DIGEST);
        assert_eq!(code(err.clone()), Some("cache_invalid_layer_diff_id"));
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("invalid cached layer diff_id: manifest parse error: invalid digest (missing ':'): sha256"
                .into())
        );

        // The digest equality check comes first, even when everything else is wrong too.
        let mut meta = fixture();
        meta.raw_manifest_json.clear();
        meta.config_digest = "x".into();
        assert_eq!(code(validate_metadata(&meta, "sha256:00")), Some("cache_metadata_digest_mismatch"));
    }

    #[test]
    fn expected_files_for_fixture() {
        let meta = fixture();
        let files = expected_cache_files(FIXTURE_REF, &meta);
        let names: Option<Vec<String>> =
            files.as_ref().ok().map(|f| f.iter().map(ExpectedCacheFile::archive_name).collect());
        assert_eq!(names.as_deref(), Some(&FIXTURE_CACHE_ENTRIES.map(String::from)[..]));
        let kinds: Option<Vec<(CacheKind, SizeRule)>> =
            files.ok().map(|f| f.iter().map(|e| (e.kind, e.rule)).collect());
        assert_eq!(
            kinds,
            Some(alloc::vec![
                (CacheKind::Manifests, SizeRule::Any),
                (CacheKind::Fsmeta, SizeRule::NonZeroMultipleOf4096),
                (CacheKind::Vmdk, SizeRule::Any),
                (CacheKind::Layers, SizeRule::NonZeroMultipleOf4096),
                (CacheKind::Layers, SizeRule::NonZeroMultipleOf4096),
            ])
        );
        // The short form of the reference names the same metadata file.
        assert_eq!(
            expected_cache_files("python:3.12", &meta).ok(),
            expected_cache_files(FIXTURE_REF, &meta).ok()
        );
    }

    #[test]
    fn expected_files_dedup_and_errors() {
        let mut meta = fixture();
        let first = meta.layers.first().cloned();
        meta.layers.extend(first);
        let files = expected_cache_files(FIXTURE_REF, &meta);
        assert_eq!(files.map(|f| f.len()), Ok(5));

        assert_eq!(
            expected_cache_files("Not A Ref", &meta),
            Err(CacheError::InvalidImageReference {
                reference: "Not A Ref".into(),
                error: ReferenceError::InvalidFormat
            })
        );
        assert_eq!(
            expected_cache_files("", &meta).map_err(|e| e.to_string()),
            Err("invalid snapshot image reference: repository name must have at least one component".into())
        );
        let mut bad = fixture();
        bad.manifest_digest = "sha256:../x".into();
        assert_eq!(code(expected_cache_files(FIXTURE_REF, &bad)), Some("cache_invalid_image_digest"));
        let mut bad = fixture();
        if let Some(layer) = bad.layers.get_mut(1) {
            layer.diff_id = ":x".into();
        }
        assert_eq!(
            expected_cache_files(FIXTURE_REF, &bad),
            Err(CacheError::InvalidLayerDiffId {
                index: 1,
                error: DigestError::EmptyComponent { input: ":x".into() }
            })
        );
        // Non-sha256 digests that 0.6.2 accepts get sanitized names.
        let mut odd = fixture();
        if let Some(layer) = odd.layers.get_mut(0) {
            layer.diff_id = "sha256+b64u:AB=_-z".into();
        }
        let paths = expected_cache_files(FIXTURE_REF, &odd)
            .map(|f| f.into_iter().map(|e| e.path).collect::<Vec<_>>());
        assert_eq!(
            paths.ok().and_then(|p| p.get(3).cloned()).as_deref(),
            Some("layers/sha256+b64u_AB=_-z.erofs")
        );
    }

    #[test]
    fn kinds_rules_and_messages() {
        for kind in [CacheKind::Manifests, CacheKind::Layers, CacheKind::Fsmeta, CacheKind::Vmdk] {
            assert_eq!(CacheKind::from_dir(kind.as_str()), Some(kind));
        }
        assert_eq!(CacheKind::from_dir("blobs"), None);
        assert_eq!(CacheKind::from_dir("tmp"), None);
        assert_eq!(CacheKind::Manifests.file_suffix(), ".json");
        assert_eq!(CacheKind::Vmdk.file_suffix(), ".vmdk");
        let rule = SizeRule::NonZeroMultipleOf4096;
        assert!(
            !rule.check(0) && rule.check(4096) && rule.check(12288) && !rule.check(4095) && !rule.check(4097)
        );
        assert!(rule.check(u64::MAX - 4095) && !rule.check(u64::MAX));
        assert!(SizeRule::Any.check(0) && SizeRule::Any.check(55));
        let files = expected_cache_files(FIXTURE_REF, &fixture()).unwrap_or_default();
        let missing: Vec<String> =
            files.iter().filter_map(|f| f.check_staged(None).err().map(|e| e.to_string())).collect();
        assert_eq!(
            missing,
            [
                "missing staged image metadata: manifests/9f39de2cc07aeb65b0c8d87b811d86acce5f86cd7b201b9e906d875b03aa70ff.json",
                "missing staged fsmeta artifact: fsmeta/sha256_ef7217ae813dbb9b1ef3d5b51d7d7d2048b924e914739376fa48f61793bce80f.erofs",
                "missing staged VMDK artifact: vmdk/sha256_ef7217ae813dbb9b1ef3d5b51d7d7d2048b924e914739376fa48f61793bce80f.vmdk",
                "missing staged layer artifact: layers/sha256_ab29346d11370c4405f9c9ee177080147caca428e7a61a2a908084cbbf8d3fca.erofs",
                "missing staged layer artifact: layers/sha256_282df5f2f0cf60d6663a925eef8323c63fdf1889f6bcfbef6cf44474007d116c.erofs",
            ]
        );
        // The fixture's real sizes (expect.json) pass; an empty or unaligned EROFS file does not,
        // while an empty metadata or VMDK file does.
        let sizes = [1789, 4096, 55, 8192, 12288];
        assert!(files.iter().zip(sizes).all(|(f, size)| f.check_staged(Some(size)).is_ok()));
        let zero: Vec<Option<&str>> = files.iter().map(|f| code(f.check_staged(Some(0)))).collect();
        assert_eq!(
            zero,
            [
                None,
                Some("cache_artifact_not_materialized"),
                None,
                Some("cache_artifact_not_materialized"),
                Some("cache_artifact_not_materialized")
            ]
        );
        let fsmeta = files.get(1).map(|f| f.check_staged(Some(100)));
        assert_eq!(
            fsmeta.as_ref().and_then(text),
            Some("missing staged fsmeta artifact: fsmeta/sha256_ef7217ae813dbb9b1ef3d5b51d7d7d2048b924e914739376fa48f61793bce80f.erofs (100 bytes, not a non-zero multiple of 4096)".into())
        );
        let unexpected = CacheError::UnexpectedArtifact("layers/x.erofs".into());
        assert_eq!(unexpected.to_string(), "archive contains unexpected cache artifact: layers/x.erofs");
        assert_eq!(unexpected.code(), "cache_unexpected_artifact");
        let missing = CacheError::MetadataMissing("python:3.12".into());
        assert_eq!(missing.to_string(), "snapshot image cache metadata missing for python:3.12");
    }
}
