//! `snapshots/<hex>/snapshot.json`: the released flat descriptor of microsandbox 0.6.7 – 0.6.16
//! (numeric `schema` 1, `artifact: "snapshot"`), as 0.7.13 reads it when it loads a released
//! archive (`translate_released_flat_forward`, then the translated descriptor's `validate()`).
//!
//! Shape (every field required, `null` where optional, unknown fields refused): `schema` (1),
//! `artifact` (`"snapshot"`), `scope` (`disk` | `resumable`), `created_at`, `parent`, `image`
//! (`{ref, manifest_digest}`), `source_sandbox`, `state` (tagged by `kind`: `file` is
//! `{format: raw|qcow2, fstype, upper: {file, size_bytes, integrity}}`, `checkpoint` is
//! `{checkpoint_id, manifest}`), `labels` (string → string), `extensions`, `requires`.
//!
//! Rules, in 0.7.13's order: schema 1 and artifact `snapshot`; `requires` and `extensions` empty;
//! the digest is `sha256:` + hex of the file's bytes **as they are** (no canonical form: the
//! released identity is the hash of the bytes); the 0.7 ids it gets are `snap_` + the digest's
//! first 32 hex digits and `layer_` + its last 32; `parent` is a released digest
//! (`sha256:<64 hex>`, mapped the same way) or a 0.7 `snap_` id and not the snapshot itself;
//! `upper.file` one plain name, not a reserved one; `image.ref` not empty,
//! `image.manifest_digest` a lowercase sha256 digest; `created_at` RFC 3339; a `file` state has
//! scope `disk`, a non-empty `fstype`, `size_bytes` ≤ 2^53 − 1 and a well-formed integrity
//! (the G3 rules).
//!
//! Stricter than 0.7.13: duplicate keys are refused in every object (0.7.13 keeps the last
//! value inside `labels`), the file is bounded by `Limits::max_manifest_size`, `upper.file` may
//! not contain `/` at all, and a `checkpoint` state is refused here (0.7.13 parses it but cannot
//! load it: the released layout carries no checkpoint closure it can open).

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use core::fmt;

use sha2::{Digest as _, Sha256};

use crate::generation::g3::descriptor::{
    is_digest, is_id, DescriptorError, Integrity, LayerFormat, MAX_SAFE_INTEGER,
};
use crate::generation::g3::json::{self, Fields, Json, JsonError};

/// `upper.file` names 0.7.13 reserves for descriptor publication and migration.
const RESERVED_FILES: [&str; 4] =
    ["manifest.json", ".manifest.json.legacy", "snapshot.json", ".snapshot-migration.lock"];

/// Why a released `snapshot.json` is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReleasedDescriptorError {
    /// Not JSON, or not the schema's shape (duplicate key, unknown or missing field, wrong type).
    Json(JsonError),
    /// `schema` is not 1 or `artifact` is not `snapshot`.
    Schema,
    /// `requires` or `extensions` is not empty.
    Extensions,
    /// A digest or id field is malformed.
    Field {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// A required string is empty.
    Empty(&'static str),
    /// `parent` maps to the snapshot's own id.
    OwnParent,
    /// `created_at` is not an RFC 3339 time.
    Timestamp(String),
    /// `scope` and `state.kind` do not go together.
    Scope,
    /// `state.upper.size_bytes` passes 2^53 − 1.
    UnsafeSize,
    /// `state.upper.file` is not one plain, unreserved file name.
    UpperFile(String),
    /// `state.upper.integrity` breaks a rule.
    Integrity(DescriptorError),
    /// A `checkpoint` state: 0.7.13 cannot load it from a released archive.
    Checkpoint,
}

impl ReleasedDescriptorError {
    /// Stable identifier.
    pub fn code(&self) -> &'static str {
        match self {
            ReleasedDescriptorError::Json(e) => match e {
                JsonError::Syntax(_) => "msb_g2_descriptor_parse",
                JsonError::DuplicateKey(_) => "msb_g2_descriptor_duplicate_key",
                JsonError::UnknownField(_) => "msb_g2_descriptor_unknown_field",
                JsonError::MissingField(_) => "msb_g2_descriptor_missing_field",
                JsonError::WrongType { .. } | JsonError::UnknownVariant { .. } => {
                    "msb_g2_descriptor_wrong_type"
                }
            },
            ReleasedDescriptorError::Schema => "msb_g2_descriptor_schema",
            ReleasedDescriptorError::Extensions => "msb_g2_descriptor_extensions",
            ReleasedDescriptorError::Field { .. } => "msb_g2_descriptor_bad_field",
            ReleasedDescriptorError::Empty(_) => "msb_g2_descriptor_empty_field",
            ReleasedDescriptorError::OwnParent => "msb_g2_descriptor_own_parent",
            ReleasedDescriptorError::Timestamp(_) => "msb_g2_descriptor_timestamp",
            ReleasedDescriptorError::Scope => "msb_g2_descriptor_scope",
            ReleasedDescriptorError::UnsafeSize => "msb_g2_descriptor_unsafe_size",
            ReleasedDescriptorError::UpperFile(_) => "msb_g2_descriptor_upper_file",
            ReleasedDescriptorError::Integrity(_) => "msb_g2_descriptor_integrity",
            ReleasedDescriptorError::Checkpoint => "msb_g2_checkpoint",
        }
    }
}

impl fmt::Display for ReleasedDescriptorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("released snapshot descriptor: ")?;
        match self {
            ReleasedDescriptorError::Json(e) => write!(f, "{e}"),
            ReleasedDescriptorError::Schema => f.write_str(
                "unsupported released flat snapshot schema (expected schema 1, artifact snapshot)",
            ),
            ReleasedDescriptorError::Extensions => {
                f.write_str("released flat snapshot requires unsupported extensions")
            }
            ReleasedDescriptorError::Field { field, value } => {
                write!(f, "{field} is malformed: '{}'", value.escape_debug())
            }
            ReleasedDescriptorError::Empty(field) => write!(f, "empty {field}"),
            ReleasedDescriptorError::OwnParent => f.write_str("snapshot cannot be its own parent"),
            ReleasedDescriptorError::Timestamp(v) => {
                write!(f, "created_at is not an RFC 3339 time: '{}'", v.escape_debug())
            }
            ReleasedDescriptorError::Scope => f.write_str("state.kind=file requires scope=disk"),
            ReleasedDescriptorError::UnsafeSize => {
                f.write_str("state.upper.size_bytes exceeds the JSON safe-integer limit 2^53 - 1")
            }
            ReleasedDescriptorError::UpperFile(v) => {
                write!(f, "upper.file is not one plain, unreserved file name: '{}'", v.escape_debug())
            }
            ReleasedDescriptorError::Integrity(e) => write!(f, "{e}"),
            ReleasedDescriptorError::Checkpoint => f.write_str(
                "a checkpoint (resumable) snapshot: 0.7.13 cannot load one from a released archive",
            ),
        }
    }
}

impl From<JsonError> for ReleasedDescriptorError {
    fn from(e: JsonError) -> Self {
        ReleasedDescriptorError::Json(e)
    }
}

/// A parsed and validated released `snapshot.json` (file state only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasedDescriptor {
    /// `sha256:<hex>` of the file's bytes: the snapshot's released identity.
    pub digest: String,
    /// The 0.7 snapshot id 0.7.13 gives it on load (`snap_` + the digest's first 32 hex digits).
    pub snapshot_id: String,
    /// The 0.7 layer id of its upper (`layer_` + the digest's last 32 hex digits).
    pub layer_id: String,
    /// `parent` as written (a released digest or a 0.7 `snap_` id).
    pub parent: Option<String>,
    /// The parent's 0.7 snapshot id.
    pub parent_id: Option<String>,
    /// `created_at` as written.
    pub created_at: String,
    /// `image.ref`.
    pub image_reference: String,
    /// `image.manifest_digest`.
    pub image_manifest_digest: String,
    /// `source_sandbox`.
    pub source_sandbox: Option<String>,
    /// `state.format`.
    pub format: LayerFormat,
    /// `state.fstype`.
    pub fstype: String,
    /// `state.upper.file`: the upper is the member `files/<hex>/<upper_file>`.
    pub upper_file: String,
    /// `state.upper.size_bytes`.
    pub size_bytes: u64,
    /// `state.upper.integrity`.
    pub integrity: Option<Integrity>,
    /// `labels`.
    pub labels: BTreeMap<String, String>,
}

fn bad(field: &'static str, value: &str) -> ReleasedDescriptorError {
    ReleasedDescriptorError::Field { field, value: value.to_string() }
}

/// The 0.7 id of a released `sha256:<hex>` digest: `prefix` + the hex digits in `range`.
fn mapped(digest: &str, prefix: &str, first_half: bool) -> Option<String> {
    let hex = digest.strip_prefix("sha256:").filter(|_| is_digest(digest, "sha256:"))?;
    let half = if first_half { hex.get(..32)? } else { hex.get(32..)? };
    let mut id = String::with_capacity(prefix.len() + 32);
    id.push_str(prefix);
    id.push_str(half);
    Some(id)
}

/// `snap_` + the first 32 hex digits of a released digest (0.7.13's legacy snapshot id).
pub fn snapshot_id_of(digest: &str) -> Option<String> {
    mapped(digest, "snap_", true)
}

fn upper_file_ok(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !RESERVED_FILES.contains(&name)
}

impl ReleasedDescriptor {
    /// Parses and validates released `snapshot.json` bytes.
    pub fn parse(bytes: &[u8]) -> Result<ReleasedDescriptor, ReleasedDescriptorError> {
        let tree = json::parse(bytes)?;
        let mut f = Fields::of(&tree, "")?;
        let schema = f.req("schema")?;
        let artifact = f.str("artifact")?;
        let scope = json::variant(f.req("scope")?, "scope", &["disk", "resumable"])?;
        let created_at = f.str("created_at")?.to_string();
        let parent = f.str_or_null("parent")?.map(str::to_string);
        let mut i = Fields::of(f.req("image")?, "image")?;
        let image_reference = i.str("ref")?.to_string();
        let image_manifest_digest = i.str("manifest_digest")?.to_string();
        i.done()?;
        let source_sandbox = f.str_or_null("source_sandbox")?.map(str::to_string);
        let mut s = Fields::of(f.req("state")?, "state")?;
        let kind = json::variant(s.req("kind")?, "state.kind", &["file", "checkpoint"])?;
        let file = if kind == 0 {
            let format = match json::variant(s.req("format")?, "state.format", &["raw", "qcow2"])? {
                0 => LayerFormat::Raw,
                _ => LayerFormat::Qcow2,
            };
            let fstype = s.str("fstype")?.to_string();
            let mut u = Fields::of(s.req("upper")?, "state.upper")?;
            let upper_file = u.str("file")?.to_string();
            let size_bytes = u.u64("size_bytes")?;
            let integrity = match u.req("integrity")? {
                Json::Null => None,
                v => Some(Integrity::parse(v, "state.upper.integrity")?),
            };
            u.done()?;
            Some((format, fstype, upper_file, size_bytes, integrity))
        } else {
            s.str("checkpoint_id")?;
            s.str("manifest")?;
            None
        };
        s.done()?;
        let mut labels = BTreeMap::new();
        for (k, v) in f.obj("labels")? {
            labels.insert(k.clone(), json::as_str(v, "labels[]")?.to_string());
        }
        let extensions = f.obj("extensions")?;
        let requires = f.arr("requires")?;
        f.done()?;

        if *schema != Json::U64(1) || artifact != "snapshot" {
            return Err(ReleasedDescriptorError::Schema);
        }
        if !requires.is_empty() || !extensions.is_empty() {
            return Err(ReleasedDescriptorError::Extensions);
        }
        let digest = crate::hex::sha256_digest(&Sha256::digest(bytes).into());
        let snapshot_id = snapshot_id_of(&digest).unwrap_or_default();
        let layer_id = mapped(&digest, "layer_", false).unwrap_or_default();
        let parent_id = match parent.as_deref() {
            None => None,
            Some(p) if p.starts_with("snap_") => {
                if !is_id(p, "snap_") {
                    return Err(bad("parent", p));
                }
                Some(p.to_string())
            }
            Some(p) => Some(snapshot_id_of(p).ok_or_else(|| bad("parent", p))?),
        };
        let Some((format, fstype, upper_file, size_bytes, integrity)) = file else {
            return Err(ReleasedDescriptorError::Checkpoint);
        };
        if !upper_file_ok(&upper_file) {
            return Err(ReleasedDescriptorError::UpperFile(upper_file));
        }
        // The translated descriptor's `validate()`, in its order.
        if image_reference.is_empty() {
            return Err(ReleasedDescriptorError::Empty("image.ref"));
        }
        if !is_digest(&image_manifest_digest, "sha256:") {
            return Err(bad("image.manifest_digest", &image_manifest_digest));
        }
        if parent_id.as_deref() == Some(snapshot_id.as_str()) {
            return Err(ReleasedDescriptorError::OwnParent);
        }
        if crate::generation::g3::time::normalize_rfc3339(&created_at).is_none() {
            return Err(ReleasedDescriptorError::Timestamp(created_at));
        }
        if scope != 0 {
            return Err(ReleasedDescriptorError::Scope);
        }
        if fstype.is_empty() {
            return Err(ReleasedDescriptorError::Empty("state.fstype"));
        }
        if size_bytes > MAX_SAFE_INTEGER {
            return Err(ReleasedDescriptorError::UnsafeSize);
        }
        if let Some(i) = &integrity {
            i.validate().map_err(ReleasedDescriptorError::Integrity)?;
        }
        Ok(ReleasedDescriptor {
            digest,
            snapshot_id,
            layer_id,
            parent,
            parent_id,
            created_at,
            image_reference,
            image_manifest_digest,
            source_sandbox,
            format,
            fstype,
            upper_file,
            size_bytes,
            integrity,
            labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The descriptor of 0.7.13's own released-archive test (`released_archive_uses_the_…`).
    const SAMPLE: &str = r#"{"artifact":"snapshot","created_at":"2026-05-01T12:00:00Z","extensions":{},"image":{"manifest_digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","ref":"alpine:3.21"},"labels":{},"parent":null,"requires":[],"schema":1,"scope":"disk","source_sandbox":"previous","state":{"fstype":"ext4","format":"raw","kind":"file","upper":{"file":"disk.ext4","integrity":null,"size_bytes":7}}}"#;

    fn code(json: &str) -> &'static str {
        ReleasedDescriptor::parse(json.as_bytes()).map(|_| "ok").unwrap_or_else(|e| e.code())
    }

    #[test]
    fn the_sample_maps_to_its_ids() {
        let d = ReleasedDescriptor::parse(SAMPLE.as_bytes()).unwrap();
        let hex = d.digest.strip_prefix("sha256:").unwrap();
        assert_eq!(d.snapshot_id, alloc::format!("snap_{}", &hex[..32]));
        assert_eq!(d.layer_id, alloc::format!("layer_{}", &hex[32..]));
        assert_eq!((d.upper_file.as_str(), d.size_bytes, d.parent_id), ("disk.ext4", 7, None));
    }

    #[test]
    fn rules() {
        let r = |a: &str, b: &str| code(&SAMPLE.replace(a, b));
        assert_eq!(r("\"schema\":1", "\"schema\":2"), "msb_g2_descriptor_schema");
        assert_eq!(r("\"schema\":1", "\"schema\":\"1\""), "msb_g2_descriptor_schema");
        assert_eq!(r("\"artifact\":\"snapshot\"", "\"artifact\":\"x\""), "msb_g2_descriptor_schema");
        assert_eq!(r("\"requires\":[]", "\"requires\":[\"a\"]"), "msb_g2_descriptor_extensions");
        assert_eq!(r("\"labels\":{}", "\"labels\":{},\"x\":1"), "msb_g2_descriptor_unknown_field");
        assert_eq!(
            r("\"labels\":{}", "\"labels\":{\"a\":\"1\",\"a\":\"2\"}"),
            "msb_g2_descriptor_duplicate_key"
        );
        assert_eq!(r("\"parent\":null,", ""), "msb_g2_descriptor_missing_field");
        assert_eq!(r("\"parent\":null", "\"parent\":\"sha256:AB\""), "msb_g2_descriptor_bad_field");
        assert_eq!(r("\"parent\":null", "\"parent\":\"snap_x\""), "msb_g2_descriptor_bad_field");
        assert_eq!(r("\"scope\":\"disk\"", "\"scope\":\"resumable\""), "msb_g2_descriptor_scope");
        assert_eq!(r("\"file\":\"disk.ext4\"", "\"file\":\"a/b\""), "msb_g2_descriptor_upper_file");
        assert_eq!(r("\"file\":\"disk.ext4\"", "\"file\":\"snapshot.json\""), "msb_g2_descriptor_upper_file");
        assert_eq!(r("\"ref\":\"alpine:3.21\"", "\"ref\":\"\""), "msb_g2_descriptor_empty_field");
        assert_eq!(r("2026-05-01T12:00:00Z", "today"), "msb_g2_descriptor_timestamp");
        assert_eq!(r("\"size_bytes\":7", "\"size_bytes\":9007199254740992"), "msb_g2_descriptor_unsafe_size");
        assert_eq!(
            r("\"integrity\":null", "\"integrity\":{\"algorithm\":\"sha256\",\"digest\":\"sha256:00\"}"),
            "msb_g2_descriptor_integrity"
        );
        assert_eq!(
            r(
                "\"state\":{\"fstype\":\"ext4\",\"format\":\"raw\",\"kind\":\"file\",\"upper\":{\"file\":\"disk.ext4\",\"integrity\":null,\"size_bytes\":7}}",
                "\"state\":{\"kind\":\"checkpoint\",\"checkpoint_id\":\"c\",\"manifest\":\"m\"}"
            ),
            "msb_g2_checkpoint"
        );
        // Whitespace is not normalised away: the identity is the bytes' hash.
        let spaced = ReleasedDescriptor::parse(SAMPLE.replace(",", ", ").as_bytes()).unwrap();
        assert_ne!(spaced.digest, ReleasedDescriptor::parse(SAMPLE.as_bytes()).unwrap().digest);
    }
}
