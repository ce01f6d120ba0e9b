//! The 0.6.2 snapshot manifest: exact parsing, `validate()`, canonical bytes and digest.
//!
//! Parsing follows `microsandbox_image::snapshot::Manifest` (`docs/format-0.6.2.md` §2.2): every
//! struct denies unknown fields, `parent`, `upper.integrity` and `source_sandbox` must be present
//! even when `null`, duplicate struct keys are rejected, duplicate `labels` keys keep the last value.
//!
//! The snapshot digest (`docs/format-0.6.2.md` §2.3) is SHA-256 over `serde_json::to_vec` of the
//! parsed struct: compact JSON, fields in declaration order, labels sorted by UTF-8 bytes,
//! serde_json escaping.
//! It is computed from the re-serialised struct, not from the file's bytes.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::ManifestError;
use crate::names;

/// The only schema version 0.6.2 reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
/// File name of the manifest inside a snapshot directory.
pub const MANIFEST_FILENAME: &str = "manifest.json";
/// The integrity algorithm that hashes the logical content with a length prefix.
pub const SPARSE_SHA256_V1: &str = "msb-sparse-sha256-v1";
/// Plain SHA-256 of the whole upper file.
pub const SHA256: &str = "sha256";

/// Disk image format of the upper layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotFormat {
    /// Raw disk image.
    Raw,
    /// qcow2 image (parsed, never produced by 0.6.2).
    Qcow2,
}

impl SnapshotFormat {
    /// The JSON spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            SnapshotFormat::Raw => "raw",
            SnapshotFormat::Qcow2 => "qcow2",
        }
    }
}

/// The OCI image a snapshot boots from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRef {
    /// Image reference, e.g. `docker.io/library/alpine:3.20`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// `sha256:<hex>` of the OCI image manifest.
    pub manifest_digest: String,
}

/// Recorded integrity of the upper file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpperIntegrity {
    /// `sha256` or `msb-sparse-sha256-v1`.
    pub algorithm: String,
    /// `sha256:<hex>`.
    pub digest: String,
}

/// The writable upper layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpperLayer {
    /// File name inside the snapshot directory.
    pub file: String,
    /// Apparent size in bytes.
    pub size_bytes: u64,
    /// Recorded integrity; the key is required, the value may be `null`.
    #[serde(deserialize_with = "required_option")]
    pub integrity: Option<UpperIntegrity>,
}

/// A 0.6.2 snapshot manifest. Field order is the canonical byte order: do not reorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Must be 1.
    pub schema: u32,
    /// Disk format.
    pub format: SnapshotFormat,
    /// Filesystem type, e.g. `ext4`.
    pub fstype: String,
    /// Boot image.
    pub image: ImageRef,
    /// Parent snapshot digest, or `null`.
    #[serde(deserialize_with = "required_option")]
    pub parent: Option<String>,
    /// Creation time string, kept byte for byte.
    pub created_at: String,
    /// User labels.
    pub labels: BTreeMap<String, String>,
    /// Upper layer.
    pub upper: UpperLayer,
    /// Sandbox the snapshot was taken from, or `null`.
    #[serde(deserialize_with = "required_option")]
    pub source_sandbox: Option<String>,
}

/// `deserialize_with` makes serde require the key while still accepting `null`.
fn required_option<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

fn check_digest_form(field: &'static str, value: &str) -> Result<(), ManifestError> {
    match value.split_once(':') {
        None => Err(ManifestError::NotDigest { field, value: value.to_string() }),
        Some((a, b)) if a.is_empty() || b.is_empty() => {
            Err(ManifestError::DigestEmptyComponent { field, value: value.to_string() })
        }
        Some(_) => Ok(()),
    }
}

impl Manifest {
    /// Parses and validates manifest bytes (0.6.2 `Manifest::from_bytes`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| ManifestError::Parse(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// The checks of 0.6.2 `validate()`, in its order, plus the portable-name rule for `upper.file`.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.schema != SCHEMA_VERSION {
            return Err(ManifestError::UnsupportedSchema(self.schema));
        }
        if self.fstype.is_empty() {
            return Err(ManifestError::Empty("fstype"));
        }
        if self.image.reference.is_empty() {
            return Err(ManifestError::Empty("image.ref"));
        }
        check_digest_form("image.manifest_digest", &self.image.manifest_digest)?;
        if let Some(parent) = &self.parent {
            check_digest_form("parent", parent)?;
        }
        if let Some(integrity) = &self.upper.integrity {
            check_digest_form("upper.integrity.digest", &integrity.digest)?;
        }
        let file = &self.upper.file;
        if file.is_empty() {
            return Err(ManifestError::Empty("upper.file"));
        }
        let first = file.split('/').next().unwrap_or("");
        if file.starts_with('/') || first == "." || first == ".." {
            return Err(ManifestError::UpperNotRelative(file.clone()));
        }
        if file.contains('/') {
            return Err(ManifestError::UpperNotSingle(file.clone()));
        }
        if file == MANIFEST_FILENAME || names::check_component(file).is_err() {
            return Err(ManifestError::UpperName(file.clone()));
        }
        if let Some(integrity) = &self.upper.integrity {
            if integrity.algorithm.is_empty() {
                return Err(ManifestError::Empty("upper.integrity.algorithm"));
            }
        }
        Ok(())
    }

    /// Canonical bytes: compact serde_json in declaration order.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serialising plain strings, integers and a BTreeMap into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The snapshot digest `sha256:<hex>` over the canonical bytes.
    pub fn digest(&self) -> String {
        let hash: [u8; 32] = Sha256::digest(self.canonical_bytes()).into();
        crate::hex::sha256_digest(&hash)
    }

    /// The archive prefix 0.6.2 export uses: `sha256-` and the first 16 hex digits of the digest.
    pub fn archive_prefix(digest: &str) -> String {
        match digest.strip_prefix("sha256:") {
            Some(hex) => {
                let mut s = String::from("sha256-");
                s.extend(hex.chars().take(16));
                s
            }
            None => digest.replace(':', "-").chars().take(20).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORACLE: &str = r#"{"schema":1,"format":"raw","fstype":"ext4","image":{"ref":"docker.io/library/alpine:3.20","manifest_digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001"},"parent":null,"created_at":"2026-05-01T12:00:00.123456789+00:00","labels":{"owner":"spec","stage":"oracle"},"upper":{"file":"upper.ext4","size_bytes":8388608,"integrity":{"algorithm":"msb-sparse-sha256-v1","digest":"sha256:420ebb091b67adf072f9c747c5b6762bb9e1376e076d56e721b613876f19279f"}},"source_sandbox":"oracle-single"}"#;

    #[test]
    fn spec_oracle_digest_and_canonical_bytes() {
        let m = Manifest::from_bytes(ORACLE.as_bytes()).unwrap();
        assert_eq!(m.canonical_bytes(), ORACLE.as_bytes());
        assert_eq!(m.digest(), "sha256:11edd65409da406cb8579303be762d6fd69dc02bbf0c07a6c3b9a30965e03807");
        assert_eq!(Manifest::archive_prefix(&m.digest()), "sha256-11edd65409da406c");
    }

    #[test]
    fn digest_ignores_formatting_of_the_file() {
        let pretty = ORACLE.replace(",\"", ",\n  \"").replace(
            "\"labels\":{\"owner\":\"spec\",\n  \"stage\":\"oracle\"}",
            "\"labels\":{\"stage\":\"oracle\",\"owner\":\"spec\"}",
        );
        let m = Manifest::from_bytes(pretty.as_bytes()).unwrap();
        assert_eq!(m.digest(), "sha256:11edd65409da406cb8579303be762d6fd69dc02bbf0c07a6c3b9a30965e03807");
    }

    fn code(json: &str) -> &'static str {
        Manifest::from_bytes(json.as_bytes()).map(|_| "ok").unwrap_or_else(|e| e.code())
    }

    #[test]
    fn required_nullable_keys_must_be_present() {
        assert_eq!(code(&ORACLE.replace("\"parent\":null,", "")), "manifest_parse");
        assert_eq!(code(&ORACLE.replace(",\"source_sandbox\":\"oracle-single\"", "")), "manifest_parse");
        let no_integrity = ORACLE.replace(
            ",\"integrity\":{\"algorithm\":\"msb-sparse-sha256-v1\",\"digest\":\"sha256:420ebb091b67adf072f9c747c5b6762bb9e1376e076d56e721b613876f19279f\"}",
            "",
        );
        assert_eq!(code(&no_integrity), "manifest_parse");
    }

    #[test]
    fn unknown_and_duplicate_fields_are_rejected() {
        let err = Manifest::from_bytes(ORACLE.replacen("{", "{\"comment\":1,", 1).as_bytes()).unwrap_err();
        assert!(err.to_string().contains("unknown field `comment`"), "{err}");
        assert_eq!(code(&ORACLE.replacen("{", "{\"schema\":1,", 1)), "manifest_parse");
        assert_eq!(
            code(&ORACLE.replace("\"size_bytes\"", "\"sha256\":\"x\",\"size_bytes\"")),
            "manifest_parse"
        );
    }

    #[test]
    fn duplicate_label_keys_keep_the_last() {
        let m = Manifest::from_bytes(
            ORACLE.replace("\"owner\":\"spec\"", "\"owner\":\"a\",\"owner\":\"spec\"").as_bytes(),
        )
        .unwrap();
        assert_eq!(m.labels.get("owner").map(String::as_str), Some("spec"));
    }

    #[test]
    fn validate_rules_in_order() {
        let e = Manifest::from_bytes(ORACLE.replace("\"schema\":1", "\"schema\":2").as_bytes()).unwrap_err();
        assert_eq!(e.to_string(), "snapshot manifest: unsupported schema version 2 (expected 1)");
        assert_eq!(code(&ORACLE.replace("\"fstype\":\"ext4\"", "\"fstype\":\"\"")), "manifest_empty_field");
        assert_eq!(code(&ORACLE.replace("docker.io/library/alpine:3.20", "")), "manifest_empty_field");
        assert_eq!(code(&ORACLE.replace("\"parent\":null", "\"parent\":\"abc\"")), "manifest_bad_digest");
        assert_eq!(code(&ORACLE.replace("\"parent\":null", "\"parent\":\"sha256:\"")), "manifest_bad_digest");
        for bad in ["../x", "a/b", "", "manifest.json", "/abs", ".", "a\\\\b"] {
            let json = ORACLE.replace("\"file\":\"upper.ext4\"", &alloc::format!("\"file\":\"{bad}\""));
            let c = code(&json);
            assert!(c == "manifest_bad_upper_file" || c == "manifest_empty_field", "{bad}: {c}");
        }
        assert_eq!(
            code(&ORACLE.replace("\"algorithm\":\"msb-sparse-sha256-v1\"", "\"algorithm\":\"\"")),
            "manifest_empty_field"
        );
    }

    #[test]
    fn qcow2_parses() {
        let m = Manifest::from_bytes(ORACLE.replace("\"raw\"", "\"qcow2\"").as_bytes()).unwrap();
        assert_eq!(m.format, SnapshotFormat::Qcow2);
    }
}
