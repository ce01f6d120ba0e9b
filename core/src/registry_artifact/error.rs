//! Why a manifest or config blob served by a registry is not a snapbundle artifact.

use alloc::string::String;
use core::fmt;

use super::split::SplitError;
use super::{ANN_SHA256, ARTIFACT_TYPE, MSB_ARTIFACT_TYPE, OCI_MANIFEST_MEDIA_TYPE};

/// A manifest or config blob that is not a usable snapbundle artifact. The `Display` text reads
/// after the reference it was fetched for (`<reference>: <text>`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArtifactError {
    /// The manifest is larger than [`super::MAX_MANIFEST_BYTES`].
    ManifestTooLarge {
        /// The bound.
        max: usize,
    },
    /// The manifest is not JSON of the OCI image manifest's shape.
    NotJson(String),
    /// Not `schemaVersion` 2 or another `mediaType` than [`OCI_MANIFEST_MEDIA_TYPE`].
    NotOciManifest,
    /// Another `artifactType` or config media type than snapbundle's.
    NotSnapbundle {
        /// The manifest's `artifactType` (empty when absent).
        artifact_type: String,
        /// The config descriptor's media type.
        config_media_type: String,
    },
    /// The config descriptor's digest is not sha256 or its size is over
    /// [`super::MAX_CONFIG_BYTES`].
    BadConfig {
        /// The config digest as served.
        digest: String,
    },
    /// No layers, or more than `max_entries`.
    LayerCount {
        /// Layers in the manifest.
        count: usize,
        /// The bound (`Limits::max_entries`).
        max: u32,
    },
    /// The rebuilt tar stream would be larger than `max_decompressed_bytes`.
    TooLarge {
        /// The bound.
        max: u64,
    },
    /// A layer descriptor is unusable.
    Layer {
        /// Zero-based layer index.
        index: usize,
        /// Its digest as served.
        digest: String,
        /// What was wrong.
        error: LayerError,
    },
    /// The config blob is not JSON of [`super::ChainConfig`]'s shape.
    ConfigJson(String),
    /// The config blob's schema or format is not snapbundle's, or its members are not the
    /// layers' paths in order.
    ConfigMismatch,
    /// A `.msb` config's header records of a member are not one member's header.
    MsbHeaders {
        /// Zero-based layer index.
        index: usize,
        /// The member path.
        path: String,
        /// What is wrong.
        why: SplitError,
    },
    /// A `.msb` config's header records name another path or size than the layer's.
    MsbHeaderMismatch {
        /// Zero-based layer index.
        index: usize,
        /// The member path.
        path: String,
        /// `path` or `size`.
        what: &'static str,
    },
    /// A `.msb` config field that must be base64 is not (canonical) base64.
    ConfigBase64 {
        /// `headers` or `trailer`.
        what: &'static str,
        /// The member index (for `headers`).
        index: usize,
    },
    /// A `.msb` config's trailer is not zeros, or too short or long.
    MsbTrailer(SplitError),
    /// The tar stream a `.msb` config and its layers rebuild is not as long as the config says.
    MsbTarSize {
        /// What the layers rebuild.
        rebuilt: u64,
        /// The config's `tar.size`.
        config: u64,
    },
}

impl ArtifactError {
    /// Stable snake_case identifier.
    pub fn code(&self) -> &'static str {
        match self {
            ArtifactError::ManifestTooLarge { .. } => "artifact_manifest_too_large",
            ArtifactError::NotJson(_) => "artifact_manifest_json",
            ArtifactError::NotOciManifest => "not_oci_manifest",
            ArtifactError::NotSnapbundle { .. } => "not_snapbundle_artifact",
            ArtifactError::BadConfig { .. } => "bad_config_descriptor",
            ArtifactError::LayerCount { .. } => "layer_count",
            ArtifactError::TooLarge { .. } => "artifact_too_large",
            ArtifactError::Layer { error, .. } => error.code(),
            ArtifactError::ConfigJson(_) => "artifact_config_json",
            ArtifactError::ConfigMismatch => "artifact_config_mismatch",
            ArtifactError::MsbHeaders { .. } | ArtifactError::MsbHeaderMismatch { .. } => {
                "msb_header_records"
            }
            ArtifactError::ConfigBase64 { .. } => "artifact_config_json",
            ArtifactError::MsbTrailer(_) => "msb_trailer",
            ArtifactError::MsbTarSize { .. } => "artifact_config_mismatch",
        }
    }
}

impl fmt::Display for ArtifactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArtifactError::ManifestTooLarge { max } => write!(f, "the manifest is larger than {max} bytes"),
            ArtifactError::NotJson(e) => write!(f, "not an OCI image manifest: {e}"),
            ArtifactError::NotOciManifest => {
                write!(f, "not an OCI image manifest (schemaVersion 2, {OCI_MANIFEST_MEDIA_TYPE})")
            }
            ArtifactError::NotSnapbundle { artifact_type, config_media_type } => write!(
                f,
                "not a snapbundle snapshot (artifactType {artifact_type:?}, config {config_media_type:?}; expected {ARTIFACT_TYPE} or {MSB_ARTIFACT_TYPE})"
            ),
            ArtifactError::BadConfig { digest } => write!(f, "bad config descriptor {digest}"),
            ArtifactError::LayerCount { count, max } => write!(f, "{count} layers (1 to {max} allowed)"),
            ArtifactError::TooLarge { max } => write!(f, "the members add up to more than {max} bytes"),
            ArtifactError::Layer { index, digest, error } => write!(f, "layer #{index} ({digest}): {error}"),
            ArtifactError::ConfigJson(e) => write!(f, "the config blob is not a snapbundle config: {e}"),
            ArtifactError::ConfigMismatch => f.write_str("the config blob does not describe the layers"),
            ArtifactError::MsbHeaders { index, path, why } => {
                write!(f, "the config's header records of member #{index} ({path}): {why}")
            }
            ArtifactError::MsbHeaderMismatch { index, path, what } => write!(
                f,
                "the config's header records of member #{index} ({path}) give another {what} than its layer"
            ),
            ArtifactError::ConfigBase64 { what, index } => {
                write!(f, "the config's {what} (member #{index}) is not canonical base64")
            }
            ArtifactError::MsbTrailer(why) => write!(f, "the config's trailer: {why}"),
            ArtifactError::MsbTarSize { rebuilt, config } => write!(
                f,
                "the layers rebuild a tar stream of {rebuilt} bytes, the config says {config}"
            ),
        }
    }
}

impl core::error::Error for ArtifactError {}

/// What is wrong with one layer descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayerError {
    /// Neither member media type.
    MediaType(String),
    /// The blob digest is not `sha256:<64 lowercase hex>`.
    Digest,
    /// A required annotation is absent.
    MissingAnnotation(&'static str),
    /// A numeric annotation holds something other than decimal digits.
    NotDecimal {
        /// The annotation key.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// A numeric annotation is larger than its tar header field holds.
    OutOfRange {
        /// The annotation key.
        key: &'static str,
        /// Its value.
        value: String,
        /// The largest value accepted.
        max: u64,
    },
    /// The member path is empty or longer than `max_path_len`.
    PathLength(usize),
    /// The member sha256 annotation is not `sha256:<64 lowercase hex>`.
    MemberDigest,
    /// The member size is over `max_decompressed_bytes`.
    MemberSize(u64),
    /// A raw (uncompressed) layer whose size or digest is not its member's.
    RawMismatch,
    /// A zstd layer's blob is larger than any zstd frame of its member can be
    /// ([`zstd_bound`](super::zstd_bound)).
    CompressedSize {
        /// The blob's declared size.
        blob: u64,
        /// The member's size.
        member: u64,
        /// The largest blob that member can compress to.
        max: u64,
    },
}

impl LayerError {
    /// Stable snake_case identifier.
    pub fn code(&self) -> &'static str {
        match self {
            LayerError::MediaType(_) => "layer_media_type",
            LayerError::Digest => "layer_digest",
            LayerError::MissingAnnotation(_) => "annotation_missing",
            LayerError::NotDecimal { .. } => "annotation_not_decimal",
            LayerError::OutOfRange { .. } => "annotation_out_of_range",
            LayerError::PathLength(_) => "member_path_length",
            LayerError::MemberDigest => "member_digest",
            LayerError::MemberSize(_) => "member_too_large",
            LayerError::RawMismatch => "raw_layer_mismatch",
            LayerError::CompressedSize { .. } => "compressed_blob_too_large",
        }
    }
}

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerError::MediaType(other) => write!(f, "unknown media type {other:?}"),
            LayerError::Digest => f.write_str("the digest is not sha256:<64 lowercase hex>"),
            LayerError::MissingAnnotation(key) => write!(f, "annotation {key} missing"),
            LayerError::NotDecimal { key, value } => {
                write!(f, "annotation {key} is not a decimal number: {value:?}")
            }
            LayerError::OutOfRange { key, value, max } => {
                write!(f, "annotation {key} is out of range: {value:?} (0 to {max})")
            }
            LayerError::PathLength(len) => write!(f, "member path of {len} bytes"),
            LayerError::MemberDigest => write!(f, "annotation {ANN_SHA256} is not sha256:<64 lowercase hex>"),
            LayerError::MemberSize(size) => write!(f, "member size {size} over the limit"),
            LayerError::RawMismatch => f.write_str("a raw layer's size and digest must be its member's"),
            LayerError::CompressedSize { blob, member, max } => write!(
                f,
                "a zstd blob of {blob} bytes for a member of {member} bytes (a zstd frame of it is at most {max})"
            ),
        }
    }
}
