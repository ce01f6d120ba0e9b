//! Between generations: a 0.6.2 snapshot manifest as the microsandbox 0.7 descriptor that 0.7.13
//! derives from it when it loads the 0.6.2 bundle (`translate_v066_forward` in
//! `microsandbox-image 0.7.13`), and back.
//!
//! Forward, 0.7.13 keeps the legacy identity: the snapshot id is `snap_` and the first 32 hex
//! digits of the 0.6.2 digest, the single layer's id `layer_` and the last 32; the upper becomes
//! one raw layer of the same size with the same recorded integrity (not recomputed); the labels
//! leave the descriptor for `metadata.json`; `created_at` is normalised. What the descriptor
//! cannot hold (the exact `created_at` text, the upper's file name) is why a converted archive
//! also carries the original manifest (see [`LEGACY_MANIFESTS`]).
//!
//! Backward ([`backward`]), for what 0.6.2 can hold (one raw ext4 layer, file scope, managed
//! root, no extension): the carried original manifest when it still describes the snapshot,
//! else the manifest 0.7.13's own downgrade writes (`translate_v066_reverse`).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use serde::Serialize;

use super::g3::descriptor::{payload_path, Descriptor, Integrity, LayerFormat, State};
use super::g3::metadata;
use crate::manifest::{
    ImageRef, Manifest, SnapshotFormat, UpperIntegrity, UpperLayer, SHA256, SPARSE_SHA256_V1,
};

/// The inventory extension in which a converted archive carries each snapshot's original 0.6.2
/// manifest, byte for byte: `{"<snap_id>": "<manifest.json>"}`. Not in `requires`, so 0.7.13
/// ignores it; `convert --to 0.6.2` restores the manifests from it.
pub const LEGACY_MANIFESTS: &str = "snapbundle.v062-manifests";

/// Why a 0.6.2 snapshot has no 0.7 form (0.7.13's migration refuses it too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unrepresentable {
    /// 0.7.13 migrates raw ext4 uppers only.
    Layout {
        /// `format`.
        format: &'static str,
        /// `fstype`.
        fstype: String,
    },
    /// A field 0.7.13's stricter reading refuses.
    Field {
        /// The field.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The derived descriptor is not one 0.7.13 accepts.
    Descriptor(String),
}

impl fmt::Display for Unrepresentable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unrepresentable::Layout { format, fstype } => {
                write!(f, "microsandbox 0.7 takes over raw ext4 uppers only; this one is {format} {fstype}")
            }
            Unrepresentable::Field { field, reason } => write!(f, "{field} {reason}"),
            Unrepresentable::Descriptor(why) => write!(f, "the 0.7 descriptor would be refused: {why}"),
        }
    }
}

/// A 0.6.2 snapshot in its 0.7 form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// `snap_` + the first 32 hex digits of the 0.6.2 digest.
    pub snapshot_id: String,
    /// `layer_` + the last 32.
    pub layer_id: String,
    /// The parent's snapshot id, derived the same way from `manifest.parent`.
    pub parent_id: Option<String>,
    /// The canonical `snapshot.json`.
    pub descriptor: Vec<u8>,
    /// Its digest (`sha256:<hex>`).
    pub descriptor_digest: String,
    /// `metadata.json` when the snapshot has labels.
    pub metadata: Option<Vec<u8>>,
}

impl Forward {
    /// The layer's member path, `layers/<layer_id>.raw`.
    pub fn layer_path(&self) -> String {
        payload_path(&self.layer_id, LayerFormat::Raw)
    }

    /// The descriptor's member path, `snapshots/<snap_id>/snapshot.json`.
    pub fn descriptor_path(&self) -> String {
        format!("snapshots/{}/snapshot.json", self.snapshot_id)
    }

    /// The labels' member path, `snapshots/<snap_id>/metadata.json`.
    pub fn metadata_path(&self) -> String {
        format!("snapshots/{}/metadata.json", self.snapshot_id)
    }
}

/// The hex digits of a lowercase `sha256:<64 hex>` digest.
fn sha256_hex<'a>(value: &'a str, field: &'static str) -> Result<&'a str, Unrepresentable> {
    match value.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(hex)
        }
        _ => Err(Unrepresentable::Field { field, reason: "is not a lowercase sha256 digest" }),
    }
}

/// `snap_` + the first 32 hex digits of a 0.6.2 digest.
pub fn legacy_snapshot_id(digest: &str) -> Option<String> {
    let hex = sha256_hex(digest, "digest").ok()?;
    Some(format!("snap_{}", hex.get(..32)?))
}

/// `layer_` + the last 32 hex digits of a 0.6.2 digest.
pub fn legacy_layer_id(digest: &str) -> Option<String> {
    let hex = sha256_hex(digest, "digest").ok()?;
    Some(format!("layer_{}", hex.get(32..)?))
}

/// File names 0.7.13's migration reserves for itself.
const RESERVED_UPPER_NAMES: [&str; 4] =
    ["manifest.json", ".manifest.json.legacy", "snapshot.json", ".snapshot-migration.lock"];

#[derive(Serialize)]
struct Metadata<'a> {
    schema: &'static str,
    labels: &'a BTreeMap<String, String>,
}

/// The 0.7 form of a validated 0.6.2 `manifest` whose digest is `digest`, exactly as 0.7.13's
/// migration derives it, or why there is none.
pub fn forward(manifest: &Manifest, digest: &str) -> Result<Forward, Unrepresentable> {
    forward_with_parent(manifest, digest, None)
}

/// [`forward`], with the parent's 0.7 id given: the id it was converted to in the same run
/// (0.7.13 maps parents through its graph the same way), instead of the one derived from
/// `manifest.parent`.
pub fn forward_with_parent(
    manifest: &Manifest,
    digest: &str,
    parent_id: Option<&str>,
) -> Result<Forward, Unrepresentable> {
    if manifest.format != SnapshotFormat::Raw || manifest.fstype != "ext4" {
        return Err(Unrepresentable::Layout {
            format: manifest.format.as_str(),
            fstype: manifest.fstype.clone(),
        });
    }
    if manifest.image.reference.is_empty() {
        return Err(Unrepresentable::Field { field: "image.ref", reason: "is empty" });
    }
    sha256_hex(&manifest.image.manifest_digest, "image.manifest_digest")?;
    let parent_id = match (&manifest.parent, parent_id) {
        (Some(_), Some(id)) => Some(id.to_string()),
        (Some(p), None) => Some(format!("snap_{}", sha256_hex(p, "parent")?.get(..32).unwrap_or_default())),
        (None, _) => None,
    };
    if RESERVED_UPPER_NAMES.contains(&manifest.upper.file.as_str()) {
        return Err(Unrepresentable::Field {
            field: "upper.file",
            reason: "is a name microsandbox 0.7 reserves",
        });
    }
    let integrity = match &manifest.upper.integrity {
        Some(i) => {
            sha256_hex(&i.digest, "upper.integrity.digest")?;
            serde_json::json!({ "algorithm": i.algorithm, "digest": i.digest })
        }
        None => serde_json::Value::Null,
    };
    let hex = sha256_hex(digest, "digest")?;
    let snapshot_id = format!("snap_{}", hex.get(..32).unwrap_or_default());
    let layer_id = format!("layer_{}", hex.get(32..).unwrap_or_default());
    let size = manifest.upper.size_bytes;
    let tree = serde_json::json!({
        "schema": super::g3::descriptor::SCHEMA,
        "snapshot_id": snapshot_id,
        "scope": "file",
        "state": {
            "kind": "file",
            "disk_format": "raw",
            "filesystem": "ext4",
            "virtual_size": size,
            "head": layer_id,
            "layers": [{
                "layer_id": layer_id,
                "format": "raw",
                "virtual_size": size,
                "backing": null,
                "payload": { "file_kind": "regular", "integrity": integrity },
            }],
        },
        "capture": {
            "created_at": manifest.created_at,
            "source_lineage": manifest.source_sandbox,
            "source_checkpoint": null,
            "consistency": "crash-consistent",
        },
        "image": { "reference": manifest.image.reference, "manifest_digest": manifest.image.manifest_digest },
        "root_disk": { "layout": "managed" },
        "parent": parent_id,
        "requires": [],
        "extensions": {},
    });
    let bytes = serde_json::to_vec(&tree).map_err(|e| Unrepresentable::Descriptor(e.to_string()))?;
    let descriptor = Descriptor::parse(&bytes).map_err(|e| Unrepresentable::Descriptor(e.to_string()))?;
    let metadata = metadata_bytes(&manifest.labels)?;
    Ok(Forward {
        descriptor_digest: descriptor.digest(),
        descriptor: descriptor.canonical_bytes().to_vec(),
        snapshot_id,
        layer_id,
        parent_id,
        metadata,
    })
}

/// `metadata.json` for `labels` as 0.7.13 writes it, `None` without labels.
pub fn metadata_bytes(labels: &BTreeMap<String, String>) -> Result<Option<Vec<u8>>, Unrepresentable> {
    if labels.is_empty() {
        return Ok(None);
    }
    let m = Metadata { schema: metadata::SCHEMA, labels };
    serde_json::to_vec(&m).map(Some).map_err(|e| Unrepresentable::Descriptor(e.to_string()))
}

/// The file in which a 0.6.2 bundle written by `convert --to 0.6.2` carries a snapshot's
/// original 0.7 descriptor (`<prefix>/msb-0.7-descriptor.json`), so that the way back to 0.7
/// gives the same ids and descriptor digests. 0.6.2 imports and keeps it like any extra file;
/// 0.7.13 refuses a bundle with it (`convert --to 0.6.2 --no-carry` leaves it out).
pub const CARRIED_DESCRIPTOR: &str = "msb-0.7-descriptor.json";

/// The carried 0.7 descriptor `bytes` of a snapshot, as the 0.7 form of `manifest` (digest
/// `digest`, parent converted to `parent_id`), when it describes exactly that snapshot: its
/// downgrade is `manifest` (with the manifest's own integrity digest standing for a
/// Merkle-BLAKE3 root, which the caller must check against the payload) and its parent is
/// `parent_id`. `None` when it does not.
pub fn carried_forward(
    bytes: &[u8],
    manifest: &Manifest,
    parent_id: Option<&str>,
) -> Option<(Forward, Descriptor)> {
    let d = Descriptor::parse(bytes).ok()?;
    let projected = manifest.upper.integrity.as_ref().map(|i| i.digest.as_str());
    let back = backward(&d, &manifest.labels, manifest.parent.as_deref(), projected, None).ok()?;
    if back.bytes != manifest.canonical_bytes() || (parent_id.is_some() && d.parent.as_deref() != parent_id) {
        return None;
    }
    let State::File(file) = &d.state else { return None };
    let layer_id = file.layers.first()?.layer_id.clone();
    let f = Forward {
        snapshot_id: d.snapshot_id.clone(),
        layer_id,
        parent_id: d.parent.clone(),
        descriptor: d.canonical_bytes().to_vec(),
        descriptor_digest: d.digest(),
        metadata: metadata_bytes(&manifest.labels).ok()?,
    };
    Some((f, d))
}

/// A 0.7 snapshot as a 0.6.2 manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backward {
    /// The manifest.
    pub manifest: Manifest,
    /// Its bytes: the carried original's, or the canonical serialisation.
    pub bytes: Vec<u8>,
    /// Its 0.6.2 digest (of the canonical bytes).
    pub digest: String,
    /// Whether these are the original manifest's bytes, carried by the archive.
    pub carried: bool,
}

/// The 0.6.2 manifest of the 0.7 snapshot `d` with `labels`: `carried` (the original manifest
/// the archive carries for it, if any) when its forward translation is exactly `d` and its labels
/// are `labels`, else the manifest 0.7.13's downgrade writes: `upper.ext4`, `created_at` as
/// normalised, the parent's 0.6.2 digest `parent_digest` (the caller maps the parent's id),
/// `source_sandbox` from `source_lineage`, and the layer's integrity, or for a
/// `msb-file-merkle-blake3-v1` layer the `msb-sparse-sha256-v1` digest the caller computed
/// (`sparse_sha256`). Refuses, with the reason, what 0.6.2 cannot hold.
pub fn backward(
    d: &Descriptor,
    labels: &BTreeMap<String, String>,
    parent_digest: Option<&str>,
    sparse_sha256: Option<&str>,
    carried: Option<&[u8]>,
) -> Result<Backward, Unrepresentable> {
    let field = |field: &'static str, reason: &'static str| Unrepresentable::Field { field, reason };
    let State::File(file) = &d.state else {
        return Err(field("scope", "is checkpoint: 0.6.2 snapshots are disk files only"));
    };
    let [layer] = file.layers.as_slice() else {
        return Err(field("state.layers", "is a layer chain: 0.6.2 holds one upper per snapshot"));
    };
    if layer.format != LayerFormat::Raw || file.disk_format != LayerFormat::Raw || file.filesystem != "ext4" {
        return Err(Unrepresentable::Layout {
            format: file.disk_format.as_str(),
            fstype: file.filesystem.clone(),
        });
    }
    if layer.backing.is_some() || layer.virtual_size != file.virtual_size {
        return Err(field("state.layers", "is not one self-contained raw layer"));
    }
    if !d.managed_root {
        return Err(field("root_disk", "is not the managed layout 0.6.2 restores"));
    }
    if !d.requires.is_empty() || !d.extension_keys.is_empty() {
        return Err(field("extensions", "are not representable in 0.6.2"));
    }
    if let Some(bytes) = carried {
        if let Ok(original) = Manifest::from_bytes(bytes) {
            let digest = original.digest();
            // The same descriptor (so the same parent id), labels and, when the parent was
            // converted here, the same parent digest.
            let same = forward(&original, &digest)
                .is_ok_and(|f| f.descriptor == d.canonical_bytes() && original.labels == *labels)
                && parent_digest.is_none_or(|p| original.parent.as_deref() == Some(p));
            if same {
                return Ok(Backward { manifest: original, bytes: bytes.to_vec(), digest, carried: true });
            }
        }
    }
    if d.parent.is_some() != parent_digest.is_some() {
        return Err(field("parent", "is not in the archive: 0.6.2 links a parent by its digest"));
    }
    let integrity = match &layer.integrity {
        None => None,
        Some(Integrity::Sha256 { digest }) => {
            Some(UpperIntegrity { algorithm: SHA256.into(), digest: digest.clone() })
        }
        Some(Integrity::SparseSha256V1 { digest }) => {
            Some(UpperIntegrity { algorithm: SPARSE_SHA256_V1.into(), digest: digest.clone() })
        }
        Some(Integrity::FileMerkleBlake3V1 { .. }) => match sparse_sha256 {
            Some(digest) => {
                Some(UpperIntegrity { algorithm: SPARSE_SHA256_V1.into(), digest: digest.to_string() })
            }
            None => {
                return Err(field(
                    "integrity",
                    "is Merkle-BLAKE3 and its msb-sparse-sha256-v1 was not computed",
                ))
            }
        },
    };
    let manifest = Manifest {
        schema: 1,
        format: SnapshotFormat::Raw,
        fstype: "ext4".into(),
        image: ImageRef {
            reference: d.image_reference.clone(),
            manifest_digest: d.image_manifest_digest.clone(),
        },
        parent: parent_digest.map(str::to_string),
        created_at: d.created_at.clone(),
        labels: labels.clone(),
        upper: UpperLayer { file: "upper.ext4".into(), size_bytes: layer.virtual_size, integrity },
        source_sandbox: d.source_lineage.clone(),
    };
    manifest.validate().map_err(|e| Unrepresentable::Descriptor(e.to_string()))?;
    let bytes = manifest.canonical_bytes();
    let digest = manifest.digest();
    Ok(Backward { manifest, bytes, digest, carried: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest 0.7.13's own migration tests use (`migration.rs`, `LEGACY_RECORDED`), with the
    /// digest computed from its bytes.
    const LEGACY: &str = r#"{"schema":1,"format":"raw","fstype":"ext4","image":{"ref":"docker.io/library/alpine:3.20","manifest_digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},"parent":null,"created_at":"2026-07-01T10:00:00Z","labels":{"k":"v"},"upper":{"file":"upper.ext4","size_bytes":5,"integrity":{"algorithm":"msb-sparse-sha256-v1","digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}},"source_sandbox":"box"}"#;

    fn legacy() -> (Manifest, String) {
        let m = Manifest::from_bytes(LEGACY.as_bytes()).unwrap();
        let d = m.digest();
        (m, d)
    }

    #[test]
    fn ids_come_from_the_legacy_digest_and_the_descriptor_is_canonical() {
        let (m, d) = legacy();
        let f = forward(&m, &d).unwrap();
        let hex = d.strip_prefix("sha256:").unwrap();
        assert_eq!(f.snapshot_id, format!("snap_{}", &hex[..32]));
        assert_eq!(f.layer_id, format!("layer_{}", &hex[32..]));
        let again = Descriptor::parse(&f.descriptor).unwrap();
        assert_eq!(again.canonical_bytes(), &f.descriptor[..], "the bytes are canonical");
        assert_eq!(again.digest(), f.descriptor_digest);
        assert_eq!(again.created_at, "2026-07-01T10:00:00.000000000Z");
        let text = core::str::from_utf8(&f.descriptor).unwrap();
        assert!(
            text.contains(r#""integrity":{"algorithm":"msb-sparse-sha256-v1","digest":"sha256:bbbb"#),
            "{text}"
        );
        assert!(!text.contains("\"labels\""), "labels leave the descriptor");
        assert_eq!(
            f.metadata.as_deref(),
            Some(&br#"{"schema":"microsandbox.snapshot-metadata/1","labels":{"k":"v"}}"#[..])
        );
    }

    #[test]
    fn a_parent_digest_becomes_the_parents_snapshot_id() {
        let (mut m, _) = legacy();
        let parent = format!("sha256:{}", "c".repeat(64));
        m.parent = Some(parent.clone());
        let d = m.digest();
        let f = forward(&m, &d).unwrap();
        assert_eq!(f.parent_id, legacy_snapshot_id(&parent));
        assert_eq!(f.parent_id.as_deref(), Some(&*format!("snap_{}", "c".repeat(32))));
    }

    #[test]
    fn what_0_7_cannot_take_over_is_refused_with_its_reason() {
        let (mut m, d) = legacy();
        m.format = SnapshotFormat::Qcow2;
        assert!(matches!(forward(&m, &d), Err(Unrepresentable::Layout { format: "qcow2", .. })));
        let (mut m, d) = legacy();
        m.upper.file = "snapshot.json".into();
        assert_eq!(
            forward(&m, &d).err().map(|e| e.to_string()).as_deref(),
            Some("upper.file is a name microsandbox 0.7 reserves")
        );
        let (mut m, d) = legacy();
        m.image.manifest_digest = format!("sha256:{}", "A".repeat(64));
        assert!(matches!(
            forward(&m, &d),
            Err(Unrepresentable::Field { field: "image.manifest_digest", .. })
        ));
        let (mut m, d) = legacy();
        m.created_at = "yesterday".into();
        assert!(matches!(forward(&m, &d), Err(Unrepresentable::Descriptor(_))));
    }

    #[test]
    fn backward_gives_back_the_carried_original_or_the_downgrade() {
        let (m, d) = legacy();
        let f = forward(&m, &d).unwrap();
        let desc = Descriptor::parse(&f.descriptor).unwrap();
        let b = backward(&desc, &m.labels, None, None, Some(LEGACY.as_bytes())).unwrap();
        assert!(b.carried);
        assert_eq!((b.bytes.as_slice(), b.digest.as_str()), (LEGACY.as_bytes(), d.as_str()));
        // Labels changed since: the downgrade, with the new labels and the normalised time.
        let mut labels = m.labels.clone();
        labels.insert("new".into(), "x".into());
        let b = backward(&desc, &labels, None, None, Some(LEGACY.as_bytes())).unwrap();
        assert!(!b.carried);
        assert_eq!(b.manifest.labels, labels);
        assert_eq!(b.manifest.created_at, "2026-07-01T10:00:00.000000000Z");
        assert_eq!(b.manifest.upper.integrity, m.upper.integrity);
        assert_eq!(b.bytes, b.manifest.canonical_bytes());
        // Without the original: the same downgrade; forward of it gives the same descriptor
        // except for the ids (they come from the new digest).
        let b = backward(&desc, &m.labels, None, None, None).unwrap();
        assert!(!b.carried);
        assert_eq!(b.manifest.source_sandbox.as_deref(), Some("box"));
    }

    #[test]
    fn backward_refuses_what_0_6_2_cannot_hold() {
        let (m, d) = legacy();
        let f = forward(&m, &d).unwrap();
        let mut tree: serde_json::Value = serde_json::from_slice(&f.descriptor).unwrap();
        tree["parent"] = serde_json::json!(format!("snap_{}", "1".repeat(32)));
        let child = Descriptor::parse(&serde_json::to_vec(&tree).unwrap()).unwrap();
        let e = backward(&child, &m.labels, None, None, None).unwrap_err();
        assert!(matches!(e, Unrepresentable::Field { field: "parent", .. }), "{e}");
        let mut tree: serde_json::Value = serde_json::from_slice(&f.descriptor).unwrap();
        tree["state"]["layers"][0]["payload"]["integrity"] = serde_json::json!({
            "algorithm": "msb-file-merkle-blake3-v1", "root": format!("blake3:{}", "2".repeat(64)),
            "logical_size": 5, "leaf_size": 65536});
        let merkle = Descriptor::parse(&serde_json::to_vec(&tree).unwrap()).unwrap();
        assert!(backward(&merkle, &m.labels, None, None, None).is_err(), "needs the computed digest");
        let sha = format!("sha256:{}", "3".repeat(64));
        let b = backward(&merkle, &m.labels, None, Some(&sha), None).unwrap();
        assert_eq!(
            b.manifest.upper.integrity.map(|i| (i.algorithm, i.digest)),
            Some((SPARSE_SHA256_V1.into(), sha))
        );
    }
}
