//! The OCI image manifest of a pushed chain: built by [`manifest_bytes`], read back from a
//! registry by [`parse_manifest`] (and its config blob by [`parse_config`]).

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::error::{ArtifactError, LayerError};
use super::msb::{MAX_MSB_CONFIG_BYTES, MSB_ARTIFACT_TYPE, MSB_CONFIG_MEDIA_TYPE};
use super::{
    is_sha256_digest, tar_len, ChainConfig, Layer, ANN_GID, ANN_HEAD, ANN_MODE, ANN_MTIME, ANN_PATH,
    ANN_SHA256, ANN_SIZE, ANN_TITLE, ANN_UID, ARTIFACT_TYPE, BUNDLE_FORMAT, CONFIG_MEDIA_TYPE,
    MAX_CONFIG_BYTES, MAX_ID, MAX_MANIFEST_BYTES, MAX_MODE, MAX_TIME, MEMBER_MEDIA_TYPE,
    MEMBER_ZSTD_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE,
};
use crate::tar::write::EntryMeta;
use crate::Limits;

/// The manifest as written. Fields are declared in key order, annotations are sorted maps: the
/// bytes are compact JSON with every object's keys sorted.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestOut<'a> {
    annotations: BTreeMap<&'static str, &'a str>,
    artifact_type: &'static str,
    config: DescriptorOut<'a>,
    layers: Vec<DescriptorOut<'a>>,
    media_type: &'static str,
    schema_version: u32,
}

/// A descriptor as written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<&'static str, String>>,
    digest: &'a str,
    media_type: &'static str,
    size: u64,
}

/// Which form of the artifact a manifest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    /// A 0.6.2 snapshot chain ([`ARTIFACT_TYPE`]): layers carry the tar header fields.
    Chain,
    /// A `.msb` archive as it was ([`MSB_ARTIFACT_TYPE`]): the header records are in the config.
    Msb,
}

impl ArtifactKind {
    /// Its `artifactType`.
    pub fn artifact_type(self) -> &'static str {
        match self {
            ArtifactKind::Chain => ARTIFACT_TYPE,
            ArtifactKind::Msb => MSB_ARTIFACT_TYPE,
        }
    }

    /// Its config media type.
    pub fn config_media_type(self) -> &'static str {
        match self {
            ArtifactKind::Chain => CONFIG_MEDIA_TYPE,
            ArtifactKind::Msb => MSB_CONFIG_MEDIA_TYPE,
        }
    }

    /// The largest config blob of this form.
    pub fn max_config_bytes(self) -> u64 {
        match self {
            ArtifactKind::Chain => MAX_CONFIG_BYTES,
            ArtifactKind::Msb => MAX_MSB_CONFIG_BYTES,
        }
    }
}

impl Layer {
    /// The layer's OCI descriptor (with the tar header fields for a chain's layer).
    fn descriptor(&self, kind: ArtifactKind) -> DescriptorOut<'_> {
        let mut ann = BTreeMap::new();
        ann.insert(ANN_TITLE, self.path.clone());
        ann.insert(ANN_PATH, self.path.clone());
        if let Some(sha256) = &self.sha256 {
            ann.insert(ANN_SHA256, sha256.clone());
        }
        ann.insert(ANN_SIZE, self.meta.size.to_string());
        if kind == ArtifactKind::Chain {
            ann.insert(ANN_MODE, self.meta.mode.to_string());
            ann.insert(ANN_UID, self.meta.uid.to_string());
            ann.insert(ANN_GID, self.meta.gid.to_string());
            ann.insert(ANN_MTIME, self.meta.mtime.to_string());
        }
        DescriptorOut {
            annotations: Some(ann),
            digest: &self.digest,
            media_type: if self.zstd { MEMBER_ZSTD_MEDIA_TYPE } else { MEMBER_MEDIA_TYPE },
            size: self.size,
        }
    }
}

/// The OCI image manifest bytes for a chain's config blob and layers (compact JSON, keys in a
/// fixed order, so the same chain always gives the same manifest digest).
pub fn manifest_bytes(config_digest: &str, config_size: u64, layers: &[Layer], head: &str) -> Vec<u8> {
    kind_manifest_bytes(ArtifactKind::Chain, config_digest, config_size, layers, head)
}

/// [`manifest_bytes`] for either form of the artifact.
pub fn kind_manifest_bytes(
    kind: ArtifactKind,
    config_digest: &str,
    config_size: u64,
    layers: &[Layer],
    head: &str,
) -> Vec<u8> {
    let mut annotations = BTreeMap::new();
    annotations.insert(ANN_HEAD, head);
    let manifest = ManifestOut {
        annotations,
        artifact_type: kind.artifact_type(),
        config: DescriptorOut {
            annotations: None,
            digest: config_digest,
            media_type: kind.config_media_type(),
            size: config_size,
        },
        layers: layers.iter().map(|l| l.descriptor(kind)).collect(),
        media_type: OCI_MANIFEST_MEDIA_TYPE,
        schema_version: 2,
    };
    serde_json::to_vec(&manifest).unwrap_or_default()
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
    /// Which form of the artifact.
    pub kind: ArtifactKind,
    /// Config blob digest.
    pub config_digest: String,
    /// Config blob size.
    pub config_size: u64,
    /// Layers in order.
    pub layers: Vec<Layer>,
}

/// Parses and checks a manifest from a registry: a snapbundle artifact, sha256 digests only,
/// every annotation present, decimal where it must be and within what its tar header field
/// holds, at most `limits.max_entries` layers, sizes within `limits.max_decompressed_bytes`,
/// and a raw layer's digest equal to its member's.
pub fn parse_manifest(bytes: &[u8], limits: &Limits) -> Result<Parsed, ArtifactError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ArtifactError::ManifestTooLarge { max: MAX_MANIFEST_BYTES });
    }
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| ArtifactError::NotJson(e.to_string()))?;
    if raw.schema_version != 2 || raw.media_type.as_deref().is_some_and(|m| m != OCI_MANIFEST_MEDIA_TYPE) {
        return Err(ArtifactError::NotOciManifest);
    }
    let kind = [ArtifactKind::Chain, ArtifactKind::Msb].into_iter().find(|k| {
        raw.artifact_type.as_deref() == Some(k.artifact_type())
            && raw.config.media_type == k.config_media_type()
    });
    let Some(kind) = kind else {
        return Err(ArtifactError::NotSnapbundle {
            artifact_type: raw.artifact_type.unwrap_or_default(),
            config_media_type: raw.config.media_type,
        });
    };
    if !is_sha256_digest(&raw.config.digest) || raw.config.size > kind.max_config_bytes() {
        return Err(ArtifactError::BadConfig { digest: raw.config.digest });
    }
    let max = limits.max_entries;
    if raw.layers.is_empty() || raw.layers.len() > max as usize {
        return Err(ArtifactError::LayerCount { count: raw.layers.len(), max });
    }
    let mut layers = Vec::with_capacity(raw.layers.len());
    for (index, d) in raw.layers.into_iter().enumerate() {
        let digest = d.digest.clone();
        layers.push(parse_layer(d, kind, limits).map_err(|error| ArtifactError::Layer {
            index,
            digest,
            error,
        })?);
    }
    // A `.msb` archive's header records are in the config: its members' sizes are a lower
    // bound of the stream here, and `parse_msb_config` checks the exact length.
    let len = match kind {
        ArtifactKind::Chain => tar_len(&layers),
        ArtifactKind::Msb => layers.iter().try_fold(0u64, |sum, l| sum.checked_add(l.meta.size)),
    };
    if len.is_none_or(|n| n > limits.max_decompressed_bytes) {
        return Err(ArtifactError::TooLarge { max: limits.max_decompressed_bytes });
    }
    Ok(Parsed { kind, config_digest: raw.config.digest, config_size: raw.config.size, layers })
}

/// The value of annotation `key`.
fn text<'a>(ann: &'a BTreeMap<String, String>, key: &'static str) -> Result<&'a str, LayerError> {
    ann.get(key).map(String::as_str).ok_or(LayerError::MissingAnnotation(key))
}

/// The decimal value of annotation `key`, at most `max`.
fn number(ann: &BTreeMap<String, String>, key: &'static str, max: u64) -> Result<u64, LayerError> {
    let v = text(ann, key)?;
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LayerError::NotDecimal { key, value: v.to_string() });
    }
    let out_of_range = || LayerError::OutOfRange { key, value: v.to_string(), max };
    let n = v.parse::<u64>().map_err(|_| out_of_range())?;
    if n > max {
        return Err(out_of_range());
    }
    Ok(n)
}

fn parse_layer(d: RawDescriptor, kind: ArtifactKind, limits: &Limits) -> Result<Layer, LayerError> {
    let zstd = match d.media_type.as_str() {
        MEMBER_MEDIA_TYPE => false,
        MEMBER_ZSTD_MEDIA_TYPE => true,
        _ => return Err(LayerError::MediaType(d.media_type)),
    };
    if !is_sha256_digest(&d.digest) {
        return Err(LayerError::Digest);
    }
    let ann = &d.annotations;
    let path = text(ann, ANN_PATH)?;
    if path.is_empty() || path.len() > limits.max_path_len as usize {
        return Err(LayerError::PathLength(path.len()));
    }
    // A chain's member digest; a `.msb` layer has none (an annotation there is not read).
    let sha256 = match kind {
        ArtifactKind::Chain => {
            let sha256 = text(ann, ANN_SHA256)?;
            if !is_sha256_digest(sha256) {
                return Err(LayerError::MemberDigest);
            }
            Some(sha256.to_string())
        }
        ArtifactKind::Msb => None,
    };
    // A `.msb` layer's tar header is in the config (its records as they are): only the stored
    // size is annotated.
    let meta = match kind {
        ArtifactKind::Chain => {
            let mode = number(ann, ANN_MODE, MAX_MODE)?;
            EntryMeta {
                mode: u32::try_from(mode).map_err(|_| LayerError::OutOfRange {
                    key: ANN_MODE,
                    value: mode.to_string(),
                    max: MAX_MODE,
                })?,
                uid: number(ann, ANN_UID, MAX_ID)?,
                gid: number(ann, ANN_GID, MAX_ID)?,
                mtime: number(ann, ANN_MTIME, MAX_TIME)?,
                size: number(ann, ANN_SIZE, u64::MAX)?,
            }
        }
        ArtifactKind::Msb => {
            EntryMeta { mode: 0, uid: 0, gid: 0, mtime: 0, size: number(ann, ANN_SIZE, u64::MAX)? }
        }
    };
    if meta.size > limits.max_decompressed_bytes {
        return Err(LayerError::MemberSize(meta.size));
    }
    if meta.size > MAX_TIME {
        return Err(LayerError::OutOfRange { key: ANN_SIZE, value: meta.size.to_string(), max: MAX_TIME });
    }
    if !zstd && (d.size != meta.size || sha256.as_ref().is_some_and(|s| *s != d.digest)) {
        return Err(LayerError::RawMismatch);
    }
    // A compressed blob is held to what its member can compress to, so that a registry cannot
    // make a pull download (and keep on disk) more than the member's own bound.
    let max = super::zstd_bound(meta.size);
    if zstd && d.size > max {
        return Err(LayerError::CompressedSize { blob: d.size, member: meta.size, max });
    }
    let path = path.to_string();
    Ok(Layer { digest: d.digest, size: d.size, zstd, path, sha256, meta })
}

/// Parses a config blob from a registry and checks it against the manifest's layers: schema 1,
/// format [`BUNDLE_FORMAT`], and one member per layer with the layer's path, in order.
pub fn parse_config(bytes: &[u8], parsed: &Parsed) -> Result<ChainConfig, ArtifactError> {
    let config: ChainConfig =
        serde_json::from_slice(bytes).map_err(|e| ArtifactError::ConfigJson(e.to_string()))?;
    let paths_match = config.members.len() == parsed.layers.len()
        && config.members.iter().zip(&parsed.layers).all(|(m, l)| m.path == l.path);
    if parsed.kind != ArtifactKind::Chain
        || config.schema != 1
        || config.format != BUNDLE_FORMAT
        || !paths_match
    {
        return Err(ArtifactError::ConfigMismatch);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use alloc::format;
    use alloc::string::ToString;
    use alloc::vec;

    use super::*;
    use crate::registry_artifact::{sha256_digest, ConfigMember, ConfigSnapshot};
    use crate::tar::write::member_headers;

    fn layer(path: &str, zstd: bool) -> Layer {
        let d = sha256_digest(path.as_bytes());
        Layer {
            digest: d.clone(),
            size: 5,
            zstd,
            path: path.into(),
            sha256: Some(d),
            meta: EntryMeta { mode: 0o100644, uid: 0, gid: 0, mtime: 1, size: 5 },
        }
    }

    fn parse(text: &str) -> Result<Parsed, ArtifactError> {
        parse_manifest(text.as_bytes(), &Limits::DEFAULT)
    }

    fn message(r: Result<Parsed, ArtifactError>) -> String {
        match r {
            Ok(p) => panic!("accepted: {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn manifest_round_trips() {
        let layers =
            vec![layer("sha256-0011223344556677/manifest.json", false), layer("cache/layers/x.erofs", true)];
        let cfg = sha256_digest(b"{}");
        let bytes = manifest_bytes(&cfg, 2, &layers, "sha256:00");
        let parsed = parse_manifest(&bytes, &Limits::DEFAULT).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.layers, layers);
        assert_eq!(parsed.config_digest, cfg);
        assert_eq!(parsed.config_size, 2);
    }

    #[test]
    fn manifest_bytes_are_compact_json_with_sorted_keys() {
        let mut l = layer("a/manifest.json", true);
        l.digest = "sha256:dd".into();
        l.sha256 = Some("sha256:ss".into());
        l.size = 3;
        let bytes = manifest_bytes("sha256:cc", 2, &[l], "sha256:hh");
        let expected = concat!(
            r#"{"annotations":{"dev.snapbundle.head":"sha256:hh"},"#,
            r#""artifactType":"application/vnd.snapbundle.snapshot.v1","#,
            r#""config":{"digest":"sha256:cc","mediaType":"application/vnd.snapbundle.snapshot.config.v1+json","size":2},"#,
            r#""layers":[{"annotations":{"dev.snapbundle.member.path":"a/manifest.json","#,
            r#""dev.snapbundle.member.sha256":"sha256:ss","dev.snapbundle.member.size":"5","#,
            r#""dev.snapbundle.tar.gid":"0","dev.snapbundle.tar.mode":"33188","dev.snapbundle.tar.mtime":"1","#,
            r#""dev.snapbundle.tar.uid":"0","org.opencontainers.image.title":"a/manifest.json"},"#,
            r#""digest":"sha256:dd","mediaType":"application/vnd.snapbundle.member.v1+zstd","size":3}],"#,
            r#""mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}"#,
        );
        assert_eq!(String::from_utf8_lossy(&bytes), expected);
        // The same bytes as a `serde_json::Value` holding the manifest gives (how it was first
        // built, in the host): pushed manifests keep their digests.
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        assert_eq!(serde_json::to_vec(&value).ok(), Some(bytes));
    }

    #[test]
    fn rejects_other_artifacts_and_bad_annotations() {
        let layers = vec![layer("a/manifest.json", false)];
        let bytes = manifest_bytes(&sha256_digest(b"{}"), 2, &layers, "h");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let other = text.replace(ARTIFACT_TYPE, "application/vnd.other");
        let e = parse(&other).err();
        assert_eq!(e.as_ref().map(ArtifactError::code), Some("not_snapbundle_artifact"));
        assert!(e.is_some_and(|e| e.to_string().contains("not a snapbundle snapshot")));
        let bad = text.replace("\"dev.snapbundle.tar.mode\":\"33188\"", "\"dev.snapbundle.tar.mode\":\"-1\"");
        assert_ne!(bad, text);
        let e = parse(&bad).err();
        assert_eq!(e.as_ref().map(ArtifactError::code), Some("annotation_not_decimal"));
        assert!(e.is_some_and(|e| e.to_string().contains("not a decimal number")), "{bad}");
        let upper = text.replace("\"size\":5}", "\"size\":6}");
        assert_ne!(upper, text);
        let e = message(parse(&upper));
        assert!(e.contains("raw layer"), "{e}");
        let missing = text.replace("dev.snapbundle.tar.uid", "x");
        assert_eq!(
            message(parse(&missing)),
            format!("layer #0 ({}): annotation {ANN_UID} missing", layers[0].digest)
        );
    }

    #[test]
    fn rejects_the_wrong_shape_sizes_and_counts() {
        let layers = vec![layer("a/manifest.json", false)];
        let text =
            String::from_utf8_lossy(&manifest_bytes(&sha256_digest(b"{}"), 2, &layers, "h")).into_owned();
        assert!(message(parse("[]")).starts_with("not an OCI image manifest: "));
        let v1 = text.replace("\"schemaVersion\":2", "\"schemaVersion\":1");
        assert_eq!(parse(&v1).err(), Some(ArtifactError::NotOciManifest));
        let big_config = text.replace("\"size\":2}", &format!("\"size\":{}}}", MAX_CONFIG_BYTES + 1));
        assert_eq!(parse(&big_config).err().map(|e| e.code()), Some("bad_config_descriptor"));
        let none = edited(|v| v["layers"] = serde_json::Value::Array(vec![]));
        assert_eq!(message(parse(&none)), format!("0 layers (1 to {} allowed)", Limits::DEFAULT.max_entries));
        let huge = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert_eq!(
            parse_manifest(&huge, &Limits::DEFAULT).err(),
            Some(ArtifactError::ManifestTooLarge { max: MAX_MANIFEST_BYTES })
        );
        let small = Limits { max_decompressed_bytes: 2047, ..Limits::DEFAULT };
        let e = parse_manifest(text.as_bytes(), &small).err();
        assert_eq!(e.map(|e| e.to_string()), Some("the members add up to more than 2047 bytes".to_string()));
        let tiny = Limits { max_decompressed_bytes: 4, ..Limits::DEFAULT };
        let e = parse_manifest(text.as_bytes(), &tiny).err().map(|e| e.to_string());
        assert!(e.as_deref().is_some_and(|e| e.ends_with("member size 5 over the limit")), "{e:?}");
    }

    #[test]
    fn only_a_chains_layers_carry_a_member_digest() {
        let mut l = layer("layers/layer_0.raw", true);
        l.sha256 = None;
        // A `.msb` layer's header is in the config: only its size is annotated.
        l.meta = EntryMeta { mode: 0, uid: 0, gid: 0, mtime: 0, size: l.meta.size };
        let msb =
            kind_manifest_bytes(ArtifactKind::Msb, &sha256_digest(b"{}"), 2, core::slice::from_ref(&l), "h");
        assert!(!String::from_utf8_lossy(&msb).contains(ANN_SHA256), "a .msb layer has no member digest");
        let parsed = parse_manifest(&msb, &Limits::DEFAULT).map(|p| (p.kind, p.layers));
        assert_eq!(parsed, Ok((ArtifactKind::Msb, vec![l.clone()])));
        // A chain's layer without one is refused.
        let chain = manifest_bytes(&sha256_digest(b"{}"), 2, core::slice::from_ref(&l), "h");
        let e = parse_manifest(&chain, &Limits::DEFAULT).err();
        assert_eq!(e.as_ref().map(ArtifactError::code), Some("annotation_missing"), "{e:?}");
        // A raw `.msb` layer is still its member's size.
        let mut raw = layer("archive.json", false);
        raw.sha256 = None;
        raw.size = 4;
        let msb = kind_manifest_bytes(ArtifactKind::Msb, &sha256_digest(b"{}"), 2, &[raw], "h");
        let e = parse_manifest(&msb, &Limits::DEFAULT).err();
        assert_eq!(e.as_ref().map(ArtifactError::code), Some("raw_layer_mismatch"), "{e:?}");
    }

    #[test]
    fn a_zstd_blob_is_held_to_what_its_member_can_compress_to() {
        let mut l = layer("a/upper.ext4", true);
        l.meta.size = 1 << 20;
        let max = crate::registry_artifact::zstd_bound(1 << 20);
        assert!(max > 1 << 20 && max < (1 << 20) + (8 << 10), "{max}");
        l.size = max;
        let ok = manifest_bytes(&sha256_digest(b"{}"), 2, core::slice::from_ref(&l), "h");
        assert!(parse_manifest(&ok, &Limits::DEFAULT).is_ok());
        l.size = max + 1;
        let over = manifest_bytes(&sha256_digest(b"{}"), 2, core::slice::from_ref(&l), "h");
        let e = parse_manifest(&over, &Limits::DEFAULT).err();
        assert_eq!(e.as_ref().map(|e| e.code()), Some("compressed_blob_too_large"), "{e:?}");
        // An empty member's frame is a few bytes, not a terabyte.
        assert_eq!(crate::registry_artifact::zstd_bound(0), 64 + 512);
        assert_eq!(crate::registry_artifact::zstd_bound(u64::MAX), u64::MAX);
    }

    /// The manifest of one raw layer, edited by `edit` as JSON.
    fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let l = layer("a/manifest.json", false);
        let bytes = manifest_bytes(&sha256_digest(b"{}"), 2, &[l], "h");
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        edit(&mut v);
        v.to_string()
    }

    /// The manifest of one layer whose annotation `key` is `value`.
    fn with_annotation(key: &str, value: &str) -> String {
        edited(|v| v["layers"][0]["annotations"][key] = value.into())
    }

    /// Whether the tar encoder writes a header with `value` in the field of annotation `key`.
    fn encoder_accepts(key: &str, value: u64) -> bool {
        let mut meta = EntryMeta { mode: 0o100644, uid: 0, gid: 0, mtime: 0, size: 5 };
        match key {
            ANN_MODE => match u32::try_from(value) {
                Ok(m) => meta.mode = m,
                Err(_) => return false,
            },
            ANN_UID => meta.uid = value,
            ANN_GID => meta.gid = value,
            _ => meta.mtime = value,
        }
        member_headers("a/manifest.json", &meta).is_ok()
    }

    #[test]
    fn header_annotations_are_accepted_exactly_as_far_as_the_tar_encoder_writes_them() {
        let cases: [(&str, u64); 4] =
            [(ANN_MODE, MAX_MODE), (ANN_UID, MAX_ID), (ANN_GID, MAX_ID), (ANN_MTIME, MAX_TIME)];
        for (key, max) in cases {
            for value in [0, 4294967295, max, max + 1, (1 << 63) + 1234, u64::MAX] {
                let r = parse(&with_annotation(key, &value.to_string()));
                assert_eq!(r.is_ok(), encoder_accepts(key, value), "{key} = {value}: {r:?}");
                assert_eq!(r.is_ok(), value <= max, "{key} = {value}");
                if value > max {
                    let e = message(r);
                    assert!(
                        e.contains(&format!("annotation {key} is out of range: \"{value}\" (0 to {max})")),
                        "{e}"
                    );
                }
            }
            // Past u64 the same message.
            let e = message(parse(&with_annotation(key, "18446744073709551616")));
            assert!(
                e.contains(&format!(
                    "annotation {key} is out of range: \"18446744073709551616\" (0 to {max})"
                )),
                "{e}"
            );
        }
        // The values of the brief: a 32-bit all-ones id fits, as a mode it does not; an mtime
        // past i64::MAX never reaches the encoder.
        assert!(parse(&with_annotation(ANN_UID, "4294967295")).is_ok());
        assert!(!encoder_accepts(ANN_MODE, 4294967295));
        let e = parse(&with_annotation(ANN_MODE, "4294967295")).err();
        assert_eq!(e.as_ref().map(ArtifactError::code), Some("annotation_out_of_range"));
        let e = message(parse(&with_annotation(ANN_MTIME, "9223372036854777042")));
        assert!(e.ends_with("annotation dev.snapbundle.tar.mtime is out of range: \"9223372036854777042\" (0 to 9223372036854775807)"), "{e}");
    }

    #[test]
    fn a_size_past_i64_is_out_of_range_even_under_a_huge_budget() {
        let mut l = layer("a/manifest.json", true);
        l.meta.size = MAX_TIME + 1;
        let text = String::from_utf8_lossy(&manifest_bytes(&sha256_digest(b"{}"), 2, &[l], "h")).into_owned();
        let huge = Limits { max_decompressed_bytes: u64::MAX, ..Limits::DEFAULT };
        let e = parse_manifest(text.as_bytes(), &huge).err().map(|e| e.to_string());
        let want = format!("annotation {ANN_SIZE} is out of range: \"{}\" (0 to {MAX_TIME})", MAX_TIME + 1);
        assert!(e.as_deref().is_some_and(|e| e.ends_with(&want)), "{e:?}");
    }

    #[test]
    fn the_config_must_describe_the_layers() {
        let layers = vec![layer("a/manifest.json", false)];
        let parsed =
            Parsed { kind: ArtifactKind::Chain, config_digest: String::new(), config_size: 0, layers };
        let mut config = ChainConfig {
            schema: 1,
            format: BUNDLE_FORMAT.into(),
            head: "sha256:00".into(),
            snapshots: vec![ConfigSnapshot { digest: "sha256:00".into(), prefix: "a".into() }],
            members: vec![ConfigMember { path: "a/manifest.json".into(), role: "manifest".into() }],
        };
        let bytes = serde_json::to_vec(&config).unwrap_or_default();
        assert_eq!(parse_config(&bytes, &parsed), Ok(config.clone()));
        config.members[0].path = "b/manifest.json".into();
        let bytes = serde_json::to_vec(&config).unwrap_or_default();
        assert_eq!(parse_config(&bytes, &parsed), Err(ArtifactError::ConfigMismatch));
        let e = parse_config(b"{\"schema\":1}", &parsed).err();
        assert!(e.is_some_and(|e| e.to_string().starts_with("the config blob is not a snapbundle config: ")));
    }
}
