//! The `.msb` form of the artifact: a microsandbox 0.7 archive pushed as it is (no store
//! involved), one layer per tar member in archive order, `archive.json` included, so that a
//! parent's descriptor and layer payloads, or an image file, are the same blob in every archive
//! that holds them. A layer's blob is the member's *stored* bytes (a sparse member's data runs
//! concatenated: what its `msb-archive-member-blake3-v1` transport digest covers), as they are
//! for a small JSON member ([`store_raw`]) and otherwise as one zstd frame with the settings of
//! the chain form (the same [`super::zstd_bound`] holds it). The exact header records of every
//! member and the trailer go in the config ([`MsbConfig`]), so the tar stream is rebuilt byte
//! for byte without trusting an annotation for it; [`parse_msb_config`] checks them against
//! the layers with the core's tar header parser before any blob is fetched.
//!
//! No digest of the decompressed bytes is recorded (no member sha256 on the layers, no sha256
//! of the whole tar stream): the rebuilt stream is a function of the content-addressed blobs
//! and the config, so such a digest would only check the pusher against itself, at the price
//! of a SHA-256 pass over every member on both ends. What the bytes are worth is the validation
//! core's verdict on the rebuilt archive (its inventory's transport digests, the payloads'
//! integrity), as for the file.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::base64;
use super::error::ArtifactError;
use super::manifest::{ArtifactKind, Parsed};
use super::split::{HeaderRun, SplitError};
use crate::generation::g3::descriptor::is_digest;
use crate::tar::header::{self, BLOCK};
use crate::Limits;

/// `artifactType` of a pushed `.msb` archive.
pub const MSB_ARTIFACT_TYPE: &str = "application/vnd.snapbundle.msb.v1";
/// Media type of its config blob ([`MsbConfig`]).
pub const MSB_CONFIG_MEDIA_TYPE: &str = "application/vnd.snapbundle.msb.config.v1+json";
/// `MsbConfig::format`.
pub const MSB_FORMAT: &str = "microsandbox-0.7-msb";
/// Largest `.msb` config blob accepted: it holds every member's header records (at least 512
/// bytes each, base64), so it is larger than a chain's; 16 MiB holds about 24 000 records.
pub const MAX_MSB_CONFIG_BYTES: u64 = 16 << 20;
/// Largest member stored raw (see [`store_raw`]): `archive.json`'s own bound.
pub const MAX_RAW_MEMBER_BYTES: u64 = 4 << 20;
/// `MsbConfig::container` of a zstd archive.
pub const CONTAINER_ZSTD: &str = "zstd";
/// `MsbConfig::container` of a plain tar archive.
pub const CONTAINER_TAR: &str = "tar";

/// The config blob of a pushed `.msb` archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsbConfig {
    /// Always 1.
    pub schema: u32,
    /// Always [`MSB_FORMAT`].
    pub format: String,
    /// The head snapshot's id, as the inventory names it (the pusher's word: a pull reports the
    /// head its validation finds).
    pub head: String,
    /// [`CONTAINER_ZSTD`] or [`CONTAINER_TAR`]: how the pushed file held its tar stream (a pull
    /// writes the same).
    pub container: String,
    /// The pushed file as it was.
    pub archive: StreamDigest,
    /// Its tar stream's length (the rebuilt stream's, checked before any blob is fetched).
    pub tar: StreamSize,
    /// One entry per layer, in layer (archive) order.
    pub members: Vec<MsbMember>,
    /// base64 of the bytes after the last member: the end-of-archive records and any record
    /// padding, all zeros.
    pub trailer: String,
}

/// The BLAKE3 digest and size of a byte stream (the pushed file: the config records it so that
/// a pull can say whether it wrote the same bytes; BLAKE3, not SHA-256, because it is hashed
/// on the critical path of both ends and is no content address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamDigest {
    /// `blake3:<64 lowercase hex>`.
    pub blake3: String,
    /// Bytes.
    pub size: u64,
}

/// Computes a [`StreamDigest`] of the bytes fed to it.
#[derive(Debug, Clone, Default)]
pub struct StreamHasher {
    hasher: blake3::Hasher,
    size: u64,
}

impl StreamHasher {
    /// A digest of nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the stream.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size = self.size.saturating_add(bytes.len() as u64);
    }

    /// The digest of the bytes fed so far.
    pub fn digest(&self) -> StreamDigest {
        StreamDigest { blake3: crate::hex::blake3_digest(self.hasher.finalize().as_bytes()), size: self.size }
    }
}

/// The length of a byte stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSize {
    /// Bytes.
    pub size: u64,
}

/// One member of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsbMember {
    /// Its path.
    pub path: String,
    /// base64 of its header records exactly as the archive holds them.
    pub headers: String,
}

/// Whether a member is stored as it is (a small JSON document: descriptors, `metadata.json`,
/// `archive.json`, checkpoint documents, image metadata up to [`MAX_RAW_MEMBER_BYTES`]) rather
/// than as a zstd frame.
pub fn store_raw(path: &str, sparse: bool, stored: u64) -> bool {
    !sparse && path.ends_with(".json") && stored <= MAX_RAW_MEMBER_BYTES
}

/// What a pull rebuilds the tar stream from, checked against the layers.
#[derive(Debug, Clone)]
pub struct MsbPlan {
    /// The config.
    pub config: MsbConfig,
    /// Per layer, its header records.
    pub headers: Vec<Vec<u8>>,
    /// Length of the trailer (zeros).
    pub trailer: u64,
    /// Length of the tar stream the layers rebuild.
    pub tar_len: u64,
}

/// Parses a `.msb` config blob and checks it against the manifest's layers: schema 1, format
/// [`MSB_FORMAT`], a known container, sha256 digests, one member per layer with its path, whose
/// header records are exactly one member's header (the core's header grammar) naming that path
/// and storing exactly the layer's member size; a trailer of zeros, at least the two
/// end-of-archive records and at most `limits.max_trailing_zeros` more; the rebuilt length equal
/// to the config's `tar.size` and within `limits.max_decompressed_bytes`.
pub fn parse_msb_config(bytes: &[u8], parsed: &Parsed, limits: &Limits) -> Result<MsbPlan, ArtifactError> {
    let config: MsbConfig =
        serde_json::from_slice(bytes).map_err(|e| ArtifactError::ConfigJson(e.to_string()))?;
    let paths_match = config.members.len() == parsed.layers.len()
        && config.members.iter().zip(&parsed.layers).all(|(m, l)| m.path == l.path);
    let container_ok = config.container == CONTAINER_ZSTD || config.container == CONTAINER_TAR;
    let digests_ok = is_digest(&config.archive.blake3, "blake3:");
    if parsed.kind != ArtifactKind::Msb
        || config.schema != 1
        || config.format != MSB_FORMAT
        || !paths_match
        || !container_ok
        || !digests_ok
    {
        return Err(ArtifactError::ConfigMismatch);
    }
    let mut headers = Vec::with_capacity(config.members.len());
    let mut tar_len = 0u64;
    for (index, (m, layer)) in config.members.iter().zip(&parsed.layers).enumerate() {
        let bad = |why: SplitError| ArtifactError::MsbHeaders { index, path: m.path.clone(), why };
        let records =
            base64::decode(&m.headers).ok_or(ArtifactError::ConfigBase64 { what: "headers", index })?;
        let h = HeaderRun::parse_all(&records, limits.max_path_len as usize).map_err(bad)?;
        if h.name != m.path.as_bytes() {
            return Err(ArtifactError::MsbHeaderMismatch { index, path: m.path.clone(), what: "path" });
        }
        if h.stored != layer.meta.size {
            return Err(ArtifactError::MsbHeaderMismatch { index, path: m.path.clone(), what: "size" });
        }
        let extent = header::padded(h.stored).and_then(|p| p.checked_add(records.len() as u64));
        tar_len = extent
            .and_then(|e| tar_len.checked_add(e))
            .ok_or(ArtifactError::TooLarge { max: limits.max_decompressed_bytes })?;
        headers.push(records);
    }
    let trailer =
        base64::decode(&config.trailer).ok_or(ArtifactError::ConfigBase64 { what: "trailer", index: 0 })?;
    let max_trailer = limits.max_trailing_zeros.saturating_add(2 * BLOCK as u64);
    if trailer.iter().any(|&b| b != 0) {
        return Err(ArtifactError::MsbTrailer(SplitError::Trailer));
    }
    let trailer_len = trailer.len() as u64;
    if trailer_len > max_trailer {
        return Err(ArtifactError::MsbTrailer(SplitError::TrailerTooLong(max_trailer)));
    }
    if trailer_len < 2 * BLOCK as u64 {
        return Err(ArtifactError::MsbTrailer(SplitError::Truncated));
    }
    tar_len = tar_len.saturating_add(trailer_len);
    if tar_len > limits.max_decompressed_bytes {
        return Err(ArtifactError::TooLarge { max: limits.max_decompressed_bytes });
    }
    if tar_len != config.tar.size {
        return Err(ArtifactError::MsbTarSize { rebuilt: tar_len, config: config.tar.size });
    }
    Ok(MsbPlan { config, headers, trailer: trailer_len, tar_len })
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;
    use crate::registry_artifact::{base64_encode, sha256_digest, Layer};
    use crate::tar::write::{member_headers, EntryMeta};

    const PATH: &str = "snapshots/snap_0/snapshot.json";

    fn setup() -> (MsbConfig, Parsed) {
        let meta = EntryMeta { mode: 0o100644, uid: 0, gid: 0, mtime: 1, size: 700 };
        let headers = member_headers(PATH, &meta).unwrap_or_default();
        let digest = sha256_digest(&[1; 700]);
        let layer = Layer {
            digest: digest.clone(),
            size: 700,
            zstd: false,
            path: PATH.into(),
            sha256: None,
            meta: EntryMeta { mode: 0, uid: 0, gid: 0, mtime: 0, size: 700 },
        };
        let parsed = Parsed {
            kind: ArtifactKind::Msb,
            config_digest: String::new(),
            config_size: 0,
            layers: vec![layer],
        };
        let config = MsbConfig {
            schema: 1,
            format: MSB_FORMAT.into(),
            head: "snap_0".into(),
            container: CONTAINER_ZSTD.into(),
            archive: StreamHasher::new().digest(),
            tar: StreamSize { size: 512 + 1024 + 2048 },
            members: vec![MsbMember { path: PATH.into(), headers: base64_encode(&headers) }],
            trailer: base64_encode(&[0; 2048]),
        };
        (config, parsed)
    }

    fn check(config: &MsbConfig, parsed: &Parsed) -> Result<MsbPlan, ArtifactError> {
        let bytes = serde_json::to_vec(config).unwrap_or_default();
        parse_msb_config(&bytes, parsed, &Limits::DEFAULT)
    }

    #[test]
    fn a_config_rebuilds_its_layers_exactly_or_is_refused() {
        let (config, parsed) = setup();
        let plan = check(&config, &parsed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((plan.tar_len, plan.trailer, plan.headers[0].len()), (3584, 2048, 512));
        let code = |edit: &dyn Fn(&mut MsbConfig, &mut Parsed)| {
            let (mut c, mut p) = setup();
            edit(&mut c, &mut p);
            check(&c, &p).err().map(|e| (e.code(), e.to_string()))
        };
        let size = code(&|_, p| p.layers[0].meta.size = 699);
        assert_eq!(size.as_ref().map(|e| e.0), Some("msb_header_records"), "{size:?}");
        assert!(size.is_some_and(|e| e.1.contains("another size than its layer")));
        let path = code(&|c, p| {
            c.members[0].path = "archive.json".into();
            p.layers[0].path = "archive.json".into();
        });
        assert!(path.is_some_and(|e| e.1.contains("another path than its layer")));
        let trailer = code(&|c, _| c.trailer = base64_encode(&[0, 0, 1]));
        assert_eq!(trailer.map(|e| e.0), Some("msb_trailer"));
        let short = code(&|c, _| c.trailer = base64_encode(&[0; 1023]));
        assert_eq!(short.map(|e| e.0), Some("msb_trailer"));
        let long = code(&|c, _| c.trailer = base64_encode(&vec![0; (2 << 20) + 1024]));
        assert_eq!(long.map(|e| e.0), Some("msb_trailer"));
        let len = code(&|c, _| c.tar.size += 512);
        assert!(len.is_some_and(|e| e.1.contains("the config says 4096")));
        let b64 = code(&|c, _| c.members[0].headers.push('='));
        assert_eq!(b64.map(|e| e.0), Some("artifact_config_json"));
        let chain = code(&|_, p| p.kind = ArtifactKind::Chain);
        assert_eq!(chain.map(|e| e.0), Some("artifact_config_mismatch"));
        let container = code(&|c, _| c.container = "gzip".into());
        assert_eq!(container.map(|e| e.0), Some("artifact_config_mismatch"));
        let upper =
            code(&|c, _| c.archive.blake3 = c.archive.blake3.to_uppercase().replace("BLAKE3", "blake3"));
        assert_eq!(upper.map(|e| e.0), Some("artifact_config_mismatch"));
        let sha = code(&|c, _| c.archive.blake3 = sha256_digest(b"a"));
        assert_eq!(sha.map(|e| e.0), Some("artifact_config_mismatch"));
    }

    #[test]
    fn small_json_members_are_stored_raw_and_everything_else_compressed() {
        assert!(store_raw("archive.json", false, 100));
        assert!(store_raw(PATH, false, MAX_RAW_MEMBER_BYTES));
        assert!(!store_raw(PATH, false, MAX_RAW_MEMBER_BYTES + 1));
        assert!(!store_raw("layers/layer_0.raw", false, 10));
        assert!(!store_raw("x.json", true, 10));
    }
}
